"""Split: factor out half of the channels as a standardised latent (Glow)."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowspec.layers.split import CONVLSTM_DEFAULTS

from .base import FlowLayer, Shape, cat_cond, sum_except_batch
from .convlstm_prior import ChannelAR
from .nets import zero_conv


class Split(FlowLayer):
    r"""``x -> (y, z)`` with ``y = x[:, :C - C//2]`` continuing and ``z`` factored out.

    ``prior=learned``: ``(mu, l) = conv(y [, cond])`` from a zero-initialised 3x3 convolution
    and ``z = (x2 - mu) e^{-l}`` with ``x2 = x[:, C - C//2:]``. In the ordering ``(y, x2)``
    the Jacobian of ``x -> (y, z)`` is block triangular with blocks ``I`` and
    ``diag(e^{-l})``, so ``logdet = -sum l``. The latent is standardised: a caller scores it
    under N(0, I) and samples it as ``z = T * N(0, I)`` at temperature ``T``, and ``z = 0``
    decodes to the prior mean ``mu``.

    ``prior=fixed``: ``z = x2``, ``logdet = 0``.

    ``prior=dual`` (Dual-Glow, Sun et al. 2019, as MoeinSorkhei/glow2 runs it with one
    condition layer, ``n_l = 1``): ``z = x2 - m(c)`` with ``m(c) = leaky_relu(conv5x5(c))``
    (no bias, slope 0.2) from the condition alone, unit scale: ``logdet = 0``. Conditioned on
    a flow, ``c`` is that flow's latent factored out at the same place.

    ``prior=convlstm``: mAR-SCF's channel-autoregressive prior (:mod:`.convlstm_prior`):
    ``z_t = (x2_t - mu_t) e^{-l_t}`` with ``(mu_t, l_t)`` from a ConvLSTM that has read
    ``x2_{<t}`` and features of ``y`` (and the condition); the Jacobian is triangular with
    diagonal ``e^{-l}``, so again ``logdet = -sum l``; the inverse decodes channel by channel.
    ``hidden``, ``layers``, ``kernel`` and ``dilation`` shape that ConvLSTM.

    ``out_shape`` is the shape of ``y``, ``z_shape`` that of ``z``.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        c, h, w = self.in_shape
        if c < 2:
            raise ValueError(f"split needs C >= 2, got C={c}")
        self.keep = c - c // 2
        self.out_shape = (self.keep, h, w)
        self.z_shape: Shape = (c // 2, h, w)
        prior = args["prior"]
        if prior not in ("learned", "fixed", "convlstm", "dual"):
            raise ValueError(
                f"unknown split prior {prior!r}; expected 'learned', 'fixed', 'convlstm' or 'dual'"
            )
        self.learned = prior == "learned"
        self.ar = None
        self.dual = None
        if prior == "dual":
            if self.cond_channels is None:
                raise ValueError("split prior=dual needs a condition (on=COND)")
            self.dual = nn.Conv2d(self.cond_channels, c // 2, 5, padding=2, bias=False)
            nn.init.uniform_(self.dual.weight, -0.05, 0.05)
        if self.learned:
            self.conv = zero_conv(self.keep + (self.cond_channels or 0), 2 * (c // 2))
        elif prior == "convlstm":
            a = {**CONVLSTM_DEFAULTS, **args}
            self.ar = ChannelAR(
                self.keep + (self.cond_channels or 0),
                int(a["hidden"]),
                int(a["layers"]),
                int(a["kernel"]),
                int(a["dilation"]),
            )

    def _mean_logscale(self, y: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.conv(cat_cond(y, self._cond(cond, y)))
        n = self.z_shape[0]
        return h[:, :n], h[:, n:]

    def _dual_mean(self, y: Tensor, cond: Tensor | None) -> Tensor:
        return F.leaky_relu(self.dual(self._cond(cond, y)), 0.2)

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        y, x2 = x[:, : self.keep], x[:, self.keep :]
        if self.dual is not None:
            return y, x2 - self._dual_mean(y, cond), x.new_zeros(x.shape[0])
        if self.ar is not None:
            z, logdet = self.ar.standardise(x2, cat_cond(y, self._cond(cond, y)))
            return y, z, logdet
        if not self.learned:
            return y, x2, x.new_zeros(x.shape[0])
        mu, log_scale = self._mean_logscale(y, cond)
        z = (x2 - mu) * torch.exp(-log_scale)
        return y, z, -sum_except_batch(log_scale)

    def inverse(self, y: Tensor, z: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.ar is not None:
            x2, logdet = self.ar.unstandardise(z, cat_cond(y, self._cond(cond, y)))
            return torch.cat([y, x2], dim=1), logdet
        if self.dual is not None:
            return torch.cat([y, z + self._dual_mean(y, cond)], dim=1), y.new_zeros(y.shape[0])
        if not self.learned:
            return torch.cat([y, z], dim=1), y.new_zeros(y.shape[0])
        mu, log_scale = self._mean_logscale(y, cond)
        x2 = z * torch.exp(log_scale) + mu
        return torch.cat([y, x2], dim=1), sum_except_batch(log_scale)
