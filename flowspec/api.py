"""The public entry points of the front end: load, loads, analyze."""

from __future__ import annotations

import os
from typing import Any

from . import ast
from .check import check
from .errors import Collector, Diagnostic, FlowSpecError, raise_if_errors
from .ir import FlowSpec
from .resolve import Loader, ModuleEnv, resolve


def _unused_blocks(env: ModuleEnv, diags: Collector) -> None:
    called: set[str] = set()

    def walk(node: Any) -> None:
        if isinstance(node, ast.Call) and node.ns is None:
            called.add(node.name)
        if isinstance(node, list):
            for x in node:
                walk(x)
        elif hasattr(node, "__dataclass_fields__"):
            for name in node.__dataclass_fields__:
                walk(getattr(node, name))

    walk(env.module.items)
    for name, block in env.blocks.items():
        if name not in called:
            diags.warning("W001", f"block `{name}` is never used", block.span,
                          help="remove it, or call it from a flow")


def analyze(source: str | os.PathLike, flow: str | None = None,
            overrides: dict[str, Any] | None = None, *, text: str | None = None,
            all_flows: bool = False) -> tuple[list[FlowSpec], list[Diagnostic]]:
    """Parse, resolve and check; never raises for spec errors, returns diagnostics.

    With ``all_flows`` and no ``flow``, every flow of the file is checked.
    """
    diags = Collector()
    loader = Loader(diags)
    file = str(source)
    specs: list[FlowSpec] = []
    try:
        env = loader.load_text(text, file) if text is not None else loader.load_file(file)
    except FlowSpecError as e:  # a syntax error in the file or in an import
        return [], e.diagnostics
    except OSError as e:
        diags.error("E131", f"cannot read `{file}`: {e.strerror}", None)
        return [], diags.items
    except UnicodeDecodeError:
        diags.error("E131", f"cannot read `{file}`: it is not UTF-8 text", None)
        return [], diags.items
    if all_flows and flow is None and not env.flows:
        return [], diags.items  # a library of blocks and lets: parsing and imports checked
    _unused_blocks(env, diags)
    names = [flow] if (flow is not None or not all_flows) else list(env.flows)
    for name in names:
        spec = resolve(env, name, dict(overrides or {}), diags)
        if spec is not None and not diags.has_errors:
            specs.append(check(spec, diags))
    return specs, diags.items


def load(path: str | os.PathLike, flow: str | None = None,
         overrides: dict[str, Any] | None = None) -> FlowSpec:
    """Load one flow of a .flow file as validated IR; raises :class:`FlowSpecError`."""
    specs, diags = analyze(path, flow, overrides)
    raise_if_errors(diags)
    return specs[0]


def loads(text: str, flow: str | None = None, overrides: dict[str, Any] | None = None,
          *, filename: str = "<string>") -> FlowSpec:
    """Like :func:`load`, from a string; imports resolve relative to the working folder."""
    specs, diags = analyze(filename, flow, overrides, text=text)
    raise_if_errors(diags)
    return specs[0]
