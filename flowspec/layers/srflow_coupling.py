"""``coupling srflow``: SRFlow's conditional affine coupling with its affine injector.

SRFlow's ``CondAffineSeparatedAndCond`` (andreas128/SRFlow,
``FlowAffineCouplingsAblation.py``) is one module that applies two affine maps in turn:

1. the affine injector, on every entry, from the condition alone:
   ``x <- (x + t(c)) * s(c)``;
2. the conditional affine coupling: the first ``C//2`` channels ``x_a`` (with the condition)
   drive the other ``C - C//2``: ``x_b <- (x_b + t(x_a, c)) * s(x_a, c)``.

Both scales are ``s = sigmoid(h + 2) + 1e-4``; each network's output is read "cross"
(shift from the even channels, scale from the odd ones); each network is Glow's of width
``hidden`` (SRFlow: 64, one 1x1 hidden layer), by default ``net=glow_actnorm`` as SRFlow
builds it.
"""

from __future__ import annotations

from collections.abc import Mapping

from pydantic import Field

from flowspec.kinds import CondArgs, kind, registry_args_field, registry_field

from .coupling import SCALE_DOC, CouplingKind, ScaleForm
from .nets import net_params


class SRFlowCouplingArgs(CondArgs):
    hidden: int = Field(64, ge=1, le=8192, description="width of both networks")
    net: str = registry_field("net", "glow_actnorm", "the networks (a registered net)")
    net_args: dict[str, int | float | bool | str] = registry_args_field("net")
    inject: bool = Field(
        True,
        description="apply the affine injector (scale and shift of "
        "every entry from the condition alone) before the coupling",
    )
    scale: ScaleForm = Field("sigmoid", description=SCALE_DOC)


@kind
class SRFlowCouplingKind(CouplingKind):
    key = "coupling.srflow"
    Args = SRFlowCouplingArgs
    conditional = "required"
    doc = (
        "SRFlow's conditional affine coupling (CondAffineSeparatedAndCond): an affine "
        "injector from the condition, then the first C//2 channels and the condition "
        "drive an affine map of the rest"
    )
    module = "flowspec.nn.srflow_coupling:SRFlowCoupling"

    @classmethod
    def coupled(cls, shape, args) -> set[tuple[int, int]]:
        """The transformed channels ``C//2 .. C-1`` (the injector is elementwise)."""
        return {(ch, p) for ch in range(shape[0] // 2, shape[0]) for p in (0, 1)}

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        c, cond = shape[0], cond_channels or 0
        a = dict(args) if isinstance(args, Mapping) else args.model_dump()
        inject = net_params(a, cond, 2 * c) if a.get("inject", True) else 0
        return inject + net_params(a, c // 2 + cond, 2 * (c - c // 2))

    @staticmethod
    def widths(shape, args) -> tuple[int, int]:
        return shape[0] // 2, shape[0] - shape[0] // 2
