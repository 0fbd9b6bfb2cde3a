"""Why does the U-Net win? The probe study's tables, figures and summary (study code, not library).

The probe studies (``sweeps/probes/*.yaml``, run by ``scripts/run_probes.sh``) each write one per-run table,
``results/probes/<probe>.csv``. This package loads them (:mod:`.results`), builds the comparisons each probe kind
was designed for (:mod:`.comparisons`), estimates every gap with a paired t interval over seeds and Holm- and
BH-adjusted p-values (:mod:`.tables`, on the library's :mod:`arch_lab.analysis.gaps`,
:mod:`~arch_lab.analysis.paired` and :mod:`~arch_lab.analysis.multiplicity`), draws the figure (:mod:`.figures`) and writes ``summary.md``
(:mod:`.summary`). ``analysis/why_unet.py`` is its command line.

It knows the probes' names, arms and settings; the generic gap and interval code lives in the library.
Import it as ``analysis.probes`` with the repository root on ``sys.path`` (as ``analysis/why_unet.py`` arranges).
"""

from __future__ import annotations

from .comparisons import GT_CROSS, MLP_BASELINE, UNET, Comparison, arm_sort_key, build_comparisons, ordered_arms
from .figures import fig_absolute_by_task, fig_gap_forest, fig_gap_vs_locality, fig_why_unet
from .results import (
    CELL_KEYS,
    PROBE_KINDS,
    PROBES,
    STORED_ORDER,
    ProbeResults,
    coverage,
    expected_cells,
    load_probe_results,
    probe_kind,
    setting_label,
    task_label,
    tidy_probe_table,
)
from .summary import summary_markdown, write_why_unet
from .tables import GAP_COLUMNS, GAP_METRICS, gap_table, locality_contiguity

__all__ = [
    "CELL_KEYS",
    "GAP_COLUMNS",
    "GAP_METRICS",
    "GT_CROSS",
    "MLP_BASELINE",
    "PROBES",
    "PROBE_KINDS",
    "STORED_ORDER",
    "UNET",
    "Comparison",
    "ProbeResults",
    "arm_sort_key",
    "build_comparisons",
    "coverage",
    "expected_cells",
    "fig_absolute_by_task",
    "fig_gap_forest",
    "fig_gap_vs_locality",
    "fig_why_unet",
    "gap_table",
    "load_probe_results",
    "locality_contiguity",
    "ordered_arms",
    "probe_kind",
    "setting_label",
    "summary_markdown",
    "task_label",
    "tidy_probe_table",
    "write_why_unet",
]
