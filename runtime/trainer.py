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
import time
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from flowspec.ir import FlowSpec
from flowspec.importing import import_object
from flowspec.plugins import used_plugins
from flowspec.recipe import OPTIMIZERS

from . import augment, schedule
from . import checkpoint as ckpt
from . import dequantize as dq
from . import distributed as ddp
from . import ema as ema_
from . import pretrain as pt
from .batches import BatchStream
from .errors import RunError
from .finite import bad_parameter, check_finite, first_nonfinite, locate
from .images import plot_curve, save_png
from .metrics import MetricsLog
from .recipe import Recipe
from .reconstruction import RECON_WARN, recon_batch, recon_message, reconstruction
from .soundness import check_bpd, summary_warnings, verify_command
from .steps import FLUSH_EVERY, Steps, flush_due, write_records
from .tasks import Task, TaskData, make_task
from .tracking import Tracker, open_tracker


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
    """What :func:`runtime.train` returns."""

    out: Path
    step: int
    val_bpd: float | None
    summary: dict[str, Any]
    model: Any = field(repr=False, default=None)


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

    def __init__(self, spec: FlowSpec, recipe: Recipe, *, out: str | os.PathLike | None,
                 device: str, resume: bool, progress: bool, source: dict[str, Any],
                 recon_warn: float | None = RECON_WARN, strict: bool = True,
                 build_options: dict[str, Any] | None = None, tensorboard: bool = False,
                 verified: bool = True, threads: int | None = None):
        self.spec, self.recipe = spec, recipe
        self.verified, self.threads = verified, threads
        self.plugins = used_plugins(spec)  # recorded in checkpoints and the summary
        self.tensorboard = tensorboard
        self.tracker = Tracker()  # a TensorBoard writer on the main process when asked
        self.build_options = dict(build_options or {})
        self.out_arg, self.device_arg = out, device
        self.resume, self.progress, self.source = resume, progress, source
        if recon_warn is not None and not (recon_warn >= 0 and math.isfinite(recon_warn)):
            raise RunError(f"the reconstruction warning threshold must be a non-negative "
                           f"number, got {recon_warn}")
        self.recon_warn, self.strict = recon_warn, strict
        self.pre: pt.Pretraining | None = None  # `pretrain encoder`, set up by the run
        # `freeze encoder`: how many first flow steps leave the encoders fixed (None until
        # the run knows: a resumed run keeps its first run's count)
        self.freeze_until: int | None = None

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
            raise RunError(f"{out} already holds a run; pass --resume to continue it, or "
                           "choose another --out")
        if out.exists() and not out.is_dir():
            raise RunError(f"--out {out} is a file, not a folder")
        ddp.barrier(d)
        if d.main:
            out.mkdir(parents=True, exist_ok=True)
            for stale in out.glob(".*.tmp"):  # left by a run killed mid-write
                stale.unlink(missing_ok=True)
        return out

    def _state(self, model: nn.Module, opt: Any, sched: Any, step: int,
               cuda: list[Tensor] | None = None) -> dict[str, Any]:
        state = {
            "format": ckpt.FORMAT, "model": model.state_dict(), "optimizer": opt.state_dict(),
            "scheduler": sched.state_dict(), "rng": ckpt.rng_state(self.recipe.seed, step, cuda),
            "step": step, "digest": self.spec.digest(), "recipe": self.recipe.to_json(),
            "flow": self.spec.name, "spec_file": self.source.get("spec_file"),
            "overrides": self.source.get("overrides") or {},
            "ir": self.spec.model_dump_json(), "best_val_bpd": self.best,
            "plugins": self.plugins,
        }
        if self.class_names is not None:  # class folders: `sample --class NAME`, grid rows
            state["class_names"] = list(self.class_names)
        if self.pre is not None:  # `pretrain encoder`: its steps done (and its optimiser)
            state["pretrain"] = self.pre.state()
        if self.freeze_until is not None:
            state["freeze_until"] = self.freeze_until
        if getattr(self, "ema", None) is not None:  # [ema hook] the average, `ema`
            state.update(self.ema.state(model))
        return state

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
        from flowspec import compile as build

        r, spec = self.recipe, self.spec
        task = make_task(spec, r)
        data = task.load()
        self.class_names = data.class_names
        train = data.train
        if train is None or len(train) == 0:
            raise RunError(f"data `{r.data}` has no training images")
        if r.batch % d.world:
            raise RunError(f"batch {r.batch} does not split evenly over {d.world} processes")
        model = _build(build, spec, dev, r.seed, self.build_options)  # before any folder
        ddp.seed_cuda(d, dev, r.seed)  # each rank its own CUDA stream
        dq.attach(model, r, tuple(spec.input))  # q(u|x) under `dequantize variational`
        task.deq = dq.of(model)
        out = self._folder(d)
        log = MetricsLog(out / "metrics.jsonl")
        opt, sched = make_optimizer(model, r)
        # `pretrain encoder`: its own phase before the flow's first step (runtime.pretrain)
        self.pre = pt.Pretraining(model, task, r, dev) if r.pretrain_steps else None
        self.freeze_until = None
        self.best: float | None = None
        self.out, self.saved_step = out, None  # the last checkpoint this run can resume
        start = 0
        if self.resume:
            ck = ckpt.load(out / "checkpoint.pt")
            same = ckpt.check_spec(ck, spec, out / "checkpoint.pt", strict=self.strict,
                                   warn=_warn if d.main else None)
            ckpt.load_model(model, ck, out / "checkpoint.pt", strict=same,
                            warn=_warn if d.main else None)
            # the same model stored under other keys: a layer converted an older state dict
            # on load (e.g. iSDP's parameters, packed into two tensors), and the optimiser
            # state lists the old tensors
            if same and set(ck["model"]) != set(model.state_dict()):
                if d.main:
                    _warn("the checkpoint stores some parameters under their older names "
                          "(loaded by conversion), so the optimiser starts afresh")
            elif same or ckpt.same_parameters(model, ck):
                try:
                    opt.load_state_dict(ck["optimizer"])
                    sched.load_state_dict(ck["scheduler"])
                except (ValueError, KeyError, TypeError, RuntimeError) as e:
                    raise RunError(f"the optimiser state in {out / 'checkpoint.pt'} does not "
                                   f"fit this model: {e}") from e
            elif d.main:
                _warn("the model's parameters changed shape, so the optimiser starts afresh")
            ckpt.set_rng_state(ck["rng"])
            ddp.restore_cuda_rng(d, dev, ck["rng"], r.seed, _warn if d.main else None)
            if self.pre is not None:
                self.pre.load(ck, out / "checkpoint.pt")
            start, self.best = int(ck["step"]), ck.get("best_val_bpd")
            self.saved_step = start
            if start > r.steps:
                raise RunError(f"the checkpoint is at step {start}, past --steps {r.steps}; "
                               "pass a larger --steps to train on")
            self.freeze_until = ck.get("freeze_until")  # the first run's boundary, if any
            changed = Recipe.from_json(ck["recipe"]).differences(r)
            if changed and d.main:
                _warn(f"resuming with a changed recipe ({', '.join(changed)}): the run will "
                      "not match an uninterrupted one")
        if d.main:
            if self.resume:
                log.truncate_after(start, pretrain=None if self.pre is None or start
                                   else self.pre.done)
            else:
                log.path.unlink(missing_ok=True)
            self._write_static(out)
            self.tracker = open_tracker(out, self.tensorboard, start + 1 if self.resume else None)
            self.tracker.diagram(spec)
        stream = BatchStream(len(train), r.batch, r.seed)
        local = r.batch // d.world
        shard = slice(d.rank * local, (d.rank + 1) * local)

        def batch(step: int, check: bool = False) -> tuple[Tensor, dict[str, Tensor] | None]:
            """The inputs of step ``step``; ``check``: refuse them, naming the samples, when
            not finite (a host synchronisation: training steps check on the device)."""
            idx = stream.indices(step)[shard]
            maps = None if train.maps is None else train.maps[idx]
            noise = stream.noise(step, tuple(spec.input))[shard]
            images, maps = augment.apply(r.augment, r.seed, step, r.batch, shard,  # [augment
                                         train.images[idx], maps)                 #  hook]
            x, cond = task.inputs(images, maps, noise, dev)
            if check:
                check_finite(x, cond, f"the training batch of step {step + 1}", idx,
                             f"train split of `{r.data}`")
            return x, cond

        if self.pre is not None and not self.pre.finished:
            try:
                self._pretrain(d, task, train, model, opt, sched, log, out, shard)
            except KeyboardInterrupt:
                if d.main:
                    print(f"\nflowspec train: interrupted while pretraining; "
                          f"{self._resume_advice()}", file=sys.stderr)
                raise
        if start < r.steps and needs_init(model):
            # Actnorm's data-dependent init, once, on the first batch (moments averaged over
            # ranks inside the layer); then rank 0's copy is made everyone's, bit for bit.
            model.train()
            with torch.no_grad():
                model(*batch(start, check=True))
        # [ema hook] the average starts after actnorm's init (or comes from the checkpoint)
        self.ema = ema_.start(model, r.ema, start, ck if self.resume else None)
        idle = pt.head_parameters(model) if d.active else []  # no flow gradient reaches
        pt.set_trainable(idle, False)  # them, and DDP would wait for one
        net: Any = ddp.wrap(d, model, dev)  # DDP (without per-step buffer broadcasts)
        if self.freeze_until is None:  # a new run (or one from before the count was kept)
            self.freeze_until = pt.frozen_steps(r)
        if d.main:
            frozen = self.freeze_until if self.freeze_until > start else 0
            print(f"training flow `{spec.name}` ({sum(p.numel() for p in model.parameters()):,}"
                  f" parameters) on `{r.data}`: task {r.task}, "
                  f"{len(train):,} train / {len(data.val):,} val images, "
                  f"steps {start}->{r.steps}, batch {r.batch}"
                  f"{f' over {d.world} processes' if d.active else ''}, {dev}"
                  f"{f'; encoders frozen for steps {start + 1}-{frozen}' if frozen else ''}",
                  file=sys.stderr)
        self.recon_batch = recon_batch(task, data.val, r.seed, dev)
        try:
            files = self._loop(d, dev, task, data, model, net, opt, sched, batch, start, log,
                               out)
            pt.set_trainable(idle, True)
        except KeyboardInterrupt:
            if d.main:
                print(f"\nflowspec train: interrupted; {self._resume_advice()}",
                      file=sys.stderr)
            raise
        return self._finish(d, dev, model, log, out, files, start)

    def _loop(self, d: ddp.Dist, dev: torch.device, task: Task, data: TaskData, model: Any,
              net: Any, opt: Any, sched: Any, batch: Any, start: int, log: MetricsLog,
              out: Path) -> dict[str, Any]:
        """The flow's steps (:class:`runtime.steps.Steps`: no host synchronisation), read at
        the flushes of :func:`runtime.steps.flush_due`, then validation, samples and
        checkpoints."""
        r = self.recipe
        from tqdm import tqdm

        bar = tqdm(total=r.steps, initial=start, disable=not (d.main and self.progress),
                   dynamic_ncols=True, unit="step", desc=self.spec.name, file=sys.stderr)
        files: dict[str, Any] = {"samples": []}
        freeze = pt.Freeze(model, self.freeze_until, start, skip_backward=not d.active)
        steps = Steps(model, net, task, opt, sched, batch, freeze, r.clip, d, r.batch)
        steps.ema = self.ema  # [ema hook]
        self.t_train = 0.0
        try:
            for step in range(start, r.steps):
                steps.step(step)
                done = step + 1
                if not flush_due(done, r):
                    continue
                self._flush(d, steps, log, bar, model, batch)
                last = done == r.steps
                if d.main and (done % r.val_every == 0 or last):
                    self._validate(dev, task, data, model, opt, sched, done, log, out, files)
                if d.main and (done % r.sample_every == 0 or last):
                    self._samples(dev, task, data, model, done, out, files)
                if done % r.checkpoint_every == 0 or last:
                    cuda = ddp.cuda_rng_states(d, dev)  # every rank's, for rank 0 to save
                    if d.main:
                        self._checkpoint(model, opt, sched, done, log, out, cuda=cuda)
                ddp.barrier(d)
                steps.restart_clock()
        except KeyboardInterrupt:  # the steps done so far still reach metrics.jsonl
            if d.main:
                write_records(steps.flush().records, log, self.tracker, bar)
            raise
        freeze.release()
        bar.close()
        return files

    def _flush(self, d: ddp.Dist, steps: Steps, log: MetricsLog, bar: Any, model: Any,
               batch: Any) -> None:
        """Log the buffered steps; stop at the first that was not finite, naming it."""
        flushed = steps.flush()
        self.t_train = steps.t_train
        if d.main:
            write_records(flushed.records, log, self.tracker, bar)
        bad = flushed.bad
        if bad is not None:
            # the parameters are those the bad step saw (later updates were skipped), and
            # its batch is a function of the step: the diagnosis re-runs exactly that step
            x, cond = batch(bad.step, check=True)
            self._nonfinite(bad.step, model, x, cond, bad.what())

    def _pretrain(self, d: ddp.Dist, task: Task, train: Any, model: Any, opt: Any,
                  sched: Any, log: MetricsLog, out: Path, shard: slice) -> None:
        """``pretrain encoder``: the encoders' SR pretraining up to ``pretrain_steps``,
        checkpointed every ``checkpoint_every`` steps and at its end (flow step 0)."""
        r, pre = self.recipe, self.pre
        from tqdm import tqdm

        stream = BatchStream(len(train), r.batch, r.seed, tag=pt.TAG)
        if d.main:
            pt.announce(pre, r.batch, len(train))
        bar = tqdm(total=r.pretrain_steps, initial=pre.done,
                   disable=not (d.main and self.progress), dynamic_ncols=True, unit="step",
                   desc=f"{self.spec.name} (pretrain)", file=sys.stderr)
        model.train()
        losses: list[Tensor] = []  # on the device, read at flushes (as the flow's steps)
        t0 = time.perf_counter()
        while not pre.finished:
            cond, hr = pre.batch(train.images, pre.done, stream, shard)
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
                    log.write({"kind": "pretrain", "pretrain_step": step, "l1": value,
                               "lr": r.pretrain_lr, "seconds": round(per, 4)})
                bar.update(len(values))
                bar.set_postfix_str(f"L1 {values[-1]:.4f}" if values else "", refresh=False)
            if stop is not None:
                raise stop
            if save:
                cuda = ddp.cuda_rng_states(d, pre.dev)
                if d.main:
                    self._checkpoint(model, opt, sched, 0, log, out, pretrain_step=done, cuda=cuda)
                ddp.barrier(d)
            t0 = time.perf_counter()
        bar.close()

    def _nonfinite(self, step: int, model: Any, x: Tensor, cond: Any, what: str) -> None:
        name = first_nonfinite(model, x, cond)
        r = self.recipe
        where = (f"the first non-finite output is in {locate(model, name)}" if name else
                 "re-running the batch gives finite outputs in every layer, so the "
                 "backward pass or the parameters overflowed")
        raise RunError(
            f"training stopped at step {step + 1}: {what}; {where}. Nothing of this step "
            f"was saved. Try a lower learning rate (lr={r.lr:g}), a longer warm-up "
            f"(warmup={r.warmup}) or gradient clipping (clip={r.clip}); "
            f"{self._resume_advice(changed=True)}")

    def _resume_advice(self, changed: bool = False) -> str:
        """Where a stopped run stands: its last checkpoint and the command that continues
        it, or that none was written yet (so the run starts again)."""
        from .recipe import resume_command, run_flags

        ck = self.out / "checkpoint.pt"
        if self.saved_step is None:
            return (f"no checkpoint was written yet (the first is due at step "
                    f"{self.recipe.checkpoint_every}), so there is nothing to resume: run "
                    f"the same command again{' with those changes' if changed else ''}")
        cmd = resume_command(self.spec, self.recipe, self.source, self.out, run_flags(
            device=self.device_arg, threads=self.threads, plugins=self.plugins,
            build_options=self.build_options, tensorboard=self.tensorboard,
            recon_warn=self.recon_warn, strict=self.strict, progress=self.progress,
            verified=self.verified))
        return (f"the last checkpoint is step {self.saved_step} ({ck}); continue with"
                f"{' (after those changes)' if changed else ''}:\n  {cmd}")

    def _validate(self, dev: torch.device, task: Task, data: TaskData, model: Any, opt: Any,
                  sched: Any, done: int, log: MetricsLog, out: Path,
                  files: dict[str, Any]) -> None:
        model.eval()
        with ema_.averaged(self.ema, model):  # [ema hook] validation sees the average
            metrics = task.validate(model, data, dev)
            metrics.update(task.dequantization_metrics(model, data, dev))
            rec = reconstruction(model, *self.recon_batch)
        model.train()
        metrics.update(rec.metrics())
        if self.recon_warn and not rec.relative <= self.recon_warn:
            message = recon_message(model, rec, self.recon_warn, done)
            _warn(message)
            metrics["warnings"] = [message]
        log.write({"kind": "val", "step": done, **metrics})
        check_bpd(metrics, what=f"the validation at step {done}",
                  verify_cmd=lambda: verify_command(self.spec, self.source.get("spec_file"),
                                                    self.source.get("overrides")),
                  after=lambda: self._resume_advice(changed=True))
        self.tracker.val(done, metrics)
        files["val"] = metrics
        bpd = metrics["bpd"]
        if math.isfinite(bpd) and (self.best is None or bpd < self.best):
            self.best = bpd
            if bad_parameter(model) is None:
                ckpt.save_atomic(self._state(model, opt, sched, done), out / "best.pt")
        plot_curve(log.read(), out / "curve.png", title=f"{self.spec.name} ({self.recipe.task})")

    def _samples(self, dev: torch.device, task: Task, data: TaskData, model: Any, done: int,
                 out: Path, files: dict[str, Any]) -> None:
        model.eval()
        try:
            with ema_.averaged(self.ema, model):  # [ema hook] samples of the average
                grids = task.grids(model, data, dev)
        except Exception as e:  # noqa: BLE001 - a sample grid never stops a run
            _warn(f"no sample grids at step {done} ({type(e).__name__}: {e}); training "
                  "goes on")
            return
        finally:
            model.train()
        self.tracker.samples(done, grids)
        for t, img in grids.items():
            p = save_png(img, out / f"samples_step{done:06d}_t{t:g}.png")
            files["samples"].append(str(p))

    def _checkpoint(self, model: Any, opt: Any, sched: Any, done: int, log: MetricsLog,
                    out: Path, pretrain_step: int | None = None, cuda: Any = None) -> None:
        bad = bad_parameter(model)
        if bad is not None:
            raise RunError(f"after step {done} a parameter of {bad} is not finite; the "
                           "checkpoint was not written (the last good one is kept). Lower "
                           "the learning rate or add clip=...")
        ckpt.save_atomic(self._state(model, opt, sched, done, cuda), out / "checkpoint.pt")
        self.saved_step = done
        where = {} if pretrain_step is None else {"pretrain_step": pretrain_step}
        log.write({"kind": "checkpoint", "step": done, **where,
                   "path": str(out / "checkpoint.pt")})

    def _finish(self, d: ddp.Dist, dev: torch.device, model: Any, log: MetricsLog, out: Path,
                files: dict[str, Any], start: int) -> RunResult:
        r = self.recipe
        identical = ddp.same_everywhere(d, model)
        records = log.read() if d.main else []
        vals = [x for x in records if x.get("kind") == "val"]
        final = vals[-1] if vals else {}
        steps_run = r.steps - start
        summary = {
            "flow": self.spec.name, "spec_file": self.source.get("spec_file"),
            "task": r.task, "digest": self.spec.digest(), "steps": r.steps,
            "resumed_from": start if self.resume else None, "device": str(dev),
            "world_size": d.world, "parameters": sum(p.numel() for p in model.parameters()),
            "final_val": {k: v for k, v in final.items() if k not in ("kind",)},
            "final_val_bpd": final.get("bpd"), "best_val_bpd": self.best,
            "train_seconds": round(self.t_train, 2),
            "verified": self.verified, "plugins": self.plugins,
            "warnings": summary_warnings(self.source, self.verified, self.plugins, vals),
            "seconds_per_step": round(self.t_train / steps_run, 4) if steps_run else None,
            "recipe": r.to_json(),
        }
        if self.class_names is not None:
            summary["class_names"] = list(self.class_names)
        if r.pretrain_steps:
            l1 = [x["l1"] for x in records if x.get("kind") == "pretrain"]
            summary["pretrain"] = {"steps": r.pretrain_steps, "final_l1": l1[-1] if l1 else None}
        if d.active:
            summary["ranks_identical"] = identical
        if d.main:
            if not (out / "curve.png").exists() or records:
                plot_curve(records, out / "curve.png", title=f"{self.spec.name} ({r.task})")
            names = ["config.json", "recipe.json", "metrics.jsonl", "checkpoint.pt", "best.pt",
                     "curve.png", "model.svg", "tensorboard"]
            summary["files"] = {n: str(out / n) for n in names if (out / n).exists()}
            summary["files"]["samples"] = sorted(str(p) for p in out.glob("samples_*.png"))
            (out / "summary.json").write_text(json.dumps(summary, indent=2) + "\n")
            bpd = summary["final_val_bpd"]
            print(f"done: {r.steps} steps, held-out bits/dim "
                  f"{'n/a' if bpd is None else f'{bpd:.4f}'}; run folder {out}/ "
                  f"(summary.json, metrics.jsonl, checkpoint.pt, curve.png, samples_*.png"
                  f"{', model.svg' if (out / 'model.svg').exists() else ''})")
        if d.active and not identical:
            raise RunError("the ranks ended with different parameters; DDP lost sync")
        return RunResult(out, r.steps, final.get("bpd"), summary, model)


def _build(build: Any, spec: FlowSpec, dev: torch.device, seed: int,
           options: dict[str, Any]) -> Any:
    """The model; a torch.compile backend that does not exist is a RunError."""
    from flowspec import CompileBackendError

    if options.get("autocast") == torch.float16:
        # float16 gradients underflow without a gradient scaler, which training does not use
        raise RunError("--autocast fp16 is not supported for training (float16 gradients "
                       "need a loss scaler); use --autocast bf16")
    try:
        return build(spec, device=dev, seed=seed, **options)
    except CompileBackendError as e:
        raise RunError(f"--compile {options.get('compile')}: torch.compile has no such "
                       f"backend; backends: {e.available}. No run folder was made") from None


def _warn(msg: str) -> None:
    print(f"flowspec: warning: {msg}", file=sys.stderr)
