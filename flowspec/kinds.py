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
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

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
    #: The boolean argument that keeps a kind's inverse accurate when many are stacked (the
    #: checker warns, W003, about deep stacks of the kind with it off); None: no such issue.
    stack_remedy: ClassVar[str | None] = None

    @classmethod
    def out_shape(cls, shape: Shape, args: Args) -> Shape | Issue:
        """Output shape for one sample, or the Issue that makes the layer impossible."""
        return shape

    @classmethod
    def issues(cls, shape: Shape, args: Args) -> list[Issue]:
        """Invertibility conditions that do not change the shape rule."""
        return []

    @classmethod
    def params(cls, shape: Shape, args: ArgsLike, cond_channels: int | None) -> int:
        """Trainable parameters of the kind's torch module, counted without torch.

        ``shape`` is the input C×H×W, ``args`` every argument (the IR's dict or an
        :class:`Args`), ``cond_channels`` the channels of the conditioning features (None when
        unconditional). A test compares this with the built module for every kind.
        """
        return 0


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

ArgsLike = Mapping[str, Any] | Args


# ---- analytic parameter counts: mirror flowspec/layers (nets.py, encoders.py) exactly -------
def _arg(args: ArgsLike, name: str) -> Any:
    return args[name] if isinstance(args, Mapping) else getattr(args, name)


def _conv(cin: int, cout: int, k: int) -> int:
    """A k×k convolution with bias."""
    return cin * cout * k * k + cout


def net_params(net: str, cin: int, cout: int, hidden: int) -> int:
    """The parameter networks of couplings and injectors (``layers/nets.py``)."""
    if net == "glow":  # conv3x3 - conv1x1 - zero conv3x3
        return _conv(cin, hidden, 3) + _conv(hidden, hidden, 1) + _conv(hidden, cout, 3)
    # resnet: conv3x3 stem, 2 residual blocks of two conv3x3, zero conv3x3 head
    return _conv(cin, hidden, 3) + 4 * _conv(hidden, hidden, 3) + _conv(hidden, cout, 3)


# ---- kinds --------------------------------------------------------------------------------
@register
class ActNorm(LayerKind):
    key = head = "actnorm"
    doc = "per-channel affine normalisation with data-dependent initialisation"

    @classmethod
    def params(cls, shape: Shape, args: ArgsLike, cond_channels: int | None) -> int:
        return 2 * shape[0]  # bias and log-scale per channel


class InvConvArgs(Args):
    lu: bool = True


@register
class InvConv(LayerKind):
    key = head = "invconv"
    Args = InvConvArgs
    doc = "invertible 1x1 convolution (LU-parameterised by default)"

    @classmethod
    def params(cls, shape: Shape, args: ArgsLike, cond_channels: int | None) -> int:
        c = shape[0]
        # LU form stores full C×C lower and upper matrices (masked in use) and log|diag|
        return 2 * c * c + c if _arg(args, "lu") else c * c


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


ScaleForm = Literal["sigmoid", "bounded"]
_SCALE_DOC = ("sigmoid: s = sigmoid(h + 2) + 1e-4; bounded: s = exp(b tanh(h)) in [e^-b, e^b], "
              "which keeps the inverse accurate in deep flows")


class AffineCouplingArgs(CouplingArgs):
    scale: ScaleForm = Field("sigmoid", description=_SCALE_DOC)


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

    @classmethod
    def params(cls, shape: Shape, args: ArgsLike, cond_channels: int | None) -> int:
        c = shape[0]
        kept, out = (c, c) if _arg(args, "mask") == "checkerboard" else (c - c // 2, c // 2)
        width = out if cls.variant == "additive" else 2 * out  # shift (and scale)
        return net_params(_arg(args, "net"), kept + (cond_channels or 0), width,
                          _arg(args, "hidden"))


@register
class AffineCoupling(_Coupling):
    key, variant = "coupling.affine", "affine"
    Args = AffineCouplingArgs
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

    @classmethod
    def params(cls, shape: Shape, args: ArgsLike, cond_channels: int | None) -> int:
        c, k = shape[0], _arg(args, "components")
        # per transformed entry: scale, shift and K logits, means, log-scales
        return net_params(_arg(args, "net"), c - c // 2 + (cond_channels or 0),
                          (c // 2) * (2 + 3 * k), _arg(args, "hidden"))


class InjectorArgs(CondArgs):
    hidden: int = Field(64, ge=1, le=8192)
    scale: ScaleForm = Field("sigmoid", description=_SCALE_DOC)


@register
class Injector(LayerKind):
    key = head = "injector"
    Args = InjectorArgs
    conditional = "required"
    doc = "conditional affine injector (SRFlow): scale and shift from the condition only"

    @classmethod
    def params(cls, shape: Shape, args: ArgsLike, cond_channels: int | None) -> int:
        return net_params("glow", cond_channels or 0, 2 * shape[0], _arg(args, "hidden"))


class IMapArgs(Args):
    act: Literal["sigmoid"] = "sigmoid"
    mask: Literal["checkerboard", "complement"] = "checkerboard"
    residual: bool = Field(False, description="bounded identity-plus-branch form for deep "
                           "stacks: scales exp(0.5 tanh(.)) instead of sigmoid(.)")


@register
class IMap(LayerKind):
    key, head, variant = "attention.imap", "attention", "imap"
    Args = IMapArgs
    doc = "invertible map-based attention (iMap)"

    @classmethod
    def params(cls, shape: Shape, args: ArgsLike, cond_channels: int | None) -> int:
        c = shape[0]
        return c * c + c + 1 + c  # 1x1 conv weight and bias, offset, per-channel scale s
    stack_remedy = "residual"

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
    residual: bool = Field(False, description="bounded identity-plus-branch form for deep "
                           "stacks: A = I + beta softmax(.), |beta| < 0.5")


@register
class ISDP(LayerKind):
    key, head, variant = "attention.isdp", "attention", "isdp"
    Args = ISDPArgs
    doc = "invertible scaled dot-product attention between patches (iSDP)"

    @classmethod
    def params(cls, shape: Shape, args: ArgsLike, cond_channels: int | None) -> int:
        c = shape[0]
        return 2 * (c * c + c) + 2 * _arg(args, "heads")  # Q, K 1x1 convs; log d, theta per head
    stack_remedy = "residual"

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
    def params(cls, shape: Shape, args: ArgsLike, cond_channels: int | None) -> int:
        if _arg(args, "prior") != "learned":
            return 0
        c = shape[0]  # zero-initialised conv3x3: kept half (+ condition) -> mean, log-scale
        return _conv(c - c // 2 + (cond_channels or 0), 2 * (c // 2), 3)

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

    @classmethod
    def params(cls, shape: Shape, args: ArgsLike, cond_channels: int | None) -> int:
        if not _arg(args, "learned"):
            return 0
        c, h, w = shape
        return _conv(cond_channels, 2 * c, 3) if cond_channels else 2 * c * h * w


# ---- condition encoders -------------------------------------------------------------------
class EncoderArgs(Args):
    blocks: int = Field(4, ge=1, le=64)
    features: int = Field(64, ge=1, le=4096)


class RRDBArgs(EncoderArgs):
    blocks: int = Field(8, ge=1, le=64)


ENCODERS: dict[str, type[Args]] = {"rrdb": RRDBArgs, "convnet": EncoderArgs}


def encoder_params(kind: str, in_shape: Shape, args: ArgsLike) -> int:
    """Trainable parameters of a condition encoder (``layers/encoders.py``), without torch."""
    blocks, f, c = _arg(args, "blocks"), _arg(args, "features"), in_shape[0]
    if kind == "rrdb":  # stem, blocks x RRDB (3 dense blocks of 5 convs), trunk
        g = max(4, min(32, f // 2))
        dense = sum(_conv(f + i * g, g if i < 4 else f, 3) for i in range(5))
        return _conv(c, f, 3) + blocks * 3 * dense + _conv(f, f, 3)
    return _conv(c, f, 3) + blocks * 2 * _conv(f, f, 3)  # convnet: stem, residual blocks


def count_params(spec: Any) -> dict[str, int]:
    """Parameters of a checked spec (IR) per layer path, ``encoder:NAME`` and ``prior``.

    Counted from the registry alone (no torch); ``sum(...)`` is the compiled model's total.
    """
    conds = {c.name: c for c in spec.conditions}

    def width(on: str | None) -> int | None:
        return int(conds[on].encoder.args["features"]) if on else None

    out = {layer.path: KINDS[layer.kind].params(tuple(layer.in_shape), layer.args,
                                                width(layer.args.get("on")))
           for layer in spec.layers}
    for c in spec.conditions:
        out[f"encoder:{c.name}"] = encoder_params(c.encoder.kind, tuple(c.shape), c.encoder.args)
    prior = {"learned": spec.prior.learned, "on": spec.prior.on}
    out["prior"] = GaussianPrior.params(tuple(spec.latents[-1].shape), prior,
                                        width(spec.prior.on))
    return out


def _fmt(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)
