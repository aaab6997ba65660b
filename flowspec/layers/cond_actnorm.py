"""Full-Glow's conditional actnorm: a per-sample scale and shift predicted from the condition."""

from __future__ import annotations

from flowspec.kinds import CondArgs, LayerKind, kind

from ._fullglow import vector_net_params


@kind
class CondActNormKind(LayerKind):
    key = "cond_actnorm"
    Args = CondArgs
    conditional = "required"
    doc = (
        "Full-Glow's conditional actnorm: per-sample scale and shift predicted from the "
        "condition (data-dependent init)"
    )
    module = "flowspec.nn.cond_actnorm:CondActNorm"

    @classmethod
    def alone_after(cls, shape, args, alone):
        return alone  # a per-entry affine map of x (its parameters depend on the condition)

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        c, h, w = shape
        return vector_net_params(cond_channels or 0, h, w, 2 * c)
