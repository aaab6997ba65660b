"""SRFlow's conditional affine injector."""

from __future__ import annotations

from pydantic import Field

from flowspec.kinds import CondArgs, LayerKind, kind, registry_args_field, registry_field

from .coupling import SCALE_DOC, ScaleForm
from .nets import net_params


class InjectorArgs(CondArgs):
    hidden: int = Field(64, ge=1, le=8192, description="width of the network")
    net: str = registry_field("net", "glow", "the network of the condition (a registered net)")
    net_args: dict[str, int | float | bool | str] = registry_args_field("net")
    scale: ScaleForm = Field("sigmoid", description=SCALE_DOC)


@kind
class InjectorKind(LayerKind):
    key = "injector"
    Args = InjectorArgs
    conditional = "required"
    doc = "conditional affine injector (SRFlow): scale and shift from the condition only"
    module = "flowspec.nn.injector:AffineInjector"

    @classmethod
    def params(cls, shape, args, cond_channels) -> int:
        return net_params(args, cond_channels or 0, 2 * shape[0])

    @classmethod
    def alone_after(cls, shape, args, alone):
        return alone  # scale and shift from the condition only: entrywise in x (W004)
