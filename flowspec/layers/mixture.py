"""Logistic-mixture CDF coupling (Flow++, as used by the mARFlow backbone)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Literal

from pydantic import Field

from flowspec.kinds import CondArgs, arg, kind, registry_args_field, registry_field

from .coupling import CouplingKind
from .nets import net_params

#: Lower bound on the log-scale of a mixture component (Flow++ uses the same bound).
_MIN_LOG_SCALE = -7.0
#: Hard cap on bisection steps (more than enough to reach float64 resolution).
_MAX_BISECT = 200


class MixtureArgs(CondArgs):
    hidden: int = Field(96, ge=1, le=8192, description="width of the coupling network")
    components: int = Field(32, ge=1, le=256, description="logistic mixture components K")
    net: str = registry_field("net", "glow", "the coupling network (a registered net)")
    net_args: dict[str, int | float | bool | str] = registry_args_field("net")
    flip: bool = Field(
        False,
        description="swap the halves: the first C - C//2 channels "
        "are transformed, driven by the last C//2",
    )
    scale: Literal["sigmoid", "tanh"] = Field(
        "sigmoid",
        description="the affine scale after the mixture: sigmoid(a + 2) + eps, or "
        "Flow++'s exp(w tanh(a)) with a learned per-channel w (mARFlow's code)",
    )


@kind
class MixtureCouplingKind(CouplingKind):
    key = "coupling.mixture"
    Args = MixtureArgs
    doc = "logistic-mixture-CDF coupling (Flow++ / mARFlow), channel mask"
    module = "flowspec.nn.mixture:MixtureCoupling"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        kept, out = cls.widths(shape, args)
        # per transformed entry: scale, shift and K logits, means, log-scales
        rescale = out if _get(args, "scale", "sigmoid") == "tanh" else 0
        return rescale + net_params(
            args, kept + (cond_channels or 0), out * (2 + 3 * arg(args, "components"))
        )


def _get(args: Any, name: str, default: Any) -> Any:
    """An argument that an IR from before it existed lacks."""
    return args.get(name, default) if isinstance(args, Mapping) else getattr(args, name, default)
