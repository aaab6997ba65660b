"""The `train { }` recipe: which settings exist and what values they take.

Each line is ``NAME [VALUE] [key=value ...]``. The recipe is the default for
``flowspec train``; command-line flags override it. :func:`validate_settings` checks each
line alone; :func:`check_recipe` what a line asks of the model (an encoder to pretrain or
freeze).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from . import codes
from .datasets import BUILTIN, OPTIONS, PATH_NAMES, accepted_options
from .errors import Collector, did_you_mean
from .evaluate import format_value, type_name
from .ir import FlowSpec, Setting
from .kinds import ENCODERS


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


TASKS = ("generation", "super_resolution", "translation")
OPTIMIZERS = ("adamax", "adam", "adamw")
DEQUANTIZERS = ("uniform", "variational")

SETTINGS: dict[str, Rule] = {
    "task": Rule(TASKS, {"scale": (int, 2)}, "what the model is trained for"),
    "data": Rule(str, {o.name: (o.type, o.minimum, o.maximum) for o in OPTIONS.values()},
                 f"a built-in set ({', '.join(BUILTIN)}), "
                 f"{' / '.join(f'`{n}`' for n in PATH_NAMES)} with root=PATH, or a path; "
                 "options and folder rules: see Data below"),
    "bits": Rule(int, {}, "bits per colour channel kept (dequantisation bins = 2**bits)"),
    "batch": Rule(int, {}, "images per optimisation step"),
    "optimizer": Rule(OPTIMIZERS, {"lr": (float, 0.0), "warmup": (int, 0), "clip": (float, 0.0),
                                   "weight_decay": (float, 0.0)}, "optimiser and its options"),
    "steps": Rule(int, {}, "optimisation steps"),
    "val_every": Rule(int, {}, "steps between validations"),
    "sample_every": Rule(int, {}, "steps between sample grids"),
    "checkpoint_every": Rule(int, {}, "steps between checkpoints"),
    "seed": Rule(int, {}, "random seed of the run"),
    "deterministic": Rule(bool, {}, "`true`: deterministic algorithms only (cuDNN and cuBLAS "
                          "included), so that a CUDA run resumes bit for bit, at some cost "
                          "in speed (`--deterministic`; a CPU run is deterministic either "
                          "way)"),
    "dequantize": Rule(DEQUANTIZERS, {"steps": (int, 1), "hidden": (int, 1)},
                       "`uniform` noise (default), or `variational` (Flow++): a conditional "
                       "flow q(u|x) of `steps` couplings with `hidden` channels, trained "
                       "jointly; bits/dim is then the variational bound"),
    "pretrain": Rule(("encoder",), {"steps": (int, 1), "lr": (float, Above(0.0))},
                     "before the flow, train the condition encoder's super-resolution head "
                     "(e.g. `srflow(head=true, scale=S)`) and the encoder as an SR network: "
                     "`steps` Adam steps (`lr`, default 2e-4) on the L1 distance to the "
                     "high-resolution image (SRFlow's RRDB pretraining; task "
                     "super_resolution)", required=("steps",)),
    "freeze": Rule(("encoder",), {"fraction": (float, 0.0, 1.0)},
                   "the condition encoders get no updates during the first `fraction` of the "
                   "flow's steps (SRFlow's train_RRDB_delay: 0.5); a resumed run keeps the "
                   "first run's count", required=("fraction",)),
}


_KIND = {int: "an integer", float: "a number", bool: "true or false", str: "a name or string"}


def _type_ok(value: Any, t: type) -> bool:
    if t is bool:  # a setting's value is a word: `deterministic true`
        return isinstance(value, bool) or value in ("true", "false")
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


def validate_settings(settings: dict[str, Setting], diags: Collector) -> None:
    for name, s in settings.items():
        rule = SETTINGS.get(name)
        if rule is None:
            diags.error(codes.E_UNKNOWN_SETTING, f"unknown train setting `{name}`", s.span,
                        help=did_you_mean(name, SETTINGS) or "settings: " + ", ".join(SETTINGS))
            continue
        if isinstance(rule.value, tuple):
            if s.value not in rule.value:
                diags.error(codes.E_VALUE, f"invalid value {format_value(s.value)} for `{name}`",
                            s.span, help=did_you_mean(str(s.value), rule.value) or
                            "expected one of: " + ", ".join(rule.value))
        elif isinstance(rule.value, type) and not _type_ok(s.value, rule.value):
            diags.error(codes.E_TYPE, f"`{name}` needs {_KIND[rule.value]}, got "
                        f"{type_name(s.value)}", s.span)
        elif rule.value is int and s.value is not None and s.value < 1 and name != "seed":
            diags.error(codes.E_VALUE, f"`{name}` must be at least 1, got {s.value}", s.span)
        for key, val in s.options.items():
            if key not in rule.options:
                diags.error(codes.E_UNKNOWN_SETTING,
                            f"unknown option `{key}` for `{name}`", s.span,
                            help=did_you_mean(key, rule.options) or (
                                "options: " + ", ".join(rule.options) if rule.options else
                                f"`{name}` takes no options"))
                continue
            t, lo, hi = (*rule.options[key], None)[:3]
            if not _type_ok(val, t):
                diags.error(codes.E_TYPE, f"option `{key}` of `{name}` needs {_KIND[t]}, got "
                            f"{type_name(val)}", s.span)
            elif isinstance(lo, Above) and val <= lo.bound:
                bound = "positive" if lo.bound == 0 else f"greater than {lo.bound}"
                diags.error(codes.E_VALUE, f"option `{key}` of `{name}` must be {bound}, got "
                            f"{format_value(val)}", s.span)
            elif (lo is not None and not isinstance(lo, Above) and val < lo) or (
                    hi is not None and val > hi):
                bound = f"between {lo} and {hi}" if hi is not None else f"at least {lo}"
                diags.error(codes.E_VALUE, f"option `{key}` of `{name}` must be {bound}, got "
                            f"{format_value(val)}", s.span)
        if name == "data" and isinstance(s.value, str):
            _check_data_line(s, diags)
        missing = [key for key in rule.required if key not in s.options]
        if missing:
            diags.error(codes.E_MISSING_VALUE, f"`{name}` needs option `{missing[0]}`", s.span,
                        help="write it as `" + " ".join(
                            [name, *([str(s.value)] if s.value is not None else []),
                             *(f"{k}=..." for k in rule.required)]) + "`")


def _check_data_line(s: Setting, diags: Collector) -> None:
    """Options that exist but not for this source (`threshold` is fashion-seg's), and a
    `format=` that is not a format."""
    accepted = accepted_options(str(s.value), dict(s.options))
    for key, val in s.options.items():
        if key in OPTIONS and key not in accepted:
            diags.error(codes.E_UNKNOWN_SETTING,
                        f"option `{key}` does not apply to data `{s.value}`", s.span,
                        help="its options: " + ", ".join(accepted))
        elif OPTIONS.get(key) and OPTIONS[key].choices and val not in OPTIONS[key].choices:
            words = [str(c) for c in OPTIONS[key].choices]
            diags.error(codes.E_VALUE, f"invalid value {format_value(val)} for option `{key}` of "
                        "`data`", s.span, help=did_you_mean(str(val), words)
                        or "expected one of: " + ", ".join(words))


def check_recipe(spec: FlowSpec, diags: Collector) -> None:
    """What the train block asks of the model: ``pretrain encoder`` needs a condition
    encoder with a super-resolution head (E313) and the super-resolution task; ``freeze
    encoder`` a condition encoder (E314). A head that no pretraining trains is W005."""
    t = spec.train
    encoded = [c for c in spec.conditions if c.flow is None]
    heads = [c for c in encoded if ENCODERS[c.encoder.kind].has_head(c.encoder.args)]
    if "pretrain" in t:
        s = t["pretrain"]
        task = t.get("task")
        if not heads:
            with_head = [k for k, e in ENCODERS.items() if e.head_arg]
            example = next((f"`{k}(..., {ENCODERS[k].head_arg}=true)`" for k in with_head),
                           None)
            diags.error(codes.E_PRETRAIN_ENCODER,
                        f"`pretrain encoder` trains a condition encoder's "
                        f"super-resolution head, but no condition of flow `{spec.name}` has "
                        "one", s.span,
                        help=(f"give the encoder its head (and whatever it needs to know of the "
                              f"SR scale), e.g. {example}"
                              if example else
                              "no registered encoder has a super-resolution head")
                        + "; or remove the line")
        elif task is not None and task.value != "super_resolution":
            diags.error(codes.E_PRETRAIN_ENCODER,
                        f"`pretrain encoder` learns to super-resolve the condition "
                        f"into the input, which needs task super_resolution, not "
                        f"`{task.value}`", s.span, help="write `task super_resolution`, or "
                        "remove the pretrain line")
    else:
        for c in heads:
            kind = ENCODERS[c.encoder.kind]
            diags.warning(codes.W_UNTRAINED_HEAD,
                          f"the super-resolution head of condition `{c.name}`'s "
                          f"encoder ({kind.key} {kind.head_arg}=true) is never trained: the "
                          "flow does not read it and train { } has no `pretrain encoder`",
                          c.span, help="add `pretrain encoder steps=N` to train { }, or drop "
                          f"{kind.head_arg}=true (its parameters are dead weight)")
    if "freeze" in t and not encoded:
        diags.error(codes.E_FREEZE_ENCODER,
                    f"`freeze encoder` holds the condition encoders fixed, but flow "
                    f"`{spec.name}` has none"
                    + (" (a condition modelled by a flow is not an encoder)"
                       if spec.conditions else ""), t["freeze"].span,
                    help="remove the line, or declare a condition with an encoder")
