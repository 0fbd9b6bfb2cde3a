#!/usr/bin/env bash
# Create .venv with torch and arch-lab (editable, with test tools). Idempotent: a torch 2.13 already in .venv is
# kept, so a CPU-only machine installs the CPU wheel first (README, "Installing torch") and never downloads the CUDA
# build.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
python -m pip install -q --upgrade pip
# From PyPI this is the CUDA build on Linux (several GB); on a GPU machine add `.[gpu]` (xformers) after it.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev,cell-eval]"
