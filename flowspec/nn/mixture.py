"""Logistic-mixture CDF coupling (Flow++, as used by the mARFlow backbone)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowspec.layers.mixture import _MAX_BISECT, _MIN_LOG_SCALE

from .base import FlowLayer, Shape, bounded_scale, cat_cond
from .coupling import Partition
from .nets import make_net


class MixtureCoupling(FlowLayer):
    r"""Channel-mask coupling with an elementwise logistic-mixture-CDF bijection.

    The channel mask is the coupling's (:class:`.coupling.Partition`): the last ``C//2``
    channels are transformed, or the first ``C - C//2`` with ``flip=true``.

    For each transformed entry ``x`` the network (on the kept channels, plus the condition)
    gives mixture logits ``pi_k``, means ``mu_k``, log-scales ``l_k`` (``K = components``)
    and an affine pair ``(a, b)``. With ``F(x) = sum_k pi_k sigmoid((x - mu_k) e^{-l_k})``,

        ``y = logit(F(x)) * s + b``,  ``s = sigmoid(a + 2) + eps``

    (``scale=sigmoid``), or Flow++'s ``y = (logit(F(x)) + b') e^{w tanh(a)}`` with a learned
    per-channel ``w`` (``scale=tanh``: mARFlow's official code; ``w`` starts at 1), which is
    the same form with ``s = e^{w tanh(a)}`` and ``b = b' s``.

    ``F`` is a strictly increasing bijection of the real line onto (0, 1), ``logit`` maps
    (0, 1) back onto the line, and ``s > 0``: the elementwise map is a strictly increasing
    bijection of R. Its derivative is ``s F'(x) / (F(x) (1 - F(x)))``, so

        ``log dy/dx = log s + log F'(x) - log F(x) - log(1 - F(x))``,

    and the coupling's Jacobian (triangular, identity on kept channels) has
    ``logdet = sum`` of that over the transformed entries. Everything is evaluated in log
    space (``log F = logsumexp_k(log pi_k + logsigmoid(z_k))``, ``log(1-F)`` likewise with
    ``-z_k``), so ``logit(F) = log F - log(1 - F)`` stays finite far in the tails.

    Inverse: solve ``logit(F(x)) = (y - b) / s =: t`` by bisection. Since each component
    satisfies ``sigmoid((x - mu_k) e^{-l_k}) <= sigmoid(t)`` iff ``x <= mu_k + e^{l_k} t``,
    the root lies in ``[min_k(mu_k + e^{l_k} t), max_k(mu_k + e^{l_k} t)]``. Bisection
    halves that bracket until its width is below ``eps_dtype * (1 + max|bracket|)``
    (machine precision: ~1e-15 relative in float64), capped at 200 steps. The inverse is
    differentiable: its gradient is that of one Newton step from the root (implicit function
    theorem), while its value is the bisection's.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        self.components = int(args["components"])
        if self.components < 1:
            raise ValueError(f"components must be >= 1, got {self.components}")
        self.part = Partition(self.in_shape, "channel", bool(args.get("flip", False)))
        n = self.part.out_channels
        net_in = self.part.kept_channels + (self.cond_channels or 0)
        self.net = make_net(args, net_in, n * (2 + 3 * self.components))
        self.tanh_scale = args.get("scale", "sigmoid") == "tanh"
        if self.tanh_scale:
            self.rescale = nn.Parameter(torch.ones(n, 1, 1))

    def _params(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, ...]:
        """Per transformed entry: ``scale, log scale, shift`` (B,n,H,W) and ``log pi, mu, l``
        (B,n,H,W,K)."""
        b, _, hh, ww = x.shape
        n, k = self.part.out_channels, self.components
        h = self.run_net(self.net, cat_cond(self.part.kept(x), self._cond(cond, x)))
        h = h.view(b, n, 2 + 3 * k, hh, ww)
        if self.tanh_scale:
            log_scale = self.rescale * torch.tanh(h[:, :, 0])
            scale = torch.exp(log_scale)
            shift = h[:, :, 1] * scale
        else:
            scale, log_scale = bounded_scale(h[:, :, 0])
            shift = h[:, :, 1]
        mix = h[:, :, 2:].permute(0, 1, 3, 4, 2)  # (B, n, H, W, 3K)
        log_pi = F.log_softmax(mix[..., :k], dim=-1)
        mu = mix[..., k : 2 * k]
        log_s = mix[..., 2 * k :].clamp_min(_MIN_LOG_SCALE)
        return scale, log_scale, shift, log_pi, mu, log_s

    @staticmethod
    def _log_cdfs(x: Tensor, log_pi: Tensor, mu: Tensor, log_s: Tensor) -> tuple[Tensor, Tensor]:
        """``(log F(x), log(1 - F(x)))`` of the mixture, both accurate in the tails."""
        z = (x.unsqueeze(-1) - mu) * torch.exp(-log_s)
        log_f = torch.logsumexp(log_pi + F.logsigmoid(z), dim=-1)
        log_1mf = torch.logsumexp(log_pi + F.logsigmoid(-z), dim=-1)
        return log_f, log_1mf

    def _elementwise_logdet(
        self, x: Tensor, log_scale: Tensor, log_pi: Tensor, mu: Tensor, log_s: Tensor
    ) -> tuple[Tensor, Tensor]:
        """``(logit F(x), log dy/dx)`` of the elementwise map at ``x``."""
        z = (x.unsqueeze(-1) - mu) * torch.exp(-log_s)
        ls_pos, ls_neg = F.logsigmoid(z), F.logsigmoid(-z)
        log_f = torch.logsumexp(log_pi + ls_pos, dim=-1)
        log_1mf = torch.logsumexp(log_pi + ls_neg, dim=-1)
        # logistic density of component k at x: sigmoid(z) sigmoid(-z) / e^{l_k}
        log_pdf = torch.logsumexp(log_pi + ls_pos + ls_neg - log_s, dim=-1)
        return log_f - log_1mf, log_scale + log_pdf - log_f - log_1mf

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        scale, log_scale, shift, log_pi, mu, log_s = self._params(x, cond)
        logit, log_dydx = self._elementwise_logdet(
            self.part.transformed(x), log_scale, log_pi, mu, log_s
        )
        y = self.part.merge(x, logit * scale + shift)
        return y, self.part.sum_transformed(log_dydx)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        scale, log_scale, shift, log_pi, mu, log_s = self._params(y, cond)  # kept(y) == kept(x)
        target = (self.part.transformed(y) - shift) / scale
        x_b = self._bisect(target, log_pi, mu, log_s)
        # Value: the bisection root. Gradient: that of one Newton step from it (whose value
        # change, ~machine eps, is dropped), i.e. the exact implicit-function derivatives
        # dx/dt = 1/g'(x) and dx/dparams = -(dg/dparams)/g'(x) of g(x) = logit F(x) = t.
        logit, log_dydx = self._elementwise_logdet(x_b, log_scale, log_pi, mu, log_s)
        step = (logit - target) * torch.exp((log_scale - log_dydx).clamp_max(50.0))
        step = torch.where(torch.isfinite(step), step, torch.zeros_like(step))
        x_t = x_b - (step - step.detach())
        _, log_dydx = self._elementwise_logdet(x_t, log_scale, log_pi, mu, log_s)
        return self.part.merge(y, x_t), -self.part.sum_transformed(log_dydx)

    def _bisect(self, target: Tensor, log_pi: Tensor, mu: Tensor, log_s: Tensor) -> Tensor:
        """Solve ``logit F(x) = target`` elementwise inside the exact bracket (see class doc).

        Returns the midpoint of the final bracket (no gradient).
        """
        with torch.no_grad():
            target, log_pi, mu, log_s = (t.detach() for t in (target, log_pi, mu, log_s))
            ends = mu + torch.exp(log_s) * target.unsqueeze(-1)
            lo, hi = ends.min(dim=-1).values, ends.max(dim=-1).values
            eps = torch.finfo(target.dtype).eps
            width = float((hi - lo).max()) if target.numel() else 0.0
            size = float(torch.maximum(lo.abs(), hi.abs()).max()) if target.numel() else 0.0
            tol = eps * (1.0 + size)
            if not (math.isfinite(width) and math.isfinite(tol)):
                # a non-finite target (an overflowed inverse upstream) has no finite root;
                # bisect the finite ones as far as allowed and let the non-finite propagate
                steps = _MAX_BISECT
            else:
                steps = 0 if width <= tol else math.ceil(math.log2(width / tol)) + 1
            for _ in range(min(steps, _MAX_BISECT)):
                mid = 0.5 * (lo + hi)
                log_f, log_1mf = self._log_cdfs(mid, log_pi, mu, log_s)
                below = (log_f - log_1mf) < target
                lo = torch.where(below, mid, lo)
                hi = torch.where(below, hi, mid)
            return 0.5 * (lo + hi)
