"""What a run does at its validation and sample steps, and the summary it ends with.

:func:`validate`: held-out metrics (the task's, the dequantiser's, the reconstruction
check), written to ``metrics.jsonl`` and the tracker, refused when they cannot be right
(:mod:`runtime.soundness`), ``best.pt`` when they are the best so far. :func:`samples`: the
task's sample grids as PNGs. :func:`summary`: ``summary.json``'s content.

Neither moves what training draws from: layers with random generators of their own (a
residual block's term counts and Hutchinson vectors, which its eval-mode log-dets draw
too) get their states back afterwards (:func:`streams_kept`). Rank 0 alone validates and
samples, and the schedule of validations and samples must not change what training
computes (a run of 2 steps, resumed with ``--steps 4``, sampled at step 2 where an
uninterrupted one did not).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from torch import nn

from flowspec import rng_layers

from . import checkpoint as ckpt
from . import ema as ema_
from .finite import bad_parameter
from .images import plot_curve, save_png
from .reconstruction import recon_message, reconstruction
from .run_state import RunState
from .soundness import check_bpd, summary_warnings

__all__ = ["record_tags", "samples", "streams_kept", "summary", "validate"]


@contextmanager
def streams_kept(model: nn.Module) -> Iterator[None]:
    """The states of the layers' own random generators
    (:func:`flowspec.rng_layers`) after the block are those before it."""
    saved = [(m, m.rng_state()) for _, m in rng_layers(model)]
    try:
        yield
    finally:
        for m, state in saved:
            m.set_rng_state(state)


def validate(
    s: RunState,
    done: int,
    *,
    recon_warn: float | None,
    tracker: Any,
    verify_cmd: Callable[[], str],
    after: Callable[[], str],
    best_state: Callable[[], dict[str, Any]],
    warn: Callable[[str], None],
) -> None:
    """The validation after step ``done``; ``best_state()``: the checkpoint for ``best.pt``,
    ``after()``: what to do when the numbers cannot be right."""
    model = s.model
    model.eval()
    # `ema DECAY`: the average is what is validated
    with streams_kept(model), ema_.averaged(s.ema, model):
        metrics = s.task.validate(model, s.data, s.dev, final=done == s.recipe.steps)
        metrics.update(s.task.dequantization_metrics(model, s.data, s.dev))
        rec = reconstruction(model, *s.recon)
    model.train()
    metrics.update(rec.metrics())
    if recon_warn and not rec.relative <= recon_warn:
        message = recon_message(model, rec, recon_warn, done)
        warn(message)
        metrics["warnings"] = [message]
    s.log.write({"kind": "val", "step": done, **metrics, **record_tags(s)})
    check_bpd(metrics, what=f"the validation at step {done}", verify_cmd=verify_cmd, after=after)
    tracker.val(done, metrics)
    s.files["val"] = metrics
    bpd = metrics["bpd"]
    if math.isfinite(bpd) and (s.best is None or bpd < s.best):
        s.best = bpd
        if bad_parameter(model) is None:
            ckpt.save_atomic(best_state(), s.out / "best.pt")
    plot_curve(s.log.read(), s.out / "curve.png", title=f"{s.spec.name} ({s.recipe.task})")


def record_tags(s: RunState) -> dict[str, bool]:
    """What a record of a flow with estimated log-dets carries: its ``bpd`` is an unbiased
    estimate (records of exact flows stay as they were)."""
    return {"bpd_estimated": True} if s.bpd_estimated else {}


def samples(s: RunState, done: int, *, tracker: Any, warn: Callable[[str], None]) -> None:
    """The task's sample grids after step ``done``, as PNGs; a failure only warns."""
    model = s.model
    model.eval()
    try:
        with streams_kept(model), ema_.averaged(s.ema, model):  # samples of the average
            grids = s.task.grids(model, s.data, s.dev)
    except Exception as e:  # noqa: BLE001 - a sample grid never stops a run
        warn(f"no sample grids at step {done} ({type(e).__name__}: {e}); training goes on")
        return
    finally:
        model.train()
    tracker.samples(done, grids)
    for t, img in grids.items():
        p = save_png(img, s.out / f"samples_step{done:06d}_t{t:g}.png")
        s.files["samples"].append(str(p))


def summary(
    s: RunState,
    records: list[dict[str, Any]],
    *,
    resumed: bool,
    source: dict[str, Any],
    verified: bool,
    plugins: Any,
    class_names: tuple[str, ...] | None,
    identical: bool,
) -> dict[str, Any]:
    """``summary.json`` of the finished run (``records``: ``metrics.jsonl``'s, on the main
    process), without its ``files``."""
    r, spec = s.recipe, s.spec
    vals = [x for x in records if x.get("kind") == "val"]
    final = vals[-1] if vals else {}
    steps_run = r.steps - s.start
    out = {
        "flow": spec.name,
        "spec_file": source.get("spec_file"),
        "task": r.task,
        "digest": spec.digest(),
        "steps": r.steps,
        "resumed_from": s.start if resumed else None,
        "device": str(s.dev),
        "world_size": s.d.world,
        "parameters": sum(p.numel() for p in s.model.parameters()),
        "final_val": {k: v for k, v in final.items() if k not in ("kind",)},
        "final_val_bpd": final.get("bpd"),
        "best_val_bpd": s.best,
        "bpd_estimated": s.bpd_estimated,
        "train_seconds": round(s.t_train, 2),
        "verified": verified,
        "plugins": plugins,
        "warnings": summary_warnings(source, verified, plugins, vals),
        "seconds_per_step": round(s.t_train / steps_run, 4) if steps_run else None,
        "recipe": r.to_json(),
    }
    if class_names is not None:
        out["class_names"] = list(class_names)
    if r.pretrain_steps:
        l1 = [x["l1"] for x in records if x.get("kind") == "pretrain"]
        out["pretrain"] = {"steps": r.pretrain_steps, "final_l1": l1[-1] if l1 else None}
    if s.d.active:
        out["ranks_identical"] = identical
    return out


def run_files(out: Path) -> dict[str, Any]:
    """The files of a run folder that ``summary.json`` lists."""
    names = [
        "config.json",
        "recipe.json",
        "metrics.jsonl",
        "checkpoint.pt",
        "best.pt",
        "curve.png",
        "model.svg",
        "tensorboard",
    ]
    files: dict[str, Any] = {n: str(out / n) for n in names if (out / n).exists()}
    files["samples"] = sorted(str(p) for p in out.glob("samples_*.png"))
    return files
