"""flowspec: a declarative model-spec compiler for normalizing-flow image models.

    spec  = flowspec.load("specs/attnflow_mnist.flow", flow="attnflow_imap_mnist")
    model = flowspec.compile(spec, device="auto", seed=0)
    zs, logdet = model(x)

The front end (``load``, ``loads``, ``graph``) never imports torch; ``compile``, the
runtime and ``FlowLayer`` (the base of a kind's torch module) do, on first use. The vocabulary is open: ``flowspec.kind``, ``net``, ``encoder`` and
``prior`` register users' declarations (``Args``, ``LayerKind``, ``FlowLayer``, ...), loaded
as plugins (``flowspec.plugins``).
"""

from __future__ import annotations

from typing import Any

from .api import analyze, load, loads
from .errors import FlowError, FlowNameError, FlowShapeError, FlowSpecError, FlowSyntaxError
from .ir import FlowSpec
from .kinds import (
    Args,
    CondArgs,
    EncoderKind,
    Issue,
    LayerKind,
    NetKind,
    PluginError,
    PriorKind,
    encoder,
    kind,
    net,
    prior,
)
from .plugins import load_plugins

__version__ = "0.1.0"

__all__ = [
    "Args", "CondArgs", "EncoderKind", "FlowError", "FlowLayer", "FlowModel", "FlowNameError",
    "FlowRuntimeError", "FlowShapeError", "FlowSpec", "FlowSpecError", "FlowSyntaxError",
    "Issue", "LayerKind", "Module", "NetKind", "PluginError", "PriorKind", "analyze",
    "compile", "encoder", "graph", "kind", "load", "load_checkpoint", "load_plugins", "loads",
    "net", "prior",
    "render", "verify",
]

_LAZY = {
    "compile": ("flowspec.build", "compile"),
    "FlowModel": ("flowspec.build", "FlowModel"),
    "FlowLayer": ("flowspec.nn.base", "FlowLayer"),
    "Module": ("flowspec.nn.base", "Module"),
    "FlowRuntimeError": ("flowspec.build", "FlowRuntimeError"),
    "graph": ("flowspec.flowgraph", "graph"),
    "render": ("flowspec.diagram", "render"),
    "verify": ("flowspec.verify", "verify"),
    "load_checkpoint": ("runtime.api", "load_checkpoint"),
}


def __getattr__(name: str) -> Any:
    # torch (and graphviz) load only when a user asks for what needs them
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'flowspec' has no attribute {name!r}")
