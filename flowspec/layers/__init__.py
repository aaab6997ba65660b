"""flowspec's built-in vocabulary: one file per layer kind, net, encoder and prior.

Each file holds a kind's torch-free declaration (registered with :func:`flowspec.kind` and
friends, exactly as a plugin does): its arguments, shape rule, issues and parameter count,
and its module by import path, ``"flowspec.nn.<same file>:Class"``, a plain torch file.
Importing this package registers all of them and imports no torch; torch loads when the
first module is built. Files whose name starts with ``_`` hold shared helpers only, and
:mod:`.base` forwards the old import path of ``FlowLayer``.
"""

from __future__ import annotations

import importlib
import pkgutil

import flowspec.kinds  # noqa: F401  (the registries the files below fill)

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_") and _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")
