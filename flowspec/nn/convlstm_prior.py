"""mAR-SCF's ConvLSTM prior, the torch module: what it computes and why is in
the declaration's docstring, :mod:`flowspec.layers.convlstm_prior`."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from flowspec.layers.convlstm_prior import CONTEXT_FEATURES

from .base import FlowLayer, Shape, sum_except_batch
from .nets import zero_conv


def dilated_conv(x: Tensor, weight: Tensor, bias: Tensor, d: int) -> Tensor:
    """A same-padded convolution of dilation ``d``, computed as an undilated one on the
    ``d x d`` interleaved sub-images of ``x`` (each output pixel only sees its own
    sub-image; zeros appended to make H, W multiples of ``d`` act as the padding): the same
    function, without the slow CPU kernels of dilated float64 convolutions."""
    pad = weight.shape[-1] // 2
    if d == 1:
        return F.conv2d(x, weight, bias, padding=pad)
    b, c, h, w = x.shape
    x = F.pad(x, [0, (-w) % d, 0, (-h) % d])
    hd, wd = x.shape[2] // d, x.shape[3] // d
    x = x.view(b, c, hd, d, wd, d).permute(0, 3, 5, 1, 2, 4).reshape(b * d * d, c, hd, wd)
    y = F.conv2d(x, weight, bias, padding=pad)
    y = y.view(b, d, d, -1, hd, wd).permute(0, 3, 4, 1, 5, 2).reshape(b, -1, hd * d, wd * d)
    return y[:, :, :h, :w]


class ChannelAR(nn.Module):
    """The autoregressive Gaussian over the channels of a latent (see the module doc)."""

    def __init__(
        self,
        context: int | None,
        hidden: int = 32,
        layers: int = 3,
        kernel: int = 5,
        dilation: int = 1,
    ) -> None:
        super().__init__()
        if hidden < 1 or layers < 1 or kernel < 1 or kernel % 2 == 0 or dilation < 1:
            raise ValueError(
                f"convlstm prior needs hidden, layers, dilation >= 1 and an odd "
                f"kernel, got hidden={hidden}, layers={layers}, kernel={kernel}, "
                f"dilation={dilation}"
            )
        self.hidden = hidden
        self.context = None
        if context:
            self.context = nn.Sequential(
                nn.Conv2d(context, hidden, 5, padding=2),
                nn.ReLU(),
                nn.Conv2d(hidden, CONTEXT_FEATURES, 5, padding=2),
            )
        cin = 1 + (CONTEXT_FEATURES if context else 0)
        self.embed = nn.Conv2d(cin, hidden, kernel, padding=kernel // 2)
        pad = dilation * (kernel // 2)
        self.input_convs = nn.ModuleList(
            nn.Conv2d(hidden, 4 * hidden, kernel, padding=pad, dilation=dilation)
            for _ in range(layers)
        )
        self.hidden_convs = nn.ModuleList(
            nn.Conv2d(hidden, 4 * hidden, kernel, padding=pad, dilation=dilation)
            for _ in range(layers)
        )
        self.out = zero_conv(hidden, 2, 3)

    def _cells(self) -> list[tuple[Tensor, Tensor, int]]:
        """Per cell, one convolution of ``[x, h]`` computing ``conv_x(x) + conv_h(h)``:
        ``(weight, bias, dilation)``."""
        return [
            (torch.cat([cx.weight, ch.weight], dim=1), cx.bias + ch.bias, cx.dilation[0])
            for cx, ch in zip(self.input_convs, self.hidden_convs)
        ]

    def _step(
        self, prev: Tensor, ctx: Tensor | None, state: list | None, cells: list
    ) -> tuple[Tensor, Tensor, list]:
        """One channel: ``(mu_t, l_t)`` (B, 1, H, W) from ``z_{t-1}`` and the LSTM state."""
        x = self.embed(prev if ctx is None else torch.cat([prev, ctx], dim=1))
        if state is None:
            zero = x.new_zeros(x.shape[0], self.hidden, *x.shape[2:])
            state = [(zero, zero)] * len(cells)
        new = []
        for (w, bias, d), (h, c) in zip(cells, state):
            gates = dilated_conv(torch.cat([x, h], dim=1), w.to(x.dtype), bias.to(x.dtype), d)
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(c)
            new.append((h, c))
            x = h
        mu, log_scale = self.out(x).chunk(2, dim=1)
        return mu, log_scale, new

    def _context(self, kept: Tensor | None, z: Tensor) -> Tensor | None:
        if self.context is None:
            return None
        return self.context(kept.to(z.dtype))

    def standardise(self, z: Tensor, kept: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(eps, logdet)``: every channel standardised by its conditional (teacher forced)."""
        ctx, state, cells = self._context(kept, z), None, self._cells()
        prev = z.new_zeros(z.shape[0], 1, *z.shape[2:])
        eps, log_scales = [], []
        for t in range(z.shape[1]):
            mu, log_scale, state = self._step(prev, ctx, state, cells)
            prev = z[:, t : t + 1]
            eps.append((prev - mu) * torch.exp(-log_scale))
            log_scales.append(log_scale)
        return torch.cat(eps, dim=1), -sum_except_batch(torch.cat(log_scales, dim=1))

    def unstandardise(self, eps: Tensor, kept: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(z, logdet)`` of the inverse map, decoding one channel after another."""
        ctx, state, cells = self._context(kept, eps), None, self._cells()
        prev = eps.new_zeros(eps.shape[0], 1, *eps.shape[2:])
        zs, log_scales = [], []
        for t in range(eps.shape[1]):
            mu, log_scale, state = self._step(prev, ctx, state, cells)
            prev = eps[:, t : t + 1] * torch.exp(log_scale) + mu
            zs.append(prev)
            log_scales.append(log_scale)
        return torch.cat(zs, dim=1), sum_except_batch(torch.cat(log_scales, dim=1))


class ConvLSTMPrior(FlowLayer):
    r"""The final latent under mAR-SCF's channel-autoregressive ConvLSTM prior, as a
    standardising layer: ``eps_t = (z_t - mu_t(z_{<t})) e^{-l_t(z_{<t})}``,
    ``logdet = -sum l``; the caller scores ``eps`` under N(0, I) and samples
    ``eps = T * N(0, I)``, which :meth:`inverse` decodes channel by channel."""

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, None)
        self.ar = ChannelAR(
            None,
            int(args["hidden"]),
            int(args["layers"]),
            int(args["kernel"]),
            int(args["dilation"]),
        )

    def forward(self, z: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.ar.standardise(z)

    def inverse(self, eps: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.ar.unstandardise(eps)
