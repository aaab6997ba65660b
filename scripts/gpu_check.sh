#!/usr/bin/env bash
# One prepared check for a machine with a CUDA GPU, for the few minutes one is lent:
#   1. the CUDA-relevant tests (build options: channels-last, autocast, torch.compile, and
#      the CUDA training step that must never sync with the host);
#   2. short CUDA training runs of specs/demo.flow on real MNIST digits: fp32, bf16 autocast,
#      and torch.compile with bf16, each printing images/s, peak GPU memory and held-out
#      bits/dim (so a broken fast path shows up as a wrong number, not only a crash).
# Without CUDA it says so and exits 0: there is nothing to check.
#   usage: scripts/gpu_check.sh [STEPS]      (default 150 steps per run; env OUT= run folder)
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
STEPS=${1:-150}
OUT=${OUT:-$(mktemp -d)}

if ! "$PY" -c "import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)"; then
  echo "gpu_check: torch sees no CUDA device here; nothing to check (not a failure)"
  exit 0
fi
"$PY" -c "import torch; p = torch.cuda.get_device_properties(0); \
print(f'gpu_check: {p.name}, {p.total_memory / 2**30:.0f} GiB, torch {torch.__version__}, \
CUDA {torch.version.cuda}')"

echo "== CUDA-relevant tests"
"$PY" -m pytest -q -x tests/test_build_options.py

echo "== short training runs of specs/demo.flow on cuda ($STEPS steps, batch 64) -> $OUT"
OUT="$OUT" STEPS="$STEPS" "$PY" - <<'EOF'
import json
import math
import os
import statistics
import sys

import torch

import runtime

steps, out = int(os.environ["STEPS"]), os.environ["OUT"]
runs = [("fp32", {}),
        ("bf16 autocast", {"autocast": torch.bfloat16}),
        ("torch.compile + bf16", {"autocast": torch.bfloat16, "compile": True})]
failed = []
for name, options in runs:
    folder = os.path.join(out, name.replace(" ", "_").replace("+", "and").replace(".", ""))
    torch.cuda.reset_peak_memory_stats()
    try:
        result = runtime.train("specs/demo.flow", out=folder, steps=steps, batch=64,
                               device="cuda", progress=False, val_every=steps,
                               sample_every=steps, checkpoint_every=steps, val_images=256,
                               build_options=options)
    except Exception as e:  # report every run, then fail at the end
        print(f"{name:>22}: FAILED: {type(e).__name__}: {e}", flush=True)
        failed.append(name)
        continue
    peak = torch.cuda.max_memory_allocated() / 2**20
    with open(os.path.join(folder, "metrics.jsonl")) as f:
        rates = [r["images_per_s"] for r in map(json.loads, f) if r.get("kind") == "train"]
    rate = statistics.median(rates[len(rates) // 2:])  # after warm-up and compilation
    bpd = result.val_bpd
    print(f"{name:>22}: {rate:8.0f} images/s (median of the last half of the steps), "
          f"peak {peak:7.0f} MiB, held-out bits/dim {bpd:.3f}, "
          f"{result.summary['train_seconds']:.1f} s in all", flush=True)
    if bpd is None or not math.isfinite(bpd):
        failed.append(name)
if failed:
    sys.exit(f"gpu_check: failed: {', '.join(failed)}")
print("gpu_check: all CUDA checks passed")
EOF
