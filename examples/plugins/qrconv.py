"""A flowspec plugin: the QR-parameterised invertible 1x1 convolution.

Hoogeboom, van den Berg and Welling, "Emerging Convolutions for Generative Normalizing
Flows" (ICML 2019), section 3.3: instead of Glow's LU form, write the 1x1 convolution as

    W = Q (U + diag(exp(s)))

with Q orthogonal (a product of K Householder reflections I - 2 v v^T / |v|^2), U strictly
upper triangular and s a vector of log-scales. W is invertible for every parameter value,
|det W| = exp(sum s) because |det Q| = 1, so an H x W image has log|det J| = H W sum(s), and
the inverse is a transpose and one triangular solve.

Use it with ``flowspec check SPEC --plugin qrconv`` (this folder on PYTHONPATH) and write
``qrconv reflections=4`` in a spec wherever ``invconv`` could go.
"""

from __future__ import annotations

import torch
from pydantic import Field

import flowspec


class QRConvArgs(flowspec.Args):
    reflections: int = Field(4, ge=1, le=64, description="Householder reflections in Q")


@flowspec.kind
class QRConv(flowspec.LayerKind):
    key = "qrconv"
    Args = QRConvArgs
    doc = "invertible 1x1 convolution W = Q (U + diag(exp s)), Q from Householder reflections"
    module = "qrconv:QRConvModule"  # or the class itself, defined below

    @classmethod
    def params(cls, shape, args, cond_channels):
        c = shape[0]
        reflections = args["reflections"] if isinstance(args, dict) else args.reflections
        return reflections * c + c * c + c  # reflection vectors, U (stored full), s


class QRConvModule(flowspec.FlowLayer):
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
        x = torch.linalg.solve_triangular(self._r().to(y.dtype),
                                          rotated.reshape(b, c, h * w), upper=True)
        return x.reshape(b, c, h, w), -self._logdet(y)
