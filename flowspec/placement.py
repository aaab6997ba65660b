"""After the statements ran: insert rules placed, then every layer given its stable path.

An insert rule (``insert actnorm after invconv in level 2..3``) adds a copy of its layer
next to every layer of the kind it names; a path (``level2.step07.coupling``) names a
layer by its container and kind, numbering a container's own layers before the inserted
ones, so that adding a rule never renames a layer that was already there.
"""

from __future__ import annotations

from .errors import Collector, did_you_mean
from .interpret import MAX_LAYERS, InsertRule
from .ir import LayerIR
from .kinds import KINDS

__all__ = ["apply_inserts", "assign_paths"]


def apply_inserts(
    layers: list[LayerIR], rules: list[InsertRule], diags: Collector
) -> list[LayerIR]:
    """``layers`` with the layers of ``rules`` inserted, the rules applied in order."""
    after_of: dict[int, int] = {}  # id(inserted layer) -> id(anchor) for `after` rules
    for rule in rules:
        key = rule.kind if rule.variant is None else f"{rule.kind}.{rule.variant}"
        out: list[LayerIR] = []
        matched = 0
        i = 0
        hits = [
            (cur.kind == key or cur.kind.split(".")[0] == key)
            and (
                rule.levels is None
                or (cur.level is not None and rule.levels[0] <= cur.level <= rule.levels[1])
            )
            for cur in layers
        ]
        if len(layers) + sum(hits) > MAX_LAYERS:
            diags.error(
                "E170",
                f"with the insert rule at {rule.span.short()} the flow "
                f"would have more than {MAX_LAYERS} layers",
                rule.kind_span,
                help="restrict the rule with `in level A..B`, or check the repeat counts",
            )
            return layers
        while i < len(layers):
            cur = layers[i]
            hit = hits[i]
            i += 1
            if not hit:
                out.append(cur)
                continue
            matched += 1
            src = rule.layer  # a copy whose containers are its own (spans are shared)
            new = src.model_copy(
                update={
                    "args": dict(src.args),
                    "trace": list(src.trace),
                    "arg_spans": dict(src.arg_spans),
                }
            )
            new.level, new.step = cur.level, cur.step
            if rule.place == "before":
                out.extend([new, cur])
                continue
            out.append(cur)
            # after the anchor and after what earlier rules put after this same anchor
            while i < len(layers) and after_of.get(id(layers[i])) == id(cur):
                out.append(layers[i])
                i += 1
            out.append(new)
            after_of[id(new)] = id(cur)
        if matched == 0:
            _no_match(layers, rule, key, diags)
        layers = out
    return layers


def _no_match(layers: list[LayerIR], rule: InsertRule, key: str, diags: Collector) -> None:
    shown = key.replace(".", " ")
    where = "" if rule.levels is None else f" in levels {rule.levels[0]}..{rule.levels[1]}"
    levels = sorted(
        {
            x.level
            for x in layers
            if x.level is not None and (x.kind == key or x.kind.split(".")[0] == key)
        }
    )
    present = sorted({x.kind.split(".")[0] for x in layers})
    if levels:
        help_ = f"`{shown}` layers are in levels {', '.join(map(str, levels))}"
    else:
        help_ = did_you_mean(rule.kind, present) or (
            "the flow has: " + ", ".join(present) if present else None
        )
    diags.error(
        "E401",
        f"insert rule matches nothing: no `{shown}` layer{where}",
        rule.kind_span,
        help=help_,
    )


def assign_paths(layers: list[LayerIR], n_steps: dict[int | None, int]) -> None:
    """Set every layer's path; ``n_steps``: the number of steps of each level (the width of
    the step numbers)."""
    width = max([2] + [len(str(n)) for n in n_steps.values()])
    bases = []
    for layer in layers:
        prefix = ""
        if layer.level is not None:
            prefix += f"level{layer.level}."
        if layer.step is not None:
            prefix += f"step{layer.step:0{width}d}."
        bases.append(prefix + KINDS[layer.kind].head)
    used: dict[str, int] = {}
    for inserted in (False, True):
        for layer, base in zip(layers, bases):
            if layer.inserted == inserted:
                used[base] = used.get(base, 0) + 1
                layer.path = base if used[base] == 1 else f"{base}_{used[base]}"
