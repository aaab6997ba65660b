"""Condition encoders: feature extractors for the conditioning input (not bijections)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from flowspec.condflow import palette
from flowspec.layers.encoders import _RESIDUAL_SCALE

from .base import Shape
from .nets import ResidualBlock


class DenseBlock(nn.Module):
    """ESRGAN's residual dense block: 5 densely connected 3x3 convs, scaled residual."""

    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        self.convs = nn.ModuleList(
            nn.Conv2d(features + i * growth, growth if i < 4 else features, 3, padding=1)
            for i in range(5)
        )
        self.act = nn.LeakyReLU(0.2)

    def forward(self, x: Tensor) -> Tensor:
        feats = [x]
        for i, conv in enumerate(self.convs):
            out = conv(torch.cat(feats, dim=1))
            if i < 4:
                feats.append(self.act(out))
        return x + _RESIDUAL_SCALE * out


class RRDB(nn.Module):
    """Residual-in-residual dense block: three dense blocks inside one scaled residual."""

    def __init__(self, features: int, growth: int) -> None:
        super().__init__()
        self.body = nn.Sequential(*(DenseBlock(features, growth) for _ in range(3)))

    def forward(self, x: Tensor) -> Tensor:
        return x + _RESIDUAL_SCALE * self.body(x)


def _size(args: dict[str, Any]) -> tuple[int, int]:
    blocks, features = int(args["blocks"]), int(args["features"])
    if blocks < 0 or features < 1:
        raise ValueError(f"encoder needs blocks >= 0 and features >= 1, got {args}")
    return blocks, features


class RRDBEncoder(nn.Module):
    """SRFlow/ESRGAN-style encoder: conv stem, ``blocks`` RRDBs, trunk conv, long skip.

    Output ``(B, features, H, W)`` at the condition's own resolution. The growth width of the
    dense blocks is kept small (``clamp(features // 2, 4, 32)``).
    """

    def __init__(self, in_shape: Shape, args: dict[str, Any]) -> None:
        super().__init__()
        blocks, features = _size(args)
        growth = max(4, min(32, features // 2))
        self.in_shape, self.out_channels = tuple(in_shape), features
        self.stem = nn.Conv2d(in_shape[0], features, 3, padding=1)
        self.body = nn.Sequential(*(RRDB(features, growth) for _ in range(blocks)))
        self.trunk = nn.Conv2d(features, features, 3, padding=1)

    def forward(self, c: Tensor) -> Tensor:
        stem = self.stem(c)
        return stem + self.trunk(self.body(stem))


class ConvNetEncoder(nn.Module):
    """Conv stem plus ``blocks`` residual blocks, for one-hot label maps (or any image).

    Output ``(B, features, H, W)`` at the condition's own resolution.
    """

    def __init__(self, in_shape: Shape, args: dict[str, Any]) -> None:
        super().__init__()
        blocks, features = _size(args)
        self.in_shape, self.out_channels = tuple(in_shape), features
        self.net = nn.Sequential(
            nn.Conv2d(in_shape[0], features, 3, padding=1),
            *(ResidualBlock(features) for _ in range(blocks)),
        )

    def forward(self, c: Tensor) -> Tensor:
        return self.net(c)


class EmbeddingEncoder(nn.Module):
    r"""A learned linear map of the channels at each pixel: ``out = E c`` with ``E`` of shape
    ``(features, C)``, no bias.

    On a one-hot input (a ``class`` condition arrives as ``(B, N, 1, 1)``, a ``labels`` map
    as ``(B, N, H, W)``) this is a lookup table: class ``k`` gets column ``E[:, k]``, a
    ``features``-vector that the compiler broadcasts to each layer's ``H x W``. Entries start
    as N(0, 1) (as ``nn.Embedding``), so classes are told apart from the first step.
    """

    def __init__(self, in_shape: Shape, args: dict[str, Any]) -> None:
        super().__init__()
        features = int(args["features"])
        self.in_shape, self.out_channels = tuple(in_shape), features
        self.weight = nn.Parameter(torch.randn(features, in_shape[0]))

    def forward(self, c: Tensor) -> Tensor:
        return torch.einsum("fc,bchw->bfhw", self.weight.to(c.dtype), c)


class PaletteEncoder(nn.Module):
    """A one-hot label map ``(B, N, H, W)`` drawn in the colours of :func:`palette`, at the
    centre of each 8-bit colour's bin in the model's units, ``(colour + 1/2) / 256 - 1/2``:
    the colour image C-Glow conditions on (glow2 reads ``*_gtFine_color.png``)."""

    def __init__(self, in_shape: Shape, args: dict[str, Any]) -> None:
        super().__init__()
        self.in_shape, self.out_channels = tuple(in_shape), 3
        colours = (palette(in_shape[0]).double() + 0.5) / 256 - 0.5
        self.register_buffer("colours", colours.float(), persistent=False)

    def forward(self, c: Tensor) -> Tensor:
        return torch.einsum("nk,bnhw->bkhw", self.colours.to(c.dtype), c)
