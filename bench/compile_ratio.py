"""Eager against ``torch.compile`` (inductor) training steps, backbone and with attention.

    python bench/compile_ratio.py --size 3-2-48 --flows backbone glow_imap glow_isdp

For each flow (the ``glow_mnist`` backbone of bench/speed.py, or it with iMap / iSDP after
every coupling) it builds the eager model and a ``compile=True`` copy with the same weights,
compiles it with two training steps (the time is printed: minutes per model on a CPU),
checks that both give the same ``log_prob`` (up to float32 reassociation), then times
training steps of the two interleaved (bench/speed.py's ``interleaved``: rounds of 3 steps,
the fastest of a round kept, CPU time with one torch thread) and prints the median
compiled / eager ratio over rounds with its interquartile range.
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
    p.add_argument("--flows", nargs="+", default=["backbone", "glow_imap", "glow_isdp"],
                   choices=["backbone", "glow_imap", "glow_isdp"])
    p.add_argument("--repeats", type=int, default=9)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    x = torch.rand((speed.BATCH, 1, 32, 32), generator=torch.Generator().manual_seed(0))
    for name in args.flows:
        if name == "backbone":
            spec = flowspec.load(speed.SPEC, overrides=speed.SIZES[args.size])
        else:
            spec = flowspec.loads(speed.ATTENTION, flow=name, overrides=speed.SIZES[args.size],
                                  filename=str(ROOT / "specs" / "_bench_attention.flow"))
        eager = flowspec.compile(spec, device="cpu", seed=0)
        eager.train()
        with torch.no_grad():
            eager(x)  # actnorm's data-dependent init
        compiled = speed.variant(spec, eager, torch.device("cpu"), compile=True)
        compiled.train()
        step_e, step_c = speed.train_step(eager), speed.train_step(compiled)
        start = time.perf_counter()
        step_c(x)
        step_c(x)
        took = time.perf_counter() - start
        with torch.no_grad():
            diff = float((eager.log_prob(x) - compiled.log_prob(x)).abs().max())
            scale = float(eager.log_prob(x).abs().max())
        fns = {"eager": lambda s=step_e: s(x), "compiled": lambda s=step_c: s(x)}
        rounds = speed.interleaved(fns, args.repeats, 3, torch.device("cpu"), time.process_time)
        ratios = [c / e for c, e in zip(rounds["compiled"], rounds["eager"])]
        q = statistics.quantiles(ratios, n=4)
        print(f"{args.size} {name}: compiling {took:.0f} s; |log_prob difference| {diff:.2g} "
              f"(of {scale:.3g}); train step eager {statistics.median(rounds['eager']) * 1e3:.1f}"
              f" ms, compiled {statistics.median(rounds['compiled']) * 1e3:.1f} ms, compiled / "
              f"eager {statistics.median(ratios):.2f}x (IQR {q[0]:.2f}-{q[2]:.2f})", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
