#!/usr/bin/env bash
# Set up flowspec from nothing: Debian packages (graphviz's `dot`, Fashion-MNIST),
# a virtual environment in .venv, the CPU build of torch and the project itself with its
# dev extra (which includes flowspec[lsp], pygls for `flowspec lsp`).
set -euo pipefail
cd "$(dirname "$0")/.."
export DEBIAN_FRONTEND=noninteractive
need_apt=()
command -v dot >/dev/null 2>&1 || need_apt+=(graphviz)
dpkg -s dataset-fashion-mnist >/dev/null 2>&1 || need_apt+=(dataset-fashion-mnist)
if [ ${#need_apt[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" = 0 ] || SUDO=sudo
  $SUDO apt-get update -q
  $SUDO apt-get install -y -q "${need_apt[@]}"
fi
[ -x .venv/bin/python ] || python3 -m venv .venv
# torch first and pinned: 2.13.0 is the CPU build; the project's range admits it
.venv/bin/pip install -q --disable-pip-version-check 'torch==2.13.0'
.venv/bin/pip install -q --disable-pip-version-check -e '.[dev]'
