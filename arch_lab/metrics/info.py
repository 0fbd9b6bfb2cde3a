"""Names and optimisation directions of the metrics that :func:`arch_lab.metrics.score_conditions` reports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

#: Which way a metric (or a sweep objective) improves.
Direction = Literal["minimize", "maximize"]


@dataclass(frozen=True)
class MetricInfo:
    """How to read one metric.

    Parameters
    ----------
    direction
        ``"minimize"`` if lower is better, ``"maximize"`` if higher is better.
    description
        One-line definition.
    """

    direction: Direction
    description: str


_RANK = "fraction of other conditions' {what} at least as close as the own one under {metric}, within the state"

#: Every metric name emitted per condition and in the summary, with its direction.
METRICS: dict[str, MetricInfo] = {
    "rmse_mean": MetricInfo("minimize", "RMSE between predicted and observed pseudobulk means"),
    "cosine_logfc": MetricInfo("maximize", "cosine of predicted vs observed log2 fold change against the controls"),
    "pearson_delta": MetricInfo("maximize", "Pearson r of predicted vs observed mean shift from the controls"),
    "rmse_mean_rank": MetricInfo("minimize", _RANK.format(what="predictions", metric="rmse_mean")),
    "cosine_logfc_rank": MetricInfo("minimize", _RANK.format(what="predictions", metric="cosine_logfc")),
    "pearson_delta_rank": MetricInfo("minimize", _RANK.format(what="predictions", metric="pearson_delta")),
    "rmse_mean_rank_transposed": MetricInfo("minimize", _RANK.format(what="observations", metric="rmse_mean")),
    "cosine_logfc_rank_transposed": MetricInfo("minimize", _RANK.format(what="observations", metric="cosine_logfc")),
    "pearson_delta_rank_transposed": MetricInfo("minimize", _RANK.format(what="observations", metric="pearson_delta")),
    "energy_distance": MetricInfo("minimize", "unbiased energy distance between predicted and observed cells, genes"),
    "energy_distance_pca": MetricInfo(
        "minimize", "unbiased energy distance between predicted and observed cells on PCs of the observed cells"
    ),
    "deg_recall": MetricInfo("maximize", "overlap of the top-k genes by |Welch t| vs controls, predicted vs observed"),
}
