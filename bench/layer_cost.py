"""What one attention layer's forward costs alone, with cold caches, and between model calls.

    python bench/layer_cost.py            # iMap and iSDP of bench/speed.py at 3-2-48

Takes the first attention layer (4x16x16 input, batch 32) of bench/speed.py's ``+iMap`` and
``+iSDP`` models and times its forward (no gradient, CPU time, one torch thread, the
allocator as bench/speed.py sets it) in three settings: called in a loop (``hot``: its
inputs, buffers and code stay in the caches); after touching a 32 MB buffer before every
call (``cold``: nothing of it cached); and after a forward of the whole model before every
call (``in a model``: what a training step leaves in the caches). The settings take turns,
``--rounds`` rounds of ``--calls`` calls each; it prints the median over rounds of each
round's median call. The gap between the first and the other two is what a layer costs in
a model beyond its arithmetic: see docs/performance.md ("Where an attention layer's time
goes in a model").
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

from flowspec.nn.imap import IMap
from flowspec.nn.isdp import ISDP


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--size", default="3-2-48", choices=list(speed.SIZES))
    p.add_argument("--rounds", type=int, default=15, help="rounds (default 15)")
    p.add_argument("--calls", type=int, default=10, help="timed calls per setting and round")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    speed.set_allocator("train")
    x0 = torch.rand((speed.BATCH, 1, 32, 32), generator=torch.Generator().manual_seed(0))
    big = torch.zeros(8 << 20)  # 32 MB, more than this machine's caches
    for flow in ("glow_imap", "glow_isdp"):
        model = speed.attention_model(flow, args.size, torch.device("cpu"), x0)
        layer = next(m for m in model.modules() if isinstance(m, (IMap, ISDP)))
        x = torch.randn(speed.BATCH, *layer.in_shape, generator=torch.Generator().manual_seed(1))

        def whole_model(model: torch.nn.Module = model) -> None:
            model.log_prob(x0)

        settings = {"hot": None, "cold": lambda: big.add_(1.0), "in a model": whole_model}
        rounds: dict[str, list[float]] = {name: [] for name in settings}
        with torch.no_grad():
            layer(x)
            for r in range(args.rounds):
                names = list(settings)
                for name in names[r % 3 :] + names[: r % 3]:
                    before, times = settings[name], []
                    for _ in range(args.calls):
                        if before is not None:
                            before()
                        start = time.process_time()
                        layer(x)
                        times.append(time.process_time() - start)
                    rounds[name].append(statistics.median(times))
        print(
            f"{args.size} {type(layer).__name__} {tuple(layer.in_shape)} forward: "
            + ", ".join(
                f"{name} {statistics.median(t) * 1e3:.3f} ms" for name, t in rounds.items()
            ),
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
