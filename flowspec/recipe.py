"""The `train { }` recipe: which settings exist and what values they take (public API).

Each line is ``NAME [VALUE] [key=value ...]``. The recipe is the default for
``flowspec train``; command-line flags override it. One schema says it all:
:class:`RecipeSpec` (every setting of a run, its type, default and range, the train-block
line or option and the flag that set it), and the registries of the names a setting takes
(:data:`TASKS`, :data:`OPTIMIZERS`, :data:`SCHEDULES`, :data:`AUGMENTATIONS`,
:data:`DEQUANTIZERS`; data sets in
:mod:`flowspec.datasets`). :func:`validate_settings` checks each line alone and
:func:`check_recipe` what a line asks of the model (an encoder to pretrain or freeze); the
runtime validates a run's recipe and generates its flags from the same schema
(:func:`range_error`, :func:`flag_fields`), and supplies the implementations.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from . import codes
from .datasets import BUILTIN, OPTIONS, PATH_NAMES, accepted_options
from .errors import Collector, Span, did_you_mean
from .evaluate import format_value, type_name
from .ir import FlowSpec, Setting
from .kinds import ENCODERS
from .values import parse_override


@dataclass(frozen=True)
class Above:
    """An option's exclusive lower bound (a plain number is an inclusive one)."""

    bound: float


@dataclass(frozen=True)
class Rule:
    value: tuple | type | None  # allowed words, a type, or None for no value
    #: option -> (type, minimum) or (type, minimum, maximum); a bound of None: unbounded, a
    #: minimum of Above(b): greater than b
    options: dict[str, tuple] = field(default_factory=dict)
    doc: str = ""
    required: tuple[str, ...] = ()  # options the line must give


@dataclass(frozen=True)
class Choice:
    """An entry of a recipe registry: a name a setting takes, what it means and, where the
    implementation is a library's, its ``module:Name`` (the runtime supplies the others,
    keyed by the name)."""

    name: str
    doc: str
    implementation: str = ""
    #: the options this entry takes: option -> (type, minimum[, maximum]), as :class:`Rule`
    options: dict[str, tuple] = field(default_factory=dict)


def _registry(*entries: Choice) -> dict[str, Choice]:
    return {c.name: c for c in entries}


TASKS = _registry(
    Choice("generation", "model the images alone; sample from the prior"),
    Choice("super_resolution", "model the image given its downscaled copy (`scale`)"),
    Choice("translation", "model the image given a label map"),
)
OPTIMIZERS = _registry(
    Choice("adamax", "Adamax (Glow's optimiser)", "torch.optim:Adamax"),
    Choice("adam", "Adam", "torch.optim:Adam"),
    Choice("adamw", "Adam with decoupled weight decay", "torch.optim:AdamW"),
)
SCHEDULES = _registry(
    Choice("constant", "`lr` from the end of the warm-up to the last step"),
    Choice(
        "cosine", "half a cosine from `lr` at the end of the warm-up down to 0 after the last step"
    ),
    Choice(
        "linear",
        "a straight line from `lr` at the end of the warm-up down to 0 after the last step",
    ),
    Choice(
        "step",
        "`lr` times `gamma` (default 0.5) at each of the `milestones`: a number in "
        "(0, 1) is that fraction of the run's steps (rounded down, as SRFlow's "
        "`lr_steps_rel`), a whole number that many steps; the rate changes after the "
        "milestone's step",
        options={"milestones": (list, None), "gamma": (float, Above(0), 1.0)},
    ),
)
AUGMENTATIONS = _registry(
    Choice("none", "the training batches as they are (the default)"),
    Choice(
        "hflip",
        "mirror each training image left-right with probability 1/2 (with its "
        "condition: the label map of translation, the low-resolution input of super-"
        "resolution); the flips are a function of the seed and the step",
    ),
)
DEQUANTIZERS = _registry(
    Choice("uniform", "uniform noise in each bin"),
    Choice("variational", "a learned conditional flow q(u|x) (Flow++)"),
)


def _field(
    default: Any,
    doc: str,
    *,
    line: str | None = None,
    option: str | None = None,
    flag: bool = False,
    label: str | None = None,
    **bounds: Any,
) -> Any:
    """A recipe field: ``line`` (and ``option``) where the train block sets it, ``flag``
    whether ``flowspec train`` has ``--NAME`` for it, ``label`` how messages name it."""
    return Field(
        default,
        description=doc,
        **bounds,
        json_schema_extra={"line": line, "option": option, "flag": flag, "label": label},
    )


class RecipeSpec(BaseModel):
    """Every setting of a run besides the spec itself: its type, default, range, where the
    train block sets it and whether a flag does. Plain data (JSON-able)."""

    model_config = ConfigDict(extra="forbid", defer_build=True)

    task: str = _field("generation", "what the model is trained for", line="task")
    scale: int | None = _field(
        None,
        "super-resolution scale",
        line="task",
        option="scale",
        label="super-resolution scale",
        ge=2,
    )
    data: str | None = _field(None, "data set name or path", line="data")
    data_options: dict[str, Any] = _field({}, "options of the data line", line="data")
    bits: int = _field(8, "bits per colour channel kept", line="bits", flag=True, ge=1, le=8)
    batch: int = _field(
        32, "global batch (split over DDP processes)", line="batch", flag=True, ge=1
    )
    optimizer: str = _field("adamax", "optimiser", line="optimizer", flag=True)
    lr: float = _field(
        1e-3,
        "learning rate",
        line="optimizer",
        option="lr",
        flag=True,
        label="the learning rate",
        gt=0,
    )
    warmup: int = _field(
        0, "linear warm-up steps", line="optimizer", option="warmup", flag=True, ge=0
    )
    clip: float | None = _field(
        None,
        "gradient-norm bound",
        line="optimizer",
        option="clip",
        flag=True,
        label="clip (the gradient-norm bound)",
        gt=0,
    )
    weight_decay: float = _field(
        0.0, "weight decay", line="optimizer", option="weight_decay", ge=0
    )
    steps: int = _field(1000, "optimisation steps", line="steps", flag=True, ge=1)
    val_every: int = _field(
        0,
        "steps between validations (0: the default, min(steps, 500))",
        line="val_every",
        flag=True,
        ge=0,
    )
    sample_every: int = _field(
        0,
        "steps between sample grids (0: the default, twice --val-every)",
        line="sample_every",
        flag=True,
        ge=0,
    )
    checkpoint_every: int = _field(
        0,
        "steps between checkpoints (0: the default, --val-every)",
        line="checkpoint_every",
        flag=True,
        ge=0,
    )
    seed: int = _field(0, "random seed of the run", line="seed", flag=True, ge=0)
    val_images: int = _field(
        512, "size of the fixed validation subset (default 512)", flag=True, ge=1
    )
    sr_images: int = _field(
        16, "val images whose samples are scored (PSNR/SSIM) during training", ge=1
    )
    dequantize: str = _field("uniform", "dequantisation", line="dequantize")
    dequantize_options: dict[str, Any] = _field({}, "its options", line="dequantize")
    pretrain_steps: int = _field(
        0,
        "steps of `pretrain encoder` (the encoder's SR pretraining; 0: none)",
        line="pretrain",
        option="steps",
        flag=True,
        ge=0,
    )
    pretrain_lr: float = _field(
        2e-4,
        "its Adam learning rate",
        line="pretrain",
        option="lr",
        label="the pretraining learning rate",
        gt=0,
    )
    freeze_fraction: float = _field(
        0.0,
        "encoders fixed for that fraction of the steps",
        line="freeze",
        option="fraction",
        ge=0,
        le=1,
    )
    ema: float | None = _field(
        None,
        "decay of an exponential moving average of the "
        "parameters (bias-corrected, from the first step on), which "
        "validation, best.pt, eval and sample use (default: none)",
        line="ema",
        flag=True,
        label="the EMA decay",
        gt=0,
        lt=1,
    )
    schedule: str = _field(
        "constant",
        "learning-rate schedule after the warm-up: "
        'constant, cosine, linear, or "step milestones=[0.5,0.75] '
        'gamma=0.5"',
        line="schedule",
        flag=True,
    )
    schedule_options: dict[str, Any] = _field({}, "its options", line="schedule")
    augment: str = _field(
        "none", "augmentation of the training batches: none or hflip", line="augment", flag=True
    )
    deterministic: bool = _field(
        False,
        "deterministic algorithms only (cuDNN and cuBLAS "
        "included), so that a CUDA run resumes bit for bit, at some "
        "cost in speed (a CPU run does either way)",
        line="deterministic",
        flag=True,
    )


#: the registry of each setting that names an entry of one
REGISTRY_FIELDS: dict[str, dict[str, Choice]] = {
    "task": TASKS,
    "optimizer": OPTIMIZERS,
    "dequantize": DEQUANTIZERS,
    "schedule": SCHEDULES,
    "augment": AUGMENTATIONS,
}


def field_info(name: str) -> dict[str, Any]:
    """A field's schema facts: ``line``, ``option``, ``flag``, ``label``, ``doc`` and its
    bounds ``ge``, ``gt``, ``le``, ``lt`` (absent: unbounded)."""
    f = RecipeSpec.model_fields[name]
    out = {**(f.json_schema_extra or {}), "doc": f.description or ""}  # type: ignore[dict-item]
    for m in f.metadata:
        for bound in ("ge", "gt", "le", "lt"):
            if getattr(m, bound, None) is not None:
                out[bound] = getattr(m, bound)
    return out


def flag_fields() -> list[str]:
    """The fields ``flowspec train`` sets with ``--NAME`` (``_`` written ``-``)."""
    return [n for n in RecipeSpec.model_fields if field_info(n)["flag"]]


def bound_phrase(name: str) -> str:
    """What a field's range asks: ``at least 1``, ``between 1 and 8``, ``positive``, ..."""
    info = field_info(name)
    lo, hi = info.get("ge"), info.get("le")
    if "gt" in info and "lt" in info:
        return f"between {info['gt']:g} and {info['lt']:g}, exclusive"
    if "gt" in info:
        return "positive" if info["gt"] == 0 else f"greater than {info['gt']:g}"
    if hi is not None:
        return f"between {lo:g} and {hi:g}"
    return "not negative" if lo == 0 else f"at least {lo:g}"


def range_error(name: str, value: Any) -> str | None:
    """``must be at least 1, got 0`` when ``value`` is outside field ``name``'s range (or not
    a finite number); None when it is inside. The one range check of flags, runs and the
    train block."""
    info = field_info(name)
    if value is None or isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    ok = math.isfinite(value) and not (
        ("ge" in info and value < info["ge"])
        or ("gt" in info and value <= info["gt"])
        or ("le" in info and value > info["le"])
        or ("lt" in info and value >= info["lt"])
    )
    if ok:
        return None
    phrase = bound_phrase(name)
    verb = "must not be negative" if phrase == "not negative" else f"must be {phrase}"
    return f"{verb}, got {format_value(value)}"


def registry_error(name: str, value: Any) -> str | None:
    """``unknown optimizer `sgd`; optimizers: adamax, adam, adamw`` for a name that is not
    in the setting's registry; None when it is."""
    table = REGISTRY_FIELDS.get(name)
    if table is None or value in table:
        return None
    what = {
        "task": ("task", "tasks"),
        "optimizer": ("optimizer", "optimizers"),
        "dequantize": ("dequantisation", "choices"),
        "schedule": ("schedule", "schedules"),
        "augment": ("augmentation", "augmentations"),
    }[name]
    return f"unknown {what[0]} `{value}`; {what[1]}: {', '.join(table)}"


def _option_rule(name: str, t: type) -> tuple:
    """A train-block option's ``(type, minimum, maximum)`` from the field it sets."""
    info = field_info(name)
    lo = Above(float(info["gt"])) if "gt" in info else info.get("ge")
    hi = info.get("le")
    return (
        t,
        t(lo) if lo is not None and not isinstance(lo, Above) else lo,
        None if hi is None else t(hi),
    )


SETTINGS: dict[str, Rule] = {
    "task": Rule(
        tuple(TASKS), {"scale": _option_rule("scale", int)}, "what the model is trained for"
    ),
    "data": Rule(
        str,
        {o.name: (o.type, o.minimum, o.maximum) for o in OPTIONS.values()},
        f"a built-in set ({', '.join(BUILTIN)}), "
        f"{' / '.join(f'`{n}`' for n in PATH_NAMES)} with root=PATH, or a path; "
        "options and folder rules: see Data below",
    ),
    "bits": Rule(int, {}, "bits per colour channel kept (dequantisation bins = 2**bits)"),
    "batch": Rule(int, {}, "images per optimisation step"),
    "optimizer": Rule(
        tuple(OPTIMIZERS),
        {
            "lr": _option_rule("lr", float),
            "warmup": _option_rule("warmup", int),
            "clip": _option_rule("clip", float),
            "weight_decay": _option_rule("weight_decay", float),
        },
        "optimiser and its options",
    ),
    "steps": Rule(int, {}, "optimisation steps"),
    "val_every": Rule(int, {}, "steps between validations"),
    "sample_every": Rule(int, {}, "steps between sample grids"),
    "checkpoint_every": Rule(int, {}, "steps between checkpoints"),
    "seed": Rule(int, {}, "random seed of the run"),
    "ema": Rule(
        float,
        {},
        "keep an exponential moving average of the parameters with this "
        "decay, in (0, 1) (`--ema`; 0.999 in Glow's and Flow++'s code), bias-corrected "
        "so that it holds no weight on the parameters before the first step; "
        "validation, `best_val_bpd`, `eval`, `sample` and `load_checkpoint` use it "
        "(`--no-ema`: the raw weights); the checkpoint keeps it under `ema`",
    ),
    "schedule": Rule(
        tuple(SCHEDULES),
        {k: v for c in SCHEDULES.values() for k, v in c.options.items()},
        "the learning rate after the warm-up (`--schedule`): "
        + "; ".join(f"`{c.name}`: {c.doc}" for c in SCHEDULES.values()),
    ),
    "augment": Rule(
        tuple(AUGMENTATIONS),
        {},
        "augment the training batches (`--augment`): "
        + "; ".join(f"`{c.name}`: {c.doc}" for c in AUGMENTATIONS.values()),
    ),
    "deterministic": Rule(
        bool,
        {},
        "`true`: deterministic algorithms only (cuDNN and cuBLAS "
        "included), so that a CUDA run resumes bit for bit, at some cost "
        "in speed (`--deterministic`; a CPU run is deterministic either "
        "way)",
    ),
    "dequantize": Rule(
        tuple(DEQUANTIZERS),
        {"steps": (int, 1), "hidden": (int, 1)},
        "`uniform` noise (default), or `variational` (Flow++): a conditional "
        "flow q(u|x) of `steps` couplings with `hidden` channels, trained "
        "jointly; bits/dim is then the variational bound",
    ),
    "pretrain": Rule(
        ("encoder",),
        {"steps": (int, 1), "lr": _option_rule("pretrain_lr", float)},
        "before the flow, train the condition encoder's super-resolution head "
        "(e.g. `srflow(head=true, scale=S)`) and the encoder as an SR network: "
        "`steps` Adam steps (`lr`, default 2e-4) on the L1 distance to the "
        "high-resolution image (SRFlow's RRDB pretraining; task "
        "super_resolution)",
        required=("steps",),
    ),
    "freeze": Rule(
        ("encoder",),
        {"fraction": _option_rule("freeze_fraction", float)},
        "the condition encoders get no updates during the first `fraction` of the "
        "flow's steps (SRFlow's train_RRDB_delay: 0.5); a resumed run keeps the "
        "first run's count",
        required=("fraction",),
    ),
}


_KIND = {
    int: "an integer",
    float: "a number",
    bool: "true or false",
    str: "a name or string",
    list: "a list of numbers, e.g. [0.5, 0.75]",
}


def _type_ok(value: Any, t: type) -> bool:
    if t is bool:  # a setting's value is a word: `deterministic true`
        return isinstance(value, bool) or value in ("true", "false")
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    if t is list:
        return isinstance(value, list) and bool(value) and all(_type_ok(v, float) for v in value)
    return isinstance(value, t)


def validate_settings(settings: dict[str, Setting], diags: Collector) -> None:
    for name, s in settings.items():
        rule = SETTINGS.get(name)
        if rule is None:
            diags.error(
                codes.E_UNKNOWN_SETTING,
                f"unknown train setting `{name}`",
                s.span,
                help=did_you_mean(name, SETTINGS) or "settings: " + ", ".join(SETTINGS),
            )
            continue
        if isinstance(rule.value, tuple):
            if s.value not in rule.value:
                diags.error(
                    codes.E_VALUE,
                    f"invalid value {format_value(s.value)} for `{name}`",
                    s.span,
                    help=did_you_mean(str(s.value), rule.value)
                    or "expected one of: " + ", ".join(rule.value),
                )
        elif isinstance(rule.value, type) and not _type_ok(s.value, rule.value):
            diags.error(
                codes.E_TYPE,
                f"`{name}` needs {_KIND[rule.value]}, got {type_name(s.value)}",
                s.span,
            )
        elif (
            rule.value in (int, float)
            and name in RecipeSpec.model_fields
            and (problem := range_error(name, s.value))
        ):
            diags.error(codes.E_VALUE, f"`{name}` {problem}", s.span)
        for key, val in s.options.items():
            if key not in rule.options:
                diags.error(
                    codes.E_UNKNOWN_SETTING,
                    f"unknown option `{key}` for `{name}`",
                    s.span,
                    help=did_you_mean(key, rule.options)
                    or (
                        "options: " + ", ".join(rule.options)
                        if rule.options
                        else f"`{name}` takes no options"
                    ),
                )
                continue
            t, lo, hi = (*rule.options[key], None)[:3]
            if not _type_ok(val, t):
                diags.error(
                    codes.E_TYPE,
                    f"option `{key}` of `{name}` needs {_KIND[t]}, got {type_name(val)}",
                    s.span,
                )
            elif isinstance(lo, Above) and val <= lo.bound:
                bound = "positive" if lo.bound == 0 else f"greater than {lo.bound}"
                diags.error(
                    codes.E_VALUE,
                    f"option `{key}` of `{name}` must be {bound}, got {format_value(val)}",
                    s.span,
                )
            elif (lo is not None and not isinstance(lo, Above) and val < lo) or (
                hi is not None and val > hi
            ):
                low = f"{lo.bound:g} (exclusive)" if isinstance(lo, Above) else lo
                bound = f"between {low} and {hi}" if hi is not None else f"at least {lo}"
                diags.error(
                    codes.E_VALUE,
                    f"option `{key}` of `{name}` must be {bound}, got {format_value(val)}",
                    s.span,
                )
        if name == "data" and isinstance(s.value, str):
            _check_data_line(s, diags)
        if name == "schedule" and s.value in SCHEDULES:
            _check_schedule_line(s, diags)
        missing = [key for key in rule.required if key not in s.options]
        if missing:
            diags.error(
                codes.E_MISSING_VALUE,
                f"`{name}` needs option `{missing[0]}`",
                s.span,
                help="write it as `"
                + " ".join(
                    [
                        name,
                        *([str(s.value)] if s.value is not None else []),
                        *(f"{k}=..." for k in rule.required),
                    ]
                )
                + "`",
            )


def parse_line(name: str, text: str) -> tuple[Any, dict[str, Any]]:
    """A train-block line written as a flag's text, checked as the train block checks it:
    ``parse_line("schedule", "step milestones=[0.5,0.75] gamma=0.5")`` is ``("step",
    {"milestones": [0.5, 0.75], "gamma": 0.5})``. A problem raises ValueError with the
    train block's message."""
    words = re.findall(r"[^\s=]+=\[[^\]]*\]?|\S+", text.strip())
    value: Any = None
    options: dict[str, Any] = {}
    for i, word in enumerate(words):
        key, eq, raw = word.partition("=")
        if not eq:
            if i:
                raise ValueError(f"`{word}`: options are written key=value")
            value = str(parse_override(word))
        elif raw.startswith("["):
            if not raw.endswith("]"):
                raise ValueError(f"`{word}`: a list is written [a, b, ...]")
            options[key] = [
                _plain_value(parse_override(v)) for v in raw[1:-1].split(",") if v.strip()
            ]
        else:
            options[key] = _plain_value(parse_override(raw))
    diags = Collector()
    validate_settings(
        {
            name: Setting(
                value=value,
                options=options,
                span=Span(file=f"--{name}", line=1, column=1, end_line=1, end_column=1),
            )
        },
        diags,
    )
    errors = [d for d in diags.items if d.severity == "error"]
    if errors:
        raise ValueError(errors[0].message + (f" ({errors[0].help})" if errors[0].help else ""))
    return value, options


def _plain_value(v: Any) -> Any:
    return str(v) if isinstance(v, str) else v


def _check_schedule_line(s: Setting, diags: Collector) -> None:
    """Options of another schedule (`gamma` is `step`'s), `step` without milestones, and
    milestones that are neither fractions nor steps or out of order (E315)."""
    choice = SCHEDULES[str(s.value)]
    for key in s.options:
        if key in SETTINGS["schedule"].options and key not in choice.options:
            diags.error(
                codes.E_UNKNOWN_SETTING,
                f"option `{key}` does not apply to schedule `{s.value}`",
                s.span,
                help=f"it is an option of `schedule step`; `{s.value}` takes none",
            )
    if s.value == "step" and "milestones" not in s.options:
        diags.error(
            codes.E_MISSING_VALUE,
            "`schedule step` needs option `milestones`",
            s.span,
            help="write it as `schedule step milestones=[0.5, 0.75] gamma=0.5`",
        )
    milestones = s.options.get("milestones")
    if _type_ok(milestones, list):
        problem = milestones_error(milestones, None)
        if problem:
            diags.error(codes.E_SCHEDULE_MILESTONES, problem, s.span)


def milestones_error(milestones: list[float], steps: int | None) -> str | None:
    """What is wrong with `schedule step`'s milestones (None: nothing): each a fraction in
    (0, 1) or a whole number of steps, increasing, and (``steps`` known) each before the last
    step. The one check of the train block, the flags and the runtime."""
    for m in milestones:
        if not ((isinstance(m, int) and m >= 1) or (isinstance(m, float) and 0 < m < 1)):
            return (
                f"milestone {format_value(m)} is neither a fraction of the run in (0, 1) "
                "nor a whole number of steps"
            )
    # milestones of one kind must increase; as steps, they may meet (fractions of a short
    # run: the rate then changes by gamma once for each, as MultiStepLR does)
    at: list[float] | None = list(milestones) if len({type(m) for m in milestones}) == 1 else None
    if steps is not None:
        for m, step in zip(milestones, milestone_steps(milestones, steps)):
            if step >= steps:
                return (
                    f"milestone {format_value(m)} is past the last step (steps {steps}): "
                    "its rate would never be used"
                )
        if at is None:
            at = [
                step + 0.5 * isinstance(m, int)  # a fraction then a step on it: in order
                for m, step in zip(milestones, milestone_steps(milestones, steps))
            ]
    if at is not None:
        for i in range(1, len(at)):
            if at[i] <= at[i - 1]:
                return (
                    f"milestones must increase: {format_value(milestones[i])} comes after "
                    f"{format_value(milestones[i - 1])}"
                )
    return None


def milestone_steps(milestones: list[float], steps: int) -> list[int]:
    """Milestones as step counts: a fraction ``f`` is ``floor(f * steps)`` (SRFlow's
    ``lr_steps_rel``), a whole number itself."""
    return [int(m * steps) if isinstance(m, float) else int(m) for m in milestones]


def _check_data_line(s: Setting, diags: Collector) -> None:
    """Options that exist but not for this source (`threshold` is fashion-seg's), and a
    `format=` that is not a format."""
    accepted = accepted_options(str(s.value), dict(s.options))
    for key, val in s.options.items():
        if key in OPTIONS and key not in accepted:
            diags.error(
                codes.E_UNKNOWN_SETTING,
                f"option `{key}` does not apply to data `{s.value}`",
                s.span,
                help="its options: " + ", ".join(accepted),
            )
        elif OPTIONS.get(key) and OPTIONS[key].choices and val not in OPTIONS[key].choices:
            words = [str(c) for c in OPTIONS[key].choices]
            diags.error(
                codes.E_VALUE,
                f"invalid value {format_value(val)} for option `{key}` of `data`",
                s.span,
                help=did_you_mean(str(val), words) or "expected one of: " + ", ".join(words),
            )


def check_recipe(spec: FlowSpec, diags: Collector) -> None:
    """What the train block asks of the model: ``pretrain encoder`` needs a condition
    encoder with a super-resolution head (E313) and the super-resolution task; ``freeze
    encoder`` a condition encoder (E314); ``schedule step`` milestones before the last of
    ``steps`` (E315). A head that no pretraining trains is W005."""
    t = spec.train
    encoded = [c for c in spec.conditions if c.flow is None]
    heads = [c for c in encoded if ENCODERS[c.encoder.kind].has_head(c.encoder.args)]
    if "pretrain" in t:
        s = t["pretrain"]
        task = t.get("task")
        if not heads:
            with_head = [k for k, e in ENCODERS.items() if e.head_arg]
            example = next((f"`{k}(..., {ENCODERS[k].head_arg}=true)`" for k in with_head), None)
            diags.error(
                codes.E_PRETRAIN_ENCODER,
                f"`pretrain encoder` trains a condition encoder's "
                f"super-resolution head, but no condition of flow `{spec.name}` has "
                "one",
                s.span,
                help=(
                    f"give the encoder its head (and whatever it needs to know of the "
                    f"SR scale), e.g. {example}"
                    if example
                    else "no registered encoder has a super-resolution head"
                )
                + "; or remove the line",
            )
        elif task is not None and task.value != "super_resolution":
            diags.error(
                codes.E_PRETRAIN_ENCODER,
                f"`pretrain encoder` learns to super-resolve the condition "
                f"into the input, which needs task super_resolution, not "
                f"`{task.value}`",
                s.span,
                help="write `task super_resolution`, or remove the pretrain line",
            )
    else:
        for c in heads:
            kind = ENCODERS[c.encoder.kind]
            diags.warning(
                codes.W_UNTRAINED_HEAD,
                f"the super-resolution head of condition `{c.name}`'s "
                f"encoder ({kind.key} {kind.head_arg}=true) is never trained: the "
                "flow does not read it and train { } has no `pretrain encoder`",
                c.span,
                help="add `pretrain encoder steps=N` to train { }, or drop "
                f"{kind.head_arg}=true (its parameters are dead weight)",
            )
    s = t.get("schedule")
    steps = t.get("steps")
    if (
        s is not None
        and _type_ok(s.options.get("milestones"), list)
        and steps is not None
        and _type_ok(steps.value, int)
        and milestones_error(s.options["milestones"], None) is None
        and (problem := milestones_error(s.options["milestones"], steps.value))
    ):
        diags.error(
            codes.E_SCHEDULE_MILESTONES,
            problem,
            s.span,
            help="a milestone in (0, 1) is a fraction of the run's steps",
        )
    if "freeze" in t and not encoded:
        diags.error(
            codes.E_FREEZE_ENCODER,
            f"`freeze encoder` holds the condition encoders fixed, but flow "
            f"`{spec.name}` has none"
            + (" (a condition modelled by a flow is not an encoder)" if spec.conditions else ""),
            t["freeze"].span,
            help="remove the line, or declare a condition with an encoder",
        )
