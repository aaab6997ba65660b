"""The training loop: optimiser, warm-up, clipping, validation, samples, checkpoints, DDP.

Reproducibility contract: the parameters after step ``s`` are a function of the spec, the
recipe and nothing else. Data order and dequantisation noise are pure functions of
``(seed, step)`` (:class:`runtime.batches.BatchStream`), validation and sampling draw from
their own generators and never touch the global RNG, and a checkpoint holds everything else
(model, optimiser, scheduler, RNG states). So a run killed at any point and resumed from
its last checkpoint ends with exactly the parameters of an uninterrupted run.
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowspec.importing import import_object
from flowspec.ir import FlowSpec
from flowspec.plugins import used_plugins
from flowspec.recipe import OPTIMIZERS

from . import checkpoint as ckpt
from . import dequantize as dq
from . import distributed as ddp
from . import ema as ema_
from . import pretrain as pt
from . import schedule
from .errors import RunError
from .finite import bad_parameter, first_nonfinite, locate
from .images import plot_curve
from .metrics import MetricsLog
from .objective import Objective
from .recipe import RECON_WARN, Recipe
from .reconstruction import recon_batch
from .run_state import RunState, checkpoint_state, resume
from .soundness import verify_command
from .steps import Steps, flush_due, write_records
from .task_base import Task, TaskData
from .tasks import make_task
from .tracking import Tracker, open_tracker
from .validation import record_tags, run_files, samples, summary, validate


def make_optimizer(model: nn.Module, r: Recipe) -> tuple[torch.optim.Optimizer, Any]:
    """The recipe's optimiser; the learning rate a linear warm-up from ``lr / warmup`` to
    ``lr``, then the recipe's schedule (:mod:`runtime.schedule`)."""
    cls = import_object(OPTIMIZERS[r.optimizer].implementation)
    # foreach: one multi-tensor kernel per update step instead of a loop over the parameter
    # tensors (on CPU, where torch does not pick it itself, 0.6-0.7x of the update's time)
    opt = cls(model.parameters(), lr=r.lr, weight_decay=r.weight_decay, foreach=True)
    return opt, torch.optim.lr_scheduler.LambdaLR(opt, schedule.factor(r))


def needs_init(model: nn.Module) -> bool:
    """Whether some actnorm still waits for its data-dependent initialisation."""
    return any(not bool(b) for n, b in model.named_buffers() if n.endswith("initialized"))


@dataclass
class RunResult:
    """What :func:`runtime.train` returns. ``model`` holds the weights that ``val_bpd``
    describes: with ``ema``, the average (as ``load_checkpoint`` and ``eval`` give it;
    ``weights == "ema"``), else the trained ones (``"raw"``); the checkpoint keeps both."""

    out: Path
    step: int
    val_bpd: float | None
    summary: dict[str, Any]
    model: Any = field(repr=False, default=None)
    weights: str = "raw"


def default_out(spec: FlowSpec) -> Path:
    return Path("runs") / f"{spec.name}-{datetime.now().strftime('%Y%m%d-%H%M%S')}"


class Trainer:
    """One training run. ``recon_warn``: the relative reconstruction error of the validation
    batch above which a validation warns (``None`` or 0: never); ``strict``: refuse to
    ``resume`` from a checkpoint of another model (else warn and load what matches);
    ``verified``: whether the flow's plugin vocabulary was verified (``summary.json``);
    ``threads``: torch's CPU threads as ``--threads`` set them (for the resume command)."""

    #: the data's class names (class folders), stored in checkpoints and summary.json
    class_names: tuple[str, ...] | None = None

    def __init__(
        self,
        spec: FlowSpec,
        recipe: Recipe,
        *,
        out: str | os.PathLike | None,
        device: str,
        resume: bool,
        progress: bool,
        source: dict[str, Any],
        recon_warn: float | None = RECON_WARN,
        strict: bool = True,
        build_options: dict[str, Any] | None = None,
        tensorboard: bool = False,
        verified: bool = True,
        threads: int | None = None,
        supplied: Callable[[Task], TaskData] | None = None,
    ):
        self.spec, self.recipe = spec, recipe
        self.supplied = supplied  # the data from Python (runtime.userdata), else the recipe's
        self.verified, self.threads = verified, threads
        self.plugins = used_plugins(spec)  # recorded in checkpoints and the summary
        self.tensorboard = tensorboard
        self.tracker = Tracker()  # a TensorBoard writer on the main process when asked
        self.build_options = dict(build_options or {})
        self.out_arg, self.device_arg = out, device
        self.resume, self.progress, self.source = resume, progress, source
        if recon_warn is not None and not (recon_warn >= 0 and math.isfinite(recon_warn)):
            raise RunError(
                f"the reconstruction warning threshold must be a non-negative "
                f"number, got {recon_warn}"
            )
        self.recon_warn, self.strict = recon_warn, strict
        self.state: RunState | None = None  # the run's state, once set up

    # ---------------------------------------------------------------- set-up
    def _folder(self, d: ddp.Dist) -> Path:
        if self.resume and self.out_arg is None:
            raise RunError("--resume needs --out: the run folder to continue")
        out = Path(self.out_arg) if self.out_arg is not None else default_out(self.spec)
        if d.active:  # rank 0's clock names the folder
            names = [str(out)]
            torch.distributed.broadcast_object_list(names, 0)
            out = Path(names[0])
        ck = out / "checkpoint.pt"
        if self.resume and not ck.is_file():
            raise RunError(f"nothing to resume: {ck} does not exist")
        if not self.resume and ck.exists():
            raise RunError(
                f"{out} already holds a run; pass --resume to continue it, or choose another --out"
            )
        if out.exists() and not out.is_dir():
            raise RunError(f"--out {out} is a file, not a folder")
        ddp.barrier(d)
        if d.main:
            out.mkdir(parents=True, exist_ok=True)
            for stale in out.glob(".*.tmp"):  # left by a run killed mid-write
                stale.unlink(missing_ok=True)
        return out

    def _write_static(self, out: Path) -> None:
        (out / "config.json").write_text(self.spec.model_dump_json(indent=2) + "\n")
        (out / "recipe.json").write_text(json.dumps(self.recipe.to_json(), indent=2) + "\n")
        try:
            from flowspec import render

            render(self.spec, out / "model.svg")
        except (ImportError, AttributeError) as e:
            _warn(f"no model diagram: the renderer is not available ({e})")
        except Exception as e:  # noqa: BLE001 - a diagram never stops a run
            _warn(f"no model diagram: {type(e).__name__}: {e}")

    # ---------------------------------------------------------------- the run
    def run(self) -> RunResult:
        d, dev = ddp.setup(self.device_arg)
        try:
            return self._run(d, dev)
        finally:
            self.tracker.close()
            ddp.teardown(d)

    def _run(self, d: ddp.Dist, dev: torch.device) -> RunResult:
        s = self._setup(d, dev)
        self.state = s
        if self.resume:
            resume(s, strict=self.strict, warn=_warn)
        self._open_log(s)
        if s.pre is not None and not s.pre.finished:
            try:
                self._pretrain(s)
            except KeyboardInterrupt:
                if d.main:
                    print(
                        f"\nflowspec train: interrupted while pretraining; "
                        f"{self._resume_advice()}",
                        file=sys.stderr,
                    )
                raise
        idle = self._ready(s)
        try:
            self._loop(s)
            pt.set_trainable(idle, True)
        except KeyboardInterrupt:
            if d.main:
                print(f"\nflowspec train: interrupted; {self._resume_advice()}", file=sys.stderr)
            raise
        return self._finish(s)

    def _setup(self, d: ddp.Dist, dev: torch.device) -> RunState:
        """The task, its data, the flow and its objective, the run folder, the optimiser."""
        from flowspec import compile as build

        r, spec = self.recipe, self.spec
        task = make_task(spec, r)
        data = task.load() if self.supplied is None else self.supplied(task)
        self.class_names = data.class_names
        if data.train is None or len(data.train) == 0:
            raise RunError(f"data `{r.data}` has no training images")
        if r.batch % d.world:
            raise RunError(f"batch {r.batch} does not split evenly over {d.world} processes")
        model = _build(build, spec, dev, r.seed, self.build_options)  # before any folder
        ddp.seed_cuda(d, dev, r.seed)  # each rank its own CUDA stream
        dq.attach(model, r, tuple(spec.input))  # q(u|x) under `dequantize variational`
        out = self._folder(d)
        opt, sched = make_optimizer(model, r)
        s = RunState(
            spec,
            r,
            d,
            dev,
            task,
            data,
            model,
            Objective(model, task),
            opt,
            sched,
            out,
            MetricsLog(out / "metrics.jsonl"),
        )
        # `pretrain encoder`: its own phase before the flow's first step (runtime.pretrain)
        s.pre = pt.Pretraining(model, task, r, dev) if r.pretrain_steps else None
        return s

    def _open_log(self, s: RunState) -> None:
        """``metrics.jsonl`` cut back to the checkpoint (or started), the static files, the
        tracker (main process only)."""
        if not s.d.main:
            return
        if self.resume:
            s.log.truncate_after(
                s.start, pretrain=None if s.pre is None or s.start else s.pre.done
            )
        else:
            s.log.path.unlink(missing_ok=True)
        self._write_static(s.out)
        self.tracker = open_tracker(s.out, self.tensorboard, s.start + 1 if self.resume else None)
        self.tracker.diagram(s.spec)

    def _ready(self, s: RunState) -> list[nn.Parameter]:
        """Actnorm's init, DDP, the freeze boundary, the announcement and the reconstruction
        batch; returns the parameters set aside while the flow trains."""
        r, d, model = self.recipe, s.d, s.model
        if s.start < r.steps and needs_init(model):
            # Actnorm's data-dependent init, once, on the first batch (moments averaged over
            # ranks inside the layer); then rank 0's copy is made everyone's, bit for bit.
            model.train()
            with torch.no_grad():
                model(*s.checked_inputs(s.start))
        # `ema DECAY`: the average starts after actnorm's init (or comes from the checkpoint)
        s.ema = ema_.start(model, r.ema, s.start, s.ema_saved)
        s.ema_saved = None
        idle = pt.head_parameters(model) if d.active else []  # no flow gradient reaches
        pt.set_trainable(idle, False)  # them, and DDP would wait for one
        s.net = ddp.wrap(d, s.objective, s.dev)  # DDP (without per-step buffer broadcasts)
        if s.freeze_until is None:  # a new run (or one from before the count was kept)
            s.freeze_until = pt.frozen_steps(r)
        if d.main:
            frozen = s.freeze_until if s.freeze_until > s.start else 0
            print(
                f"training flow `{s.spec.name}` ({sum(p.numel() for p in model.parameters()):,}"
                f" parameters) on `{r.data}`: task {r.task}, "
                f"{len(s.data.train):,} train / {len(s.data.val):,} val images, "
                f"steps {s.start}->{r.steps}, batch {r.batch}"
                f"{f' over {d.world} processes' if d.active else ''}, {s.dev}"
                f"{f'; encoders frozen for steps {s.start + 1}-{frozen}' if frozen else ''}",
                file=sys.stderr,
            )
        s.recon = recon_batch(s.task, s.data.val, r.seed, s.dev)
        return idle

    def _loop(self, s: RunState) -> None:
        """The flow's steps (:class:`runtime.steps.Steps`: no host synchronisation), read at
        the flushes of :func:`runtime.steps.flush_due`, then validation, samples and
        checkpoints."""
        r, d = self.recipe, s.d
        from tqdm import tqdm

        bar = tqdm(
            total=r.steps,
            initial=s.start,
            disable=not (d.main and self.progress),
            dynamic_ncols=True,
            unit="step",
            desc=self.spec.name,
            file=sys.stderr,
        )
        freeze = pt.Freeze(s.model, s.freeze_until, s.start, skip_backward=not d.active)
        steps = Steps(s.model, s.net, s.opt, s.sched, s.batch, freeze, r.clip, d, r.batch)
        steps.ema = s.ema  # folded in after every update
        steps.tags = record_tags(s)
        s.t_train = 0.0
        try:
            for step in range(s.start, r.steps):
                steps.step(step)
                if flush_due(step + 1, r):
                    self._flush(s, steps, bar)
                    self._at_flush(s, step + 1)
                    steps.restart_clock()
        except KeyboardInterrupt:  # the steps done so far still reach metrics.jsonl
            if d.main:
                write_records(steps.flush().records, s.log, self.tracker, bar)
            raise
        freeze.release()
        bar.close()

    def _at_flush(self, s: RunState, done: int) -> None:
        """Validation, samples and the checkpoint when due after step ``done``."""
        r, d = self.recipe, s.d
        last = done == r.steps
        if d.main and (done % r.val_every == 0 or last):
            self._validate(s, done)
        if d.main and (done % r.sample_every == 0 or last):
            samples(s, done, tracker=self.tracker, warn=_warn)
        if done % r.checkpoint_every == 0 or last:
            cuda = ddp.cuda_rng_states(d, s.dev)  # every rank's, for rank 0 to save
            layers = ddp.layer_rng_states(d, s.model)  # likewise
            if d.main:
                self._checkpoint(s, done, cuda=cuda, layers=layers)
        ddp.barrier(d)

    def _flush(self, s: RunState, steps: Steps, bar: Any) -> None:
        """Log the buffered steps; stop at the first that was not finite, naming it."""
        flushed = steps.flush()
        s.t_train = steps.t_train
        if s.d.main:
            write_records(flushed.records, s.log, self.tracker, bar)
        bad = flushed.bad
        if bad is not None:
            # the parameters are those the bad step saw (later updates were skipped), and
            # its batch is a function of the step: the diagnosis re-runs exactly that step
            x, cond = s.checked_inputs(bad.step)
            self._nonfinite(bad.step, s.model, x, cond, bad.what())

    def _pretrain(self, s: RunState) -> None:
        """``pretrain encoder`` (:func:`runtime.pretrain.run`), checkpointed as the flow is."""
        pt.run(
            s,
            progress=self.progress,
            name=self.spec.name,
            checkpoint=lambda done, cuda, layers: self._checkpoint(
                s, 0, pretrain_step=done, cuda=cuda, layers=layers
            ),
        )

    def _nonfinite(self, step: int, model: Any, x: Tensor, cond: Any, what: str) -> None:
        name = first_nonfinite(model, x, cond)
        r = self.recipe
        where = (
            f"the first non-finite output is in {locate(model, name)}"
            if name
            else "re-running the batch gives finite outputs in every layer, so the "
            "backward pass or the parameters overflowed"
        )
        raise RunError(
            f"training stopped at step {step + 1}: {what}; {where}. Nothing of this step "
            f"was saved. Try a lower learning rate (lr={r.lr:g}), a longer warm-up "
            f"(warmup={r.warmup}) or gradient clipping (clip={r.clip}); "
            f"{self._resume_advice(changed=True)}"
        )

    def _resume_advice(self, changed: bool = False) -> str:
        """Where a stopped run stands: its last checkpoint and the command that continues
        it, or that none was written yet (so the run starts again)."""
        from .recipe import resume_command, run_flags

        out, saved = self.state.out, self.state.saved_step
        ck = out / "checkpoint.pt"
        if saved is None:
            return (
                f"no checkpoint was written yet (the first is due at step "
                f"{self.recipe.checkpoint_every}), so there is nothing to resume: run "
                f"the same command again{' with those changes' if changed else ''}"
            )
        cmd = resume_command(
            self.spec,
            self.recipe,
            self.source,
            out,
            run_flags(
                device=self.device_arg,
                threads=self.threads,
                plugins=self.plugins,
                build_options=self.build_options,
                tensorboard=self.tensorboard,
                recon_warn=self.recon_warn,
                strict=self.strict,
                progress=self.progress,
                verified=self.verified,
            ),
        )
        return (
            f"the last checkpoint is step {saved} ({ck}); continue with"
            f"{' (after those changes)' if changed else ''}:\n  {cmd}"
        )

    def _validate(self, s: RunState, done: int) -> None:
        validate(
            s,
            done,
            recon_warn=self.recon_warn,
            tracker=self.tracker,
            verify_cmd=lambda: verify_command(
                self.spec, self.source.get("spec_file"), self.source.get("overrides")
            ),
            after=lambda: self._resume_advice(changed=True),
            best_state=lambda: self._state(s, done),
            warn=_warn,
        )

    def _state(
        self, s: RunState, step: int, cuda: list[Tensor] | None = None, layers: Any = None
    ) -> dict[str, Any]:
        return checkpoint_state(s, step, self.source, self.plugins, self.class_names, cuda, layers)

    def _checkpoint(
        self,
        s: RunState,
        done: int,
        pretrain_step: int | None = None,
        cuda: Any = None,
        layers: Any = None,
    ) -> None:
        bad = bad_parameter(s.model)
        if bad is not None:
            raise RunError(
                f"after step {done} a parameter of {bad} is not finite; the "
                "checkpoint was not written (the last good one is kept). Lower "
                "the learning rate or add clip=..."
            )
        ckpt.save_atomic(self._state(s, done, cuda, layers), s.out / "checkpoint.pt")
        s.saved_step = done
        where = {} if pretrain_step is None else {"pretrain_step": pretrain_step}
        s.log.write(
            {"kind": "checkpoint", "step": done, **where, "path": str(s.out / "checkpoint.pt")}
        )

    def _finish(self, s: RunState) -> RunResult:
        r, d, out = self.recipe, s.d, s.out
        identical = ddp.same_everywhere(d, s.model)
        records = s.log.read() if d.main else []
        info = summary(
            s,
            records,
            resumed=self.resume,
            source=self.source,
            verified=self.verified,
            plugins=self.plugins,
            class_names=self.class_names,
            identical=identical,
        )
        if d.main:
            if not (out / "curve.png").exists() or records:
                plot_curve(records, out / "curve.png", title=f"{self.spec.name} ({r.task})")
            info["files"] = run_files(out)
            (out / "summary.json").write_text(json.dumps(info, indent=2) + "\n")
            bpd = info["final_val_bpd"]
            print(
                f"done: {r.steps} steps, held-out bits/dim "
                f"{'n/a' if bpd is None else f'{bpd:.4f}'}; run folder {out}/ "
                f"(summary.json, metrics.jsonl, checkpoint.pt, curve.png, samples_*.png"
                f"{', model.svg' if (out / 'model.svg').exists() else ''})"
            )
        if d.active and not identical:
            raise RunError("the ranks ended with different parameters; DDP lost sync")
        if s.ema is None:
            return RunResult(out, r.steps, info["final_val_bpd"], info, s.model)
        ema_.keep_average(s.ema)  # the run is over: the weights validation measured
        return RunResult(out, r.steps, info["final_val_bpd"], info, s.model, "ema")


def _build(
    build: Any, spec: FlowSpec, dev: torch.device, seed: int, options: dict[str, Any]
) -> Any:
    """The model; a torch.compile backend that does not exist is a RunError."""
    from flowspec import CompileBackendError

    if options.get("autocast") == torch.float16:
        # float16 gradients underflow without a gradient scaler, which training does not use
        raise RunError(
            "--autocast fp16 is not supported for training (float16 gradients "
            "need a loss scaler); use --autocast bf16"
        )
    try:
        return build(spec, device=dev, seed=seed, **options)
    except CompileBackendError as e:
        raise RunError(
            f"--compile {options.get('compile')}: torch.compile has no such "
            f"backend; backends: {e.available}. No run folder was made"
        ) from None


def _warn(msg: str) -> None:
    print(f"flowspec: warning: {msg}", file=sys.stderr)
