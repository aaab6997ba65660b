"""How a diagram looks (internal): fonts, fills, node shapes and the text of its labels.

The fills stay apart in greyscale and attention and conditional layers differ from plain
layers by shape too (:func:`_node_style`); labels are Graphviz HTML-like text, escaped
(:func:`_layer_label`, :func:`_html`), with shapes as C×H×W (:func:`fmt_shape`) and only the
non-default arguments (:func:`nondefault_args`). Used by :mod:`flowspec.diagram_dot`.
"""

from __future__ import annotations

import html
from collections.abc import Iterable, Sequence
from typing import Any

from .evaluate import display_value
from .kinds import nondefault_args as shown_nondefault

#: how much a diagram draws (one node a layer, a step or a level) and which way it runs;
#: torch- and graphviz-free here, so that the command line can offer them
DETAILS = ("layer", "step", "level")
RANKDIRS = ("TB", "LR")

FONT = "Helvetica"
MONO = "Courier"
# Fills chosen to stay apart in greyscale: attention darkest, conditional light, plain white.
FILL = {
    "layer": "#ffffff",
    "attention": "#f4a259",
    "conditional": "#c6dbef",
    "latent": "#c7e9c0",
    "input": "#fff2cc",
    "condition": "#c6dbef",
    "prior": "#e0e0e0",
    "level": "#fafafa",
}
COND_COLOR = "#2b6ca3"
EDGE_FONT = {"fontname": FONT, "fontsize": "9", "fontcolor": "#555555"}


def fmt_shape(shape: Sequence[int] | None) -> str:
    return "×".join(str(d) for d in shape) if shape else "?"


def nondefault_args(kind: str, args: dict[str, Any]) -> str:
    """``k=v`` for every argument that differs from the kind's default, in spec order."""
    return " ".join(f"{k}={display_value(v)}" for k, v in shown_nondefault(kind, args).items())


def _kind_title(kind: str) -> str:
    return kind.replace(".", " ")


def _id(name: str) -> str:
    """A DOT node id: graphviz reads ``a:b`` in an edge as node ``a``, port ``b``."""
    return name.replace(":", "__")


def _e(text: str) -> str:
    return html.escape(str(text), quote=True)


def _html(lines: Iterable[str]) -> str:
    return "<" + "<br/>".join(lines) + ">"


def _category(data: dict[str, Any]) -> str:
    if data.get("kind", "").startswith("attention."):
        return "attention"
    if data.get("on"):
        return "conditional"
    return "layer"


def _node_style(category: str, conditional: bool = False) -> dict[str, str]:
    """Shape and fill per category; conditional layers get a double border on top."""
    if category == "attention":
        style = {
            "shape": "hexagon",
            "style": "filled",
            "fillcolor": FILL["attention"],
            "margin": "0.02,0.02",
        }
    elif category == "conditional":
        style = {"shape": "box", "style": "filled", "fillcolor": FILL["conditional"]}
    else:
        style = {"shape": "box", "style": "rounded,filled", "fillcolor": FILL["layer"]}
    if conditional or category == "conditional":
        style["peripheries"] = "2"
    return style


def _layer_label(path: str, data: dict[str, Any]) -> str:
    lines = [
        f"<b>{_e(_kind_title(data['kind']))}</b>",
        f'<font face="{MONO}" point-size="9">{_e(path)}</font>',
    ]
    args = nondefault_args(data["kind"], data["args"])
    if args:
        lines.append(f'<font point-size="9"><i>{_e(args)}</i></font>')
    return _html(lines)
