r"""The training objective: a batch in, the per-sample loss and what the log reports of it out.

:class:`Objective` owns the whole loss. From a :class:`Batch` (on the device) it dequantises
the images (uniform noise as it is, or learnt noise ``u ~ q(u | x)`` with its ``log q``,
:mod:`runtime.dequantize`), runs the flow, which returns ``log p(x | y)`` and the
log-density of each condition modelled by a flow, and hands the bits/dim to the task, which
says what is minimised (:meth:`runtime.task_base.Task.loss`):

.. math:: \mathrm{bpd} = b - \frac{\log p(x) - \log q(u \mid x)}{D \log 2}

(``log q = 0`` under uniform dequantisation). DDP wraps the Objective, not the flow, so
everything with parameters that the loss runs through (the flow, its encoders, ``q``) runs
inside DDP's forward; nothing is handed from one call to the next through an attribute.

``q``'s parameters stay registered on the flow as its submodule ``dequantizer``: that is
where checkpoints have always stored them (``dequantizer.*`` entries of the model's state),
so the optimiser, checkpoints and resume are unchanged. The Objective is the only one that
runs it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor, nn

from .metrics import bits_per_dim

__all__ = ["Batch", "Objective", "batch_finite"]


@dataclass
class Batch:
    """A batch on the device. Either the flow's input ``x`` (uniformly dequantised), or, for
    a learnt ``q``, the integer ``levels`` and the uniform ``noise`` that ``q`` turns into
    it; ``cond``: the flow's conditions."""

    x: Tensor | None
    cond: dict[str, Tensor] | None
    levels: Tensor | None = None
    noise: Tensor | None = None


def batch_finite(x: Tensor, cond: dict[str, Tensor] | None) -> Tensor:
    """A device-side bool: every value of the images and float conditions is finite."""
    flags = [torch.isfinite(x).all()]
    flags += [torch.isfinite(v).all() for v in (cond or {}).values() if v.is_floating_point()]
    return torch.stack(flags).all() if len(flags) > 1 else flags[0]


class Objective(nn.Module):
    """``flow`` (a :class:`flowspec.FlowModel`) and ``task`` (:class:`runtime.task_base.Task`):
    ``forward(batch) -> (loss, extras)``, the per-sample loss (its mean is minimised) and
    per-sample ``bpd``, ``finite`` (a device bool for the batch) and what the task adds
    (``label_bpd``). ``uniform``: dequantise with the uniform noise itself even when the
    flow carries a learnt ``q`` (its bits/dim for comparison, a batch that must not depend
    on ``q``'s parameters)."""

    def __init__(self, flow: nn.Module, task: Any, *, uniform: bool = False):
        super().__init__()
        self.flow = flow
        self.task = task
        self.uniform = uniform
        self.dims = math.prod(task.spec.input)

    @property
    def dequantizer(self) -> nn.Module | None:
        """``q(u | x)`` under ``dequantize variational`` (and not ``uniform``), else None."""
        return None if self.uniform else getattr(self.flow, "dequantizer", None)

    def batch(
        self, images: Tensor, maps: Tensor | None, noise: Tensor, device: torch.device
    ) -> Batch:
        """A host batch (uint8 images, label maps or class ids, uniform noise) on ``device``."""
        if self.dequantizer is None:
            x, cond = self.task.inputs(images, maps, noise, device)
            return Batch(x, cond)
        levels, dev_noise = self.task.levels(images, noise, device)
        return Batch(None, self.task.conditions(images, maps, noise, device), levels, dev_noise)

    def inputs(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor] | None, Tensor | None]:
        """The flow's input, its conditions and ``log q(u | x)`` per sample (None: uniform)."""
        if batch.x is not None:
            return batch.x, batch.cond, None
        u, logq = self.dequantizer(batch.levels, batch.noise)
        x = (batch.levels.to(u.dtype) + u) / 2**self.task.bits - 0.5
        return x, batch.cond, logq

    def forward(self, batch: Batch) -> tuple[Tensor, dict[str, Tensor]]:
        x, cond, logq = self.inputs(batch)
        # class ids are not read again: the data's were checked when they were loaded
        zs, logdet, cond_logp = self.flow(x, cond, check_labels=False, with_cond_logp=True)
        logp = self.flow.latent_logp(zs) + logdet
        if logq is not None:
            logp = logp - logq.to(logp.dtype)
        bpd = bits_per_dim(logp, self.dims, self.task.bits)
        loss, extras = self.task.loss(bpd, cond_logp)
        return loss, {"bpd": bpd, "finite": batch_finite(x, cond), **extras}
