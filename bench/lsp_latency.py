"""Latency of ``flowspec lsp`` as an editor sees it, over stdio (tests/lsp_client.py):
diagnostics after an edit of the largest shipped spec, hover on a layer and completion
after ``attention ``. Targets: diagnostics <= 300 ms, hover and completion <= 100 ms.

    python bench/lsp_latency.py [--repeat N]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from lsp_client import Client  # noqa: E402


def _ms(samples: list[float]) -> str:
    return f"median {1000 * statistics.median(samples):.1f} ms, max {1000 * max(samples):.1f} ms"


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--repeat", type=int, default=20)
    a = p.parse_args(argv)
    largest = max((ROOT / "specs").glob("**/*.flow"), key=lambda f: f.stat().st_size)
    text, uri = largest.read_text(), largest.as_uri()
    lines = text.split("\n")
    kinds = ("coupling", "actnorm", "invconv", "squeeze", "attention")
    layer = next(i for i, x in enumerate(lines) if x.strip().startswith(kinds))
    col = len(lines[layer]) - len(lines[layer].lstrip()) + 2
    c = Client()
    try:
        c.initialize()
        c.open(uri, text)
        diag, hover, comp = [], [], []
        for i in range(a.repeat):
            edited = text + f"\n# edit {i}\n"
            t = time.perf_counter()
            c.change(uri, edited, 2 * i + 2)
            diag.append(time.perf_counter() - t)
            t = time.perf_counter()
            c.at("textDocument/hover", uri, layer, col)
            hover.append(time.perf_counter() - t)
            typed = "\n".join([*lines[:layer], "    attention ", *lines[layer:]])
            c.change(uri, typed, 2 * i + 3)
            t = time.perf_counter()
            c.at("textDocument/completion", uri, layer, len("    attention "))
            comp.append(time.perf_counter() - t)
        print(f"{largest.relative_to(ROOT)} ({len(text):,} characters, {a.repeat} repeats)")
        print(f"diagnostics after an edit: {_ms(diag)}  (target 300 ms)")
        print(f"hover on a layer:          {_ms(hover)}  (target 100 ms)")
        print(f"completion:                {_ms(comp)}  (target 100 ms)")
    finally:
        c.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
