"""flowspec: a declarative model-spec compiler for normalizing-flow image models.

    spec  = flowspec.load("specs/attnflow_mnist.flow", flow="attnflow_imap_mnist")
    model = flowspec.compile(spec, device="auto", seed=0)
    zs, logdet = model(x)

The front end (``load``, ``loads``, ``graph``) never imports torch; ``compile`` and the
runtime do, on first use.
"""

from __future__ import annotations

from typing import Any

from .api import analyze, load, loads
from .errors import FlowNameError, FlowShapeError, FlowSpecError, FlowSyntaxError
from .ir import FlowSpec

__version__ = "0.1.0"

__all__ = [
    "FlowModel", "FlowNameError", "FlowRuntimeError", "FlowShapeError", "FlowSpec",
    "FlowSpecError", "FlowSyntaxError", "analyze", "compile", "graph", "load", "loads",
    "render",
]

_LAZY = {
    "compile": ("flowspec.build", "compile"),
    "FlowModel": ("flowspec.build", "FlowModel"),
    "FlowRuntimeError": ("flowspec.build", "FlowRuntimeError"),
    "graph": ("flowspec.flowgraph", "graph"),
    "render": ("flowspec.diagram", "render"),
}


def __getattr__(name: str) -> Any:
    # torch (and graphviz) load only when a user asks for what needs them
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'flowspec' has no attribute {name!r}")
