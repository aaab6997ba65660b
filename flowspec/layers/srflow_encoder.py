"""SRFlow's encoder: RRDB features tapped from several blocks, and features per level.

SRFlow (Lugmayr et al. 2020; andreas128/SRFlow, ``RRDBNet_arch.py`` and
``SRFlowNet_arch.rrdbPreprocessing``) conditions every level of its flow on RRDB features
of the low-resolution image:

* the RRDB trunk's output ``lr = b + trunk(b)``, with ``b`` the output of the last block
  (SRFlow's long skip starts after the blocks, not at the stem as in ESRGAN);
* at a level ``2^k`` times the low resolution, ``lr`` taken through ``k`` learned
  upsampling steps (nearest 2x, a 3x3 convolution, LeakyReLU 0.2); at half the low
  resolution, ``lr`` bilinearly downsampled;
* concatenated with the outputs of ``taps`` evenly spaced RRDB blocks (SRFlow's CelebA 8x
  configuration: blocks 2, 4, 6, 8 of 8), resampled (nearest) to the level.

So every conditional layer sees ``features * (taps + 1)`` channels (320 for SRFlow's 64
features and 4 taps).

With ``head=true`` the encoder is also the SR network SRFlow pretrains before the flow (an
8x RRDB with an L1 loss; ``confs/RRDB_CelebA_8X.yml``): ``lr`` through one learned 2x
upsampling step per doubling up to ``scale`` (the first ``ups`` of them are the flow's own,
the rest belong to the head), a 3x3 ``HRconv`` and a 3x3 ``conv_last`` to the image's
channels, with LeakyReLU 0.2 before and after ``HRconv``, as ESRGAN's and SRFlow's
``RRDBNet`` compute their SR output. ``sr(c)`` returns that image; ``pretrain encoder`` in
``train { }`` trains it (:mod:`runtime.pretrain`). The flow itself never reads the head.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import Field

from flowspec import codes
from flowspec.kinds import Args, EncoderKind, Issue, arg, conv_params, encoder, fmt_shape

#: ESRGAN's (and SRFlow's) growth width of the dense blocks.
GROWTH = 32


def _get(args: Any, name: str, default: Any) -> Any:
    """An argument, or ``default`` for an IR from before the argument existed."""
    if isinstance(args, Mapping):
        return args.get(name, default)
    return getattr(args, name, default)


def head_doublings(args: Any) -> int:
    """Learned 2x upsampling steps of the SR head's path: log2 of ``scale`` (0: no head)."""
    scale = _get(args, "scale", None)
    if not _get(args, "head", False) or not scale:
        return 0
    return int(scale).bit_length() - 1


def head_convs(args: Any) -> int:
    """Upsampling convolutions that only the head uses: the doublings past ``ups``."""
    return max(0, head_doublings(args) - int(_get(args, "ups", 2)))


def n_taps(args: Any) -> int:
    """The blocks tapped: ``taps``, at most ``blocks``."""
    given = "taps" in args if isinstance(args, Mapping) else hasattr(args, "taps")
    taps = int(arg(args, "taps")) if given else 0
    return max(0, min(taps, int(arg(args, "blocks"))))


class SRFlowEncoderArgs(Args):
    blocks: int = Field(8, ge=1, le=64, description="residual-in-residual dense blocks")
    features: int = Field(64, ge=1, le=4096, description="channels of the RRDB trunk")
    taps: int = Field(
        0,
        ge=0,
        le=64,
        description="evenly spaced blocks whose outputs are "
        "concatenated to the trunk's, the last block included (SRFlow's CelebA "
        "8x: 4 of 8, blocks 2, 4, 6, 8; at most `blocks`: more tap every "
        "block); output: features * (taps + 1) channels",
    )
    ups: int = Field(
        2,
        ge=0,
        le=8,
        description="learned 2x upsampling convolutions for "
        "levels above the condition's resolution (SRFlow 8x uses 2 of its 3)",
    )
    head: bool = Field(
        False,
        description="also build the RRDB's super-resolution head (the "
        "upsampling convolutions past `ups` up to `scale`, HRconv, conv_last), "
        "trained by `pretrain encoder` in train { }; the flow never reads it",
    )
    scale: int | None = Field(
        None,
        ge=2,
        le=64,
        description="the head's super-resolution "
        "factor: the flow's input size over the condition's, a power "
        "of 2 (needed with head=true)",
    )


@encoder
class SRFlowEncoderKind(EncoderKind):
    key = "srflow"
    Args = SRFlowEncoderArgs
    doc = (
        "SRFlow's RRDB encoder: trunk features plus the outputs of `taps` evenly spaced "
        "blocks, concatenated (features * (taps + 1) channels); learned 2x upsampling "
        "convolutions give the features of the levels above the low resolution"
    )
    module = "flowspec.nn.srflow_encoder:SRFlowEncoder"
    head_arg = "head"

    @classmethod
    def out_channels(cls, args) -> int:
        return int(arg(args, "features")) * (n_taps(args) + 1)

    @classmethod
    def params(cls, in_shape, args) -> int:
        blocks, f, c = arg(args, "blocks"), arg(args, "features"), in_shape[0]
        dense = sum(conv_params(f + i * GROWTH, GROWTH if i < 4 else f, 3) for i in range(5))
        head = 0
        if head_doublings(args):  # its own upsampling convs, HRconv, conv_last
            head = (head_convs(args) + 1) * conv_params(f, f, 3) + conv_params(f, c, 3)
        return (
            conv_params(c, f, 3)
            + blocks * 3 * dense
            + (1 + arg(args, "ups")) * conv_params(f, f, 3)
            + head
        )  # trunk, up convs

    @classmethod
    def issues(cls, in_shape, args, image_shape) -> list[Issue]:
        if not _get(args, "head", False):
            return []
        scale = _get(args, "scale", None)
        if scale is None:
            h = image_shape[1]
            ratio = h // in_shape[1] if in_shape[1] and h % in_shape[1] == 0 else None
            return [
                Issue(
                    codes.E_ENCODER_SCALE,
                    "encoder `srflow` with head=true needs scale=S, the "
                    "super-resolution factor of its head",
                    help=f"add scale={ratio} (the flow's input {fmt_shape(image_shape)} "
                    f"over the condition's {fmt_shape(in_shape)})"
                    if ratio
                    else "add scale=S: the flow's input size over the condition's",
                )
            ]
        if scale & (scale - 1):
            return [
                Issue(
                    codes.E_ENCODER_SCALE,
                    f"encoder `srflow` scale={scale} is not a power of 2: its "
                    "head doubles the resolution once per learned upsampling step",
                    help="use scale=2, 4, 8, 16, ...",
                )
            ]
        want = (in_shape[0], in_shape[1] * scale, in_shape[2] * scale)
        if tuple(image_shape) != want:
            return [
                Issue(
                    codes.E_ENCODER_SCALE,
                    f"encoder `srflow` head=true scale={scale} super-resolves "
                    f"the {fmt_shape(in_shape)} condition to {fmt_shape(want)}, but the "
                    f"flow's input is {fmt_shape(image_shape)}",
                    help="the head's output is an image of the flow's input shape: set "
                    "scale= to the input's size over the condition's, with as many "
                    "channels",
                )
            ]
        return []
