"""The standard logistic top prior (NICE), with an optional learned diagonal scaling."""

from __future__ import annotations

from flowspec.kinds import prior

from .prior import GaussianPriorArgs, GaussianPriorKind


class LogisticPriorArgs(GaussianPriorArgs):
    pass


@prior
class LogisticPriorKind(GaussianPriorKind):
    key = "logistic"
    Args = LogisticPriorArgs
    doc = (
        "standard logistic (NICE); `learned`: a per-entry scale and shift, NICE's "
        "diagonal scaling (or from the condition with on=COND)"
    )
    module = "flowspec.nn.logistic_prior:LogisticPrior"
