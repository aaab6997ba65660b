#!/usr/bin/env bash
# Make the wheel folder that scripts/gpu_check.py installs from on the GPU machine, which
# has Python 3.12 and torch but no network and none of these packages. Run it where pip can
# reach PyPI; the folder (default gpu_wheels/, git-ignored) then travels with the tree.
#   usage: scripts/gpu_wheels.sh [DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-gpu_wheels}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
"$PY" -m pip download --only-binary=:all: --python-version 3.12 \
  --platform manylinux2014_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux_2_28_x86_64 --implementation cp \
  --dest "$DIR" lark pydantic graphviz mlxtend
echo "wheels in $DIR/: $(ls "$DIR" | wc -l) files"
