"""C-Glow's conditional 1x1 convolution: a C x C matrix per sample from the full-size
condition, as LU factors so that it is invertible for every output."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowspec.layers._cglow import cond_size

from ._cglow import VectorNet, full_cond
from .base import FlowLayer, Shape, exact_products


class CGlowInvConv(FlowLayer):
    r"""``y[b, :, h, w] = W(c_b) x[b, :, h, w]`` with one ``C x C`` matrix per sample.

    C-Glow's network gives ``C^2`` numbers ``v`` in (-1, 1) (tanh) and C-Glow takes them as
    the matrix itself, which can be singular. Here the same ``C^2`` numbers are the
    corrections of the LU factors of a fixed random rotation ``P L0 U0``: ``C(C-1)/2`` for
    the strictly lower part of ``L``, as many for the strictly upper part of ``U``, and ``C``
    log-scales of ``U``'s diagonal::

        W = P (L0 + v_L / C) (U0 + v_U / C + diag(sign(u0) exp(log|u0| + v_s)))

    ``L`` has a unit diagonal and ``U`` a diagonal of fixed signs and positive magnitudes,
    so ``W`` is invertible for every output and ``log|det W| = sum(log|u0| + v_s)``, exact
    per sample (times ``H W`` for the layer). The off-diagonal corrections are divided by
    ``C`` (at most 1/C per entry): triangular factors whose entries all move by O(1) are
    exponentially ill-conditioned in ``C``. Parameters: as C-Glow's.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        if self.cond_channels is None:
            raise ValueError("cglow_invconv needs a condition (on=COND)")
        c = self.in_shape[0]
        self.hw = cond_size(self.in_shape, args)
        self.net = VectorNet(
            self.cond_channels, self.hw, int(args["cond_hidden"]), int(args["cond_units"]), c * c
        )
        nn.init.normal_(self.net.last.weight, std=0.1)  # glow2's LinearNorm
        nn.init.normal_(self.net.last.bias, std=0.1)
        q, _ = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))
        p, lower, upper = torch.linalg.lu(q)
        diag = torch.diagonal(upper)
        rows, cols = torch.tril_indices(c, c, -1)
        self.register_buffer("perm", p.float())
        self.register_buffer("lower0", lower.float())
        self.register_buffer("upper0", torch.triu(upper, 1).float())
        self.register_buffer("sign", torch.sign(diag).float())
        self.register_buffer("log_diag0", torch.log(diag.abs()).float())
        self.register_buffer("rows", rows, persistent=False)
        self.register_buffer("cols", cols, persistent=False)

    def _factors(self, v: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """``(L, U, log|diag U|)`` per sample from the network's ``(B, C^2)`` output."""
        b, c = v.shape[0], self.in_shape[0]
        n = c * (c - 1) // 2
        step = 1.0 / c
        lower = self.lower0.expand(b, c, c).clone()
        lower[:, self.rows, self.cols] = lower[:, self.rows, self.cols] + step * v[:, :n]
        upper = self.upper0.expand(b, c, c).clone()
        upper[:, self.cols, self.rows] = upper[:, self.cols, self.rows] + step * v[:, n : 2 * n]
        log_s = self.log_diag0 + v[:, 2 * n :]
        return lower, upper + torch.diag_embed(self.sign * torch.exp(log_s)), log_s

    def _mix(self, x: Tensor, cond: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        v = self.run_net(self.net, full_cond(self, cond, x, self.hw))
        b, c, h, w = x.shape
        with exact_products(x):  # the network above may use TF32; the map below does not
            lower, upper, log_s = self._factors(v)
            flat = x.reshape(b, c, h * w)
            if inverse:  # x = U^-1 L^-1 P^T y, by two triangular solves
                t = torch.linalg.solve_triangular(
                    lower, self.perm.T.to(x.dtype) @ flat, upper=False, unitriangular=True
                )
                y = torch.linalg.solve_triangular(upper, t, upper=True)
            else:
                y = self.perm.to(x.dtype) @ (lower @ (upper @ flat))
        logdet = log_s.sum(1) * (h * w)
        return y.view(b, c, h, w), -logdet if inverse else logdet

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._mix(x, cond, inverse=False)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._mix(y, cond, inverse=True)
