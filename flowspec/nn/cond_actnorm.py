"""Full-Glow's conditional actnorm: a per-sample scale and shift predicted from the condition."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._fullglow import VectorCondNet
from .base import FlowLayer, Shape, channel_init


class CondActNorm(FlowLayer):
    r"""``y = (x + t(c)) * exp(s(c))`` with one ``(s, t)`` per sample and channel, from the
    condition map ``c`` through Full-Glow's vector condition network.

    The Jacobian of one sample is diagonal with ``exp(s_c)`` repeated over the ``H W``
    positions of channel ``c``: ``logdet = H W sum_c s_c``, per sample (the condition differs
    between samples). Full-Glow predicts the scale itself and averages its log over the batch;
    here the network predicts ``log`` of the scale, so the layer is invertible for any output
    and its log-determinant is exact for each sample.

    Initialisation: the last linear layer starts with zero weight, and on the first training
    batch its bias is set from the data as actnorm's (``t = -mean``, ``s = -log std`` per
    channel), so every condition starts from Glow's data-dependent actnorm.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        if self.cond_channels is None:
            raise ValueError("cond_actnorm needs a condition (on=COND)")
        c, h, w = self.in_shape
        self.net = VectorCondNet(self.cond_channels, h, w, 2 * c)
        self.register_buffer("initialized", torch.tensor(False), persistent=True)
        self._init_seen = False

    def _load_from_state_dict(self, state_dict: dict, prefix: str, *args: Any) -> None:
        super()._load_from_state_dict(state_dict, prefix, *args)
        # Known from the loaded flag itself, so the first training call after a resume takes
        # the path a continuing run takes (compiled, no host read of the buffer).
        self._init_seen = bool(state_dict.get(prefix + "initialized", False))

    def _initialize(self, x: Tensor) -> None:
        with torch.no_grad():
            self._initialize_stats(x)

    def _initialize_stats(self, x: Tensor) -> None:
        mean, log_scale = channel_init(x)
        c = self.in_shape[0]
        bias = self.net.last.bias
        bias[:c].copy_(log_scale.to(bias.dtype))
        bias[c:].copy_((-mean).to(bias.dtype))
        self.initialized.fill_(True)

    def _scale_shift(self, x: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        out = self.run_net(self.net, self._cond(cond, x))
        c = self.in_shape[0]
        return out[:, :c, None, None], out[:, c:, None, None]

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not self._init_seen:
            if not bool(self.initialized):
                self._initialize(x)
            self._init_seen = True
        log_s, t = self._scale_shift(x, cond)
        logdet = log_s.flatten(1).sum(1) * (x.shape[2] * x.shape[3])
        return (x + t) * torch.exp(log_s), logdet

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        log_s, t = self._scale_shift(y, cond)
        logdet = log_s.flatten(1).sum(1) * (y.shape[2] * y.shape[3])
        return y * torch.exp(-log_s) - t, -logdet
