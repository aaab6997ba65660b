"""Full-Glow's conditional affine coupling: the condition through its own network first."""

from __future__ import annotations

from pydantic import Field

from flowspec.kinds import CondArgs, kind

from ._fullglow import map_net_params
from .coupling import CouplingKind
from .nets import GlowNet

#: Full-Glow's (and Glow's) ``ZeroInitConv2d`` multiplies its output by ``exp(3 scale)``.
LOGSCALE_FACTOR = 3.0


class CondAffineArgs(CondArgs):
    hidden: int = Field(512, ge=1, le=8192, description="width of the coupling network")
    cond_hidden: int = Field(
        128,
        ge=1,
        le=8192,
        description="width of the network that turns the condition into C channels",
    )


@kind
class CondAffineCouplingKind(CouplingKind):
    key = "coupling.cond_affine"
    Args = CondAffineArgs
    conditional = "required"
    doc = (
        "Full-Glow's conditional affine coupling: the condition through its own network, "
        "then Glow's"
    )
    module = "flowspec.nn.cond_coupling:CondAffineCoupling"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        c = shape[0]
        kept, out = c - c // 2, c // 2
        a = args if isinstance(args, dict) else args.model_dump()
        return (
            map_net_params(cond_channels or 0, int(a["cond_hidden"]), c)
            + GlowNet.params(kept + c, 2 * out, int(a["hidden"]))
            + 2 * out
        )
