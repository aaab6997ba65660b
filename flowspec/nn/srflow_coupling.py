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

from typing import Any

import torch
from torch import Tensor

from .base import FlowLayer, Shape, make_scale, sum_except_batch
from .nets import make_net


class SRFlowCoupling(FlowLayer):
    r"""``y = g(f(x))``: ``f`` the injector ``(x + t(c)) * s(c)``, ``g`` the coupling
    ``y_b = (u_b + t(u_a, c)) * s(u_a, c)``, ``y_a = u_a`` on ``u = f(x)``.

    ``f`` is elementwise with a diagonal Jacobian ``s(c)``; ``g`` is triangular in the
    ordering ``(a, b)`` with diagonal ``1`` on ``a`` and ``s(u_a, c)`` on ``b``. Hence
    ``logdet = sum log s(c) + sum log s(u_a, c)``. Inverse: ``u_a = y_a``,
    ``u_b = y_b / s(u_a, c) - t(u_a, c)``, ``x = u / s(c) - t(c)``; both scales are positive,
    so the map is invertible for any network output. With ``inject=false`` only ``g``.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        if self.cond_channels is None:
            raise ValueError("coupling srflow is always conditional: it needs on=COND")
        c = self.in_shape[0]
        if c < 2:
            raise ValueError(f"coupling srflow needs C >= 2, got C={c}")
        self.a = c // 2  # SRFlow's channels_for_nn: the first C//2 channels drive the rest
        self.inject = bool(args.get("inject", True))
        if self.inject:
            self.features_net = make_net(args, self.cond_channels, 2 * c)
        self.coupling_net = make_net(args, self.a + self.cond_channels, 2 * (c - self.a))
        self.scale_fn = make_scale(args.get("scale", "sigmoid"))

    @property
    def _init_seen(self) -> bool:
        """Whether the networks' data-dependent inits (if any) have run."""
        return all(getattr(m, "_init_seen", True) for m in self.modules() if m is not self)

    def _affine(self, net: Any, inp: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        h = self.run_net(net, inp)
        scale, log_scale = self.scale_fn(h[:, 1::2])  # SRFlow's split_feature(h, "cross")
        return h[:, 0::2], scale, log_scale

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        cond = self._cond(cond, x).to(x.dtype)
        logdet = x.new_zeros(x.shape[0])
        if self.inject:
            shift, scale, log_scale = self._affine(self.features_net, cond)
            x = (x + shift) * scale
            logdet = logdet + sum_except_batch(log_scale)
        xa, xb = x[:, : self.a], x[:, self.a :]
        shift, scale, log_scale = self._affine(self.coupling_net, torch.cat([xa, cond], 1))
        y = torch.cat([xa, (xb + shift) * scale], dim=1)
        return y, logdet + sum_except_batch(log_scale)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        cond = self._cond(cond, y).to(y.dtype)
        ya, yb = y[:, : self.a], y[:, self.a :]
        shift, scale, log_scale = self._affine(self.coupling_net, torch.cat([ya, cond], 1))
        x = torch.cat([ya, yb / scale - shift], dim=1)
        logdet = -sum_except_batch(log_scale)
        if self.inject:
            shift, scale, log_scale = self._affine(self.features_net, cond)
            x = x / scale - shift
            logdet = logdet - sum_except_batch(log_scale)
        return x, logdet
