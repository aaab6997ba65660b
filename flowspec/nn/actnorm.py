"""Activation normalisation (Glow) with a once-only data-dependent initialisation."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from .base import FlowLayer, Shape, batch_logdet, channel_init


class ActNorm(FlowLayer):
    r"""Per-channel affine map ``y = (x + b) * exp(s)``.

    The Jacobian is diagonal with ``exp(s_c)`` repeated over the ``H * W`` positions of
    channel ``c``, hence ``logdet = H W sum_c s_c`` exactly (the same for every sample).

    Initialisation: on the first ``forward`` in training mode, ``b = -mean`` and
    ``s = -log std`` of the batch per channel, so that this batch leaves the layer with
    zero mean and unit variance. A channel that is constant in that batch (std below
    ``1e-6``) keeps ``s = 0``: there is no scale to learn from it, and ``1 / std`` would be
    astronomically large. Under ``torch.distributed`` the moments are averaged over ranks so
    every replica starts identical. The persistent buffer ``initialized`` records that the
    init happened; it travels in the ``state_dict``, so a module loaded from a checkpoint
    never re-initialises. ``inverse`` never initialises.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        c = self.in_shape[0]
        self.bias = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.log_scale = nn.Parameter(torch.zeros(1, c, 1, 1))
        self.register_buffer("initialized", torch.tensor(False), persistent=True)
        # Python-side cache of ``initialized`` so training steps need no device sync.
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
        self.bias.copy_((-mean).view_as(self.bias))
        self.log_scale.copy_(log_scale.view_as(self.log_scale))
        self.initialized.fill_(True)

    def _logdet(self, x: Tensor) -> Tensor:
        h, w = x.shape[2], x.shape[3]
        return batch_logdet(self.log_scale.sum() * (h * w), x)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.training and not self._init_seen:
            if not bool(self.initialized):
                self._initialize(x)
            self._init_seen = True
        y = (x + self.bias) * torch.exp(self.log_scale)
        return y, self._logdet(x)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = y * torch.exp(-self.log_scale) - self.bias
        return x, -self._logdet(y)
