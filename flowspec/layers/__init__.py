"""flowspec's built-in vocabulary: one file per layer kind, net, encoder and prior.

Each file holds a kind's torch-free declaration (registered with :func:`flowspec.kind` and
friends, exactly as a plugin does) next to its module, whose class is defined without
importing torch (see :mod:`.base`). Importing this package registers all of them and
imports no torch; torch loads when the first module is built. Files whose name starts with
``_`` and :mod:`.base` hold shared helpers only.
"""

from __future__ import annotations

import importlib
import pkgutil

import flowspec.kinds  # noqa: F401  (the registries the files below fill)

for _info in sorted(pkgutil.iter_modules(__path__), key=lambda m: m.name):
    if not _info.name.startswith("_") and _info.name != "base":
        importlib.import_module(f"{__name__}.{_info.name}")
