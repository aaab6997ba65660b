"""Runtime: data, training, evaluation and sampling for compiled flowspec models.

    import runtime
    result  = runtime.train("specs/demo.flow", out="runs/demo")
    metrics = runtime.evaluate("specs/demo.flow", "runs/demo/checkpoint.pt")
    runtime.sample("specs/demo.flow", "runs/demo/checkpoint.pt", n=64, output="grid.png")

Modules: ``data`` (data sets), ``recipe`` (the train block resolved with flags), ``tasks``
(generation, super_resolution, translation; ``task_base``, what they share), ``streams``
(a run's random streams), ``metrics``, ``images``, ``checkpoint``,
``distributed``, ``determinism`` (``--deterministic``), ``batches`` (each step's images
and noise), ``objective`` (a batch to its per-sample loss), ``finite`` and
``reconstruction`` (what a run checks), ``trainer`` (the loop), ``run_state`` (a run's
state, its checkpoint, resuming it), ``validation`` (validation, samples, summary), ``api``
(these entry points), ``cli``. Importing this package is cheap; torch loads with
the first entry point used.
"""

from __future__ import annotations

from typing import Any

from .errors import RunError

__all__ = ["RunError", "RunResult", "evaluate", "sample", "train"]

_LAZY = {
    "train": ("runtime.api", "train"),
    "evaluate": ("runtime.api", "evaluate"),
    "sample": ("runtime.api", "sample"),
    "RunResult": ("runtime.trainer", "RunResult"),
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        module, attr = _LAZY[name]
        return getattr(importlib.import_module(module), attr)
    raise AttributeError(f"module 'runtime' has no attribute {name!r}")
