"""Why the U-Net beats the MLP at PRiMeFlow's gene counts: the gene-scale probe studies' tables and figures.

Usage:
  python analysis/gene_scale.py --results results/probes_v2 --out docs/findings.md \
      --figures docs/figures/gene_scale [--collect-curves]

Reads the per-run tables the probe studies export (``arch-lab sweep export <yaml> --runs --out
results/probes_v2/<probe>.csv``):

- ``mlp_span_synthetic.csv`` (``sweeps/probes/mlp_span_synthetic.yaml``): MLP width x gene count x LayerNorm in
  PRiMeFlow's regime, with a full-rank linear skip and a control-cell source as the two repairs;
- ``mlp_span_kang.csv`` (``sweeps/probes/mlp_span_kang.yaml``): the same question on Kang at 128-2048 HVGs;
- ``gene_order_lottery_synthetic.csv`` (``sweeps/probes/gene_order_lottery_synthetic.yaml``): 20 random orders;
- ``headline_genes_synthetic*.csv`` (``sweeps/probes/headline_genes_synthetic.yaml`` and its ``g128`` / ``g2048``
  profiles): the backbones at equal wall-clock as the gene count grows.

For each study and gene count it writes, into ``--figures``: ``<probe>_cells.csv`` (per arm: runs, mean and 95% t
interval over seeds of the test energy distance, cosine logFC, per-gene spread ratio and the output-span read-out,
with the run's own ``no_change`` floor and split-half ceiling), ``<probe>_comparisons.csv`` (paired over seeds:
every planned contrast, and every arm against the ``no_change`` floor of the same runs; p-values Holm-adjusted over
each study's primary-metric family, with the Holm-consistent interval) and a figure per study. The tables go between
the ``<!-- gene scale: begin -->`` and ``end`` markers of ``--out`` (text around them is kept). Runs that did not
complete are not in the exported CSVs; the cells table counts the seeds each cell has, and a cell short of the
study's seeds is marked.

With ``--collect-curves`` each run's validation learning curve is read from its run directory into
``results/probes_v2/curves/<probe>.csv``; from the curves come ``<probe>_curve_summary.csv`` (where each arm first
fell below the validation floor, where it kept its best, how many runs were still improving and how many ended by
``train.patience``) and, for studies that declare budgets (``plateau_synthetic``), ``<probe>_budgets.csv`` and
``<probe>_budget_comparisons.csv``: every arm's best validation energy at equal training seconds and equal FLOPs, and
the planned contrasts there, paired over runs.
"""

from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.ticker import NullFormatter

from arch_lab.analysis.intervals import t_interval
from arch_lab.analysis.multiplicity import adjust_family
from arch_lab.analysis.paired import paired_comparison
from arch_lab.analysis.style import save_figure
from arch_lab.errors import ArchLabError
from arch_lab.scoreboard import write_generated

BEGIN = "<!-- gene scale: begin -->"
END = "<!-- gene scale: end -->"
PRIMARY = "energy_distance"
SECONDARY = ("cosine_logfc",)
READOUTS = (
    "gene_spread_ratio",
    "readout_source_outside_span",
    "readout_source_sensitivity",
    "readout_source_velocity_gain",
    "readout_hidden_source_share",
)
FLOOR = "no_change (floor)"
SEEDS = 5
REQUIRED = ("arm", "n_genes", "seed", "dataset", "steps", "train_flops", "train_seconds", "git_sha", PRIMARY)


@dataclass(frozen=True)
class Probe:
    """One probe study: its file stem, title, planned contrasts ``(a, b)`` (a minus b) and arm order.

    ``unit`` is what a comparison pairs over: ``"seed"`` (synthetic studies: the same seed gives every arm the same
    data and evaluation cells), ``"fold"`` (real-data studies over every fold: each fold holds out its own
    condition; the seeds of a fold are averaged first, so the fold is the unit of every interval) or
    ``"generator"`` (synthetic studies over several generated datasets: the seeds of a dataset are averaged first)
    or ``"split"`` (one dataset under several ``task.seed`` splits, each holding out its own conditions: the seeds
    of a split are averaged first).
    ``budget_seconds`` and ``budget_tflops``, where given, are the budgets at which the learning curves are read
    (``budget_table``): each run's best validation energy had it been stopped there. ``borrow`` names arms of other
    studies on the same data and seeds, as ``(stem, arm, name)``: those runs join this study's table as arm
    ``name``, so its contrasts can pair with them. ``exclude`` names runs left out of every table and interval, as
    ``(arm, seed, reason)``: the header of the study's section lists each with its reason, so the text can report
    what the run did beside the intervals of the others.
    """

    stem: str
    title: str
    contrasts: tuple[tuple[str, str], ...]
    arms: tuple[str, ...]
    unit: str = "seed"
    budget_seconds: tuple[float, ...] = ()
    budget_tflops: tuple[float, ...] = ()
    borrow: tuple[tuple[str, str, str], ...] = ()
    exclude: tuple[tuple[str, int, str], ...] = ()


def excluded_runs(df: pd.DataFrame, probe: Probe) -> tuple[pd.DataFrame, list[str]]:
    """``df`` without the runs ``probe.exclude`` names, and one line per run left out (arm, seed, reason).

    ``df`` is any table with ``arm`` and ``seed`` columns: the per-run table or the learning curves.

    Raises
    ------
    ArchLabError
        An excluded run is not in ``df`` (a renamed arm or a wrong seed would otherwise drop nothing silently).
    """
    keep = pd.Series(True, index=df.index)
    notes = []
    for arm, seed, reason in probe.exclude:
        hit = (df["arm"] == arm) & (pd.to_numeric(df["seed"]) == seed)
        if not hit.any():
            raise ArchLabError(f"{probe.stem}: excluded run {arm} seed {seed} is not in its table; fix Probe.exclude")
        keep &= ~hit
        notes.append(f"{arm} seed {seed} ({reason})")
    return df[keep].reset_index(drop=True), notes


# (planned contrasts, arm order) shared by studies that run the same arms
RECIPE_ARMS = (
    (
        ("unet1d_gene_embedding", "unet1d"),
        ("mlp", "unet1d"),
        ("mlp_matched", "unet1d"),
        ("mlp_no_norm", "unet1d"),
        ("mlp_no_norm", "mlp"),
        ("mlp_matched", "mlp"),
    ),
    ("unet1d", "unet1d_gene_embedding", "mlp", "mlp_no_norm", "mlp_matched"),
)
HEADLINE_512_ARMS = (
    (
        ("unet1d_gene_embedding", "unet1d"),
        ("mlp_matched", "unet1d"),
        ("mlp_repaired", "unet1d"),
        ("mlp_repaired", "mlp_matched"),
        ("mlp_repaired", "unet1d_gene_embedding"),
    ),
    ("unet1d", "unet1d_gene_embedding", "mlp_matched", "mlp_repaired"),
)

#: the two real datasets every-fold probes run on, as (file-stem suffix, title)
#: the failing order with an end block moved inside, or both end blocks exchanged (analysis/end_swap_orders.py)
END_SWAP_ARMS = tuple(
    f"unet1d_{stem}"
    for stem in ("left16_inside", "right16_inside", "left32_inside", "right32_inside", "ends_exchanged")
)
REAL_DATA_TITLES = (("k562", "K562 unseen combinations, every fold"), ("kang", "Kang, every cell type"))
PROBES = (
    Probe(
        "mlp_span_synthetic",
        "MLP width x gene count x LayerNorm (Gaussian source, 1000 steps of batch 256)",
        (
            ("w64_linear_skip", "w64"),
            ("w64_control_source", "w64"),
            ("w256", "w64"),
            ("w1024", "w64"),
            ("w64_no_norm", "w64"),
            ("w256_no_norm", "w256"),
            ("w1024_no_norm", "w1024"),
        ),
        (
            "w64",
            "w64_no_norm",
            "w256",
            "w256_no_norm",
            "w1024",
            "w1024_no_norm",
            "w64_linear_skip",
            "w64_control_source",
        ),
    ),  # fmt: skip
    Probe(
        "mlp_span_kang",
        "MLP output span on Kang cell-type transfer, fold 4 (Gaussian source, 1000 steps of batch 256)",
        (("w64_linear_skip", "w64"), ("w64_control_source", "w64"), ("w1024", "w64")),
        ("w64", "w1024", "w64_linear_skip", "w64_control_source"),
    ),
    Probe(
        "gene_order_lottery_synthetic",
        "Gene-order lottery: 20 random orders (one per seed), G = 128, 800 steps of batch 32",
        (("unet1d_gene_embedding", "unet1d"), ("mlp_matched", "unet1d")),
        ("unet1d", "unet1d_gene_embedding", "mlp_matched"),
    ),
    Probe(
        "headline_genes_synthetic",
        "Backbones at equal wall-clock (180 s on one thread, Gaussian source, batch 256)",
        (
            ("unet1d_gene_embedding", "unet1d"),
            ("mlp_matched", "unet1d"),
            ("mlp_repaired", "unet1d"),
            ("gene_transformer", "unet1d"),
            ("mlp_repaired", "mlp_matched"),
            ("mlp_repaired", "unet1d_gene_embedding"),
        ),
        ("unet1d", "unet1d_gene_embedding", "mlp_matched", "mlp_repaired", "gene_transformer"),
    ),
    Probe(
        "unet_attention_synthetic",
        "U-Net self-attention against gene identity, G = 512, 250 steps of batch 256 (Gaussian source)",
        (
            ("unet1d_mid_attention", "unet1d"),
            ("unet1d_gene_embedding", "unet1d"),
            ("unet1d_mid_attention", "unet1d_gene_embedding"),
        ),
        ("unet1d", "unet1d_mid_attention", "unet1d_gene_embedding"),
    ),
    Probe(
        "gene_identity_k562",
        "K562 unseen combinations, every fold, each backbone's recipe (1500 steps of batch 128, control source)",
        *RECIPE_ARMS,
        unit="fold",
    ),
    Probe(
        "gene_identity_kang",
        "Kang cell-type transfer, every cell type, each backbone's recipe (1500 steps of batch 128, control source)",
        *RECIPE_ARMS,
        unit="fold",
    ),
    Probe(
        "headline_datasets_synthetic",
        "Backbones at equal wall-clock on five generated datasets (G = 512, 180 s on one thread, Gaussian source)",
        *HEADLINE_512_ARMS,
        unit="generator",
    ),
    Probe(
        "failing_order_synthetic",
        "The failing gene order re-run: scattered programs, stored order, generator seed 0, G = 128, batch 32",
        (
            ("unet1d_2400_steps", "unet1d"),
            ("unet1d_gene_embedding", "unet1d"),
            ("mlp_matched", "unet1d"),
            ("mlp_matched", "unet1d_2400_steps"),
            ("mlp_matched", "unet1d_gene_embedding"),
        ),
        ("unet1d", "unet1d_2400_steps", "unet1d_gene_embedding", "mlp_matched"),
    ),
    Probe(
        "scattered_datasets_synthetic",
        "Five more scattered datasets in their stored order (generator seeds 1-5, G = 128, 800 steps of batch 32)",
        (("unet1d_gene_embedding", "unet1d"), ("mlp_matched", "unet1d"), ("mlp_matched", "unet1d_gene_embedding")),
        ("unet1d", "unet1d_gene_embedding", "mlp_matched"),
        unit="generator",
    ),
    Probe(
        "plateau_synthetic",
        "Backbones trained to a plateau, G = 512 (patience of 6 validations or 900 s on one thread, Gaussian source)",
        *HEADLINE_512_ARMS,
        budget_seconds=(15.0, 60.0, 180.0, 450.0, 900.0),
        budget_tflops=(1.0, 5.0, 20.0, 60.0),
    ),
    Probe(
        "decayed_lr_synthetic",
        "The MLPs with the learning rate decayed, G = 512 (cosine to 5% over a fixed number of steps; Gaussian source)",
        (
            ("mlp_repaired_decay_3000", "mlp_repaired_peak_lr"),
            ("mlp_repaired_decay_12000", "mlp_repaired_peak_lr"),
            ("mlp_repaired_decay_3000", "unet1d_gene_embedding_900s"),
            ("mlp_repaired_decay_12000", "unet1d_gene_embedding_900s"),
            ("mlp_matched_decay_12000", "mlp_matched_peak_lr"),
        ),
        (
            "mlp_repaired_peak_lr",
            "mlp_repaired_decay_3000",
            "mlp_repaired_decay_12000",
            "mlp_matched_peak_lr",
            "mlp_matched_decay_12000",
            "unet1d_gene_embedding_900s",
        ),
        borrow=(
            ("plateau_synthetic", "mlp_repaired", "mlp_repaired_peak_lr"),
            ("plateau_synthetic", "mlp_matched", "mlp_matched_peak_lr"),
            ("plateau_synthetic", "unet1d_gene_embedding", "unet1d_gene_embedding_900s"),
        ),
    ),
    Probe(
        "mlp_budget_2048_synthetic",
        "The default and linear-skip MLPs at G = 2048 trained four times longer (Gaussian source, batch 256)",
        (
            ("w64_4000_steps", "w64_1000_steps"),
            ("w64_linear_skip_4000_steps", "w64_linear_skip_1000_steps"),
            ("w64_linear_skip_1000_steps", "w64_1000_steps"),
            ("w64_linear_skip_4000_steps", "w64_4000_steps"),
        ),
        ("w64_1000_steps", "w64_4000_steps", "w64_linear_skip_1000_steps", "w64_linear_skip_4000_steps"),
    ),
    Probe(
        "mlp_width_2048_synthetic",
        "An MLP as wide as the gene count, G = 2048 (1000 steps of batch 256, Gaussian source, fp32)",
        (
            ("w2048_no_norm", "w1024_no_norm"),
            ("w2048_no_norm", "w64_linear_skip"),
            ("w1024_no_norm", "w1024_no_norm_auto"),
            ("w64_linear_skip", "w64_linear_skip_auto"),
        ),
        ("w1024_no_norm_auto", "w1024_no_norm", "w2048_no_norm", "w64_linear_skip_auto", "w64_linear_skip"),
        borrow=(
            ("mlp_span_synthetic", "w1024_no_norm", "w1024_no_norm_auto"),
            ("mlp_span_synthetic", "w64_linear_skip", "w64_linear_skip_auto"),
        ),
    ),
    Probe(
        "mlp_width_plateau_2048_synthetic",
        "Width 1024 without LayerNorm at G = 2048 trained up to four times longer (Gaussian source, batch 256, fp32)",
        (
            ("w1024_no_norm_4000_steps", "w1024_no_norm"),
            ("w1024_no_norm_4000_steps", "w2048_no_norm"),
            ("w1024_no_norm_4000_steps", "w64_linear_skip"),
        ),
        ("w1024_no_norm", "w1024_no_norm_4000_steps", "w2048_no_norm", "w64_linear_skip"),
        exclude=(
            (
                "w1024_no_norm_4000_steps",
                1,
                "diverged: loss spikes to 462 and 6629 at steps 441 and 456 (gradient norms 35,001 and 140,746 "
                "before clipping) put it back on the collapse plateau, patience ended it at step 1750, and its best "
                "checkpoint, from step 250, scores one test condition at an energy of 3.2e30 (test energy 3.6e29); "
                "results/probes_v2/diverged/, findings point 2",
            ),
        ),
        borrow=(
            ("mlp_width_2048_synthetic", "w1024_no_norm", "w1024_no_norm"),
            ("mlp_width_2048_synthetic", "w2048_no_norm", "w2048_no_norm"),
            ("mlp_width_2048_synthetic", "w64_linear_skip", "w64_linear_skip"),
        ),
    ),
    Probe(
        "mlp_full_rank_plateau_2048_synthetic",
        "Width 2048 (full rank) without LayerNorm at G = 2048 trained up to four times longer (Gaussian source, batch "
        "256, fp32)",
        (
            ("w2048_no_norm_4000_steps", "w2048_no_norm"),
            ("w2048_no_norm_4000_steps", "w1024_no_norm"),
            ("w2048_no_norm_4000_steps", "w1024_no_norm_4000_steps"),
            ("w2048_no_norm_4000_steps", "w64_linear_skip_4000_steps"),
        ),
        (
            "w1024_no_norm",
            "w2048_no_norm",
            "w1024_no_norm_4000_steps",
            "w64_linear_skip_4000_steps",
            "w2048_no_norm_4000_steps",
        ),
        exclude=(
            (
                "w1024_no_norm_4000_steps",
                1,
                "diverged (left out of mlp_width_plateau_2048_synthetic for the reason given there; findings point 2)",
            ),
        ),
        borrow=(
            ("mlp_width_2048_synthetic", "w1024_no_norm", "w1024_no_norm"),
            ("mlp_width_2048_synthetic", "w2048_no_norm", "w2048_no_norm"),
            ("mlp_width_plateau_2048_synthetic", "w1024_no_norm_4000_steps", "w1024_no_norm_4000_steps"),
            ("mlp_budget_2048_synthetic", "w64_linear_skip_4000_steps", "w64_linear_skip_4000_steps"),
        ),
    ),
    Probe(
        "mlp_width_norm_2048_synthetic",
        "LayerNorm at full rank: width 2048 with LayerNorm, G = 2048 (1000 steps of batch 256, Gaussian source, fp32)",
        (("w2048", "w2048_no_norm"), ("w2048", "w1024")),
        ("w1024", "w2048", "w2048_no_norm"),
        borrow=(
            ("mlp_width_2048_synthetic", "w2048_no_norm", "w2048_no_norm"),
            ("mlp_span_synthetic", "w1024", "w1024"),
        ),
    ),
    Probe(
        "layernorm_synthetic",
        "Where LayerNorm stops a full-rank MLP: width 1024, G = 512 (1000 steps of batch 256, Gaussian source, fp32)",
        (
            ("ln_all", "no_norm"),
            ("ln_blocks", "no_norm"),
            ("ln_output", "no_norm"),
            ("rms_all", "ln_all"),
            ("ln_all_4000_steps", "ln_all"),
        ),
        ("no_norm", "ln_all", "ln_blocks", "ln_output", "rms_all", "ln_all_4000_steps"),
    ),
    Probe(
        "layernorm_centred_synthetic",
        "LayerNorm with the source centred on the training means: width 1024, G = 512 (1000 steps of batch 256, fp32)",
        (
            ("ln_all_centred", "ln_all"),
            ("no_norm_centred", "no_norm"),
            ("ln_all_centred", "no_norm_centred"),
        ),
        ("no_norm", "ln_all", "no_norm_centred", "ln_all_centred"),
        borrow=(
            ("layernorm_synthetic", "no_norm", "no_norm"),
            ("layernorm_synthetic", "ln_all", "ln_all"),
        ),
    ),
    Probe(
        "layernorm_plateau_synthetic",
        "The LayerNorm MLP trained up to four times longer: width 1024, G = 512 (batch 256, Gaussian source, fp32)",
        (
            ("ln_all_4000_steps", "ln_all"),
            ("ln_all_4000_steps", "no_norm"),
            ("ln_all_4000_steps", "ln_all_centred"),
        ),
        ("no_norm", "ln_all", "ln_all_centred", "ln_all_4000_steps"),
        borrow=(
            ("layernorm_synthetic", "no_norm", "no_norm"),
            ("layernorm_synthetic", "ln_all", "ln_all"),
            ("layernorm_centred_synthetic", "ln_all_centred", "ln_all_centred"),
        ),
    ),
    Probe(
        "centred_2048_synthetic",
        "LayerNorm with the source centred on the training means, width 2048, G = 2048 (1000 steps of batch 256, fp32)",
        (("w2048_centred", "w2048"), ("w2048_centred", "w2048_no_norm")),
        ("w2048_no_norm", "w2048", "w2048_centred"),
        borrow=(
            ("mlp_width_norm_2048_synthetic", "w2048", "w2048"),
            ("mlp_width_2048_synthetic", "w2048_no_norm", "w2048_no_norm"),
        ),
    ),
    Probe(
        "centred_kang",
        "The centred source on Kang cell-type transfer, fold 4: width 1024, LayerNorm on/off (Gaussian source, "
        "1000 steps of batch 256, fp32)",
        (
            ("ln_centred", "ln"),
            ("no_norm_centred", "no_norm"),
            ("ln", "no_norm"),
            ("ln_centred", "no_norm_centred"),
        ),
        ("no_norm", "ln", "no_norm_centred", "ln_centred"),
    ),
    Probe(
        "unet_2048_synthetic",
        "Gene identity at 2048 genes: the U-Nets and the repaired MLP at equal steps, G = 2048 (500 steps of batch 64, "
        "peak learning rate, Gaussian source, fp32)",
        (
            ("unet1d_gene_embedding", "unet1d"),
            ("mlp_repaired", "unet1d"),
            ("mlp_repaired", "unet1d_gene_embedding"),
        ),
        ("unet1d", "unet1d_gene_embedding", "mlp_repaired"),
    ),
    Probe(
        "equal_flops_2048_synthetic",
        "Equal training FLOPs at 2048 genes: the MLPs given the embedding U-Net's 500-step FLOPs (batch 64, peak "
        "learning rate, Gaussian source, fp32)",
        (
            ("mlp_repaired_equal_flops", "unet1d_gene_embedding"),
            ("w2048_no_norm_equal_flops", "unet1d_gene_embedding"),
            ("mlp_repaired_equal_flops", "mlp_repaired"),
            ("w2048_no_norm_equal_flops", "mlp_repaired_equal_flops"),
        ),
        ("unet1d", "unet1d_gene_embedding", "mlp_repaired", "mlp_repaired_equal_flops", "w2048_no_norm_equal_flops"),
        borrow=(
            ("unet_2048_synthetic", "unet1d", "unet1d"),
            ("unet_2048_synthetic", "unet1d_gene_embedding", "unet1d_gene_embedding"),
            ("unet_2048_synthetic", "mlp_repaired", "mlp_repaired"),
        ),
    ),
    Probe(
        "equal_flops_decayed_2048_synthetic",
        "The repaired MLP at equal training FLOPs with its learning rate decayed, G = 2048 (the embedding U-Net's "
        "500-step FLOPs, batch 64, cosine decay to 5% over 12,444 steps, Gaussian source, fp32)",
        (
            ("mlp_repaired_equal_flops_decayed", "mlp_repaired_equal_flops"),
            ("mlp_repaired_equal_flops_decayed", "unet1d_gene_embedding"),
            ("mlp_repaired_equal_flops_decayed", "mlp_repaired"),
        ),
        ("unet1d_gene_embedding", "mlp_repaired", "mlp_repaired_equal_flops", "mlp_repaired_equal_flops_decayed"),
        borrow=(
            ("unet_2048_synthetic", "unet1d_gene_embedding", "unet1d_gene_embedding"),
            ("unet_2048_synthetic", "mlp_repaired", "mlp_repaired"),
            ("equal_flops_2048_synthetic", "mlp_repaired_equal_flops", "mlp_repaired_equal_flops"),
        ),
    ),
    Probe(
        "equal_flops_decayed_full_rank_2048_synthetic",
        "The full-rank MLP at equal training FLOPs with its learning rate decayed, G = 2048 (the embedding U-Net's "
        "500-step FLOPs, batch 64, cosine decay to 5% over 2,086 steps, Gaussian source, fp32)",
        (
            ("w2048_no_norm_equal_flops_decayed", "w2048_no_norm_equal_flops"),
            ("w2048_no_norm_equal_flops_decayed", "unet1d_gene_embedding"),
            ("w2048_no_norm_equal_flops_decayed", "mlp_repaired_equal_flops_decayed"),
        ),
        (
            "unet1d_gene_embedding",
            "w2048_no_norm_equal_flops",
            "w2048_no_norm_equal_flops_decayed",
            "mlp_repaired_equal_flops_decayed",
        ),
        borrow=(
            ("unet_2048_synthetic", "unet1d_gene_embedding", "unet1d_gene_embedding"),
            ("equal_flops_2048_synthetic", "w2048_no_norm_equal_flops", "w2048_no_norm_equal_flops"),
            (
                "equal_flops_decayed_2048_synthetic",
                "mlp_repaired_equal_flops_decayed",
                "mlp_repaired_equal_flops_decayed",
            ),
        ),
    ),
    *(
        Probe(
            f"repaired_mlp_{data}",
            f"The repaired MLP on {title}, the MLP recipe in fp32 (1500 steps of batch 128, control source)",
            (
                ("mlp_repaired", "mlp"),
                ("mlp", "mlp_auto"),
                ("mlp_repaired", "unet1d_gene_embedding"),
                ("mlp_repaired", "unet1d"),
            ),
            ("unet1d", "unet1d_gene_embedding", "mlp_auto", "mlp", "mlp_repaired"),
            unit="fold",
            borrow=(
                (f"gene_identity_{data}", "unet1d", "unet1d"),
                (f"gene_identity_{data}", "unet1d_gene_embedding", "unet1d_gene_embedding"),
                (f"gene_identity_{data}", "mlp", "mlp_auto"),
            ),
        )
        for data, title in REAL_DATA_TITLES
    ),
    Probe(
        "failing_layout_synthetic",
        "The failing gene order on five more generated biologies: generator seeds 1-5 in generator seed 0's order, "
        "G = 128, 800 steps of batch 32",
        (
            ("unet1d", "unet1d_own_order"),
            ("mlp_matched", "unet1d"),
            ("mlp_matched", "mlp_matched_own_order"),
        ),
        ("unet1d_own_order", "unet1d", "mlp_matched_own_order", "mlp_matched"),
        unit="generator",
        borrow=(
            ("scattered_datasets_synthetic", "unet1d", "unet1d_own_order"),
            ("scattered_datasets_synthetic", "mlp_matched", "mlp_matched_own_order"),
        ),
    ),
    Probe(
        "failing_split_synthetic",
        "The failing gene order under five splits of its dataset's combinations: generator seed 0, stored order, "
        "task.seed 0-4, G = 128, 800 steps of batch 32",
        (("mlp_matched", "unet1d"),),
        ("unet1d", "mlp_matched"),
        unit="split",
    ),
    *(
        Probe(
            f"equal_flops_{data}",
            f"The repaired MLP at the gene-identity U-Net's training FLOPs on {title} (about 19,300 steps of batch "
            "128 against the recipe's 1500, control source, fp32)",
            (
                ("mlp_repaired_equal_flops", "unet1d_gene_embedding"),
                ("mlp_repaired_equal_flops", "mlp_repaired"),
                ("mlp_repaired_equal_flops", "unet1d"),
            ),
            ("unet1d", "unet1d_gene_embedding", "mlp", "mlp_repaired", "mlp_repaired_equal_flops"),
            unit="fold",
            borrow=(
                (f"gene_identity_{data}", "unet1d", "unet1d"),
                (f"gene_identity_{data}", "unet1d_gene_embedding", "unet1d_gene_embedding"),
                (f"repaired_mlp_{data}", "mlp", "mlp"),
                (f"repaired_mlp_{data}", "mlp_repaired", "mlp_repaired"),
            ),
        )
        for data, title in REAL_DATA_TITLES
    ),
    Probe(
        "top_expressed_kang",
        "LayerNorm on Kang's most highly expressed genes, fold 4: width 1024 (Gaussian source, 1000 steps of batch "
        "256, fp32)",
        (("ln", "no_norm"), ("ln_centred", "ln"), ("ln_centred", "no_norm")),
        ("no_norm", "ln", "ln_centred"),
    ),
    Probe(
        "failing_shift_synthetic",
        "The failing gene order rolled along the gene axis: generator seed 0, stored order shifted by k, G = 128, "
        "800 steps of batch 32",
        (
            *((f"unet1d_shift_{k}", "unet1d") for k in (1, 2, 4, 32, 64)),
            ("unet1d_reversed", "unet1d"),
            ("mlp_matched", "unet1d"),
        ),
        ("unet1d", *(f"unet1d_shift_{k}" for k in (1, 2, 4, 32, 64)), "unet1d_reversed", "mlp_matched"),
    ),
    Probe(
        "failing_padding_synthetic",
        "The failing gene order without zero padding: circular and reflect padding, generator seed 0, G = 128, 800 "
        "steps of batch 32",
        (
            ("unet1d_circular", "unet1d"),
            ("unet1d_circular_shift_32", "unet1d_circular"),
            ("unet1d_reflect", "unet1d"),
            ("mlp_matched", "unet1d_circular"),
            ("unet1d_circular", "unet1d_shift_32"),
        ),
        ("unet1d", "unet1d_shift_32", "unet1d_circular", "unet1d_circular_shift_32", "unet1d_reflect", "mlp_matched"),
        borrow=(
            ("failing_shift_synthetic", "unet1d", "unet1d"),
            ("failing_shift_synthetic", "unet1d_shift_32", "unet1d_shift_32"),
            ("failing_shift_synthetic", "mlp_matched", "mlp_matched"),
        ),
    ),
    Probe(
        "failing_roll_map_synthetic",
        "The failing gene order at more rolls: generator seed 0, stored order shifted by 8 to 96 genes, G = 128, 800 "
        "steps of batch 32",
        tuple((f"unet1d_shift_{k}", "unet1d") for k in (8, 16, 48, 96)),
        ("unet1d", *(f"unet1d_shift_{k}" for k in (8, 16, 32, 48, 96)), "mlp_matched"),
        borrow=(
            ("failing_shift_synthetic", "unet1d", "unet1d"),
            ("failing_shift_synthetic", "unet1d_shift_32", "unet1d_shift_32"),
            ("failing_shift_synthetic", "mlp_matched", "mlp_matched"),
        ),
    ),
    Probe(
        "failing_end_swap_synthetic",
        "Which end of the failing gene order holds the failure: generator seed 0, stored order with an end block "
        "moved inside, G = 128, 800 steps of batch 32",
        tuple((arm, "unet1d") for arm in END_SWAP_ARMS),
        ("unet1d", *END_SWAP_ARMS, "unet1d_shift_32", "mlp_matched"),
        borrow=(
            ("failing_shift_synthetic", "unet1d_shift_32", "unet1d_shift_32"),
            ("failing_shift_synthetic", "mlp_matched", "mlp_matched"),
        ),
    ),
    Probe(
        "unet_reach_512_synthetic",
        "The U-Net's reach to the padded ends at 512 genes: 3 and 5 levels, zero and circular padding (250 steps of "
        "batch 256, Gaussian source)",
        (
            ("unet1d_levels5", "unet1d"),
            ("unet1d_levels5_circular", "unet1d_levels5"),
            ("unet1d_levels5", "unet1d_gene_embedding"),
        ),
        ("unet1d", "unet1d_levels5", "unet1d_levels5_circular", "unet1d_gene_embedding"),
        borrow=(("unet_attention_synthetic", "unet1d_gene_embedding", "unet1d_gene_embedding"),),
    ),
    Probe(
        "unet_reach4_512_synthetic",
        "The U-Net's reach to the padded ends at 512 genes, 4 levels between 3 and 5 (250 steps of batch 256, "
        "Gaussian source)",
        (("unet1d_levels4", "unet1d"), ("unet1d_levels4", "unet1d_levels5")),
        ("unet1d", "unet1d_levels4", "unet1d_levels5", "unet1d_levels5_circular"),
        borrow=tuple(
            ("unet_reach_512_synthetic", arm, arm) for arm in ("unet1d", "unet1d_levels5", "unet1d_levels5_circular")
        ),
    ),
    Probe(
        "unet_reach_2048_synthetic",
        "The U-Net's reach to the padded ends at 2048 genes: 3 and 7 levels, and the 4-dim gene embedding (500 steps "
        "of batch 64 at the peak learning rate, Gaussian source, fp32)",
        (("unet1d_levels7", "unet1d"), ("unet1d_levels7", "unet1d_gene_embedding")),
        ("unet1d", "unet1d_levels7", "unet1d_gene_embedding"),
        borrow=tuple(("unet_2048_synthetic", arm, arm) for arm in ("unet1d", "unet1d_gene_embedding")),
    ),
    Probe(
        "unet_reach_circular_2048_synthetic",
        "The U-Net's reach to the padded ends at 2048 genes: 7 levels with zero and circular padding (500 steps of "
        "batch 64 at the peak learning rate, Gaussian source, fp32)",
        (("unet1d_levels7_circular", "unet1d_levels7"), ("unet1d_levels7_circular", "unet1d")),
        ("unet1d", "unet1d_levels7", "unet1d_levels7_circular"),
        borrow=(
            ("unet_2048_synthetic", "unet1d", "unet1d"),
            ("unet_reach_2048_synthetic", "unet1d_levels7", "unet1d_levels7"),
        ),
    ),
    Probe(
        "unet_plateau_2048_cpu_synthetic",
        "The U-Net with gene identity at 2048 genes trained to a plateau on a CPU (batch 64, peak learning rate, up "
        "to 3000 steps with a patience of 6 validations, Gaussian source, fp32)",
        (
            ("unet1d_gene_embedding_plateau", "unet1d_gene_embedding"),
            ("mlp_repaired_equal_flops_decayed", "unet1d_gene_embedding_plateau"),
        ),
        ("unet1d_gene_embedding", "unet1d_gene_embedding_plateau", "mlp_repaired_equal_flops_decayed"),
        borrow=(
            ("unet_2048_synthetic", "unet1d_gene_embedding", "unet1d_gene_embedding"),
            (
                "equal_flops_decayed_2048_synthetic",
                "mlp_repaired_equal_flops_decayed",
                "mlp_repaired_equal_flops_decayed",
            ),
        ),
    ),
)
FOLD_COLUMNS = ("config.task.fold", "params_task.fold", "task.fold")
GENERATOR_COLUMNS = ("params_data.synthetic.seed", "data.synthetic.seed")
# the columns a unit other than the seed is read from (each becomes a column of that name; 0 where absent)
SPLIT_COLUMNS = ("params_task.seed", "config.task.seed", "task.seed")
UNIT_COLUMNS = {"fold": FOLD_COLUMNS, "generator": GENERATOR_COLUMNS, "split": SPLIT_COLUMNS}


def load_probe_file(path: Path, probe: Probe) -> pd.DataFrame:
    """One exported table of ``probe``, with its unit columns (``fold``, ``generator``) and ``source_file``.

    Raises
    ------
    ArchLabError
        The table lacks a column every probe table carries, or the column of the probe's unit.
    """
    df = pd.read_csv(path)
    missing = [c for c in REQUIRED if c not in df.columns]
    if missing:
        raise ArchLabError(f"{path}: missing column(s) {', '.join(missing)}; export it with --runs")
    df = with_posthoc_readouts(df, path.parent / "readouts" / path.name)
    units: dict[str, object] = {}
    for unit, columns in UNIT_COLUMNS.items():
        column = next((c for c in columns if c in df.columns), None)
        if column is None and probe.unit == unit:
            raise ArchLabError(f"{path}: no {unit} column ({', '.join(columns)}); export it with --runs")
        units[unit] = pd.to_numeric(df[column]).astype(int) if column else 0
    return df.assign(source_file=path.name, **units)


def with_posthoc_readouts(df: pd.DataFrame, path: Path) -> pd.DataFrame:
    """``df`` with the read-outs it lacks filled from ``path`` (``analysis/posthoc_readouts.py``), matched by run
    directory; read-outs the runs recorded themselves are kept. ``df`` unchanged when ``path`` does not exist.

    Raises
    ------
    ArchLabError
        ``df`` or the read-out table has no ``run_dir`` column.
    """
    if not path.is_file():
        return df
    extra = pd.read_csv(path)
    if "run_dir" not in df.columns or "run_dir" not in extra.columns:
        raise ArchLabError(f"{path}: read-outs are matched by run_dir, which a table lacks; export it with --runs")
    extra = extra.drop(columns=["readouts_git_sha"], errors="ignore").drop_duplicates("run_dir").set_index("run_dir")
    df = df.copy()
    keys = df["run_dir"].astype(str)
    for column in extra.columns:
        values = keys.map(extra[column])
        df[column] = df[column].fillna(values) if column in df.columns else values
    return df


def load_probe(results: Path, probe: Probe) -> pd.DataFrame | None:
    """Every exported run of ``probe`` (``<stem>*.csv`` in ``results``) and of the arms it borrows, stacked; None
    when the probe has no table of its own.

    Raises
    ------
    ArchLabError
        A table lacks one of the columns every probe table carries, or a borrowed arm's table or runs are missing.
    """
    paths = sorted(results.glob(f"{probe.stem}*.csv"))
    if not paths:
        return None
    own = pd.concat([load_probe_file(path, probe) for path in paths], ignore_index=True)
    genes = set(own["n_genes"])
    for stem, arm, name in probe.borrow:
        lender = Probe(stem, stem, (), (arm,), unit=probe.unit)
        path = results / f"{stem}.csv"
        if not path.is_file():
            raise ArchLabError(f"{path}: {probe.stem} pairs with its arm {arm}; export {stem} first")
        runs = load_probe_file(path, lender)
        # only the lender's runs at this study's gene counts pair with it
        runs = runs[(runs["arm"] == arm) & runs["n_genes"].isin(genes)]
        if runs.empty:
            raise ArchLabError(
                f"{path}: no runs of arm {arm} at {probe.stem}'s gene count(s) {sorted(genes)}, which it pairs with"
            )
        own = pd.concat([own, runs.assign(arm=name)], ignore_index=True)
    return own


def unit_means(df: pd.DataFrame, probe: Probe) -> pd.DataFrame:
    """One row per (gene count, arm, unit): the mean of each numeric column over the runs of that unit.

    For seed-paired studies a unit is one run, so this is the table itself; for fold-paired studies the seeds of a
    fold are averaged. ``runs`` counts the runs behind each row.
    """
    keys = ["n_genes", "arm", probe.unit]
    numeric = [c for c in df.columns if c not in keys and pd.api.types.is_numeric_dtype(df[c])]
    grouped = df.groupby(keys, as_index=False)
    out = grouped[numeric].mean()
    out["runs"] = grouped.size()["size"].to_numpy()
    shas = grouped["git_sha"].agg(lambda s: ";".join(sorted(set(s.astype(str)))))
    return out.merge(shas, on=keys)


def finished_runs(df: pd.DataFrame) -> tuple[pd.DataFrame, int]:
    """The runs of finished trials, and how many runs of unfinished ones were left out.

    A trial that lost its worker can have exported some completed runs before it failed; its retry repeats them,
    so they are dropped (the export's ``trial_state`` is ``complete`` for a finished trial). Tables without the
    column are taken as they are.
    """
    if "trial_state" not in df.columns:
        return df, 0
    done = df["trial_state"].astype(str).str.lower().isin(("complete", "completed"))
    return df[done].reset_index(drop=True), int((~done).sum())


CURVE_COLUMNS = (
    "arm",
    "n_genes",
    "seed",
    "fold",
    "generator",
    "split",
    "step",
    "seconds",
    "flops",
    "val_energy_distance",
    "val_floor_energy_distance",
    "ended_by",
)


def ended_by(run_dir: Path) -> str:
    """Why a run stopped, from its ``metrics.json``: ``"time"`` (``train.max_seconds``), ``"patience"``
    (``train.patience`` validations without a new best), ``"budget"`` (``train.max_steps`` or ``max_flops``) or
    ``"unknown"`` (no readable record)."""
    try:
        fit = json.loads((run_dir / "metrics.json").read_text()).get("fit", {})
    except (OSError, ValueError):
        return "unknown"
    if fit.get("time_limited"):
        return "time"
    return "patience" if fit.get("stopped_early") else "budget"


def collect_curves(df: pd.DataFrame) -> pd.DataFrame:
    """Validation learning curves of the runs in ``df`` (read from each ``run_dir``'s ``history.csv``).

    ``seconds`` and ``flops`` at a step are ``step x`` the run's mean training seconds and FLOPs per step (the
    run's seconds include its validations; the pace is taken as even over the run). ``ended_by`` says why the run
    stopped (``ended_by``). Runs whose directory is gone are skipped.
    """
    frames = []
    for _, run in df.iterrows():
        run_dir = Path(str(run.get("run_dir", "")))
        path = run_dir / "history.csv"
        if not path.is_file():
            continue
        hist = pd.read_csv(path)
        if "val_energy_distance" not in hist.columns:
            continue
        hist = hist[hist["val_energy_distance"].notna()]
        steps = max(float(run["steps"]), 1.0)
        frames.append(
            pd.DataFrame(
                {
                    "arm": run["arm"],
                    "n_genes": int(run["n_genes"]),
                    "seed": int(run["seed"]),
                    "fold": int(run.get("fold", 0)),
                    "generator": int(run.get("generator", 0)),
                    "split": int(run.get("split", 0)),
                    "step": hist["step"].to_numpy(),
                    "seconds": hist["step"].to_numpy() * float(run["train_seconds"]) / steps,
                    "flops": hist["step"].to_numpy() * float(run["train_flops"]) / steps,
                    "val_energy_distance": hist["val_energy_distance"].to_numpy(),
                    "val_floor_energy_distance": hist.get("val_floor_energy_distance", np.nan),
                    "ended_by": ended_by(run_dir),
                }
            )
        )
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=list(CURVE_COLUMNS))


def run_keys(curves: pd.DataFrame) -> list[str]:
    """The columns that tell one run's rows from another's in a curve or budget table (fold, generator, split,
    seed; older tables lack some)."""
    return [k for k in ("fold", "generator", "split", "seed") if k in curves.columns]


IMPROVING = 0.01  # a run is still improving when its last validation beat every earlier one by more than 1%


def curve_summary(curves: pd.DataFrame, probe: Probe) -> pd.DataFrame:
    """Per (gene count, arm), from the validation learning curves: where the runs cross the floor, where they
    stopped improving, and whether they had stopped.

    Columns: ``runs``; ``crossed`` (runs whose validation energy fell below their own validation ``no_change``
    floor at some step after 0); the median over those runs of the first such step, training seconds and TFLOPs;
    ``best_step``, ``best_seconds``, ``best_tflops`` (medians over runs of where the lowest validation energy was
    reached: the checkpoint each run kept); ``still_improving`` (runs whose last validation beat every earlier one by
    more than ``IMPROVING``, relative: such a run has not reached a plateau); ``by_patience`` (runs that ended
    because ``train.patience`` validations brought no new best; NaN where the curves do not record it).
    """
    keys = run_keys(curves)
    rows = []
    order = {a: i for i, a in enumerate(probe.arms)}
    for (genes, arm), part in curves.groupby(["n_genes", "arm"]):
        first: list[pd.Series] = []
        best: list[pd.Series] = []
        improving = 0
        runs = 0
        for _, run in part.groupby(keys):
            run = run.sort_values("step")
            runs += 1
            trained = run[run["step"] > 0]
            below = trained[trained["val_energy_distance"] < trained["val_floor_energy_distance"]]
            if not below.empty:
                first.append(below.iloc[0])
            best.append(run.loc[run["val_energy_distance"].idxmin()])
            values = run["val_energy_distance"].to_numpy(dtype=float)
            if len(values) >= 2 and values[-1] < values[:-1].min() * (1 - IMPROVING):
                improving += 1
        crossed = pd.DataFrame(first)
        kept = pd.DataFrame(best)
        by_patience = (
            part.groupby(keys)["ended_by"].first().eq("patience").sum() if "ended_by" in part.columns else math.nan
        )
        rows.append(
            {
                "n_genes": int(genes),
                "arm": arm,
                "runs": runs,
                "crossed": len(first),
                "cross_step": float(crossed["step"].median()) if first else math.nan,
                "cross_seconds": float(crossed["seconds"].median()) if first else math.nan,
                "cross_tflops": float(crossed["flops"].median()) / 1e12 if first else math.nan,
                "best_step": float(kept["step"].median()),
                "best_seconds": float(kept["seconds"].median()),
                "best_tflops": float(kept["flops"].median()) / 1e12,
                "still_improving": improving,
                "by_patience": by_patience,
                "last_step": float(part.groupby(keys)["step"].max().median()),
            }
        )
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    out["_order"] = out["arm"].map(order)
    return out.sort_values(["n_genes", "_order"]).drop(columns="_order").reset_index(drop=True)


def curve_summary_markdown(summary: pd.DataFrame) -> str:
    """The curve summary as markdown."""
    lines = [
        "| G | arm | runs | below the val floor | first below: step | seconds | TFLOPs | best val: step | seconds "
        "| TFLOPs | still improving at the end | ended by patience | last step |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in summary.iterrows():
        patience = "–" if pd.isna(r["by_patience"]) else str(int(r["by_patience"]))
        lines.append(
            f"| {r['n_genes']} | {r['arm']} | {r['runs']} | {r['crossed']} | {_fmt(r['cross_step'], 0)} "
            f"| {_fmt(r['cross_seconds'], 0)} | {_fmt(r['cross_tflops'], 2)} | {_fmt(r['best_step'], 0)} "
            f"| {_fmt(r['best_seconds'], 0)} | {_fmt(r['best_tflops'], 2)} | {r['still_improving']} | {patience} "
            f"| {_fmt(r['last_step'], 0)} |"
        )
    return "\n".join(lines)


def best_so_far(run: pd.DataFrame, axis: str, budget: float) -> float:
    """The lowest validation energy a run had reached by ``budget`` (in ``axis``: ``"seconds"`` or ``"flops"``):
    the checkpoint it would have kept had it been stopped there.

    NaN when the run had not validated yet by then, or when it ended (by time or step budget) before ``budget``;
    a run that ended by patience keeps its best beyond its end (it had stopped improving).
    """
    run = run.sort_values("step")
    trained = run[run["step"] > 0]
    if trained.empty:
        return math.nan
    ended = str(trained["ended_by"].iloc[0]) if "ended_by" in trained.columns else "unknown"
    if budget > float(trained[axis].iloc[-1]) * (1 + 1e-9) and ended != "patience":
        return math.nan
    seen = trained[trained[axis] <= budget * (1 + 1e-9)]
    return float(seen["val_energy_distance"].min()) if not seen.empty else math.nan


def budget_values(curves: pd.DataFrame, probe: Probe) -> pd.DataFrame:
    """One row per run and budget: ``best_so_far`` at each of the probe's budgets, and the run's mean validation
    ``no_change`` floor (tidy: ``budget_table`` summarises it, ``budget_comparisons`` pairs it).

    Columns: ``n_genes``, ``arm``, the run keys (``run_keys``), ``axis`` (``seconds`` or ``tflops``), ``budget``,
    ``value``, ``floor``.
    """
    keys = run_keys(curves)
    rows = []
    for axis, budgets, scale in (("seconds", probe.budget_seconds, 1.0), ("tflops", probe.budget_tflops, 1e12)):
        column = "seconds" if axis == "seconds" else "flops"
        for group, run in curves.groupby(["n_genes", "arm", *keys]):
            ids = dict(zip(["n_genes", "arm", *keys], group, strict=True))
            floor = float(run["val_floor_energy_distance"].mean())
            for budget in budgets:
                value = best_so_far(run, column, budget * scale)
                rows.append({**ids, "axis": axis, "budget": budget, "value": value, "floor": floor})
    return pd.DataFrame(rows)


def budget_table(values: pd.DataFrame, probe: Probe) -> pd.DataFrame:
    """Each arm's validation energy at equal budgets, from ``budget_values``: at each budget, the mean and 95% t
    interval over runs of ``best_so_far``, the runs that had a value there, and the mean validation ``no_change``
    floor of the arm's runs.

    Columns: ``n_genes``, ``arm``, ``axis`` (``seconds`` or ``tflops``), ``budget``, ``n``, ``mean``, ``lo``,
    ``hi``, ``floor``.
    """
    rows = []
    for (genes, arm, axis, budget), part in values.groupby(["n_genes", "arm", "axis", "budget"]):
        value = part["value"].to_numpy(dtype=float)
        iv = t_interval(value)  # NaN values dropped; one value gives a point and no interval
        rows.append({"n_genes": int(genes), "arm": arm, "axis": axis, "budget": budget,
                     "n": int(np.isfinite(value).sum()), "mean": iv.estimate, "lo": iv.low, "hi": iv.high,
                     "floor": float(part["floor"].mean())})  # fmt: skip
    out = pd.DataFrame(rows)
    if out.empty:
        return out
    order = {a: i for i, a in enumerate(probe.arms)}
    out["_order"] = out["arm"].map(order)
    return out.sort_values(["n_genes", "axis", "_order", "budget"]).drop(columns="_order").reset_index(drop=True)


def budget_comparisons(values: pd.DataFrame, probe: Probe) -> pd.DataFrame:
    """The planned contrasts at each equal budget, from ``budget_values``, paired over runs (the same seed, fold or
    dataset), one Holm family over every contrast and budget with at least two pairs."""
    if values.empty:
        return values
    keys = run_keys(values)
    rows = []
    for (genes, axis, budget), part in values.groupby(["n_genes", "axis", "budget"], sort=False):
        part = part[np.isfinite(part["value"].astype(float))]
        for a, b in probe.contrasts:
            both = part[part["arm"].isin((a, b))]
            pairs = both.groupby(keys)["arm"].nunique().eq(2).sum() if not both.empty else 0
            if pairs < 2:
                continue
            res = paired_comparison(both, keys, "arm", a, b, "value")
            rows.append({"n_genes": int(genes), "axis": axis, "budget": budget, "arm_a": a, "arm_b": b, **res})
    table = pd.DataFrame(rows)
    return adjust_family(table, estimate="difference") if not table.empty else table


def budget_comparisons_markdown(comp: pd.DataFrame) -> str:
    """The contrasts at equal budgets as markdown."""
    lines = [f"| G | budget | {CONTRAST_HEADER}", "|---" * 9 + "|"]
    for _, r in comp.iterrows():
        unit = "s" if r["axis"] == "seconds" else " TFLOPs"
        lines.append(f"| {r['n_genes']} | {r['budget']:g}{unit} | {contrast_cells(r)}")
    return "\n".join(lines)


def budget_markdown(table: pd.DataFrame) -> str:
    """The budget table as markdown: one row per (gene count, arm), one column per budget."""
    parts = []
    for (genes, axis), part in table.groupby(["n_genes", "axis"], sort=False):
        budgets = sorted(part["budget"].unique())
        unit = "s" if axis == "seconds" else " TFLOPs"
        lines = [
            f"| G = {genes}, at equal {'training seconds' if axis == 'seconds' else 'training FLOPs'} | "
            + " | ".join(f"{b:g}{unit}" for b in budgets)
            + " |",
            "|---" * (len(budgets) + 1) + "|",
        ]
        for arm, rows in part.groupby("arm", sort=False):
            cells = []
            for b in budgets:
                r = rows[rows["budget"] == b].iloc[0]
                if r["n"] == 0:
                    cells.append("–")
                else:
                    interval = f" [{_fmt(r['lo'])}, {_fmt(r['hi'])}]" if math.isfinite(r["lo"]) else ""
                    cells.append(f"{_fmt(r['mean'])}{interval} (n={r['n']})")
            lines.append(f"| {arm} | " + " | ".join(cells) + " |")
        floor = part.groupby("budget")["floor"].mean()
        lines.append(f"| {FLOOR} | " + " | ".join(_fmt(floor.get(b, math.nan)) for b in budgets) + " |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def budget_figure(table: pd.DataFrame, probe: Probe) -> plt.Figure:
    """Best validation energy so far (mean and 95% t interval over runs) against training seconds and FLOPs."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 4), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, axis in zip(axes[0], ("seconds", "tflops"), strict=True):
        part = table[(table["axis"] == axis) & (table["n"] > 0)]
        for arm, rows in part.groupby("arm", sort=False):
            color = colors(probe.arms.index(arm) % 10) if arm in probe.arms else "grey"
            mean, lo, hi = (rows[c].to_numpy(dtype=float) for c in ("mean", "lo", "hi"))
            ax.errorbar(rows["budget"].to_numpy(dtype=float), mean, yerr=np.nan_to_num([mean - lo, hi - mean]),
                        marker="o", capsize=3, color=color, label=arm)  # fmt: skip
        floor = table[table["axis"] == axis].groupby("budget")["floor"].mean()
        ax.plot(floor.index.to_numpy(dtype=float), floor.to_numpy(), color="black", linestyle=":", label=FLOOR)
        ax.set_xscale("log")
        ax.set_yscale("log")
        for scale in (ax.xaxis, ax.yaxis):
            scale.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training seconds (one thread)" if axis == "seconds" else "training TFLOPs")
    axes[0][0].set_ylabel("best validation energy so far (log)")
    handles: dict[str, object] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    axes[0][1].legend(list(handles.values()), list(handles), fontsize=7)
    fig.suptitle(f"{probe.title}\nat equal budgets (mean and 95% t over runs)", fontsize=9)
    fig.tight_layout()
    return fig


def curves_figure(curves: pd.DataFrame, probe: Probe) -> plt.Figure:
    """Validation energy distance against training seconds, one panel per gene count, one line per seed."""
    genes = sorted(curves["n_genes"].unique())
    fig, axes = plt.subplots(1, len(genes), figsize=(max(5 * len(genes), 7.5), 4.3), squeeze=False)
    colors = plt.get_cmap("tab10")
    for ax, g in zip(axes[0], genes, strict=True):
        part = curves[curves["n_genes"] == g]
        keys = run_keys(part)
        for arm in (a for a in probe.arms if a in set(part["arm"])):
            style = "--" if "no_norm" in arm else "-"
            for k, (_, run) in enumerate(part[part["arm"] == arm].groupby(keys)):
                run = run.sort_values("step")
                ax.plot(run["seconds"], run["val_energy_distance"], marker=".", linestyle=style, linewidth=0.8,
                        alpha=0.7, color=colors(probe.arms.index(arm) % 10), label=arm if k == 0 else None)  # fmt: skip
        floor = float(part["val_floor_energy_distance"].mean())
        if math.isfinite(floor):
            ax.axhline(
                floor,
                color="black",
                linestyle=":",
                label=FLOOR + (f" (mean over {probe.unit}s)" if probe.unit != "seed" else ""),
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        for axis in (ax.xaxis, ax.yaxis):
            axis.set_minor_formatter(NullFormatter())
        ax.set_xlabel("training seconds (one thread)")
        ax.set_title(f"G = {g}", fontsize=9)
    axes[0][0].set_ylabel("validation energy distance (log)")
    handles: dict[str, object] = {}
    for ax in axes[0]:
        for handle, label in zip(*ax.get_legend_handles_labels(), strict=True):
            handles.setdefault(label, handle)
    axes[0][-1].legend(list(handles.values()), list(handles), fontsize=7)
    fig.suptitle(f"{probe.title}\nlearning curves (one line per run)", fontsize=9)
    fig.tight_layout()
    return fig


def with_floor_arm(df: pd.DataFrame, unit: str = "seed") -> pd.DataFrame:
    """``df`` plus one ``no_change (floor)`` row per (gene count, unit): the floor those runs scored."""
    cols = {m: f"floor_{m}" for m in (PRIMARY, *SECONDARY, "gene_spread_ratio") if f"floor_{m}" in df.columns}
    floor = df.groupby(["n_genes", unit], as_index=False)[list(cols.values())].mean()
    floor = floor.rename(columns={v: k for k, v in cols.items()}).assign(arm=FLOOR)
    return pd.concat([df, floor], ignore_index=True)


def cells_table(df: pd.DataFrame, probe: Probe) -> pd.DataFrame:
    """Per (gene count, arm): units, runs, mean and t interval over units of the metrics and read-outs, floor and
    ceiling (``seeds`` is the number of units: seeds, or folds for fold-paired studies)."""
    rows = []
    order = {a: i for i, a in enumerate(probe.arms)}
    for (genes, arm), part in unit_means(df, probe).groupby(["n_genes", "arm"]):
        row: dict[str, object] = {"n_genes": int(genes), "arm": arm, "seeds": int(part[probe.unit].nunique())}
        row["runs"] = int(part["runs"].sum())
        for m in (PRIMARY, *SECONDARY, *READOUTS):
            if m in part.columns:
                iv = t_interval(pd.to_numeric(part[m], errors="coerce"))
                row[m] = iv.estimate
                row[f"{m}_low"], row[f"{m}_high"] = iv.low, iv.high
        primary = pd.to_numeric(part[PRIMARY], errors="coerce")
        row[f"{PRIMARY}_sd"], row[f"{PRIMARY}_min"], row[f"{PRIMARY}_max"] = primary.std(), primary.min(), primary.max()
        for ref in ("floor", "ceiling"):
            col = f"{ref}_{PRIMARY}"
            row[col] = float(pd.to_numeric(part[col], errors="coerce").mean()) if col in part.columns else math.nan
        row["steps"] = float(part["steps"].median())
        row["train_seconds"] = float(part["train_seconds"].median())
        row["train_flops"] = float(part["train_flops"].median())
        row["git_sha"] = ";".join(sorted(set(part["git_sha"].astype(str))))
        rows.append(row)
    out = pd.DataFrame(rows)
    out["_order"] = out["arm"].map(order)
    return out.sort_values(["n_genes", "_order"]).drop(columns="_order").reset_index(drop=True)


def comparisons_table(df: pd.DataFrame, probe: Probe) -> pd.DataFrame:
    """Planned contrasts and every arm against the floor, per gene count, paired over seeds; Holm per metric."""
    data = with_floor_arm(unit_means(df, probe), probe.unit)
    rows = []
    for genes, part in data.groupby("n_genes"):
        arms = set(part["arm"])
        pairs = [c for c in probe.contrasts if set(c) <= arms]
        pairs += [(a, FLOOR) for a in probe.arms if a in arms]
        for metric in (PRIMARY, *SECONDARY):
            for a, b in pairs:
                res = paired_comparison(part, [probe.unit], "arm", a, b, metric)
                kind = "planned" if (a, b) in probe.contrasts else "against the floor"
                rows.append({"n_genes": int(genes), "metric": metric, "kind": kind, "arm_a": a, "arm_b": b, **res})
    table = pd.DataFrame(rows)
    if table.empty:
        return table
    return adjust_family(table, family="metric", estimate="difference")


def arms_by_label(df: pd.DataFrame, label: pd.Series) -> str:
    """``"<label> (<arm>, <arm>); <label> (<arm>)"``: the arms of ``df`` under each value of ``label`` (one per row),
    labels and arms sorted."""
    by_label = df.assign(_label=label).groupby("_label")["arm"].agg(lambda a: ", ".join(sorted(set(a))))
    return "; ".join(f"{lab} ({arms})" for lab, arms in by_label.items())


PRECISION_NAMES = {"fp32": "fp32", "torch.bfloat16": "bf16", "torch.float16": "fp16"}


def precision_note(df: pd.DataFrame) -> str:
    """What ``train.precision`` resolved to in the runs of a study, per arm where the arms differ.

    ``auto`` takes bf16 only on CPUs that compute it faster, so the same YAML can compute in bf16 on one machine and
    fp32 on another; tables exported before the runs table carried the resolved precision say "not recorded".
    """
    raw = df["precision"] if "precision" in df.columns else pd.Series([None] * len(df), index=df.index)
    label = raw.map(lambda v: PRECISION_NAMES.get(v, str(v)) if isinstance(v, str) and v else "not recorded")
    if label.nunique() == 1:
        return f"precision {label.iloc[0]}"
    return "precision differs: " + arms_by_label(df, label)


def hardware_note(df: pd.DataFrame) -> str:
    """The machines the runs of a study trained on, per arm, where they differ; "" where they do not.

    A run's machine is its GPU (``device``, where not ``cpu``) or else its CPU model (``cpu``). Floating-point
    results differ between machines in their last bits and grow apart over training, so a contrast between arms
    trained on different machines also carries that difference. Tables exported before the runs table carried the
    CPU model say "not recorded".
    """
    n = len(df)
    device = df["device"] if "device" in df.columns else pd.Series([None] * n, index=df.index)
    cpu = df["cpu"] if "cpu" in df.columns else pd.Series([None] * n, index=df.index)

    def name(dev: object, model: object) -> str:
        if isinstance(dev, str) and dev and dev != "cpu":
            return dev
        return model if isinstance(model, str) and model else "not recorded"

    label = pd.Series([name(d, c) for d, c in zip(device, cpu, strict=True)], index=df.index)
    if label.nunique() <= 1:
        return ""
    return "machines differ: " + arms_by_label(df, label)


def run_commits(df: pd.DataFrame) -> list[str]:
    """Every commit the runs of ``df`` were trained under: ``git_sha`` and, where the export has it, the commits
    a run was resumed under (``resumed_git_shas``, ";"-joined).
    """
    shas = list(df["git_sha"].astype(str))
    if "resumed_git_shas" in df:
        shas += [s for joined in df["resumed_git_shas"].dropna().astype(str) for s in joined.split(";") if s]
    return shas


def library_changes(shas: Sequence[str]) -> str:
    """Whether ``arch_lab/`` differs between the commits the runs record (what a run computes lives there).

    Returns a phrase for the report: identical, differs (naming the pair), or unknown (no git, unknown commit).
    """
    commits = sorted({s.removesuffix("+dirty") for s in shas if isinstance(s, str) and s and s != "nan"})
    dirty = any(isinstance(s, str) and s.endswith("+dirty") for s in shas)
    note = "; some runs had uncommitted changes (+dirty)" if dirty else ""
    for other in commits[1:]:
        try:
            res = subprocess.run(["git", "diff", "--numstat", commits[0], other, "--", "arch_lab"], check=False,
                                 capture_output=True, text=True)  # fmt: skip
        except OSError:
            return "unknown (git not found)" + note
        if res.returncode != 0:
            return "unknown (a commit is not in this repository)" + note
        changed = [line.split("\t") for line in res.stdout.splitlines() if line.strip()]
        if changed:
            files = ", ".join(f"{path} (+{add}/-{rm} lines)" for add, rm, path in changed)
            return f"differs between {commits[0][:7]} and {other[:7]}: {files}" + note
    return "identical across them" + note


def _fmt(x: float, digits: int = 3) -> str:
    return "" if x is None or (isinstance(x, float) and math.isnan(x)) else f"{x:.{digits}f}"


def _interval(row: pd.Series, m: str, digits: int = 3) -> str:
    if m not in row or pd.isna(row[m]):
        return ""
    return f"{row[m]:.{digits}f} [{_fmt(row[f'{m}_low'], digits)}, {_fmt(row[f'{m}_high'], digits)}]"


def cells_markdown(cells: pd.DataFrame, unit: str = "seed") -> str:
    """The cells table as markdown (``unit``: what the intervals are over, seeds or folds)."""
    lines = [
        f"| G | arm | {unit}s | energy distance | SD over {unit}s (range) | floor | ceiling | cosine logFC |"
        " spread ratio | source outside span | source sensitivity | velocity gain at t = 0 | hidden source share |"
        " steps | train s | train TFLOPs |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for _, r in cells.iterrows():
        if unit == "seed":
            seeds = f"{r['seeds']}" + ("" if r["seeds"] >= SEEDS else " (short)")
        else:
            seeds = f"{r['seeds']} ({r['runs']} runs)"
        lines.append(
            f"| {r['n_genes']} | {r['arm']} | {seeds} | {_interval(r, PRIMARY)} "
            f"| {_fmt(r[f'{PRIMARY}_sd'])} ({_fmt(r[f'{PRIMARY}_min'])} to {_fmt(r[f'{PRIMARY}_max'])}) "
            f"| {_fmt(r['floor_energy_distance'])} "
            f"| {_fmt(r['ceiling_energy_distance'])} | {_interval(r, 'cosine_logfc')} "
            f"| {_interval(r, 'gene_spread_ratio', 2)} | {_fmt(r.get('readout_source_outside_span', math.nan), 2)} "
            f"| {_interval(r, 'readout_source_sensitivity', 2)} | {_interval(r, 'readout_source_velocity_gain', 2)} "
            f"| {_interval(r, 'readout_hidden_source_share', 3)} "
            f"| {r['steps']:.0f} | {r['train_seconds']:.0f} | {r['train_flops'] / 1e12:.1f} |"
        )
    return "\n".join(lines)


CONTRAST_HEADER = "a | b | pairs | a - b | 95% CI | Holm CI | p (Holm) |"


def contrast_cells(r: pd.Series) -> str:
    """The cells of one paired contrast's markdown row, under ``CONTRAST_HEADER``."""
    return (
        f"{r['arm_a']} | {r['arm_b']} | {r['n_pairs']} | {_fmt(r['difference'])} "
        f"| [{_fmt(r['ci_low'])}, {_fmt(r['ci_high'])}] | [{_fmt(r['ci_low_holm'])}, {_fmt(r['ci_high_holm'])}] "
        f"| {_fmt(r['p_holm'])} |"
    )


def comparisons_markdown(comp: pd.DataFrame, metric: str) -> str:
    """The planned contrasts of one metric as markdown (difference a - b, paired over seeds)."""
    part = comp[(comp["metric"] == metric) & (comp["kind"] == "planned")]
    lines = [f"| G | {CONTRAST_HEADER}", "|---" * 8 + "|"]
    for _, r in part.iterrows():
        lines.append(f"| {r['n_genes']} | {contrast_cells(r)}")
    return "\n".join(lines)


def floor_markdown(comp: pd.DataFrame) -> str:
    """Each arm's energy distance against the floor of the same runs (paired over seeds, Holm)."""
    part = comp[(comp["metric"] == PRIMARY) & (comp["kind"] == "against the floor")]
    lines = ["| G | arm | arm - floor | Holm CI | verdict |", "|---|---|---|---|---|"]
    for _, r in part.iterrows():
        low, high = r["ci_low_holm"], r["ci_high_holm"]
        verdict = "below the floor" if high < 0 else "above the floor" if low > 0 else "not separated"
        lines.append(
            f"| {r['n_genes']} | {r['arm_a']} | {_fmt(r['difference'])} | [{_fmt(low)}, {_fmt(high)}] | {verdict} |"
        )
    return "\n".join(lines)


def fold_figure(df: pd.DataFrame, probe: Probe) -> plt.Figure:
    """Fold-paired studies: each fold's energy distance (seed mean) per arm, one line per fold, with its floor."""
    means = unit_means(df, probe)
    arms = [a for a in probe.arms if a in set(means["arm"])]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.get_cmap("tab10")
    x = np.arange(len(arms))
    for k, (fold, part) in enumerate(means.groupby(probe.unit)):
        part = part.set_index("arm").reindex(arms)
        for ax, m in zip(axes, (PRIMARY, "cosine_logfc"), strict=True):
            ax.plot(x, part[m], marker="o", color=colors(k % 10), label=f"{probe.unit} {fold}")
            floor = float(part[f"floor_{m}"].mean()) if f"floor_{m}" in part.columns else math.nan
            if math.isfinite(floor):
                ax.axhline(floor, color=colors(k % 10), linestyle=":", linewidth=0.8)
    # symlog: the unbiased energy distance can be slightly negative for a near-perfect prediction
    axes[0].set_yscale("symlog", linthresh=1e-2)
    axes[0].set_ylabel("energy distance, test (symlog; lower is better)")
    axes[1].set_ylabel("cosine logFC, test (higher is better)")
    for ax in axes:
        ax.set_xticks(x, arms, rotation=25, ha="right", fontsize=8)
    axes[0].legend(fontsize=7, title="dotted: no_change", title_fontsize=7)
    fig.suptitle(f"{probe.title}\n(seed mean per {probe.unit}; dotted lines: that {probe.unit}'s floor)", fontsize=9)
    fig.tight_layout()
    return fig


def figure(cells: pd.DataFrame, probe: Probe) -> plt.Figure:
    """Energy distance (log scale) against the gene count per arm, with the floor; spread ratio beside it."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    colors = plt.get_cmap("tab10")
    present = [a for a in probe.arms if a in set(cells["arm"])]
    for k, arm in enumerate(present):
        i = probe.arms.index(arm)
        part = cells[cells["arm"] == arm].sort_values("n_genes")
        style = "--" if "no_norm" in arm else "-"
        # arms side by side around each gene count (a twentieth of an octave apart), so equal values stay visible
        x = part["n_genes"] * 2.0 ** (0.05 * (k - (len(present) - 1) / 2))
        for ax, m in zip(axes, (PRIMARY, "gene_spread_ratio"), strict=True):
            if m not in part.columns:
                continue
            yerr = np.vstack([part[m] - part[f"{m}_low"], part[f"{m}_high"] - part[m]])
            ax.errorbar(x, part[m], yerr=np.nan_to_num(yerr), label=arm, color=colors(i % 10),
                        linestyle=style, marker="o", capsize=3)  # fmt: skip
    floor = cells.groupby("n_genes")["floor_energy_distance"].mean()
    axes[0].plot(floor.index, floor.values, color="black", linestyle=":", marker="s", label=FLOOR)
    axes[0].set_yscale("log")
    axes[0].set_ylabel("energy distance, test (log; lower is better)")
    axes[1].axhline(1.0, color="black", linestyle=":", linewidth=1)
    axes[1].set_ylabel("per-gene spread, generated / observed")
    for ax in axes:
        ax.set_xscale("log", base=2)
        ax.set_xlabel("genes G")
    handles, labels = axes[0].get_legend_handles_labels()
    fig.suptitle(probe.title, fontsize=10)
    fig.tight_layout(rect=(0, 0.12, 1, 1))
    fig.legend(handles, labels, loc="lower center", ncol=5, fontsize=7, frameon=False)
    return fig


def report(results: Path, figures: Path, collect: bool = False) -> str:
    """Tables and figures of every probe study present; the markdown block.

    With ``collect``, the validation learning curves are first read from the run directories the tables name and
    written to ``<results>/curves/<probe>.csv`` (committed beside the tables; the curve figures are drawn from them).
    A committed curve table is replaced only when every run's directory was found.
    """
    figures.mkdir(parents=True, exist_ok=True)
    parts = [
        "Generated by `python analysis/gene_scale.py --results results/probes_v2 --out docs/findings.md "
        "--figures docs/figures/gene_scale` from the committed per-run tables. Intervals: 95% t over seeds; "
        "differences paired over seeds (the same seed gives every arm the same data and evaluation cells); in the "
        "real-data studies over every fold, over folds instead (each fold's seeds averaged first; a fold holds out "
        "its own condition, so the fold is the unit), in studies over several generated datasets, over "
        "datasets (each dataset's seeds averaged first), and in studies of one dataset under several splits of its "
        "conditions (`task.seed`), over splits (each split's seeds averaged first); Holm "
        "over each study's family of energy-distance comparisons (planned contrasts and every arm against the "
        "floor, across gene counts). SD over seeds: the energy distance's standard deviation over the seeds of a "
        "cell, with its smallest and largest value (descriptive; where each seed draws its own gene order, mostly "
        "the order's effect). Spread ratio: median over genes of the generated cells' standard deviation "
        "over the observed cells' (1 = the same; above 1 = noise the data does not have). Source outside span: "
        "the source variance the network cannot move, over the observed cells' total variance "
        "(`arch_lab.methods.readouts`; NaN for networks that declare no output span). Source sensitivity: how much "
        "the generated cells follow their source sample, the trace of J J^T (J: Jacobian of the generated cell "
        "with respect to its source sample, through the run's solver) over the observed cells' total variance: "
        "about 1 for a flow that carries a Gaussian source onto the observed spread, G over the observed total "
        "variance for one that moves no source noise (`arch_lab.methods.readouts.source_sensitivity`; recorded by "
        "runs since commit 07271ca (the velocity gain since bea956d, the hidden source share since 766dc6e), recomputed for older runs by `python analysis/posthoc_readouts.py <study>` "
        "into `results/probes_v2/readouts/`; blank where neither was done). Velocity gain at t = 0: -tr(J_v)/G, J_v "
        "the Jacobian of the velocity at t = 0 with respect to the state, at Gaussian source samples: exactly 1 for "
        "the optimal velocity of a Gaussian source with independent coupling, whatever the data, and 0 for a "
        "velocity that ignores its input (`arch_lab.methods.readouts.source_velocity_gain`; blank for a control "
        "source). Hidden source share (MLPs): in the hidden vector the output layer reads (before its "
        "normalisation), the size of the part that varies with the source sample over the size of the part that "
        "does not, at t = 0 (`arch_lab.methods.readouts.hidden_source_share`)."
    ]
    found = False
    for probe in PROBES:
        df = load_probe(results, probe)
        if df is None:
            parts.append(f"### {probe.title}\n\nNo results yet (`{results}/{probe.stem}*.csv`).")
            continue
        found = True
        df, unfinished = finished_runs(df)
        every_run = df  # the curves table keeps the excluded runs too; they leave it where it is read
        df, left_out = excluded_runs(df, probe)
        cells = cells_table(df, probe)
        comp = comparisons_table(df, probe)
        cells.to_csv(figures / f"{probe.stem}_cells.csv", index=False)
        comp.to_csv(figures / f"{probe.stem}_comparisons.csv", index=False)
        fig = figure(cells, probe) if probe.unit == "seed" else fold_figure(df, probe)
        save_figure(fig, figures, probe.stem)
        curves_path = results / "curves" / f"{probe.stem}.csv"
        if collect:
            curves = collect_curves(every_run)
            n_found = curves.groupby(["arm", "n_genes", *run_keys(curves)]).ngroups if not curves.empty else 0
            # a checkout without some run directories keeps the committed curves rather than a partial set
            if n_found and (n_found == len(every_run) or not curves_path.is_file()):
                curves_path.parent.mkdir(parents=True, exist_ok=True)
                curves.to_csv(curves_path, index=False)
        curve_text = ""
        if curves_path.is_file():
            curves = pd.read_csv(curves_path)
            curves, _ = excluded_runs(curves, probe)  # the runs left out of the tables leave their curves too
            save_figure(curves_figure(curves, probe), figures, f"{probe.stem}_curves")
            summary = curve_summary(curves, probe)
            summary.to_csv(figures / f"{probe.stem}_curve_summary.csv", index=False)
            curve_text = (
                f"\n\nLearning curves (`{curves_path}`, figure `{figures}/{probe.stem}_curves.png`): where each "
                "arm's validation energy first fell below the validation `no_change` floor (medians over the runs "
                "that did; seconds and FLOPs at the run's mean pace), and how many runs were still improving at "
                f"their last validation (better than every earlier one by more than {IMPROVING:.0%}):\n\n"
                f"{curve_summary_markdown(summary)}"
            )
            if probe.budget_seconds or probe.budget_tflops:
                values = budget_values(curves, probe)
                budgets = budget_table(values, probe)
                budgets.to_csv(figures / f"{probe.stem}_budgets.csv", index=False)
                save_figure(budget_figure(budgets, probe), figures, f"{probe.stem}_budgets")
                curve_text += (
                    "\n\nAt equal budgets (validation split; figure "
                    f"`{figures}/{probe.stem}_budgets.png`): each run's lowest validation energy by that budget, "
                    "the checkpoint it would have kept had it stopped there; mean [95% t] over the runs that had "
                    "validated by then (a run that ended by patience keeps its best beyond its end; one that ran out "
                    "of time before the budget has no value there):\n\n"
                    f"{budget_markdown(budgets)}"
                )
                contrasts = budget_comparisons(values, probe)
                contrasts.to_csv(figures / f"{probe.stem}_budget_comparisons.csv", index=False)
                if not contrasts.empty:
                    curve_text += (
                        "\n\nPlanned contrasts at equal budgets (validation energy, paired over runs; Holm over "
                        f"every contrast and budget, {len(contrasts)} tests):\n\n"
                        f"{budget_comparisons_markdown(contrasts)}"
                    )
        plt.close("all")
        shas = run_commits(df)
        commits = ", ".join(sorted({s[:7] for s in shas}))
        lenders = [
            f"{', '.join(name for st, _, name in probe.borrow if st == stem)} of `{stem}`"
            for stem in sorted({stem for stem, _, _ in probe.borrow})
        ]
        borrowed = int(df["arm"].isin({name for _, _, name in probe.borrow}).sum())
        same = library_changes(shas)
        parts.append(
            f"### {probe.title}\n\n`{probe.stem}`: {len(df)} runs"
            + (f", {borrowed} of them borrowed ({'; '.join(lenders)})" if borrowed else "")
            + f" (commits {commits}; `arch_lab/` {same}; {precision_note(df)}"
            + (f"; {machines}" if (machines := hardware_note(df)) else "")
            + ")"
            + (f"; {unfinished} runs of unfinished trials left out (their retries repeat them)" if unfinished else "")
            + (f"; left out of every table and interval: {'; '.join(left_out)}" if left_out else "")
            + "; figure "
            f"`{figures}/{probe.stem}.png`.\n\n{cells_markdown(cells, probe.unit)}\n\n"
            f"Planned contrasts, energy distance (primary):\n\n{comparisons_markdown(comp, PRIMARY)}\n\n"
            f"Against the floor of the same runs, energy distance:\n\n{floor_markdown(comp)}\n\n"
            f"Planned contrasts, cosine logFC (secondary, Holm within its own family):\n\n"
            f"{comparisons_markdown(comp, 'cosine_logfc')}" + curve_text
        )
    if not found:
        raise ArchLabError(f"{results}: no probe table ({', '.join(p.stem for p in PROBES)}); export the studies")
    return "\n\n".join(parts)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; returns the exit code (2 on a user error, printed as one ``error:`` line)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=Path("results/probes_v2"), help="folder of <probe>.csv tables")
    p.add_argument("--out", type=Path, default=Path("docs/findings.md"), help="markdown file with the markers")
    p.add_argument("--figures", type=Path, default=Path("docs/figures/gene_scale"), help="folder for figures")
    p.add_argument("--collect-curves", action="store_true", help="read learning curves from the run directories first")
    args = p.parse_args(argv)
    try:
        body = report(args.results, args.figures, collect=args.collect_curves)
        write_generated(args.out, body, BEGIN, END)
    except ArchLabError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    print(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
