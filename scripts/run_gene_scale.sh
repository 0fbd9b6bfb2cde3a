#!/usr/bin/env bash
# Run the gene-scale probe studies (why the U-Net beats the MLP at PRiMeFlow's gene counts), export one per-run
# table per study to results/probes_v2/, collect the learning curves and regenerate the tables and figures in
# docs/findings.md and docs/figures/gene_scale/.
#
# Sized for 2 idle CPU cores (estimates in each YAML's header): mlp_span_synthetic about 45 min,
# headline_genes_synthetic about 1 h (its g128 and g2048 profiles: run them with PROFILES="g128 g2048"),
# mlp_span_kang about 20 min, gene_order_lottery_synthetic about 20 min, unet_attention_synthetic about 25 min,
# gene_identity_k562 (every K562 fold at the recipe budget) about 2 h, gene_identity_kang (every Kang cell type at
# the recipe budget) about 1.5 h, headline_datasets_synthetic (the 512-gene headline on five more generated datasets)
# about 40 min, failing_order_synthetic and scattered_datasets_synthetic (the failing gene order of the earlier
# probes re-run, and five more scattered datasets) about 25 min each, plateau_synthetic (the 512-gene headline runs
# continued to a plateau, or 900 s each) about 1.5 h, decayed_lr_synthetic (its MLPs with the learning rate decayed;
# run after plateau_synthetic, whose runs it pairs with) about 20 min, mlp_budget_2048_synthetic (two MLPs at 2048
# genes trained four times longer) about 20 min, mlp_width_2048_synthetic (an MLP as wide as the gene count at 2048
# genes, in fp32) about 80 min, mlp_width_norm_2048_synthetic (the same with LayerNorm, two threads) about 40 min,
# repaired_mlp_k562 and repaired_mlp_kang (the repaired MLP on every real-data fold,
# in fp32; run after gene_identity_k562 / gene_identity_kang, whose U-Nets they pair with) about 30 and 20 min on
# one worker, layernorm_synthetic (where the normalisation sits in a full-rank MLP, 512 genes) about 1 h and
# layernorm_centred_synthetic (the same with the source centred on the training means) about 20 min,
# centred_2048_synthetic (the centred source for the width-2048 LayerNorm MLP at 2048 genes) about 35 min,
# centred_kang (LayerNorm on/off x centred source on Kang at 512 and 2048 HVGs) about 70 min, and
# unet_2048_synthetic (the U-Net with and without gene identity at 2048 genes, 500 steps of batch 64) about
# 2 h 50 min, layernorm_plateau_synthetic (the LayerNorm MLP at 512 genes up to 4000 steps; run after
# layernorm_synthetic and layernorm_centred_synthetic, whose arms it pairs with) about 80 min on one worker, and
# mlp_width_plateau_2048_synthetic (width 1024 without LayerNorm at 2048 genes up to 4000 steps; run after
# mlp_width_2048_synthetic) about 90 min on one worker, and mlp_full_rank_plateau_2048_synthetic (width 2048 without
# LayerNorm up to 4000 steps; after mlp_width_2048_synthetic) about 4.5 h on one worker, equal_flops_2048_synthetic
# (the repaired and the full-rank MLP at the 2048-gene embedding U-Net's training FLOPs; after unet_2048_synthetic)
# about 75 min, equal_flops_decayed_2048_synthetic and equal_flops_decayed_full_rank_2048_synthetic (the same runs
# with the learning rate decayed, one arm each) about 1 h and 75 min here (a single trial, so the second worker
# idles; `--workers 1 --parallel-runs 2`, as in their YAML headers, trains two seeds at once), and equal_flops_k562 (the repaired MLP at the
# K562 embedding U-Net's training FLOPs on every fold; after gene_identity_k562 and repaired_mlp_k562) about 1 h,
# equal_flops_kang (the same on every Kang cell type; after gene_identity_kang and repaired_mlp_kang) about 1 h,
# and failing_layout_synthetic (generator seeds 1-5 in generator seed 0's failing gene order; after
# scattered_datasets_synthetic) about 15 min, and failing_split_synthetic (that dataset and order under five splits
# of its combinations) about 15 min, and gene_order_readouts_synthetic (the lottery's U-Nets re-run with the
# read-outs; analysis/gene_order_stats.py reads it) about 15 min, and top_expressed_kang (the LayerNorm MLP on
# Kang's most highly expressed genes, whose means lie far from 0) about 70 min and failing_shift_synthetic (the
# failing gene order rolled along the gene axis) about 35 min on one worker, and failing_padding_synthetic (that order
# with circular and reflect padding) about 15 min, and failing_roll_map_synthetic (the same order at rolls of 8 to 96
# genes) about 20 min, and failing_end_swap_synthetic (that order with an end block moved inside; its order files in
# sweeps/probes/orders/ come from analysis/end_swap_orders.py) about 25 min, and unet_reach_512_synthetic (the
# 5-level U-Net at 512 genes with zero and circular padding) about 1 h, and unet_reach4_512_synthetic (4 levels there)
# about 30 min, and unet_reach_2048_synthetic (the 7-level U-Net at 2048 genes) about 2 h of one thread, and
# unet_reach_circular_2048_synthetic (the same with circular padding) about as long.
# The unet_plateau_2048_synthetic study needs a GPU: scripts/run_gpu_studies.sh; its CPU fallback,
# unet_plateau_2048_cpu_synthetic (the embedding U-Net at batch 64 up to 3000 steps), takes about 10 h of one
# thread and is left out of STUDIES: run it on its own (command in its YAML header); it resumes across sessions. The read-outs
# added after a study ran (source sensitivity, velocity gain, hidden source share) are recomputed from its run
# directories by analysis/posthoc_readouts.py (POSTHOC below). Every study resumes where it stopped: rerun this
# script after an interruption.
#
#   bash scripts/run_gene_scale.sh                                  # every study below, default profiles
#   STUDIES="mlp_span_synthetic" bash scripts/run_gene_scale.sh     # a subset
#   PROFILES="g2048" STUDIES="headline_genes_synthetic" bash scripts/run_gene_scale.sh
set -euo pipefail
# shellcheck source=scripts/study_lib.sh
source "$(dirname "$0")/study_lib.sh"
study_env

STUDIES="${STUDIES:-mlp_span_synthetic headline_genes_synthetic mlp_span_kang gene_order_lottery_synthetic unet_attention_synthetic gene_identity_k562 gene_identity_kang headline_datasets_synthetic failing_order_synthetic scattered_datasets_synthetic plateau_synthetic decayed_lr_synthetic mlp_budget_2048_synthetic mlp_width_2048_synthetic mlp_width_norm_2048_synthetic repaired_mlp_k562 repaired_mlp_kang layernorm_synthetic layernorm_centred_synthetic centred_2048_synthetic centred_kang unet_2048_synthetic layernorm_plateau_synthetic mlp_width_plateau_2048_synthetic mlp_full_rank_plateau_2048_synthetic equal_flops_2048_synthetic equal_flops_decayed_2048_synthetic equal_flops_decayed_full_rank_2048_synthetic equal_flops_k562 equal_flops_kang failing_layout_synthetic failing_split_synthetic gene_order_readouts_synthetic top_expressed_kang failing_shift_synthetic failing_padding_synthetic failing_roll_map_synthetic failing_end_swap_synthetic unet_reach_512_synthetic unet_reach4_512_synthetic unet_reach_2048_synthetic unet_reach_circular_2048_synthetic}"
# studies whose runs predate some read-outs: recomputed from their run directories after the export
POSTHOC="mlp_width_2048_synthetic mlp_width_norm_2048_synthetic layernorm_synthetic"
PROFILES="${PROFILES:-}"
OUT=results/probes_v2
mkdir -p "$OUT"
for name in $STUDIES; do
  for profile in "" $PROFILES; do
    if [[ -n "$profile" ]] && ! grep -q "^  $profile:" "sweeps/probes/$name.yaml"; then continue; fi
    args=(); suffix=""
    if [[ -n "$profile" ]]; then args=(--profile "$profile"); suffix="_$profile"; fi
    run_study "sweeps/probes/$name.yaml" "$OUT/$name$suffix.csv" "${args[@]}"
  done
done
for name in $POSTHOC; do
  if [[ " $STUDIES " == *" $name "* ]]; then python analysis/posthoc_readouts.py --results "$OUT" "$name"; fi
done
# how far the zero-mean Gaussian source starts from the data of the studies on where LayerNorm stops the MLP, and
# from the other shipped real datasets
python analysis/source_offset.py --out "$OUT/source_offset.csv" sweeps/probes/layernorm_synthetic.yaml \
  sweeps/probes/centred_2048_synthetic.yaml sweeps/probes/centred_kang.yaml sweeps/probes/gene_identity_k562.yaml \
  sweeps/probes/backbones_glioblastoma.yaml sweeps/probes/top_expressed_kang.yaml
# whether four properties of the gene order explain the U-Net's results over the orders it was trained on
python analysis/gene_order_stats.py --results "$OUT" --out "$OUT/gene_order_stats.csv" --report docs/gene_order_stats.md
python analysis/gene_scale.py --results "$OUT" --out docs/findings.md --figures docs/figures/gene_scale --collect-curves
echo "done $(date +%H:%M:%S)"
