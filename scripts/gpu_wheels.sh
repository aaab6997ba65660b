#!/usr/bin/env bash
# Make the wheel folder that scripts/gpu_check.py installs from on the GPU machine. That
# machine has Python 3.12, torch with CUDA, numpy, networkx, einops, pillow, matplotlib,
# scikit-learn, scikit-image, tqdm and tensorboard, but no network and none of the packages
# below. Run this where pip reaches PyPI; the folder (default gpu_wheels/, git-ignored, about
# 3 MB) then travels with the tree.
#   usage: scripts/gpu_wheels.sh [DIR]
# Each package is named with its dependencies (--no-deps: nothing the machine already has is
# fetched), at the version of this project's development environment when there is one.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=${1:-gpu_wheels}
PY=${PYTHON:-.venv/bin/python}
[ -x "$PY" ] || PY=python3
names=(lark pydantic pydantic_core annotated_types typing_inspection typing_extensions
       graphviz mlxtend)
pins=()
for n in "${names[@]}"; do
  v=$("$PY" -m pip show "$n" 2>/dev/null | sed -n 's/^Version: //p' || true)
  pins+=("$n${v:+==$v}")
done
"$PY" -m pip download --quiet --no-deps --only-binary=:all: --python-version 3.12 \
  --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 --dest "$DIR" "${pins[@]}"
echo "wheels in $DIR/: $(ls "$DIR" | wc -l) files, $(du -sh "$DIR" | cut -f1)"
