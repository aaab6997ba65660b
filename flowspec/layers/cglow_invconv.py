"""C-Glow's conditional 1x1 convolution: the whole C x C matrix from the full-size condition,
as LU factors (invertible for every output)."""

from __future__ import annotations

from flowspec.kinds import arg, kind

from ._cglow import CGlowCondArgs, CGlowKind, cond_size, vector_net_params


@kind
class CGlowInvConvKind(CGlowKind):
    key = "cglow_invconv"
    Args = CGlowCondArgs
    doc = (
        "C-Glow's conditional 1x1 convolution: a C x C matrix per sample (C^2 numbers, "
        "as LU factors with a positive diagonal) from the condition at its full size"
    )
    module = "flowspec.nn.cglow_invconv:CGlowInvConv"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        c = shape[0]
        return vector_net_params(
            cond_channels or 0,
            cond_size(shape, args),
            int(arg(args, "cond_hidden")),
            int(arg(args, "cond_units")),
            c * c,
        )
