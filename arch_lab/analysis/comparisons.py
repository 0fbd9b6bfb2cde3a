"""A study's comparison tables: every pair of arms on every metric, paired, and corrected for multiplicity.

Two tables, both built by :func:`study_comparisons`:

- **per seed**: for each metric and pair of arms, the mean over seeds of the per-seed difference ``a - b`` (arms
  matched on task, fold and seed; runs of one arm sharing a seed averaged), with its paired t interval and
  p-value (Welch's unpaired interval where the arms do not cover the same seeds);
- **per condition**: the same with held-out conditions as the units (each arm's mean over seeds on a condition,
  matched on task, fold, state and perturbation and pooled over folds), where per-condition metrics exist.

In each table the primary metric's comparisons form one family and all other metrics' comparisons another
(column ``role``); the p-values are Holm- and Benjamini-Hochberg-adjusted within each family, and each row gets
the interval at its Holm-consistent level (:func:`arch_lab.analysis.multiplicity.adjust_family`). Rows come
primary metric first.
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence

import pandas as pd

from arch_lab.analysis.multiplicity import adjust_family
from arch_lab.analysis.paired import COMPARISON_COLUMNS, FOLD_COLUMNS, compare_arms, condition_keys, seed_keys
from arch_lab.analysis.roles import MetricRoles

#: Columns of both tables, in order.
STUDY_COMPARISON_COLUMNS: tuple[str, ...] = (
    "role",
    *COMPARISON_COLUMNS,
    "family_size",
    "p_holm",
    "p_bh",
    "significant_holm",
    "significant_bh",
    "level_holm",
    "ci_low_holm",
    "ci_high_holm",
)


def with_fold(per_condition: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``per_condition`` with the runs' fold column (``config.task.fold``) joined on ``run_dir``, when the runs
    have one and the per-condition table does not.
    """
    fold = next((c for c in FOLD_COLUMNS if c in runs.columns), None)
    if fold is None or fold in per_condition.columns or "run_dir" not in per_condition.columns:
        return per_condition
    return per_condition.merge(runs[["run_dir", fold]].drop_duplicates("run_dir"), on="run_dir", how="left")


def family_table(comparisons: pd.DataFrame, roles: MetricRoles, level: float = 0.95) -> pd.DataFrame:
    """Label each comparison ``primary`` or ``secondary`` by its metric, adjust within each role, and order the
    rows primary first (then metrics in ``roles`` order, then as given).
    """
    if comparisons.empty:
        return pd.DataFrame(columns=list(STUDY_COMPARISON_COLUMNS))
    out = comparisons.copy()
    out.insert(0, "role", [roles.role(m) for m in out["metric"]])
    out = adjust_family(out, family="role", level=level, estimate="difference")
    rank = {m: i for i, m in enumerate(roles.ordered(out["metric"]))}
    out = out.sort_values("metric", key=lambda s: s.map(rank), kind="stable").reset_index(drop=True)
    return out[[c for c in STUDY_COMPARISON_COLUMNS if c in out.columns]]


def study_comparisons(
    runs: pd.DataFrame,
    per_condition: pd.DataFrame,
    roles: MetricRoles,
    metrics: Sequence[str],
    *,
    arm_column: str = "backbone",
    arms: Sequence[str] | None = None,
    level: float = 0.95,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The per-seed and per-condition comparison tables of a study (see the module docstring).

    Parameters
    ----------
    runs
        One row per run, with ``arm_column``, ``seed`` and the metrics.
    per_condition
        One row per (run, condition) (may be empty).
    roles
        The primary metric and the secondary ones.
    metrics
        Metrics to compare (those without values are skipped).
    arm_column
        The column naming the arms.
    arms
        The arms, in display order (default: as they appear); every pair ``(a, b)`` with ``a`` before ``b``.
    level
        Coverage, and ``1 - alpha`` of the adjustments.

    Returns
    -------
    tuple of pandas.DataFrame
        ``(per_seed, per_condition)``, columns :data:`STUDY_COMPARISON_COLUMNS`; empty with fewer than two arms.
    """
    arms = list(arms) if arms is not None else list(dict.fromkeys(runs[arm_column].astype(str)))
    pairs = list(itertools.combinations(arms, 2))
    metrics = roles.ordered(metrics)
    empty = family_table(pd.DataFrame(), roles)
    if not pairs:
        return empty, empty.copy()
    per_seed = compare_arms(runs, seed_keys(runs), arm_column, pairs, metrics, unit="seed", level=level)
    per_cond = empty.copy()
    if not per_condition.empty:
        pc = with_fold(per_condition, runs)
        per_cond = compare_arms(
            pc, condition_keys(pc), arm_column, pairs, metrics, unit="condition", pairing="paired", level=level
        )
        per_cond = family_table(per_cond, roles, level)
    return family_table(per_seed, roles, level), per_cond
