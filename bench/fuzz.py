"""Front-end fuzzing, the long runs: mutate .flow files and check that flowspec only ever
answers with compiler diagnostics. docs/reliability.md has the results and what is not
covered. The generator, the mutator and the oracle are ``tests/fuzzing.py`` and the
``tests/fuzz_*.py`` it draws on (the suite runs them bounded, tests/test_fuzz.py); a failure's
text is saved byte for byte under ``--out`` for ``--replay FILE...``.

    python bench/fuzz.py --mutants 20000 --seed 0 [--time-limit S] [--jobs N]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from fuzz_oracle import check_mutant  # the library it runs: tests/fuzzing.py and its parts
from fuzzing import Report, cli_folder, fuzz, summary

from flowspec import parse_override


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--mutants", type=int, default=1000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--time-limit", type=float, default=None, help="stop after S seconds")
    p.add_argument(
        "--out",
        type=Path,
        default=ROOT / "bench" / "fuzz-failures",
        help="folder for the texts of failing mutants",
    )
    p.add_argument(
        "--slow",
        type=float,
        default=2.0,
        help="CPU seconds after which a mutant counts as a failure",
    )
    p.add_argument(
        "--cli-every",
        type=int,
        default=10,
        help="run `flowspec check` on every N-th mutant (0: never)",
    )
    p.add_argument("--no-fmt", action="store_true", help="skip the fmt checks")
    p.add_argument(
        "--max-edits",
        type=int,
        default=3,
        help="edits per mutant: 1-3 (mostly 1) by default, else 1..N uniformly",
    )
    p.add_argument("--jobs", type=int, default=1, help="worker processes (seeds seed..seed+N-1)")
    p.add_argument("--replay", type=Path, nargs="*", help="run the oracle on saved mutants")
    p.add_argument("--json", type=Path, default=None, help="also write the counts here")
    a = p.parse_args(argv)
    sys.setrecursionlimit(max(sys.getrecursionlimit(), 1000))
    if a.replay:
        bad = 0
        folder = cli_folder()
        os.chdir(ROOT)
        for path in a.replay:
            path = path.resolve() if path.exists() else path
            meta_file = path.with_suffix(".json")
            meta = json.loads(meta_file.read_text()) if meta_file.exists() else {}
            sets = meta.get("set") or None
            try:
                with open(path, encoding="utf-8", newline="") as f:
                    code = check_mutant(
                        f.read(),
                        meta.get("file", str(path)),
                        flow=meta.get("flow"),
                        overrides={k: parse_override(v) for k, v in sets.items()}
                        if sets
                        else None,
                        cli_dir=folder,
                    )
                print(path, "ok:", code or "resolves")
            except Exception:  # noqa: BLE001
                bad += 1
                print(path, "FAILS")
                traceback.print_exc()
        shutil.rmtree(folder.parent, ignore_errors=True)
        return 1 if bad else 0
    t0 = time.perf_counter()

    def progress(r: Report) -> None:
        print(
            f"  {r.tried} mutants, {r.resolved} resolved, {r.errors} errors, "
            f"{len(r.failures)} failures, {time.perf_counter() - t0:.0f} s",
            flush=True,
        )

    if a.jobs > 1:
        from concurrent.futures import ProcessPoolExecutor

        share = [a.mutants // a.jobs + (i < a.mutants % a.jobs) for i in range(a.jobs)]
        with ProcessPoolExecutor(a.jobs) as pool:
            parts = list(
                pool.map(
                    _job,
                    [
                        (
                            k,
                            a.seed + i,
                            a.time_limit,
                            a.out,
                            a.slow,
                            a.cli_every,
                            not a.no_fmt,
                            a.max_edits,
                        )
                        for i, k in enumerate(share)
                    ],
                )
            )
        report = Report()
        for r in parts:
            report.tried += r.tried
            report.resolved += r.resolved
            report.errors += r.errors
            report.cli_runs += r.cli_runs
            report.failures += r.failures
            report.fmt_failures += r.fmt_failures
            if r.slowest > report.slowest:
                report.slowest_what = r.slowest_what
            report.slowest = max(report.slowest, r.slowest)
            report.slowest_wall = max(report.slowest_wall, r.slowest_wall)
            for k, v in r.by_code.items():
                report.by_code[k] = report.by_code.get(k, 0) + v
    else:
        report = fuzz(
            a.mutants,
            a.seed,
            time_limit=a.time_limit,
            out=a.out,
            slow=a.slow,
            cli_every=a.cli_every,
            fmt=not a.no_fmt,
            max_edits=a.max_edits,
            progress=progress,
        )
    seconds = time.perf_counter() - t0
    print(summary(report, seconds))
    codes = sorted(report.by_code.items(), key=lambda kv: -kv[1])
    print("first error codes: " + ", ".join(f"{k} {v}" for k, v in codes))
    if a.json is not None:
        a.json.write_text(
            json.dumps(
                {
                    "command": " ".join(["python", "bench/fuzz.py", *(argv or sys.argv[1:])]),
                    "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
                    "tried": report.tried,
                    "resolved": report.resolved,
                    "flowspec_errors": report.errors,
                    "failures": len(report.failures),
                    "fmt_findings": len(report.fmt_failures),
                    "cli_runs": report.cli_runs,
                    "slowest_cpu_s": report.slowest,
                    "slowest_wall_s": report.slowest_wall,
                    "slowest": report.slowest_what,
                    "wall_s": seconds,
                    "first_error_codes": dict(codes),
                },
                indent=2,
            )
        )
    kinds: dict[str, int] = {}
    for f in report.failures + report.fmt_failures:
        key = f"{f['kind']}: {f['message'].splitlines()[0][:100] if f['message'] else ''}"
        kinds[key] = kinds.get(key, 0) + 1
    for k, v in sorted(kinds.items(), key=lambda kv: -kv[1]):
        print(f"  {v:6d}  {k}")
    if report.failures or report.fmt_failures:
        print(f"failing mutants saved under {a.out}")
    return 1 if report.failures else 0


def _job(args: tuple) -> Report:
    n, seed, limit, out, slow, cli_every, fmt, max_edits = args
    return fuzz(
        n,
        seed,
        time_limit=limit,
        out=out,
        slow=slow,
        cli_every=cli_every,
        fmt=fmt,
        max_edits=max_edits,
    )


if __name__ == "__main__":
    sys.exit(main())
