"""Full-Glow's conditional affine coupling: the condition through its own network first."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowspec.layers.cond_coupling import LOGSCALE_FACTOR

from ._fullglow import MapCondNet
from .base import FlowLayer, Shape, bounded_scale
from .coupling import Partition
from .nets import glow_net


class CondAffineCoupling(FlowLayer):
    r"""Full-Glow's coupling: ``y_t = (x_t + t) * s``, ``y_k = x_k``, with
    ``(log s', t) = NN(x_k, G(c))`` and ``s = sigmoid(log s' + 2) (+ 1e-4)``.

    ``G`` (conv3x3 to ``cond_hidden``, ReLU, conv3x3 to ``C``, ReLU) turns the condition map
    into ``C`` channels, which are concatenated with the kept half ``x_k`` (the first
    ``C - C//2`` channels); ``NN`` is Glow's network of width ``hidden`` whose zero-initialised
    last convolution is scaled by ``exp(3 g)`` with a learned per-channel ``g``. The
    Jacobian is triangular with diagonal ``s`` on the transformed half, so
    ``logdet = sum log s``; ``s > 0`` for every network output, so the map is invertible:
    ``x_t = y_t / s - t``.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        if self.cond_channels is None:
            raise ValueError("coupling cond_affine needs a condition (on=COND)")
        c = self.in_shape[0]
        self.part = Partition(self.in_shape, "channel")
        self.cond_net = MapCondNet(self.cond_channels, int(args["cond_hidden"]), c)
        n = self.part.out_channels
        self.net = glow_net(self.part.kept_channels + c, 2 * n, int(args["hidden"]))
        self.logs = nn.Parameter(torch.zeros(1, 2 * n, 1, 1))

    def _params(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        g = self.run_net(self.cond_net, self._cond(cond, x))
        h = self.run_net(self.net, torch.cat([self.part.kept(x), g], dim=1))
        h = h * torch.exp(self.logs * LOGSCALE_FACTOR)
        n = self.part.out_channels
        scale, log_scale = bounded_scale(h[:, :n])
        return h[:, n:], scale, log_scale

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        t, scale, log_scale = self._params(x, cond)
        y = self.part.merge(x, (self.part.transformed(x) + t) * scale)
        return y, self.part.sum_transformed(log_scale)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        t, scale, log_scale = self._params(y, cond)  # kept(y) == kept(x)
        x = self.part.merge(y, self.part.transformed(y) / scale - t)
        return x, -self.part.sum_transformed(log_scale)
