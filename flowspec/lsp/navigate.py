"""Go to definition, find references and document symbols, from the syntax tree.

A block or a flow is known by the file that defines it and its name; a call
(``lib.glow_step(...)``, ``extends base``) names one through the file's imports. References
are searched in the files the server is given (the open documents and the workspace's
``.flow`` files), each parsed once per version of its text.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import Any

from .. import ast
from ..errors import FlowSpecError, Span
from ..parse import parse
from .document import Analysis, Document, node_contains

__all__ = [
    "Symbol",
    "Target",
    "definition",
    "document_symbols",
    "node_at",
    "references",
    "target_at",
]


@dataclass(frozen=True)
class Target:
    """A block or flow (``table``: "block" or "flow") defined in ``file`` (absolute)."""

    file: str
    name: str
    table: str


@dataclass
class Symbol:
    name: str
    kind: str  # "flow" | "block" | "level" | "import" | "let"
    span: Span
    selection: Span
    detail: str = ""
    children: list[Symbol] | None = None


def _abs(path: str) -> str:
    return os.path.abspath(path) if os.path.exists(path) else path


def name_span(node: ast.BlockDef | ast.FlowDef | ast.Let, keyword: str, lines: list[str]) -> Span:
    """The span of the name in ``block NAME``, ``flow NAME``, ``let NAME``."""
    span = node.span
    text = lines[span.line - 1] if 0 < span.line <= len(lines) else ""
    m = re.compile(rf"\b{keyword}\s+({re.escape(node.name)})\b").search(text, span.column - 1)
    if m is None:
        return span
    return Span(
        file=span.file,
        line=span.line,
        column=m.start(1) + 1,
        end_line=span.line,
        end_column=m.end(1) + 1,
    )


def node_at(module: ast.Module, line: int, column: int) -> list[Any]:
    """The syntax-tree nodes that contain 1-based ``line``/``column``, innermost first."""
    found = [
        n
        for n in ast.walk(module.items)
        if isinstance(getattr(n, "span", None), Span) and node_contains(n.span, line, column)
    ]
    found.sort(
        key=lambda n: (
            (n.span.end_line - n.span.line),
            n.span.end_column - n.span.column if n.span.end_line == n.span.line else 0,
        )
    )
    return found


def _imports(module: ast.Module) -> dict[str, str]:
    base = os.path.dirname(module.file)
    return {
        i.alias: _abs(os.path.join(base, i.path))
        for i in module.items
        if isinstance(i, ast.Import)
    }


def _call_target(module: ast.Module, call: ast.Call, table: str) -> Target | None:
    if call.ns is None:
        return Target(_abs(module.file), call.name, table)
    file = _imports(module).get(call.ns)
    return Target(file, call.name, table) if file else None


def target_at(module: ast.Module, line: int, column: int) -> Target | None:
    """The block or flow that the name under the cursor defines or calls."""
    nodes = node_at(module, line, column)
    extends = {
        id(n.extends)
        for n in ast.walk(module.items)
        if isinstance(n, ast.FlowDef) and n.extends is not None
    }
    for n in nodes:
        if isinstance(n, ast.Call):
            return _call_target(module, n, "flow" if id(n) in extends else "block")
        if isinstance(n, ast.BlockDef | ast.FlowDef) and n.span.line == line:
            return Target(
                _abs(module.file), n.name, "block" if isinstance(n, ast.BlockDef) else "flow"
            )
    return None


def _defined(module: ast.Module, target: Target, lines: list[str]) -> Span | None:
    for item in module.items:
        if isinstance(item, ast.BlockDef | ast.FlowDef) and item.name == target.name:
            if (target.table == "block") == isinstance(item, ast.BlockDef):
                return name_span(item, target.table, lines)
    return None


def definition(
    doc: Document, analysis: Analysis, line: int, column: int
) -> tuple[str, Span] | None:
    """Where the name under 1-based ``line``/``column`` is defined: (file, span)."""
    module = analysis.module
    if module is None:
        return None
    for n in node_at(module, line, column):
        if isinstance(n, ast.Import):
            path = _imports(module).get(n.alias)
            return (
                (path, Span(file=path, line=1, column=1, end_line=1, end_column=1))
                if path
                else None
            )
        if isinstance(n, ast.Var) and n.ns is None and not isinstance(n, ast.Call):
            for item in module.items:
                if isinstance(item, ast.Let) and item.name == n.name:
                    return doc.path, name_span(item, "let", doc.lines)
        if isinstance(n, ast.Call | ast.BlockDef | ast.FlowDef):
            break
    target = target_at(module, line, column)
    if target is None:
        return None
    env = analysis.env
    files = {_abs(doc.path): (module, doc.lines)}
    if env is not None:
        for sub in env.imports.values():
            files.setdefault(_abs(sub.file), (sub.module, None))
    entry = files.get(target.file)
    if entry is None:
        return None
    mod, lines = entry
    if lines is None:
        lines = _read_lines(target.file)
    span = _defined(mod, target, lines)
    return (target.file, span) if span else None


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as f:
            return f.read().split("\n")
    except (OSError, UnicodeDecodeError):
        return []


_PARSED: dict[tuple[str, str], ast.Module | None] = {}


def _parsed(path: str, text: str) -> ast.Module | None:
    key = (path, text)
    if key not in _PARSED:
        if len(_PARSED) > 512:
            _PARSED.clear()
        try:
            _PARSED[key] = parse(text, path)
        except (FlowSpecError, RecursionError):
            _PARSED[key] = None
    return _PARSED[key]


def references(
    target: Target, texts: dict[str, str], include_declaration: bool = True
) -> list[tuple[str, Span]]:
    """Every call of ``target`` (and its definition) in ``texts`` (path -> text)."""
    out: list[tuple[str, Span]] = []
    for path, text in texts.items():
        module = _parsed(path, text)
        if module is None:
            continue
        if include_declaration and _abs(path) == target.file:
            span = _defined(module, target, text.split("\n"))
            if span is not None:
                out.append((path, span))
        extends = {
            id(n.extends)
            for n in module.items
            if isinstance(n, ast.FlowDef) and n.extends is not None
        }
        for n in ast.walk(module.items):
            if isinstance(n, ast.Call):
                table = "flow" if id(n) in extends else "block"
                if _call_target(module, n, table) == target:
                    out.append((path, _call_name(n)))
    return out


def _call_name(call: ast.Call) -> Span:
    """The span of ``ns.name`` at the start of a call."""
    s = call.span
    width = len(call.name) + (len(call.ns) + 1 if call.ns else 0)
    return Span(
        file=s.file, line=s.line, column=s.column, end_line=s.line, end_column=s.column + width
    )


def _levels(body: ast.Body, lines: list[str]) -> list[Symbol]:
    out = []
    for n in ast.walk(body.stmts):
        if isinstance(n, ast.Group) and n.kind == "level":
            head = lines[n.span.line - 1].strip().rstrip("{").strip() if lines else "level"
            sel = Span(
                file=n.span.file,
                line=n.span.line,
                column=n.span.column,
                end_line=n.span.line,
                end_column=n.span.column + 5,
            )
            out.append(Symbol(head or "level", "level", n.span, sel))
    return out


def document_symbols(module: ast.Module, lines: list[str]) -> list[Symbol]:
    """Flows (with their levels), blocks, imports and lets, in the order of the file."""
    out: list[Symbol] = []
    for item in module.items:
        if isinstance(item, ast.FlowDef):
            params = ", ".join(p.name for p in item.params)
            out.append(
                Symbol(
                    item.name,
                    "flow",
                    item.span,
                    name_span(item, "flow", lines),
                    f"({params})",
                    _levels(item.body, lines),
                )
            )
        elif isinstance(item, ast.BlockDef):
            params = ", ".join(p.name for p in item.params)
            out.append(
                Symbol(
                    item.name,
                    "block",
                    item.span,
                    name_span(item, "block", lines),
                    f"({params})",
                    _levels(item.body, lines),
                )
            )
        elif isinstance(item, ast.Import):
            out.append(
                Symbol(item.alias, "import", item.span, item.path_span or item.span, item.path)
            )
        elif isinstance(item, ast.Let):
            out.append(Symbol(item.name, "let", item.span, name_span(item, "let", lines)))
    return out
