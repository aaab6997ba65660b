#!/usr/bin/env bash
# The one-shot check for a machine with a CUDA GPU: scripts/gpu_check.py (its docstring says
# what it checks). At most --budget seconds (default 300); exit 0 all passed (or no GPU),
# 1 a check failed, 2 the environment is wrong. Writes results.json and gpu_check.log into
# $OUT when it is set.
#   usage: scripts/gpu_check.sh [--budget SECONDS] [--wheels DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
exec "$PY" scripts/gpu_check.py "$@"
