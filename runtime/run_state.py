"""A training run's state in one place, what a checkpoint stores of it, and resuming it.

:class:`RunState` holds what the loop works with (the processes, the device, the task and
its data, the flow, the objective and its DDP wrapper, optimiser and scheduler, the run
folder and its log) and what changes as the run goes (the first step, the best validation
bits/dim, the encoders' freeze boundary, the last checkpoint written, training time, the
files written). :func:`checkpoint_state` is the checkpoint of it (format of
:mod:`runtime.checkpoint`), :func:`resume` reads one back into it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from flowspec.ir import FlowSpec
from flowspec.kinds import estimated_layers

from . import augment
from . import checkpoint as ckpt
from . import distributed as ddp
from .batches import BatchStream
from .errors import RunError
from .finite import check_finite
from .metrics import MetricsLog
from .objective import Batch, Objective
from .recipe import Recipe
from .task_base import Task, TaskData

__all__ = ["RunState", "checkpoint_state", "resume"]


@dataclass
class RunState:
    """One training run: its fixed parts, then what changes as it goes."""

    spec: FlowSpec
    recipe: Recipe
    d: ddp.Dist
    dev: torch.device
    task: Task
    data: TaskData
    model: Any  # the flow (a FlowModel, with q as its `dequantizer` under variational)
    objective: Objective
    opt: Any
    sched: Any
    out: Path
    log: MetricsLog
    pre: Any = None  # `pretrain encoder`: a runtime.pretrain.Pretraining
    net: Any = None  # the objective under DDP (the objective itself on one process)
    #: the steps done when this run began (the checkpoint's, when resuming)
    start: int = 0
    best: float | None = None  # the best validation bits/dim so far
    #: `freeze encoder`: how many first flow steps leave the encoders fixed (None until
    #: the run knows: a resumed run keeps its first run's count)
    freeze_until: int | None = None
    saved_step: int | None = None  # the last checkpoint this run can resume
    t_train: float = 0.0  # seconds spent in training steps
    files: dict[str, Any] = field(default_factory=lambda: {"samples": []})
    #: the fixed validation batch of the reconstruction check
    recon: tuple[Tensor, dict[str, Tensor] | None] | None = None
    ema: Any = None  # `ema DECAY`: the parameters' average (runtime.ema.EMA)
    #: what a resumed run's checkpoint held of the average (`ema`, `ema_from`)
    ema_saved: dict[str, Any] | None = None

    @property
    def bpd_estimated(self) -> bool:
        """Whether the flow's log-likelihood, so its bits/dim, is an unbiased estimate (some
        layers estimate their log-dets), not an exact value."""
        return bool(estimated_layers(self.spec))

    def __post_init__(self) -> None:
        local = self.recipe.batch // self.d.world
        #: this process's share of every batch
        self.shard = slice(self.d.rank * local, (self.d.rank + 1) * local)
        self.stream = BatchStream(len(self.data.train), self.recipe.batch, self.recipe.seed)

    def host_batch(self, step: int) -> tuple[Tensor, Tensor, Tensor | None, Tensor]:
        """This process's share of the training batch of ``step`` (a pure function of the
        step): the sample indices, the uint8 images, their maps (or None) and the noise."""
        train, shard = self.data.train, self.shard
        r = self.recipe
        idx = self.stream.indices(step)[shard]
        maps = None if train.maps is None else train.maps[idx]
        noise = self.stream.noise(step, tuple(self.spec.input))[shard]
        # `augment hflip`: the flips are a function of the seed and the step too
        images, maps = augment.apply(
            r.augment, r.seed, step, r.batch, shard, train.images[idx], maps
        )
        return idx, images, maps, noise

    def batch(self, step: int) -> Batch:
        """The objective's batch of ``step``, on the device."""
        _, images, maps, noise = self.host_batch(step)
        return self.objective.batch(images, maps, noise, self.dev)

    def checked_inputs(self, step: int) -> tuple[Tensor, dict[str, Tensor] | None]:
        """The flow's inputs of ``step``, refused (naming the samples) when not finite: a
        host synchronisation, for the actnorm init and a failed step's diagnosis."""
        idx, images, maps, noise = self.host_batch(step)
        x, cond, _ = self.objective.inputs(self.objective.batch(images, maps, noise, self.dev))
        check_finite(
            x,
            cond,
            f"the training batch of step {step + 1}",
            idx,
            f"train split of `{self.recipe.data}`",
        )
        return x, cond


def checkpoint_state(
    s: RunState,
    step: int,
    source: dict[str, Any],
    plugins: Any,
    class_names: tuple[str, ...] | None,
    cuda: list[Tensor] | None = None,
    layers: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    """The checkpoint of the run after ``step`` (``cuda``: every rank's CUDA RNG state;
    ``layers``: every rank's states of the layers' own generators, gathered by
    :func:`runtime.distributed.layer_rng_states`, which a single process need not pass)."""
    if layers is None and not s.d.active:
        layers = ddp.layer_rng_states(s.d, s.model)  # this process's own: no collective
    state = {
        "format": ckpt.FORMAT,
        "model": s.model.state_dict(),
        "optimizer": s.opt.state_dict(),
        "scheduler": s.sched.state_dict(),
        "rng": ckpt.rng_state(s.recipe.seed, step, cuda, layers),
        "step": step,
        "digest": s.spec.digest(),
        "recipe": s.recipe.to_json(),
        "flow": s.spec.name,
        "spec_file": source.get("spec_file"),
        "overrides": source.get("overrides") or {},
        "ir": s.spec.model_dump_json(),
        "best_val_bpd": s.best,
        "plugins": plugins,
    }
    if class_names is not None:  # class folders: `sample --class NAME`, grid rows
        state["class_names"] = list(class_names)
    if s.pre is not None:  # `pretrain encoder`: its steps done (and its optimiser)
        state["pretrain"] = s.pre.state()
    if s.freeze_until is not None:
        state["freeze_until"] = s.freeze_until
    if s.ema is not None:  # `ema DECAY`: the average, a full state_dict under `ema`
        state.update(s.ema.state(s.model))
    return state


def resume(s: RunState, *, strict: bool, warn: Callable[[str], None]) -> None:
    """Load the run folder's checkpoint into ``s``: model, optimiser and scheduler (when
    they fit), RNG states (the layers' own generators' too), pretraining, first step, best
    bits/dim, freeze boundary."""
    path = s.out / "checkpoint.pt"
    say = warn if s.d.main else None
    ck = ckpt.load(path)
    same = ckpt.check_spec(ck, s.spec, path, strict=strict, warn=say)
    ckpt.load_model(s.model, ck, path, strict=same, warn=say)
    _load_optimizer(s, ck, same, say)
    ckpt.set_rng_state(ck["rng"])
    ddp.restore_cuda_rng(s.d, s.dev, ck["rng"], s.recipe.seed, say)
    ddp.restore_layer_rng(s.d, s.model, ck["rng"], say)
    if s.pre is not None:
        s.pre.load(ck, path)
    s.start, s.best = int(ck["step"]), ck.get("best_val_bpd")
    s.saved_step = s.start
    if s.start > s.recipe.steps:
        raise RunError(
            f"the checkpoint is at step {s.start}, past --steps {s.recipe.steps}; "
            "pass a larger --steps to train on"
        )
    s.freeze_until = ck.get("freeze_until")  # the first run's boundary, if any
    if isinstance(ck.get("ema"), dict):
        s.ema_saved = {"ema": ck["ema"], "ema_from": ck.get("ema_from", 0)}
    changed = Recipe.from_json(ck["recipe"]).differences(s.recipe)
    if changed and say is not None:
        say(
            f"resuming with a changed recipe ({', '.join(changed)}): the run will not match "
            "an uninterrupted one"
        )


def _load_optimizer(
    s: RunState, ck: dict[str, Any], same: bool, say: Callable[[str], None] | None
) -> None:
    # the same model stored under other keys: a layer converted an older state dict on load
    # (e.g. iSDP's parameters, packed into two tensors), and the optimiser state lists the
    # old tensors
    if same and set(ck["model"]) != set(s.model.state_dict()):
        if say is not None:
            say(
                "the checkpoint stores some parameters under their older names (loaded by "
                "conversion), so the optimiser starts afresh"
            )
    elif same or ckpt.same_parameters(s.model, ck):
        try:
            s.opt.load_state_dict(ck["optimizer"])
            s.sched.load_state_dict(ck["scheduler"])
        except (ValueError, KeyError, TypeError, RuntimeError) as e:
            raise RunError(
                f"the optimiser state in {s.out / 'checkpoint.pt'} does not fit this model: {e}"
            ) from e
    elif say is not None:
        say("the model's parameters changed shape, so the optimiser starts afresh")
