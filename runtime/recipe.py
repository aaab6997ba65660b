"""The resolved training recipe: the spec's ``train { }`` block, overridden by flags.

A :class:`Recipe` is plain data (JSON-able): it goes into every checkpoint so that
``evaluate`` reproduces a run's validation numbers and ``--resume`` can tell when a flag
changed something that breaks bit-for-bit continuation.
"""

from __future__ import annotations

import os
import shlex
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from flowspec import parse_override
from flowspec.datasets import BUILTIN, PATH_NAMES, option_error
from flowspec.ir import FlowSpec
from flowspec.recipe import (
    REGISTRY_FIELDS,
    SCHEDULES,
    RecipeSpec,
    field_info,
    flag_fields,
    milestones_error,
    parse_line,
    range_error,
    registry_error,
)

from .errors import RunError

#: Default warning threshold on the relative reconstruction error ``max|x - x^| / max|x|``
#: (``--recon-warn``; :mod:`runtime.reconstruction` measures it). float32 rounding alone gives
#: ~1e-7 per layer; a healthy deep flow stays below 1e-5.
RECON_WARN = 1e-3

#: ``data NAME root=PATH`` names that read a local path in a given format.
PATH_FORMATS = PATH_NAMES


class Recipe(RecipeSpec):
    """Everything that decides what a run computes, besides the spec itself: the
    compiler's recipe schema (:class:`flowspec.recipe.RecipeSpec`), set field by field from
    the train block and the flags, then checked by :func:`resolve_recipe`."""

    def to_json(self) -> dict[str, Any]:
        return _plain(self.model_dump())

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Recipe:
        return cls.model_construct(
            **{**cls().model_dump(), **{k: v for k, v in data.items() if k in cls.model_fields}}
        )

    def differences(self, other: Recipe) -> list[str]:
        """Fields that differ and change what training computes (for the resume warning);
        the schedule of steps, validations, samples and checkpoints does not (the number of
        steps does under a learning-rate schedule other than constant)."""
        ignore = (
            "steps",
            "val_every",
            "sample_every",
            "checkpoint_every",
            "val_images",
            "sr_images",
        )
        if self.schedule != "constant" or other.schedule != "constant":
            ignore = ignore[1:]  # the schedule's curve and fractions depend on the steps
        a, b = self.to_json(), other.to_json()
        return [k for k in a if k not in ignore and a[k] != b.get(k)]


def _plain(value: Any) -> Any:
    # flowspec's Word is a str subclass; checkpoints loaded with weights_only want plain types
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return int(value)
    if isinstance(value, float):
        return float(value)
    return str(value)


def parse_data_arg(text: str) -> tuple[str, dict[str, Any]]:
    """``--data "faces resize=true"`` -> ``("faces", {"resize": True})``."""
    parts = shlex.split(text)
    if not parts:
        raise RunError("--data needs a data set name or a path")
    opts: dict[str, Any] = {}
    for part in parts[1:]:
        if "=" not in part:
            raise RunError(f"--data options are key=value, got `{part}` in `{text}`")
        k, v = part.split("=", 1)
        opts[k] = str(parse_override(v)) if k == "root" else _plain(parse_override(v))
    return parts[0], opts


def set_data(r: Recipe, data: str, base: str | os.PathLike | None = None) -> None:
    """Point a recipe at other data (``--data``).

    Another name replaces the whole data line: the spec's options (``pad=2``, ``root=``)
    were written for its own data set, so none of them carries over. The same name keeps
    them and ``data``'s options override them one by one. Relative paths are resolved
    against ``base`` (default: the working folder, as for every path on a command line).
    """
    name, opts = parse_data_arg(data) if "=" in data else (data.strip(), {})
    if not name:
        raise RunError("--data needs a data set name or a path")
    base = Path.cwd() if base is None else Path(base)
    name, opts = _absolute(name, opts, base)
    if name != r.data:
        r.data_options = dict(opts)
    else:
        r.data_options = {**r.data_options, **opts}
    r.data = name


def is_path(name: str) -> bool:
    """Whether a data line's name is a path (not a built-in set nor an on-disk format)."""
    return name not in BUILTIN and name not in PATH_FORMATS


def _absolute(name: str, opts: dict[str, Any], base: Path) -> tuple[str, dict[str, Any]]:
    """``name`` and ``root=`` as absolute paths (relative ones are taken from ``base``)."""
    opts = dict(opts)
    if "root" in opts:
        opts["root"] = str(base / Path(os.path.expanduser(str(opts["root"]))))
    if is_path(name):
        name = str(base / Path(os.path.expanduser(name)))
    return name, opts


def spec_folder(spec: FlowSpec) -> Path:
    """Where relative paths on a spec's data line point from: the folder of the file that
    holds the line (as for imports), or the working folder for a spec from a string."""
    setting = spec.train.get("data")
    file = setting.span.file if setting is not None else spec.file
    folder = Path(file).parent
    return folder.resolve() if Path(file).is_file() else Path.cwd()


def set_schedule(r: Recipe, text: str) -> None:
    """``--schedule "step milestones=[0.5,0.75] gamma=0.5"`` into the recipe's
    ``schedule`` and ``schedule_options``, checked as the train block checks the line."""
    try:
        r.schedule, r.schedule_options = parse_line("schedule", text)
    except ValueError as e:
        raise RunError(f"--schedule: {e}") from None


def resolve_recipe(
    spec: FlowSpec,
    *,
    data: str | None = None,
    data_options: dict[str, Any] | None = None,
    **flags: Any,
) -> Recipe:
    """The spec's train block, with ``flags`` (the keyword names of :class:`Recipe`) on top.

    ``data`` may carry options ("faces resize=true"); another name than the spec's replaces
    the spec's data line with its options (:func:`set_data`). Relative data paths on the
    spec's ``data`` line are relative to the spec file's folder, like imports; those in
    ``data`` to the working folder. Both are stored as absolute paths.
    """
    r = Recipe()
    _read_block(r, spec)
    _read_block_options(r, spec.train)
    _apply_flags(r, data, data_options, flags)
    _validate(r)
    if not r.val_every:
        r.val_every = min(r.steps, 500)
    if not r.sample_every:
        r.sample_every = min(r.steps, 2 * r.val_every)
    if not r.checkpoint_every:
        r.checkpoint_every = r.val_every
    return r


def _read_block(r: Recipe, spec: FlowSpec) -> None:
    """The train block's task, data, counts and optimiser into ``r``."""
    t = spec.train
    if "task" in t:
        r.task = str(t["task"].value)
        r.scale = t["task"].options.get("scale")
    if "data" in t:
        r.data, r.data_options = _absolute(
            str(t["data"].value), _plain(dict(t["data"].options)), spec_folder(spec)
        )
    for name in (
        "bits",
        "batch",
        "steps",
        "val_every",
        "sample_every",
        "checkpoint_every",
        "seed",
    ):
        if name in t and t[name].value is not None:
            setattr(r, name, int(t[name].value))
    if "optimizer" in t:
        o = t["optimizer"]
        r.optimizer = str(o.value)
        for k in ("lr", "warmup", "clip", "weight_decay"):
            if k in o.options:
                setattr(r, k, o.options[k])


def _read_block_options(r: Recipe, t: Any) -> None:
    """The train block's dequantiser, pretraining, freezing, determinism, average, schedule
    and augmentation into ``r``."""
    if "dequantize" in t:
        r.dequantize = str(t["dequantize"].value)
        r.dequantize_options = _plain(dict(t["dequantize"].options))
    if "pretrain" in t:
        o = t["pretrain"].options
        r.pretrain_steps = int(o.get("steps", 0))
        r.pretrain_lr = float(o.get("lr", r.pretrain_lr))
    if "freeze" in t:
        r.freeze_fraction = float(t["freeze"].options.get("fraction", 0.0))
    if "deterministic" in t:
        r.deterministic = t["deterministic"].value in (True, "true")
    if "ema" in t:
        r.ema = float(t["ema"].value)
    if "schedule" in t:
        r.schedule = str(t["schedule"].value)
        r.schedule_options = _plain(dict(t["schedule"].options))
    if "augment" in t:
        r.augment = str(t["augment"].value)


def _apply_flags(
    r: Recipe, data: str | None, data_options: dict[str, Any] | None, flags: dict[str, Any]
) -> None:
    """``--data`` (with its options) and the other flags on top of the train block."""
    if data is not None:
        set_data(r, data)
    if data_options:
        r.data_options = {**r.data_options, **_plain(data_options)}
    known = set(Recipe.model_fields)
    for k, v in flags.items():
        if k not in known:
            raise RunError(f"unknown recipe setting `{k}`; settings: {', '.join(sorted(known))}")
        if k == "schedule" and isinstance(v, str):
            set_schedule(r, v)  # "step milestones=[0.5,0.75] gamma=0.5": name and options
        elif v is not None:
            setattr(r, k, v)


def _validate(r: Recipe) -> None:
    """The recipe schema's names and ranges (one message per problem, as the flags and the
    train block word them), then its types."""
    for name in REGISTRY_FIELDS:
        problem = registry_error(name, getattr(r, name))
        if problem:
            raise RunError(problem)
    if r.data is None:
        raise RunError(
            "no data: the spec's train block has no `data` line; pass "
            f"--data NAME|PATH (built-ins: {', '.join(BUILTIN)})"
        )
    for name in Recipe.model_fields:
        problem = range_error(name, getattr(r, name))
        if problem:
            raise RunError(f"{field_info(name)['label'] or name} {problem}")
    if r.schedule in SCHEDULES:  # its options as the train block checks them
        try:
            parse_line("schedule", schedule_text(r.schedule, r.schedule_options))
        except ValueError as e:
            raise RunError(f"schedule: {e}") from None
        problem = milestones_error(list(r.schedule_options.get("milestones") or []), r.steps)
        if problem:
            raise RunError(f"schedule: {problem}")
    if r.dequantize == "uniform" and r.dequantize_options:
        raise RunError(
            "`dequantize uniform` takes no options (steps= and hidden= are "
            "those of `dequantize variational`)"
        )
    try:
        RecipeSpec.model_validate(r.model_dump())
    except ValidationError as e:
        first = e.errors()[0]
        raise RunError(
            f"recipe setting `{'.'.join(map(str, first['loc']))}`: {first['msg']}"
        ) from None


def resume_command(
    spec: FlowSpec,
    r: Recipe,
    source: dict[str, Any],
    out: str | os.PathLike,
    flags: list[str] | None = None,
) -> str:
    """The ``flowspec train ... --resume`` line that continues this run bit for bit: the
    spec, flow and ``--set`` it was started with, a flag for every recipe field that
    differs from the spec's own ``train`` block, and ``flags`` (:func:`run_flags`)."""
    words = ["flowspec", "train", str(source.get("spec_file") or "SPEC.flow"), "--flow", spec.name]
    for k, v in (source.get("overrides") or {}).items():
        words += ["--set", f"{k}={_word(v)}"]
    try:  # the spec's recipe at this run's length, so that derived defaults agree
        base: Recipe | None = resolve_recipe(spec, steps=r.steps)
        spec_steps = resolve_recipe(spec).steps
    except RunError:  # no data line: --data is part of the command
        base, spec_steps = None, None
    if base is None or (base.data, base.data_options) != (r.data, r.data_options):
        words += [
            "--data",
            " ".join([str(r.data)] + [f"{k}={_word(v)}" for k, v in r.data_options.items()]),
        ]
    for field_name in flag_fields():
        if field_name == "deterministic":
            continue  # a switch: below
        flag, value = "--" + field_name.replace("_", "-"), getattr(r, field_name)
        differs = (
            spec_steps != value
            if field_name == "steps"
            else (base is None or getattr(base, field_name) != value)
        )
        if field_name == "schedule":  # a name with options: the whole line
            differs = base is None or (base.schedule, base.schedule_options) != (
                r.schedule,
                r.schedule_options,
            )
            value = schedule_text(r.schedule, r.schedule_options)
        if differs and value is not None:
            words += [flag, _word(value)]
    if r.deterministic and (base is None or not base.deterministic):
        words.append("--deterministic")
    words += list(flags or []) + ["--out", str(out), "--resume"]
    return shlex.join(words)


def run_flags(
    *,
    device: str,
    threads: int | None,
    plugins: list[dict[str, Any]],
    build_options: dict[str, Any],
    tensorboard: bool,
    recon_warn: float | None,
    strict: bool,
    progress: bool,
    verified: bool,
) -> list[str]:
    """The flags of ``flowspec train`` that are not recipe fields, as a run was given them
    (defaults left out), for its resume command."""
    words: list[str] = []
    for p in plugins:
        words += ["--plugin", str(p["plugin"])]
    if device != "auto":
        words += ["--device", device]
    if threads is not None:
        words += ["--threads", str(threads)]
    if build_options.get("channels_last"):
        words.append("--channels-last")
    compiled = build_options.get("compile")
    if compiled:
        words += ["--compile"] + ([] if compiled is True else [str(compiled)])
    if build_options.get("checkpoint"):
        words.append("--grad-checkpoint")
    amp = build_options.get("autocast")
    if amp:
        words += [
            "--autocast",
            "fp16" if "float16" in str(amp) and "bfloat" not in str(amp) else "bf16",
        ]
    if tensorboard:
        words.append("--tensorboard")
    if recon_warn != RECON_WARN:
        words += ["--recon-warn", _word(float(recon_warn or 0))]
    if not strict:
        words += ["--strict", "false"]
    if not progress:
        words.append("--no-progress")
    if not verified and plugins:
        words.append("--no-verify")
    return words


def schedule_text(name: str, options: dict[str, Any]) -> str:
    """``--schedule``'s text for a schedule and its options: ``step milestones=[0.5,0.75]
    gamma=0.5``."""
    words = [name]
    for k, v in options.items():
        words.append(
            f"{k}=[{','.join(_word(x) for x in v)}]" if isinstance(v, list) else f"{k}={_word(v)}"
        )
    return " ".join(words)


def _word(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (list, tuple)):
        return ",".join(map(str, value))
    return f"{value:g}" if isinstance(value, float) else str(value)


def check_data(name: str, options: dict[str, Any]) -> None:
    """Refuse data options that ``name`` does not take or values out of their range (with a
    did-you-mean and the accepted list, :func:`flowspec.datasets.option_error`) and a data
    path that does not exist (saying where it was looked for)."""
    from .data.builtin import _NEEDS_PATH

    problem = option_error(name, options)
    if problem is not None:
        raise RunError(problem)
    where = options.get("root") if name in PATH_FORMATS else (None if name in BUILTIN else name)
    if where is not None and not Path(str(where)).exists():
        hint = _NEEDS_PATH.get(Path(str(where)).name.lower())
        raise RunError(
            f"{where} is neither a built-in data set nor an existing path (a relative data "
            "path is taken from the spec file's folder when written on its `data` line, and "
            f"from the working folder when given with --data){'; ' + hint if hint else ''}"
            + ("" if name in PATH_FORMATS else f"; built-in sets: {', '.join(BUILTIN)}")
        )
