"""flowspec: a declarative model-spec compiler for normalizing-flow image models.

    spec  = flowspec.load("specs/attnflow_mnist.flow", flow="attnflow_imap_mnist")
    model = flowspec.compile(spec, device="auto", seed=0)
    zs, logdet = model(x)

The front end (``load``, ``loads``, ``graph``) never imports torch; ``compile``, the
runtime and ``FlowLayer`` (the base of a kind's torch module) do, on first use. The
vocabulary is open: ``flowspec.kind``, ``net``, ``encoder`` and ``prior`` register users'
declarations (``Args``, ``LayerKind``, ``FlowLayer``, ...), loaded as plugins
(``flowspec.plugins``).

The public API is the names of ``__all__`` and the modules of :data:`PUBLIC_MODULES`:
``flowspec.errors`` (the exception root, exit statuses, ``raise_if_errors``),
``flowspec.codes`` (diagnostic codes), ``flowspec.ir`` (the checked model description),
``flowspec.kinds`` (the registries of layer kinds, nets, encoders and priors),
``flowspec.plugins`` (loading plugins and what a spec uses of them), ``flowspec.importing``
(``import_object`` of a ``"package.module:Name"``), ``flowspec.condflow``
(how a flow-modelled condition sees its labels), ``flowspec.datasets`` and
``flowspec.recipe`` (the declarations of data sets and of the ``train { }`` recipe), and
``flowspec.commands`` (how a command joins the CLI, the arguments commands share). The
runtime (``runtime``, a separate package) uses nothing else; the rest is importable but
internal. ``load_checkpoint``, ``train`` and ``bits_per_dim`` are the runtime's, exposed here
lazily.
"""

from __future__ import annotations

from typing import Any

# The built-in vocabulary tells the registries which of its files declares each key (each
# file registers itself as a plugin does, torch-free, when a key of it is first used). Here,
# in the package's own start-up, it runs before any submodule is used, and the registries
# (flowspec.kinds) import none of the declarations that fill them: no import cycle.
from . import layers  # noqa: F401  (isort: first, so that every registry knows its keys)
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
from .values import parse_override

__version__ = "0.1.0"

__all__ = [
    "Args",
    "CompileBackendError",
    "CondArgs",
    "EncoderKind",
    "FlowError",
    "FlowLayer",
    "FlowModel",
    "FlowNameError",
    "FlowRuntimeError",
    "FlowShapeError",
    "FlowSpec",
    "FlowSpecError",
    "FlowSyntaxError",
    "Issue",
    "LayerKind",
    "Module",
    "NetKind",
    "PluginError",
    "PriorKind",
    "analyze",
    "bits_per_dim",
    "compile",
    "encoder",
    "graph",
    "kind",
    "load",
    "load_checkpoint",
    "load_plugins",
    "loads",
    "net",
    "parse_override",
    "prior",
    "render",
    "rng_layers",
    "to_dot",
    "train",
    "verify",
    "verify_plugins",
]

#: the submodules that are public API besides the names of ``__all__``
PUBLIC_MODULES = (
    "flowspec.codes",
    "flowspec.commands",
    "flowspec.condflow",
    "flowspec.datasets",
    "flowspec.errors",
    "flowspec.importing",
    "flowspec.ir",
    "flowspec.kinds",
    "flowspec.plugins",
    "flowspec.recipe",
)

_LAZY = {
    "compile": ("flowspec.build", "compile"),
    "FlowModel": ("flowspec.build", "FlowModel"),
    "FlowLayer": ("flowspec.nn.base", "FlowLayer"),
    "Module": ("flowspec.nn.base", "Module"),
    "rng_layers": ("flowspec.nn.base", "rng_layers"),
    "FlowRuntimeError": ("flowspec.build", "FlowRuntimeError"),
    "CompileBackendError": ("flowspec.build", "CompileBackendError"),
    "graph": ("flowspec.flowgraph", "graph"),
    "render": ("flowspec.diagram", "render"),
    "to_dot": ("flowspec.diagram", "to_dot"),
    "verify": ("flowspec.verify", "verify"),
    "verify_plugins": ("flowspec.verify", "verify_plugins"),
    "load_checkpoint": ("runtime.api", "load_checkpoint"),
    "train": ("runtime.api", "train"),
    "bits_per_dim": ("runtime.metrics", "bits_per_dim"),
}


def __getattr__(name: str) -> Any:
    # torch (and graphviz) load only when a user asks for what needs them
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'flowspec' has no attribute {name!r}")
