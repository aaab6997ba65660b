"""C-Glow's conditional actnorm: a per-sample scale and shift from the full-size condition."""

from __future__ import annotations

from flowspec.kinds import arg, kind

from ._cglow import CGlowCondArgs, CGlowKind, cond_size, vector_net_params


@kind
class CGlowActNormKind(CGlowKind):
    key = "cglow_actnorm"
    Args = CGlowCondArgs
    doc = (
        "C-Glow's conditional actnorm: per-sample log-scale and shift in (-1, 1) from the "
        "condition at its full size (2^down x the layer's)"
    )
    module = "flowspec.nn.cglow_actnorm:CGlowActNorm"

    @classmethod
    def alone_after(cls, shape, args, alone):
        return alone  # a per-entry affine map of x

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        return vector_net_params(
            cond_channels or 0,
            cond_size(shape, args),
            int(arg(args, "cond_hidden")),
            int(arg(args, "cond_units")),
            2 * shape[0],
        )
