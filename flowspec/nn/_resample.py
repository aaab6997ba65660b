"""Bilinear resampling of condition features, deterministic on CUDA (imports torch).

The backward of ``F.interpolate(mode="bilinear")`` on CUDA scatters gradients with atomic
adds and has no deterministic kernel, so ``torch.use_deterministic_algorithms(True)`` refuses
it. Bilinear resampling (antialiased or not) is separable and linear: along each axis it is
a fixed ``(out, in)`` matrix, obtained by resampling the identity. Under deterministic mode
the map is those two matrix products, whose backward is two more; otherwise the library
kernel. Both give the same values to rounding.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["bilinear"]


def bilinear(f: Tensor, hw: tuple[int, int], antialias: bool = False) -> Tensor:
    """``F.interpolate(f, size=hw, mode="bilinear", align_corners=False,
    antialias=antialias)`` for ``f`` of shape (B, C, H, W)."""
    if not torch.are_deterministic_algorithms_enabled():
        return F.interpolate(
            f, size=tuple(hw), mode="bilinear", align_corners=False, antialias=antialias
        )
    rows = _matrix(f.shape[2], int(hw[0]), antialias, f.dtype, f.device)
    cols = _matrix(f.shape[3], int(hw[1]), antialias, f.dtype, f.device)
    return rows @ f @ cols.T


def _matrix(
    n_in: int, n_out: int, antialias: bool, dtype: torch.dtype, device: torch.device
) -> Tensor:
    """The (n_out, n_in) matrix of 1-D bilinear resampling: column j resamples e_j (the
    model resamples a condition once per call and size, so this is not cached)."""
    # two identical columns: torch's antialiased kernel mishandles an axis of size 1
    eye = torch.eye(n_in, dtype=dtype, device=device).view(n_in, 1, n_in, 1).expand(-1, -1, -1, 2)
    out = F.interpolate(
        eye, size=(n_out, 2), mode="bilinear", align_corners=False, antialias=antialias
    )
    return out[:, 0, :, 0].T
