"""Flow++'s coupling network, the torch module: what it computes and why is in
the declaration's docstring, :mod:`flowspec.layers.flowpp_net`."""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


class WNConv2d(nn.Module):
    """A weight-normalised convolution, ``w = g v / ||v||`` (Salimans & Kingma 2016), with
    the norm over each output channel's weights; ``zero=True`` starts with ``g = 0``."""

    def __init__(self, cin: int, cout: int, k: int, bias: bool = True, zero: bool = False) -> None:
        super().__init__()
        conv = nn.Conv2d(cin, cout, k, padding=k // 2, bias=bias)  # its default init
        v = conv.weight.detach().clone()
        self.weight_v = nn.Parameter(v)
        gain = torch.zeros(cout) if zero else v.flatten(1).norm(dim=1)
        self.weight_g = nn.Parameter(gain.view(cout, 1, 1, 1))
        if bias:
            self.bias = nn.Parameter(torch.zeros(cout) if zero else conv.bias.detach().clone())
        else:
            self.register_parameter("bias", None)
        self.padding = k // 2

    def forward(self, x: Tensor) -> Tensor:
        v = self.weight_v
        w = v * (self.weight_g / v.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
        return F.conv2d(x, w, self.bias, padding=self.padding)


def concat_elu(x: Tensor) -> Tensor:
    """ELU of ``[x, -x]`` along channels (doubles the channels)."""
    return F.elu(torch.cat([x, -x], dim=1))


def channel_norm(norm: nn.LayerNorm, x: Tensor) -> Tensor:
    """Layer normalisation over the channels of a (B, C, H, W) tensor, at every pixel."""
    return norm(x.permute(0, 2, 3, 1)).permute(0, 3, 1, 2)


def position_encoding(length: int, channels: int, like: Tensor) -> Tensor:
    """Transformer sinusoids, (1, channels, length): sines then cosines of the position
    over ``channels // 2`` geometric timescales from 1 to 1e4 (zero-padded when odd)."""
    n = channels // 2
    pos = torch.arange(length, dtype=like.dtype, device=like.device)
    inv = torch.exp(
        -math.log(1e4) / max(n - 1, 1) * torch.arange(n, dtype=like.dtype, device=like.device)
    )
    t = pos.unsqueeze(1) * inv.unsqueeze(0)
    enc = F.pad(torch.cat([t.sin(), t.cos()], dim=1), [0, channels % 2])
    return enc.t().unsqueeze(0)


class GatedConv(nn.Module):
    """concat-ELU, 3x3 conv (2h -> h), concat-ELU, dropout, 1x1 conv (2h -> 2h), GLU."""

    def __init__(self, hidden: int, dropout: float) -> None:
        super().__init__()
        self.conv = WNConv2d(2 * hidden, hidden, 3)
        self.drop = nn.Dropout2d(dropout)
        self.gate = WNConv2d(2 * hidden, 2 * hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        a, b = self.gate(self.drop(concat_elu(self.conv(concat_elu(x))))).chunk(2, dim=1)
        return a * torch.sigmoid(b)


class GatedAttn(nn.Module):
    """Gated multi-head self-attention over the pixels of each sample (see module doc)."""

    def __init__(self, hidden: int, heads: int, dropout: float) -> None:
        super().__init__()
        if not 1 <= heads <= hidden:
            raise ValueError(f"flowpp heads must be in 1..hidden={hidden}, got {heads}")
        self.heads, self.dropout = heads, float(dropout)
        self.in_proj = WNConv2d(hidden, 3 * hidden, 1, bias=False)
        self.gate = WNConv2d(hidden, 2 * hidden, 1)

    def forward(self, x: Tensor) -> Tensor:
        b, c, h, w = x.shape
        seq = x.reshape(b, c, h * w) + position_encoding(h * w, c, x)
        kvq = self.in_proj(seq.unsqueeze(-1)).squeeze(-1).transpose(1, 2)  # (B, L, 3C)
        k, v, q = kvq.split(c, dim=2)  # the official order: memory (keys, values), queries
        p = self.dropout if self.training else 0.0
        if c % self.heads == 0:
            out = F.scaled_dot_product_attention(*(self._heads(t) for t in (q, k, v)), dropout_p=p)
            out = out.transpose(1, 2).reshape(b, h * w, c)
        else:  # heads of unequal widths
            parts = [
                F.scaled_dot_product_attention(
                    qi.unsqueeze(1), ki.unsqueeze(1), vi.unsqueeze(1), dropout_p=p
                ).squeeze(1)
                for qi, ki, vi in zip(*(t.tensor_split(self.heads, dim=2) for t in (q, k, v)))
            ]
            out = torch.cat(parts, dim=2)
        a, g = self.gate(out.transpose(1, 2).reshape(b, c, h, w)).chunk(2, dim=1)
        return a * torch.sigmoid(g)

    def _heads(self, t: Tensor) -> Tensor:
        b, n, c = t.shape
        return t.view(b, n, self.heads, c // self.heads).transpose(1, 2)


class GatedBlock(nn.Module):
    """``x = LN(x + GatedConv(x))``, then ``x = LN(x + GatedAttn(x))``."""

    def __init__(self, hidden: int, heads: int, dropout: float, attention: bool) -> None:
        super().__init__()
        self.conv = GatedConv(hidden, dropout)
        self.norm_1 = nn.LayerNorm(hidden)
        self.attn = GatedAttn(hidden, heads, dropout) if attention else None
        self.norm_2 = nn.LayerNorm(hidden) if attention else None

    def forward(self, x: Tensor) -> Tensor:
        x = channel_norm(self.norm_1, x + self.conv(x))
        if self.attn is not None:
            x = channel_norm(self.norm_2, x + self.attn(x))
        return x


class FlowppNet(nn.Module):
    """Flow++'s network: WN conv3x3, ``blocks`` gated blocks, zero-started WN conv3x3."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        hidden: int,
        blocks: int = 10,
        heads: int = 4,
        dropout: float = 0.0,
        attention: bool = True,
    ) -> None:
        super().__init__()
        self.in_conv = WNConv2d(in_channels, hidden, 3)
        self.blocks = nn.ModuleList(
            GatedBlock(hidden, heads, dropout, attention) for _ in range(blocks)
        )
        self.out_conv = WNConv2d(hidden, out_channels, 3, zero=True)

    def forward(self, x: Tensor) -> Tensor:
        x = self.in_conv(x)
        for block in self.blocks:
            x = block(x)
        return self.out_conv(x)
