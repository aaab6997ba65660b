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
from typing import TYPE_CHECKING, Any

from pydantic import Field

from flowspec import codes
from flowspec.kinds import Args, EncoderKind, Issue, arg, conv_params, encoder, fmt_shape

from .base import Module, Shape
from .encoders import RRDB

if TYPE_CHECKING:
    from torch import Tensor

torch = nn = F = None  # bound when the first module of this file is built (see base.py)

#: ESRGAN's (and SRFlow's) growth width of the dense blocks.
GROWTH = 32


def tapped_blocks(blocks: int, taps: int) -> list[int]:
    """0-based indices of ``taps`` evenly spaced blocks of ``blocks``, the last one included:
    ``blocks=8, taps=4`` gives ``[1, 3, 5, 7]``, SRFlow's ``stackRRDB: blocks: [1, 3, 5, 7]``."""
    return [round((j + 1) * blocks / taps) - 1 for j in range(taps)]


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


class SRFlowEncoder(Module):
    """Stem conv, ``blocks`` RRDBs (growth 32), trunk conv with SRFlow's long skip, ``ups``
    learned 2x upsampling convolutions; output ``(B, features * (taps + 1), H, W)`` at the
    condition's own resolution, ``[lr, tap_1, ..., tap_taps]`` along channels.
    ``features_at`` gives the features of a layer at another resolution (see the module
    docstring). The dense blocks' convolutions start as SRFlow's (Kaiming normal times 0.1,
    zero bias). With ``head=true``, ``sr`` is the RRDB's own super-resolved image."""

    def __init__(self, in_shape: Shape, args: dict[str, Any]) -> None:
        super().__init__()
        blocks, f = int(args["blocks"]), int(args["features"])
        taps, ups = n_taps(args), int(args.get("ups", 2))
        if blocks < 1 or f < 1 or ups < 0:
            raise ValueError(f"srflow encoder needs blocks >= 1, features >= 1 and ups >= 0, "
                             f"got {args}")
        self.in_shape, self.features = tuple(in_shape), f
        self.out_channels = f * (taps + 1)
        self.taps = tapped_blocks(blocks, taps) if taps else []
        self.stem = nn.Conv2d(in_shape[0], f, 3, padding=1)
        self.body = nn.ModuleList(RRDB(f, GROWTH) for _ in range(blocks))
        self.trunk = nn.Conv2d(f, f, 3, padding=1)
        self.up = nn.ModuleList(nn.Conv2d(f, f, 3, padding=1) for _ in range(ups))
        self.act = nn.LeakyReLU(0.2)
        for conv in (m for m in self.body.modules() if isinstance(m, nn.Conv2d)):
            nn.init.kaiming_normal_(conv.weight, a=0, mode="fan_in")
            with torch.no_grad():
                conv.weight.mul_(0.1)
            nn.init.zeros_(conv.bias)
        # built last: the other parameters start as they do without a head
        self.doublings = head_doublings(args)
        if self.doublings:  # the SR head: SRFlow's upconv{ups+1..}, HRconv, conv_last
            self.head_up = nn.ModuleList(nn.Conv2d(f, f, 3, padding=1)
                                         for _ in range(head_convs(args)))
            self.hr_conv = nn.Conv2d(f, f, 3, padding=1)
            self.conv_last = nn.Conv2d(f, in_shape[0], 3, padding=1)

    def _trunk(self, c: Tensor) -> tuple[Tensor, list[Tensor]]:
        """``lr`` (the trunk's output with the long skip) and the tapped blocks' outputs."""
        fea = self.stem(c)
        tapped = []
        for i, block in enumerate(self.body):
            fea = block(fea)
            if i in self.taps:
                tapped.append(fea)
        return fea + self.trunk(fea), tapped

    def forward(self, c: Tensor) -> Tensor:
        lr, tapped = self._trunk(c)
        return torch.cat([lr, *tapped], dim=1)

    def sr(self, c: Tensor) -> Tensor:
        """The super-resolved image of the low-resolution ``c``: ``(B, C, H * scale,
        W * scale)``, in ``c``'s units. Needs ``head=true``."""
        if not self.doublings:
            raise ValueError("this srflow encoder has no super-resolution head; build it "
                             "with head=true and scale=S")
        fea = self._trunk(c)[0]
        convs = [*self.up, *self.head_up][: self.doublings]
        for conv in convs:  # nearest 2x, conv, LeakyReLU: the flow's fea_up2, fea_up4, ...
            fea = self.act(conv(F.interpolate(fea, scale_factor=2, mode="nearest")))
        return self.conv_last(self.act(self.hr_conv(fea)))

    def head_parameters(self) -> list[Tensor]:
        """The parameters only :meth:`sr` uses (the flow never reads them)."""
        if not self.doublings:
            return []
        return [*self.head_up.parameters(), *self.hr_conv.parameters(),
                *self.conv_last.parameters()]

    def features_at(self, f: Tensor, hw: tuple[int, int]) -> Tensor:
        """The features of a layer at resolution ``hw``, from this encoder's output ``f``.

        ``lr`` (the first ``features`` channels) goes through one learned upsampling step per
        doubling (up to ``ups`` of them; the rest of the way, and any other ratio, bilinear);
        the block taps are resampled nearest, as SRFlow does.
        """
        h, w = f.shape[2], f.shape[3]
        if (h, w) == tuple(hw):
            return f
        lr, tapped = f[:, : self.features], f[:, self.features :]
        k = 0  # SRFlow's LeakyReLU is in place, so its fea_up2, fea_up4 are activated too
        while k < len(self.up) and hw[0] % (h << (k + 1)) == 0 and hw[1] % (w << (k + 1)) == 0:
            lr = self.act(self.up[k](F.interpolate(lr, scale_factor=2, mode="nearest")))
            k += 1
        if tuple(lr.shape[2:]) != tuple(hw):
            from ._resample import bilinear

            lr = bilinear(lr, hw)
        if tapped.shape[1]:
            tapped = F.interpolate(tapped, size=tuple(hw), mode="nearest")
        return torch.cat([lr, tapped], dim=1)


# ---- declaration ----------------------------------------------------------------------------
class SRFlowEncoderArgs(Args):
    blocks: int = Field(8, ge=1, le=64, description="residual-in-residual dense blocks")
    features: int = Field(64, ge=1, le=4096, description="channels of the RRDB trunk")
    taps: int = Field(0, ge=0, le=64, description="evenly spaced blocks whose outputs are "
                      "concatenated to the trunk's, the last block included (SRFlow's CelebA "
                      "8x: 4 of 8, blocks 2, 4, 6, 8; at most `blocks`: more tap every "
                      "block); output: features * (taps + 1) channels")
    ups: int = Field(2, ge=0, le=8, description="learned 2x upsampling convolutions for "
                     "levels above the condition's resolution (SRFlow 8x uses 2 of its 3)")
    head: bool = Field(False, description="also build the RRDB's super-resolution head (the "
                       "upsampling convolutions past `ups` up to `scale`, HRconv, conv_last), "
                       "trained by `pretrain encoder` in train { }; the flow never reads it")
    scale: int | None = Field(None, ge=2, le=64, description="the head's super-resolution "
                              "factor: the flow's input size over the condition's, a power "
                              "of 2 (needed with head=true)")


@encoder
class SRFlowEncoderKind(EncoderKind):
    key = "srflow"
    Args = SRFlowEncoderArgs
    doc = ("SRFlow's RRDB encoder: trunk features plus the outputs of `taps` evenly spaced "
           "blocks, concatenated (features * (taps + 1) channels); learned 2x upsampling "
           "convolutions give the features of the levels above the low resolution")
    module = SRFlowEncoder
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
        return (conv_params(c, f, 3) + blocks * 3 * dense
                + (1 + arg(args, "ups")) * conv_params(f, f, 3) + head)  # trunk, up convs

    @classmethod
    def issues(cls, in_shape, args, image_shape) -> list[Issue]:
        if not _get(args, "head", False):
            return []
        scale = _get(args, "scale", None)
        if scale is None:
            h = image_shape[1]
            ratio = h // in_shape[1] if in_shape[1] and h % in_shape[1] == 0 else None
            return [Issue(codes.E_ENCODER_SCALE,
                          "encoder `srflow` with head=true needs scale=S, the "
                          "super-resolution factor of its head",
                          help=f"add scale={ratio} (the flow's input {fmt_shape(image_shape)} "
                          f"over the condition's {fmt_shape(in_shape)})" if ratio else
                          "add scale=S: the flow's input size over the condition's")]
        if scale & (scale - 1):
            return [Issue(codes.E_ENCODER_SCALE,
                          f"encoder `srflow` scale={scale} is not a power of 2: its "
                          "head doubles the resolution once per learned upsampling step",
                          help="use scale=2, 4, 8, 16, ...")]
        want = (in_shape[0], in_shape[1] * scale, in_shape[2] * scale)
        if tuple(image_shape) != want:
            return [Issue(codes.E_ENCODER_SCALE,
                          f"encoder `srflow` head=true scale={scale} super-resolves "
                          f"the {fmt_shape(in_shape)} condition to {fmt_shape(want)}, but the "
                          f"flow's input is {fmt_shape(image_shape)}",
                          help="the head's output is an image of the flow's input shape: set "
                          "scale= to the input's size over the condition's, with as many "
                          "channels")]
        return []
