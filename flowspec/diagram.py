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

This module is the entry point (:func:`to_dot`, :func:`render` and its file writing); the
grouping into levels and steps is :mod:`flowspec.diagram_groups`', the drawing
:mod:`flowspec.diagram_dot`'s, the looks :mod:`flowspec.diagram_style`'s.
"""

from __future__ import annotations

import os
import secrets
from pathlib import Path
from typing import Any

import graphviz
import networkx as nx

from .api import load
from .diagram_dot import _Builder
from .diagram_style import DETAILS, RANKDIRS
from .errors import EXIT_USAGE, FlowError
from .flowgraph import graph
from .ir import FlowSpec

FORMATS = (".svg", ".png", ".pdf", ".dot")


class UnsupportedFormat(FlowError, ValueError):
    """The output path's suffix is not one of .svg, .png, .pdf, .dot (the CLI's ``-o``)."""

    exit_code = EXIT_USAGE


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
