"""Affine and additive coupling layers (RealNVP / Glow), optionally conditional."""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from flowspec import codes
from flowspec.kinds import (
    CondArgs,
    Issue,
    LayerKind,
    fmt_shape,
    kind,
    registry_args_field,
    registry_field,
)

from .nets import net_params

ScaleForm = Literal["sigmoid", "bounded"]
SCALE_DOC = (
    "sigmoid: s = sigmoid(h + 2) + 1e-4; bounded: s = exp(b tanh(h)) in [e^-b, e^b], "
    "which keeps the inverse accurate in deep flows"
)


FLIP_DOC = (
    "swap the halves: channel: the first C - C//2 channels are transformed, driven "
    "by the last C//2; checkerboard: the pixels with h + w even are transformed"
)


class CouplingArgs(CondArgs):
    hidden: int = Field(512, ge=1, le=8192, description="width of the coupling network")
    net: str = registry_field("net", "glow", "the coupling network (a registered net)")
    net_args: dict[str, int | float | bool | str] = registry_args_field("net")
    mask: Literal["channel", "checkerboard"] = Field(
        "channel",
        description="channel: the first C - C//2 channels drive the rest; "
        "checkerboard: pixels with h + w even drive the others",
    )
    flip: bool = Field(False, description=FLIP_DOC)


class AffineCouplingArgs(CouplingArgs):
    scale: ScaleForm = Field("sigmoid", description=SCALE_DOC)


def channel_split_issue(shape, what: str) -> Issue | None:
    """E202 for a channel-mask layer on fewer than 2 channels."""
    if shape[0] < 2:
        return Issue(
            codes.E_FEW_CHANNELS,
            f"{what} needs at least 2 channels to split, but gets {fmt_shape(shape)}",
            "squeeze first (it multiplies the channels by 4), or use mask=checkerboard",
        )
    return None


class CouplingKind(LayerKind):
    """Shared declaration of the masked couplings (affine, additive, mixture)."""

    Args = CouplingArgs
    conditional = "optional"
    #: per transformed entry, how many numbers the network outputs
    outputs_per_entry: ClassVar[int] = 2

    @classmethod
    def issues(cls, shape, args):
        # a subclass's Args may have no mask (asked of the model's fields: a missing
        # attribute of a pydantic model costs two exceptions)
        mask = args.mask if "mask" in type(args).model_fields else "channel"
        if mask == "channel":
            issue = channel_split_issue(shape, f"coupling {cls.variant} with mask=channel")
            return [issue] if issue else []
        return []

    @classmethod
    def coupled(cls, shape, args) -> set[tuple[int, int]]:
        """The entry classes ``(channel, (h + w) % 2)`` this coupling transforms (each then
        depends on the kept entries): what the checker's W004 analysis needs. A checkerboard
        on a single pixel has no kept pixel to condition on (it is elementwise)."""
        a = dict(args) if isinstance(args, Mapping) else args.model_dump()
        c, flip = shape[0], bool(a.get("flip", False))
        if a.get("mask", "channel") == "checkerboard":
            if shape[1] * shape[2] < 2:
                return set()
            return {(ch, 0 if flip else 1) for ch in range(c)}
        channels = range(c - c // 2) if flip else range(c - c // 2, c)
        return {(ch, p) for ch in channels for p in (0, 1)}

    @classmethod
    def alone_after(cls, shape, args, alone: list[list[bool]]) -> list[list[bool]]:
        """W004 (see :mod:`flowspec.check`): the transformed entries now depend on others."""
        coupled = cls.coupled(shape, args)
        return [
            [a and (ch, p) not in coupled for p, a in enumerate(row)]
            for ch, row in enumerate(alone)
        ]

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        kept, out = cls.widths(shape, args)
        return net_params(args, kept + (cond_channels or 0), out * cls.outputs_per_entry)

    @staticmethod
    def widths(shape, args) -> tuple[int, int]:
        """Channels the network sees and channels it transforms (as :class:`Partition`)."""
        a = dict(args) if isinstance(args, Mapping) else args.model_dump()
        c = shape[0]
        if a.get("mask", "channel") == "checkerboard":
            return c, c
        return (c // 2, c - c // 2) if a.get("flip", False) else (c - c // 2, c // 2)


@kind
class AffineCouplingKind(CouplingKind):
    key = "coupling.affine"
    Args = AffineCouplingArgs
    doc = "affine coupling (Glow / RealNVP), bounded positive scale"
    module = "flowspec.nn.coupling:AffineCoupling"


@kind
class AdditiveCouplingKind(CouplingKind):
    key = "coupling.additive"
    doc = "additive (volume-preserving) coupling (NICE)"
    module = "flowspec.nn.coupling:AdditiveCoupling"
    outputs_per_entry = 1
