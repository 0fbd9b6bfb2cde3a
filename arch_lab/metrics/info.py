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
    label
        Short name in words for axes and table headers.
    unit
        What the values are measured in (empty for a correlation or cosine).
    """

    direction: Direction
    description: str
    label: str = ""
    unit: str = ""

    @property
    def better(self) -> str:
        """``lower is better`` or ``higher is better``."""
        return "lower is better" if self.direction == "minimize" else "higher is better"


_RANK = "fraction of other conditions' {what} at least as close as the own one under {metric}, within the state"
_LOG = "log expression"
_FRACTION = "fraction of conditions"

#: Every metric name emitted per condition and in the summary, with its direction, label and unit.
METRICS: dict[str, MetricInfo] = {
    "rmse_mean": MetricInfo(
        "minimize", "RMSE between predicted and observed pseudobulk means", "RMSE of mean expression", _LOG
    ),
    "cosine_logfc": MetricInfo(
        "maximize",
        "cosine of predicted vs observed log2 fold change against the controls",
        "cosine of log2 fold changes",
    ),
    "pearson_delta": MetricInfo(
        "maximize", "Pearson r of predicted vs observed mean shift from the controls", "Pearson r of mean shifts"
    ),
    "rmse_mean_rank": MetricInfo(
        "minimize", _RANK.format(what="predictions", metric="rmse_mean"), "rank by RMSE", _FRACTION
    ),
    "cosine_logfc_rank": MetricInfo(
        "minimize", _RANK.format(what="predictions", metric="cosine_logfc"), "rank by log2FC cosine", _FRACTION
    ),
    "pearson_delta_rank": MetricInfo(
        "minimize", _RANK.format(what="predictions", metric="pearson_delta"), "rank by Pearson delta", _FRACTION
    ),
    "rmse_mean_rank_transposed": MetricInfo(
        "minimize", _RANK.format(what="observations", metric="rmse_mean"), "rank by RMSE, transposed", _FRACTION
    ),
    "cosine_logfc_rank_transposed": MetricInfo(
        "minimize",
        _RANK.format(what="observations", metric="cosine_logfc"),
        "rank by log2FC cosine, transposed",
        _FRACTION,
    ),
    "pearson_delta_rank_transposed": MetricInfo(
        "minimize",
        _RANK.format(what="observations", metric="pearson_delta"),
        "rank by Pearson delta, transposed",
        _FRACTION,
    ),
    "energy_distance": MetricInfo(
        "minimize",
        "unbiased energy distance between predicted and observed cells, genes",
        "energy distance, genes",
        _LOG,
    ),
    "energy_distance_pca": MetricInfo(
        "minimize",
        "unbiased energy distance between predicted and observed cells on PCs of the observed cells",
        "energy distance, PCs",
        _LOG,
    ),
    "deg_recall": MetricInfo(
        "maximize",
        "overlap of the top-k genes by |Welch t| vs controls, predicted vs observed",
        "recall of top DE genes",
        "fraction",
    ),
}

#: Diagnostics reported beside the metrics, per condition and in the summary; they have a target value rather
#: than a direction, so they are not sweep objectives.
DIAGNOSTICS: dict[str, str] = {
    "gene_spread_ratio": "median over genes of the predicted cells' standard deviation over the observed cells' "
    "(1 = same spread; below 1 = cells averaged towards a mean; above 1 = excess noise)",
}
