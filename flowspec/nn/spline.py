"""Rational-quadratic spline coupling (Neural Spline Flows, Durkan et al. 2019)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from flowspec.layers.spline import MIN_BIN, MIN_DERIVATIVE

from .base import FlowLayer, Shape, cat_cond
from .coupling import Partition
from .nets import make_net


def _edges(raw: Tensor, tail: float) -> tuple[Tensor, Tensor]:
    """Knot positions ``(..., K + 1)`` from ``-tail`` to ``tail`` and bin sizes ``(..., K)``
    from unnormalised sizes ``raw`` (``(..., K)``): a softmax with a floor per bin."""
    k = raw.shape[-1]
    frac = MIN_BIN + (1.0 - MIN_BIN * k) * torch.softmax(raw, dim=-1)
    if torch.are_deterministic_algorithms_enabled():
        # CUDA has no deterministic cumsum: a product with an upper-triangular ones matrix
        upper = torch.ones(k, k - 1, dtype=frac.dtype, device=frac.device).triu()
        partial = frac @ upper
    else:
        partial = torch.cumsum(frac, dim=-1)[..., :-1]
    inner = 2.0 * tail * partial - tail
    end = torch.full_like(raw[..., :1], tail)
    edges = torch.cat([-end, inner, end], dim=-1)  # the ends are exactly -tail and tail
    return edges, edges[..., 1:] - edges[..., :-1]


def _derivatives(raw: Tensor) -> Tensor:
    """Knot derivatives ``(..., K + 1)``: 1 at both ends (matching the identity tails), and
    ``MIN_DERIVATIVE + softplus(raw + c)`` inside, ``c`` chosen so that ``raw = 0`` gives 1."""
    shift = math.log(math.expm1(1.0 - MIN_DERIVATIVE))
    inner = MIN_DERIVATIVE + F.softplus(raw + shift)
    one = torch.ones_like(raw[..., :1])
    return torch.cat([one, inner, one], dim=-1)


def _pick(t: Tensor, idx: Tensor) -> Tensor:
    return t.gather(-1, idx.unsqueeze(-1)).squeeze(-1)


def rq_spline(
    v: Tensor, raw_w: Tensor, raw_h: Tensor, raw_d: Tensor, tail: float, inverse: bool
) -> tuple[Tensor, Tensor]:
    r"""The monotone rational-quadratic spline on ``[-tail, tail]``, identity outside.

    ``v`` is ``(...)``; ``raw_w``, ``raw_h`` are ``(..., K)``, ``raw_d`` is ``(..., K - 1)``.
    Returns ``(output, log |d forward / dx|)`` where the derivative is taken at the input
    ``x`` of the forward map (so ``inverse`` returns ``x`` and ``log f'(x)``; the inverse's
    log-det is its negative). Durkan et al. 2019, eq. 4 (map), eq. 5 (derivative) and
    eqs. 6-8 (inverse):

    in bin ``k`` with ``xi = (x - x_k) / w_k`` in ``[0, 1]``, ``s_k = h_k / w_k``,

    .. math:: f(x) = y_k + \frac{h_k (s_k \xi^2 + d_k \xi (1 - \xi))}
                              {s_k + (d_{k+1} + d_k - 2 s_k) \xi (1 - \xi)},

    .. math:: f'(x) = \frac{s_k^2 (d_{k+1} \xi^2 + 2 s_k \xi (1 - \xi) + d_k (1 - \xi)^2)}
                           {(s_k + (d_{k+1} + d_k - 2 s_k) \xi (1 - \xi))^2};

    the inverse solves the quadratic ``a xi^2 + b xi + c = 0`` (with ``D = y - y_k`` and
    ``t = d_{k+1} + d_k - 2 s_k``: ``a = h_k (s_k - d_k) + D t``, ``b = h_k d_k - D t``,
    ``c = -s_k D``) for the paper's root ``xi = 2c / (-b - sqrt(b^2 - 4ac))``, evaluated as
    ``(-b + sqrt(b^2 - 4ac)) / 2a`` where ``b < 0``: each form is free of cancellation on its
    side (the first alone loses most digits in float32 when ``b < 0`` and ``4ac`` is small).
    The end derivatives are 1, so ``f`` joins the identity tails with a continuous slope.
    """
    edges_x, widths = _edges(raw_w, tail)
    edges_y, heights = _edges(raw_h, tail)
    deriv = _derivatives(raw_d)
    inside = (v >= -tail) & (v <= tail)
    vc = v.clamp(-tail, tail)  # keeps every branch finite outside (those entries pass through)
    knots = edges_y if inverse else edges_x
    k = raw_w.shape[-1]
    idx = (vc.unsqueeze(-1) >= knots[..., 1:-1]).sum(dim=-1).clamp(0, k - 1)
    x_k, w_k = _pick(edges_x, idx), _pick(widths, idx)
    y_k, h_k = _pick(edges_y, idx), _pick(heights, idx)
    d_k, d_k1 = _pick(deriv, idx), _pick(deriv, idx + 1)
    s_k = h_k / w_k
    t = d_k1 + d_k - 2.0 * s_k
    if inverse:
        delta = vc - y_k
        a = h_k * (s_k - d_k) + delta * t
        b = h_k * d_k - delta * t
        c = -s_k * delta
        root = torch.sqrt((b * b - 4.0 * a * c).clamp_min(0.0))
        # the same root written without cancellation: -b - root when b >= 0, -b + root else
        # (where b < 0 this root is finite, so a != 0); denominators made safe in the branch
        # not taken, whose gradient is multiplied by zero
        pos = b >= 0
        one = torch.ones_like(b)
        xi = torch.where(
            pos,
            2.0 * c / torch.where(pos, -b - root, -one),
            (-b + root) / torch.where(pos, one, 2.0 * a),
        )
        xi = xi.clamp(0.0, 1.0)
        out = x_k + xi * w_k
    else:
        xi = ((vc - x_k) / w_k).clamp(0.0, 1.0)
        mid = xi * (1.0 - xi)
        out = y_k + h_k * (s_k * xi * xi + d_k * mid) / (s_k + t * mid)
    mid = xi * (1.0 - xi)
    log_d = (
        2.0 * torch.log(s_k)
        + torch.log(d_k1 * xi * xi + 2.0 * s_k * mid + d_k * (1.0 - xi) ** 2)
        - 2.0 * torch.log(s_k + t * mid)
    )
    return torch.where(inside, out, v), torch.where(inside, log_d, torch.zeros_like(log_d))


class SplineCoupling(FlowLayer):
    r"""Coupling with an elementwise monotone rational-quadratic spline.

    The network (on the kept entries, plus the condition) gives, per transformed entry,
    ``K`` bin widths, ``K`` bin heights and ``K - 1`` inner knot derivatives of a spline on
    ``[-tail, tail]`` (:func:`rq_spline`); outside that interval the map is the identity
    (linear tails with slope 1). The kept/transformed partition is the coupling's
    (``mask=channel|checkerboard``, ``flip``), so the Jacobian is block triangular and
    ``logdet = sum`` of ``log f'(x)`` over the transformed entries. A zero network gives
    equal bins and unit derivatives: the layer starts as the identity. The inverse is the
    closed-form root of the bin's quadratic, no iteration.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        self.bins = int(args["bins"])
        self.tail = float(args["tail"])
        if self.bins < 2 or not self.tail > 0:
            raise ValueError(f"spline needs bins >= 2 and tail > 0, got {self.bins}, {self.tail}")
        self.part = Partition(self.in_shape, args["mask"], bool(args.get("flip", False)))
        n = self.part.out_channels
        net_in = self.part.kept_channels + (self.cond_channels or 0)
        self.net = make_net(args, net_in, n * (3 * self.bins - 1))

    def _raw(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        """Unnormalised widths, heights ``(B, n, H, W, K)`` and derivatives (``K - 1``)."""
        b, _, hh, ww = x.shape
        n, k = self.part.out_channels, self.bins
        h = self.run_net(self.net, cat_cond(self.part.kept(x), self._cond(cond, x)))
        h = h.view(b, n, 3 * k - 1, hh, ww).permute(0, 1, 3, 4, 2)
        return h[..., :k], h[..., k : 2 * k], h[..., 2 * k :]

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raw = self._raw(x, cond)
        y_t, log_d = rq_spline(self.part.transformed(x), *raw, self.tail, inverse=False)
        return self.part.merge(x, y_t), self.part.sum_transformed(log_d)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        raw = self._raw(y, cond)  # kept(y) == kept(x)
        x_t, log_d = rq_spline(self.part.transformed(y), *raw, self.tail, inverse=True)
        return self.part.merge(y, x_t), -self.part.sum_transformed(log_d)
