"""Invertible 1x1 convolution (Glow), in LU or plain form."""

from __future__ import annotations

from pydantic import Field

from flowspec.kinds import Args, LayerKind, arg, kind


class InvConvArgs(Args):
    lu: bool = Field(
        True,
        description="LU-parameterised (invertible for every parameter value) or a free matrix",
    )


@kind
class InvConvKind(LayerKind):
    key = "invconv"
    Args = InvConvArgs
    doc = "invertible 1x1 convolution (Glow), LU-parameterised by default"
    module = "flowspec.nn.invconv:InvConv1x1"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        c = shape[0]
        # LU form stores full C×C lower and upper matrices (masked in use) and log|diag|
        return 2 * c * c + c if arg(args, "lu") else c * c

    @classmethod
    def alone_after(cls, shape, args, alone):
        # each output channel of a pixel mixes all its input channels (W004)
        return alone if shape[0] < 2 else [[False, False] for _ in alone]
