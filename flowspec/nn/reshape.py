"""Squeeze: space-to-depth."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from .base import FlowLayer, Shape


class Squeeze(FlowLayer):
    """Space-to-depth by ``factor`` f: ``(C, H, W) -> (C f^2, H/f, W/f)``.

    Output channel ``c f^2 + i f + j`` holds pixel ``(f h + i, f w + j)`` of input channel
    ``c`` (``pixel_unshuffle`` order). It only moves entries around, so ``logdet = 0``.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        c, h, w = self.in_shape
        f = int(args["factor"])
        if f < 1 or h % f or w % f:
            raise ValueError(f"squeeze factor {f} must divide H and W, got {h}x{w}")
        self.factor = f
        self.out_shape = (c * f * f, h // f, w // f)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return F.pixel_unshuffle(x, self.factor), x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return F.pixel_shuffle(y, self.factor), y.new_zeros(y.shape[0])
