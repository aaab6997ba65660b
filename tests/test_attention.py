"""iMap / iSDP specifics: the exact mask-aware log-dets (and where the paper's differ),
column patterns, argument validation, and invertibility for extreme parameter values."""

from __future__ import annotations

import math
from typing import Any

import pytest
import torch
from numerics import layer_modules

from flowspec.layers._attention import BETA_BOUND
from flowspec.layers.imap import IMapArgs
from flowspec.layers.isdp import DIAG_FLOOR, ISDPArgs, ISDPKind
from flowspec.nn.imap import IMap
from flowspec.nn.isdp import ISDP

MODULES = layer_modules()

try:
    from numerics import jacobian_logdet, max_abs_diff, perturb_
except ImportError:  # tests/ imported as a package
    from tests.numerics import jacobian_logdet, max_abs_diff, perturb_


F64 = torch.float64


def _imap(shape: tuple[int, int, int], mask: str = "checkerboard", form: str = "identity") -> IMap:
    torch.manual_seed(0)
    args = {"act": "sigmoid", "mask": mask, "form": form}
    layer = MODULES["attention.imap"](shape, args, None).to(F64)
    perturb_(layer, 0.5, torch.Generator().manual_seed(1))
    return layer


def _isdp(shape: tuple[int, int, int], **args: Any) -> ISDP:
    torch.manual_seed(0)
    full = {"heads": 1, "patches": 4, "mask": "checkerboard", "form": "paper", **args}
    return MODULES["attention.isdp"](shape, full, None).to(F64)


def _x(shape: tuple[int, int, int], batch: int = 2, seed: int = 2) -> torch.Tensor:
    return torch.randn(batch, *shape, generator=torch.Generator().manual_seed(seed), dtype=F64)


# ---------------------------------------------------------------------------- iMap


@pytest.mark.parametrize("mask", ["checkerboard", "complement"])
def test_imap_free_count_per_position(mask: str) -> None:
    """n_p is C/2 for even C, and alternates between ceil and floor of C/2 for odd C."""
    even, odd = _imap((4, 3, 3), mask), _imap((3, 3, 3), mask)
    assert torch.all(even.n_free == 2)
    assert set(odd.n_free.flatten().tolist()) == {1.0, 2.0}
    # masked + free entries account for every entry
    assert int(odd.mask.sum()) + int(odd.n_free.sum()) == 3 * 3 * 3


def test_imap_paper_logdet_is_wrong_for_odd_channels() -> None:
    """The paper's C//2 per position disagrees with the Jacobian; n_p agrees."""
    layer, x = _imap((3, 4, 4)), _x((3, 4, 4))
    _, logdet = layer(x)
    truth, _ = jacobian_logdet(lambda v: layer(v)[0], x)
    assert max_abs_diff(logdet, truth) < 1e-10
    zero = torch.zeros((), dtype=F64)
    _, log_a = layer._weights(torch.where(layer.mask, x, zero))
    _, masked = layer._masked_scale()
    paper = masked + (3 // 2) * log_a.flatten(1).sum(1)
    assert max_abs_diff(paper, truth) > 1e-3


def test_imap_works_for_one_channel() -> None:
    layer, x = _imap((1, 4, 5)), _x((1, 4, 5))
    y, logdet = layer(x)
    truth, _ = jacobian_logdet(lambda v: layer(v)[0], x)
    assert max_abs_diff(logdet, truth) < 1e-10
    assert max_abs_diff(layer.inverse(y)[0], x) < 1e-12


# ---------------------------------------------------------------------------- iSDP


@pytest.mark.parametrize(
    ("shape", "args", "patterns_per_head"),
    [
        ((3, 4, 4), {}, 1),  # 2x2 patches: every patch has the same mask
        ((3, 6, 6), {}, 2),  # 3x3 patches: masks alternate between patches
        ((2, 6, 4), {"heads": 2}, 2),  # 3x2 patches
        ((1, 6, 6), {"patches": 9}, 1),  # 2x2 patches
        ((2, 3, 3), {"patches": 9}, 2),  # 1x1 patches, P = 2
        ((2, 4, 4), {"patches": 1}, 1),
    ],
)
def test_isdp_column_patterns(
    shape: tuple[int, int, int], args: dict[str, Any], patterns_per_head: int
) -> None:
    layer = _isdp(shape, **args)
    per_head = [sum(1 for b in layer.blocks if b[0] == h) for h in range(layer.heads)]
    assert per_head == [patterns_per_head] * layer.heads
    free_columns = int(layer.free[0].any(dim=0).sum())
    assert sum(b[3] for b in layer.blocks) == free_columns


def test_isdp_logdet_differs_from_full_block_formula_with_odd_patch_sides() -> None:
    """Counting every free column with the full N x N determinant is wrong when the
    patches' masks differ; the per-pattern sub-determinants match the Jacobian."""
    layer, x = _isdp((3, 6, 6)), _x((3, 6, 6))
    perturb_(layer, 0.5, torch.Generator().manual_seed(3))
    _, logdet = layer(x)
    truth, sign = jacobian_logdet(lambda v: layer(v)[0], x)
    assert torch.all(sign > 0)
    assert max_abs_diff(logdet, truth) < 1e-10
    a = layer.attention(x)[:, 0]
    naive = (layer.features / 2) * torch.linalg.slogdet(a)[1]
    assert max_abs_diff(naive, truth) > 1e-3


def test_isdp_heads_split_columns_contiguously() -> None:
    layer = _isdp((2, 4, 4), heads=3, patches=1)  # P = 32 -> 11, 11, 10
    assert layer.group_bounds == [(0, 11), (11, 22), (22, 32)]
    assert torch.allclose(layer.log_d, torch.tensor([11.0, 11.0, 10.0], dtype=F64).log() / 2)


@pytest.mark.parametrize(
    ("shape", "args"),
    [
        ((3, 4, 4), {"patches": 3}),  # not a perfect square
        ((3, 4, 4), {"patches": 0}),
        ((3, 5, 4), {"patches": 4}),  # 2 does not divide H = 5
        ((3, 4, 6), {"patches": 9}),  # 3 does not divide H = 4
        ((1, 2, 2), {"heads": 1, "patches": 4}),  # P = 1 < 2 heads
        ((2, 4, 4), {"heads": 5, "patches": 4}),  # P = 8, heads must be <= 4
        ((2, 4, 4), {"heads": 0}),
        ((2, 4, 4), {"mask": "stripes"}),
    ],
)
def test_isdp_rejects_invalid_arguments(shape: tuple[int, int, int], args: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        _isdp(shape, **args)


def test_isdp_accepts_heads_equal_to_half_the_features() -> None:
    layer, x = _isdp((2, 4, 4), heads=4), _x((2, 4, 4))  # P = 8
    y, _ = layer(x)
    assert max_abs_diff(layer.inverse(y)[0], x) < 1e-12


def _set_extreme(layer: ISDP, which: str) -> None:
    with torch.no_grad():
        if which == "huge_theta":
            layer.theta.fill_(1e4)
        elif which == "negative_theta":
            layer.theta.fill_(-1e4)
        elif which == "tiny_d":
            layer.log_d.fill_(-1e4)
        elif which == "huge_d":
            layer.log_d.fill_(1e4)
        elif which == "huge_qk":
            layer.qk.mul_(1e8)  # weights and biases
        elif which == "overflow_qk":  # Q K^T overflows to +-inf (and nan) in any dtype
            layer.qk[:, :, :-1].mul_(1e200)  # the weights
        elif which == "saturated":  # softmax becomes a 0/1 matrix, softplus(theta) = 0
            layer.theta.fill_(-1e4)
            layer.log_d.fill_(-1e4)
            layer.qk[:, :, :-1].mul_(1e3)


EXTREMES = [
    "huge_theta",
    "negative_theta",
    "tiny_d",
    "huge_d",
    "huge_qk",
    "overflow_qk",
    "saturated",
]


@pytest.mark.parametrize("which", EXTREMES)
@pytest.mark.parametrize("shape", [(3, 4, 4), (3, 6, 6)])
def test_isdp_invertible_for_extreme_parameters(which: str, shape: tuple[int, int, int]) -> None:
    layer, x = _isdp(shape, heads=2), _x(shape, batch=3)
    _set_extreme(layer, which)
    y, logdet = layer(x)
    assert torch.isfinite(y).all() and torch.isfinite(logdet).all()
    x_rec, inv_logdet = layer.inverse(y)
    assert torch.isfinite(x_rec).all()
    assert max_abs_diff(x_rec, x) < 1e-8
    assert max_abs_diff(inv_logdet, -logdet) < 1e-8 * max(1.0, float(logdet.detach().abs().max()))
    for a in layer.attention(x).unbind(1):  # diagonal dominance margin holds numerically
        off = a.abs().sum(-1) - a.diagonal(dim1=-2, dim2=-1).abs()
        assert torch.all(a.diagonal(dim1=-2, dim2=-1) - off >= DIAG_FLOOR - 1e-12)


@pytest.mark.parametrize("which", ["negative_theta", "saturated", "huge_theta"])
def test_isdp_logdet_exact_at_extreme_parameters(which: str) -> None:
    layer, x = _isdp((3, 6, 6), heads=2), _x((3, 6, 6))
    _set_extreme(layer, which)
    _, logdet = layer(x)
    truth, _ = jacobian_logdet(lambda v: layer(v)[0], x)
    assert max_abs_diff(logdet, truth) < 1e-8 * max(1.0, float(truth.detach().abs().max()))


def test_isdp_invertible_when_softmax_saturates_to_a_swap() -> None:
    """The worst case for ``softmax + (1 + softplus(theta)) I``: the softmax is exactly a
    permutation of 2-cycles and softplus(theta) underflows, so without the diagonal floor
    each 2x2 block would be ``[[1, 1], [1, 1]]``, singular in floating point."""
    layer = _isdp((1, 4, 4))  # 2x2 patches, masked entries at (0, 1) and (1, 0) of each
    with torch.no_grad():
        layer.qk[0, :, :-1].fill_(1.0)  # Q's weight; the last column is the bias
        layer.qk[1, :, :-1].fill_(-1.0)  # K's: logits[n, m] = -<v_n, v_m> / d
        layer.qk[:, :, -1].zero_()
        layer.log_d.fill_(-1e4)
        layer.theta.fill_(-1e4)
    x = _x((1, 4, 4))
    # masked vectors v = e, -e, f, -f for the patches 0..3: patch n attends only to n ^ 1
    x[:, 0, 0, 1], x[:, 0, 1, 0] = 1.0, 0.0
    x[:, 0, 0, 3], x[:, 0, 1, 2] = -1.0, 0.0
    x[:, 0, 2, 1], x[:, 0, 3, 0] = 0.0, 1.0
    x[:, 0, 2, 3], x[:, 0, 3, 2] = 0.0, -1.0
    a = layer.attention(x)[:, 0]
    swap = torch.tensor([1, 0, 3, 2])
    assert torch.equal(a[0] - a[0].diagonal().diag(), torch.eye(4, dtype=F64)[swap])
    y, logdet = layer(x)
    x_rec, _ = layer.inverse(y)
    assert torch.isfinite(logdet).all()
    assert max_abs_diff(x_rec, x) < 1e-10
    truth, _ = jacobian_logdet(lambda v: layer(v)[0], x)
    assert max_abs_diff(logdet, truth) < 1e-8


def test_isdp_float32_extremes_round_trip() -> None:
    layer, x = _isdp((3, 6, 6), heads=2).float(), _x((3, 6, 6)).float()
    for which in ("saturated", "overflow_qk"):
        _set_extreme(layer, which)
        y, logdet = layer(x)
        x_rec, _ = layer.inverse(y)
        assert torch.isfinite(logdet).all()
        # ||A^-1|| <= 1/DIAG_FLOOR bounds the error amplification
        assert max_abs_diff(x_rec, x) < 1e-5 / DIAG_FLOOR * math.sqrt(layer.patches)


@pytest.mark.parametrize("form", ["identity", "paper", "residual"])
@pytest.mark.parametrize(
    ("shape", "args"),
    [
        ((4, 4, 4), {"heads": 3}),  # equal patch masks (whole blocks), heads of unequal width
        ((3, 6, 6), {"heads": 2}),  # masks differ between patches: two blocks per head
        ((2, 3, 3), {"patches": 9}),  # 1x1 patches
    ],
)
def test_isdp_hand_written_backward_matches_finite_differences(
    form: str, shape: tuple[int, int, int], args: dict[str, Any]
) -> None:
    """The forward is one autograd node with a hand-written backward (``_isdp_kernel``):
    every input's gradient, the parameters' included, against ``gradcheck`` in float64."""
    from flowspec.nn._isdp_kernel import ISDPForward

    layer, x = _isdp(shape, form=form, **args), _x(shape)
    perturb_(layer, 0.5, torch.Generator().manual_seed(4))
    inputs = (
        x.requires_grad_(),
        *(t.detach().clone().requires_grad_() for t in (layer.qk, layer.coef)),
    )
    assert torch.autograd.gradcheck(lambda *t: ISDPForward.apply(*t, layer), inputs)


@pytest.mark.parametrize("form", ["identity", "paper", "residual"])
@pytest.mark.parametrize(("shape", "args"), [((4, 4, 4), {"heads": 3}), ((3, 6, 6), {"heads": 2})])
def test_isdp_inverse_is_differentiable(
    form: str, shape: tuple[int, int, int], args: dict[str, Any]
) -> None:
    """The inverse is composed from differentiable torch ops (one LU factorisation, one
    solve): its gradients, the parameters' included, against ``gradcheck`` in float64."""
    layer, x = _isdp(shape, form=form, **args), _x(shape)
    perturb_(layer, 0.5, torch.Generator().manual_seed(5))
    y = layer(x)[0].detach().requires_grad_()
    params = [layer.qk, layer.coef]
    assert torch.autograd.gradcheck(lambda v, *p: layer.inverse(v), (y, *params))


def test_isdp_takes_strided_inputs_and_frozen_parameters() -> None:
    """A non-contiguous input (a slice, channels-last) gives the contiguous input's outputs
    and gradients; with the parameters frozen only the input's gradient is computed."""
    layer, x = _isdp((3, 6, 6), heads=2, form="identity"), _x((3, 6, 6))
    perturb_(layer, 0.5, torch.Generator().manual_seed(6))
    y, logdet = layer(x)
    wide = torch.cat([x, x], 3)[..., :6]  # strides of a 6x12 image
    for strided in (wide, x.contiguous(memory_format=torch.channels_last)):
        assert not strided.is_contiguous()
        y2, logdet2 = layer(strided)
        assert max_abs_diff(y2, y) < 1e-12 and max_abs_diff(logdet2, logdet) < 1e-12
        assert (
            max_abs_diff(layer.inverse(y2.contiguous(memory_format=torch.channels_last))[0], x)
            < 1e-10
        )
    layer.requires_grad_(False)
    v = wide.detach().requires_grad_()
    out, ld = layer(v)
    (out.square().sum() + ld.sum()).backward()
    w = x.detach().clone().requires_grad_()
    out, ld = layer(w)
    (out.square().sum() + ld.sum()).backward()
    assert max_abs_diff(v.grad, w.grad) < 1e-12
    assert layer.qk.grad is None and layer.coef.grad is None


def test_isdp_stays_float32_under_a_callers_autocast() -> None:
    """Called (forward and backward) inside ``torch.autocast``, the layer computes in its
    input's precision: the same outputs and gradients as without autocast."""
    layer = _isdp((4, 8, 8), heads=2, form="identity").float()
    perturb_(layer, 0.5, torch.Generator().manual_seed(7))
    x = _x((4, 8, 8)).float()
    grads = []
    for amp in (False, True):
        v = x.clone().requires_grad_()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=amp):
            y, logdet = layer(v)
            (y.square().sum() + logdet.sum()).backward()
        assert y.dtype == torch.float32
        grads.append((y.detach(), logdet.detach(), v.grad, layer.qk.grad.clone()))
        layer.zero_grad()
    for a, b in zip(*grads):
        assert torch.equal(a, b)


# ---------------------------------------------------------------------------- the forms


@pytest.mark.parametrize("which", EXTREMES)
@pytest.mark.parametrize("shape", [(3, 4, 4), (3, 6, 6)])
def test_isdp_identity_form_is_invertible_and_bounded_at_extremes(
    which: str, shape: tuple[int, int, int]
) -> None:
    """``I + beta S[U, U]``, ``|beta| < 0.9``: eigenvalues in ``|lambda - 1| < 0.9``, so the
    blocks are non-singular, ``det > 0`` and ``||inverse||_inf <= 1 / (1 - 0.9)``."""
    layer, x = _isdp(shape, heads=2, form="identity"), _x(shape, batch=3)
    _set_extreme(layer, which)
    with torch.no_grad():
        layer.gamma.fill_(-3.0 if which == "negative_theta" else 2.0)
    blocks = layer._blocks(layer.attention(x))
    assert torch.all(torch.linalg.det(blocks) > 0)
    assert torch.linalg.inv(blocks).abs().sum(-1).max() <= 1 / (1 - BETA_BOUND) + 1e-9
    y, logdet = layer(x)
    x_rec, inv_logdet = layer.inverse(y)
    assert torch.isfinite(logdet).all() and max_abs_diff(x_rec, x) < 1e-9
    assert max_abs_diff(inv_logdet, -logdet) < 1e-9 * max(1.0, float(logdet.detach().abs().max()))
    truth, _ = jacobian_logdet(lambda v: layer(v)[0], x)
    assert max_abs_diff(logdet, truth) < 1e-8 * max(1.0, float(truth.detach().abs().max()))


@pytest.mark.parametrize("kind", ["attention.imap", "attention.isdp"])
@pytest.mark.parametrize("shape", [(4, 4, 4), (3, 6, 6)])
def test_identity_form_is_the_default_and_starts_as_the_identity(
    kind: str, shape: tuple[int, int, int]
) -> None:
    args = {"attention.imap": IMapArgs(), "attention.isdp": ISDPArgs(heads=2)}[kind]
    layer = MODULES[kind](shape, args.model_dump(), None)
    assert layer.form == "identity"
    x = torch.randn(2, *shape)
    y, logdet = layer(x)
    assert torch.equal(y, x) and torch.equal(logdet, torch.zeros(2))
    (y.square().sum() + logdet.sum()).backward()
    if kind == "attention.isdp":  # theta and gamma (coef rows 1, 2); Q, K once beta != 0
        grads = {"theta": layer.coef.grad[1], "gamma": layer.coef.grad[2]}
    else:
        grads = {n: p.grad for n, p in layer.named_parameters()}
    moving = {"attention.imap": ["weight", "offset", "s"], "attention.isdp": ["theta", "gamma"]}[
        kind
    ]
    assert all(grads[n] is not None and grads[n].abs().sum() > 0 for n in moving), grads


def test_forms_and_the_older_residual_spelling() -> None:
    """The IR stores ``residual`` three-state: null (identity), false (paper), true."""
    assert ISDPArgs().model_dump() == {
        "heads": 1,
        "patches": 4,
        "mask": "checkerboard",
        "residual": None,
    }
    for given, stored in [
        ({"form": "identity"}, None),
        ({"form": "paper"}, False),
        ({"residual": False}, False),
        ({"form": "residual"}, True),
        ({"residual": True}, True),
        ({"form": "paper", "residual": False}, False),
    ]:
        assert ISDPArgs(**given).model_dump()["residual"] is stored, given
        assert IMapArgs(**given).model_dump()["residual"] is stored, given
    for bad in (
        {"form": "paper", "residual": True},
        {"form": "identity", "residual": False},
        {"form": "residual", "residual": False},
        {"form": "plain"},
    ):
        with pytest.raises(ValueError):
            ISDPArgs(**bad)
    # an IR written before `form` existed builds the form it was trained with
    for residual, form in [(False, "paper"), (True, "residual"), (None, "identity")]:
        args = {"heads": 2, "patches": 4, "mask": "checkerboard", "residual": residual}
        assert MODULES["attention.isdp"]((4, 4, 4), args, None).form == form
        assert ISDPKind.params((4, 4, 4), args, None) == ISDPKind.count_built(
            (4, 4, 4), args, None
        )


def test_isdp_state_dict_and_checkpoints_from_before_the_packing() -> None:
    """iSDP keeps its parameters in two tensors, ``qk`` (Q's and K's 1x1 convolutions, bias
    last) and ``coef`` (log d, theta and, in the identity form, gamma per head). A state dict
    written before that (``q.weight``, ``q.bias``, ``k.weight``, ``k.bias``, ``log_d``,
    ``theta``, ``gamma``) loads into the same function."""
    base = {"heads": 2, "patches": 4, "mask": "checkerboard"}
    x = _x((4, 4, 4))
    for form, rows in [("paper", 2), ("residual", 2), ("identity", 3)]:
        layer = MODULES["attention.isdp"]((4, 4, 4), {**base, "form": form}, None).double()
        assert set(layer.state_dict()) == {"qk", "coef"}
        assert layer.coef.shape == (rows, 2) and layer.qk.shape == (2, 4, 5)
        perturb_(layer, 0.5, torch.Generator().manual_seed(7))
        old = _unpacked(layer.state_dict())
        fresh = MODULES["attention.isdp"]((4, 4, 4), {**base, "form": form}, None).double()
        fresh.load_state_dict(old)
        (y, ld), (y2, ld2) = layer(x), fresh(x)
        assert torch.equal(y, y2) and torch.equal(ld, ld2)
        layer = MODULES["attention.imap"](
            (4, 4, 4), {"act": "sigmoid", "mask": "checkerboard", "form": form}, None
        )
        assert set(layer.state_dict()) == {"weight", "bias", "offset", "s"}


def test_spec_digests_of_the_forms() -> None:
    """``form=paper`` is the model ``attention isdp`` / ``residual=false`` meant before
    ``form`` existed (same IR, same digest: its checkpoints load); the identity default is
    another model (another digest: they never load into it silently)."""
    import flowspec

    def digest(line: str) -> str:
        text = f"flowspec 0.1\nflow f {{\n  input 4 x 8 x 8\n  {line}\n}}\n"
        return flowspec.loads(text).digest()

    paper = digest("attention isdp heads=2 form=paper")
    assert paper == digest("attention isdp heads=2 residual=false")
    assert digest("attention isdp heads=2 form=residual") == digest(
        "attention isdp heads=2 residual=true"
    )
    assert digest("attention isdp heads=2") == digest("attention isdp heads=2 form=identity")
    assert digest("attention isdp heads=2") != paper
    assert digest("attention imap form=paper") == digest("attention imap residual=false")


def _unpacked(state: dict[str, Any]) -> dict[str, Any]:
    """A model state as written before iSDP's parameters were packed into ``qk`` and
    ``coef``: ``q.weight``, ``q.bias``, ``k.weight``, ``k.bias``, ``log_d``, ``theta``
    (and ``gamma``) per layer."""
    old = {}
    for key, value in state.items():
        prefix, _, name = key.rpartition(".")
        prefix += "." if prefix else ""
        if name == "qk":
            c = value.shape[1]
            for i, conv in enumerate("qk"):
                old[f"{prefix}{conv}.weight"] = value[i, :, :c].reshape(c, c, 1, 1).clone()
                old[f"{prefix}{conv}.bias"] = value[i, :, c].clone()
        elif name == "coef":
            for row, param in zip(value, ("log_d", "theta", "gamma"), strict=False):
                old[f"{prefix}{param}"] = row.clone()
        else:
            old[key] = value
    return old


def test_a_run_from_before_the_packing_resumes_with_a_fresh_optimiser(tmp_path, capsys) -> None:
    """The old optimiser state lists seven tensors per iSDP layer: the run resumes, says that
    the optimiser starts afresh, and trains on."""
    import runtime

    spec = tmp_path / "a.flow"
    spec.write_text(
        "flowspec 0.2\nflow f {\n  input 1 x 8 x 8\n  squeeze\n  actnorm\n"
        "  coupling affine hidden=4\n  attention isdp heads=2\n  train {\n"
        "    data digits\n    batch 8\n  }\n}\n"
    )
    tiny = {
        "val_images": 8,
        "val_every": 100,
        "sample_every": 100,
        "device": "cpu",
        "progress": False,
    }
    runtime.train(spec, out=tmp_path / "run", steps=2, **tiny)
    path = tmp_path / "run" / "checkpoint.pt"
    ck = torch.load(path, weights_only=True)
    ck["model"] = _unpacked(ck["model"])
    torch.save(ck, path)
    capsys.readouterr()
    res = runtime.train(spec, out=tmp_path / "run", steps=3, resume=True, **tiny)
    assert "optimiser starts afresh" in capsys.readouterr().err
    assert res.step == 3 and set(res.model.state_dict()) >= {"layers.3.qk", "layers.3.coef"}


def test_a_model_checkpoint_from_before_the_packing_loads_through_the_runtime() -> None:
    """The runtime's strict and non-strict loaders accept a model state written when iSDP's
    parameters were seven tensors; the loaded model computes what the saved one did."""
    import flowspec
    from runtime.checkpoint import load_model

    text = (
        "flowspec 0.2\nflow f {\n  input 4 x 8 x 8\n  actnorm\n"
        "  attention isdp heads=2 form=paper\n  attention isdp heads=2\n}\n"
    )
    spec = flowspec.loads(text)
    model = flowspec.compile(spec, seed=0).double()
    perturb_(model, 0.5, torch.Generator().manual_seed(3))
    old = _unpacked(model.state_dict())
    assert not any(k.endswith((".qk", ".coef")) for k in old)
    x = _x((4, 8, 8))
    with torch.no_grad():
        want, want_logdet = model(x)
    for strict in (True, False):
        fresh = flowspec.compile(spec, seed=1).double()
        load_model(fresh, {"model": dict(old)}, "old.pt", strict=strict)
        with torch.no_grad():
            got, got_logdet = fresh(x)
        assert all(torch.equal(a, b) for a, b in zip(got, want))
        assert torch.equal(got_logdet, want_logdet)
