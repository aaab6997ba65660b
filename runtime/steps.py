"""Training steps that never wait for the device, and the flushes that read their numbers.

A step (:meth:`Steps.step`) makes the batch, computes the loss, backpropagates, clips and
updates without a host synchronisation: no ``float(loss)``, no ``if not isfinite(norm)``.
What the log needs of it (the loss averaged over the ranks, the gradient norm, whether the
batch was finite) stays on the device in a small buffer, with the host-side learning rate;
:meth:`Steps.flush` reads the whole buffer at once (one synchronisation) and returns one
record per step. The trainer flushes at the steps of :func:`flush_due`: every
:data:`FLUSH_EVERY` steps, at every validation, sample and checkpoint step and at the last
step, so ``metrics.jsonl`` still holds one record per step, written in batches.

Non-finite steps are handled as a GradScaler handles overflow, but without its
``found_inf.item()``: each step computes ``ok = isfinite(loss) & isfinite(grad norm) &
isfinite(batch)`` on the device. From the first step that is not ``ok`` on, updates are
skipped device-side: the parameters are copied before the optimiser step and put back with
``torch.where`` when the run has gone bad, so they stay exactly those the first bad step
saw (the optimiser's moments may take the poisoned gradients; they are never saved). This
costs one copy of the parameters in memory and a copy and a select per step, a small share
of the optimiser's own passes over them (about 3 ms of a 0.5-1 s step of the demo on CPU). The
flush finds the first bad step; the trainer then stops before validating or writing a
checkpoint, and names the step and the first layer whose output went non-finite by
re-running that step's batch (a pure function of the step) on those very parameters.

The encoder's pretraining (:mod:`runtime.pretrain`) keeps its L1 losses on the device the
same way and reads them at the same flush points; a non-finite one stops the run there,
before the checkpoint, naming its step.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from . import distributed as ddp
from . import foreach
from .objective import Batch

#: A training step's numbers reach ``metrics.jsonl`` (and the progress bar) at least this
#: often, in steps; validation, sample and checkpoint steps flush too.
FLUSH_EVERY = 50


def flush_due(done: int, recipe: Any) -> bool:
    """Whether the trainer reads the buffered steps after step ``done`` (1-based)."""
    return (
        done % FLUSH_EVERY == 0
        or done == recipe.steps
        or done % recipe.val_every == 0
        or done % recipe.sample_every == 0
        or done % recipe.checkpoint_every == 0
    )


@dataclass
class Bad:
    """The first step of a flush window that was not finite (``step``: 0-based)."""

    step: int
    loss: float
    grad_norm: float
    batch_finite: bool

    def what(self) -> str:
        if not self.batch_finite:
            return "the training batch holds NaN or Inf"
        if not math.isfinite(self.loss):
            return f"the loss is {self.loss}"
        return f"the gradient norm is {self.grad_norm}"


@dataclass
class Flushed:
    """The finite steps of a window, as ``metrics.jsonl`` records, and the first bad one."""

    records: list[dict[str, Any]]
    bad: Bad | None
    seconds: float  # wall time of the window's steps (the rest of the window when bad)


class Steps:
    """The optimisation steps of a run between two flushes.

    ``net`` is the :class:`runtime.objective.Objective` (under DDP when distributed) and
    ``model`` its flow; ``batch(step)`` gives the :class:`runtime.objective.Batch` of a step
    (a pure function of the step); ``freeze`` is a :class:`runtime.pretrain.Freeze`;
    ``clip`` the gradient-norm bound (None: none).
    """

    ema: Any = None  # a runtime.ema.EMA, updated after each step (set by the trainer)

    def __init__(
        self,
        model: Any,
        net: Any,
        opt: Any,
        sched: Any,
        batch: Callable[[int], Batch],
        freeze: Any,
        clip: float | None,
        d: ddp.Dist,
        batch_size: int,
    ):
        self.net, self.opt, self.sched = net, opt, sched
        self.batch, self.freeze, self.clip, self.d = batch, freeze, clip, d
        self.model, self.batch_size = model, batch_size
        self.params = [p for p in model.parameters()]
        self.backup = [torch.empty_like(p) for p in self.params]
        dev = self.params[0].device
        self.halted = torch.zeros((), dtype=torch.bool, device=dev)  # a bad step was seen
        self.rows: list[Tensor] = []  # per step: (loss, grad norm, batch finite)
        self.host: list[tuple[int, float]] = []  # per step: (step, lr after it)
        self.t_start = time.perf_counter()
        self.t_train = 0.0  # seconds spent in steps, windows summed
        #: keys every train record carries (``bpd_estimated``; set by the trainer)
        self.tags: dict[str, Any] = {}

    def step(self, step: int) -> None:
        """Step ``step`` (0-based), with no host synchronisation."""
        self.model.train()
        self.freeze.before(step)
        per_sample, extras = self.net(self.batch(step))
        loss, finite = per_sample.mean(), extras["finite"]
        # one all-reduce for both: the mean loss, and how many ranks had a non-finite batch
        both = ddp.mean(self.d, torch.stack([loss.detach(), (~finite).to(loss.dtype)]))
        mean, finite = both[0], both[1] == 0
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        self.freeze.drop_grads(step)
        norm = torch.nn.utils.clip_grad_norm_(self.params, self.clip or math.inf)
        ok = torch.isfinite(mean) & torch.isfinite(norm) & finite
        self.halted = self.halted | ~ok
        self._guarded_update()
        if self.ema is not None:  # [ema hook] runtime.ema: fold in the new parameters
            self.ema.update(step)
        self.sched.step()
        self.rows.append(torch.stack([mean, norm.detach().to(mean.dtype), finite.to(mean.dtype)]))
        self.host.append((step, self.opt.param_groups[0]["lr"]))

    @torch.no_grad()
    def _guarded_update(self) -> None:
        """``opt.step()``, undone on the device once a step was not finite."""
        foreach.copy_(self.backup, self.params)
        self.opt.step()
        for p, b in zip(self.params, self.backup):
            torch.where(self.halted, b, p, out=p)

    def flush(self) -> Flushed:
        """The buffered steps as records (one synchronisation); the buffer starts afresh."""
        values = torch.stack(self.rows).tolist() if self.rows else []
        now = time.perf_counter()
        seconds, n = now - self.t_start, len(values)
        per = seconds / n if n else 0.0
        t0, self.t_train = self.t_train, self.t_train + seconds
        records, bad = [], None
        for (step, lr), (loss, norm, finite) in zip(self.host, values):
            if not (math.isfinite(loss) and math.isfinite(norm) and finite):
                bad = Bad(step, loss, norm, bool(finite))
                break
            record = {
                "kind": "train",
                "step": step + 1,
                "loss": loss,
                "bpd": loss,
                "lr": lr,
                "grad_norm": norm,
                "images_per_s": self.batch_size / per if per else None,
                "time": round(t0 + (len(records) + 1) * per, 4),
                **self.tags,
            }
            if self.freeze.until:
                record["encoders_frozen"] = step < self.freeze.until
            records.append(record)
        self.rows, self.host = [], []
        return Flushed(records, bad, seconds)

    def restart_clock(self) -> None:
        """Start the next window's wall time (after the flush's validation, samples...)."""
        self.t_start = time.perf_counter()


def write_records(records: list[dict[str, Any]], log: Any, tracker: Any, bar: Any) -> None:
    """A flush's records to ``metrics.jsonl``, the tracker and the progress bar."""
    if not records:
        return
    for record in records:
        log.write(record)
        tracker.train(record["step"], record)
    recent = [r["loss"] for r in records[-20:]]
    rate = records[-1]["images_per_s"] or 0
    bar.update(len(records))
    bar.set_postfix_str(
        f"bpd: last step {recent[-1]:.3f}, mean of last {len(recent)} "
        f"{sum(recent) / len(recent):.3f} | {rate:.0f} img/s",
        refresh=False,
    )
