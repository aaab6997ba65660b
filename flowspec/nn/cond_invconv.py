"""Full-Glow's conditional invertible 1x1 convolution: the matrix predicted per sample."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor

from ._fullglow import VectorCondNet
from .base import FlowLayer, Shape, exact_products


class CondInvConv1x1(FlowLayer):
    r"""``y[b, :, h, w] = W(c_b) x[b, :, h, w]``: one ``C x C`` matrix per sample, predicted
    from the condition map by Full-Glow's vector condition network.

    The Jacobian of sample ``b`` is block diagonal with ``H W`` copies of ``W_b``, so
    ``logdet_b = H W log|det W_b|``, exact per sample (Full-Glow averages it over the batch).

    * ``lu=True`` (Full-Glow's ``--do_lu``): the network gives ``L``, ``U`` and ``log s``;
      ``W = P (L ⊙ lower + I)(U ⊙ upper + diag(sign * exp(log s)))`` with the fixed
      permutation and signs of a random rotation, so ``log|det W_b| = sum(log s_b)`` and
      ``W_b`` is invertible for any output.
    * ``lu=False`` (Full-Glow's default): the network gives ``W`` itself; ``log|det W_b|`` by
      ``slogdet`` and the inverse by ``inv`` for each sample. A predicted matrix can be
      singular (as in Full-Glow).

    Both start from a random rotation for every condition (Full-Glow puts it in the last
    linear layer's bias and starts its weight at zero). Here the rotation's factors (or the
    rotation) are kept apart and the network's output is added to them divided by ``C``:
    triangular factors whose every entry moves by O(1) are exponentially ill-conditioned in
    ``C``, while a change of O(1) per row keeps the inverse accurate at Full-Glow's 96
    channels. The parameters are the same as Full-Glow's.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        if self.cond_channels is None:
            raise ValueError("cond_invconv needs a condition (on=COND)")
        c, h, w = self.in_shape
        self.lu = bool(args["lu"])
        q, _ = torch.linalg.qr(torch.randn(c, c, dtype=torch.float64))
        self.net = VectorCondNet(self.cond_channels, h, w, 2 * c * c + c if self.lu else c * c)
        if self.lu:
            p, lower, upper = torch.linalg.lu(q)
            diag = torch.diagonal(upper)
            self.register_buffer("perm", p.float())
            self.register_buffer("sign", torch.sign(diag).float())
            self.register_buffer("lower_mask", torch.tril(torch.ones(c, c), -1), persistent=False)
            self.register_buffer("eye", torch.eye(c), persistent=False)
            start = torch.cat(
                [
                    torch.tril(lower, -1).flatten(),
                    torch.triu(upper, 1).flatten(),
                    torch.log(diag.abs()),
                ]
            )
        else:
            start = q.flatten()
        #: the rotation every condition starts from; scale of the network's correction
        self.register_buffer("start", start.float())
        self.step = 1.0 / c

    def _weight(self, x: Tensor, cond: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        """Per-sample ``(W_b or W_b^-1, log|det W_b|)``."""
        out = self.start + self.step * self.run_net(self.net, self._cond(cond, x))
        with exact_products(x):  # the network above may use TF32; the map below does not
            return self._factors(out, inverse)

    def _factors(self, out: Tensor, inverse: bool) -> tuple[Tensor, Tensor]:
        b, c = out.shape[0], self.in_shape[0]
        if not self.lu:
            weight = out.view(b, c, c)
            logdet = torch.linalg.slogdet(weight)[1]
            return (torch.linalg.inv(weight) if inverse else weight), logdet
        lower = out[:, : c * c].view(b, c, c) * self.lower_mask + self.eye
        log_s = out[:, 2 * c * c :]
        upper = out[:, c * c : 2 * c * c].view(b, c, c) * self.lower_mask.T + torch.diag_embed(
            self.sign * torch.exp(log_s)
        )
        if inverse:  # W^-1 = U^-1 L^-1 P^T, by two triangular solves
            eye = self.eye.expand(b, c, c)
            inv_l = torch.linalg.solve_triangular(lower, eye, upper=False)
            weight = torch.linalg.solve_triangular(upper, inv_l, upper=True) @ self.perm.T
        else:
            weight = self.perm @ lower @ upper
        return weight, log_s.sum(1)

    def _mix(self, x: Tensor, cond: Tensor | None, inverse: bool) -> tuple[Tensor, Tensor]:
        weight, logdet = self._weight(x, cond, inverse)
        b, c, h, w = x.shape
        with exact_products(x):
            y = torch.bmm(weight.to(x.dtype), x.reshape(b, c, h * w)).view(b, c, h, w)
        logdet = logdet.to(x.dtype) * (h * w)
        return y, -logdet if inverse else logdet

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._mix(x, cond, inverse=False)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._mix(y, cond, inverse=True)
