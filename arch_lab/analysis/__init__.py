"""Results analysis (library): tidy tables of runs and sweeps, gaps and intervals, summaries, figures, the report.

Tables come from :mod:`~arch_lab.analysis.tidy` (studies are opened and their trials tabulated by
:mod:`arch_lab.sweeps.study`, re-exported here as ``load_study`` and ``trials_table``), gaps between arms and
every bootstrap interval from :mod:`~arch_lab.analysis.gaps`, per-group summaries and fronts from
:mod:`~arch_lab.analysis.stats`, cell and gene tables from :mod:`~arch_lab.analysis.cells`, figures from
:mod:`~arch_lab.analysis.figures` (styled by
:mod:`~arch_lab.analysis.style`), and the whole report from :mod:`~arch_lab.analysis.report`.

This is the library package; nothing in it knows a particular study. The repository's top-level ``analysis/``
folder is the other one: scripts that use this package (one per paper figure, ``why_unet.py``) and the probe
study's own code (``analysis/probes/``).
"""

from __future__ import annotations

from arch_lab.analysis.cells import cell_projection, gene_logfc, parse_condition, strongest_conditions
from arch_lab.analysis.figures import (
    fig_cells_pca,
    fig_gene_logfc,
    fig_guidance_sweep,
    fig_learning_curves,
    fig_metric_by_backbone,
    fig_metrics_by_backbone,
    fig_optimization_history,
    fig_paired_conditions,
    fig_param_importances,
    fig_quality_cost_panels,
    fig_quality_vs_cost,
    fig_sweep_diagnostics,
)
from arch_lab.analysis.gaps import (
    bootstrap_ci,
    bootstrap_difference_ci,
    gap_estimate,
    metric_gap,
    normalised_gap,
    normalised_score,
)
from arch_lab.analysis.report import Report, Sources, best_runs, build_report, load_sources
from arch_lab.analysis.stats import (
    HEADLINE_METRICS,
    condition_means,
    paired_differences,
    paired_summary,
    param_importances,
    pareto_front,
    reference_summary,
    summarize,
)
from arch_lab.analysis.style import backbone_order, backbone_palette, paper_style, save_figure
from arch_lab.analysis.tidy import (
    RunSkipped,
    export_runs,
    find_run_dirs,
    load_history,
    load_per_condition,
    load_reference,
    load_runs,
    long_metrics,
    read_run,
    require_metric,
    runs_table,
    study_runs,
)
from arch_lab.sweeps.study import load_study, trials_table

__all__ = [
    "HEADLINE_METRICS",
    "Report",
    "RunSkipped",
    "Sources",
    "backbone_order",
    "backbone_palette",
    "best_runs",
    "bootstrap_ci",
    "bootstrap_difference_ci",
    "build_report",
    "cell_projection",
    "condition_means",
    "fig_cells_pca",
    "fig_gene_logfc",
    "fig_guidance_sweep",
    "fig_learning_curves",
    "fig_metric_by_backbone",
    "fig_metrics_by_backbone",
    "fig_optimization_history",
    "fig_paired_conditions",
    "fig_param_importances",
    "fig_quality_cost_panels",
    "fig_quality_vs_cost",
    "fig_sweep_diagnostics",
    "export_runs",
    "find_run_dirs",
    "gap_estimate",
    "gene_logfc",
    "load_history",
    "load_per_condition",
    "load_reference",
    "load_runs",
    "load_sources",
    "load_study",
    "long_metrics",
    "metric_gap",
    "normalised_gap",
    "normalised_score",
    "paired_differences",
    "paired_summary",
    "paper_style",
    "param_importances",
    "parse_condition",
    "pareto_front",
    "read_run",
    "runs_table",
    "reference_summary",
    "require_metric",
    "save_figure",
    "strongest_conditions",
    "study_runs",
    "summarize",
    "trials_table",
]
