"""The standard logistic top prior (NICE), with an optional learned diagonal scaling."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .prior import GaussianPrior


class LogisticPrior(GaussianPrior):
    r"""Standardise the final latent, ``eps = (z - mu) e^{-l}``, and score ``eps`` under the
    standard logistic density (NICE, Dinh et al. 2015, eq. 5 and section 5.1):

        ``log p(eps) = sum -softplus(eps) - softplus(-eps)``.

    ``learned``: ``mu``, ``l`` per entry (or from the condition, ``on=COND``) exactly as for
    ``prior gaussian learned``; the per-entry ``e^{l}`` is NICE's final diagonal scaling layer
    ``S`` (``logdet = -sum l``). Samples are ``eps = T log(u / (1 - u))``, ``u ~ U(0, 1)``.
    """

    def log_density(self, eps: Tensor) -> Tensor:
        """``(B,)``: the standard logistic log-density of every entry, summed."""
        flat = eps.reshape(eps.shape[0], -1)
        return -(F.softplus(flat) + F.softplus(-flat)).sum(dim=1)

    def sample_noise(
        self,
        shape: tuple[int, ...],
        *,
        device: Any = None,
        dtype: Any = None,
        generator: Any = None,
    ) -> Tensor:
        """Standard logistic noise: the logit of a uniform draw, kept off 0 and 1."""
        u = torch.rand(shape, device=device, dtype=dtype, generator=generator)
        info = torch.finfo(u.dtype)
        u = u.clamp(info.tiny, 1.0 - info.eps)
        return torch.log(u) - torch.log1p(-u)
