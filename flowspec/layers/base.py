"""The old import path of ``FlowLayer`` and ``Module``, kept for plugins that use it.

A kind's module used to be definable without importing torch: its file started with
``torch = nn = F = None``, subclassed ``flowspec.FlowLayer`` (or this module's), and
flowspec bound those names to torch when the first module was built. Modules are now plain
torch code in files of their own (built-in ones in ``flowspec/nn/``), and
``flowspec.FlowLayer`` is :class:`flowspec.nn.base.FlowLayer`, a real ``torch.nn.Module``.
A plugin written the old way changes one line: ``torch = nn = F = None`` becomes
``import torch``, ``from torch import nn``, ``import torch.nn.functional as F``; and its
declaration names that file by ``module = "pkg.mod:Name"`` instead of importing it, so
that ``flowspec check`` stays torch-free. Until it changes,
:func:`flowspec.nn.base.legacy_bind` binds the names as before, with a DeprecationWarning.

This module imports no torch: its two names are imported from :mod:`flowspec.nn.base` on
first use.
"""

from __future__ import annotations

import importlib
from typing import Any


def __getattr__(name: str) -> Any:
    if name in ("FlowLayer", "Module"):
        return getattr(importlib.import_module("flowspec.nn.base"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
