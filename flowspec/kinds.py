"""The layer registry: what each layer kind accepts and what it does to a shape.

One class per kind declares its arguments (a pydantic model: types, defaults, ranges),
its shape rule and its invertibility conditions. The grammar knows no layer names and
the checker knows no layer kinds: both ask this registry. The torch module of a kind is
named by ``module`` and imported only by the builder, so checking a spec never imports
torch.

Adding a kind: a class here (decorated with :func:`register`) plus its torch module in
``flowspec/layers/``; the registry-wide numerics tests pick it up automatically.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

Shape = tuple[int, int, int]


@dataclass
class Issue:
    """A violated shape or invertibility condition, found before anything is built."""

    code: str
    message: str
    help: str | None = None
    arg: str | None = None  # point at this argument rather than at the layer


class Args(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True, frozen=True)


class CondArgs(Args):
    on: str | None = Field(None, description="name of a declared condition")


class LayerKind:
    key: ClassVar[str]                  # registry key, e.g. "coupling.affine"
    head: ClassVar[str]                 # the word that starts the statement: "coupling"
    variant: ClassVar[str | None] = None  # the word after it: "affine"
    Args: ClassVar[type[Args]] = Args
    conditional: ClassVar[Literal["never", "optional", "required"]] = "never"
    module: ClassVar[str]               # "flowspec.layers:MODULES[key]" is looked up by key
    doc: ClassVar[str] = ""

    @classmethod
    def out_shape(cls, shape: Shape, args: Args) -> Shape | Issue:
        """Output shape for one sample, or the Issue that makes the layer impossible."""
        return shape

    @classmethod
    def issues(cls, shape: Shape, args: Args) -> list[Issue]:
        """Invertibility conditions that do not change the shape rule."""
        return []


KINDS: dict[str, type[LayerKind]] = {}


def register(cls: type[LayerKind]) -> type[LayerKind]:
    KINDS[cls.key] = cls
    return cls


def heads() -> dict[str, dict[str | None, type[LayerKind]]]:
    """head word -> {variant word (None for kinds without variants) -> kind}."""
    out: dict[str, dict[str | None, type[LayerKind]]] = {}
    for k in KINDS.values():
        out.setdefault(k.head, {})[k.variant] = k
    return out


DEFAULT_VARIANT = {"coupling": "affine"}


# ---- kinds --------------------------------------------------------------------------------
@register
class ActNorm(LayerKind):
    key = head = "actnorm"
    doc = "per-channel affine normalisation with data-dependent initialisation"


class InvConvArgs(Args):
    lu: bool = True


@register
class InvConv(LayerKind):
    key = head = "invconv"
    Args = InvConvArgs
    doc = "invertible 1x1 convolution (LU-parameterised by default)"


class PermuteArgs(Args):
    mode: Literal["reverse", "shuffle"] = "shuffle"


@register
class Permute(LayerKind):
    key = head = "permute"
    Args = PermuteArgs
    doc = "fixed channel permutation"


class CouplingArgs(CondArgs):
    hidden: int = Field(512, ge=1, le=8192)
    net: Literal["glow", "resnet"] = "glow"
    mask: Literal["channel", "checkerboard"] = "channel"


def _channel_split_issue(shape: Shape, what: str) -> Issue | None:
    if shape[0] < 2:
        return Issue("E202", f"{what} needs at least 2 channels to split, but gets {_fmt(shape)}",
                     "squeeze first (it multiplies the channels by 4), or use mask=checkerboard")
    return None


class _Coupling(LayerKind):
    head = "coupling"
    Args = CouplingArgs
    conditional = "optional"

    @classmethod
    def issues(cls, shape: Shape, args: CouplingArgs) -> list[Issue]:
        if getattr(args, "mask", "channel") == "channel":
            issue = _channel_split_issue(shape, f"coupling {cls.variant} with mask=channel")
            return [issue] if issue else []
        return []


@register
class AffineCoupling(_Coupling):
    key, variant = "coupling.affine", "affine"
    doc = "affine coupling (Glow / RealNVP), bounded positive scale"


@register
class AdditiveCoupling(_Coupling):
    key, variant = "coupling.additive", "additive"
    doc = "additive (volume-preserving) coupling (NICE)"


class MixtureArgs(CondArgs):
    hidden: int = Field(96, ge=1, le=8192)
    components: int = Field(32, ge=1, le=256)
    net: Literal["glow", "resnet"] = "glow"


@register
class MixtureCoupling(_Coupling):
    key, variant = "coupling.mixture", "mixture"
    Args = MixtureArgs
    doc = "logistic-mixture-CDF coupling (Flow++ / mARFlow)"


class InjectorArgs(CondArgs):
    hidden: int = Field(64, ge=1, le=8192)


@register
class Injector(LayerKind):
    key = head = "injector"
    Args = InjectorArgs
    conditional = "required"
    doc = "conditional affine injector (SRFlow): scale and shift from the condition only"


class IMapArgs(Args):
    act: Literal["sigmoid"] = "sigmoid"
    mask: Literal["checkerboard", "complement"] = "checkerboard"


@register
class IMap(LayerKind):
    key, head, variant = "attention.imap", "attention", "imap"
    Args = IMapArgs
    doc = "invertible map-based attention (iMap)"

    @classmethod
    def issues(cls, shape: Shape, args: IMapArgs) -> list[Issue]:
        if shape[0] < 2:
            return [Issue("E202", f"attention imap needs at least 2 channels, but gets "
                          f"{_fmt(shape)}", "insert it after a squeeze")]
        return []


class ISDPArgs(Args):
    heads: int = Field(1, ge=1, le=1024)
    patches: int = Field(4, ge=1, le=4096)
    mask: Literal["checkerboard", "complement"] = "checkerboard"


@register
class ISDP(LayerKind):
    key, head, variant = "attention.isdp", "attention", "isdp"
    Args = ISDPArgs
    doc = "invertible scaled dot-product attention between patches (iSDP)"

    @classmethod
    def issues(cls, shape: Shape, args: ISDPArgs) -> list[Issue]:
        c, h, w = shape
        g = math.isqrt(args.patches)
        if g * g != args.patches:
            return [Issue("E203", f"iSDP patches={args.patches} is not a square number, so the "
                          "patches cannot tile the image", "use patches=1, 4, 16, ...", "patches")]
        if h % g or w % g:
            return [Issue("E203", f"iSDP patches={args.patches} cut the image into a {g}x{g} "
                          f"grid, but {h}x{w} is not divisible by {g}",
                          f"use a patch count whose square root divides {h} and {w}", "patches")]
        p = c * (h // g) * (w // g)
        if args.heads > p // 2:
            return [Issue("E204", f"iSDP heads={args.heads} is too many: a patch holds {p} "
                          f"features and each head needs at least 2",
                          f"use heads <= {max(1, p // 2)}", "heads")]
        return []


class SqueezeArgs(Args):
    factor: int = Field(2, ge=2, le=16)


@register
class Squeeze(LayerKind):
    key = head = "squeeze"
    Args = SqueezeArgs
    doc = "space-to-depth: (C, H, W) -> (C*f*f, H/f, W/f)"

    @classmethod
    def out_shape(cls, shape: Shape, args: SqueezeArgs) -> Shape | Issue:
        c, h, w = shape
        f = args.factor
        if h % f or w % f:
            return Issue("E201", f"squeeze needs H and W divisible by {f}, but enters with "
                         f"{_fmt(shape)}", "pad the input (e.g. `data mnist5k pad=2` for "
                         "28->32) or use one level fewer")
        return (c * f * f, h // f, w // f)


class SplitArgs(CondArgs):
    prior: Literal["learned", "fixed"] = "learned"


@register
class Split(LayerKind):
    key = head = "split"
    Args = SplitArgs
    conditional = "optional"
    doc = "factor out half of the channels as a latent (Glow multi-scale)"

    @classmethod
    def out_shape(cls, shape: Shape, args: SplitArgs) -> Shape | Issue:
        issue = _channel_split_issue(shape, "split")
        if issue:
            return issue
        c, h, w = shape
        return (c - c // 2, h, w)


def split_latent(shape: Shape) -> Shape:
    """Shape of the latent that a split factors out of ``shape``."""
    return (shape[0] // 2, shape[1], shape[2])


class PriorArgs(CondArgs):
    learned: bool = False


@register
class GaussianPrior(LayerKind):
    key, head, variant = "prior.gaussian", "prior", "gaussian"
    Args = PriorArgs
    conditional = "optional"
    doc = "top prior: standard normal, or a learned (optionally conditional) diagonal Gaussian"


# ---- condition encoders -------------------------------------------------------------------
class EncoderArgs(Args):
    blocks: int = Field(4, ge=1, le=64)
    features: int = Field(64, ge=1, le=4096)


class RRDBArgs(EncoderArgs):
    blocks: int = Field(8, ge=1, le=64)


ENCODERS: dict[str, type[Args]] = {"rrdb": RRDBArgs, "convnet": EncoderArgs}


def _fmt(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)
