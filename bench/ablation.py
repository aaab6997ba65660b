"""AttnFlow's ablations at CPU scale, on real built-in data.

Does adding the paper's invertible attention (iMap, iSDP) to the mARFlow-style backbone
lower held-out bits/dim, at equal training steps and at equal wall-clock, and does iMap's
position in the step of flow matter? Everything trains through ``runtime.train`` on the
flows of ``specs/ablations.flow``, one torch thread per process:

    python bench/ablation.py --jobs 2          # the committed results (about 35 min)
    python bench/ablation.py --render-only     # tables and plots again from the JSON

* data: ``mnist5k`` (5,000 real MNIST digits, 28x28 padded to 32x32, 500 held out) and
  ``photos`` (3x32x32 patches of bundled photographs, 222 held out; a stand-in for
  CIFAR-10, not CIFAR-10);
* model: the Table 2 backbone (mARFlow as its official code builds it: Flow++'s coupling
  network, ConvLSTM priors) at levels-steps-channels 3-2-32 with 4 mixture components, one
  gated residual block per coupling network, no dropout, and ConvLSTM priors of 8 channels
  (the paper: 3-4-96 and 3-2-48 with 32 components, 10 blocks, dropout 0.2, 32 channels);
* variants: ``backbone`` (``marflow_mnist`` of attnflow_mnist.flow, which the attention flows
  extend: no attention), ``imap`` (position_imap pos=4,
  after every coupling) and ``isdp`` (heads_isdp, 5 heads, after every coupling);
* equal steps: every variant trains ``--steps-mnist`` / ``--steps-photos`` steps of batch 32;
* equal wall-clock: a timing pass measures each variant's step time on one core (CPU time
  of a single-threaded process, fastest of ``TIMING_REPEATS`` x ``TIMING_STEPS`` steps,
  variants interleaved); the budget is the slowest variant's time for the equal-steps run,
  and every faster variant resumes its run (bit-for-bit continuation) up to
  ``floor(budget / its step time)`` steps;
* position: iMap before actnorm (pos 1), after actnorm (2), after the 1x1 convolution (3),
  after the coupling (4, shared with ``imap``), on mnist5k at equal steps;
* every configuration with ``--seeds`` seeds (model initialisation and data order); an
  attention variant starts from the backbone's initial weights for its seed, its attention
  layers at the identity, so at step 0 both are the same function.

Held-out bits/dim is the runtime's validation (uniform dequantisation, 8-bit data) on the
data set's fixed validation split. Writes ``docs/results.json`` (every run), the plots
``docs/img/ablation_*.png`` and the tables between the markers of ``docs/results.md``.
The runs (and the constants above: ``MODEL``, ``VARIANTS``, ``RECIPE``, ...) are
``bench/ablation_runs.py``; the summary, tables and plots ``bench/ablation_report.py``.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))  # the sibling modules below

from ablation_report import plots, summarise, tables, write_tables
from ablation_runs import DATA, ROOT, run


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--jobs", type=int, default=2, help="parallel processes (1 thread each)")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--steps-mnist", type=int, default=500, dest="steps_mnist")
    p.add_argument("--steps-photos", type=int, default=300, dest="steps_photos")
    p.add_argument("--out", default="runs/ablation", help="run folders (deleted first)")
    p.add_argument("--results", default="docs/results.json")
    p.add_argument("--doc", default="docs/results.md")
    p.add_argument("--img", default="docs/img")
    p.add_argument("--datasets", nargs="+", default=list(DATA), choices=list(DATA))
    p.add_argument(
        "--mid-step",
        type=int,
        default=0,
        dest="mid_step",
        help="also validate every this many steps and report bits/dim there",
    )
    p.add_argument(
        "--no-positions",
        action="store_false",
        dest="positions",
        help="skip the iMap position runs",
    )
    p.add_argument(
        "--render-only", action="store_true", help="no training: tables and plots from --results"
    )
    a = p.parse_args(argv)
    results = ROOT / a.results
    if a.render_only:
        res = json.loads(results.read_text())
    else:
        res = run(a)
        res["out"] = a.out
        res["summary"] = summarise(res)
        results.parent.mkdir(parents=True, exist_ok=True)
        results.write_text(json.dumps(res, indent=1) + "\n")
    summ = summarise(res)
    text = tables(res, summ)
    print(text)
    write_tables(ROOT / a.doc, text)
    for path in plots(res, summ, ROOT / a.img):
        print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
