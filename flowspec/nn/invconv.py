"""Invertible 1x1 convolution (Glow), in LU or plain form."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import FlowLayer, Shape, batch_logdet, exact_products


def mix_channels(x: Tensor, weight: Tensor) -> Tensor:
    """``y[:, :, h, w] = weight @ x[:, :, h, w]``: a 1x1 convolution without ``conv2d``.

    For the few channels of a flow (4 to 48) a batched matrix product is several times
    cheaper than a convolution call, forward and backward, on CPU; on a channels-last tensor
    it is a plain ``linear`` over the contiguous channel axis. The output keeps the input's
    memory format.
    """
    if x.is_contiguous(memory_format=torch.channels_last) and not x.is_contiguous():
        return F.linear(x.permute(0, 2, 3, 1), weight).permute(0, 3, 1, 2)
    b, c, h, w = x.shape
    return torch.bmm(weight.expand(b, -1, -1), x.reshape(b, c, h * w)).view(b, -1, h, w)


class InvConv1x1(FlowLayer):
    r"""``y[:, :, h, w] = W x[:, :, h, w]`` with one ``C x C`` matrix ``W`` for every pixel.

    The Jacobian is block diagonal with ``H W`` copies of ``W``, so
    ``logdet = H W log|det W|``.

    * ``lu=True``: ``W = P L (U + diag(sign * exp(log_s)))`` with a fixed permutation ``P``,
      unit lower-triangular ``L``, strictly upper-triangular ``U`` and a fixed sign vector.
      ``|det W| = prod exp(log_s)`` exactly, so ``logdet = H W sum(log_s)``, and ``W`` is
      invertible for *any* parameter values (its triangular factors have non-zero diagonals).
      The inverse uses triangular solves.
    * ``lu=False``: ``W`` is a free matrix, ``logdet`` from ``slogdet`` and the inverse from
      ``torch.linalg.inv``; it can become singular in training (as in Glow).

    Both start from a random rotation (drawn from torch's global generator). The weight and
    the log-determinant are computed once per call.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        c = self.in_shape[0]
        self.lu = bool(args["lu"])
        q, _ = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))
        if self.lu:
            p, lower, upper = torch.linalg.lu(q)
            diag = torch.diagonal(upper)
            self.register_buffer("perm", p.float())
            self.register_buffer("sign", torch.sign(diag).float())
            self.register_buffer("lower_mask", torch.tril(torch.ones(c, c), -1), persistent=False)
            self.register_buffer("eye", torch.eye(c), persistent=False)
            self.lower = nn.Parameter(torch.tril(lower, -1).float())
            self.upper = nn.Parameter(torch.triu(upper, 1).float())
            self.log_s = nn.Parameter(torch.log(diag.abs()).float())
        else:
            self.weight = nn.Parameter(q.float())

    def _factors(self) -> tuple[Tensor, Tensor]:
        """Return the unit-lower and the upper triangular factor (LU form only)."""
        lower = self.lower * self.lower_mask + self.eye
        upper = self.upper * self.lower_mask.T + torch.diag(self.sign * torch.exp(self.log_s))
        return lower, upper

    def _weight_logdet(self, inverse: bool) -> tuple[Tensor, Tensor]:
        if self.lu:
            lower, upper = self._factors()
            if inverse:
                # W^-1 = U^-1 L^-1 P^T, by two triangular solves.
                inv_l = torch.linalg.solve_triangular(lower, self.eye, upper=False)
                weight = torch.linalg.solve_triangular(upper, inv_l, upper=True) @ self.perm.T
            else:
                weight = self.perm @ lower @ upper
            return weight, self.log_s.sum()
        weight = torch.linalg.inv(self.weight) if inverse else self.weight
        return weight, torch.linalg.slogdet(self.weight)[1]

    def _conv(self, x: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        with exact_products(x):  # no TF32: the inverse must undo exactly this map
            weight, logdet = self._weight_logdet(inverse)
            y = mix_channels(x, weight.to(x.dtype))
        logdet = logdet * (x.shape[2] * x.shape[3])
        return y, batch_logdet(-logdet if inverse else logdet, x)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._conv(x, inverse=False)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._conv(y, inverse=True)
