#!/usr/bin/env bash
# Run every probe study (sweeps/probes/*.yaml), most important first, then export one tidy CSV per study
# (one row per run: study, trial, arm, task, dataset, locality, seed, parameter_count, flops_per_step,
# train_flops, steps, wall_seconds, every test metric, val_<metric>, floor_<metric>, ceiling_<metric>, config.*)
# to results/probes/<file>.csv.
#
# Sized for about 70 minutes on 2 idle CPU cores: ~62 min of runs (estimates per study in each YAML's header:
# backbones_synthetic 16, backbones_{kang,k562,glioblastoma} 3 each, gene_order_* 4 each, unet_dissection_* 5 each,
# fair_mlp_* 2 each, compute_* 7 each) plus ~0.5 min of worker start-up per study; slower when others share
# the CPU. Each study resumes where it stopped: rerun this script after an interruption.
#
#   bash scripts/run_probes.sh                 # the full study
#   PROFILE=quick bash scripts/run_probes.sh   # smoke test: every arm, 1 seed, a few steps (results/probes/quick/)
set -euo pipefail
# shellcheck source=scripts/study_lib.sh
source "$(dirname "$0")/study_lib.sh"
study_env

PROFILE="${PROFILE:-}"
OUT="results/probes${PROFILE:+/$PROFILE}"
PROBES=(
  backbones_synthetic          # the headline: backbones x gene-order locality (synthetic, known programs)
  backbones_kang               # backbones on real data
  backbones_k562
  backbones_glioblastoma       # null-effect control
  gene_order_synthetic         # does the U-Net care about gene order? (random permutations, clustering)
  compute_synthetic            # equal FLOPs and longer training
  compute_k562
  unet_dissection_synthetic    # which U-Net component matters?
  transformer_synthetic        # does gene-gene mixing help the transformer?
  fair_mlp_synthetic           # is the MLP just badly configured?
  gene_order_kang
  unet_dissection_k562
  fair_mlp_k562
)
profile_args=()
if [[ -n "$PROFILE" ]]; then profile_args=(--profile "$PROFILE"); fi

mkdir -p "$OUT"
for name in "${PROBES[@]}"; do
  run_study "sweeps/probes/$name.yaml" "$OUT/$name.csv" "${profile_args[@]}"
done
echo "done $(date +%H:%M:%S): per-run tables in $OUT/"
