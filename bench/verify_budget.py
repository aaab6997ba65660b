"""Time and peak memory of ``flowspec verify`` (reduced size, the default) per flow.

Each flow runs in its own subprocess, ``flowspec verify SPEC --flow NAME`` at its shipped
size (no ``--set``); the CPU time (user + system) and the peak resident set size are the
child's (``resource.getrusage(RUSAGE_CHILDREN)``), the wall time is measured around it. The
budget: at most 2 minutes and 4 GiB per flow on 2 cores. On a shared machine the wall time
includes waiting for a core, so CPU time is the steadier number; a flow is within budget
when both its wall and its CPU time are (on 2 cores, CPU time may reach twice the wall).

    python bench/verify_budget.py                       # every flow of specs/*.flow
    python bench/verify_budget.py specs/fullglow_cityscapes.flow fullglow dualglow
    python bench/verify_budget.py --write docs/performance.md   # the table into its section
"""

from __future__ import annotations

import argparse
import datetime
import glob
import os
import resource
import subprocess
import sys
from pathlib import Path

BUDGET_S = 120.0
BUDGET_GIB = 4.0
LOAD = 0.0  # the load average when the run started
START = ""  # and when
_CODE = "import sys; from flowspec.cli import main; sys.exit(main())"
_ROOT = Path(__file__).resolve().parent.parent
_BEGIN, _END = "<!-- verify-budget:begin -->", "<!-- verify-budget:end -->"


def measure(spec: str, flow: str, threads: int = 2) -> tuple[float, float, float, int]:
    """Wall seconds, CPU seconds, peak RSS in GiB and exit status of ``flowspec verify SPEC
    --flow FLOW``, run alone in a fresh process (so the peak is its own)."""
    code = (
        "import resource, subprocess, sys, time; t = time.perf_counter(); "
        f"rc = subprocess.call([sys.executable, '-c', {_CODE!r}, 'verify', {spec!r}, "
        f"'--flow', {flow!r}], stdout=subprocess.DEVNULL); "
        "u = resource.getrusage(resource.RUSAGE_CHILDREN); "
        "print(time.perf_counter() - t, u.ru_utime + u.ru_stime, u.ru_maxrss, rc)"
    )
    env = {**os.environ, "OMP_NUM_THREADS": str(threads)}
    out = subprocess.run(
        [sys.executable, "-c", code],
        env=env,
        cwd=_ROOT,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    return float(out[0]), float(out[1]), int(out[2]) / 2**20, int(out[3])


def shipped() -> list[tuple[str, str]]:
    """``(spec, flow)`` for every flow of ``specs/*.flow``, in file order."""
    from flowspec.api import analyze

    pairs = []
    for path in sorted(glob.glob(str(_ROOT / "specs" / "*.flow"))):
        specs, _ = analyze(path, all_flows=True)
        rel = os.path.relpath(path, _ROOT)
        pairs += [(rel, s.name) for s in specs]
    return pairs


def table(pairs: list[tuple[str, str]], threads: int) -> tuple[list[str], bool]:
    lines = [
        "| spec | flow | wall, s | CPU, s | peak RSS, GiB | verify exit | within budget |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    ok = True
    seen: list[tuple[float, float, float, str]] = []
    for spec, flow in pairs:
        wall, cpu, gib, rc = measure(spec, flow, threads)
        seen.append((wall, cpu, gib, flow))
        fits = wall <= BUDGET_S and cpu <= BUDGET_S * 2 and gib <= BUDGET_GIB
        ok &= fits and rc == 0
        lines.append(
            f"| {Path(spec).name} | {flow} | {wall:.1f} | {cpu:.1f} | {gib:.2f} | {rc} "
            f"| {'yes' if fits else 'NO'} |"
        )
        print(lines[-1], flush=True)
    if seen:
        slow, heavy = max(seen), max(seen, key=lambda r: r[2])
        lines += [
            "",
            f"{'Every' if ok else 'NOT every'} flow of the {len(seen)} within the budget "
            f"({BUDGET_S:.0f} s, {BUDGET_GIB:g} GiB) and passing; the slowest, {slow[3]}, "
            f"{slow[0]:.1f} s wall ({slow[1]:.1f} s CPU); the largest peak, {heavy[3]}'s, "
            f"{heavy[2]:.2f} GiB.",
        ]
    return lines, ok


def write(doc: Path, lines: list[str], command: str) -> None:
    """Replace the marked section of ``doc`` with the table and the command that made it."""
    text = doc.read_text()
    head, rest = text.split(_BEGIN, 1)
    _, tail = rest.split(_END, 1)
    body = "\n".join([f"`{command}`, started {START} (load average {LOAD:.1f} then):", "", *lines])
    doc.write_text(f"{head}{_BEGIN}\n{body}\n{_END}{tail}")


def main(argv: list[str]) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("spec", nargs="?", help="one .flow file (default: every shipped flow)")
    p.add_argument("flows", nargs="*", help="flows of SPEC (default: all of them)")
    p.add_argument("--threads", type=int, default=2, help="OMP_NUM_THREADS of the child")
    p.add_argument("--write", type=Path, help="write the table into this markdown file")
    a = p.parse_args(argv)
    global LOAD, START
    LOAD = os.getloadavg()[0]
    START = datetime.datetime.now().strftime("%Y-%m-%d %H:%M")
    pairs = shipped()
    if a.spec:
        want = os.path.relpath(os.path.abspath(a.spec), _ROOT)
        pairs = [(s, f) for s, f in pairs if s == want and (not a.flows or f in a.flows)]
    lines, ok = table(pairs, a.threads)
    if a.write:
        write(a.write, lines, "python bench/verify_budget.py " + " ".join(argv))
    return 0 if ok else 1


if __name__ == "__main__":
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    sys.path.insert(0, str(_ROOT))
    sys.exit(main(sys.argv[1:]))
