"""The front-end fuzzer's library: a generator of valid specs, a mutator of .flow texts, and
the oracle every mutant must satisfy (bench/fuzz.py runs it long; tests/test_fuzz.py and
tests/test_lsp.py run it bounded).

Each mutant is a shipped spec (``specs/**/*.flow``) or a randomly generated valid spec with
one to three random edits: delete, duplicate, swap or move tokens and lines; change
numbers (0, -1, huge, float, 5,000 digits); change names (misspell, another identifier
of the file, a keyword, a layer or argument name); insert random characters, braces,
quotes and odd Unicode; cut the file short. Some are analysed for one flow by name with
a ``--set``-style override. The oracle for every mutant:

* ``flowspec.api.analyze`` returns (it never raises), within the slow limit in CPU seconds;
* every diagnostic is a :class:`~flowspec.errors.Diagnostic` whose span points into its
  file (``1 <= line <= lines + 1``, ``column >= 1``), and rendering the diagnostics (the
  text of a :class:`~flowspec.errors.FlowSpecError`, and its JSON) works;
* every N-th mutant also goes through ``flowspec check FILE [--format json]`` in-process,
  which must exit 1 exactly when ``analyze`` finds errors (0 otherwise) and never raise;
* a mutant that parses can be formatted, the result parses, and formatting it again
  changes nothing (counted apart, as "fmt findings": fmt.py is not the front end).

The parts: :mod:`fuzz_specs`, the generator of valid specs (:func:`fuzz_specs.random_spec`
takes a :class:`fuzz_specs.Chooser`: tests drive it from hypothesis, bench/fuzz.py from
:class:`random.Random`); :mod:`fuzz_mutate`, the mutator; :mod:`fuzz_oracle`, the oracle.
This module draws the mutants and runs the oracle on each (:func:`fuzz`).
"""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from fuzz_mutate import OVERRIDES, mutate
from fuzz_oracle import Failure, FmtFailure, check_mutant
from fuzz_specs import Chooser, random_spec

from flowspec import parse_override

ROOT = Path(__file__).resolve().parents[1]

SPECS = ROOT / "specs"


def cli_folder() -> Path:
    """A scratch copy of specs/, so that imports of mutants resolve as they do in place."""
    folder = Path(tempfile.mkdtemp(prefix="flowspec-fuzz-"))
    shutil.copytree(SPECS, folder / "specs")
    return folder / "specs"


# ==== the driver ===========================================================================
def seeds(rng: random.Random, n_generated: int = 40) -> list[tuple[str, str]]:
    """(file name, text) of the texts to mutate: shipped specs and generated ones.

    Generated specs are given a file name inside specs/ so that nothing depends on it
    except imports, which they do not use.
    """
    out = [
        (str(p.relative_to(ROOT)), p.read_text(encoding="utf-8"))
        for p in sorted(SPECS.rglob("*.flow"))
    ]
    chooser = Chooser(rng)
    out += [(f"specs/generated_{i}.flow", random_spec(chooser).text) for i in range(n_generated)]
    return out


@dataclass
class Report:
    tried: int = 0
    resolved: int = 0
    errors: int = 0
    cli_runs: int = 0
    failures: list[dict] = field(default_factory=list)
    fmt_failures: list[dict] = field(default_factory=list)
    slowest: float = 0.0  # CPU seconds
    slowest_wall: float = 0.0
    slowest_what: str = ""
    by_code: dict[str, int] = field(default_factory=dict)


def fuzz(
    n: int,
    seed: int,
    *,
    time_limit: float | None = None,
    out: Path | None = None,
    slow: float = 2.0,
    cli_every: int = 10,
    fmt: bool = True,
    max_edits: int = 3,
    progress: Callable[[Report], None] | None = None,
) -> Report:
    """Try ``n`` mutants drawn with ``seed``; see the module docstring for the oracle."""
    rng = random.Random(seed)
    corpus = seeds(random.Random(seed + 1))
    report = Report()
    folder = cli_folder()
    start = time.perf_counter()
    old_cwd = os.getcwd()
    os.chdir(ROOT)  # file names of seeds are relative to the repository
    try:
        for i in range(n):
            if time_limit is not None and time.perf_counter() - start > time_limit:
                break
            file, base = corpus[rng.randrange(len(corpus))]
            text, ops = mutate(rng, base, None if max_edits <= 3 else rng.randint(1, max_edits))
            flow, sets = None, None
            if rng.random() < 0.15:  # one flow by name, maybe with --set style overrides
                names = re.findall(r"flow\s+([A-Za-z_]\w*)", text) or ["nope"]
                flow = rng.choice(names + ["nope"])
                if rng.random() < 0.5:
                    params = re.findall(r"[(,]\s*([A-Za-z_]\w*)\s*=", text) or ["K"]
                    sets = {rng.choice(params + ["nope"]): rng.choice(OVERRIDES)}
            overrides = {k: parse_override(v) for k, v in sets.items()} if sets else None
            report.tried += 1
            t0, c0 = time.perf_counter(), time.process_time()
            cli = bool(cli_every and i % cli_every == 0)
            report.cli_runs += cli
            try:
                code = check_mutant(
                    text,
                    file,
                    flow=flow,
                    overrides=overrides,
                    fmt=fmt,
                    cli_dir=folder if cli else None,
                )
                # CPU time, not wall time: the machine may be shared
                dt = time.process_time() - c0
                if dt > slow:
                    raise Failure(f"slow: {dt:.2f} s of CPU")
            except Exception as e:  # noqa: BLE001 - anything but diagnostics is a finding
                dt = time.process_time() - c0
                kind = "Failure" if isinstance(e, Failure) else type(e).__name__
                fail = {
                    "index": i,
                    "seed": seed,
                    "file": file,
                    "flow": flow,
                    "set": sets,
                    "ops": ops,
                    "kind": kind,
                    "message": str(e)[:500],
                    "traceback": traceback.format_exc()[-3000:],
                    "seconds": round(dt, 3),
                }
                fmt_only = isinstance(e, FmtFailure)
                (report.fmt_failures if fmt_only else report.failures).append(fail)
                if out is not None:
                    save(out / f"{'fmt' if fmt_only else 'failure'}_{seed}_{i}", text, fail)
                if fmt_only:  # the front end itself was fine
                    report.errors += 1
                continue
            if dt > report.slowest:
                report.slowest_what = f"mutant {i} of seed {seed} ({file}; {', '.join(ops)})"
            report.slowest = max(report.slowest, dt)
            report.slowest_wall = max(report.slowest_wall, time.perf_counter() - t0)
            if code is None:
                report.resolved += 1
            else:
                report.errors += 1
                report.by_code[code] = report.by_code.get(code, 0) + 1
            if progress is not None and report.tried % 1000 == 0:
                progress(report)
    finally:
        os.chdir(old_cwd)
        shutil.rmtree(folder.parent, ignore_errors=True)
    return report


def save(stem: Path, text: str, meta: dict) -> None:
    stem.parent.mkdir(parents=True, exist_ok=True)
    with open(stem.with_suffix(".flow"), "w", encoding="utf-8", newline="") as f:
        f.write(text)  # byte for byte: a lone \r must stay one
    stem.with_suffix(".json").write_text(json.dumps(meta, indent=2))


def summary(r: Report, seconds: float) -> str:
    return (
        f"mutants tried: {r.tried}\n"
        f"resolved (no errors): {r.resolved}\n"
        f"FlowSpecError diagnostics: {r.errors}\n"
        f"failures (anything else): {len(r.failures)}\n"
        f"fmt findings (fmt of a parsing mutant failed): {len(r.fmt_failures)}\n"
        f"CLI runs in-process: {r.cli_runs}\n"
        f"slowest passing mutant: {r.slowest:.3f} s CPU: {r.slowest_what}\n"
        f"slowest wall time of a passing mutant: {r.slowest_wall:.3f} s\n"
        f"wall time: {seconds:.1f} s"
    )
