"""Condition encoders: feature extractors for the conditioning input (not bijections)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from pydantic import Field

from flowspec.kinds import Args, EncoderKind, arg, conv_params, encoder

from .base import Module, Shape
from .nets import ResidualBlock

if TYPE_CHECKING:
    from torch import Tensor

torch = nn = F = None  # bound when the first module of this file is built (see base.py)

#: ESRGAN scales every residual branch by this before adding it (stabilises deep stacks).
_RESIDUAL_SCALE = 0.2


class DenseBlock(Module):
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


class RRDB(Module):
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


class RRDBEncoder(Module):
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


class ConvNetEncoder(Module):
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


class EmbeddingEncoder(Module):
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


# ---- declarations ---------------------------------------------------------------------------
class ConvNetArgs(Args):
    blocks: int = Field(4, ge=1, le=64, description="residual blocks")
    features: int = Field(64, ge=1, le=4096, description="output channels")


class RRDBArgs(ConvNetArgs):
    blocks: int = Field(8, ge=1, le=64, description="residual-in-residual dense blocks")


@encoder
class RRDBKind(EncoderKind):
    key = "rrdb"
    Args = RRDBArgs
    doc = "SRFlow/ESRGAN residual-in-residual dense blocks (for low-resolution images)"
    module = RRDBEncoder

    @classmethod
    def params(cls, in_shape, args) -> int:
        blocks, f, c = arg(args, "blocks"), arg(args, "features"), in_shape[0]
        g = max(4, min(32, f // 2))  # stem, blocks x RRDB (3 dense blocks of 5 convs), trunk
        dense = sum(conv_params(f + i * g, g if i < 4 else f, 3) for i in range(5))
        return conv_params(c, f, 3) + blocks * 3 * dense + conv_params(f, f, 3)


@encoder
class ConvNetKind(EncoderKind):
    key = "convnet"
    Args = ConvNetArgs
    doc = "conv stem and residual blocks (for one-hot label maps, or any image)"
    module = ConvNetEncoder

    @classmethod
    def params(cls, in_shape, args) -> int:
        blocks, f, c = arg(args, "blocks"), arg(args, "features"), in_shape[0]
        return conv_params(c, f, 3) + blocks * 2 * conv_params(f, f, 3)


class EmbeddingArgs(Args):
    features: int = Field(32, ge=1, le=4096, description="output channels (the embedding size)")


@encoder
class EmbeddingKind(EncoderKind):
    key = "embedding"
    Args = EmbeddingArgs
    doc = ("a learned embedding of each class (one-hot in, a linear map without bias); the "
           "default for `class N` conditions")
    module = EmbeddingEncoder

    @classmethod
    def params(cls, in_shape, args) -> int:
        return in_shape[0] * arg(args, "features")
