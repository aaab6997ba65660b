r"""Invertible map-based attention (iMap): one attention weight per position, exact log-det.

The masks and the three forms are described in :mod:`._attention`.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator

from flowspec import codes
from flowspec.kinds import Args, Issue, fmt_shape, kind

from ._attention import AttentionKind, Form, check_residual, form_field, residual_field


class IMapArgs(Args):
    act: Literal["sigmoid"] = Field("sigmoid", description="the attention activation")
    mask: Literal["checkerboard", "complement"] = Field(
        "checkerboard", description="the 3-D checkerboard M[c,h,w] = (c+h+w) % 2, or 1 - M"
    )
    form: Form | None = form_field()
    residual: bool | None = residual_field()

    _residual = field_validator("residual")(check_residual)


@kind
class IMapKind(AttentionKind):
    key = "attention.imap"
    Args = IMapArgs
    doc = "invertible map-based attention (iMap)"
    module = "flowspec.nn.imap:IMap"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        c = shape[0]
        return c * c + c + 1 + c  # 1x1 conv weight and bias, offset, per-channel scale s

    @classmethod
    def issues(cls, shape, args):
        if shape[0] < 2:
            return [
                Issue(
                    codes.E_FEW_CHANNELS,
                    f"attention imap needs at least 2 channels, but gets {fmt_shape(shape)}",
                    "insert it after a squeeze",
                )
            ]
        return []


__all__ = ["IMapArgs", "IMapKind"]
