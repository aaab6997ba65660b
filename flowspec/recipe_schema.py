"""The `train { }` recipe's schema: its settings and the names they take (internal).

:class:`RecipeSpec` is every setting of a run: its type, default and range, the train-block
line or option and the flag that set it. Beside it, the registries of the names a setting
takes (:data:`TASKS`, :data:`OPTIMIZERS`, :data:`SCHEDULES`, :data:`AUGMENTATIONS`,
:data:`DEQUANTIZERS`; data sets in :mod:`flowspec.datasets`), the facts of a field
(:func:`field_info`, :func:`flag_fields`), the one range and registry check of flags, runs
and the train block (:func:`range_error`, :func:`registry_error`), and the rule of each
train-block line (:data:`SETTINGS`), which :mod:`flowspec.recipe_check` applies. The public
names are :mod:`flowspec.recipe`'s.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from .datasets import BUILTIN, OPTIONS, PATH_NAMES
from .evaluate import format_value


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
