"""The open vocabulary: registries of layer kinds, coupling networks, encoders and priors.

A kind is declared by one class (arguments as a frozen pydantic model with types, defaults
and ranges; a shape rule; invertibility conditions; a parameter count) and registered with
a decorator. The grammar knows no layer names and the checker knows no layer kinds: both
ask these registries. Built-in kinds live one per file in ``flowspec/layers/`` and register
themselves exactly as a user's plugin does (see :mod:`flowspec.plugins`), when one of their
keys is first used (:mod:`flowspec.registry`); this module and those declarations never
import torch, so checking a spec stays fast. The torch module of a kind is named by
``module`` (``"pkg.mod:Name"``, or a :class:`flowspec.FlowLayer` subclass) and imported only
when a model is built; built-in modules live in ``flowspec/nn/``, in the file of the same
name as their declaration's.

Public names (README, "Writing a layer kind"): :class:`Args`, :class:`LayerKind`, :func:`kind`,
:class:`NetKind`/:func:`net`, :class:`EncoderKind`/:func:`encoder`,
:class:`PriorKind`/:func:`prior`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field

from .errors import FlowError
from .importing import import_object
from .registry import Registry

Shape = tuple[int, int, int]
ArgsLike = Mapping[str, Any] | BaseModel


class PluginError(FlowError):
    """A plugin that cannot be used: its import failed, a key clashes, or a declaration is
    malformed. ``str()`` names the plugin and says what to do."""


@dataclass
class Issue:
    """A violated shape or invertibility condition, found before anything is built."""

    code: str
    message: str
    help: str | None = None
    arg: str | None = None  # point at this argument rather than at the layer


class Args(BaseModel):
    """Base of every argument model: keyword arguments with defaults, checked strictly.

    Declare fields with ``pydantic.Field(default, ge=, le=, description=)``; ``Literal``
    types become choices. Every field needs a default (a spec may omit any argument).
    """

    model_config = ConfigDict(extra="forbid", strict=True, frozen=True, defer_build=True)


class CondArgs(Args):
    """Arguments of a kind that may be conditioned: ``on=CONDITION``."""

    on: str | None = Field(None, description="name of a declared condition")


def registry_field(registry: str, default: str, description: str = "") -> Any:
    """A string argument whose value must be a key of another registry (``net=`` names a
    :class:`NetKind`): checked at resolve time with a did-you-mean, so plugins extend it.
    With a companion field ``NAME_args`` (:func:`registry_args_field`) it may also be
    written as a call, ``net=flowpp(blocks=4)``, whose arguments the entry's Args check."""
    return Field(
        default,
        description=description or f"a registered {registry}",
        json_schema_extra={"registry": registry},
    )


def registry_args_field(registry: str) -> Any:
    """The arguments of a :func:`registry_field` written as a call (``net=NAME(k=v)``);
    resolve fills in the entry's defaults. Not written directly in a spec."""
    return Field(
        default_factory=dict,
        description=f"arguments of the {registry}, written {registry}=NAME(k=v, ...)",
        json_schema_extra={"args_of": registry},
    )


def arg(args: ArgsLike, name: str) -> Any:
    """One argument of an IR ``dict`` or of an :class:`Args` instance."""
    return args[name] if isinstance(args, Mapping) else getattr(args, name)


def conv_params(cin: int, cout: int, k: int) -> int:
    """Parameters of a k×k convolution with bias."""
    return cin * cout * k * k + cout


def fmt_shape(shape: Shape) -> str:
    return "x".join(str(d) for d in shape)


# ---- the base declarations ----------------------------------------------------------------
class _Declared:
    key: ClassVar[str]
    doc: ClassVar[str] = ""
    Args: ClassVar[type[Args]] = Args
    module: ClassVar[Any] = None  # a FlowLayer / nn.Module subclass, or "pkg.mod:Name"

    @classmethod
    def module_class(cls) -> type:
        """The torch class that builds this entry (imports it on first use)."""
        target = cls.module
        if isinstance(target, str):  # "package.module:Name", named by the declaration's code
            try:
                target = import_object(target)
            except (ImportError, AttributeError) as e:
                raise PluginError(
                    f"{_what(cls)} names module `{cls.module}`, which cannot be "
                    f"imported: {type(e).__name__}: {e}"
                ) from None
        return target

    @classmethod
    def count_built(cls, *build_args: Any, **build_kwargs: Any) -> int:
        """Parameters of the built module: the fallback of an undeclared count."""
        module = cls.module_class()(*build_args, **build_kwargs)
        return sum(p.numel() for p in module.parameters())


class LayerKind(_Declared):
    """A layer kind. Subclass, set ``key``, ``Args``, ``doc``, ``module``; decorate with
    :func:`kind`.

    ``key`` is the statement's head word (``"pixaffine"``) or ``"head.variant"``
    (``"coupling.affine"``: written ``coupling affine``). ``conditional`` says whether the
    layer takes ``on=COND`` (its Args must then have an ``on`` field, e.g. via
    :class:`CondArgs`). The module is built as ``module(shape, args, cond_channels)``; a
    module defined only on an interval of inputs says so with ``domain = (low, high)``
    (``flowspec verify`` then tests it there).

    Optional classmethods: ``out_shape`` and ``issues`` (shape and invertibility rules),
    ``params`` (analytic count; else the module is built and counted), ``cond_hw`` (the
    size at which a conditional layer receives its condition), ``shown_args`` (how
    tables and diagrams spell the arguments) and ``alone_after(shape, args, alone)`` for the
    checker's W004 analysis: given, per channel and pixel parity, whether the entries still
    depend on themselves alone, return that after the layer (None or absent: the layer makes
    every entry depend on others, so an unknown kind never causes a false warning).

    A kind with ``emits_latent`` (``split``) factors a latent of :meth:`latent_shape` out of
    the flow: its module's ``forward(x, cond)`` returns ``(y, z, logdet)`` and its
    ``inverse(y, z, cond)`` takes that latent back.
    """

    head: ClassVar[str]
    variant: ClassVar[str | None] = None
    conditional: ClassVar[Literal["never", "optional", "required"]] = "never"
    #: The boolean argument that keeps a kind's inverse accurate when many are stacked (the
    #: checker warns, W003, about deep stacks of the kind with it off); None: no such issue.
    stack_remedy: ClassVar[str | None] = None
    #: How to write the remedy in a help line (default ``{stack_remedy}=true``).
    stack_remedy_hint: ClassVar[str | None] = None

    @classmethod
    def remedy_hint(cls) -> str:
        """How to write the deep-stack remedy: ``form=residual``, ``residual=true``, ..."""
        return cls.stack_remedy_hint or f"{cls.stack_remedy}=true"

    #: Arguments added after the kind was first released, with the values that keep the old
    #: behaviour: an IR from before (a checkpoint's) lacks them and gets these, not today's
    #: defaults.
    legacy_defaults: ClassVar[dict[str, Any]] = {}
    declares_params: ClassVar[bool] = False  # set by @kind when params() is overridden
    #: The layer factors a latent out of the flow (it ends a level: the checker counts it
    #: among the latents and cuts W004's pieces there, the graph gives it a latent node).
    emits_latent: ClassVar[bool] = False
    #: The module's log-det may be a stochastic (unbiased) estimate rather than exact, for
    #: the arguments :meth:`estimates_logdet_for` accepts; :attr:`exact_args` then override
    #: them into an exact mode of the same map (what ``verify`` compares with ``slogdet``).
    estimates_logdet: ClassVar[bool] = False
    exact_args: ClassVar[dict[str, Any]] = {}

    @classmethod
    def estimates_logdet_for(cls, args: ArgsLike) -> bool:
        """Whether a layer of these arguments returns an estimated log-det."""
        return cls.estimates_logdet

    @classmethod
    def out_shape(cls, shape: Shape, args: Args) -> Shape | Issue:
        """Output shape for one sample, or the Issue that makes the layer impossible."""
        return shape

    @classmethod
    def latent_shape(cls, shape: Shape, args: Args) -> Shape:
        """Shape of the latent that a kind with ``emits_latent`` factors out of ``shape``
        (default: half the channels, :func:`split_latent`)."""
        return split_latent(shape)

    @classmethod
    def shown_args(cls, args: Mapping[str, Any]) -> dict[str, Any]:
        """The IR's arguments as a user writes them, for tables and diagrams (a kind whose IR
        encodes an argument differently from its spelling overrides this)."""
        return dict(args)

    @classmethod
    def issues(cls, shape: Shape, args: Args) -> list[Issue]:
        """Invertibility conditions that do not change the shape rule."""
        return []

    @classmethod
    def cond_hw(cls, shape: Shape, args: ArgsLike) -> tuple[int, int]:
        """H×W at which the layer receives its condition's features (the compiler resamples
        them to it): the layer's own by default. A kind that reads its condition at a
        higher resolution (C-Glow's, at the label map's full size) returns that."""
        return (shape[1], shape[2])

    @classmethod
    def params(cls, shape: Shape, args: ArgsLike, cond_channels: int | None) -> int:
        """Trainable parameters of the module, counted without torch (``shape`` is the
        input C×H×W, ``args`` every argument, ``cond_channels`` the conditioning width or
        None). Kinds that do not override this are counted by building the module."""
        a = dict(args) if isinstance(args, Mapping) else args.model_dump()
        return cls.count_built(shape, a, cond_channels)


class NetKind(_Declared):
    """A coupling network (``net=KEY`` or ``net=KEY(k=v)``): maps ``in_channels`` to
    ``out_channels`` at the same resolution, ``module(in_channels, out_channels, hidden,
    **args)`` with ``args`` its own Args (none by default). It only computes the parameters
    of an elementwise bijection, so it may be anything that treats the samples of a batch
    independently; its last layer should start at zero (identity coupling)."""

    @classmethod
    def params(cls, cin: int, cout: int, hidden: int, **args: Any) -> int:
        return cls.count_built(cin, cout, hidden, **args)


class EncoderKind(_Declared):
    """A condition encoder (``condition y: image CxHxW encoder=KEY(...)``):
    ``module(in_shape, args)`` maps (B, C, H, W) to (B, features, H, W) where ``features``
    is the ``features`` argument (every encoder's Args must have it), unless the kind
    overrides :meth:`out_channels`. A module may define ``features_at(f, (H, W))``: the
    features at a layer's resolution (default: ``f`` resampled bilinearly).

    An encoder that can be pretrained as a super-resolution network (``pretrain encoder``
    in ``train { }``) names the boolean argument that gives it the head in ``head_arg``; its
    module then has ``sr(c)``, the super-resolved image (the flow's input shape), in the
    condition's units, and ``head_parameters()``, the parameters only ``sr`` uses.
    ``issues(in_shape, args, image_shape)`` reports conditions that depend on the flow's
    input shape (``image_shape``), as a layer kind's ``issues`` does."""

    #: The boolean argument that builds a super-resolution head (None: the kind has none).
    head_arg: ClassVar[str | None] = None

    @classmethod
    def out_channels(cls, args: ArgsLike) -> int:
        """Channels of the encoder's output (what every layer ``on=`` it receives)."""
        return int(arg(args, "features"))

    @classmethod
    def has_head(cls, args: ArgsLike) -> bool:
        """Whether these arguments build the super-resolution head (an IR from before the
        argument existed has none)."""
        if cls.head_arg is None:
            return False
        a = args if isinstance(args, Mapping) else args.model_dump()
        return bool(a.get(cls.head_arg, False))

    @classmethod
    def issues(cls, in_shape: Shape, args: ArgsLike, image_shape: Shape) -> list[Issue]:
        """Conditions on the flow's input (``image_shape``) that the arguments must meet."""
        return []

    @classmethod
    def params(cls, in_shape: Shape, args: ArgsLike) -> int:
        a = dict(args) if isinstance(args, Mapping) else args.model_dump()
        return cls.count_built(in_shape, a)


class PriorKind(_Declared):
    """A top prior (``prior KEY [flags] [k=v]``): ``module(shape, args, cond_channels)`` is a
    bijection of the final latent onto a standardised variable; ``log_density(eps)`` (a
    method of the module, or N(0, I) when absent) scores it and ``sample_noise(shape)``
    draws it. Bare words after the key set boolean arguments (``prior gaussian learned``)."""

    conditional: ClassVar[Literal["never", "optional", "required"]] = "never"

    @classmethod
    def params(cls, shape: Shape, args: ArgsLike, cond_channels: int | None) -> int:
        a = dict(args) if isinstance(args, Mapping) else args.model_dump()
        return cls.count_built(shape, a, cond_channels)


#: The registries (:class:`~flowspec.registry.Registry`: the built-in entries are imported on
#: first use, see :mod:`flowspec.layers`).
KINDS: Registry = Registry()
NETS: Registry = Registry()
ENCODERS: Registry = Registry()
PRIORS: Registry = Registry()
REGISTRIES: dict[str, Registry] = {
    "kind": KINDS,
    "net": NETS,
    "encoder": ENCODERS,
    "prior": PRIORS,
}

#: Words that start other statements of the grammar: a layer kind cannot take them.
RESERVED = set(
    "flowspec import let block flow extends for if else level step input prior condition "
    "expect train insert true false and or not in x".split()
)
_WORD = re.compile(r"^[a-z][a-z0-9_]*$")


def _what(cls: type) -> str:
    return f"`{cls.__module__}.{cls.__qualname__}`"


def _same(a: type, b: type) -> bool:
    """The same declaration imported twice (a module re-executed, e.g. by a reload)."""
    return a.__module__ == b.__module__ and a.__qualname__ == b.__qualname__


def _held(table: Registry, key: str, cls: type) -> bool:
    """Whether a declaration other than ``cls`` holds ``key`` of ``table``; imports nothing
    (``cls`` may be the deferred entry of ``key``, being imported)."""
    old = table.registered(key)
    if old is not None:
        return not _same(old, cls)
    return table.deferred_module(key) not in (None, cls.__module__)


def _check_common(cls: type, base: type, table: Registry, what: str) -> str:
    if not (isinstance(cls, type) and issubclass(cls, base)):
        raise PluginError(
            f"@{what} decorates {cls!r}, which is not a flowspec.{base.__name__} subclass"
        )
    key = getattr(cls, "key", None)
    if (
        not isinstance(key, str)
        or not all(_WORD.match(p) for p in key.split("."))
        or key.count(".") > (1 if base is LayerKind else 0)
    ):
        raise PluginError(
            f"{what} {_what(cls)} has key {key!r}: use lower-case words "
            + ("(`name` or `head.variant`)" if base is LayerKind else "(`name`)")
        )
    a = cls.Args
    if not (isinstance(a, type) and issubclass(a, Args)):
        raise PluginError(f"{what} `{key}` ({_what(cls)}): Args must subclass flowspec.Args")
    required = [n for n, f in a.model_fields.items() if f.is_required()]
    if required:
        raise PluginError(
            f"{what} `{key}` ({_what(cls)}): argument `{required[0]}` has no "
            "default; every argument of a kind needs one"
        )
    m = cls.module
    if not (isinstance(m, str) and re.match(r"^[\w.]+:\w+$", m)) and not callable(m):
        raise PluginError(
            f"{what} `{key}` ({_what(cls)}): module must be a class (or a "
            f"function building one) or 'package.module:Name', got {m!r}"
        )
    if _held(table, key, cls):
        raise PluginError(
            f"{what} `{key}` of {_what(cls)} clashes with the existing {what} "
            f"`{key}` of {_what(table[key])}: choose another key"
        )
    return key


def kind(cls: type[LayerKind]) -> type[LayerKind]:
    """Register a layer kind (a class decorator). A key already taken is a PluginError."""
    key = _check_common(cls, LayerKind, KINDS, "kind")
    head, _, variant = key.partition(".")
    if head in RESERVED:
        raise PluginError(
            f"kind `{key}` ({_what(cls)}): `{head}` is a word of the language; choose another key"
        )
    for other in KINDS.names():  # (by key: importing nothing)
        other_head, _, other_variant = other.partition(".")
        if (
            other_head == head
            and (variant == "") != (other_variant == "")
            and _held(KINDS, other, cls)
        ):
            raise PluginError(
                f"kind `{key}` ({_what(cls)}) clashes with `{other}` of "
                f"{_what(KINDS[other])}: a head word has variants or none"
            )
    if cls.conditional not in ("never", "optional", "required"):
        raise PluginError(f"kind `{key}`: conditional must be never, optional or required")
    if cls.conditional != "never" and "on" not in cls.Args.model_fields:
        raise PluginError(
            f"kind `{key}` ({_what(cls)}) is conditional but its Args have no "
            "`on` field: derive them from flowspec.CondArgs"
        )
    cls.head, cls.variant = head, variant or None
    cls.declares_params = "params" in vars(cls) or any(
        "params" in vars(b)
        for b in cls.__mro__[1:]
        if b is not LayerKind and issubclass(b, LayerKind)
    )
    KINDS[key] = cls
    return cls


def net(cls: type[NetKind]) -> type[NetKind]:
    """Register a coupling network (``net=KEY`` of couplings and injectors)."""
    NETS[_check_common(cls, NetKind, NETS, "net")] = cls
    return cls


def encoder(cls: type[EncoderKind]) -> type[EncoderKind]:
    """Register a condition encoder (``encoder=KEY(...)``)."""
    key = _check_common(cls, EncoderKind, ENCODERS, "encoder")
    if "features" not in cls.Args.model_fields:
        raise PluginError(
            f"encoder `{key}` ({_what(cls)}): Args need a `features` field (the "
            "channels of the encoder's output)"
        )
    ENCODERS[key] = cls
    return cls


def prior(cls: type[PriorKind]) -> type[PriorKind]:
    """Register a top prior (``prior KEY``)."""
    key = _check_common(cls, PriorKind, PRIORS, "prior")
    if cls.conditional != "never" and "on" not in cls.Args.model_fields:
        raise PluginError(
            f"prior `{key}` ({_what(cls)}) is conditional but its Args have no "
            "`on` field: derive them from flowspec.CondArgs"
        )
    PRIORS[key] = cls
    return cls


def nondefault_args(key: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of a layer (or an encoder) that differ from its defaults, in the
    order of ``args``, as a user writes them."""
    if key in KINDS:
        kind = KINDS[key]
        shown, defaults = kind.shown_args(args), _shown_defaults(kind)
    elif key in ENCODERS:
        shown, defaults = dict(args), _shown_defaults(ENCODERS[key])
    else:
        shown, defaults = dict(args), {}
    out = {
        k: v for k, v in shown.items() if v is not None and (k not in defaults or v != defaults[k])
    }
    for k in list(out):  # net_args={...}: shown as net=NAME(k=v)
        if k.endswith("_args") and k[:-5] in shown and isinstance(out[k], Mapping):
            extra = out.pop(k)
            inner = ", ".join(f"{a}={v}" for a, v in extra.items())
            out[k[:-5]] = Spelled(f"{shown[k[:-5]]}({inner})") if inner else shown[k[:-5]]
    return out


_DEFAULTS: dict[type, dict[str, Any]] = {}


def _shown_defaults(entry: Any) -> dict[str, Any]:
    """An entry's default arguments as shown (built once per declaration: tables list every
    layer, and validating an Args model is not free)."""
    if entry not in _DEFAULTS:
        dump = entry.Args().model_dump()
        _DEFAULTS[entry] = entry.shown_args(dump) if hasattr(entry, "shown_args") else dump
    return _DEFAULTS[entry]


class Spelled(str):
    """A value already spelled as a user writes it (``flowpp(blocks=4)``): shown as is."""


def heads() -> dict[str, dict[str | None, type[LayerKind]]]:
    """head word -> {variant word (None for kinds without variants) -> kind}."""
    return {
        head: {variant: KINDS[key] for variant, key in variants.items()}
        for head, variants in head_keys().items()
    }


def head_keys() -> dict[str, dict[str | None, str]]:
    """head word -> {variant word (None for kinds without variants) -> key}, importing no
    declaration (a spec's layers import only the kinds they use)."""
    out: dict[str, dict[str | None, str]] = {}
    for key in KINDS.names():
        head, _, variant = key.partition(".")
        out.setdefault(head, {})[variant or None] = key
    return out


#: The variant a bare head word means (``coupling`` is ``coupling affine``).
DEFAULT_VARIANT = {"coupling": "affine"}


def split_latent(shape: Shape) -> Shape:
    """Shape of the latent that a split factors out of ``shape``."""
    return (shape[0] // 2, shape[1], shape[2])


def args_key(args: Mapping[str, Any]) -> tuple | None:
    """A hashable key of an argument dict, each value with its type (``True == 1`` and they
    hash alike, but only one is a bool; ``1`` and ``1.0`` print differently) and a dict
    value (``net_args``) as its items in order, or None when a value is unhashable. For
    caches of what a kind computes from its arguments."""
    items = []
    for k, v in args.items():
        if type(v) is dict:
            v = args_key(v)
            if v is None:
                return None
            items.append((k, dict, v))
        else:
            items.append((k, type(v), v))
    key = tuple(items)
    try:
        hash(key)
    except TypeError:
        return None
    return key


def count_params(spec: Any, *, counted: dict[int, dict[str, int]] | None = None) -> dict[str, int]:
    """Parameters of a checked spec (IR) per layer path, ``encoder:NAME`` and ``prior``.

    Counted from the registries (no torch for built-in kinds, which declare their counts);
    ``sum(...)`` is the compiled model's total. ``counted`` keeps the counts of the flows
    counted so far (by ``id``, so only while they live): pass one dict to the calls over
    the flows of a file, and a flow that conditions others is counted once.
    """
    if counted is not None and id(spec) in counted:
        return counted[id(spec)]
    widths: dict[str | None, int | None] = {None: None}  # of conditions modelled by no flow
    flows = {c.name for c in spec.conditions if c.flow is not None}

    def width(on: str | None, layer: Any = None) -> int | None:
        if on in flows:  # the width depends on the layer's position
            return spec.cond_width(on, layer)
        if on not in widths:
            widths[on] = spec.cond_width(on, layer)
        return widths[on]

    seen: dict[tuple, int] = {}  # a flow repeats its steps: count each layer shape once

    def params(layer: Any) -> int:
        w = width(layer.args.get("on"), layer)
        key = args_key(layer.args)
        key = None if key is None else (layer.kind, tuple(layer.in_shape), w, key)
        if key is not None and key in seen:
            return seen[key]
        n = KINDS[layer.kind].params(tuple(layer.in_shape), layer.args, w)
        if key is not None:
            seen[key] = n
        return n

    out = {layer.path: params(layer) for layer in spec.layers}
    for c in spec.conditions:  # a condition modelled by a flow (encoder=flow(...)) counts it
        out[f"encoder:{c.name}"] = (
            sum(count_params(c.flow, counted=counted).values())
            if c.flow
            else ENCODERS[c.encoder.kind].params(tuple(c.shape), c.encoder.args)
        )
    p = spec.prior
    out["prior"] = PRIORS[p.kind].params(tuple(spec.latents[-1].shape), prior_args(p), width(p.on))
    if counted is not None:
        counted[id(spec)] = out
    return out


def estimated_layers(spec: Any) -> list[str]:
    """Paths of a checked spec's (IR's) layers whose log-det is an unbiased estimate, not
    exact: its bits/dim is then an estimate too, and no importance-weighted bound."""
    return [
        layer.path for layer in spec.layers if KINDS[layer.kind].estimates_logdet_for(layer.args)
    ]


def encoder_channels(encoder_ir: Any) -> int:
    """Channels of a condition's encoded features (an IR ``EncoderIR``)."""
    return ENCODERS[encoder_ir.kind].out_channels(encoder_ir.args)


def prior_args(prior_ir: Any) -> dict[str, Any]:
    """Every argument of a spec's prior (its IR keeps ``learned`` and ``on`` apart)."""
    fields = PRIORS[prior_ir.kind].Args.model_fields
    return {k: v for k, v in prior_ir.all_args().items() if k in fields}
