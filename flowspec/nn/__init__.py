"""The torch modules of flowspec's built-in vocabulary, one file per declaration file of
:mod:`flowspec.layers` (same name), each plain PyTorch code. A declaration names its module
by import path, so this package is imported only when a model is built.

:class:`FlowLayer` (also ``flowspec.FlowLayer``) is the base of every layer module,
plugins' included.
"""

from __future__ import annotations

from .base import FlowLayer, Module

__all__ = ["FlowLayer", "Module"]
