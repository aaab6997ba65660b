"""Split: factor out half of the channels as a standardised latent (Glow)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Literal

from pydantic import Field, field_validator

from flowspec import codes
from flowspec.kinds import CondArgs, Issue, LayerKind, arg, conv_params, fmt_shape, kind

from .base import FlowLayer, Shape, cat_cond, sum_except_batch
from .convlstm_prior import ChannelAR, channel_ar_params, odd_kernel
from .nets import zero_conv

if TYPE_CHECKING:
    from torch import Tensor

torch = nn = F = None  # bound when the first module of this file is built (see base.py)

#: The ConvLSTM's arguments when an IR (or a caller) leaves them out.
CONVLSTM_DEFAULTS = {"hidden": 32, "layers": 3, "kernel": 5, "dilation": 1}


class Split(FlowLayer):
    r"""``x -> (y, z)`` with ``y = x[:, :C - C//2]`` continuing and ``z`` factored out.

    ``prior=learned``: ``(mu, l) = conv(y [, cond])`` from a zero-initialised 3x3 convolution
    and ``z = (x2 - mu) e^{-l}`` with ``x2 = x[:, C - C//2:]``. In the ordering ``(y, x2)``
    the Jacobian of ``x -> (y, z)`` is block triangular with blocks ``I`` and
    ``diag(e^{-l})``, so ``logdet = -sum l``. The latent is standardised: a caller scores it
    under N(0, I) and samples it as ``z = T * N(0, I)`` at temperature ``T``, and ``z = 0``
    decodes to the prior mean ``mu``.

    ``prior=fixed``: ``z = x2``, ``logdet = 0``.

    ``prior=convlstm``: mAR-SCF's channel-autoregressive prior (:mod:`.convlstm_prior`):
    ``z_t = (x2_t - mu_t) e^{-l_t}`` with ``(mu_t, l_t)`` from a ConvLSTM that has read
    ``x2_{<t}`` and features of ``y`` (and the condition); the Jacobian is triangular with
    diagonal ``e^{-l}``, so again ``logdet = -sum l``; the inverse decodes channel by channel.
    ``hidden``, ``layers``, ``kernel`` and ``dilation`` shape that ConvLSTM.

    ``out_shape`` is the shape of ``y``, ``z_shape`` that of ``z``.
    """

    def __init__(
        self, shape: Shape, args: dict[str, Any], cond_channels: int | None = None
    ) -> None:
        super().__init__(shape, args, cond_channels)
        c, h, w = self.in_shape
        if c < 2:
            raise ValueError(f"split needs C >= 2, got C={c}")
        self.keep = c - c // 2
        self.out_shape = (self.keep, h, w)
        self.z_shape: Shape = (c // 2, h, w)
        prior = args["prior"]
        if prior not in ("learned", "fixed", "convlstm"):
            raise ValueError(f"unknown split prior {prior!r}; expected 'learned', 'fixed' or "
                             "'convlstm'")
        self.learned = prior == "learned"
        self.ar = None
        if self.learned:
            self.conv = zero_conv(self.keep + (self.cond_channels or 0), 2 * (c // 2))
        elif prior == "convlstm":
            a = {**CONVLSTM_DEFAULTS, **args}
            self.ar = ChannelAR(self.keep + (self.cond_channels or 0), int(a["hidden"]),
                                int(a["layers"]), int(a["kernel"]), int(a["dilation"]))

    def _mean_logscale(self, y: Tensor, cond: Tensor | None) -> tuple[Tensor, Tensor]:
        h = self.conv(cat_cond(y, self._cond(cond, y)))
        n = self.z_shape[0]
        return h[:, :n], h[:, n:]

    def forward(self, x: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor, Tensor]:
        y, x2 = x[:, : self.keep], x[:, self.keep :]
        if self.ar is not None:
            z, logdet = self.ar.standardise(x2, cat_cond(y, self._cond(cond, y)))
            return y, z, logdet
        if not self.learned:
            return y, x2, x.new_zeros(x.shape[0])
        mu, log_scale = self._mean_logscale(y, cond)
        z = (x2 - mu) * torch.exp(-log_scale)
        return y, z, -sum_except_batch(log_scale)

    def inverse(self, y: Tensor, z: Tensor, cond: Tensor | None = None) -> tuple[Tensor, Tensor]:
        if self.ar is not None:
            x2, logdet = self.ar.unstandardise(z, cat_cond(y, self._cond(cond, y)))
            return torch.cat([y, x2], dim=1), logdet
        if not self.learned:
            return torch.cat([y, z], dim=1), y.new_zeros(y.shape[0])
        mu, log_scale = self._mean_logscale(y, cond)
        x2 = z * torch.exp(log_scale) + mu
        return torch.cat([y, x2], dim=1), sum_except_batch(log_scale)


class SplitArgs(CondArgs):
    prior: Literal["learned", "fixed", "convlstm"] = Field(
        "learned", description="the factored-out half's prior: a learned Gaussian from the "
        "kept half (and the condition), N(0, I), or mAR-SCF's channel-autoregressive "
        "ConvLSTM prior given the kept half (and the condition)")
    hidden: int = Field(32, ge=1, le=1024, description="prior=convlstm: channels of the "
                        "ConvLSTM and of its context network")
    layers: int = Field(3, ge=1, le=16, description="prior=convlstm: stacked ConvLSTM cells")
    kernel: int = Field(5, ge=1, le=9, description="prior=convlstm: kernel of the embedding "
                        "and the cells (odd)")
    dilation: int = Field(1, ge=1, le=8, description="prior=convlstm: dilation of the cells")

    _odd = field_validator("kernel")(odd_kernel)


@kind
class SplitKind(LayerKind):
    key = "split"
    Args = SplitArgs
    conditional = "optional"
    doc = "factor out half of the channels as a latent (Glow multi-scale)"
    module = Split
    emits_latent = True

    #: the ConvLSTM's arguments, absent from an IR from before prior=convlstm
    legacy_defaults = CONVLSTM_DEFAULTS

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        c = shape[0]
        if arg(args, "prior") == "convlstm":
            a = {**CONVLSTM_DEFAULTS, **(dict(args) if isinstance(args, Mapping)
                                         else args.model_dump())}
            return channel_ar_params(c - c // 2 + (cond_channels or 0), a["hidden"],
                                     a["layers"], a["kernel"])
        if arg(args, "prior") != "learned":
            return 0
  # zero-initialised conv3x3: kept half (+ condition) -> mean, log-scale
        return conv_params(c - c // 2 + (cond_channels or 0), 2 * (c // 2), 3)

    @classmethod
    def out_shape(cls, shape, args):
        c, h, w = shape
        if c < 2:
            return Issue(codes.E_FEW_CHANNELS,
                         f"split needs at least 2 channels, but gets {fmt_shape(shape)}",
                         "squeeze first (it multiplies the channels by 4), or remove the split")
        return (c - c // 2, h, w)
