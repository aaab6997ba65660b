"""RealNVP's logit preprocessing as a layer of the flow (exact log-det, counted in bits/dim)."""

from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from .base import FlowLayer, Shape, sum_except_batch


class Logit(FlowLayer):
    r"""``y = logit(alpha + (1 - 2 alpha) u)`` with ``u = x + 1/2``, entrywise.

    flowspec's models see images in model space ``x in [-1/2, 1/2)`` (dequantised levels
    ``(x_int + noise) / 2^bits - 1/2``, :func:`runtime.images.dequantize`), so ``u`` is
    RealNVP's ``[0, 1)`` data. ``alpha`` keeps the logit away from the boundary: ``p = alpha +
    (1 - 2 alpha) u`` lies in ``[alpha, 1 - alpha)``. The Jacobian is diagonal, so exactly

        ``logdet = sum log(1 - 2 alpha) - log p - log(1 - p)``.

    The layer is part of the flow, so ``log_prob`` (hence the task's bits/dim, which adds the
    constant ``D bits log 2`` of the dequantised levels) includes it: bits/dim stay the
    model's exact bound on the discrete data (the shift by 1/2 has unit Jacobian).

    The map is defined for ``x`` in ``(-1/2 - a, 1/2 + a)``, ``a = alpha / (1 - 2 alpha)``
    (:attr:`domain` is the data range); outside it the logarithms are NaN. The inverse,
    ``x = (sigmoid(y) - alpha) / (1 - 2 alpha) - 1/2``, accepts every real ``y``: samples land
    in that open interval and are clamped to the image range when saved.
    """

    #: The inputs the layer is meant for (model space): tests draw their points in it.
    domain: tuple[float, float] = (-0.5, 0.5)

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        self.alpha = float(args["alpha"])
        if not 0.0 < self.alpha < 0.5:
            raise ValueError(f"logit alpha must lie in (0, 0.5), got {self.alpha}")
        # ``D log(1 - 2 alpha)``: the part of the log-det that is the same for every input (a
        # Python number, so no tensor is made, or copied to the device, per call)
        self.const = math.prod(self.in_shape) * math.log1p(-2.0 * self.alpha)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        p = self.alpha + (1.0 - 2.0 * self.alpha) * (x + 0.5)
        log_p, log_1mp = torch.log(p), torch.log1p(-p)
        return log_p - log_1mp, self.const - sum_except_batch(log_p + log_1mp)

    def inverse(self, y: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        x = (torch.sigmoid(y) - self.alpha) / (1.0 - 2.0 * self.alpha) - 0.5
        log_p, log_1mp = F.logsigmoid(y), F.logsigmoid(-y)
        return x, sum_except_batch(log_p + log_1mp) - self.const
