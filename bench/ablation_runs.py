"""The runs of bench/ablation.py: what trains (the flows, model size, data and recipe of
each variant), the timing pass that sets the equal wall-clock budgets, and :func:`run`,
which trains every configuration at equal steps, then continues the faster variants to the
budget. Each run is one ``runtime.train`` call in a worker process with one torch thread.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import shutil
import sys
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
SPEC = "specs/ablations.flow"
MODEL = {"L": 3, "K": 2, "hidden": 32, "components": 4, "blocks": 1, "features": 8, "dropout": 0.0}
DATA = {
    "mnist5k": {"data": "mnist5k pad=2", "channels": 1},
    "photos": {"data": "photos pad=0", "channels": 3},  # pad=0: the spec's line pads MNIST
}
#: The backbone is the flow the attention flows of SPEC extend, loaded from its own file
#: (``position_imap`` declares ``pos`` in 1..4, so ``pos=0`` is no longer a way to get it).
BACKBONE = ("specs/attnflow_mnist.flow", "marflow_mnist")
VARIANTS = {  # name -> (flow, extra overrides); imap / isdp with the default form=identity
    "backbone": (BACKBONE[1], {}),
    "imap": ("position_imap", {"pos": 4, "form": "identity"}),
    "isdp": ("heads_isdp", {"heads": 5, "form": "identity"}),
}
POSITIONS = (1, 2, 3, 4)
RECIPE = {"batch": 32, "bits": 8, "lr": 1e-3, "warmup": 50, "clip": 50.0, "optimizer": "adamax"}
TIMING_STEPS, TIMING_REPEATS = 8, 5


def _overrides(dataset: str, flow_extra: dict[str, Any]) -> dict[str, Any]:
    return {**MODEL, "channels": DATA[dataset]["channels"], **flow_extra}


def _spec_of(flow: str) -> str:
    return BACKBONE[0] if flow == BACKBONE[1] else SPEC


def train_job(job: dict[str, Any]) -> dict[str, Any]:
    """One ``runtime.train`` call in a worker process (one torch thread)."""
    import torch

    torch.set_num_threads(1)
    os.chdir(ROOT)
    import runtime
    from runtime.trainer import Trainer

    # No sample grids: this bench does not use them (they cost an inverse per grid).
    Trainer._samples = lambda self, *args, **kwargs: None
    if job["flow"] != BACKBONE[1]:
        _start_from_the_backbone(job["overrides"])

    steps = job["steps"]
    recipe = {k: v for k, v in RECIPE.items() if k != "batch"}
    t0 = time.perf_counter()
    try:
        res = runtime.train(
            _spec_of(job["flow"]),
            flow=job["flow"],
            overrides=job["overrides"],
            data=job["data"],
            out=job["out"],
            steps=steps,
            batch=RECIPE["batch"],
            seed=job["seed"],
            device="cpu",
            resume=job.get("resume", False),
            progress=False,
            val_every=job.get("val_every") or steps,
            sample_every=steps,
            checkpoint_every=steps,
            **recipe,
        )
    except Exception as e:  # noqa: BLE001 - a failed run is a result, reported as such
        return {**job, "ok": False, "error": f"{type(e).__name__}: {e}"}
    s = res.summary
    metrics = Path(job["out"]) / "metrics.jsonl"
    curve = (
        {
            str(r["step"]): r["bpd"]
            for r in map(json.loads, metrics.read_text().splitlines())
            if r.get("kind") == "val"
        }
        if metrics.exists()
        else {}
    )
    return {
        **job,
        "ok": True,
        "step": res.step,
        "val_bpd": res.val_bpd,
        "val_curve": curve,
        "parameters": s["parameters"],
        "train_seconds": s["train_seconds"],
        "seconds_per_step": s["seconds_per_step"],
        "wall_seconds": round(time.perf_counter() - t0, 2),
    }


def _start_from_the_backbone(overrides: dict[str, Any]) -> None:
    """Make this worker's ``flowspec.build.compile`` give an attention variant the initial
    weights of the backbone built with the same seed (its own layers consume random numbers
    too, so otherwise every backbone layer starts elsewhere). Its attention layers start as
    the identity (``form=identity``), so both models start as the same function and a
    difference paired by seed measures what training does with the attention."""
    import flowspec
    import flowspec.build as fb
    from flowspec.nn.imap import IMap
    from flowspec.nn.isdp import ISDP

    build = fb.compile
    base_overrides = {k: v for k, v in overrides.items() if k not in ("pos", "heads", "form")}

    def compile_same_start(spec: Any, device: Any = "cpu", seed: int = 0, **options: Any):
        model = build(spec, device=device, seed=seed, **options)
        base = build(
            flowspec.load(ROOT / BACKBONE[0], BACKBONE[1], base_overrides),
            device=device,
            seed=seed,
        )
        mine = [m for m in model.layers if not isinstance(m, IMap | ISDP)]
        assert [type(m) for m in mine] == [type(m) for m in base.layers], "layers differ"
        for a, b in zip(mine, base.layers, strict=True):
            a.load_state_dict(b.state_dict())
        model.prior.load_state_dict(base.prior.state_dict())
        return model

    fb.compile = compile_same_start


def timing_pass(dataset: str) -> dict[str, Any]:
    """Seconds per training step of each variant: forward, backward and Adamax step on a
    batch of 32, one thread, variants interleaved, fastest of the repeats.

    Measured as CPU time of this single-threaded process (``time.process_time``), which is
    what the step costs on an idle core: on a shared machine, wall time also counts the time
    other processes hold the core, and that noise would decide the wall-clock budgets."""
    import torch

    import flowspec
    from flowspec.build import compile as build

    torch.set_num_threads(1)
    ch = DATA[dataset]["channels"]
    models = {}
    for name, (flow, extra) in VARIANTS.items():
        spec = flowspec.load(ROOT / _spec_of(flow), flow, _overrides(dataset, extra))
        model = build(spec, device="cpu", seed=0)
        opt = torch.optim.Adamax(model.parameters(), lr=RECIPE["lr"], foreach=True)
        x = torch.rand(RECIPE["batch"], ch, 32, 32, generator=torch.Generator().manual_seed(0))
        model.train()
        models[name] = (model, opt, x)

    def step(model: Any, opt: Any, x: Any) -> None:
        loss = -model.log_prob(x).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    reps: dict[str, list[float]] = {name: [] for name in VARIANTS}
    for model, opt, x in models.values():  # warm-up (and actnorm's init)
        for _ in range(2):
            step(model, opt, x)
    for _ in range(TIMING_REPEATS):
        for name, (model, opt, x) in models.items():
            t0 = time.process_time()
            for _ in range(TIMING_STEPS):
                step(model, opt, x)
            reps[name].append((time.process_time() - t0) / TIMING_STEPS)
    return {
        name: {"seconds_per_step": min(r), "repeats": [round(v, 5) for v in r]}
        for name, r in reps.items()
    }


def _run_all(jobs: list[dict[str, Any]], workers: int) -> list[dict[str, Any]]:
    out = []
    if workers <= 1:
        for job in jobs:
            out.append(train_job(job))
            _report(out[-1])
        return out
    ctx = multiprocessing.get_context("spawn")  # no fork after torch has started threads
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        for res in pool.map(train_job, jobs):
            _report(res)
            out.append(res)
    return out


def _report(r: dict[str, Any]) -> None:
    what = f"{r['dataset']:8s} {r['name']:12s} seed {r['seed']} -> {r['steps']} steps"
    if r["ok"]:
        print(
            f"  {what}: {r['val_bpd']:.4f} bits/dim, {r['seconds_per_step']:.3f} s/step",
            flush=True,
        )
    else:
        print(f"  {what}: FAILED {r['error']}", flush=True)


def run(args: argparse.Namespace) -> dict[str, Any]:
    out = ROOT / args.out
    if out.exists():
        shutil.rmtree(out)
    seeds = list(range(args.seeds))
    steps = {"mnist5k": args.steps_mnist, "photos": args.steps_photos}
    t_start = time.perf_counter()

    print("timing pass (CPU seconds per step, one thread)", flush=True)
    timing = {d: timing_pass(d) for d in args.datasets}
    for d, t in timing.items():
        print(
            f"  {d}: " + ", ".join(f"{v} {t[v]['seconds_per_step']:.3f} s/step" for v in VARIANTS),
            flush=True,
        )

    jobs = []
    for d in ("photos", "mnist5k"):  # the slow data set first: better load balance
        if d not in args.datasets:
            continue
        for name, (flow, extra) in VARIANTS.items():
            for seed in seeds:
                jobs.append(
                    {
                        "dataset": d,
                        "name": name,
                        "seed": seed,
                        "flow": flow,
                        "overrides": _overrides(d, extra),
                        "data": DATA[d]["data"],
                        "steps": steps[d],
                        "out": str(out / d / f"{name}-s{seed}"),
                        "val_every": args.mid_step or None,
                    }
                )
    for pos in POSITIONS if args.positions else ():
        if pos == 4:
            continue  # the same flow, overrides and seeds as `imap` on mnist5k
        for seed in seeds:
            d = "mnist5k"
            jobs.append(
                {
                    "dataset": d,
                    "name": f"pos{pos}",
                    "seed": seed,
                    "flow": "position_imap",
                    "overrides": _overrides(d, {"pos": pos}),
                    "data": DATA[d]["data"],
                    "steps": steps[d],
                    "out": str(out / d / f"pos{pos}-s{seed}"),
                }
            )
    print(f"equal steps: {len(jobs)} runs on {args.jobs} processes", flush=True)
    first = _run_all(jobs, args.jobs)

    # equal wall-clock: the slowest variant's time for the equal-steps run is the budget
    budget, more = {}, []
    for d in args.datasets:
        per_step = {v: timing[d][v]["seconds_per_step"] for v in VARIANTS}
        seconds = steps[d] * max(per_step.values())
        n = {v: max(steps[d], math.floor(seconds / per_step[v] + 1e-9)) for v in VARIANTS}
        budget[d] = {"seconds": round(seconds, 2), "steps": n}
        for r in first:
            if r["dataset"] == d and r["name"] in VARIANTS and r["ok"] and n[r["name"]] > steps[d]:
                more.append(
                    {
                        **{
                            k: r[k]
                            for k in (
                                "dataset",
                                "name",
                                "seed",
                                "flow",
                                "overrides",
                                "data",
                                "out",
                            )
                        },
                        "steps": n[r["name"]],
                        "resume": True,
                    }
                )
    print(f"equal wall-clock: {len(more)} runs continue", flush=True)
    second = _run_all(more, args.jobs)

    import torch

    return {
        "command": "python bench/ablation.py " + " ".join(sys.argv[1:]),
        "date": datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
            "torch": torch.__version__,
            "threads_per_process": 1,
            "processes": args.jobs,
        },
        "spec": SPEC,
        "model": MODEL,
        "recipe": RECIPE,
        "seeds": seeds,
        "steps": steps,
        "data": {d: DATA[d]["data"] for d in args.datasets},
        "mid_step": args.mid_step,
        "timing": timing,
        "budget": budget,
        "equal_steps": first,
        "equal_time": second,
        "total_minutes": round((time.perf_counter() - t_start) / 60, 1),
    }
