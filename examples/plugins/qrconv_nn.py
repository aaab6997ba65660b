"""The torch module of the ``qrconv`` kind declared in ``qrconv.py``: plain PyTorch code."""

from __future__ import annotations

import torch

from flowspec.nn import FlowLayer


class QRConvModule(FlowLayer):
    def __init__(self, shape, args, cond_channels=None):
        super().__init__(shape, args, cond_channels)
        c = self.in_shape[0]
        gen = torch.Generator().manual_seed(c)  # a fixed random start, like Glow's rotation
        self.v = torch.nn.Parameter(torch.randn(int(args["reflections"]), c, generator=gen))
        self.upper = torch.nn.Parameter(torch.zeros(c, c))
        self.log_s = torch.nn.Parameter(torch.zeros(c))
        self.register_buffer("strict", torch.triu(torch.ones(c, c), 1), persistent=False)

    def _q(self):
        c = self.in_shape[0]
        q = torch.eye(c, dtype=self.v.dtype, device=self.v.device)
        for v in self.v:
            q = q - 2.0 * torch.outer(q @ v, v) / (v @ v)  # q @ (I - 2 v v^T / v^T v)
        return q

    def _r(self):
        return self.upper * self.strict + torch.diag(torch.exp(self.log_s))

    def _logdet(self, x):
        return (self.log_s.sum() * (x.shape[2] * x.shape[3])).expand(x.shape[0])

    def forward(self, x, cond=None):
        w = self._q() @ self._r()
        return torch.einsum("ij,bjhw->bihw", w.to(x.dtype), x), self._logdet(x)

    def inverse(self, y, cond=None):
        b, c, h, w = y.shape
        rotated = torch.einsum("ji,bjhw->bihw", self._q().to(y.dtype), y)  # Q^T y
        x = torch.linalg.solve_triangular(
            self._r().to(y.dtype), rotated.reshape(b, c, h * w), upper=True
        )
        return x.reshape(b, c, h, w), -self._logdet(y)
