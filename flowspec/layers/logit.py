"""RealNVP's logit preprocessing as a layer of the flow (exact log-det, counted in bits/dim)."""

from __future__ import annotations

from pydantic import Field

from flowspec.kinds import Args, LayerKind, kind


class LogitArgs(Args):
    alpha: float = Field(
        0.05,
        gt=0.0,
        lt=0.5,
        description="squeeze [0, 1] into [alpha, 1 - alpha] before the logit (RealNVP: 0.05)",
    )


@kind
class LogitKind(LayerKind):
    key = "logit"
    Args = LogitArgs
    doc = (
        "RealNVP's logit preprocessing of the image (model space [-1/2, 1/2]): "
        "y = logit(alpha + (1 - 2 alpha)(x + 1/2)), exact log-det"
    )
    module = "flowspec.nn.logit:Logit"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        return 0

    @classmethod
    def alone_after(cls, shape, args, alone: list[list[bool]]) -> list[list[bool]]:
        """Entrywise: W004's analysis (:mod:`flowspec.check`) sees no dependence change."""
        return alone
