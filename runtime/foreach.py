"""In-place operations on lists of tensors: torch's fused ``_foreach_*`` kernels where the
installed torch has them (every release since 2.0; they are what torch.optim uses), a plain
loop with the same arithmetic otherwise, so that no private torch function is called
unguarded."""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor


def copy_(dst: Sequence[Tensor], src: Sequence[Tensor]) -> None:
    """``dst[i].copy_(src[i])`` for every ``i``."""
    fused = getattr(torch, "_foreach_copy_", None)
    if fused is not None:
        fused(list(dst), list(src))
        return
    for d, s in zip(dst, src):
        d.copy_(s)


def lerp_(dst: Sequence[Tensor], src: Sequence[Tensor], weight: float) -> None:
    """``dst[i] += weight * (src[i] - dst[i])`` for every ``i``."""
    fused = getattr(torch, "_foreach_lerp_", None)
    if fused is not None:
        fused(list(dst), list(src), weight)
        return
    for d, s in zip(dst, src):
        d.lerp_(s, weight)
