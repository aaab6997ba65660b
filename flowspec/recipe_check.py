"""Checking the `train { }` lines (internal): each line alone, and what it asks of the model.

:func:`validate_settings` checks each line against its rule (:data:`SETTINGS` of
:mod:`flowspec.recipe_schema`): the value, the options, their types and ranges, a
schedule's milestones and the options of a data source. :func:`parse_line` checks a flag's
text as the train block checks the line; :func:`milestones_error` and
:func:`milestone_steps` are the one reading of `schedule step`'s milestones (train block,
flags and runtime); :func:`check_recipe` checks what a line asks of the model (an encoder to
pretrain or freeze). The public names are :mod:`flowspec.recipe`'s.
"""

from __future__ import annotations

import re
from typing import Any

from . import codes
from .datasets import OPTIONS, accepted_options
from .errors import Collector, Span, did_you_mean
from .evaluate import format_value, type_name
from .ir import FlowSpec, Setting
from .kinds import ENCODERS
from .recipe_schema import SCHEDULES, SETTINGS, Above, RecipeSpec, range_error
from .values import parse_override

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
