"""Affine and additive coupling layers (RealNVP / Glow), optionally conditional."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar, Literal

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

from .base import FlowLayer, Module, Shape, cat_cond, make_scale, sum_except_batch
from .nets import make_net, net_params

if TYPE_CHECKING:
    from torch import Tensor

torch = nn = F = None  # bound when the first module of this file is built (see base.py)


class Partition(Module):
    r"""Splits the entries of a ``(C, H, W)`` sample into a kept part and a transformed part.

    * ``channel``: the first ``C - C//2`` channels are kept, the last ``C//2`` transformed
      (needs ``C >= 2``; odd ``C`` is fine). ``flip``: exactly the other way round, the
      first ``C - C//2`` channels transformed and the last ``C//2`` kept, so that two
      couplings with opposite ``flip`` transform every channel even when ``C`` is odd.
    * ``checkerboard``: the pixels with ``(h + w)`` even are kept (all channels), the others
      transformed; works for ``C = 1``. ``flip``: the pixels with ``(h + w)`` odd are kept.

    ``kept(x)`` is what the parameter network may see (the transformed entries are zeroed for
    the checkerboard), ``transformed(x)`` the entries the elementwise bijection acts on, and
    ``merge`` puts them back together. Whatever the network computes from ``kept(x)``, the
    Jacobian in the (kept, transformed) ordering is block triangular with an identity block,
    so its log-determinant is that of the elementwise map on the transformed entries alone.
    """

    def __init__(self, shape: Shape, mask: str, flip: bool = False) -> None:
        super().__init__()
        c, h, w = shape
        self.mask, self.flip = mask, bool(flip)
        if mask == "channel":
            if c < 2:
                raise ValueError(f"a channel-mask coupling needs C >= 2, got C={c}")
            # channel ranges [start, stop) of the kept and of the transformed part
            first, last = (0, c - c // 2), (c - c // 2, c)
            self._kept, self._out = (last, first) if self.flip else (first, last)
            self.kept_channels = self._kept[1] - self._kept[0]
            self.out_channels = self._out[1] - self._out[0]
        elif mask == "checkerboard":
            parity = (torch.arange(h).view(h, 1) + torch.arange(w).view(1, w)) % 2
            keep = parity == (1 if self.flip else 0)
            self.register_buffer("keep", keep.view(1, 1, h, w), persistent=False)
            self.kept_channels, self.out_channels = c, c
        else:
            raise ValueError(f"unknown coupling mask {mask!r}; expected 'channel'/'checkerboard'")

    def kept(self, x: Tensor) -> Tensor:
        if self.mask == "channel":
            return x[:, self._kept[0] : self._kept[1]]
        return torch.where(self.keep, x, torch.zeros((), dtype=x.dtype, device=x.device))

    def transformed(self, x: Tensor) -> Tensor:
        if self.mask == "channel":
            return x[:, self._out[0] : self._out[1]]
        return x

    def merge(self, x: Tensor, new: Tensor) -> Tensor:
        """Entries of ``x`` where kept, of ``new`` (shaped like ``transformed(x)``) elsewhere."""
        if self.mask == "channel":
            kept = self.kept(x)
            return torch.cat([new, kept] if self.flip else [kept, new], dim=1)
        return torch.where(self.keep, x, new)

    def sum_transformed(self, t: Tensor) -> Tensor:
        """Sum a per-entry quantity (shaped like ``transformed(x)``) over transformed entries."""
        if self.mask == "channel":
            return sum_except_batch(t)
        return sum_except_batch(torch.where(self.keep, torch.zeros_like(t), t))


class _CouplingModule(FlowLayer):
    additive: bool = False

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        self.part = Partition(self.in_shape, args["mask"], bool(args.get("flip", False)))
        width = self.part.out_channels * (1 if self.additive else 2)
        net_in = self.part.kept_channels + (self.cond_channels or 0)
        self.net = make_net(args, net_in, width)
        self.scale_fn = None if self.additive else make_scale(args.get("scale", "sigmoid"))

    def _shift_scale(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """``(shift, scale, log scale)`` from the kept entries (and the condition)."""
        h = self.run_net(self.net, cat_cond(self.part.kept(x), self._cond(cond, x)))
        if self.additive:
            one = torch.ones_like(h)
            return h, one, torch.zeros_like(h)
        n = self.part.out_channels
        scale, log_scale = self.scale_fn(h[:, n:])
        return h[:, :n], scale, log_scale

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        shift, scale, log_scale = self._shift_scale(x, cond)
        y = self.part.merge(x, self.part.transformed(x) * scale + shift)
        return y, self.part.sum_transformed(log_scale)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        shift, scale, log_scale = self._shift_scale(y, cond)  # kept(y) == kept(x)
        x = self.part.merge(y, (self.part.transformed(y) - shift) / scale)
        return x, -self.part.sum_transformed(log_scale)


class AffineCoupling(_CouplingModule):
    r"""Affine coupling ``y_t = x_t * s(x_k) + t(x_k)``, ``y_k = x_k``.

    ``s = sigmoid(h + 2) + eps`` is bounded and strictly positive, so the map is invertible
    for any network output: ``x_t = (y_t - t) / s`` with ``s, t`` recomputed from
    ``y_k = x_k``. The Jacobian is triangular with diagonal ``1`` on kept entries and ``s``
    on transformed ones: ``logdet = sum_transformed log s``. The network sees the kept entries
    concatenated with the condition when the layer is conditional (``on=COND``).

    ``scale=bounded`` uses ``s = exp(b tanh(h))`` instead (``b = BOUNDED_SCALE_B``), with
    ``log s = b tanh(h)`` exactly: ``s`` in ``[e^-b, e^b]``, so the inverse divides by at most
    ``e^b`` rather than ``1 / eps``, and the zero-initialised net starts at ``s = 1``.
    """


class AdditiveCoupling(_CouplingModule):
    r"""Additive coupling ``y_t = x_t + t(x_k)``, ``y_k = x_k``: volume preserving, logdet 0."""

    additive = True


# ---- declarations ---------------------------------------------------------------------------
ScaleForm = Literal["sigmoid", "bounded"]
SCALE_DOC = ("sigmoid: s = sigmoid(h + 2) + 1e-4; bounded: s = exp(b tanh(h)) in [e^-b, e^b], "
             "which keeps the inverse accurate in deep flows")


FLIP_DOC = ("swap the halves: channel: the first C - C//2 channels are transformed, driven "
            "by the last C//2; checkerboard: the pixels with h + w even are transformed")


class CouplingArgs(CondArgs):
    hidden: int = Field(512, ge=1, le=8192, description="width of the coupling network")
    net: str = registry_field("net", "glow", "the coupling network (a registered net)")
    net_args: dict[str, int | float | bool | str] = registry_args_field("net")
    mask: Literal["channel", "checkerboard"] = Field(
        "channel", description="channel: the first C - C//2 channels drive the rest; "
        "checkerboard: pixels with h + w even drive the others")
    flip: bool = Field(False, description=FLIP_DOC)


class AffineCouplingArgs(CouplingArgs):
    scale: ScaleForm = Field("sigmoid", description=SCALE_DOC)


def channel_split_issue(shape, what: str) -> Issue | None:
    """E202 for a channel-mask layer on fewer than 2 channels."""
    if shape[0] < 2:
        return Issue(codes.E_FEW_CHANNELS, f"{what} needs at least 2 channels to split, but gets "
                     f"{fmt_shape(shape)}", "squeeze first (it multiplies the channels by 4), "
                     "or use mask=checkerboard")
    return None


class CouplingKind(LayerKind):
    """Shared declaration of the masked couplings (affine, additive, mixture)."""

    Args = CouplingArgs
    conditional = "optional"
    #: per transformed entry, how many numbers the network outputs
    outputs_per_entry: ClassVar[int] = 2

    @classmethod
    def issues(cls, shape, args):
        if getattr(args, "mask", "channel") == "channel":
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
        return [[a and (ch, p) not in coupled for p, a in enumerate(row)]
                for ch, row in enumerate(alone)]

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
    module = AffineCoupling


@kind
class AdditiveCouplingKind(CouplingKind):
    key = "coupling.additive"
    doc = "additive (volume-preserving) coupling (NICE)"
    module = AdditiveCoupling
    outputs_per_entry = 1
