"""Invertible residual block (Residual Flows, Chen et al. 2019): ``y = x + g(x)``, Lip(g) < 1.

The defaults are those of the official code's image models (rtqichen/residual-flows,
``train_img.py``): spectral normalisation to ``coeff = 0.98``, LipSwish activations, kernels
3-1-3 at width 512, pre-activation, the log-det estimated by the Russian-roulette power
series with two exact terms and a Poisson(2) number of further terms, Neumann-series
gradients. ``logdet=exact`` computes it by the brute-force Jacobian instead (small inputs).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import ClassVar, Literal

from pydantic import Field

from flowspec import codes
from flowspec.kinds import Args, ArgsLike, Issue, LayerKind, arg, conv_params, fmt_shape, kind

#: The exact mode builds a (C H W) x (C H W) Jacobian per sample: refused above this.
MAX_EXACT_DIMS = 4096


class ResidualArgs(Args):
    hidden: int = Field(512, ge=1, le=8192, description="width of the hidden layers of g")
    net: Literal["conv", "fc"] = Field(
        "conv",
        description="conv: convolutions of the kernels' sizes; fc: fully connected "
        "layers on the flattened sample (the official code's fc-end blocks)",
    )
    kernels: str = Field(
        "3-1-3",
        pattern=r"^[1-9](-[1-9])+$",
        description="kernel sizes of "
        "g's convolutions, odd (for net=fc: their count sets the layers)",
    )
    coeff: float = Field(
        0.98,
        gt=0.0,
        lt=1.0,
        description="Lipschitz bound of each "
        "spectrally normalised layer (g's is at most coeff^layers)",
    )
    power_iters: int = Field(
        5,
        ge=1,
        le=1000,
        description="power iterations per forward "
        "for each layer's spectral norm, warm-started from buffers",
    )
    preact: bool = Field(
        True,
        description="start g with an activation (off for the flow's "
        "first block, as the official first_resblock)",
    )
    logdet: Literal["estimate", "exact"] = Field(
        "estimate",
        description="estimate: unbiased Russian-roulette power series with "
        "Hutchinson traces; exact: slogdet of the brute-force Jacobian (small inputs)",
    )
    dist: Literal["poisson", "geometric"] = Field(
        "poisson",
        description="distribution of the number of random terms (Poisson(2) or Geometric(1/2))",
    )
    terms: int = Field(
        2,
        ge=0,
        le=64,
        description="power-series terms always computed in training before the random ones",
    )
    eval_terms: int = Field(
        20,
        ge=0,
        le=200,
        description="terms always computed in eval mode (a lower-variance estimate)",
    )


def _kernels(args: ArgsLike) -> list[int]:
    return [int(k) for k in str(arg(args, "kernels")).split("-")]


@kind
class ResidualKind(LayerKind):
    key = "residual"
    Args = ResidualArgs
    doc = (
        "invertible residual block y = x + g(x), g spectrally normalised to Lip < 1 with "
        "LipSwish activations (Residual Flows); log-det estimated or exact"
    )
    module = "flowspec.nn.residual:ResidualBlock"
    estimates_logdet = True
    exact_args: ClassVar[dict[str, str]] = {"logdet": "exact"}

    @classmethod
    def estimates_logdet_for(cls, args: ArgsLike) -> bool:
        return arg(args, "logdet") == "estimate"

    @classmethod
    def issues(cls, shape, args) -> list[Issue]:
        out = []
        ks = _kernels(args)
        if args.net == "conv" and any(k % 2 == 0 for k in ks):
            out.append(
                Issue(
                    codes.E_VALUE,
                    f"residual kernels={args.kernels}: every kernel "
                    "size must be odd to keep the shape",
                    "use e.g. kernels=3-1-3",
                    arg="kernels",
                )
            )
        dims = shape[0] * shape[1] * shape[2]
        if args.logdet == "exact" and dims > MAX_EXACT_DIMS:
            out.append(
                Issue(
                    codes.E_VALUE,
                    f"residual logdet=exact builds a {dims}x{dims} "
                    f"Jacobian per sample on {fmt_shape(shape)}; at most "
                    f"{MAX_EXACT_DIMS} entries",
                    "use logdet=estimate at this size",
                    arg="logdet",
                )
            )
        return out

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        a = dict(args) if isinstance(args, Mapping) else args.model_dump()
        ks, hidden = _kernels(a), int(a["hidden"])
        acts = len(ks) if a["preact"] else len(ks) - 1  # one LipSwish beta each
        if a["net"] == "fc":
            d = shape[0] * shape[1] * shape[2]
            widths = [d] + [hidden] * (len(ks) - 1) + [d]
            return sum(i * o + o for i, o in zip(widths, widths[1:])) + acts
        widths = [shape[0]] + [hidden] * (len(ks) - 1) + [shape[0]]
        return sum(conv_params(i, o, k) for i, o, k in zip(widths, widths[1:], ks)) + acts
