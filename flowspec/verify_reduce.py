"""The reduced sizes ``flowspec verify`` checks a flow at.

A layer is built at the smallest spatial size its kind's shape rule accepts
(:func:`reduced_shape`); the whole model at the smallest square input its levels accept,
its conditions shrunk by the same factor, a condition's own flow at its condition's new
size and the networks inside layers narrowed (:func:`reduced_model_spec`). A layer whose
log-det is estimated is checked in its kind's exact mode (:func:`exact_mode`); the estimator
itself separately (``verify.check_estimator``).
"""

from __future__ import annotations

from typing import Any

from .check import check
from .errors import Collector
from .ir import FlowSpec
from .kinds import KINDS, Issue

_SIZES = (2, 4, 6, 8, 12, 16, 24, 32, 48, 64, 96, 128)


def _fits(kind: Any, shape: tuple[int, int, int], args: dict[str, Any]) -> bool:
    a = kind.Args(**args)
    return not isinstance(kind.out_shape(shape, a), Issue) and not kind.issues(shape, a)


def reduced_shape(
    kind: Any, shape: tuple[int, int, int], args: dict[str, Any]
) -> tuple[int, int, int]:
    """The smallest ``C x s x s`` (capped at the real H, W) the kind's shape rule accepts."""
    c, h, w = shape
    for s in _SIZES:
        small = (c, min(s, h), min(s, w))
        if small == shape or _fits(kind, small, args):
            return small
    return shape


def reduced_model_spec(spec: FlowSpec) -> FlowSpec:
    """``spec`` with the smallest square input its levels accept (channels unchanged), its
    image and label-map conditions shrunk by the same factor, and a condition's own flow
    run at its condition's new size: a condition left at its real size would fail the
    check (or, for a flow that models it, run at full size). The networks inside layers
    are narrowed to ``NARROW`` (``hidden``, ``cond_hidden``, ``features``, in the flow, its
    encoders and a condition's flow) where the check still passes: the whole-model check
    tests how layers compose, and each distinct layer is checked at its real width."""
    _, h, w = spec.input
    for s in _SIZES:
        if s >= min(h, w):
            break
        for narrow in (True, False):
            small = _shrunk(spec, min(s, h), min(s, w), narrow)
            if small is None:
                break
            diags = Collector()
            check(small, diags)
            if not diags.has_errors:
                return small
    return spec


#: the width the whole-model check gives every network inside a layer (see narrowed)
NARROW = 8
_WIDTH_ARGS = ("hidden", "cond_hidden", "features")


def narrowed(args: dict[str, Any]) -> None:
    """Cap the width arguments of a layer or encoder (and of a net written as a call)."""
    for name, value in args.items():
        if isinstance(value, dict):
            narrowed(value)
        elif name in _WIDTH_ARGS and isinstance(value, int) and value > NARROW:
            args[name] = NARROW


def _shrunk(spec: FlowSpec, h: int, w: int, narrow: bool = False) -> FlowSpec | None:
    """A copy at input ``h x w`` (networks narrowed with ``narrow``); None when a
    condition's size cannot keep its ratio to the input in whole pixels."""
    small = spec.model_copy(deep=True)
    if narrow:
        for layer in small.layers:
            narrowed(layer.args)
        for cond in small.conditions:
            narrowed(cond.encoder.args)
            for layer in cond.flow.layers if cond.flow is not None else []:
                narrowed(layer.args)
    _, big_h, big_w = spec.input
    small.input = (spec.input[0], h, w)
    small.expect_latent = None
    for cond in small.conditions:
        if cond.type == "class":
            continue
        ch, ch_h, ch_w = cond.shape
        if (ch_h * h) % big_h or (ch_w * w) % big_w:
            return None
        cond.shape = (ch, ch_h * h // big_h, ch_w * w // big_w)
        if cond.flow is not None:
            cond.flow.input = (cond.flow.input[0], *cond.shape[1:])
            cond.flow.expect_latent = None
    return small


def exact_mode(spec: FlowSpec) -> FlowSpec:
    """``spec`` with every layer that estimates its log-det in its kind's exact mode (the
    estimators are checked layer by layer, :func:`check_estimator`)."""
    if not any(KINDS[layer.kind].estimates_logdet_for(layer.args) for layer in spec.layers):
        return spec
    spec = spec.model_copy(deep=True)
    for layer in spec.layers:
        kind = KINDS[layer.kind]
        if kind.estimates_logdet_for(layer.args):
            layer.args = {**layer.args, **kind.exact_args}
    return spec
