"""C-Glow's conditional actnorm: a per-sample scale and shift from the full-size condition."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowspec.layers._cglow import cond_size

from ._cglow import VectorNet, full_cond
from .base import FlowLayer, Shape


class CGlowActNorm(FlowLayer):
    r"""``y = (x + t(c)) * exp(s(c))``, ``(s, t)`` per sample and channel in (-1, 1): C-Glow's
    vector network (tanh last) of the condition map ``c`` at its full size.

    The Jacobian of one sample is diagonal with ``exp(s_c)`` over the ``H W`` positions of
    channel ``c``: ``logdet = H W sum_c s_c``, exact per sample. The last linear layer starts
    at zero, so every condition starts from the identity (C-Glow has no data-dependent
    initialisation).
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        if self.cond_channels is None:
            raise ValueError("cglow_actnorm needs a condition (on=COND)")
        self.hw = cond_size(self.in_shape, args)
        self.net = VectorNet(
            self.cond_channels,
            self.hw,
            int(args["cond_hidden"]),
            int(args["cond_units"]),
            2 * self.in_shape[0],
        )
        nn.init.zeros_(self.net.last.weight)
        nn.init.zeros_(self.net.last.bias)

    def _scale_shift(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        out = self.run_net(self.net, full_cond(self, cond, x, self.hw))
        c = self.in_shape[0]
        return out[:, :c, None, None], out[:, c:, None, None]

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_s, t = self._scale_shift(x, cond)
        logdet = log_s.flatten(1).sum(1) * (x.shape[2] * x.shape[3])
        return (x + t) * torch.exp(log_s), logdet

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_s, t = self._scale_shift(y, cond)
        logdet = log_s.flatten(1).sum(1) * (y.shape[2] * y.shape[3])
        return y * torch.exp(-log_s) - t, -logdet
