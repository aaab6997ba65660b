"""The flows researchers write: RealNVP, NICE, NSF and what they need.

* ``flip=`` swaps a coupling's halves; ``flip=false`` is the old partition and old
  checkpoints load unchanged.
* Warning W004 (entries that pass unchanged between two reshapes) agrees with the autograd
  Jacobian of the piece it describes, fires on same-half stacks and on nothing shipped.
* The shipped RealNVP has no output that depends on a single input; without its flips it has.
* ``coupling spline``: monotone, identity outside ``[-tail, tail]``, closed-form inverse.
* ``logit`` and ``prior logistic``: their log-densities in closed form, and bits/dim.

Every new kind is also in the registry-wide tables (tests/test_layers_numerics.py), and every
shipped spec trains and is checked as a whole model (test_paper_specs, test_spec_models).
"""

from __future__ import annotations

import math
import re
from pathlib import Path

import pytest
import torch
from numerics import max_abs_diff, perturb_

import flowspec
from flowspec.api import analyze
from flowspec.kinds import KINDS, PRIORS
from runtime.metrics import bits_per_dim

ROOT = Path(__file__).resolve().parents[1]


def t(*lines: str) -> str:
    return "\n".join(lines) + "\n"


def w004(text: str) -> list:
    _specs, diags = analyze("w.flow", text=text)
    assert not [d for d in diags if d.severity == "error"], diags
    return [d for d in diags if d.code == "W004"]


def _fraction(d) -> float:
    left, total = re.search(r"\((\d+) of (\d+)\)", d.message).groups()
    return int(left) / int(total)


# ---------------------------------------------------------------------------- flip
def _module(key: str, shape, **args):
    kind = KINDS[key]
    full = {**kind.Args().model_dump(), "hidden": 8, **args}
    return kind.module_class()(shape, full, None).double()


@pytest.mark.parametrize(
    "key", ["coupling.affine", "coupling.additive", "coupling.mixture", "coupling.spline"]
)
def test_flip_transforms_the_other_half(key: str) -> None:
    gen = torch.Generator().manual_seed(0)
    extra = {"components": 3} if key == "coupling.mixture" else {}
    x = torch.randn(2, 5, 4, 4, generator=gen, dtype=torch.float64)
    for flip, kept in ((False, slice(0, 3)), (True, slice(3, 5))):  # exactly swapped
        layer = _module(key, (5, 4, 4), flip=flip, **extra)
        perturb_(layer, 0.5, gen)
        with torch.no_grad():
            y, _ = layer(x)
        changed = (y - x).abs().flatten(2).amax(2) > 1e-9  # (B, C)
        assert not changed[:, kept].any()
        assert changed[:, [c for c in range(5) if c not in range(5)[kept]]].all()
    if key != "coupling.mixture":  # checkerboard: the other pixel parity
        parity = (torch.arange(4).view(4, 1) + torch.arange(4).view(1, 4)) % 2
        for flip in (False, True):
            layer = _module(key, (2, 4, 4), mask="checkerboard", flip=flip)
            perturb_(layer, 0.5, gen)
            with torch.no_grad():
                y, _ = layer(x[:, :2])
            same = ((y - x[:, :2]).abs() < 1e-12).all(0).all(0)
            assert torch.equal(same, parity == (1 if flip else 0))


def test_flip_false_is_the_old_coupling_and_old_checkpoints_load() -> None:
    old_args = {"hidden": 8, "net": "glow", "mask": "channel", "on": None, "scale": "sigmoid"}
    torch.manual_seed(0)
    old = KINDS["coupling.affine"].module_class()((4, 4, 4), old_args, None).double()
    gen = torch.Generator().manual_seed(1)
    perturb_(old, 0.5, gen)
    x = torch.randn(2, 4, 4, 4, generator=gen, dtype=torch.float64)
    for flip in (False, True):
        new = _module("coupling.affine", (4, 4, 4), flip=flip)
        new.load_state_dict(old.state_dict())  # same keys and shapes whatever flip is
        with torch.no_grad():
            same = max_abs_diff(new(x)[0], old(x)[0]) == 0.0
        assert same is (not flip)


# ---------------------------------------------------------------------------- W004
IN = "  input 4x4x4"


def test_w004_fires_on_same_half_checkerboard_couplings_without_mixing() -> None:
    (d,) = w004(
        t(
            "flow f {",
            "  input 1x8x8",
            "  level {",
            "    actnorm",
            "    coupling affine mask=checkerboard hidden=4",
            "    actnorm",
            "    coupling affine mask=checkerboard hidden=4",
            "    squeeze",
            "    invconv",
            "    coupling affine hidden=4",
            "  }",
            "}",
        )
    )
    assert d.severity == "warning" and d.span.line == 5
    assert "50% of the 1x8x8 entries of level 1 (32 of 64)" in d.message
    assert "`level1.actnorm` to `level1.squeeze`" in d.message
    assert "the pixels with h + w even" in " ".join(d.notes)
    assert "flip=true" in d.help


def test_w004_fires_on_same_half_channel_couplings_and_names_the_remedies() -> None:
    (d,) = w004(
        t(
            "flow f {",
            IN,
            "  coupling affine hidden=4",
            "  actnorm",
            "  coupling additive hidden=4",
            "}",
        )
    )
    assert "(32 of 64)" in d.message and "the prior" in d.message
    assert "channels 0-1" in " ".join(d.notes)
    assert "flip=true" in d.help and "invconv" in d.help and "permute" in d.help


@pytest.mark.parametrize(
    "body",
    [
        ["coupling affine hidden=4", "coupling affine hidden=4 flip=true"],
        ["coupling affine hidden=4", "invconv", "coupling affine hidden=4"],
        ["coupling affine hidden=4", "permute mode=reverse", "coupling affine hidden=4"],
        [
            "coupling affine mask=checkerboard hidden=4",
            "actnorm",
            "coupling spline mask=checkerboard flip=true hidden=4",
        ],
        [
            "coupling mixture hidden=4 components=2",
            "coupling mixture hidden=4 components=2 flip=true",
        ],
        ["actnorm", "invconv"],  # no coupling, nothing to warn about
        ["actnorm"],
    ],
)
def test_w004_is_silent_when_every_entry_is_reached(body: list[str]) -> None:
    assert w004(t("flow f {", IN, *(f"  {b}" for b in body), "}")) == []


def test_w004_finds_what_a_reversal_of_three_channels_misses() -> None:
    # reversing 3 channels keeps the middle one in the kept half of every channel coupling
    (d,) = w004(
        t(
            "flow f {",
            "  input 3x4x4",
            "  coupling affine hidden=4",
            "  permute mode=reverse",
            "  coupling affine hidden=4",
            "}",
        )
    )
    assert "(16 of 48)" in d.message and "channel 1" in " ".join(d.notes)


@pytest.mark.parametrize(
    "body",
    [
        ["coupling affine hidden=3", "actnorm", "coupling affine hidden=3"],
        [
            "coupling affine hidden=3 mask=checkerboard",
            "coupling additive hidden=3 mask=checkerboard",
        ],
        ["coupling affine hidden=3", "permute mode=reverse", "coupling affine hidden=3"],
        [
            "coupling spline hidden=3 bins=3 flip=true",
            "attention imap",
            "coupling affine hidden=3 flip=true",
        ],
        ["coupling affine hidden=3", "coupling spline hidden=3 flip=true bins=2"],  # odd C
        ["coupling affine hidden=3 flip=true", "coupling mixture hidden=3 components=2"],
        ["attention imap mask=complement", "coupling affine hidden=3 mask=checkerboard"],
    ],
)
def test_w004_agrees_with_the_jacobian(body: list[str]) -> None:
    """The fraction W004 reports is that of the outputs whose Jacobian row has one non-zero."""
    text = t("flow f {", "  input 3x4x4", *(f"  {b}" for b in body), "}")
    found = w004(text)
    model = flowspec.compile(flowspec.loads(text), device="cpu").double()
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(1, 3, 4, 4, generator=gen, dtype=torch.float64)
    model.train()
    with torch.no_grad():
        model(x)
    perturb_(model, 0.5, gen)
    jac = torch.autograd.functional.jacobian(
        lambda v: model(v.view_as(x))[0][0].reshape(-1), x.reshape(-1)
    )
    alone = float(((jac.abs() > 1e-12).sum(1) == 1).double().mean())
    assert alone == (_fraction(found[0]) if found else 0.0), (alone, found)


def test_w004_takes_plugin_kinds_through_alone_after() -> None:
    from flowspec.kinds import LayerKind, kind

    class Entrywise(LayerKind):  # declares that it changes no entry's dependence
        key = "w004entrywise"
        module = "nowhere:Module"

        @classmethod
        def alone_after(cls, shape, args, alone):
            return alone

    class Opaque(LayerKind):  # declares nothing: counts as mixing every entry
        key = "w004opaque"
        module = "nowhere:Module"

    try:
        kind(Entrywise)
        kind(Opaque)
        stack = ("  coupling affine hidden=4", "  LAYER", "  coupling affine hidden=4", "}")
        text = t("flow f {", IN, *stack)
        assert len(w004(text.replace("LAYER", "w004entrywise"))) == 1
        assert w004(text.replace("LAYER", "w004opaque")) == []
    finally:
        KINDS.pop("w004entrywise", None)
        KINDS.pop("w004opaque", None)


def _shipped():
    out = []
    for path in sorted((ROOT / "specs").glob("*.flow")):
        specs, diags = analyze(path, all_flows=True)
        out.append((path.name, [s.name for s in specs], [d for d in diags if d.code == "W004"]))
    return out


def test_w004_fires_on_nothing_shipped() -> None:
    shipped = _shipped()
    assert {"realnvp.flow", "nice.flow", "nsf.flow", "glow_mnist.flow"} <= {p for p, *_ in shipped}
    assert [(p, d.message) for p, _, found in shipped for d in found] == []


# ---------------------------------------------------------------------------- RealNVP
def _jacobian(model, x):
    def flat(v):
        zs, _ = model(v.view_as(x))
        return torch.cat([z.reshape(-1) for z in zs])

    return torch.autograd.functional.jacobian(flat, x.reshape(-1))


def _realnvp(text: str | None = None):
    over = {"L": 2, "hidden": 4, "size": 8}
    spec = (
        flowspec.loads(text, overrides=over)
        if text
        else flowspec.load(ROOT / "specs/realnvp.flow", overrides=over)
    )
    model = flowspec.compile(spec, device="cpu").double()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(1, 1, 8, 8, generator=gen, dtype=torch.float64) - 0.5  # model space
    model.train()
    with torch.no_grad():
        model(x)
    perturb_(model, 0.3, gen)
    model.eval()
    return model, x


def test_realnvp_has_no_output_that_depends_on_a_single_input() -> None:
    model, x = _realnvp()
    jac = _jacobian(model, x)
    assert jac.shape == (64, 64)
    assert int(((jac.abs() > 1e-12).sum(1) < 2).sum()) == 0
    with torch.no_grad():
        _, logdet = model(x)
    assert abs(float(logdet[0]) - float(torch.linalg.slogdet(jac)[1])) < 1e-8


def test_realnvp_without_its_flips_leaves_entries_untouched_and_w004_says_so() -> None:
    text = (ROOT / "specs/realnvp.flow").read_text().replace("flip=true", "flip=false")
    assert len(w004(text)) >= 2
    model, x = _realnvp(text)
    jac = _jacobian(model, x)
    assert int(((jac.abs() > 1e-12).sum(1) < 2).sum()) > 0


def test_realnvp_follows_the_paper() -> None:
    spec = flowspec.load(ROOT / "specs/realnvp.flow")
    kinds = [
        (layer.kind, layer.args.get("mask"), layer.args.get("flip"))
        for layer in spec.layers
        if layer.kind != "actnorm"
    ]
    cb = [("coupling.affine", "checkerboard", f) for f in (False, True, False)]
    ch = [("coupling.affine", "channel", f) for f in (False, True, False)]
    scale = [*cb, ("squeeze", None, None), *ch, ("split", None, None)]
    last = [("coupling.affine", "checkerboard", f) for f in (False, True, False, True)]
    assert kinds == [("logit", None, None), *scale, *scale, *last]
    assert spec.layers[0].args == {"alpha": 0.05}


# ---------------------------------------------------------------------------- spline
def _spline_raw(shape, bins, scale, seed=0):
    gen = torch.Generator().manual_seed(seed)
    return [
        scale * torch.randn((*shape, n), generator=gen, dtype=torch.float64)
        for n in (bins, bins, bins - 1)
    ]


def test_spline_is_monotone_identity_outside_and_inverts_in_closed_form() -> None:
    from flowspec.nn.spline import rq_spline

    x = torch.linspace(-5.0, 5.0, 2001, dtype=torch.float64)
    raw = [r.expand(2001, -1) for r in _spline_raw((1,), 6, 3.0)]  # one strongly bent spline
    y, log_d = rq_spline(x, *raw, 3.0, inverse=False)
    assert torch.all(y[1:] > y[:-1])
    outside = x.abs() > 3.0
    assert torch.equal(y[outside], x[outside]) and torch.all(log_d[outside] == 0)
    # the derivative it reports is the derivative of the map
    xg = x.clone().requires_grad_(True)
    (grad,) = torch.autograd.grad(rq_spline(xg, *raw, 3.0, inverse=False)[0].sum(), xg)
    assert max_abs_diff(torch.exp(log_d), grad) < 1e-9
    x_back, log_back = rq_spline(y, *raw, 3.0, inverse=True)
    assert max_abs_diff(x_back, x) < 1e-12 and max_abs_diff(log_back, log_d) < 1e-9
    # float32, many random splines. Strongly bent ones are nearly flat in places (f' ~ 1e-6),
    # where no inverse recovers x to 1e-5; the closed-form root is stable: f(x_back) is y up
    # to a few roundings of y and of f' x (a mixed error bound). Moderate ones round-trip.
    eps = torch.finfo(torch.float32).eps
    x32 = 4 * torch.randn(4096, generator=torch.Generator().manual_seed(2))
    for scale in (4.0, 2.0, 0.5):
        raw32 = [r.float() for r in _spline_raw((4096,), 8, scale, seed=1)]
        y32, log_d32 = rq_spline(x32, *raw32, 3.0, inverse=False)
        x_back = rq_spline(y32, *raw32, 3.0, inverse=True)[0]
        err = (rq_spline(x_back, *raw32, 3.0, inverse=False)[0] - y32).abs()
        assert torch.all(err <= 8 * eps * (1 + y32.abs() + log_d32.exp() * (1 + x32.abs())))
    assert max_abs_diff(x_back, x32) < 1e-5


def test_spline_of_a_zero_network_is_the_identity() -> None:
    from flowspec.nn.spline import rq_spline

    x = torch.linspace(-4.0, 4.0, 101, dtype=torch.float64)
    raw = [torch.zeros(101, n, dtype=torch.float64) for n in (8, 8, 7)]
    y, log_d = rq_spline(x, *raw, 3.0, inverse=False)
    assert max_abs_diff(y, x) < 1e-12 and max_abs_diff(log_d, torch.zeros_like(x)) < 1e-12


# ---------------------------------------------------------------------------- logit, logistic
def test_logit_and_logistic_prior_make_the_uniform_density_and_its_bits_per_dim() -> None:
    """logistic(logit(p)) has density p (1 - p): with the logit's log-det, log p(x) is the
    constant D log(1 - 2 alpha) of the uniform density on the box, and bits/dim of b-bit
    data is exactly b - log2(1 - 2 alpha)."""
    alpha, bits = 0.05, 5
    model = flowspec.compile(
        flowspec.loads(
            t("flow f {", "  input 2x4x4", "  prior logistic", f"  logit alpha={alpha}", "}")
        ),
        device="cpu",
    ).double()
    x = (
        torch.rand(3, 2, 4, 4, generator=torch.Generator().manual_seed(0), dtype=torch.float64)
        - 0.5
    )
    with torch.no_grad():
        logp = model.log_prob(x)
    assert (
        max_abs_diff(logp, torch.full((3,), 32 * math.log1p(-2 * alpha), dtype=torch.float64))
        < 1e-10
    )
    bpd = bits_per_dim(logp, 32, bits)
    assert max_abs_diff(bpd, torch.full_like(bpd, bits - math.log2(1 - 2 * alpha))) < 1e-10


def test_logistic_prior_density_and_noise() -> None:
    prior = PRIORS["logistic"].module_class()((2, 3, 3), {"learned": False, "on": None}, None)
    eps = torch.linspace(-30, 30, 18, dtype=torch.float64).view(1, 2, 3, 3)
    want = -eps - 2 * torch.nn.functional.softplus(-eps)  # log sigmoid'(eps)
    assert max_abs_diff(prior.log_density(eps), want.sum().view(1)) < 1e-9
    gen = torch.Generator().manual_seed(0)
    noise = prior.sample_noise((200_000,), dtype=torch.float64, generator=gen)
    assert torch.isfinite(noise).all()
    assert abs(float(noise.mean())) < 0.02
    assert abs(float(noise.std()) - math.pi / math.sqrt(3)) < 0.02
    # the model samples with it: a temperature-T sample pushes back to T * logistic noise
    model = (
        flowspec.compile(
            flowspec.loads(
                t("flow f {", "  input 2x3x3", "  prior logistic learned", "  actnorm", "}")
            ),
            device="cpu",
        )
        .double()
        .eval()
    )
    g1, g2 = torch.Generator().manual_seed(5), torch.Generator().manual_seed(5)
    xs = model.sample(4, temperature=0.5, generator=g1)
    with torch.no_grad():
        (z,), _ = model(xs)
    want = 0.5 * prior.sample_noise((4, 2, 3, 3), dtype=torch.float64, generator=g2)
    assert max_abs_diff(z, want) < 1e-10


def test_nice_uses_the_logistic_prior_and_alternating_additive_couplings() -> None:
    spec = flowspec.load(ROOT / "specs/nice.flow")
    assert spec.prior.kind == "logistic" and spec.prior.learned
    couplings = [layer for layer in spec.layers if layer.kind == "coupling.additive"]
    assert [c.args["flip"] for c in couplings] == [False, True, False, True]
    nsf = flowspec.load(ROOT / "specs/nsf.flow")
    assert {layer.kind for layer in nsf.layers} >= {"coupling.spline", "invconv"}
