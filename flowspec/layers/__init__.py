"""Torch modules of every layer kind, keyed by the registry's kind names.

This is the torch side of the layer registry; the parser and checker never import it.
``MODULES[kind](shape, args, cond_channels)`` builds a layer (see :mod:`.base` for the
protocol), ``ENCODERS[name](in_shape, args)`` a condition encoder.
"""

from __future__ import annotations

from .actnorm import ActNorm
from .attention import ISDP, IMap
from .base import FlowLayer
from .coupling import AdditiveCoupling, AffineCoupling
from .encoders import ConvNetEncoder, RRDBEncoder
from .injector import AffineInjector
from .invconv import InvConv1x1
from .mixture import MixtureCoupling
from .permute import Permute
from .prior import GaussianPrior
from .reshape import Squeeze
from .split import Split

MODULES: dict[str, type[FlowLayer]] = {
    "actnorm": ActNorm,
    "invconv": InvConv1x1,
    "permute": Permute,
    "coupling.affine": AffineCoupling,
    "coupling.additive": AdditiveCoupling,
    "coupling.mixture": MixtureCoupling,
    "injector": AffineInjector,
    "attention.imap": IMap,
    "attention.isdp": ISDP,
    "squeeze": Squeeze,
    "split": Split,
    "prior.gaussian": GaussianPrior,
}

ENCODERS: dict[str, type] = {
    "rrdb": RRDBEncoder,
    "convnet": ConvNetEncoder,
}

__all__ = ["ENCODERS", "MODULES", "FlowLayer"]
