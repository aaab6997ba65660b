"""Importing code by name: ``"package.module:Name"``.

With :func:`flowspec.plugins.load_plugin`, the only place where flowspec imports code by
name. Both take names from Python code (a declaration's ``module``, a registry entry's
implementation) or from the user's command line, never from a spec: reading a spec runs no
code (tests/test_untrusted_input.py).
"""

from __future__ import annotations

import importlib
from typing import Any


def import_object(target: str) -> Any:
    """The object named ``"package.module:Name"``, imported on first use."""
    module, _, name = target.partition(":")
    return getattr(importlib.import_module(module), name)
