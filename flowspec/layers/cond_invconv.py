"""Full-Glow's conditional invertible 1x1 convolution: the matrix predicted per sample."""

from __future__ import annotations

from pydantic import Field

from flowspec.kinds import CondArgs, LayerKind, arg, kind

from ._fullglow import vector_net_params


class CondInvConvArgs(CondArgs):
    lu: bool = Field(
        True,
        description="predict LU factors (invertible for every output; "
        "Full-Glow's --do_lu) or the whole matrix (Full-Glow's default)",
    )


@kind
class CondInvConvKind(LayerKind):
    key = "cond_invconv"
    Args = CondInvConvArgs
    conditional = "required"
    doc = "Full-Glow's conditional 1x1 convolution: a matrix per sample from the condition"
    module = "flowspec.nn.cond_invconv:CondInvConv1x1"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        c, h, w = shape
        out = 2 * c * c + c if arg(args, "lu") else c * c
        return vector_net_params(cond_channels or 0, h, w, out)
