"""An exponential moving average of the parameters (``ema DECAY``, ``--ema DECAY``).

With decay ``d`` and the parameters ``θ_1 ... θ_t`` after the flow's steps ``1 ... t``, the
average is the bias-corrected EMA

    e_t = sum_i (1 - d) d^(t-i) θ_i / (1 - d^t)

(Adam's correction): the weights sum to one and none falls on the parameters before the
first step, which a plain EMA started from them would keep (``d^t``: 22% for ``d = 0.999``
over 1,500 steps). It is updated in place as ``e_t = e_(t-1) + w_t (θ_t - e_(t-1))`` with
``w_t = (1 - d) / (1 - d^t)`` (``w_1 = 1``: ``e_1 = θ_1``), the same quantity, so the
average alone (``ema`` in the checkpoint: a full state_dict with the model's keys, buffers
as the model's) and the step resume it bit for bit. ``t`` counts from the first flow step
after actnorm's data-dependent initialisation (and after ``pretrain encoder``); the
checkpoint's ``ema_from`` is the step it started at. Every DDP rank updates its copy from
the same parameters with the same weights, so the copies agree bit for bit.

Validation, the best checkpoint's ``best_val_bpd`` and sample grids use the average
(:func:`averaged`); ``eval``, ``sample`` and ``load_checkpoint`` load ``ema`` unless told
``--no-ema`` / ``ema=False`` (:func:`weights`).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import torch
from torch import Tensor, nn

from . import foreach

__all__ = ["EMA", "averaged", "weights"]


class EMA:
    """The average of ``model``'s floating-point parameters with ``decay``, started at flow
    step ``start`` (0-based: the first step averaged is ``start + 1``)."""

    def __init__(
        self, model: nn.Module, decay: float, start: int, stored: dict[str, Tensor] | None = None
    ):
        self.decay, self.start = float(decay), int(start)
        self.names = [n for n, p in model.named_parameters() if p.is_floating_point()]
        self.params = [p for n, p in model.named_parameters() if p.is_floating_point()]
        with torch.no_grad():
            if stored is None or any(n not in stored for n in self.names):
                self.avg = [p.detach().clone() for p in self.params]
            else:
                self.avg = [
                    stored[n].to(p.device, p.dtype).clone()
                    for n, p in zip(self.names, self.params)
                ]

    def weight(self, step: int) -> float:
        """``w_t`` of flow step ``step`` (0-based), a host number: no synchronisation."""
        t = step - self.start + 1
        return (1.0 - self.decay) / (1.0 - self.decay**t)

    @torch.no_grad()
    def update(self, step: int) -> None:
        """Fold in the parameters after flow step ``step`` (0-based)."""
        foreach.lerp_(self.avg, [p.detach() for p in self.params], self.weight(step))

    def state_dict(self, model: nn.Module) -> dict[str, Tensor]:
        """The averaged model's state_dict: the model's keys, the average for the
        parameters, the model's own buffers."""
        out = dict(model.state_dict())
        for n, a in zip(self.names, self.avg):
            out[n] = a.detach().clone()
        return out

    def state(self, model: nn.Module) -> dict[str, Any]:
        """What a checkpoint keeps of it."""
        return {"ema": self.state_dict(model), "ema_from": self.start}


def start(
    model: nn.Module, decay: float | None, step: int, ck: dict[str, Any] | None
) -> EMA | None:
    """The run's average (None without ``ema``): from the checkpoint ``ck`` when it holds
    one, else starting at ``step``."""
    if decay is None:
        return None
    if ck is not None and isinstance(ck.get("ema"), dict):
        return EMA(model, decay, int(ck.get("ema_from", 0)), ck["ema"])
    return EMA(model, decay, step)


@contextmanager
def averaged(ema: EMA | None, model: nn.Module) -> Iterator[None]:
    """The model holds the averaged parameters inside the block, its own after it (copied
    back exactly, so training goes on bit for bit). Its buffers are restored too: state a
    forward derives from the weights (a spectral norm's power-iteration vectors, refreshed
    when the weights change) must not keep what the average gave it, on rank 0 alone."""
    if ema is None:
        yield
        return
    buffers = list(model.buffers())
    with torch.no_grad():
        raw = [p.detach().clone() for p in ema.params]
        kept = [b.detach().clone() for b in buffers]
        foreach.copy_(ema.params, ema.avg)
    try:
        yield
    finally:
        with torch.no_grad():
            foreach.copy_(ema.params, raw)
            for b, k in zip(buffers, kept):
                b.copy_(k)


@torch.no_grad()
def keep_average(ema: EMA) -> None:
    """Put the average into the model's parameters for good (the run is over: what
    :func:`runtime.train` returns is the model its validation measured)."""
    foreach.copy_(ema.params, ema.avg)


def weights(ck: dict[str, Any], use_ema: bool) -> dict[str, Any]:
    """The checkpoint ``ck`` with its averaged weights as ``model`` when it has them and
    ``use_ema`` (eval, sample, load_checkpoint), else as it is."""
    if use_ema and isinstance(ck.get("ema"), dict):
        return {**ck, "model": ck["ema"], "weights": "ema"}
    return {**ck, "weights": "raw"}
