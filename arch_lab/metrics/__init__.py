"""Metrics for predicted single-cell perturbation responses: pure array functions and a condition evaluator."""

from __future__ import annotations

from arch_lab.metrics.deg import de_scores, top_k_genes, top_k_recall
from arch_lab.metrics.energy import energy_distance, fit_pca, sum_pairwise_distances
from arch_lab.metrics.info import DIAGNOSTICS, METRICS, MetricInfo
from arch_lab.metrics.pseudobulk import (
    LOGFC_PSEUDOCOUNT,
    cosine,
    logfc,
    pairwise_cosine,
    pairwise_pearson,
    pairwise_rmse,
    pearson,
    rmse,
)
from arch_lab.metrics.ranks import TIE_RTOL, rank_matrix_scores
from arch_lab.metrics.scoring import (
    DIAGNOSTIC_COLUMNS,
    ID_COLUMNS,
    METRIC_COLUMNS,
    ConditionGroup,
    MetricSettings,
    score_conditions,
    split_half_groups,
)
from arch_lab.metrics.spread import gene_spread_ratio

__all__ = [
    "DIAGNOSTICS",
    "DIAGNOSTIC_COLUMNS",
    "ID_COLUMNS",
    "LOGFC_PSEUDOCOUNT",
    "METRICS",
    "METRIC_COLUMNS",
    "TIE_RTOL",
    "ConditionGroup",
    "MetricInfo",
    "MetricSettings",
    "cosine",
    "de_scores",
    "energy_distance",
    "fit_pca",
    "gene_spread_ratio",
    "logfc",
    "pairwise_cosine",
    "pairwise_pearson",
    "pairwise_rmse",
    "pearson",
    "rank_matrix_scores",
    "rmse",
    "score_conditions",
    "split_half_groups",
    "sum_pairwise_distances",
    "top_k_genes",
    "top_k_recall",
]
