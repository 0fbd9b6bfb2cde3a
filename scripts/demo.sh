#!/usr/bin/env bash
# The main job: unet1d vs mlp vs gene_transformer, each with its recommended recipe (3 seeds each) on the Kang
# cell-type transfer task (held-out FCGR3A+ monocytes),
# as a resumable Optuna study with two worker processes (about 10 minutes on 2 idle CPU cores, see
# sweeps/demo.yaml), ending in the figures and tables of reports/demo/. The workers log each trial and, every
# 30 s, the run and step they are on with the time left.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup_env.sh
# shellcheck disable=SC1091
source .venv/bin/activate
arch-lab sweep run sweeps/demo.yaml --workers 2
arch-lab sweep export sweeps/demo.yaml --out reports/demo/trials.csv
arch-lab report demo_backbones_kang_v3 --out reports/demo
echo "figures and tables: reports/demo/report.md"
