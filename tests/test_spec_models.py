"""Every flow of every shipped spec, compiled at reduced size, is an exact bijection.

In float64, with every parameter perturbed away from its initialisation: the model's
logdet equals slogdet of the brute-force autograd Jacobian of x -> (z1..zL), the inverse
recovers x, ``log_prob`` equals the standard-normal density of the latents plus logdet,
and sampling at temperature T draws latents of standard deviation T.
"""

from __future__ import annotations

import glob
import math

import pytest
import torch
from numerics import SMALL, jacobian_logdet, max_abs_diff, perturb_, random_cond

import flowspec
from flowspec.api import analyze


def _flows():
    out = []
    for path in sorted(glob.glob("specs/*.flow")):
        specs, diags = analyze(path, all_flows=True)
        assert not [d for d in diags if d.severity == "error"], path
        out += [(path, s.name) for s in specs]
    return out


FLOWS = _flows()


def small_spec(path: str, name: str):
    full = flowspec.load(path, name)
    return flowspec.load(path, name, {k: v for k, v in SMALL.items() if k in full.params})


def built(path: str, name: str):
    spec = small_spec(path, name)
    gen = torch.Generator().manual_seed(7)
    model = flowspec.compile(spec, device="cpu", seed=0).double()
    # model space [-1/2, 1/2), as the runtime feeds images (a logit layer needs it)
    x = torch.rand((4, *spec.input), generator=gen, dtype=torch.float64) - 0.5
    cond = random_cond(spec, 4, gen)
    model.train()
    with torch.no_grad():
        model(x, cond)  # data-dependent initialisation
    perturb_(model, 0.05, gen)
    model.eval()
    return spec, model, x, cond


@pytest.mark.parametrize("path,name", FLOWS, ids=[f"{p.split('/')[-1]}:{n}" for p, n in FLOWS])
def test_spec_logdet_inverse_and_log_prob(path, name):
    spec, model, x, cond = built(path, name)
    x2, c2 = x[:2], (None if cond is None else {k: v[:2] for k, v in cond.items()})

    def fn(xb, *cs):
        cb = None if cond is None else dict(zip(cond, cs))
        zs, _ = model(xb, cb)
        return torch.cat([z.flatten(1) for z in zs], 1)

    ctx = [] if cond is None else list(c2.values())
    with torch.no_grad():
        zs, logdet = model(x2, c2)
    want, sign = jacobian_logdet(fn, x2, *ctx)
    assert torch.all(sign != 0)
    assert max_abs_diff(logdet, want) < 1e-8, (logdet, want)

    with torch.no_grad():
        back, inv_logdet = model.inverse(zs, c2, return_logdet=True)
    assert max_abs_diff(back, x2) < 1e-10
    assert max_abs_diff(inv_logdet, -logdet) < 1e-8

    normal = torch.distributions.Normal(
        torch.tensor(0.0, dtype=torch.float64), torch.tensor(1.0, dtype=torch.float64)
    )
    logps = [normal.log_prob(z).reshape(2, -1).sum(1) for z in zs]
    if hasattr(model.prior, "log_density"):  # a prior with its own density (logistic)
        logps[-1] = model.prior.log_density(zs[-1])
    prior = sum(logps)
    with torch.no_grad():
        assert max_abs_diff(model.log_prob(x2, c2), prior + logdet) < 1e-9
    assert sum(math.prod(z.shape[1:]) for z in zs) == math.prod(spec.input)


@pytest.mark.parametrize("path,name", FLOWS[:1] + [f for f in FLOWS if "sr_faces" in f[1]])
def test_sampling_temperature(path, name):
    spec, model, _, _ = built(path, name)
    gen = torch.Generator().manual_seed(3)
    cond = random_cond(spec, 3, gen)
    # temperature 0 is the prior mean image: the inverse of all-zero latents
    mean = model.sample(3, temperature=0.0, cond=cond)
    zeros = [torch.zeros((3, *s), dtype=torch.float64) for s in model.latent_shapes]
    with torch.no_grad():
        assert max_abs_diff(mean, model.inverse(zeros, cond)) < 1e-12
    # temperature T draws latents T * N(0, I): push the sample back and compare
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    xs = model.sample(3, temperature=0.6, cond=cond, generator=g1)
    with torch.no_grad():
        zs, _ = model(xs, cond)
    expected = [
        0.6 * torch.randn((3, *s), generator=g2, dtype=torch.float64) for s in model.latent_shapes
    ]
    for z, e in zip(zs, expected):
        assert max_abs_diff(z, e) < 1e-8


def test_float32_round_trip_every_spec():
    for path, name in FLOWS:
        spec = small_spec(path, name)
        gen = torch.Generator().manual_seed(1)
        model = flowspec.compile(spec, device="cpu", seed=0)
        x = torch.rand((3, *spec.input), generator=gen) - 0.5  # model space
        cond = random_cond(spec, 3, gen)
        if cond:
            cond = {k: (v.float() if v.is_floating_point() else v) for k, v in cond.items()}
        model.train()
        with torch.no_grad():
            model(x, cond)
        perturb_(model, 0.05, gen)
        model.eval()
        with torch.no_grad():
            zs, _ = model(x, cond)
            assert max_abs_diff(model.inverse(zs, cond), x) < 1e-5, name


def test_compile_is_deterministic_for_a_seed():
    path, name = FLOWS[0]
    spec = small_spec(path, name)
    a = flowspec.compile(spec, device="cpu", seed=3).state_dict()
    b = flowspec.compile(spec, device="cpu", seed=3).state_dict()
    c = flowspec.compile(spec, device="cpu", seed=4).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert any(not torch.equal(a[k], c[k]) for k in a)


def test_layer_errors_name_the_layer_and_its_span():
    spec = small_spec("specs/demo.flow", "demo")
    model = flowspec.compile(spec, device="cpu")
    bad = torch.rand(2, *spec.input)
    target = model.layers[3]
    original = target.forward

    def broken(x, cond=None):
        raise RuntimeError("boom")

    target.forward = broken
    with pytest.raises(flowspec.FlowRuntimeError) as e:
        model(bad)
    target.forward = original
    assert model.paths[3] in str(e.value)
    span = model.spans[3]
    assert f"{span.file}:{span.line}:{span.column}" in str(e.value)


def test_condition_of_wrong_shape_is_a_clear_error():
    spec = small_spec("specs/srflow_celeba.flow", "cattnflow_sr_faces")
    model = flowspec.compile(spec, device="cpu")
    x = torch.rand(2, *spec.input)
    with pytest.raises(ValueError, match="condition `lr` must have shape"):
        model(x, {"lr": torch.rand(2, 1, 5, 5)})
    with pytest.raises(ValueError, match="is conditional"):
        model(x)
