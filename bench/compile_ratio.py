"""Eager against ``torch.compile`` (inductor) training steps, backbone and with attention.

    python bench/compile_ratio.py --size 3-2-48 --flows backbone glow_imap glow_isdp

For each flow (the ``glow_mnist`` backbone of bench/speed.py, or it with iMap / iSDP after
every coupling) it builds the eager model and a ``compile=True`` copy with the same weights,
checks that both give the same ``log_prob`` before any step (up to float32 reassociation),
compiles the training step with two steps (the time is printed: minutes per model on a CPU,
seconds when inductor's cache already holds its kernels), then times the training steps of
every model, all interleaved (bench/speed.py's ``interleaved``: rounds of 3 steps, the
fastest of a round kept, CPU time with one torch thread, the allocator as bench/speed.py sets
it) and prints
per flow the median compiled / eager ratio over rounds with its interquartile range and,
when the backbone is among the flows, each model's step time over the backbone's in the
same mode (eager over eager, compiled over compiled): the attention overhead with and
without compilation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import speed

import flowspec


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="3-2-48", choices=list(speed.SIZES))
    p.add_argument(
        "--flows",
        nargs="+",
        default=["backbone", "glow_imap", "glow_isdp"],
        choices=["backbone", "glow_imap", "glow_isdp"],
    )
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    print(f"allocator: {speed.set_allocator('train')}", flush=True)
    x = torch.rand((speed.BATCH, 1, 32, 32), generator=torch.Generator().manual_seed(0))
    fns = {}
    for name in args.flows:
        if name == "backbone":
            spec = flowspec.load(speed.SPEC, overrides=speed.SIZES[args.size])
        else:
            spec = flowspec.loads(
                speed.ATTENTION,
                flow=name,
                overrides=speed.SIZES[args.size],
                filename=str(ROOT / "specs" / "_bench_attention.flow"),
            )
        eager = flowspec.compile(spec, device="cpu", seed=0)
        eager.train()
        with torch.no_grad():
            eager(x)  # actnorm's data-dependent init
        compiled = speed.variant(spec, eager, torch.device("cpu"), compile=True)
        compiled.train()
        # the same weights, before any step: the training graph's log_prob against the eager
        # model's. A model's first training call runs eagerly (actnorm's init, already done
        # here, is only marked as seen), the second compiles the forward.
        start = time.perf_counter()
        compiled.log_prob(x)
        lp_c, lp_e = compiled.log_prob(x).detach(), eager.log_prob(x).detach()
        diff, scale = float((lp_e - lp_c).abs().max()), float(lp_e.abs().max())
        step_e, step_c = speed.train_step(eager), speed.train_step(compiled)
        step_c(x)  # compiles the backward
        step_c(x)
        took = time.perf_counter() - start
        print(
            f"{args.size} {name}: compiling {took:.0f} s; |log_prob difference| {diff:.2g} "
            f"(of {scale:.3g})",
            flush=True,
        )
        fns[(name, "eager")] = lambda s=step_e: s(x)
        fns[(name, "compiled")] = lambda s=step_c: s(x)
    rounds = speed.interleaved(fns, args.repeats, 3, torch.device("cpu"), time.process_time)
    for name in args.flows:
        e, c = rounds[(name, "eager")], rounds[(name, "compiled")]
        line = (
            f"{args.size} {name}: train step eager {statistics.median(e) * 1e3:.1f} ms, "
            f"compiled {statistics.median(c) * 1e3:.1f} ms, compiled / eager "
            f"{speed.ratio(rounds, (name, 'compiled'), (name, 'eager')):.2f}x (IQR "
            f"{speed.spread(rounds, (name, 'compiled'), (name, 'eager'))})"
        )
        if "backbone" in args.flows and name != "backbone":
            line += "; over the backbone: " + ", ".join(
                f"{mode} {speed.ratio(rounds, (name, mode), ('backbone', mode)):.2f}x (IQR "
                f"{speed.spread(rounds, (name, mode), ('backbone', mode))})"
                for mode in ("eager", "compiled")
            )
        print(line, flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
