#!/usr/bin/env bash
# The demo spec with averaged weights and a cosine decay, short enough for two CPU cores
# (about two minutes): the README quotes this run's numbers. Extra flags pass through.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-runs/demo-recipe}
$PY -m flowspec.cli train specs/demo.flow --ema 0.999 --schedule cosine --steps 300 \
  --val-every 150 --sample-every 300 --checkpoint-every 150 --threads 2 --no-progress \
  --out "$OUT" "$@"
$PY -m flowspec.cli eval --checkpoint "$OUT/checkpoint.pt" --threads 2 --out "$OUT/ema"
$PY -m flowspec.cli eval --checkpoint "$OUT/checkpoint.pt" --threads 2 --no-ema \
  --out "$OUT/raw"
