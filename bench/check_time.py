"""Wall time of ``flowspec check`` on every shipped spec (a fresh process each time).

    python bench/check_time.py [--runs 9] [--out docs/performance.md]

Each spec in ``specs/`` (``specs/lib/`` included) is checked ``--runs`` times with
``python -m flowspec.cli check FILE``, after one unmeasured run that lets Python write its
bytecode cache and lark its parser-table cache, as on an installed copy. Bytecode goes to a
private folder (``PYTHONPYCACHEPREFIX``) so that nothing is written into the source tree,
even where the environment sets ``PYTHONDONTWRITEBYTECODE``. Reported per spec: the median
wall time and the median CPU time (user + system) of the child process. On an idle machine
the two agree; on a shared one the wall time also contains waiting for a core, and the CPU
time is the better measure of what flowspec itself costs. The target (0.3 s) is on the wall
time of the largest spec. Writes its section of ``docs/performance.md``.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TARGET = 0.3


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def run_once(args: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    cpu, start = child_cpu(), time.perf_counter()
    p = subprocess.run(
        args, cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=False
    )
    return time.perf_counter() - start, child_cpu() - cpu, p.returncode


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--runs", type=int, default=9)
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "docs" / "performance.md",
        help="markdown file whose `check` section is rewritten ('-' for none)",
    )
    a = p.parse_args(argv)
    sys.path.insert(0, str(ROOT / "bench"))
    from speed import write_section

    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    env["PYTHONPYCACHEPREFIX"] = str(Path(tempfile.gettempdir()) / "flowspec-bench-pycache")
    specs = sorted(ROOT.glob("specs/**/*.flow"))
    base = [sys.executable, "-c", "pass"]
    run_once(base, env)
    rows = []
    interpreter = [run_once(base, env)[:2] for _ in range(a.runs)]
    for spec in specs:
        cmd = [sys.executable, "-m", "flowspec.cli", "check", str(spec.relative_to(ROOT))]
        run_once(cmd, env)  # caches
        runs = [run_once(cmd, env) for _ in range(a.runs)]
        rows.append(
            (
                spec.relative_to(ROOT),
                spec.stat().st_size,
                statistics.median(r[0] for r in runs),
                statistics.median(r[1] for r in runs),
                runs[0][2],
            )
        )
    lines = [
        (
            f"Command: `python bench/check_time.py --runs {a.runs}` (median of {a.runs} "
            "runs per spec, after one warm-up run)."
        ),
        (
            f"Date: {dt.datetime.now().strftime('%Y-%m-%d %H:%M')}; load average before "
            f"the run: {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores."
        ),
        "",
        "| spec | bytes | exit | wall s | CPU s |",
        "|---|---:|---:|---:|---:|",
    ]
    for path, size, wall, cpu, rc in rows:
        lines.append(f"| {path} | {size:,} | {rc} | {wall:.3f} | {cpu:.3f} |")
    lines.append(
        f"| (`python -c pass`, for scale) | | | "
        f"{statistics.median(r[0] for r in interpreter):.3f} | "
        f"{statistics.median(r[1] for r in interpreter):.3f} |"
    )
    largest = max(rows, key=lambda r: r[1])
    slowest = max(rows, key=lambda r: r[2])
    verdict = "meets" if largest[2] <= TARGET else "is ABOVE"
    lines += [
        "",
        (
            f"The largest spec, {largest[0]}, takes {largest[2]:.3f} s wall "
            f"({largest[3]:.3f} s CPU): it {verdict} the {TARGET} s target; the "
            f"slowest is {slowest[0]} at {slowest[2]:.3f} s wall ({slowest[3]:.3f} s "
            "CPU)."
        ),
    ]
    body = "\n".join(lines)
    print(body)
    if str(a.out) != "-":
        write_section(a.out, "check", body)
        print(f"wrote {a.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
