"""C-Glow's conditional affine coupling: the full-size condition resized to the layer's."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowspec.layers._cglow import cond_size
from flowspec.layers.cglow_coupling import RESIZE_CHANNELS
from flowspec.layers.cond_coupling import LOGSCALE_FACTOR

from ._cglow import ChannelAffine, full_cond
from .base import FlowLayer, Shape
from .coupling import Partition
from .nets import zero_conv


class CGlowCoupling(FlowLayer):
    r"""C-Glow's coupling: ``y_t = (x_t + t) * s``, ``y_k = x_k`` (``x_k`` the first
    ``C - C//2`` channels), with ``s = sigmoid(a + 2)`` and ``(t, a) = tanh(NN(x_k, G(c)))``.

    ``G`` reads the condition at its full size: conv3x3 to 16 channels, a convolution of
    kernel and stride ``2^down`` to the layer's ``H x W`` and ``C//2`` channels, conv3x3
    (ReLU after each). ``NN`` is Glow's network with actnorms (conv3x3 without bias, affine,
    ReLU, conv1x1 without bias, affine, ReLU) and a zero-initialised conv3x3 whose output is
    scaled by ``exp(3 g)``. Since ``a`` lies in (-1, 1), ``s`` lies in (0.73, 0.96): the
    map is invertible for every output, ``x_t = y_t / s - t``, and ``logdet = sum log s``.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        if self.cond_channels is None:
            raise ValueError("coupling cglow needs a condition (on=COND)")
        self.part = Partition(self.in_shape, "channel")
        self.hw = cond_size(self.in_shape, args)
        n, hidden, f = self.part.out_channels, int(args["hidden"]), 2 ** int(args["down"])
        self.resize = nn.Sequential(
            nn.Conv2d(self.cond_channels, RESIZE_CHANNELS, 3, padding=1),
            nn.ReLU(),
            nn.Conv2d(RESIZE_CHANNELS, n, f, stride=f),
            nn.ReLU(),
            nn.Conv2d(n, n, 3, padding=1),
            nn.ReLU(),
        )
        self.net = nn.Sequential(
            nn.Conv2d(self.part.kept_channels + n, hidden, 3, padding=1, bias=False),
            ChannelAffine(hidden),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 1, bias=False),
            ChannelAffine(hidden),
            nn.ReLU(),
            zero_conv(hidden, 2 * n),
        )
        self.logs = nn.Parameter(torch.zeros(1, 2 * n, 1, 1))

    def _params(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor, Tensor]:
        g = self.run_net(self.resize, full_cond(self, cond, x, self.hw))
        h = self.run_net(self.net, torch.cat([self.part.kept(x), g], dim=1))
        h = torch.tanh(h * torch.exp(self.logs * LOGSCALE_FACTOR))
        n = self.part.out_channels
        a = h[:, n:] + 2.0
        return h[:, :n], torch.sigmoid(a), F.logsigmoid(a)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        t, scale, log_scale = self._params(x, cond)
        y = self.part.merge(x, (self.part.transformed(x) + t) * scale)
        return y, self.part.sum_transformed(log_scale)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        t, scale, log_scale = self._params(y, cond)  # kept(y) == kept(x)
        x = self.part.merge(y, self.part.transformed(y) / scale - t)
        return x, -self.part.sum_transformed(log_scale)
