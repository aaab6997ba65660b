"""Squeeze: space-to-depth."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from flowspec import codes
from flowspec.kinds import Args, Issue, LayerKind, fmt_shape, kind

from .base import FlowLayer, Shape

if TYPE_CHECKING:
    from torch import Tensor

torch = nn = F = None  # bound when the first module of this file is built (see base.py)


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


class SqueezeArgs(Args):
    factor: int = Field(2, ge=2, le=16, description="block size f: (C,H,W) -> (C f², H/f, W/f)")


@kind
class SqueezeKind(LayerKind):
    key = "squeeze"
    Args = SqueezeArgs
    doc = "space-to-depth: (C, H, W) -> (C*f*f, H/f, W/f)"
    module = Squeeze

    @classmethod
    def out_shape(cls, shape, args):
        c, h, w = shape
        f = args.factor
        if h % f or w % f:
            pad = "pad the input (e.g. `data mnist5k pad=2` for 28->32) or use one level fewer"
            if f != 2:
                pad = f"pad the input to a multiple of {f}, or use factor=2"
            return Issue(codes.E_SQUEEZE,
                         f"squeeze needs H and W divisible by {f}, but enters with "
                         f"{fmt_shape(shape)}", pad)
        return (c * f * f, h // f, w // f)

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        return 0
