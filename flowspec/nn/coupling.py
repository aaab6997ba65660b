"""Affine and additive coupling layers (RealNVP / Glow), optionally conditional."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import FlowLayer, Shape, cat_cond, make_scale, sum_except_batch
from .nets import make_net


class Partition(nn.Module):
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
