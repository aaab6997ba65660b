"""Split: factor out half of the channels as a standardised latent (Glow)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import Field, field_validator

from flowspec import codes
from flowspec.kinds import CondArgs, Issue, LayerKind, arg, conv_params, fmt_shape, kind

from .convlstm_prior import channel_ar_params, odd_kernel

#: The ConvLSTM's arguments when an IR (or a caller) leaves them out.
CONVLSTM_DEFAULTS = {"hidden": 32, "layers": 3, "kernel": 5, "dilation": 1}


class SplitArgs(CondArgs):
    prior: Literal["learned", "fixed", "convlstm", "dual"] = Field(
        "learned",
        description="the factored-out half's prior: a learned Gaussian from the "
        "kept half (and the condition), N(0, I), mAR-SCF's channel-autoregressive "
        "ConvLSTM prior given the kept half (and the condition), or Dual-Glow's N(m(c), I) "
        "from the condition alone (on= required; a condition's flow hands on its latent "
        "factored out at the same place)",
    )
    hidden: int = Field(
        32,
        ge=1,
        le=1024,
        description="prior=convlstm: channels of the ConvLSTM and of its context network",
    )
    layers: int = Field(3, ge=1, le=16, description="prior=convlstm: stacked ConvLSTM cells")
    kernel: int = Field(
        5, ge=1, le=9, description="prior=convlstm: kernel of the embedding and the cells (odd)"
    )
    dilation: int = Field(1, ge=1, le=8, description="prior=convlstm: dilation of the cells")

    _odd = field_validator("kernel")(odd_kernel)


@kind
class SplitKind(LayerKind):
    key = "split"
    Args = SplitArgs
    conditional = "optional"
    doc = "factor out half of the channels as a latent (Glow multi-scale)"
    module = "flowspec.nn.split:Split"
    emits_latent = True

    #: the ConvLSTM's arguments, absent from an IR from before prior=convlstm
    legacy_defaults = CONVLSTM_DEFAULTS

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        c = shape[0]
        if arg(args, "prior") == "convlstm":
            a = {
                **CONVLSTM_DEFAULTS,
                **(dict(args) if isinstance(args, Mapping) else args.model_dump()),
            }
            return channel_ar_params(
                c - c // 2 + (cond_channels or 0), a["hidden"], a["layers"], a["kernel"]
            )
        if arg(args, "prior") == "dual":  # conv5x5 without bias: condition -> mean
            return 25 * (cond_channels or 0) * (c // 2)
        if arg(args, "prior") != "learned":
            return 0
        # zero-initialised conv3x3: kept half (+ condition) -> mean, log-scale
        return conv_params(c - c // 2 + (cond_channels or 0), 2 * (c // 2), 3)

    @classmethod
    def issues(cls, shape, args):
        if arg(args, "prior") == "dual" and arg(args, "on") is None:
            return [
                Issue(
                    codes.E_NEEDS_CONDITION,
                    "split prior=dual takes its mean from a condition, but has no on=CONDITION",
                    "add on=NAME, or choose prior=learned",
                )
            ]
        return []

    @classmethod
    def out_shape(cls, shape, args):
        c, h, w = shape
        if c < 2:
            return Issue(
                codes.E_FEW_CHANNELS,
                f"split needs at least 2 channels, but gets {fmt_shape(shape)}",
                "squeeze first (it multiplies the channels by 4), or remove the split",
            )
        return (c - c // 2, h, w)
