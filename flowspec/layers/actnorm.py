"""Activation normalisation (Glow) with a once-only data-dependent initialisation."""

from __future__ import annotations

from flowspec.kinds import LayerKind, kind


@kind
class ActNormKind(LayerKind):
    key = "actnorm"
    doc = "per-channel affine normalisation with data-dependent initialisation (Glow)"
    module = "flowspec.nn.actnorm:ActNorm"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        return 2 * shape[0]  # bias and log-scale per channel

    @classmethod
    def alone_after(cls, shape, args, alone):
        return alone  # entrywise: every entry still depends on itself alone (W004)
