"""Squeeze: space-to-depth."""

from __future__ import annotations

from pydantic import Field

from flowspec import codes
from flowspec.kinds import Args, Issue, LayerKind, fmt_shape, kind


class SqueezeArgs(Args):
    factor: int = Field(2, ge=2, le=16, description="block size f: (C,H,W) -> (C f², H/f, W/f)")


@kind
class SqueezeKind(LayerKind):
    key = "squeeze"
    Args = SqueezeArgs
    doc = "space-to-depth: (C, H, W) -> (C*f*f, H/f, W/f)"
    module = "flowspec.nn.reshape:Squeeze"

    @classmethod
    def out_shape(cls, shape, args):
        c, h, w = shape
        f = args.factor
        if h % f or w % f:
            pad = "pad the input (e.g. `data mnist5k pad=2` for 28->32) or use one level fewer"
            if f != 2:
                pad = f"pad the input to a multiple of {f}, or use factor=2"
            return Issue(
                codes.E_SQUEEZE,
                f"squeeze needs H and W divisible by {f}, but enters with {fmt_shape(shape)}",
                pad,
            )
        return (c * f * f, h // f, w // f)

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        return 0
