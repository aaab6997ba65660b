"""Rational-quadratic spline coupling (Neural Spline Flows, Durkan et al. 2019)."""

from __future__ import annotations

from pydantic import Field

from flowspec.kinds import arg, kind

from .coupling import CouplingArgs, CouplingKind
from .nets import net_params

#: Floors of a bin's width and height (as fractions of the interval) and of a knot's
#: derivative: every bin keeps a positive size and slope, so the spline stays a strictly
#: increasing bijection with a finite log-derivative for any network output.
MIN_BIN = 1e-3
MIN_DERIVATIVE = 1e-3


class SplineArgs(CouplingArgs):
    hidden: int = Field(96, ge=1, le=8192, description="width of the coupling network")
    bins: int = Field(8, ge=2, le=128, description="spline bins K")
    tail: float = Field(
        3.0, gt=0.0, le=1e4, description="the spline acts on [-tail, tail], the identity outside"
    )


@kind
class SplineCouplingKind(CouplingKind):
    key = "coupling.spline"
    Args = SplineArgs
    doc = (
        "rational-quadratic spline coupling (Neural Spline Flows), identity outside [-tail, tail]"
    )
    module = "flowspec.nn.spline:SplineCoupling"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        kept, out = cls.widths(shape, args)
        return net_params(args, kept + (cond_channels or 0), out * (3 * arg(args, "bins") - 1))
