#!/usr/bin/env bash
# Create .venv with the CPU build of torch and arch-lab (editable, with test tools). Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ ! -x .venv/bin/python ]; then
  python3 -m venv .venv
fi
# shellcheck disable=SC1091
source .venv/bin/activate
python -m pip install -q --upgrade pip
# An unpinned torch pulls a multi-GB CUDA build; on a GPU machine install the CUDA torch and `.[gpu]` instead.
python -m pip install -q "torch==2.13.0"
python -m pip install -q -e ".[dev,cell-eval]"
