#!/usr/bin/env bash
# The main job: set up from nothing, then train the demo spec on 5,000 real MNIST digits
# (about a minute or two on two CPU cores). Writes samples, metrics, the training curve,
# the model diagram and checkpoints to runs/demo-<time>/ and prints where they are.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/flowspec train specs/demo.flow --out "runs/demo-$(date +%Y%m%d-%H%M%S)" "$@"
