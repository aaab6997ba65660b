"""SRFlow's two-stage schedule: the encoder pretrained as an SR network, then held fixed.

SRFlow (Lugmayr et al. 2020) does not train its RRDB encoder from scratch with the flow.
It first trains the RRDB alone as an 8x super-resolution network, an L1 loss between its SR
output and the high-resolution image (andreas128/SRFlow, ``confs/RRDB_CelebA_8X.yml``: Adam,
learning rate 2e-4, betas (0.9, 0.99)), loads it into the flow and keeps it fixed for the
first half of the flow's training (``train_RRDB_delay: 0.5`` in ``SRFlow_CelebA_8X.yml``).

``train { }`` says so with two lines:

* ``pretrain encoder steps=N lr=X``: before the first flow step, ``N`` Adam steps on
  ``mean |sr(lr) - hr|`` over the parameters of every condition encoder with a
  super-resolution head (``srflow(head=true, scale=S)``: its :meth:`sr` gives the image).
  ``hr`` is the training image in the condition's units, ``lr`` the condition the task
  makes of it: the same pairs the flow then sees. Step ``p``'s images are a pure function
  of ``(seed, p)`` (:class:`runtime.batches.BatchStream` with its own tag), so a run
  killed during pretraining resumes from its checkpoint (which holds this optimiser and
  ``pretrain_step``) and ends bit for bit where an uninterrupted one does.
* ``freeze encoder fraction=F``: the condition encoders get no update during the first
  ``floor(F * steps)`` flow steps (``steps`` of the run's first start: the checkpoint keeps
  the count, so resuming with a larger ``--steps`` does not move it); their gradients are
  dropped before clipping and the optimiser step (on one process they are not computed).

The learning rate of the pretraining is constant (the RRDB configuration anneals it with a
cosine schedule with restarts) and there is no flip/rotation augmentation.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor, nn

from flowspec.kinds import ENCODERS

from . import distributed as ddp
from . import images as im
from .batches import BatchStream
from .errors import RunError
from .steps import FLUSH_EVERY

#: Adam's betas of SRFlow's RRDB pretraining (``beta1: 0.9``, ``beta2: 0.99``).
BETAS = (0.9, 0.99)
#: The tag of the pretraining's data stream (the flow's steps draw from their own).
TAG = "pretrain/"


def sr_encoders(model: Any) -> dict[str, nn.Module]:
    """The model's condition encoders that have a super-resolution head, by condition."""
    return {
        c.name: model.encoders[c.name]
        for c in model.spec.conditions
        if c.flow is None and ENCODERS[c.encoder.kind].has_head(c.encoder.args)
    }


def encoder_parameters(model: Any) -> list[nn.Parameter]:
    """Parameters of the condition encoders (a condition modelled by a flow has none)."""
    return [
        p
        for c in model.spec.conditions
        if c.flow is None
        for p in model.encoders[c.name].parameters()
    ]


def head_parameters(model: Any) -> list[nn.Parameter]:
    """Parameters that only the encoders' SR heads use: the flow's loss never reaches them
    (DDP, which waits for a gradient of every parameter it is given, must not get them)."""
    return [p for e in sr_encoders(model).values() for p in getattr(e, "head_parameters", list)()]


def set_trainable(params: list[nn.Parameter], on: bool) -> None:
    for p in params:
        if p.requires_grad != on:
            p.requires_grad_(on)


def frozen_steps(recipe: Any) -> int:
    """How many of the first flow steps leave the encoders unchanged."""
    return math.floor(recipe.freeze_fraction * recipe.steps)


class Pretraining:
    """The pretraining phase of a run: its optimiser, its batches and its progress.

    ``done`` counts the steps taken (restored from a checkpoint by :meth:`load`);
    :meth:`state` is what a checkpoint keeps of it.
    """

    def __init__(self, model: Any, task: Any, recipe: Any, dev: torch.device):
        self.recipe, self.task, self.dev = recipe, task, dev
        if recipe.task != "super_resolution":
            raise RunError(
                f"`pretrain encoder` super-resolves the condition into the input "
                f"image, so it needs task super_resolution, not `{recipe.task}`"
            )
        self.encoders = sr_encoders(model)
        if not self.encoders:
            raise RunError(
                f"`pretrain encoder`: flow `{model.spec.name}` has no "
                "condition encoder with a super-resolution head (e.g. "
                "encoder=srflow(..., head=true, scale=S))"
            )
        self.params = [p for e in self.encoders.values() for p in e.parameters()]
        self.opt = torch.optim.Adam(self.params, lr=recipe.pretrain_lr, betas=BETAS)
        self.done = 0

    @property
    def finished(self) -> bool:
        return self.done >= self.recipe.pretrain_steps

    def state(self) -> dict[str, Any]:
        """For the checkpoint: the steps done, and while unfinished the optimiser."""
        out: dict[str, Any] = {"step": self.done}
        if not self.finished:
            out["optimizer"] = self.opt.state_dict()
        return out

    def load(self, ck: dict[str, Any], path: Any) -> None:
        """Continue from a checkpoint. One written before any pretraining state existed, or
        after the flow's first step, counts as finished: the flow has started."""
        saved = ck.get("pretrain")
        if saved is None or int(ck.get("step", 0)) > 0:
            self.done = self.recipe.pretrain_steps
            return
        self.done = int(saved.get("step", 0))
        if not self.finished and "optimizer" not in saved:  # finished at fewer steps before
            print(
                f"pretraining continues from step {self.done} of an earlier, finished "
                f"pretraining to {self.recipe.pretrain_steps} with a fresh Adam state",
                file=sys.stderr,
            )
        elif not self.finished:
            try:
                self.opt.load_state_dict(saved["optimizer"])
            except (ValueError, KeyError, TypeError, RuntimeError) as e:
                raise RunError(
                    f"the pretraining optimiser state in {path} does not fit this model: {e}"
                ) from e

    def batch(
        self, images: Tensor, step: int, stream: Any, shard: slice
    ) -> tuple[dict[str, Tensor], Tensor]:
        """The conditions and the high-resolution target of pretraining step ``step``."""
        idx = stream.indices(step)[shard]
        hr = images[idx]
        cond = self.task.condition(hr, None, self.dev)
        return cond, im.to_condition(hr).to(self.dev)

    def step(self, cond: dict[str, Tensor], hr: Tensor, d: Any) -> Tensor:
        """One Adam step on the mean L1 distance (summed over the encoders with a head).
        Returns the loss averaged over the ranks, left on the device: :meth:`read` takes a
        run of them at once, so a step never waits for the device."""
        loss = sum(
            (e.sr(cond[name].to(hr.dtype)) - hr).abs().mean() for name, e in self.encoders.items()
        )
        value = ddp.mean(d, loss.detach())
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        if d.active:  # the mean gradient over the ranks' shards
            for p in self.params:
                if p.grad is not None:
                    torch.distributed.all_reduce(p.grad)
                    p.grad /= d.world
        self.opt.step()
        self.done += 1
        return value

    def read(self, losses: list[Tensor]) -> tuple[list[float], RunError | None]:
        """The losses of the last ``len(losses)`` steps (one synchronisation) up to the first
        non-finite one, and the error that stops the run there (None: all finite), to raise
        once the finite ones are logged and before anything after them is checkpointed."""
        values = torch.stack(losses).tolist()
        for i, value in enumerate(values):
            if not math.isfinite(value):
                step = self.done - len(values) + 1 + i
                return values[:i], RunError(
                    f"pretraining stopped at step {step}: the L1 loss is {value}; nothing of "
                    "this step was saved. Try a lower learning rate (pretrain encoder "
                    f"lr={self.recipe.pretrain_lr:g})"
                )
        return values, None


def announce(pre: Pretraining, batch: int, train_images: int) -> None:
    r = pre.recipe
    names = ", ".join(f"`{n}`" for n in pre.encoders)
    n = sum(p.numel() for p in pre.params)
    print(
        f"pretraining the encoder of condition {names} as an SR network ({n:,} parameters, "
        f"L1 loss, Adam lr {r.pretrain_lr:g}) on {train_images:,} train images: steps "
        f"{pre.done}->{r.pretrain_steps}, batch {batch}",
        file=sys.stderr,
    )


class Freeze:
    """``freeze encoder fraction=F`` in the flow's loop (``until``: :func:`frozen_steps` of
    the run's first recipe): before step ``s`` (0-based) call
    :meth:`before`, after its backward pass :meth:`drop_grads`; :meth:`release` at the end.
    Steps ``s < until`` leave the encoders unchanged: their gradients are dropped (so neither
    clipping nor the optimiser sees them, and Adam keeps no state for them yet); with
    ``skip_backward`` (one process) they are not even computed."""

    def __init__(self, model: Any, until: int, start: int, *, skip_backward: bool):
        self.until = until
        self.params = encoder_parameters(model) if self.until > start else []
        self.skip_backward = skip_backward  # DDP expects every parameter's gradient

    def before(self, step: int) -> None:
        if self.params and self.skip_backward:
            set_trainable(self.params, step >= self.until)

    def drop_grads(self, step: int) -> None:
        if step < self.until:
            for p in self.params:
                p.grad = None

    def release(self) -> None:
        set_trainable(self.params, True)


def run(
    s: Any,
    *,
    progress: bool,
    name: str,
    checkpoint: Callable[[int, list[Tensor] | None, list[dict[str, Any]] | None], None],
) -> None:
    """The encoders' SR pretraining of run ``s`` (a :class:`runtime.run_state.RunState`) up
    to ``pretrain_steps``: its L1 losses stay on the device and are read at the flush points
    of the flow's steps; ``checkpoint(done, cuda, layers)`` every ``checkpoint_every`` steps
    and at the end (flow step 0), on the main process, with every rank's CUDA RNG state and
    states of the layers' own generators."""
    from tqdm import tqdm

    r, pre, d = s.recipe, s.pre, s.d
    train = s.data.train
    stream = BatchStream(len(train), r.batch, r.seed, tag=TAG)
    if d.main:
        announce(pre, r.batch, len(train))
    bar = tqdm(
        total=r.pretrain_steps,
        initial=pre.done,
        disable=not (d.main and progress),
        dynamic_ncols=True,
        unit="step",
        desc=f"{name} (pretrain)",
        file=sys.stderr,
    )
    s.model.train()
    losses: list[Tensor] = []
    t0 = time.perf_counter()
    while not pre.finished:
        cond, hr = pre.batch(train.images, pre.done, stream, s.shard)
        losses.append(pre.step(cond, hr, d))
        done = pre.done
        save = done % r.checkpoint_every == 0 or pre.finished
        if not (save or done % FLUSH_EVERY == 0):
            continue
        first, n = done - len(losses) + 1, len(losses)
        (values, stop), losses = pre.read(losses), []
        per = (time.perf_counter() - t0) / n  # the window's mean step
        if d.main:
            for step, value in enumerate(values, first):
                s.log.write(
                    {
                        "kind": "pretrain",
                        "pretrain_step": step,
                        "l1": value,
                        "lr": r.pretrain_lr,
                        "seconds": round(per, 4),
                    }
                )
            bar.update(len(values))
            bar.set_postfix_str(f"L1 {values[-1]:.4f}" if values else "", refresh=False)
        if stop is not None:
            raise stop
        if save:
            cuda = ddp.cuda_rng_states(d, pre.dev)
            layers = ddp.layer_rng_states(d, s.model)
            if d.main:
                checkpoint(done, cuda, layers)
            ddp.barrier(d)
        t0 = time.perf_counter()
    bar.close()
