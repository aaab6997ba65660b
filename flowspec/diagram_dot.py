"""Drawing a FlowGraph as DOT (internal): nodes, clusters, edges and the legend.

:class:`_Builder` draws, in graph order (no generated ids, so the DOT text is
deterministic), the input and conditions, each level as a cluster of step clusters (or, at
detail ``level``, one box per level), the prior, the latents, the data chain with each
edge's C×H×W, the conditioning as dashed edges, and a legend of the categories drawn.
:func:`flowspec.diagram.to_dot` runs it; the looks are :mod:`flowspec.diagram_style`'s.
"""

from __future__ import annotations

import itertools
from typing import Any

import graphviz
import networkx as nx

from .diagram_groups import Level, Step, _range_path, group_layers
from .diagram_style import (
    COND_COLOR,
    EDGE_FONT,
    FILL,
    FONT,
    MONO,
    _category,
    _e,
    _html,
    _id,
    _kind_title,
    _layer_label,
    _node_style,
    fmt_shape,
    nondefault_args,
)
from .evaluate import display_value
from .flowgraph import layer_sequence


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
