"""The `train { }` recipe: which settings exist and what values they take.

Each line is ``NAME [VALUE] [key=value ...]``. The recipe is the default for
``flowspec train``; command-line flags override it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import Collector, did_you_mean
from .evaluate import format_value, type_name
from .ir import Setting


@dataclass(frozen=True)
class Rule:
    value: tuple | type | None  # allowed words, a type, or None for no value
    options: dict[str, tuple[type, float | None]] = field(default_factory=dict)  # type, min
    doc: str = ""


TASKS = ("generation", "super_resolution", "translation")
OPTIMIZERS = ("adamax", "adam", "adamw")
DEQUANTIZERS = ("uniform", "variational")

SETTINGS: dict[str, Rule] = {
    "task": Rule(TASKS, {"scale": (int, 2)}, "what the model is trained for"),
    "data": Rule(str, {"pad": (int, 0), "root": (str, None), "resize": (bool, None),
                       "channels": (int, 1)},
                 "a built-in set (mnist5k, fashion-mnist, digits, photos, faces, fashion-seg), "
                 "`images` / `idx` / `cifar10` / `cityscapes` with root=PATH, or a path"),
    "bits": Rule(int, {}, "bits per colour channel kept (dequantisation bins = 2**bits)"),
    "batch": Rule(int, {}, "images per optimisation step"),
    "optimizer": Rule(OPTIMIZERS, {"lr": (float, 0.0), "warmup": (int, 0), "clip": (float, 0.0),
                                   "weight_decay": (float, 0.0)}, "optimiser and its options"),
    "steps": Rule(int, {}, "optimisation steps"),
    "val_every": Rule(int, {}, "steps between validations"),
    "sample_every": Rule(int, {}, "steps between sample grids"),
    "checkpoint_every": Rule(int, {}, "steps between checkpoints"),
    "seed": Rule(int, {}, "random seed of the run"),
    "dequantize": Rule(DEQUANTIZERS, {"steps": (int, 1), "hidden": (int, 1)},
                       "`uniform` noise (default), or `variational` (Flow++): a conditional "
                       "flow q(u|x) of `steps` couplings with `hidden` channels, trained "
                       "jointly; bits/dim is then the variational bound"),
}


_KIND = {int: "an integer", float: "a number", bool: "true or false", str: "a name or string"}


def _type_ok(value: Any, t: type) -> bool:
    if t is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if t is int:
        return isinstance(value, int) and not isinstance(value, bool)
    return isinstance(value, t)


def validate_settings(settings: dict[str, Setting], diags: Collector) -> None:
    for name, s in settings.items():
        rule = SETTINGS.get(name)
        if rule is None:
            diags.error("E105", f"unknown train setting `{name}`", s.span,
                        help=did_you_mean(name, SETTINGS) or "settings: " + ", ".join(SETTINGS))
            continue
        if isinstance(rule.value, tuple):
            if s.value not in rule.value:
                diags.error("E122", f"invalid value {format_value(s.value)} for `{name}`",
                            s.span, help=did_you_mean(str(s.value), rule.value) or
                            "expected one of: " + ", ".join(rule.value))
        elif isinstance(rule.value, type) and not _type_ok(s.value, rule.value):
            diags.error("E121", f"`{name}` needs {_KIND[rule.value]}, got "
                        f"{type_name(s.value)}", s.span)
        elif rule.value is int and s.value is not None and s.value < 1 and name != "seed":
            diags.error("E122", f"`{name}` must be at least 1, got {s.value}", s.span)
        for key, val in s.options.items():
            if key not in rule.options:
                diags.error("E105", f"unknown option `{key}` for `{name}`", s.span,
                            help=did_you_mean(key, rule.options) or (
                                "options: " + ", ".join(rule.options) if rule.options else
                                f"`{name}` takes no options"))
                continue
            t, lo = rule.options[key]
            if not _type_ok(val, t):
                diags.error("E121", f"option `{key}` of `{name}` needs {_KIND[t]}, got "
                            f"{type_name(val)}", s.span)
            elif lo is not None and val < lo:
                diags.error("E122", f"option `{key}` of `{name}` must be at least {lo}", s.span)
