"""Registry-wide numerical invariants of every layer kind in ``flowspec.layers.MODULES``.

For every registered kind and every case below (odd channel counts, non-square inputs, every
enum value, conditional variants): after one training-mode forward (ActNorm's init) and a
random perturbation of every parameter,

* ``logdet`` equals ``slogdet`` of the per-sample autograd Jacobian to 1e-8 (float64),
* ``inverse(forward(x)) == x`` to 1e-10 (float64) and 1e-5 (float32),
* the inverse's log-det is minus the forward one,
* a fresh module that loads the state_dict computes the same map.

A kind registered without an entry in ``CASES`` fails here: new kinds are tested the moment
they are registered.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
from numerics import encoder_modules, layer_modules
from torch import Tensor

from flowspec.kinds import KINDS

ENCODERS = encoder_modules()
MODULES = layer_modules()

try:
    from numerics import jacobian_logdet, max_abs_diff, perturb_
except ImportError:  # tests/ imported as a package
    from tests.numerics import jacobian_logdet, max_abs_diff, perturb_


BATCH = 2
COND = "c"

#: The arguments of each kind with the defaults the caller fills in.
DEFAULTS: dict[str, dict[str, Any]] = {
    "actnorm": {},
    "invconv": {"lu": True},
    "permute": {"mode": "reverse"},
    "coupling.affine": {
        "hidden": 512,
        "net": "glow",
        "mask": "channel",
        "on": None,
        "scale": "sigmoid",
        "flip": False,
    },
    "coupling.additive": {
        "hidden": 512,
        "net": "glow",
        "mask": "channel",
        "on": None,
        "flip": False,
    },
    "coupling.mixture": {"hidden": 96, "components": 32, "net": "glow", "on": None, "flip": False},
    "coupling.spline": {
        "hidden": 96,
        "net": "glow",
        "mask": "channel",
        "on": None,
        "flip": False,
        "bins": 8,
        "tail": 3.0,
    },
    "injector": {"hidden": 64, "on": COND, "scale": "sigmoid"},
    "coupling.srflow": {
        "hidden": 64,
        "net": "glow_actnorm",
        "on": COND,
        "inject": True,
        "scale": "sigmoid",
    },
    "attention.imap": {"act": "sigmoid", "mask": "checkerboard", "residual": None},
    "attention.isdp": {"heads": 1, "patches": 4, "mask": "checkerboard", "residual": None},
    "squeeze": {"factor": 2},
    "split": {
        "prior": "learned",
        "on": None,
        "hidden": 32,
        "layers": 3,
        "kernel": 5,
        "dilation": 1,
    },
    "prior.gaussian": {"learned": False, "on": None},
    "logit": {"alpha": 0.05},
    "prior.logistic": {"learned": False, "on": None},
    "prior.convlstm": {"hidden": 32, "layers": 3, "kernel": 3, "dilation": 1},
    "cond_actnorm": {"on": COND},
    "cond_invconv": {"lu": True, "on": COND},
    "coupling.cond_affine": {"hidden": 512, "cond_hidden": 128, "on": COND},
    "residual": {
        "hidden": 512,
        "net": "conv",
        "kernels": "3-1-3",
        "coeff": 0.98,
        "power_iters": 5,
        "preact": True,
        "logdet": "exact",
        "dist": "poisson",
        "terms": 2,
        "eval_terms": 20,
    },
    "cglow_actnorm": {"down": 1, "cond_hidden": 128, "cond_units": 64, "on": COND},
    "cglow_invconv": {"down": 1, "cond_hidden": 128, "cond_units": 64, "on": COND},
    "coupling.cglow": {"hidden": 256, "down": 1, "on": COND},
}


@dataclass(frozen=True)
class Case:
    shape: tuple[int, int, int]
    args: dict[str, Any] = field(default_factory=dict)
    cond: int | None = None  # channels of the condition; sets on=COND

    @property
    def name(self) -> str:
        shown = ",".join(f"{k}={v}" for k, v in self.args.items())
        c = f"|cond{self.cond}" if self.cond else ""
        return "x".join(map(str, self.shape)) + (f"|{shown}" if shown else "") + c


SMALL = {"hidden": 8}
CASES: dict[str, list[Case]] = {
    "actnorm": [Case((3, 4, 4)), Case((2, 5, 3))],
    "invconv": [
        Case((3, 4, 4)),
        Case((4, 3, 5), {"lu": False}),
        Case((1, 4, 4), {"lu": True}),
    ],
    "permute": [Case((3, 4, 4)), Case((5, 3, 4), {"mode": "shuffle"})],
    "coupling.affine": [
        Case((3, 4, 4), SMALL),
        Case((1, 4, 6), {**SMALL, "net": "resnet", "mask": "checkerboard"}),
        Case((2, 4, 4), {**SMALL, "net": "resnet"}, cond=3),
        Case((3, 5, 4), {**SMALL, "mask": "checkerboard"}, cond=2),
        Case((4, 4, 4)),  # the real defaults: hidden=512
        Case((3, 4, 4), {**SMALL, "scale": "bounded"}),  # exp(b tanh(.))
        Case((1, 4, 6), {**SMALL, "mask": "checkerboard", "scale": "bounded"}, cond=2),
        Case((3, 4, 4), {**SMALL, "flip": True}),  # the first C//2 channels transformed
        Case((2, 3, 5), {**SMALL, "mask": "checkerboard", "flip": True}, cond=2),
    ],
    "coupling.additive": [
        Case((3, 4, 4), SMALL),
        Case((2, 3, 5), {**SMALL, "net": "resnet", "mask": "checkerboard"}, cond=2),
        Case((5, 4, 4), {**SMALL, "flip": True}),
        Case((1, 4, 5), {**SMALL, "mask": "checkerboard", "flip": True}),
    ],
    "coupling.mixture": [
        Case((3, 4, 4), {**SMALL, "components": 4}),
        Case((2, 4, 6), {**SMALL, "components": 3, "net": "resnet"}, cond=2),
        Case((2, 4, 4)),  # the real defaults: hidden=96, components=32
        Case((3, 4, 4), {**SMALL, "components": 3, "flip": True}, cond=2),
        # Flow++'s network (2 heads of width 4; 3 heads of widths 3, 3, 2) and Flow++'s scale
        Case(
            (3, 4, 4),
            {
                **SMALL,
                "components": 3,
                "net": "flowpp",
                "net_args": {"blocks": 2, "heads": 2},
                "scale": "tanh",
            },
        ),
        Case(
            (4, 3, 5),
            {**SMALL, "components": 2, "net": "flowpp", "net_args": {"blocks": 1, "heads": 3}},
            cond=2,
        ),
        Case((2, 4, 4), {**SMALL, "net": "flowpp", "scale": "tanh", "flip": True}),
    ],
    "coupling.spline": [
        Case((3, 4, 4), SMALL),
        Case((3, 4, 4), {**SMALL, "flip": True, "bins": 3}),
        Case((1, 4, 6), {**SMALL, "mask": "checkerboard", "tail": 1.0}),  # both tails used
        Case((2, 3, 5), {**SMALL, "mask": "checkerboard", "flip": True, "net": "resnet"}, cond=2),
        Case((4, 4, 4), {**SMALL, "bins": 2, "tail": 0.5}, cond=3),
        Case((2, 4, 4)),  # the real defaults: hidden=96, bins=8, tail=3
    ],
    "injector": [
        Case((3, 4, 4), SMALL, cond=2),
        Case((2, 6, 4), cond=3),
        Case((3, 4, 4), {**SMALL, "scale": "bounded"}, cond=2),
    ],
    "coupling.srflow": [  # SRFlow's injector + coupling; odd C: C//2 channels drive the rest
        # (glow_actnorm scales its output by exp(3 logs): at hidden=8 a perturbed logs makes
        # shifts of ~20 and scales near 1e-4, which float32 cannot invert to 1e-5)
        Case((4, 4, 4), {**SMALL, "net": "glow"}, cond=3),
        Case((3, 5, 4), {**SMALL, "scale": "bounded"}, cond=2),
        Case((2, 4, 4), {**SMALL, "inject": False}, cond=2),
        Case((4, 3, 5), {**SMALL, "net": "glow", "scale": "bounded"}, cond=3),
        Case((12, 4, 4), cond=5),  # the real defaults: hidden=64, net=glow_actnorm
    ],
    "attention.imap": [  # the identity form (default), then the paper's and the residual
        Case((3, 4, 4)),
        Case((3, 5, 4), {"mask": "complement"}),
        Case((2, 4, 6), {"form": "paper"}),
        Case((4, 3, 3), {"mask": "complement", "form": "paper"}),
        Case((3, 4, 4), {"residual": False}),  # the older spelling of form=paper
        Case((3, 4, 4), {"residual": True}),  # bounded scales exp(b tanh(.))
        Case((2, 5, 4), {"mask": "complement", "form": "residual"}),
    ],
    "attention.isdp": [  # A = g (I + beta S) (default), paper, residual
        Case((3, 4, 4)),  # even patch sides: one column pattern
        Case((3, 6, 6)),  # odd patch sides: two patterns
        Case((2, 6, 4), {"heads": 2, "mask": "complement"}),
        Case((5, 2, 6), {"heads": 3}),  # 1x3 patches, P = 15
        Case((1, 6, 6), {"heads": 2, "patches": 9}),
        Case((2, 4, 4), {"heads": 3, "patches": 1}),
        Case((3, 4, 4), {"form": "paper"}),  # softmax + (1 + delta + softplus) I
        Case((3, 6, 6), {"form": "paper"}),
        Case((2, 6, 4), {"heads": 2, "mask": "complement", "residual": False}),
        Case((3, 6, 6), {"residual": True}),  # A = I + beta softmax, two patterns
        Case((2, 6, 4), {"heads": 2, "mask": "complement", "form": "residual"}),
    ],
    "squeeze": [Case((3, 4, 6)), Case((2, 6, 3), {"factor": 3})],
    "split": [
        Case((3, 4, 4)),
        Case((4, 4, 6), {"prior": "fixed"}),
        Case((5, 4, 4), cond=2),
        # mAR-SCF's ConvLSTM prior: channel-autoregressive given the kept half (and cond)
        Case((4, 4, 4), {"prior": "convlstm", "hidden": 4, "layers": 2, "kernel": 3}),
        Case((5, 3, 4), {"prior": "convlstm", "hidden": 3, "layers": 1, "dilation": 2}, cond=2),
    ],
    "prior.gaussian": [
        Case((3, 4, 4)),
        Case((2, 4, 6), {"learned": True}),
        Case((3, 4, 4), {"learned": True}, cond=2),
    ],
    "logit": [Case((3, 4, 4)), Case((1, 5, 3), {"alpha": 0.3}), Case((2, 4, 4), {"alpha": 1e-6})],
    "prior.convlstm": [  # mAR-SCF's top prior: channel-autoregressive, no context
        Case((3, 4, 4), {"hidden": 4, "layers": 2}),
        Case((5, 3, 4), {"hidden": 3, "layers": 1, "kernel": 5, "dilation": 2}),
    ],
    "prior.logistic": [
        Case((3, 4, 4)),
        Case((2, 4, 6), {"learned": True}),
        Case((3, 4, 4), {"learned": True}, cond=2),
    ],
    "cond_actnorm": [Case((3, 6, 6), cond=2), Case((2, 4, 5), cond=3)],  # 4x5: padded to 5x5
    "cond_invconv": [
        Case((3, 6, 6), cond=2),
        Case((4, 5, 6), {"lu": False}, cond=2),  # the whole matrix, slogdet per sample
        Case((1, 4, 4), cond=2),
    ],
    "coupling.cond_affine": [
        Case((3, 4, 4), {"hidden": 8, "cond_hidden": 4}, cond=2),
        Case((4, 5, 5), {"hidden": 8, "cond_hidden": 4}, cond=3),
        Case((2, 4, 4), cond=2),  # the real defaults: hidden=512, cond_hidden=128
    ],
    "residual": [  # exact mode (the estimator's mean is tested in tests/test_residual.py)
        Case((3, 4, 4), {"hidden": 8}),
        Case((2, 3, 5), {"hidden": 6, "kernels": "3-3", "preact": False}),
        Case((3, 2, 2), {"hidden": 8, "net": "fc"}),
    ],
    # C-Glow's kinds read the condition at 2^down x the layer's size
    "cglow_actnorm": [
        Case((3, 4, 4), {"cond_hidden": 4, "cond_units": 5}, cond=3),
        Case((2, 2, 4), {"down": 2, "cond_hidden": 3, "cond_units": 4}, cond=2),
        Case((4, 8, 8), {"down": 0}, cond=3),
    ],  # real widths 128 / 64
    "cglow_invconv": [
        Case((3, 4, 4), {"cond_hidden": 4, "cond_units": 5}, cond=3),
        Case((5, 2, 4), {"down": 2, "cond_hidden": 3, "cond_units": 4}, cond=2),
        Case((1, 4, 4), {"cond_hidden": 2, "cond_units": 3}, cond=3),
        Case((12, 4, 4), cond=3),
    ],  # real widths 128 / 64
    "coupling.cglow": [
        Case((3, 4, 4), {"hidden": 8}, cond=3),
        Case((4, 2, 3), {"hidden": 6, "down": 2}, cond=2),
        Case((2, 4, 4), {"down": 0}, cond=3),
    ],  # the real width: hidden=256
}


def _params() -> list[Any]:
    out = []
    for kind in MODULES:
        cases = CASES.get(kind) or [None]
        for i, case in enumerate(cases):
            name = f"{kind}[{case.name if case else 'MISSING'}]#{i}"
            out.append(pytest.param(kind, case, id=name))
    return out


@dataclass
class Setup:
    module: torch.nn.Module
    x: Tensor
    cond: Tensor | None


def build(kind: str, case: Case | None, dtype: torch.dtype, seed: int = 0) -> Setup:
    """Construct, initialise (one training forward) and perturb a layer; draw x and cond."""
    if case is None or kind not in DEFAULTS:
        pytest.fail(f"layer kind {kind!r} is registered but has no test case/defaults here")
    args = {**DEFAULTS[kind], **case.args}
    if case.cond:
        args["on"] = COND
    torch.manual_seed(seed)
    module = MODULES[kind](case.shape, args, case.cond).to(dtype)
    gen = torch.Generator().manual_seed(seed + 1)
    x = torch.randn(BATCH, *case.shape, generator=gen, dtype=torch.float64).to(dtype)
    domain = getattr(module, "domain", None)  # a layer defined on an interval (logit)
    if domain is not None:
        lo, hi = domain
        x = (lo + (hi - lo) * torch.sigmoid(x.double())).to(dtype)
    cond = None
    if case.cond:  # at the size the kind reads its condition (C-Glow's: full size)
        declared = KINDS.get(kind)
        hw = declared.cond_hw(case.shape, args) if declared else case.shape[1:]
        cshape = (BATCH, case.cond, *hw)
        cond = torch.randn(cshape, generator=gen, dtype=torch.float64).to(dtype)
    module.train()
    with torch.no_grad():
        run_forward(module, x, cond)  # data-dependent init (ActNorm)
    perturb_(module, 0.5, gen)
    return Setup(module, x, cond)


def run_forward(module: torch.nn.Module, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
    """Forward as a dimension-preserving map: a split's outputs are flattened and joined."""
    out = module(x, cond)
    if len(out) == 3:
        y, z, logdet = out
        return torch.cat([y.flatten(1), z.flatten(1)], dim=1), logdet
    return out


def run_inverse(module: torch.nn.Module, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
    """``inverse(forward(x))`` for any layer, with the inverse's log-det."""
    out = module(x, cond)
    if len(out) == 3:
        return module.inverse(out[0], out[1], cond)
    return module.inverse(out[0], cond)


def test_every_kind_has_cases() -> None:
    missing = sorted(set(MODULES) - set(CASES))
    assert not missing, f"registered kinds without numerics cases: {missing}"
    assert set(DEFAULTS) >= set(MODULES)


@pytest.mark.parametrize(("kind", "case"), _params())
def test_logdet_matches_autograd_jacobian(kind: str, case: Case | None) -> None:
    s = build(kind, case, torch.float64)
    out = s.module(s.x, s.cond)
    logdet = out[-1]
    assert tuple(out[0].shape[1:]) == tuple(s.module.out_shape)
    if len(out) == 3:  # split: the factored-out latent has the declared shape
        assert tuple(out[1].shape[1:]) == tuple(s.module.z_shape)
    assert logdet.shape == (BATCH,) and logdet.dtype == torch.float64
    expected, _ = jacobian_logdet(lambda v, c: run_forward(s.module, v, c)[0], s.x, s.cond)
    assert max_abs_diff(logdet, expected) < 1e-8, (logdet, expected)
    # samples are independent: the last sample alone gives the same output and log-det
    last = None if s.cond is None else s.cond[-1:]
    y_one, logdet_one = run_forward(s.module, s.x[-1:], last)
    assert max_abs_diff(y_one, run_forward(s.module, s.x, s.cond)[0][-1:]) < 1e-12
    assert max_abs_diff(logdet_one, logdet[-1:]) < 1e-12


@pytest.mark.parametrize(("kind", "case"), _params())
def test_inverse_float64(kind: str, case: Case | None) -> None:
    s = build(kind, case, torch.float64)
    _, logdet = run_forward(s.module, s.x, s.cond)
    x_rec, inv_logdet = run_inverse(s.module, s.x, s.cond)
    assert x_rec.shape == s.x.shape
    assert max_abs_diff(x_rec, s.x) < 1e-10
    assert inv_logdet.shape == (BATCH,)
    assert max_abs_diff(inv_logdet, -logdet) < 1e-8


@pytest.mark.parametrize(("kind", "case"), _params())
def test_inverse_logdet_matches_autograd_jacobian(kind: str, case: Case | None) -> None:
    """The inverse is differentiable and its log-det is that of its own Jacobian."""
    s = build(kind, case, torch.float64)
    with torch.no_grad():
        out = s.module(s.x, s.cond)
    if len(out) == 3:  # split: invert the joined (y, z) vector
        y, z, _ = out
        n = y[0].numel()
        v = torch.cat([y.flatten(1), z.flatten(1)], dim=1)

        def inv(u: Tensor, c: Tensor | None) -> Tensor:
            yy, zz = u[:, :n].reshape(-1, *y.shape[1:]), u[:, n:].reshape(-1, *z.shape[1:])
            return s.module.inverse(yy, zz, c)[0]

        _, inv_logdet = s.module.inverse(y, z, s.cond)
    else:
        v = out[0]

        def inv(u: Tensor, c: Tensor | None) -> Tensor:
            return s.module.inverse(u, c)[0]

        _, inv_logdet = s.module.inverse(v, s.cond)
    expected, _ = jacobian_logdet(inv, v, s.cond)
    assert max_abs_diff(inv_logdet, expected) < 1e-8


@pytest.mark.parametrize(("kind", "case"), _params())
def test_inverse_float32(kind: str, case: Case | None) -> None:
    s = build(kind, case, torch.float32)
    with torch.no_grad():
        x_rec, _ = run_inverse(s.module, s.x, s.cond)
    assert x_rec.dtype == torch.float32
    assert max_abs_diff(x_rec, s.x) < 1e-5


@pytest.mark.parametrize(("kind", "case"), _params())
def test_state_dict_round_trip(kind: str, case: Case | None) -> None:
    s = build(kind, case, torch.float64)
    args = {**DEFAULTS[kind], **case.args, **({"on": COND} if case.cond else {})}
    torch.manual_seed(123)  # a different random init, overwritten by the load
    fresh = MODULES[kind](case.shape, args, case.cond).to(torch.float64)
    fresh.load_state_dict(s.module.state_dict())
    fresh.train()  # must not re-run any data-dependent init
    with torch.no_grad():
        y_ref, ld_ref = run_forward(s.module, s.x, s.cond)
        run_forward(fresh, s.x * 2.0 + 1.0, s.cond)  # a first training forward: no init
        y_new, ld_new = run_forward(fresh, s.x, s.cond)
    assert max_abs_diff(y_new, y_ref) == 0.0
    assert max_abs_diff(ld_new, ld_ref) == 0.0


# ---------------------------------------------------------------------------- actnorm


def _actnorm(c: int = 3) -> torch.nn.Module:
    return MODULES["actnorm"]((c, 4, 4), {}, None).double()


def test_actnorm_initialises_once_to_zero_mean_unit_variance() -> None:
    layer = _actnorm().train()
    x = torch.randn(8, 3, 4, 4, dtype=torch.float64) * 3.0 + 2.0
    y, _ = layer(x)
    assert bool(layer.initialized)
    per_channel = y.transpose(0, 1).reshape(3, -1)
    assert torch.allclose(per_channel.mean(1), torch.zeros(3, dtype=torch.float64), atol=1e-10)
    assert torch.allclose(per_channel.std(1, unbiased=False), torch.ones(3, dtype=torch.float64))
    state = {k: v.clone() for k, v in layer.state_dict().items()}
    layer(torch.randn(8, 3, 4, 4, dtype=torch.float64) * 10.0 - 5.0)
    for k, v in layer.state_dict().items():
        assert torch.equal(v, state[k]), f"{k} changed on the second forward"


def test_actnorm_does_not_initialise_in_eval_or_inverse() -> None:
    layer = _actnorm().eval()
    layer(torch.randn(4, 3, 4, 4, dtype=torch.float64) + 7.0)
    layer.train().inverse(torch.randn(4, 3, 4, 4, dtype=torch.float64))
    assert not bool(layer.initialized)
    assert torch.count_nonzero(layer.bias) == 0


def test_actnorm_loaded_checkpoint_is_not_reinitialised() -> None:
    layer = _actnorm().train()
    layer(torch.randn(8, 3, 4, 4, dtype=torch.float64) * 3.0 + 2.0)
    fresh = _actnorm().train()
    fresh.load_state_dict(layer.state_dict())
    fresh(torch.randn(8, 3, 4, 4, dtype=torch.float64) * 0.1 - 9.0)
    assert torch.equal(fresh.bias, layer.bias)
    assert torch.equal(fresh.log_scale, layer.log_scale)


def test_actnorm_zero_variance_channel_is_finite() -> None:
    layer = _actnorm().train()
    x = torch.randn(4, 3, 4, 4, dtype=torch.float64)
    x[:, 1] = 5.0
    y, logdet = layer(x)
    assert torch.isfinite(y).all() and torch.isfinite(logdet).all()
    assert torch.equal(y[:, 1], torch.zeros_like(y[:, 1]))
    assert float(layer.log_scale.detach()[0, 1]) == 0.0
    x_rec, _ = layer.inverse(y)
    assert max_abs_diff(x_rec, x) < 1e-12


# ---------------------------------------------------------------------------- mixture


@pytest.mark.parametrize(("dtype", "rtol"), [(torch.float64, 1e-12), (torch.float32, 1e-5)])
def test_mixture_inverts_far_in_the_tails(dtype: torch.dtype, rtol: float) -> None:
    s = build("coupling.mixture", Case((2, 4, 4), {**SMALL, "components": 4}), dtype)
    x = s.x.clone()
    x[:, 1] = torch.linspace(-1e3, 1e3, 32, dtype=dtype).view(2, 4, 4)  # the transformed half
    with torch.no_grad():
        y, logdet = s.module(x)
        x_rec, inv_logdet = s.module.inverse(y)
    assert torch.isfinite(y).all() and torch.isfinite(logdet).all()
    assert torch.all((x_rec - x).abs() <= rtol * (1 + x.abs()))
    assert torch.allclose(inv_logdet, -logdet, rtol=rtol, atol=rtol)


# ---------------------------------------------------------------------------- construction


@pytest.mark.parametrize(
    ("kind", "shape", "args", "cond"),
    [
        ("coupling.affine", (1, 4, 4), {"mask": "channel"}, None),
        ("coupling.additive", (3, 4, 4), {"mask": "diagonal"}, None),
        ("coupling.affine", (3, 4, 4), {"net": "mlp"}, None),
        ("coupling.mixture", (1, 4, 4), {}, None),
        ("injector", (3, 4, 4), {"on": None}, None),
        ("split", (1, 4, 4), {}, None),
        ("squeeze", (3, 4, 5), {}, None),
        ("permute", (3, 4, 4), {"mode": "random"}, None),
        ("attention.imap", (3, 4, 4), {"act": "softmax"}, None),
        ("attention.imap", (3, 4, 4), {"mask": "stripes"}, None),
    ],
)
def test_invalid_construction_raises_value_error(
    kind: str, shape: tuple[int, int, int], args: dict[str, Any], cond: int | None
) -> None:
    with pytest.raises(ValueError):
        MODULES[kind](shape, {**DEFAULTS[kind], **args}, cond)


def test_conditional_layer_without_cond_raises() -> None:
    layer = MODULES["injector"]((2, 4, 4), {"hidden": 8, "on": COND}, 3)
    with pytest.raises(ValueError, match="cond"):
        layer(torch.randn(1, 2, 4, 4))


# ---------------------------------------------------------------------------- encoders


@pytest.mark.parametrize(
    ("name", "in_shape", "args"),
    [
        ("rrdb", (3, 5, 4), {"blocks": 2, "features": 16}),
        ("rrdb", (1, 3, 3), {"blocks": 1, "features": 8}),
        ("convnet", (7, 6, 6), {"blocks": 2, "features": 8}),
        ("convnet", (2, 4, 5), {"blocks": 0, "features": 5}),
        ("palette", (11, 4, 5), {"features": 3}),
    ],
)
def test_encoder_output_shape(
    name: str, in_shape: tuple[int, int, int], args: dict[str, int]
) -> None:
    enc = ENCODERS[name](in_shape, args)
    out = enc(torch.randn(2, *in_shape))
    assert tuple(out.shape) == (2, args["features"], *in_shape[1:])
    assert torch.isfinite(out).all()
