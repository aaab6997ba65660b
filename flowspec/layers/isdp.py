r"""Invertible scaled dot-product attention (iSDP) between patches, exact log-det.

The masks and the three forms are described in :mod:`._attention`.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import Field, field_validator

from flowspec import codes
from flowspec.kinds import Args, Issue, arg, kind

from ._attention import AttentionKind, Form, check_residual, form_field, form_of, residual_field

#: Diagonal floor of the paper form: ``A = softmax(.) + (1 + DIAG_FLOOR + softplus(theta)) I``.
DIAG_FLOOR = 1e-2
#: Bounds on iSDP's ``log d`` and attention logits: keep softmax finite for any parameters.
_LOG_D_BOUND = 30.0
_LOGIT_BOUND = 1e4


class ISDPArgs(Args):
    heads: int = Field(1, ge=1, le=1024, description="attention heads (disjoint column groups)")
    patches: int = Field(4, ge=1, le=4096, description="number of patches N (a square number)")
    mask: Literal["checkerboard", "complement"] = Field(
        "checkerboard", description="the 3-D checkerboard M[c,h,w] = (c+h+w) % 2, or 1 - M"
    )
    form: Form | None = form_field()
    residual: bool | None = residual_field()

    _residual = field_validator("residual")(check_residual)


@kind
class ISDPKind(AttentionKind):
    key = "attention.isdp"
    Args = ISDPArgs
    doc = "invertible scaled dot-product attention between patches (iSDP)"
    module = "flowspec.nn.isdp:ISDP"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        c = shape[0]
        per_head = 3 if form_of(args) == "identity" else 2  # log d, theta (and gamma)
        return 2 * (c * c + c) + per_head * arg(args, "heads")  # Q, K 1x1 convs

    @classmethod
    def issues(cls, shape, args):
        c, h, w = shape
        g = math.isqrt(args.patches)
        if g * g != args.patches:
            return [
                Issue(
                    codes.E_PATCHES,
                    f"iSDP patches={args.patches} is not a square number, so the "
                    "patches cannot tile the image",
                    "use patches=1, 4, 16, ...",
                    "patches",
                )
            ]
        if h % g or w % g:
            return [
                Issue(
                    codes.E_PATCHES,
                    f"iSDP patches={args.patches} cut the image into a {g}x{g} "
                    f"grid, but {h}x{w} is not divisible by {g}",
                    f"use a patch count whose square root divides {h} and {w}",
                    "patches",
                )
            ]
        p = c * (h // g) * (w // g)
        if args.heads > p // 2:
            return [
                Issue(
                    codes.E_HEADS,
                    f"iSDP heads={args.heads} is too many: a patch holds {p} "
                    f"features and each head needs at least 2",
                    f"use heads <= {max(1, p // 2)}",
                    "heads",
                )
            ]
        return []


__all__ = ["DIAG_FLOOR", "ISDPArgs", "ISDPKind"]
