"""Results analysis (library): tidy tables of runs and sweeps, gaps and intervals, summaries, figures, the report.

Tables come from :mod:`~arch_lab.analysis.tidy` (studies are opened and their trials tabulated by
:mod:`arch_lab.sweeps.study`, re-exported here as ``load_study`` and ``trials_table``); every interval (t, Welch, BCa and percentile bootstrap) from
:mod:`~arch_lab.analysis.intervals`; gaps between arms and floor-to-ceiling normalisation from
:mod:`~arch_lab.analysis.gaps`; arms paired by seed or condition from :mod:`~arch_lab.analysis.paired`; Holm and
Benjamini-Hochberg adjustments from :mod:`~arch_lab.analysis.multiplicity`; a study's primary and secondary metrics
from :mod:`~arch_lab.analysis.roles`; its comparison tables from :mod:`~arch_lab.analysis.comparisons`; per-group
summaries and fronts from :mod:`~arch_lab.analysis.stats`, cell and gene tables from
:mod:`~arch_lab.analysis.cells`, figures from :mod:`~arch_lab.analysis.figures` (styled by
:mod:`~arch_lab.analysis.style`), and the whole report from :mod:`~arch_lab.analysis.report`.

This is the library package; nothing in it knows a particular study. The repository's top-level ``analysis/``
folder is the other one: scripts that use this package (one per paper figure, ``why_unet.py``) and the probe
study's own code (``analysis/probes/``).
"""

from __future__ import annotations

from arch_lab.analysis.cells import cell_projection, gene_logfc, parse_condition, strongest_conditions
from arch_lab.analysis.comparisons import study_comparisons
from arch_lab.analysis.figures import (
    compact_number,
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
    metric_label,
    split_prefix,
)
from arch_lab.analysis.gaps import (
    bootstrap_ci,
    bootstrap_difference_ci,
    gap_estimate,
    metric_gap,
    normalised_gap,
    normalised_score,
    range_noise,
    reference_standing,
)
from arch_lab.analysis.intervals import (
    Interval,
    bca_difference_interval,
    bca_interval,
    difference_interval,
    mean_interval,
    t_interval,
    welch_interval,
)
from arch_lab.analysis.multiplicity import adjust_family, benjamini_hochberg, bonferroni_level, holm, holm_levels
from arch_lab.analysis.paired import compare_arms, condition_keys, paired_comparison, seed_keys
from arch_lab.analysis.report import (
    Report,
    Sources,
    best_runs,
    build_report,
    load_sources,
    one_parameter_grid,
    report_split,
    standing_table,
)
from arch_lab.analysis.roles import MetricRoles, resolve_roles, roles_from_study, roles_from_sweep_file
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
    "standing_table",
    "report_split",
    "one_parameter_grid",
    "reference_standing",
    "split_prefix",
    "metric_label",
    "compact_number",
    "HEADLINE_METRICS",
    "Interval",
    "MetricRoles",
    "Report",
    "RunSkipped",
    "Sources",
    "adjust_family",
    "backbone_order",
    "backbone_palette",
    "bca_difference_interval",
    "bca_interval",
    "benjamini_hochberg",
    "best_runs",
    "bonferroni_level",
    "bootstrap_ci",
    "bootstrap_difference_ci",
    "build_report",
    "cell_projection",
    "compare_arms",
    "condition_keys",
    "condition_means",
    "difference_interval",
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
    "holm",
    "holm_levels",
    "load_history",
    "load_per_condition",
    "load_reference",
    "load_runs",
    "load_sources",
    "load_study",
    "long_metrics",
    "mean_interval",
    "metric_gap",
    "normalised_gap",
    "normalised_score",
    "paired_comparison",
    "paired_differences",
    "paired_summary",
    "paper_style",
    "param_importances",
    "pareto_front",
    "parse_condition",
    "range_noise",
    "read_run",
    "runs_table",
    "reference_summary",
    "require_metric",
    "resolve_roles",
    "roles_from_study",
    "roles_from_sweep_file",
    "save_figure",
    "seed_keys",
    "strongest_conditions",
    "study_comparisons",
    "study_runs",
    "summarize",
    "t_interval",
    "trials_table",
    "welch_interval",
]
