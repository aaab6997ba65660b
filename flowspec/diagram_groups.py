"""The layer sequence as a diagram draws it (internal): levels, steps and runs of steps.

:func:`group_layers` splits the execution order of a FlowGraph into levels (:class:`Level`)
of steps (:class:`Step`) and, for the ``step`` and ``level`` details, merges a run of identical
consecutive steps (same layer kinds, arguments and shapes) into one, drawn once;
:func:`_range_path` names a layer of such a run (``level1.step01-04.coupling``).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

import networkx as nx

from .flowgraph import layer_sequence


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
