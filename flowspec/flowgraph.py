"""The FlowGraph: the graph API (``flowspec.graph``) and what the renderer reads.

A networkx DiGraph built from checked IR (the FlowModel is built from the IR's layer list,
not from this graph). Nodes are the input, every layer (by its stable path), the latents
``z1..zL``, the prior, and each condition with its encoder; every node carries its shapes
and every edge the C×H×W of the tensor on it. Data edges have ``role="data"`` (or
``"latent"`` into a latent), conditioning edges ``role="cond"``.
"""

from __future__ import annotations

import os
from typing import Any

import networkx as nx

from .ir import FlowSpec


def _as_spec(
    spec: FlowSpec | str | os.PathLike,
    flow: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> FlowSpec:
    if isinstance(spec, FlowSpec):
        return spec
    from .api import load

    return load(spec, flow, overrides)


def encoder_features(spec: FlowSpec, name: str) -> int:
    from .kinds import encoder_channels

    return encoder_channels(spec.condition(name).encoder)


def graph(
    spec: FlowSpec | str | os.PathLike,
    flow: str | None = None,
    overrides: dict[str, Any] | None = None,
) -> nx.DiGraph:
    """Build the DiGraph of a checked spec (or of a .flow path, loaded first)."""
    spec = _as_spec(spec, flow, overrides)
    g = nx.DiGraph(name=spec.name, input=tuple(spec.input), file=spec.file)
    g.add_node("input", type="input", shape=tuple(spec.input), label="input")
    for c in spec.conditions:
        g.add_node(
            f"cond:{c.name}", type="condition", name=c.name, ctype=c.type, shape=tuple(c.shape)
        )
        if c.flow is not None:  # encoder=flow(NAME): the condition's own flow, its layers tapped
            feats = tuple(c.flow.latents[-1].shape)
        else:
            feats = (encoder_features(spec, c.name), c.shape[1], c.shape[2])
        g.add_node(
            f"encoder:{c.name}",
            type="encoder",
            name=c.name,
            kind=c.encoder.kind,
            args=dict(c.encoder.args),
            in_shape=tuple(c.shape),
            out_shape=feats,
            flow=c.flow.name if c.flow is not None else None,
        )
        g.add_edge(f"cond:{c.name}", f"encoder:{c.name}", role="cond", shape=tuple(c.shape))
    prev = "input"
    emitted = {z.source: z for z in spec.latents[:-1]}  # the latents layers emit, by layer
    for index, layer in enumerate(spec.layers):
        g.add_node(
            layer.path,
            type="layer",
            index=index,
            kind=layer.kind,
            args=dict(layer.args),
            in_shape=tuple(layer.in_shape),
            out_shape=tuple(layer.out_shape),
            level=layer.level,
            step=layer.step,
            inserted=layer.inserted,
            span=layer.span.model_dump(),
            on=layer.args.get("on"),
        )
        g.add_edge(prev, layer.path, role="data", shape=tuple(layer.in_shape))
        on = layer.args.get("on")
        if on:
            h, w = layer.in_shape[1], layer.in_shape[2]
            g.add_edge(
                f"encoder:{on}", layer.path, role="cond", shape=(spec.cond_width(on, layer), h, w)
            )
        z = emitted.get(layer.path)
        if z is not None:
            g.add_node(z.name, type="latent", shape=tuple(z.shape), source=layer.path)
            g.add_edge(layer.path, z.name, role="latent", shape=tuple(z.shape))
        prev = layer.path
    final = spec.latents[-1]
    g.add_node(
        "prior",
        type="prior",
        learned=spec.prior.learned,
        on=spec.prior.on,
        shape=tuple(final.shape),
    )
    g.add_edge(prev, "prior", role="data", shape=tuple(final.shape))
    g.add_node(final.name, type="latent", shape=tuple(final.shape), source="prior")
    g.add_edge("prior", final.name, role="latent", shape=tuple(final.shape))
    if spec.prior.on:
        g.add_edge(
            f"encoder:{spec.prior.on}",
            "prior",
            role="cond",
            shape=(spec.cond_width(spec.prior.on), final.shape[1], final.shape[2]),
        )
    return g


def layer_sequence(g: nx.DiGraph) -> list[tuple[str, dict[str, Any]]]:
    """The layers in execution order, following the data edges from the input."""
    out = []
    node = "input"
    while True:
        nxt = [v for v in g.successors(node) if g.edges[node, v]["role"] == "data"]
        if not nxt or nxt[0] == "prior":
            return out
        node = nxt[0]
        out.append((node, g.nodes[node]))
