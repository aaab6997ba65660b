"""Fixed channel permutations."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from .base import FlowLayer, Shape


class Permute(FlowLayer):
    """Reorder channels: ``y[:, i] = x[:, perm[i]]``; a permutation has ``|det| = 1``.

    ``mode="reverse"`` reverses the channels (RealNVP/Glow). ``mode="shuffle"`` draws a
    permutation from a generator seeded with the channel count, so it is deterministic and
    independent of the global RNG; it is also kept as a persistent buffer so a checkpoint
    stays valid even if torch's ``randperm`` algorithm changes.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        c = self.in_shape[0]
        mode = args["mode"]
        if mode == "reverse":
            perm = torch.arange(c - 1, -1, -1)
        elif mode == "shuffle":
            perm = torch.randperm(c, generator=torch.Generator().manual_seed(c))
        else:
            raise ValueError(f"unknown permute mode {mode!r}; expected 'reverse' or 'shuffle'")
        self.register_buffer("perm", perm, persistent=True)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return x[:, self.perm], x.new_zeros(x.shape[0])

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return y[:, torch.argsort(self.perm)], y.new_zeros(y.shape[0])
