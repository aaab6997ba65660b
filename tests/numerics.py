"""Reusable numerical checks for the tests; the ground truth itself (``jacobian_logdet``,
``perturb_``) lives in :mod:`flowspec.numerics`, shared with ``flowspec verify``."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import torch
from torch import Tensor

from flowspec.numerics import jacobian_logdet, perturb_, random_cond  # noqa: F401  (re-exported)


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
