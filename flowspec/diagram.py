"""Render the FlowGraph as a Graphviz diagram (``flowspec render``).

The renderer reads only :func:`flowspec.flowgraph.graph`, never the IR, so the picture
shows exactly what the builder builds. Three levels of detail:

- ``layer``: every layer as a node, steps as sub-clusters of their level.
- ``step``: as ``layer``, but a run of identical consecutive steps (same layer kinds,
  arguments and shapes) is drawn once, its cluster labelled e.g. ``step 01-04 ×4``.
- ``level``: one box per level listing its contents compactly.

Every node carries its stable path and its non-default arguments, every data edge the
C×H×W of its tensor (FrEIA's ``plot_graph`` habit). Attention and conditional layers
differ from plain layers by colour *and* shape, so the diagram also reads in greyscale.
The DOT text is deterministic (graph order, no generated ids): it is golden-tested.
"""

from __future__ import annotations

import html
import itertools
import os
import re
import secrets
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import graphviz
import networkx as nx

from .api import load
from .errors import EXIT_USAGE, FlowError
from .evaluate import display_value
from .flowgraph import graph, layer_sequence
from .ir import FlowSpec
from .kinds import nondefault_args as shown_nondefault

DETAILS = ("layer", "step", "level")
RANKDIRS = ("TB", "LR")
FORMATS = (".svg", ".png", ".pdf", ".dot")

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


class UnsupportedFormat(FlowError, ValueError):
    """The output path's suffix is not one of .svg, .png, .pdf, .dot (the CLI's ``-o``)."""

    exit_code = EXIT_USAGE


# ---- small formatting helpers -------------------------------------------------------------
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


def _step_of(path: str) -> str | None:
    m = re.search(r"(?:^|\.)step(\d+)(?:\.|$)", path)
    return m.group(1) if m else None


def _range_path(first: str, last: str) -> str:
    """``level1.step01.coupling`` + ``level1.step04.coupling`` -> ``level1.step01-04.coupling``."""
    a, b = _step_of(first), _step_of(last)
    if a is None or b is None or a == b:
        return first
    return re.sub(
        r"((?:^|\.)step)" + a + r"(?=\.|$)", lambda m: f"{m.group(1)}{a}-{b}", first, count=1
    )


# ---- grouping the layer sequence ----------------------------------------------------------
@dataclass
class Step:
    """A run of ``count`` identical consecutive steps, represented by its first one."""

    first: str  # step number text of the first step, e.g. "01"
    last: str
    layers: list[tuple[str, dict[str, Any]]]  # the representative step's layers
    count: int = 1
    members: list[str] = field(default_factory=list)  # every layer path of the run

    @property
    def label(self) -> str:
        if self.count == 1:
            return f"step {self.first}"
        return f"step {self.first}-{self.last} ×{self.count}"


@dataclass
class Level:
    number: int | None  # None: layers outside any level
    items: list[tuple[str, dict[str, Any]] | Step]


def _signature(layers: list[tuple[str, dict[str, Any]]]) -> tuple:
    return tuple(
        (
            d["kind"],
            tuple(sorted((k, repr(v)) for k, v in d["args"].items())),
            tuple(d["in_shape"]),
            tuple(d["out_shape"]),
        )
        for _, d in layers
    )


def group_layers(g: nx.DiGraph, collapse: bool) -> list[Level]:
    """Split the execution order into levels and steps; optionally merge identical steps."""
    levels: list[Level] = []
    for path, data in layer_sequence(g):
        if not levels or levels[-1].number != data.get("level"):
            levels.append(Level(data.get("level"), []))
        items = levels[-1].items
        step = data.get("step")
        if step is None:
            items.append((path, data))
            continue
        last = items[-1] if items else None
        if isinstance(last, Step) and last.layers[0][1].get("step") == step:
            last.layers.append((path, data))
            last.members.append(path)
        else:
            num = _step_of(path) or f"{step:02d}"
            items.append(Step(num, num, [(path, data)], members=[path]))
    if collapse:
        for level in levels:
            merged: list[tuple[str, dict[str, Any]] | Step] = []
            for item in level.items:
                prev = merged[-1] if merged else None
                if (
                    isinstance(item, Step)
                    and isinstance(prev, Step)
                    and _signature(prev.layers) == _signature(item.layers)
                ):
                    prev.count += 1
                    prev.last = item.last
                    prev.members.extend(item.members)
                else:
                    merged.append(item)
            level.items = merged
    return levels


# ---- the DOT graph ------------------------------------------------------------------------
def _layer_label(path: str, data: dict[str, Any]) -> str:
    lines = [
        f"<b>{_e(_kind_title(data['kind']))}</b>",
        f'<font face="{MONO}" point-size="9">{_e(path)}</font>',
    ]
    args = nondefault_args(data["kind"], data["args"])
    if args:
        lines.append(f'<font point-size="9"><i>{_e(args)}</i></font>')
    return _html(lines)


class _Builder:
    def __init__(self, g: nx.DiGraph, detail: str, rankdir: str) -> None:
        self.g = g
        self.detail = detail
        self.rankdir = rankdir
        name = g.graph.get("name") or "flow"
        self.dot = graphviz.Digraph(name=str(name))
        self.dot.attr(
            rankdir=rankdir,
            fontname=FONT,
            fontsize="11",
            nodesep="0.25",
            ranksep="0.3",
            labelloc="t",
            label=_html([f"<b>{_e(name)}</b>"]),
            newrank="true",
        )
        self.dot.attr("node", fontname=FONT, fontsize="10", color="#333333", margin="0.1,0.04")
        self.dot.attr("edge", color="#444444", arrowsize="0.7", **EDGE_FONT)
        self.node_of: dict[str, str] = {}  # layer path -> the node that shows it
        self.used: set[str] = set()  # categories drawn, for the legend

    # nodes --------------------------------------------------------------------------------
    def layer_node(
        self, sub: graphviz.Digraph, path: str, data: dict[str, Any], shown: str | None = None
    ) -> None:
        category = _category(data)
        self.used.add(category)
        style = _node_style(category, conditional=bool(data.get("on")))
        sub.node(_id(path), _layer_label(shown or path, data), **style)

    def io_nodes(self) -> None:
        g = self.g
        inp = g.nodes["input"]
        self.dot.node(
            "input",
            _html(["<b>input</b>", _e(fmt_shape(inp["shape"]))]),
            shape="parallelogram",
            style="filled",
            fillcolor=FILL["input"],
        )
        for n, d in g.nodes(data=True):
            if d["type"] == "condition":
                self.used.add("condition")
                size = d["shape"][0] if d["ctype"] == "class" else fmt_shape(d["shape"])
                self.dot.node(
                    _id(n),
                    _html(
                        [
                            f"<b>condition {_e(d['name'])}</b>",
                            _e(
                                f"{d['ctype']} {size}"
                                + (" one-hot" if d["ctype"] != "image" else "")
                            ),
                        ]
                    ),
                    shape="parallelogram",
                    style="filled",
                    fillcolor=FILL["condition"],
                )
            elif d["type"] == "encoder":
                args = " ".join(f"{k}={display_value(v)}" for k, v in d["args"].items())
                self.dot.node(
                    _id(n),
                    _html(
                        [
                            f"<b>{_e(d['kind'])} encoder</b>",
                            f'<font face="{MONO}" point-size="9">{_e(n)}</font>',
                            f'<font point-size="9"><i>{_e(args)}</i></font>',
                            _e(f"→ {fmt_shape(d['out_shape'])}"),
                        ]
                    ),
                    shape="component",
                    style="filled",
                    fillcolor=FILL["condition"],
                )

    def tail_nodes(self) -> None:
        g = self.g
        prior = g.nodes["prior"]
        desc = "gaussian" + (" learned" if prior.get("learned") else "")
        if prior.get("on"):
            desc += f" on={prior['on']}"
        style = {"shape": "box", "style": "rounded,filled", "fillcolor": FILL["prior"]}
        if prior.get("on"):
            style["peripheries"] = "2"
        self.dot.node("prior", _html(["<b>prior</b>", f"<i>{_e(desc)}</i>"]), **style)

    def latent_node(self, name: str) -> None:
        self.used.add("latent")
        self.dot.node(
            _id(name),
            _html([f"<b>{_e(name)}</b>", _e(fmt_shape(self.g.nodes[name]["shape"]))]),
            shape="ellipse",
            style="filled",
            fillcolor=FILL["latent"],
        )

    def latents_of(self, path: str) -> list[str]:
        return [v for v in self.g.successors(path) if self.g.edges[path, v]["role"] == "latent"]

    # levels -------------------------------------------------------------------------------
    def draw_levels(self, levels: list[Level]) -> list[tuple[str, str, tuple]]:
        """Draw every level; return the data chain as (tail, head, shape) edges."""
        chain: list[tuple[str, str, tuple]] = []
        prev = "input"
        for level in levels:
            if self.detail == "level" and level.number is not None:
                node = self.level_box(level)
                first = level.items[0]
                chain.append((prev, node, self._in_shape(first)))
                prev = node
                continue
            if level.number is None:
                prev = self.draw_items(self.dot, level, prev, chain)
            else:
                with self.dot.subgraph(name=f"cluster_level{level.number}") as c:
                    c.attr(
                        label=f"level {level.number}",
                        style="rounded,filled",
                        fillcolor=FILL["level"],
                        color="#888888",
                        fontname=FONT,
                        fontsize="11",
                        labeljust="l",
                    )
                    prev = self.draw_items(c, level, prev, chain)
        chain.append((prev, "prior", tuple(self.g.nodes["prior"]["shape"])))
        return chain

    @staticmethod
    def _in_shape(item: tuple[str, dict[str, Any]] | Step) -> tuple:
        data = item.layers[0][1] if isinstance(item, Step) else item[1]
        return tuple(data["in_shape"])

    def draw_items(
        self, sub: graphviz.Digraph, level: Level, prev: str, chain: list[tuple[str, str, tuple]]
    ) -> str:
        for item in level.items:
            if isinstance(item, Step):
                tag = f"level{level.number}_" if level.number is not None else ""
                with sub.subgraph(name=f"cluster_{tag}step{item.first}") as s:
                    s.attr(
                        label=item.label,
                        style="rounded,dashed",
                        color="#999999",
                        fontname=FONT,
                        fontsize="10",
                        labeljust="l",
                    )
                    for i, (path, data) in enumerate(item.layers):
                        shown = path
                        if item.count > 1:
                            last = item.members[len(item.members) - len(item.layers) + i]
                            shown = _range_path(path, last)
                        self.layer_node(s, path, data, shown)
                        chain.append((prev, path, tuple(data["in_shape"])))
                        prev = path
                for j, member in enumerate(item.members):
                    self.node_of[member] = item.layers[j % len(item.layers)][0]
            else:
                path, data = item
                self.layer_node(sub, path, data)
                self.node_of[path] = path
                chain.append((prev, path, tuple(data["in_shape"])))
                prev = path
        return prev

    def level_box(self, level: Level) -> str:
        node = f"level:{level.number}"
        rows = [f'<tr><td align="left" colspan="2"><b>level {level.number}</b></td></tr>']

        def row(text: str, shape: str, category: str, indent: bool = False) -> str:
            self.used.add(category)
            bg = "" if category == "layer" else f' bgcolor="{FILL[category]}"'
            mark = {"attention": "◆ ", "conditional": "◇ "}.get(category, "")
            pad = "&#160;&#160;&#160;" if indent else ""
            return (
                f'<tr><td align="left"{bg}>{pad}{mark}{_e(text)}</td>'
                f'<td align="right"><font point-size="9">{_e(shape)}</font></td></tr>'
            )

        def describe(data: dict[str, Any]) -> str:
            args = nondefault_args(data["kind"], data["args"])
            return _kind_title(data["kind"]) + (f" {args}" if args else "")

        for item in level.items:
            if isinstance(item, Step):
                times = f" ×{item.count}" if item.count > 1 else ""
                span = item.first if item.count == 1 else f"{item.first}-{item.last}"
                rows.append(
                    f'<tr><td align="left" colspan="2"><i>step {span}{times}</i></td></tr>'
                )
                for _, data in item.layers:
                    rows.append(
                        row(
                            describe(data),
                            fmt_shape(data["out_shape"]),
                            _category(data),
                            indent=True,
                        )
                    )
                for member in item.members:
                    self.node_of[member] = node
            else:
                path, data = item
                shape = f"{fmt_shape(data['in_shape'])} → {fmt_shape(data['out_shape'])}"
                rows.append(row(describe(data), shape, _category(data)))
                self.node_of[path] = node
        table = (
            '<table border="0" cellborder="0" cellspacing="1" cellpadding="2">'
            + "".join(rows)
            + "</table>"
        )
        self.dot.node(
            _id(node), f"<{table}>", shape="box", style="rounded,filled", fillcolor=FILL["level"]
        )
        return node

    # edges --------------------------------------------------------------------------------
    def edges(self, chain: list[tuple[str, str, tuple]]) -> None:
        g = self.g
        for tail, head, shape in chain:
            # heavy: keeps the main data path straight, latents and conditions to the side
            self.dot.edge(_id(tail), _id(head), label=" " + fmt_shape(shape), weight="10")
        # latents, in the order the flow emits them
        for path, _ in layer_sequence(g):
            for z in self.latents_of(path):
                self.latent_node(z)
                src = self.node_of.get(path, path)
                self.dot.edge(_id(src), _id(z), label=" " + fmt_shape(g.edges[path, z]["shape"]))
        for z in self.latents_of("prior"):
            self.latent_node(z)
            self.dot.edge("prior", _id(z), label=" " + fmt_shape(g.edges["prior", z]["shape"]))
        # conditioning: dashed, one edge per drawn node that uses the condition
        seen: set[tuple[str, str]] = set()
        for u, v, d in g.edges(data=True):
            if d["role"] != "cond":
                continue
            if g.nodes[u]["type"] == "condition":
                self.dot.edge(
                    _id(u),
                    _id(v),
                    label=" " + fmt_shape(d["shape"]),
                    style="dashed",
                    color=COND_COLOR,
                )
                continue
            target = self.node_of.get(v, v)
            if (u, target) in seen:
                continue
            seen.add((u, target))
            self.dot.edge(
                _id(u),
                _id(target),
                style="dashed",
                color=COND_COLOR,
                constraint="false",
                headport="e" if self.rankdir == "TB" else "s",
                tooltip=f"{g.nodes[u]['name']} features {fmt_shape(d['shape'])}",
            )

    def legend(self) -> None:
        """A one-row key (a column in LR) of the categories this diagram uses."""
        mark = {"attention": "◆ ", "conditional": "◇ "} if self.detail == "level" else {}
        entries = [
            ("layer", {"shape": "box", "style": "rounded,filled", "fillcolor": FILL["layer"]}),
            ("attention", _node_style("attention")),
            ("conditional", _node_style("conditional")),
            ("latent", {"shape": "ellipse", "style": "filled", "fillcolor": FILL["latent"]}),
        ]
        lr = self.rankdir == "LR"
        names: list[str] = []
        with self.dot.subgraph(name="cluster_legend") as c:
            c.attr(
                label="legend",
                style="rounded",
                color="#bbbbbb",
                fontname=FONT,
                fontsize="9",
                labeljust="l",
            )
            c.attr("node", fontsize="9", height="0.3", margin="0.06,0.02")
            for key, style in entries:
                if key in self.used or key == "layer":
                    names.append(f"legend__{key}")
                    c.node(names[-1], mark.get(key, "") + key, **style)
            if "condition" in self.used:
                c.node("legend__cond_from", "", shape="point", width="0.05", color=COND_COLOR)
                c.node("legend__cond_to", "conditioning", shape="plaintext", fontcolor=COND_COLOR)
                # within a rank, LR stacks an edge's tail below its head: flip it there
                pair = (
                    ("legend__cond_to", "legend__cond_from")
                    if lr
                    else ("legend__cond_from", "legend__cond_to")
                )
                c.edge(
                    *pair,
                    style="dashed",
                    color=COND_COLOR,
                    minlen="2",
                    dir="back" if lr else "forward",
                )
                names += ["legend__cond_from", "legend__cond_to"]
            chain = [n for n in names if n != "legend__cond_to"]
            for a, b in itertools.pairwise(chain):
                c.edge(*((b, a) if lr else (a, b)), style="invis")
        # on the last rank, beside the final latent, where the diagram has room
        final = self.latents_of("prior")
        if final:
            with self.dot.subgraph() as r:
                r.attr(rank="same")
                for n in [_id(final[-1]), *names]:
                    r.node(n)

    def build(self) -> graphviz.Digraph:
        self.io_nodes()
        levels = group_layers(self.g, collapse=self.detail in ("step", "level"))
        chain = self.draw_levels(levels)
        self.tail_nodes()
        self.edges(chain)
        self.legend()
        return self.dot


def to_dot(
    spec_or_graph: FlowSpec | nx.DiGraph | str | os.PathLike,
    *,
    detail: str = "step",
    rankdir: str = "TB",
) -> graphviz.Digraph:
    """The architecture as a :class:`graphviz.Digraph` (deterministic DOT source).

    Args:
        spec_or_graph: a checked :class:`FlowSpec`, its :func:`flowspec.graph`, or a path
            to a .flow file with a single flow.
        detail: ``"layer"`` (every layer), ``"step"`` (identical consecutive steps drawn
            once, labelled ``×K``) or ``"level"`` (one box per level).
        rankdir: ``"TB"`` (top to bottom) or ``"LR"`` (left to right).
    """
    if detail not in DETAILS:
        raise ValueError(f"detail must be one of {', '.join(DETAILS)}, not {detail!r}")
    if rankdir not in RANKDIRS:
        raise ValueError(f"rankdir must be TB or LR, not {rankdir!r}")
    g = spec_or_graph if isinstance(spec_or_graph, nx.DiGraph) else graph(spec_or_graph)
    return _Builder(g, detail, rankdir).build()


# ---- writing files ------------------------------------------------------------------------
def _write_atomic(path: Path, data: bytes) -> None:
    """Write next to ``path`` and rename over it, so a reader never sees half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def render(
    spec: FlowSpec | nx.DiGraph | str | os.PathLike,
    path: str | os.PathLike,
    *,
    flow: str | None = None,
    overrides: dict[str, Any] | None = None,
    detail: str = "step",
    rankdir: str = "TB",
) -> str:
    """Draw ``spec`` to ``path``; the suffix picks the format (.svg .png .pdf .dot).

    ``spec`` is a checked :class:`FlowSpec` (or its graph), or a path to a .flow file,
    which is loaded and validated first with ``flow`` and ``overrides``: an invalid spec
    raises :class:`flowspec.FlowSpecError` and writes nothing. .svg, .png and .pdf come
    from Graphviz's ``dot``; .dot is the DOT source. The file is written to a temporary
    name and renamed, so it is never seen half-written. Returns the path written.
    """
    out = Path(path)
    fmt = out.suffix.lower()
    if fmt not in FORMATS:
        raise UnsupportedFormat(
            f"cannot render to `{out.name}`: the output must end in {', '.join(FORMATS)}"
        )
    if isinstance(spec, (FlowSpec, nx.DiGraph)):
        if flow is not None or overrides:
            raise ValueError("flow and overrides apply only when spec is a path to a .flow file")
        source: FlowSpec | nx.DiGraph = spec
    else:
        source = load(spec, flow, overrides)  # raises FlowSpecError before any write
    dot = to_dot(source, detail=detail, rankdir=rankdir)
    if fmt == ".dot":
        data = dot.source.encode()
    else:
        data = dot.pipe(format=fmt[1:])
    _write_atomic(out, data)
    return str(out)
