"""Reusable numerical checks for the tests; the ground truth itself (``jacobian_logdet``,
``perturb_``) lives in :mod:`flowspec.numerics`, shared with ``flowspec verify``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from flowspec.numerics import jacobian_logdet, perturb_, random_cond  # noqa: F401  (re-exported)

#: The shipped specs' parameters at reduced size: the same architecture, small enough for a
#: brute-force Jacobian (a flow takes those it declares; residual blocks in exact mode).
#: tests/test_spec_models.py and scripts/gpu_steps.py build every shipped flow with them.
SMALL = {
    "K": 1,
    "L": 2,
    "hidden": 6,
    "components": 3,
    "size": 8,
    "scale": 4,
    "height": 16,
    "width": 16,
    "features": 6,
    "blocks": 1,
    "heads": 2,
    "logdet": "exact",
}


def assert_exact_with_labels(model, x: Tensor, y: Tensor, gen: torch.Generator):
    """A flow conditioned on a label map ``y`` (condition ``y``), in float64: after its
    data-dependent init and a perturbation of every parameter, its log-det equals slogdet of
    the autograd Jacobian and its inverse recovers ``x``. Returns ``(zs, logdet)``."""
    model.train()
    with torch.no_grad():
        model(x, {"y": y})
    perturb_(model, 0.05, gen)
    model.eval()
    zs, logdet = model(x, {"y": y})

    def fn(xb: Tensor, yb: Tensor) -> Tensor:
        return torch.cat([z.flatten(1) for z in model(xb, {"y": yb})[0]], 1)

    ref, _ = jacobian_logdet(fn, x, y)
    assert torch.allclose(logdet, ref, rtol=1e-9, atol=1e-9)
    assert (model.inverse(zs, {"y": y}) - x).abs().max() < 1e-9
    return zs, logdet


@contextmanager
def single_thread() -> Iterator[None]:
    """Run torch on one intra-op thread, then restore the previous count.

    The checks here work on tensors of a few hundred entries, where extra threads only add
    synchronisation; on a loaded 2-core machine they made the suite ~5x slower.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def max_abs_diff(a: Tensor, b: Tensor) -> float:
    """Largest absolute difference of two tensors, as a Python float."""
    return float((a.detach() - b.detach()).abs().max()) if a.numel() else 0.0


def layer_modules() -> dict[str, type]:
    """Every registered layer kind's module class by key, priors as ``prior.KEY``."""
    from flowspec.kinds import KINDS, PRIORS

    out = {key: k.module_class() for key, k in KINDS.items()}
    out.update({f"prior.{key}": p.module_class() for key, p in PRIORS.items()})
    return out


def encoder_modules() -> dict[str, type]:
    """Every registered condition encoder's module class by key."""
    from flowspec.kinds import ENCODERS

    return {key: e.module_class() for key, e in ENCODERS.items()}
