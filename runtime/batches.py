"""Which images make up each training batch, and their dequantisation noise.

Pure functions of ``(seed, step)``: nothing here has state worth saving, so a resumed run
sees exactly the batches of an uninterrupted one (see :mod:`runtime.trainer`).
"""

from __future__ import annotations

import torch
from torch import Tensor

from .streams import generator, stream_seed


class BatchStream:
    """Which images make up the batch of step ``s``, and their dequantisation noise.

    Epoch ``e`` visits the training set in the order of a permutation drawn from a
    generator seeded by ``(seed, e)``; step ``s`` takes positions ``sB ... sB + B - 1`` of
    the concatenated epochs. Nothing here has state worth saving: ``(seed, step)`` is it.
    ``tag`` keeps another phase's stream apart (the encoder's pretraining: ``pretrain/``).
    """

    def __init__(self, n: int, batch: int, seed: int, tag: str = ""):
        self.n, self.batch, self.seed, self.tag = n, batch, seed, tag
        self._perms: dict[int, Tensor] = {}

    def _perm(self, epoch: int) -> Tensor:
        if epoch not in self._perms:
            if len(self._perms) > 2:
                self._perms.pop(min(self._perms))
            g = generator(stream_seed(self.seed, f"{self.tag}epoch", epoch))
            self._perms[epoch] = torch.randperm(self.n, generator=g)
        return self._perms[epoch]

    def indices(self, step: int) -> Tensor:
        pos = step * self.batch + torch.arange(self.batch)
        epoch, within = pos // self.n, pos % self.n
        out = torch.empty(self.batch, dtype=torch.int64)
        first, last = step * self.batch // self.n, ((step + 1) * self.batch - 1) // self.n
        for e in range(first, last + 1):  # the epochs the batch spans, without reading `epoch`
            sel = epoch == e
            out[sel] = self._perm(e)[within[sel]]
        return out

    def noise(self, step: int, shape: tuple[int, ...]) -> Tensor:
        return torch.rand(
            (self.batch, *shape), generator=generator(stream_seed(self.seed, "noise", step))
        )
