"""Multiple comparisons: p-values adjusted across a family of comparisons, and the matching interval levels.

A study compares many pairs of arms on several metrics; at an uncorrected 5% some of those comparisons come out
"significant" by chance alone. This module adjusts the p-values of one family of comparisons:

- :func:`holm`: Holm's step-down adjustment, which controls the family-wise error rate (the chance of even one
  false claim) at the nominal level under any dependence between the comparisons;
- :func:`benjamini_hochberg`: the Benjamini-Hochberg adjustment (``scipy.stats.false_discovery_control``), which
  controls the false discovery rate (the expected share of false claims among those made), for independent or
  positively dependent comparisons;
- :func:`bonferroni_level`: the level of simultaneous intervals (all cover together with probability at least
  ``level``);
- :func:`holm_levels`: per-comparison interval levels that agree with Holm's decisions: a t interval at its level
  excludes 0 exactly when Holm rejects (the first rejected comparison gets ``1 - alpha / m``, the next
  ``1 - alpha / (m - 1)``, ...; those not rejected all get the level of the first one not rejected). Only the
  Bonferroni level carries a joint-coverage guarantee; these levels are for showing Holm's decisions as intervals;
- :func:`adjust_family`: all of it added as columns to a table of comparisons, per family.

P-values that are NaN (a comparison without an interval) are left out of the family and stay NaN.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd
from scipy import stats as sps

from arch_lab.analysis.intervals import t_bounds

#: Adjustment methods of :func:`adjust`.
ADJUSTMENTS: tuple[str, ...] = ("holm", "bh", "bonferroni", "none")


def _p_array(p_values: Iterable[float]) -> np.ndarray:
    p = np.asarray(list(p_values), dtype=np.float64)
    bad = np.isfinite(p) & ((p < 0) | (p > 1))
    if bad.any():
        raise ValueError(f"p-values must lie in [0, 1] (got {p[bad][0]})")
    return p


def holm(p_values: Iterable[float]) -> np.ndarray:
    """Holm's step-down adjusted p-values (family-wise error rate), in the input order.

    With the ``m`` finite p-values sorted, ``p_(1) <= ... <= p_(m)``, the adjusted value of rank ``i`` is
    ``max_{j <= i} min(1, (m - j + 1) p_(j))``; a comparison is rejected at ``alpha`` when its adjusted p-value is
    below ``alpha``. NaN entries stay NaN and do not count towards ``m``.
    """
    p = _p_array(p_values)
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    scaled = np.minimum(1.0, (m - np.arange(m)) * p[order])
    out[order] = np.maximum.accumulate(scaled)
    return out


def benjamini_hochberg(p_values: Iterable[float]) -> np.ndarray:
    """Benjamini-Hochberg adjusted p-values (false discovery rate), in the input order
    (``scipy.stats.false_discovery_control``). NaN entries stay NaN and do not count towards ``m``.
    """
    p = _p_array(p_values)
    out = np.full(p.shape, np.nan)
    ok = np.isfinite(p)
    if ok.any():
        out[ok] = sps.false_discovery_control(p[ok], method="bh")
    return out


def adjust(p_values: Iterable[float], method: str = "holm") -> np.ndarray:
    """Adjusted p-values by ``method``: ``holm``, ``bh`` (Benjamini-Hochberg), ``bonferroni`` or ``none``.

    Raises
    ------
    ValueError
        An unknown method.
    """
    p = _p_array(p_values)
    if method == "holm":
        return holm(p)
    if method == "bh":
        return benjamini_hochberg(p)
    if method == "bonferroni":
        return np.minimum(1.0, p * np.isfinite(p).sum())
    if method == "none":
        return p
    raise ValueError(f"unknown adjustment {method!r}; choose one of {', '.join(ADJUSTMENTS)}")


def bonferroni_level(m: int, level: float = 0.95) -> float:
    """The level of each of ``m`` simultaneous intervals: ``1 - (1 - level) / m`` (``level`` when ``m <= 1``)."""
    return 1.0 - (1.0 - level) / max(int(m), 1)


def holm_levels(p_values: Iterable[float], level: float = 0.95) -> np.ndarray:
    """Per-comparison interval levels that agree with Holm's decisions at ``alpha = 1 - level``.

    Sorting the ``m`` finite p-values, Holm rejects the first ``r`` (each ``p_(i) < alpha / (m - i + 1)``, up to
    the first that is not). Rejected rank ``i`` gets ``1 - alpha / (m - i + 1)``, the level at which Holm tested
    it; every comparison not rejected gets ``1 - alpha / (m - r)``. A t interval (whose p-value is the one given)
    at these levels excludes 0 exactly for the comparisons Holm rejects. NaN p-values give NaN levels.
    """
    p = _p_array(p_values)
    alpha = 1.0 - level
    out = np.full(p.shape, np.nan)
    ok = np.flatnonzero(np.isfinite(p))
    m = ok.size
    if m == 0:
        return out
    order = ok[np.argsort(p[ok], kind="stable")]
    thresholds = alpha / (m - np.arange(m))
    passed = p[order] < thresholds
    r = m if passed.all() else int(np.argmin(passed))
    levels = np.empty(m)
    levels[:r] = 1.0 - thresholds[:r]
    levels[r:] = 1.0 - alpha / (m - r) if r < m else math.nan
    out[order] = levels
    return out


def adjust_family(
    table: pd.DataFrame,
    *,
    p_column: str = "p_value",
    family: str | Sequence[str] | None = None,
    level: float = 0.95,
    estimate: str | None = None,
) -> pd.DataFrame:
    """``table`` with its p-values adjusted within each family of comparisons.

    Parameters
    ----------
    table
        One row per comparison, with a ``p_column``.
    p_column
        Column of two-sided p-values (NaN: no test; left out of its family).
    family
        Column(s) whose values define the families (default: the whole table is one family).
    level
        ``1 - alpha``.
    estimate
        Column of the estimate; with ``se`` and ``df`` columns present, the Holm-consistent interval
        (:func:`holm_levels`) is added as ``ci_low_holm`` and ``ci_high_holm``.

    Returns
    -------
    pandas.DataFrame
        A copy with ``family_size`` (tests in the row's family), ``p_holm``, ``p_bh``, ``significant_holm``
        (``p_holm < alpha``), ``significant_bh`` (``p_bh < alpha``), ``level_holm`` and, when asked for,
        ``ci_low_holm``, ``ci_high_holm``.
    """
    out = table.copy()
    alpha = 1.0 - level
    cols = ["family_size", "p_holm", "p_bh", "level_holm"]
    for c in cols:
        out[c] = np.nan
    if out.empty:
        out["significant_holm"] = pd.Series(dtype=bool)
        out["significant_bh"] = pd.Series(dtype=bool)
        return out
    groups = [out.index] if family is None else [g.index for _, g in out.groupby(family, sort=False, dropna=False)]
    for idx in groups:
        p = pd.to_numeric(out.loc[idx, p_column], errors="coerce").to_numpy(dtype=np.float64)
        out.loc[idx, "family_size"] = int(np.isfinite(p).sum())
        out.loc[idx, "p_holm"] = holm(p)
        out.loc[idx, "p_bh"] = benjamini_hochberg(p)
        out.loc[idx, "level_holm"] = holm_levels(p, level)
    out["family_size"] = out["family_size"].astype(int)
    out["significant_holm"] = (out["p_holm"] < alpha).to_numpy(dtype=bool)
    out["significant_bh"] = (out["p_bh"] < alpha).to_numpy(dtype=bool)
    if estimate is not None and {"se", "df"} <= set(out.columns):
        bounds = [
            t_bounds(e, s, d, lv) if np.isfinite(lv) else (math.nan, math.nan)
            for e, s, d, lv in zip(out[estimate], out["se"], out["df"], out["level_holm"], strict=True)
        ]
        out["ci_low_holm"] = [b[0] for b in bounds]
        out["ci_high_holm"] = [b[1] for b in bounds]
    return out
