"""Condition encoders: feature extractors for the conditioning input (not bijections)."""

from __future__ import annotations

from pydantic import Field

from flowspec.kinds import Args, EncoderKind, arg, conv_params, encoder

#: ESRGAN scales every residual branch by this before adding it (stabilises deep stacks).
_RESIDUAL_SCALE = 0.2


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
    module = "flowspec.nn.encoders:RRDBEncoder"

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
    module = "flowspec.nn.encoders:ConvNetEncoder"

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
    doc = (
        "a learned embedding of each class (one-hot in, a linear map without bias); the "
        "default for `class N` conditions"
    )
    module = "flowspec.nn.encoders:EmbeddingEncoder"

    @classmethod
    def params(cls, in_shape, args) -> int:
        return in_shape[0] * arg(args, "features")


class PaletteArgs(Args):
    features: int = Field(3, ge=3, le=3, description="output channels: the colour map's 3")


@encoder
class PaletteKind(EncoderKind):
    key = "palette"
    Args = PaletteArgs
    doc = (
        "a label map drawn in colour, as *_gtFine_color.png (Cityscapes' colours for 34 "
        "classes, a fixed palette otherwise), in the model's [-1/2, 1/2) units; no "
        "parameters (C-Glow's condition)"
    )
    module = "flowspec.nn.encoders:PaletteEncoder"

    @classmethod
    def params(cls, in_shape, args) -> int:
        return 0
