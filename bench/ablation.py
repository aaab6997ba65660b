"""AttnFlow's ablations at CPU scale, on real built-in data.

Does adding the paper's invertible attention (iMap, iSDP) to the mARFlow-style backbone
lower held-out bits/dim, at equal training steps and at equal wall-clock, and does iMap's
position in the step of flow matter? Everything trains through ``runtime.train`` on the
flows of ``specs/ablations.flow``, one torch thread per process:

    python bench/ablation.py --jobs 2          # the committed results (about 35 min)
    python bench/ablation.py --render-only     # tables and plots again from the JSON

* data: ``mnist5k`` (5,000 real MNIST digits, 28x28 padded to 32x32, 500 held out) and
  ``photos`` (3x32x32 patches of bundled photographs, 222 held out; a stand-in for
  CIFAR-10, not CIFAR-10);
* model: the Table 2 backbone (mARFlow as its official code builds it: Flow++'s coupling
  network, ConvLSTM priors) at levels-steps-channels 3-2-32 with 4 mixture components, one
  gated residual block per coupling network, no dropout, and ConvLSTM priors of 8 channels
  (the paper: 3-4-96 and 3-2-48 with 32 components, 10 blocks, dropout 0.2, 32 channels);
* variants: ``backbone`` (``marflow_mnist`` of attnflow_mnist.flow, which the attention flows
  extend: no attention), ``imap`` (position_imap pos=4,
  after every coupling) and ``isdp`` (heads_isdp, 5 heads, after every coupling);
* equal steps: every variant trains ``--steps-mnist`` / ``--steps-photos`` steps of batch 32;
* equal wall-clock: a timing pass measures each variant's step time on one core (CPU time
  of a single-threaded process, fastest of ``TIMING_REPEATS`` x ``TIMING_STEPS`` steps,
  variants interleaved); the budget is the slowest variant's time for the equal-steps run,
  and every faster variant resumes its run (bit-for-bit continuation) up to
  ``floor(budget / its step time)`` steps;
* position: iMap before actnorm (pos 1), after actnorm (2), after the 1x1 convolution (3),
  after the coupling (4, shared with ``imap``), on mnist5k at equal steps;
* every configuration with ``--seeds`` seeds (model initialisation and data order); an
  attention variant starts from the backbone's initial weights for its seed, its attention
  layers at the identity, so at step 0 both are the same function.

Held-out bits/dim is the runtime's validation (uniform dequantisation, 8-bit data) on the
data set's fixed validation split. Writes ``docs/results.json`` (every run), the plots
``docs/img/ablation_*.png`` and the tables between the markers of ``docs/results.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import multiprocessing
import os
import platform
import shutil
import statistics
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
BEGIN, END = "<!-- ablation:begin -->", "<!-- ablation:end -->"


# ------------------------------------------------------------------------------ runs
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


# ------------------------------------------------------------------------------ report
def _ms(values: list[float]) -> tuple[float, float]:
    return (statistics.mean(values), statistics.stdev(values) if len(values) > 1 else 0.0)


def _fmt_ms(values: list[float], digits: int = 3) -> str:
    if not values:
        return "failed"
    m, s = _ms(values)
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def _signed_ms(values: list[float]) -> str:
    if not values:
        return "-"
    m, s = _ms(values)
    return f"{m:+.3f} ± {s:.3f}"


def summarise(res: dict[str, Any]) -> dict[str, Any]:
    """Per data set and variant: bits/dim at equal steps and at equal time, paired by seed
    against the backbone; per position likewise against pos-4."""
    first = {(r["dataset"], r["name"], r["seed"]): r for r in res["equal_steps"]}
    second = {(r["dataset"], r["name"], r["seed"]): r for r in res["equal_time"]}

    def at_time(key):  # a variant that needed no more steps keeps its equal-steps result
        return second.get(key, first.get(key))

    out: dict[str, Any] = {"variants": {}, "positions": {}}
    for d in res["data"]:
        rows = {}
        for v in VARIANTS:
            keys = [(d, v, s) for s in res["seeds"]]
            ok1 = [first[k] for k in keys if k in first and first[k]["ok"]]
            ok2 = [at_time(k) for k in keys if at_time(k) and at_time(k)["ok"]]
            base1 = {s: first.get((d, "backbone", s)) for s in res["seeds"]}
            base2 = {s: at_time((d, "backbone", s)) for s in res["seeds"]}
            d1 = [
                r["val_bpd"] - base1[r["seed"]]["val_bpd"]
                for r in ok1
                if base1[r["seed"]] and base1[r["seed"]]["ok"]
            ]
            d2 = [
                r["val_bpd"] - base2[r["seed"]]["val_bpd"]
                for r in ok2
                if base2[r["seed"]] and base2[r["seed"]]["ok"]
            ]
            mid = str(res.get("mid_step") or "")
            m1 = {r["seed"]: r.get("val_curve", {}).get(mid) for r in ok1}
            d_mid = [
                m1[s] - base1[s]["val_curve"][mid]
                for s in m1
                if m1[s] is not None
                and base1.get(s)
                and base1[s]["ok"]
                and mid in base1[s].get("val_curve", {})
            ]
            rows[v] = {
                "parameters": ok1[0]["parameters"] if ok1 else None,
                "bpd_mid": [b for b in m1.values() if b is not None],
                "delta_mid": d_mid,
                "timing_s_per_step": res["timing"][d][v]["seconds_per_step"],
                "run_s_per_step": [r["seconds_per_step"] for r in ok1],
                "bpd_equal_steps": [r["val_bpd"] for r in ok1],
                "delta_equal_steps": d1,
                "steps_equal_time": res["budget"][d]["steps"][v],
                "bpd_equal_time": [r["val_bpd"] for r in ok2],
                "delta_equal_time": d2,
                "failed": [r["seed"] for r in (first.get(k) for k in keys) if r and not r["ok"]],
            }
        out["variants"][d] = rows
    d = "mnist5k"
    for pos in POSITIONS:
        name = "imap" if pos == 4 else f"pos{pos}"
        ok = [
            first[(d, name, s)]
            for s in res["seeds"]
            if (d, name, s) in first and first[(d, name, s)]["ok"]
        ]
        ref = {s: first.get((d, "imap", s)) for s in res["seeds"]}
        out["positions"][pos] = {
            "bpd": [r["val_bpd"] for r in ok],
            "delta_vs_pos4": [
                r["val_bpd"] - ref[r["seed"]]["val_bpd"]
                for r in ok
                if ref[r["seed"]] and ref[r["seed"]]["ok"]
            ],
            "run_s_per_step": [r["seconds_per_step"] for r in ok],
        }
    base = {s: first.get((d, "backbone", s)) for s in res["seeds"]}
    out["positions"]["backbone"] = {"bpd": [r["val_bpd"] for r in base.values() if r and r["ok"]]}
    return out


def tables(res: dict[str, Any], summ: dict[str, Any]) -> str:
    n = len(res["seeds"])
    lines = [
        (
            f"Generated by `{res['command']}` on {res['date']} "
            f"({res['total_minutes']} min, {res['machine']['processes']} processes x 1 "
            f"thread, {res['machine']['cpus']} CPUs, torch {res['machine']['torch']}). "
            f"Mean ± standard deviation over {n} seeds; Δ is paired by seed "
            "(the same initial backbone weights, the attention starting as the identity, and "
            "the same data order) against the backbone."
        ),
        "",
    ]
    for d, rows in summ["variants"].items():
        b = res["budget"][d]
        lines += [
            (
                f"**{d}** — equal steps: {res['steps'][d]} steps of batch 32; equal "
                f"wall-clock: {b['seconds']:.1f} s of training per run (the slowest "
                "variant's time for the equal-steps run, from the timing pass)."
            ),
            "",
            (
                "| variant | parameters | s/step (timing pass) | s/step (in the runs) "
                + (
                    f"| bits/dim @ {res['mid_step']} steps | Δ vs backbone "
                    if res.get("mid_step")
                    else ""
                )
                + f"| bits/dim @ {res['steps'][d]} steps | Δ vs backbone | steps in "
                f"{b['seconds']:.0f} s | bits/dim @ equal time | Δ vs backbone |"
            ),
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|"
            + ("---:|---:|" if res.get("mid_step") else ""),
        ]
        for v, r in rows.items():
            runs = r["run_s_per_step"]
            params = f"{r['parameters']:,}" if r["parameters"] else "—"
            lines.append(
                f"| {v} | {params} | {r['timing_s_per_step']:.3f} | "
                f"{statistics.median(runs) if runs else float('nan'):.3f} | "
                + (
                    f"{_fmt_ms(r['bpd_mid'])} | "
                    f"{'—' if v == 'backbone' else _signed_ms(r['delta_mid'])} | "
                    if res.get("mid_step")
                    else ""
                )
                + f"{_fmt_ms(r['bpd_equal_steps'])} | "
                f"{'—' if v == 'backbone' else _signed_ms(r['delta_equal_steps'])} | "
                f"{r['steps_equal_time']} | {_fmt_ms(r['bpd_equal_time'])} | "
                f"{'—' if v == 'backbone' else _signed_ms(r['delta_equal_time'])} |"
            )
            if r["failed"]:
                lines.append(f"| ↳ failed seeds: {r['failed']} | | | | | | | | |")
        lines.append("")
    if not any(summ["positions"][pos]["bpd"] for pos in POSITIONS if pos != 4):
        return "\n".join(lines)
    lines += [
        (
            f"**Position of iMap** (mnist5k, {res['steps']['mnist5k']} steps; pos-4 is "
            "the `imap` row above):"
        ),
        "",
        "| position | bits/dim | Δ vs pos-4 | s/step (in the runs) |",
        "|---|---:|---:|---:|",
    ]
    names = {
        1: "pos-1 before actnorm",
        2: "pos-2 after actnorm",
        3: "pos-3 after invconv",
        4: "pos-4 after coupling",
    }
    for pos in POSITIONS:
        r = summ["positions"][pos]
        runs = r["run_s_per_step"]
        lines.append(
            f"| {names[pos]} | {_fmt_ms(r['bpd'])} | "
            f"{'—' if pos == 4 else _signed_ms(r['delta_vs_pos4'])} | "
            f"{statistics.median(runs) if runs else float('nan'):.3f} |"
        )
    lines.append(f"| (no attention) | {_fmt_ms(summ['positions']['backbone']['bpd'])} | | |")
    return "\n".join(lines)


def plots(res: dict[str, Any], summ: dict[str, Any], folder: Path) -> list[Path]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    colours = {"backbone": "tab:gray", "imap": "tab:blue", "isdp": "tab:orange"}
    paths = []

    fig, axes = plt.subplots(1, len(summ["variants"]), figsize=(10, 3.6), squeeze=False)
    axes = axes[0]
    for ax, (d, rows) in zip(axes, summ["variants"].items()):
        for i, (_label, key) in enumerate(
            (("equal steps", "bpd_equal_steps"), ("equal wall-clock", "bpd_equal_time"))
        ):
            for j, (v, r) in enumerate(rows.items()):
                x = i * (len(rows) + 1) + j
                vals = r[key]
                if not vals:
                    continue
                ax.scatter([x] * len(vals), vals, color=colours[v], s=14, alpha=0.6)
                m, s = _ms(vals)
                ax.errorbar(
                    [x],
                    [m],
                    yerr=[s],
                    color=colours[v],
                    fmt="o",
                    ms=7,
                    capsize=4,
                    label=v if i == 0 else None,
                )
        ax.set_xticks([1, len(rows) + 2], ["equal steps", "equal wall-clock"])
        ax.set_title(f"{d} (held-out)")
        ax.set_ylabel("bits/dim (lower is better)")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    fig.suptitle(
        "Backbone vs +iMap vs +iSDP, 3-2-32, CPU budget "
        f"({len(res['seeds'])} seeds: dots; mean ± std: bars)",
        fontsize=10,
    )
    fig.tight_layout()
    paths.append(folder / "ablation_variants.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    has_positions = any(summ["positions"][pos]["bpd"] for pos in POSITIONS if pos != 4)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for pos in POSITIONS if has_positions else ():
        vals = summ["positions"][pos]["bpd"]
        if not vals:
            continue
        ax.scatter([pos] * len(vals), vals, color="tab:blue", s=14, alpha=0.6)
        m, s = _ms(vals)
        ax.errorbar([pos], [m], yerr=[s], color="tab:blue", fmt="o", ms=7, capsize=4)
    base = summ["positions"]["backbone"]["bpd"]
    if base:
        m, _ = _ms(base)
        ax.axhline(m, color="tab:gray", ls="--", label="no attention (mean)")
        ax.legend(fontsize=8)
    ax.set_xticks(
        list(POSITIONS),
        [
            "pos-1\nbefore actnorm",
            "pos-2\nafter actnorm",
            "pos-3\nafter invconv",
            "pos-4\nafter coupling",
        ],
    )
    ax.set_ylabel("held-out bits/dim")
    ax.set_title(f"iMap position, mnist5k, {res['steps']['mnist5k']} steps", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    fig.tight_layout()
    if has_positions:
        paths.append(folder / "ablation_position.png")
        fig.savefig(paths[-1], dpi=110)
    plt.close(fig)

    fig, axes = plt.subplots(1, len(summ["variants"]), figsize=(10, 3.6), squeeze=False)
    axes = axes[0]
    for ax, d in zip(axes, summ["variants"]):
        for v in VARIANTS:
            for s in res["seeds"]:
                metrics = ROOT / res["out"] / d / f"{v}-s{s}" / "metrics.jsonl"
                if not metrics.exists():
                    continue
                recs = [json.loads(line) for line in metrics.read_text().splitlines()]
                recs = [r for r in recs if r.get("kind") == "train"]
                # the budget's clock: steps times the variant's measured CPU time per step
                per_step = res["timing"][d][v]["seconds_per_step"]
                t = [r["step"] * per_step for r in recs]
                loss = [r["loss"] for r in recs]
                k = 25  # running mean over 25 steps
                smooth = [
                    statistics.mean(loss[max(0, i - k + 1) : i + 1]) for i in range(len(loss))
                ]
                ax.plot(t, smooth, color=colours[v], lw=1, alpha=0.8, label=v if s == 0 else None)
        ax.axvline(res["budget"][d]["seconds"], color="k", ls=":", lw=1)
        ax.set_xlabel("CPU seconds of training (steps x step time)")
        ax.set_ylabel("train bits/dim (running mean)")
        ax.set_title(d)
        ax.grid(alpha=0.3)
        ax.set_ylim(top=min(ax.get_ylim()[1], 8))
    axes[0].legend(fontsize=8)
    fig.tight_layout()
    paths.append(folder / "ablation_curves.png")
    fig.savefig(paths[-1], dpi=110)
    plt.close(fig)
    return paths


def write_tables(md: Path, text: str) -> None:
    """Replace the generated region of ``docs/results.md`` (between the markers)."""
    block = f"{BEGIN}\n{text}\n{END}"
    if md.exists():
        doc = md.read_text()
        if BEGIN in doc and END in doc:
            doc = doc[: doc.index(BEGIN)] + block + doc[doc.index(END) + len(END) :]
        else:
            doc = doc.rstrip("\n") + "\n\n" + block + "\n"
    else:
        doc = "# Results\n\n" + block + "\n"
    md.write_text(doc)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=2, help="parallel processes (1 thread each)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps-mnist", type=int, default=500, dest="steps_mnist")
    p.add_argument("--steps-photos", type=int, default=300, dest="steps_photos")
    p.add_argument("--out", default="runs/ablation", help="run folders (deleted first)")
    p.add_argument("--results", default="docs/results.json")
    p.add_argument("--doc", default="docs/results.md")
    p.add_argument("--img", default="docs/img")
    p.add_argument("--datasets", nargs="+", default=list(DATA), choices=list(DATA))
    p.add_argument(
        "--mid-step",
        type=int,
        default=0,
        dest="mid_step",
        help="also validate every this many steps and report bits/dim there",
    )
    p.add_argument(
        "--no-positions",
        action="store_false",
        dest="positions",
        help="skip the iMap position runs",
    )
    p.add_argument(
        "--render-only", action="store_true", help="no training: tables and plots from --results"
    )
    a = p.parse_args(argv)
    results = ROOT / a.results
    if a.render_only:
        res = json.loads(results.read_text())
    else:
        res = run(a)
        res["out"] = a.out
        res["summary"] = summarise(res)
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(res, indent=1) + "\n")
    summ = summarise(res)
    text = tables(res, summ)
    print(text)
    write_tables(ROOT / a.doc, text)
    for path in plots(res, summ, ROOT / a.img):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
