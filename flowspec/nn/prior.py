"""The top-level Gaussian prior, as a standardising layer."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import FlowLayer, Shape, sum_except_batch
from .nets import zero_conv


class GaussianPrior(FlowLayer):
    r"""Standardise the final latent: ``eps = (z - mu) e^{-l}``, ``logdet = -sum l``.

    The caller scores ``eps`` under N(0, I) and samples ``eps = T * N(0, I)``; with the
    log-determinant this is exactly ``log N(z; mu, diag(e^{2l}))``.

    * ``learned=False``: ``mu = 0``, ``l = 0``, the identity.
    * ``learned=True`` without ``on``: ``mu``, ``l`` are free ``(C, H, W)`` parameters, zero
      at init.
    * ``learned=True, on=COND``: ``(mu, l)`` from a zero-initialised 3x3 convolution of the
      condition (resampled by the caller to the latent's ``H x W``).
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        c, h, w = self.in_shape
        self.learned = bool(args["learned"])
        if not self.learned:
            self.cond_channels = None  # an unlearned prior ignores any condition
        elif self.cond_channels is not None:
            self.conv = zero_conv(self.cond_channels, 2 * c)
        else:
            self.mean = nn.Parameter(torch.zeros(1, c, h, w))
            self.log_scale = nn.Parameter(torch.zeros(1, c, h, w))

    def _mean_logscale(self, z: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        if self.cond_channels is None:
            return self.mean, self.log_scale
        h = self.conv(self._cond(cond, z).to(z.dtype))
        c = self.in_shape[0]
        return h[:, :c], h[:, c:]

    def forward(self, z: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if not self.learned:
            return z, z.new_zeros(z.shape[0])
        mu, log_scale = self._mean_logscale(z, cond)
        logdet = -sum_except_batch(log_scale.expand_as(z))
        return (z - mu) * torch.exp(-log_scale), logdet

    def inverse(self, eps: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if not self.learned:
            return eps, eps.new_zeros(eps.shape[0])
        mu, log_scale = self._mean_logscale(eps, cond)
        logdet = sum_except_batch(log_scale.expand_as(eps))
        return eps * torch.exp(log_scale) + mu, logdet
