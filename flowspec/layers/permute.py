"""Fixed channel permutations."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from flowspec.kinds import Args, LayerKind, arg, kind


class PermuteArgs(Args):
    mode: Literal["reverse", "shuffle"] = Field(
        "shuffle", description="reverse the channels, or a fixed seeded shuffle"
    )


@kind
class PermuteKind(LayerKind):
    key = "permute"
    Args = PermuteArgs
    doc = "fixed channel permutation (RealNVP, Glow's ablations)"
    module = "flowspec.nn.permute:Permute"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        return 0

    @classmethod
    def alone_after(cls, shape, args, alone):
        # only moves entries; a shuffle's order is drawn by torch, so it counts as unknown
        return alone[::-1] if arg(args, "mode") == "reverse" else None
