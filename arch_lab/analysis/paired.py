"""Two arms compared on matched units: seeds (per-seed pairing) or held-out conditions (per-condition pairing).

Arms of one study are evaluated on the same seeds (the seed fixes the evaluation subsample and the generated cells'
noise) and on the same held-out conditions, so their values are *paired*: the spread that seeds or conditions
share cancels in the differences, and the interval of the mean difference is a paired t interval over the matched
units. This module matches the rows of a tidy table (runs, or per-condition metrics) between two arms:

- :func:`seed_keys` and :func:`condition_keys`: the usual pairing keys of a table: (task, fold, ``seed``) for a
  runs table; (task, fold, ``state``, ``perturbation``) for a per-condition table, pooled over folds;
- :func:`unit_values`: one value per unit and arm (the mean of the arm's rows of that unit, e.g. over the trials
  or seeds that share it);
- :func:`align_units`: the two arms' unit values, matched when both arms cover the same units;
- :func:`paired_comparison`: the mean paired difference, the number of pairs, the interval and p-value;
- :func:`compare_arms`: the same for many arm pairs and metrics, one row each, falling back to Welch's unpaired
  interval where the units do not match.

Nothing here knows arm names; the arm column is an argument.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
import pandas as pd

from arch_lab.analysis.gaps import gap_estimate, keyed_rng
from arch_lab.errors import ArchLabError
from arch_lab.metrics.info import METRICS

#: Columns naming a task, in order of preference.
TASK_COLUMNS: tuple[str, ...] = ("experiment", "task")
#: Columns naming a cross-validation fold, in order of preference.
FOLD_COLUMNS: tuple[str, ...] = ("fold", "config.task.fold")

#: Columns of :func:`compare_arms`.
COMPARISON_COLUMNS: tuple[str, ...] = (
    "metric",
    "direction",
    "arm_a",
    "arm_b",
    "unit",
    "pairing",
    "n_a",
    "n_b",
    "mean_a",
    "mean_b",
    "difference",
    "ci_low",
    "ci_high",
    "se",
    "df",
    "p_value",
    "method",
    "level",
    "a_better",
)


def _first(table: pd.DataFrame, names: Sequence[str]) -> list[str]:
    return next(([n] for n in names if n in table.columns), [])


def seed_keys(table: pd.DataFrame) -> list[str]:
    """Per-seed pairing keys of a runs table: the task and fold columns present, then ``seed``.

    Raises
    ------
    ArchLabError
        A table without a ``seed`` column.
    """
    if "seed" not in table.columns:
        raise ArchLabError("no 'seed' column: runs cannot be paired by seed")
    return [*_first(table, TASK_COLUMNS), *_first(table, FOLD_COLUMNS), "seed"]


def condition_keys(table: pd.DataFrame) -> list[str]:
    """Per-condition pairing keys of a per-condition table: the task and fold columns present, then ``state`` and
    ``perturbation`` (a condition is held out in one fold, so pairs pool over folds).

    Raises
    ------
    ArchLabError
        A table without ``state`` and ``perturbation`` columns.
    """
    missing = [c for c in ("state", "perturbation") if c not in table.columns]
    if missing:
        raise ArchLabError(f"no {' or '.join(map(repr, missing))} column: not a per-condition table")
    return [*_first(table, TASK_COLUMNS), *_first(table, FOLD_COLUMNS), "state", "perturbation"]


def _column(rows: pd.DataFrame, metric: str) -> np.ndarray:
    if metric not in rows.columns:
        return np.zeros(0)
    return pd.to_numeric(rows[metric], errors="coerce").to_numpy(dtype=np.float64)


def unit_values(rows: pd.DataFrame, keys: Sequence[str], metric: str) -> pd.Series:
    """One value of ``metric`` per unit (combination of ``keys``): the mean of the finite values of its rows.

    Units without a finite value are left out; the result is indexed by the keys (a plain index for one key).
    """
    keys = list(keys)
    vals = pd.to_numeric(rows[metric], errors="coerce") if metric in rows.columns else pd.Series(np.nan, rows.index)
    frame = rows[keys].assign(_v=vals.where(np.isfinite(vals)))
    return frame.groupby(keys, sort=True, dropna=False)["_v"].mean().dropna()


def align_units(
    rows_a: pd.DataFrame, rows_b: pd.DataFrame, keys: Sequence[str], metric: str
) -> tuple[np.ndarray, np.ndarray, bool]:
    """The two arms' values of ``metric``, paired when they cover exactly the same units.

    Returns
    -------
    tuple
        ``(a, b, paired)``: with ``paired`` True, ``a[i]`` and ``b[i]`` belong to the same unit (at least 2
        units); otherwise each arm's values over its own units (or over its rows, when a key column is missing),
        to be compared unpaired.
    """
    if any(k not in rows_a.columns or k not in rows_b.columns for k in keys):
        return _column(rows_a, metric), _column(rows_b, metric), False
    ua, ub = unit_values(rows_a, keys, metric), unit_values(rows_b, keys, metric)
    if len(ua) >= 2 and len(ua) == len(ub) and ua.index.equals(ub.index):
        return ua.to_numpy(dtype=np.float64), ub.to_numpy(dtype=np.float64), True
    return ua.to_numpy(dtype=np.float64), ub.to_numpy(dtype=np.float64), False


def paired_comparison(
    table: pd.DataFrame,
    keys: Sequence[str],
    arm_column: str,
    a: str,
    b: str,
    metric: str,
    *,
    level: float = 0.95,
    method: str = "t",
    n_boot: int = 2000,
    rng: np.random.Generator | int = 0,
) -> dict[str, Any]:
    """Arm ``a`` minus arm ``b`` on ``metric``, paired over the units (combinations of ``keys``) both arms have.

    Parameters
    ----------
    table
        A tidy table: one row per run (or per run and condition), with ``arm_column``, ``keys`` and ``metric``.
    keys
        The pairing keys, e.g. :func:`seed_keys` or :func:`condition_keys`. Rows of one arm sharing a unit are
        averaged first (:func:`unit_values`).
    arm_column
        The column naming the arm (``backbone``, ``arm``...).
    a, b
        The two arms.
    metric
        The metric column.
    level, method, n_boot, rng
        Coverage, interval method (``t``: paired t; ``bca``; ``percentile``) and bootstrap settings.

    Returns
    -------
    dict
        ``n_pairs``, ``n_only_a``, ``n_only_b`` (units of one arm only, left out), ``mean_a``, ``mean_b`` (over the
        pairs), ``difference`` (mean paired difference ``a - b``), ``ci_low``, ``ci_high``, ``se``, ``df``,
        ``p_value``, ``method``, ``level``. Fewer than 2 pairs give a NaN interval and p-value.

    Raises
    ------
    ArchLabError
        An arm, a key or the metric missing from the table.
    """
    for col in (arm_column, *keys, metric):
        if col not in table.columns:
            raise ArchLabError(f"no {col!r} column in the table")
    arms = set(table[arm_column].astype(str))
    for name in (a, b):
        if name not in arms:
            raise ArchLabError(f"{arm_column} {name!r} not in the table; it has {', '.join(sorted(arms))}")
    ua = unit_values(table[table[arm_column].astype(str) == a], keys, metric)
    ub = unit_values(table[table[arm_column].astype(str) == b], keys, metric)
    common = ua.index.intersection(ub.index)
    est = gap_estimate(ua.loc[common], ub.loc[common], n_boot, level, rng, method=method, paired=True)
    return {
        "n_pairs": int(len(common)),
        "n_only_a": int(len(ua) - len(common)),
        "n_only_b": int(len(ub) - len(common)),
        "mean_a": est["mean_a"],
        "mean_b": est["mean_b"],
        "difference": est["gap"],
        "ci_low": est["ci_low"],
        "ci_high": est["ci_high"],
        "se": est["se"],
        "df": est["df"],
        "p_value": est["p_value"],
        "method": est["method"],
        "level": level,
    }


def compare_arms(
    table: pd.DataFrame,
    keys: Sequence[str],
    arm_column: str,
    pairs: Sequence[tuple[str, str]],
    metrics: Sequence[str],
    *,
    unit: str = "seed",
    pairing: str = "auto",
    level: float = 0.95,
    method: str = "t",
    n_boot: int = 2000,
    seed: int = 0,
) -> pd.DataFrame:
    """One row per (metric, arm pair): ``a - b`` paired over matched units, else unpaired.

    With ``pairing="auto"`` a pair is compared paired (:func:`align_units`) when both arms cover the same units,
    at least 2, and otherwise their per-unit values are compared unpaired (Welch's interval for ``method="t"``).
    With ``pairing="paired"`` the units both arms have are paired and the others left out
    (:func:`paired_comparison`).

    Parameters
    ----------
    table, keys, arm_column
        As for :func:`paired_comparison`.
    pairs
        ``(a, b)`` arm pairs.
    metrics
        Metric columns (names of :data:`arch_lab.metrics.info.METRICS` get their direction).
    unit
        What a unit is, for the ``unit`` column (``seed``, ``condition``).
    pairing
        ``auto`` or ``paired`` (see above).
    level, method, n_boot, seed
        Coverage, interval method and bootstrap settings (each row gets its own stream of ``seed``).

    Returns
    -------
    pandas.DataFrame
        ``metric``, ``direction``, ``arm_a``, ``arm_b``, ``unit``, ``pairing`` (``paired`` / ``unpaired``),
        ``n_a``, ``n_b`` (units; the number of pairs when paired), ``mean_a``, ``mean_b``, ``difference``,
        ``ci_low``, ``ci_high``, ``se``, ``df``, ``p_value``, ``method``, ``level``, ``a_better`` (by the metric's
        direction). Pairs where an arm has no value are left out.
    """
    if pairing not in ("auto", "paired"):
        raise ValueError(f"unknown pairing {pairing!r}; use auto or paired")
    rows = []
    arm = table[arm_column].astype(str) if arm_column in table.columns else pd.Series(dtype=str)
    for m in metrics:
        if m not in table.columns:
            continue
        direction = METRICS[m].direction if m in METRICS else ""
        for a, b in pairs:
            rows_a, rows_b = table[arm == a], table[arm == b]
            if pairing == "paired":
                ua, ub = unit_values(rows_a, keys, m), unit_values(rows_b, keys, m)
                common = ua.index.intersection(ub.index)
                va, vb, paired = ua.loc[common].to_numpy(), ub.loc[common].to_numpy(), True
            else:
                va, vb, paired = align_units(rows_a, rows_b, keys, m)
            est = gap_estimate(va, vb, n_boot, level, keyed_rng(seed, unit, m, a, b), method=method, paired=paired)
            if est["n_a"] == 0 or est["n_b"] == 0:
                continue
            diff = est["gap"]
            rows.append(
                {
                    "metric": m,
                    "direction": direction,
                    "arm_a": a,
                    "arm_b": b,
                    "unit": unit,
                    "pairing": "paired" if paired else "unpaired",
                    "n_a": est["n_a"],
                    "n_b": est["n_b"],
                    "mean_a": est["mean_a"],
                    "mean_b": est["mean_b"],
                    "difference": diff,
                    "ci_low": est["ci_low"],
                    "ci_high": est["ci_high"],
                    "se": est["se"],
                    "df": est["df"],
                    "p_value": est["p_value"],
                    "method": est["method"],
                    "level": level,
                    "a_better": bool(diff < 0) if direction == "minimize" else bool(diff > 0),
                }
            )
    return pd.DataFrame(rows, columns=list(COMPARISON_COLUMNS))
