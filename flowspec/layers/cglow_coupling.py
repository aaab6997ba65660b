"""C-Glow's conditional affine coupling: the full-size condition resized to the layer's."""

from __future__ import annotations

from pydantic import Field

from flowspec.kinds import CondArgs, arg, conv_params, kind

from ._cglow import CGlowKind
from .coupling import CouplingKind

#: channels of the 3x3 convolution that first reads the condition (glow2: 16)
RESIZE_CHANNELS = 16


class CGlowCouplingArgs(CondArgs):
    hidden: int = Field(256, ge=1, le=8192, description="width of the coupling network")
    down: int = Field(
        1,
        ge=0,
        le=10,
        description="halvings between the condition and the "
        "layer: a convolution of kernel and stride 2^down resizes it",
    )


@kind
class CGlowCouplingKind(CouplingKind, CGlowKind):
    """Its shape rules are a channel coupling's (the resizing convolution fits any size);
    its condition comes at full size, as C-Glow's other kinds'."""

    key = "coupling.cglow"
    Args = CGlowCouplingArgs
    conditional = "required"
    doc = (
        "C-Glow's conditional affine coupling: the condition at its full size resized to "
        "the layer's by a stride-2^down convolution, then Glow's network with actnorms"
    )
    module = "flowspec.nn.cglow_coupling:CGlowCoupling"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        c, hidden, f = shape[0], int(arg(args, "hidden")), 2 ** int(arg(args, "down"))
        kept, out = c - c // 2, c // 2
        resize = (
            conv_params(cond_channels or 0, RESIZE_CHANNELS, 3)
            + conv_params(RESIZE_CHANNELS, out, f)
            + conv_params(out, out, 3)
        )
        net = (kept + out) * hidden * 9 + 2 * hidden + hidden * hidden + 2 * hidden
        return resize + net + conv_params(hidden, 2 * out, 3) + 2 * out
