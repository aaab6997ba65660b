"""The public entry points of the front end: load, loads, analyze."""

from __future__ import annotations

import os
from collections.abc import Iterable
from typing import Any

from . import ast, codes
from .check import check
from .errors import Collector, Diagnostic, FlowSpecError, raise_if_errors
from .ir import FlowSpec
from .loader import Loader, ModuleEnv
from .plugins import load_plugins
from .resolve import resolve


def _unused_blocks(env: ModuleEnv, diags: Collector) -> None:
    called = {n.name for n in ast.walk(env.module.items) if isinstance(n, ast.Call) and not n.ns}
    for name, block in env.blocks.items():
        if name not in called:
            diags.warning(
                codes.W_UNUSED_BLOCK,
                f"block `{name}` is never used",
                block.span,
                help="remove it, or call it from a flow",
            )


def _note_overrides(new: list[Diagnostic], overrides: dict[str, Any] | None) -> None:
    """Errors found with parameters set from outside say so (the value's origin)."""
    if not overrides:
        return
    from .evaluate import format_value

    shown = ", ".join(f"{k}={format_value(v)}" for k, v in overrides.items())
    for d in new:
        note = f"with the flow parameters set from outside (--set / overrides): {shown}"
        if d.severity == "error" and note not in d.notes:
            d.notes.append(note)


def analyze(
    source: str | os.PathLike,
    flow: str | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    text: str | None = None,
    all_flows: bool = False,
    plugins: Iterable[str] | None = None,
) -> tuple[list[FlowSpec], list[Diagnostic]]:
    """Parse, resolve and check; never raises for spec errors, returns diagnostics.

    With ``all_flows`` and no ``flow``, every flow of the file is checked. ``plugins`` are
    modules to import first (see :mod:`flowspec.plugins`; a failing one raises
    :class:`~flowspec.kinds.PluginError`).
    """
    load_plugins(plugins)
    diags = Collector()
    loader = Loader(diags)
    file = str(source)
    specs: list[FlowSpec] = []
    try:
        env = loader.load_text(text, file) if text is not None else loader.load_file(file)
    except FlowSpecError as e:  # a syntax error in the file or in an import
        return [], e.diagnostics
    except OSError as e:
        diags.error(codes.E_READ, f"cannot read `{file}`: {e.strerror}", None)
        return [], diags.items
    except UnicodeDecodeError:
        diags.error(codes.E_READ, f"cannot read `{file}`: it is not UTF-8 text", None)
        return [], diags.items
    if all_flows and flow is None and not env.flows:
        return [], diags.items  # a library of blocks and lets: parsing and imports checked
    _unused_blocks(env, diags)
    names = [flow] if (flow is not None or not all_flows) else list(env.flows)
    memo: dict = {}  # each flow resolved and checked once (a condition's flow is shared)
    checked: dict[int, bool] = {}
    for name in names:
        before = len(diags.items)
        spec = resolve(env, name, dict(overrides or {}), diags, memo=memo)
        _note_overrides(diags.items[before:], overrides)
        if spec is not None and not diags.has_errors:
            specs.append(check(spec, diags, checked))
    return specs, diags.items


def load(
    path: str | os.PathLike,
    flow: str | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    plugins: Iterable[str] | None = None,
) -> FlowSpec:
    """Load one flow of a .flow file as validated IR; raises :class:`FlowSpecError`.

    ``plugins``: modules that register layer kinds, nets, encoders or priors, imported first.
    """
    specs, diags = analyze(path, flow, overrides, plugins=plugins)
    raise_if_errors(diags)
    return specs[0]


def loads(
    text: str,
    flow: str | None = None,
    overrides: dict[str, Any] | None = None,
    *,
    filename: str = "<string>",
    plugins: Iterable[str] | None = None,
) -> FlowSpec:
    """Like :func:`load`, from a string; imports resolve relative to the working folder."""
    specs, diags = analyze(filename, flow, overrides, text=text, plugins=plugins)
    raise_if_errors(diags)
    return specs[0]
