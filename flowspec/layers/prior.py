"""The top-level Gaussian prior, as a standardising layer."""

from __future__ import annotations

from pydantic import Field

from flowspec.kinds import CondArgs, PriorKind, arg, conv_params, prior


class GaussianPriorArgs(CondArgs):
    learned: bool = Field(
        False,
        description="a learned mean and scale (per entry, or from "
        "the condition with on=COND); written as the bare word `learned`",
    )


@prior
class GaussianPriorKind(PriorKind):
    key = "gaussian"
    Args = GaussianPriorArgs
    conditional = "optional"
    doc = "standard normal, or a learned (optionally conditional) diagonal Gaussian"
    module = "flowspec.nn.prior:GaussianPrior"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        if not arg(args, "learned"):
            return 0
        c, h, w = shape
        return conv_params(cond_channels, 2 * c, 3) if cond_channels else 2 * c * h * w
