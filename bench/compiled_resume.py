"""Bit-for-bit resume under ``torch.compile``: 4 training steps straight against 2 steps and
a resume for 2 more, both with ``build_options={"compile": ...}``.

    python bench/compiled_resume.py [--backend inductor] [--device cpu]

Prints the largest parameter difference between the two runs and exits 1 unless it is 0
(bitwise). Compiling takes about a minute on a CPU the first time (seconds once inductor's
cache holds the kernels), which is why the test suite checks the mechanism instead
(tests/test_build_options.py: a loaded model takes the compiled path at once).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import runtime  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--backend", default="inductor")
    p.add_argument("--device", default="cpu")
    a = p.parse_args(argv)
    kw = {
        "overrides": {"K": 1, "hidden": 8},
        "batch": 4,
        "checkpoint_every": 2,
        "val_every": 100,
        "sample_every": 100,
        "val_images": 8,
        "progress": False,
        "device": a.device,
        "build_options": {"compile": a.backend},
    }
    demo = ROOT / "specs" / "demo.flow"
    with tempfile.TemporaryDirectory() as tmp:
        straight = runtime.train(demo, steps=4, out=Path(tmp) / "straight", **kw).model
        runtime.train(demo, steps=2, out=Path(tmp) / "resumed", **kw)
        resumed = runtime.train(demo, steps=4, out=Path(tmp) / "resumed", resume=True, **kw).model
        diff = max(
            float((p - q).detach().abs().max())
            for p, q in zip(straight.parameters(), resumed.parameters())
        )
    print(
        f"compiled ({a.backend}, {a.device}) 4 steps vs 2 + resume 2: largest parameter "
        f"difference {diff:.3g} ({'bitwise equal' if diff == 0 else 'NOT equal'})"
    )
    return 0 if diff == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
