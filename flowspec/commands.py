"""How a command joins the `flowspec` CLI, and the arguments commands share (public API).

A command module has ``register(commands)``, which adds ``commands[NAME] = (add_parser,
handler)``: ``add_parser(subparsers)`` defines the command's parser and sets its handler as
``func`` (``handler(namespace) -> exit status``). :mod:`flowspec.cli` calls the compiler's
own modules (:mod:`flowspec.cli_front`, :mod:`flowspec.cli_torch`) and then every
``register`` that an installed distribution declares in the entry-point group
:data:`ENTRY_POINT_GROUP` (``[project.entry-points."flowspec.commands"]``), as plugins declare
theirs in ``flowspec.plugins``. Command modules import from here and :mod:`flowspec.cli`
imports them: one direction (a leaf: this module imports no command).
"""

from __future__ import annotations

import argparse
from typing import Any

from .errors import EXIT_USAGE, FlowError

__all__ = [
    "ENTRY_POINT_GROUP",
    "UsageError",
    "add_build_options",
    "add_recipe_flags",
    "build_options",
    "check_device",
    "overrides",
    "plugin_arg",
    "recipe_flags",
    "spec_args",
]

#: the entry-point group whose entries are ``register(commands)`` functions
ENTRY_POINT_GROUP = "flowspec.commands"


class UsageError(FlowError):
    """A bad command line: printed as ``flowspec: error: ...``, exit status 2."""

    exit_code = EXIT_USAGE


def overrides(pairs: list[str] | None) -> dict[str, Any]:
    """``--set NAME=VALUE`` pairs as a dict of flow-parameter overrides."""
    from .values import parse_override

    out: dict[str, Any] = {}
    for pair in pairs or []:
        if "=" not in pair:
            raise UsageError(f"--set expects NAME=VALUE, got `{pair}`")
        k, v = pair.split("=", 1)
        out[k.strip()] = parse_override(v)
    return out


def spec_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("spec", help="a .flow file")
    p.add_argument("--flow", help="which flow of the file (when it defines several)")
    p.add_argument(
        "--set",
        action="append",
        metavar="NAME=VALUE",
        help="override a flow parameter (repeatable)",
    )


def plugin_arg(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--plugin",
        action="append",
        metavar="MODULE",
        default=None,
        help="import MODULE first: its layer kinds, nets, encoders and priors join "
        "the language (repeatable; also FLOWSPEC_PLUGINS=a,b)",
    )


def check_device(name: str) -> None:
    """A usage error for a device this machine cannot use (before anything is built)."""
    if name in ("auto", "cpu"):
        return
    import torch

    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"unknown device `{name}`: use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(
                f"--device {name}: CUDA is not available on this machine "
                "(use --device cpu, or auto)"
            )
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(
                f"--device {name}: this machine has {torch.cuda.device_count()} CUDA device(s)"
            )
    elif device.type != "cpu":
        raise UsageError(f"--device {name}: flowspec runs on cpu or cuda")


def _recipe_type(name: str, t: type) -> Any:
    """An argparse type for recipe field ``name``: its type, then its range
    (:func:`flowspec.recipe.range_error`, the check runs and the train block use)."""
    from .recipe import range_error

    def parse(text: str) -> Any:
        try:
            value = t(text)
        except ValueError:
            what = "an integer" if t is int else "a number"
            raise argparse.ArgumentTypeError(f"expected {what}, got `{text}`") from None
        problem = range_error(name, value)
        if problem:
            raise argparse.ArgumentTypeError(problem)
        return value

    parse.__name__ = t.__name__  # argparse names the type in its own messages
    return parse


def _line_type(name: str) -> Any:
    """An argparse type for a flag that is a whole train-block line (``--schedule "step
    milestones=[0.5,0.75]"``), checked as the line is (:func:`flowspec.recipe.parse_line`);
    the text itself is the value."""
    from .recipe import parse_line

    def parse(text: str) -> str:
        try:
            parse_line(name, text)
        except ValueError as e:
            raise argparse.ArgumentTypeError(str(e)) from None
        return text

    parse.__name__ = name
    return parse


def add_recipe_flags(p: argparse.ArgumentParser) -> None:
    """``--NAME`` for each recipe field the schema gives a flag
    (:func:`flowspec.recipe.flag_fields`), typed and bounded by it."""
    from .recipe import REGISTRY_FIELDS, RecipeSpec, field_info, flag_fields

    g = p.add_argument_group("recipe overrides (of the spec's train block)")
    for name in flag_fields():
        flag, doc = "--" + name.replace("_", "-"), field_info(name)["doc"]
        annotation = RecipeSpec.model_fields[name].annotation
        if f"{name}_options" in RecipeSpec.model_fields:  # a name with options: one text
            g.add_argument(
                flag, dest=name, type=_line_type(name), metavar='"NAME [K=V ...]"', help=doc
            )
        elif name in REGISTRY_FIELDS:
            g.add_argument(flag, dest=name, choices=tuple(REGISTRY_FIELDS[name]), help=doc)
        elif annotation is bool:
            g.add_argument(flag, dest=name, action="store_true", default=None, help=doc)
        else:
            t = int if annotation in (int, int | None) else float
            g.add_argument(
                flag,
                dest=name,
                type=_recipe_type(name, t),
                metavar="N" if t is int else "X",
                help=doc,
            )


def recipe_flags(a: argparse.Namespace) -> dict[str, Any]:
    """The recipe fields the flags of :func:`add_recipe_flags` set (None: not given)."""
    from .recipe import flag_fields

    return {name: getattr(a, name) for name in flag_fields()}


def add_build_options(p: argparse.ArgumentParser) -> None:
    """The speed / memory options of ``flowspec.compile`` as flags (shared with the runtime)."""
    g = p.add_argument_group("build options (same function, different speed and memory)")
    g.add_argument(
        "--channels-last",
        action="store_true",
        dest="channels_last",
        help="channels-last memory format for parameters and activations",
    )
    g.add_argument(
        "--compile",
        nargs="?",
        const=True,
        default=False,
        metavar="BACKEND",
        help="torch.compile the forward and inverse (default backend inductor)",
    )
    # not --checkpoint: eval and sample take --checkpoint FILE
    g.add_argument(
        "--grad-checkpoint",
        action="store_true",
        dest="checkpoint",
        help="recompute coupling networks in backward (less activation memory)",
    )
    g.add_argument(
        "--autocast",
        nargs="?",
        const="bf16",
        default=None,
        choices=("bf16", "fp16"),
        help="run the coupling networks under autocast (default bf16); "
        "log-determinants stay float32; train refuses fp16 (no loss "
        "scaler)",
    )


def build_options(a: argparse.Namespace) -> dict[str, Any]:
    """Keyword arguments of ``flowspec.compile`` from the flags of :func:`add_build_options`."""
    import torch

    from .build import CompileBackendError, check_compile_backend

    try:
        check_compile_backend(a.compile)
    except CompileBackendError as e:
        raise UsageError(
            f"--compile {a.compile}: unknown torch.compile backend; available: {e.available}"
        ) from None
    amp = {None: False, "bf16": torch.bfloat16, "fp16": torch.float16}[a.autocast]
    return {
        "channels_last": a.channels_last,
        "compile": a.compile,
        "checkpoint": a.checkpoint,
        "autocast": amp,
    }
