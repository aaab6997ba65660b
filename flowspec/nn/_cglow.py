"""C-Glow's condition networks (Lu & Huang 2020; MoeinSorkhei/glow2 ``src/models/c_glow``),
shared by ``cglow_actnorm``, ``cglow_invconv`` and ``coupling cglow``: see
:mod:`flowspec.layers._cglow` for what they compute and why the condition comes at full
size.

Initialisation: glow2 starts every weight of these networks at zero (and the linear layers'
biases), a stationary point from which only the last layer's bias learns, so the layers
never become conditional. Here the hidden layers keep PyTorch's default initialisation and
only the output layer starts as glow2's (zero for actnorm, N(0, 0.1^2) for the matrix).
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from .base import FlowLayer


def full_cond(layer: FlowLayer, cond: Tensor | None, x: Tensor, hw: tuple[int, int]) -> Tensor:
    """``cond`` checked to be the ``(B, Cc, *hw)`` map a C-Glow layer reads."""
    if cond is None:
        raise ValueError(f"{type(layer).__name__} is conditional but got cond=None")
    expected = (x.shape[0], layer.cond_channels, *hw)
    if tuple(cond.shape) != expected:
        raise ValueError(
            f"{type(layer).__name__} reads its condition at full size, "
            f"{expected}, got {tuple(cond.shape)}"
        )
    return cond


class VectorNet(nn.Module):
    """C-Glow's ``x_Con`` + ``x_Linear``: a ``(B, Cc, H, W)`` map (H, W divisible by 8) to
    ``(B, out)`` in (-1, 1): three 2x2 stride-2 convolutions (ReLU), flattened, linear to
    ``units``, ``units`` (ReLU) and ``out`` (tanh)."""

    def __init__(
        self, cond_channels: int, hw: tuple[int, int], hidden: int, units: int, out: int
    ) -> None:
        super().__init__()
        self.conv = nn.Sequential(
            nn.Conv2d(cond_channels, hidden, 2, stride=2),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 2, stride=2),
            nn.ReLU(),
            nn.Conv2d(hidden, hidden, 2, stride=2),
            nn.ReLU(),
        )
        self.mlp = nn.Sequential(
            nn.Linear(hidden * (hw[0] // 8) * (hw[1] // 8), units),
            nn.ReLU(),
            nn.Linear(units, units),
            nn.ReLU(),
        )
        self.last = nn.Linear(units, out)

    def forward(self, cond: Tensor) -> Tensor:
        return torch.tanh(self.last(self.mlp(self.conv(cond).flatten(1))))


class ChannelAffine(nn.Module):
    """glow2's ``ActNorm`` inside C-Glow's coupling network: a learned per-channel shift and
    log-scale, ``(x + b) exp(s)`` (no data-dependent initialisation)."""

    def __init__(self, channels: int) -> None:
        super().__init__()
        self.bias = nn.Parameter(torch.zeros(1, channels, 1, 1))
        self.logs = nn.Parameter(torch.zeros(1, channels, 1, 1))

    def forward(self, x: Tensor) -> Tensor:
        return (x + self.bias) * torch.exp(self.logs)
