"""Time and peak memory of ``flowspec verify`` (reduced size, the default) per flow.

Each flow runs in its own subprocess; the peak resident set size is the child's
``ru_maxrss`` (``resource.getrusage(RUSAGE_CHILDREN)``). The budget: at most 2 minutes and
4 GiB per flow on 2 cores.

    python bench/verify_budget.py specs/fullglow_cityscapes.flow fullglow dualglow
"""

from __future__ import annotations

import os
import resource
import subprocess
import sys

BUDGET_S = 120.0
BUDGET_GIB = 4.0
_CODE = "import sys; from flowspec.cli import main; sys.exit(main())"


def measure(spec: str, flow: str, threads: int = 2) -> tuple[float, float, int]:
    """Seconds, peak RSS in GiB, exit status of ``flowspec verify SPEC --flow FLOW``, run
    alone in a fresh process (so the peak is its own)."""
    code = ("import resource, subprocess, sys, time; t = time.perf_counter(); "
            f"rc = subprocess.call([sys.executable, '-c', {_CODE!r}, 'verify', {spec!r}, "
            f"'--flow', {flow!r}], stdout=subprocess.DEVNULL); "
            "peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss; "
            "print(time.perf_counter() - t, peak, rc)")
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True,
                         check=True).stdout.split()
    seconds, peak_kib, rc = float(out[0]), int(out[1]), int(out[2])
    return seconds, peak_kib / 2**20, rc


def main(argv: list[str]) -> int:
    spec, flows = argv[0], argv[1:]
    print("| flow | seconds | peak RSS, GiB | verify exit | within budget |")
    print("|---|---:|---:|---:|---|")
    ok = True
    for flow in flows:
        s, gib, rc = measure(spec, flow)
        fits = s <= BUDGET_S and gib <= BUDGET_GIB
        ok &= fits and rc == 0
        print(f"| {flow} | {s:.1f} | {gib:.2f} | {rc} | {'yes' if fits else 'NO'} |")
    return 0 if ok else 1


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.exit(main(sys.argv[1:]))
