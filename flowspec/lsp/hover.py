"""Hover text (Markdown): what the compiler knows of the statement under the cursor.

A layer: its kind's doc, its arguments (given and default) and, for every instance the
checked flows made of the statement (a block called in a loop, a ``step x K``), its shape
in -> out and its parameter count. A flow: its latents and total parameters. A block
call: the block's signature. A prior or a ``train`` setting: what it means.
"""

from __future__ import annotations

import os
from typing import Any

from .. import ast
from ..fmt import expr
from ..kinds import DEFAULT_VARIANT, KINDS, PRIORS, count_params, fmt_shape, heads
from ..reference import argument_rows
from .document import Analysis
from .navigate import node_at

__all__ = ["hover", "kind_of", "signature"]

MAX_INSTANCES = 24  # instance rows shown; the rest are counted


def kind_of(layer: ast.Layer) -> str | None:
    """The registry key a layer statement names (``coupling affine`` -> coupling.affine)."""
    variants = heads().get(layer.name)
    if variants is None:
        return None
    word = layer.words[0] if layer.words else None
    if isinstance(word, ast.Var) and word.ns is None and word.name in variants:
        return variants[word.name].key
    if None in variants:
        return variants[None].key
    default = DEFAULT_VARIANT.get(layer.name)
    return variants[default].key if default in variants else None


def _value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return "-" if v is None else str(v)


def _params_text(params: list[ast.Param]) -> str:
    out = []
    for p in params:
        text = p.name + (f" = {expr(p.default)}" if p.default is not None else "")
        d = p.domain
        if d is not None and d.choices is not None:
            text += " in [" + ", ".join(expr(c) for c in d.choices) + "]"
        elif d is not None and d.lo is not None and d.hi is not None:
            text += f" in {expr(d.lo)}..{expr(d.hi)}"
        out.append(text)
    return ", ".join(out)


def signature(node: ast.BlockDef | ast.FlowDef) -> str:
    word = "block" if isinstance(node, ast.BlockDef) else "flow"
    return f"{word} {node.name}({_params_text(node.params)})"


def _same_place(a, b) -> bool:
    return (a.line, a.column) == (b.line, b.column) and (
        a.file == b.file or os.path.abspath(a.file) == os.path.abspath(b.file)
    )


def _layer(stmt: ast.Layer, analysis: Analysis) -> str | None:
    key = kind_of(stmt)
    if key is None:
        return None
    entry = KINDS[key]
    out = [f"**{key.replace('.', ' ')}** (layer kind)", "", entry.doc.strip() or "", ""]
    given = {k.name: expr(k.value) for k in stmt.kwargs}
    out.append("| argument | given | default | type | range |")
    out.append("|---|---|---|---|---|")
    for row in argument_rows(entry.Args):
        cells = (given.get(row["name"], ""), _value(row["default"]), row["type"], row["range"])
        out.append(
            f"| `{row['name']}` | " + " | ".join(c.replace("|", "\\|") for c in cells) + " |"
        )
    rows = []
    for spec in analysis.all_specs():
        counts: dict[str, int] | None = None
        for layer in spec.layers:
            if not _same_place(layer.span, stmt.span):
                continue
            if counts is None:
                try:
                    counts = count_params(spec)
                except Exception:  # noqa: BLE001 - a count is a nicety, not worth a crash
                    counts = {}
            shape_in = fmt_shape(layer.in_shape) if layer.in_shape else "?"
            shape_out = fmt_shape(layer.out_shape) if layer.out_shape else "?"
            n = counts.get(layer.path)
            rows.append(
                f"- `{spec.name}` `{layer.path}`: {shape_in} → {shape_out}"
                + (f", {n:,} parameters" if n is not None else "")
            )
    if rows:
        out += ["", f"**{len(rows)} instance{'s' if len(rows) != 1 else ''}**"]
        out += rows[:MAX_INSTANCES]
        if len(rows) > MAX_INSTANCES:
            out.append(f"- ... and {len(rows) - MAX_INSTANCES} more")
    return "\n".join(out)


def _flow(node: ast.FlowDef, analysis: Analysis) -> str:
    out = [f"```flowspec\n{signature(node)}\n```"]
    for spec in analysis.specs:
        if spec.name != node.name:
            continue
        latents = ", ".join(f"{z.name} {fmt_shape(z.shape)}" for z in spec.latents)
        n = sum(count_params(spec).values())
        out += [
            f"input {fmt_shape(spec.input)}, {len(spec.layers)} layers",
            "",
            f"latents: {latents or '-'}",
            "",
            f"parameters: {n:,} ({n / 1e6:.3f} M)",
        ]
    return "\n".join(out)


def _block(call: ast.Call, analysis: Analysis) -> str | None:
    env = analysis.env
    if env is None:
        return None
    where = env if call.ns is None else env.imports.get(call.ns)
    if where is None:
        return None
    table = where.blocks if call.name in where.blocks else where.flows
    node = table.get(call.name)
    if node is None:
        return None
    return f"```flowspec\n{signature(node)}\n```\ndefined in `{os.path.basename(where.file)}`"


def _setting(stmt: ast.Layer) -> str | None:
    from ..recipe import RecipeSpec, field_info

    if stmt.name not in RecipeSpec.model_fields:
        return None
    info = field_info(stmt.name)
    default = RecipeSpec.model_fields[stmt.name].default
    return f"**{stmt.name}** (train setting)\n\n{info['doc']}\n\ndefault: {_value(default)}"


def hover(analysis: Analysis, line: int, column: int) -> str | None:
    """Markdown for 1-based ``line``/``column``, or None where there is nothing to say."""
    module = analysis.module
    if module is None:
        return None
    trains = [n for n in node_at(module, line, column) if isinstance(n, ast.Train)]
    for n in node_at(module, line, column):
        if isinstance(n, ast.Layer):
            return _setting(n) if trains else _layer(n, analysis)
        if isinstance(n, ast.Prior) and n.name in PRIORS:
            return f"**prior {n.name}**\n\n{PRIORS[n.name].doc.strip()}"
        if isinstance(n, ast.Call):
            return _block(n, analysis)
        if isinstance(n, ast.FlowDef) and n.span.line == line:
            return _flow(n, analysis)
        if isinstance(n, ast.BlockDef) and n.span.line == line:
            return f"```flowspec\n{signature(n)}\n```"
    return None
