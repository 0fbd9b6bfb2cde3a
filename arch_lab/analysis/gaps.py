"""Gaps between two arms and their intervals: the library's one home for bootstrap intervals.

An *arm* here is any group of runs (a backbone, a configuration, a variant); its values are one metric over seeds.
This module gives

- percentile-bootstrap intervals of a mean (:func:`bootstrap_ci`) and of a difference of means, resampling each
  arm on its own (:func:`bootstrap_difference_ci`);
- the unpaired gap ``mean(a) - mean(b)`` with its interval (:func:`gap_estimate`) and, with the metric's direction
  and the task's floor and ceiling, everything one row of a gap table needs (:func:`metric_gap`);
- scores and gaps normalised against a floor and a ceiling (:func:`normalised_score`, :func:`normalised_gap`), so
  they read the same way for every metric and task: 0 at the floor, 1 at the ceiling, higher is better.

Nothing here knows arm, backbone or study names. :mod:`~arch_lab.analysis.stats` builds its per-group and paired
summaries on these functions; study-specific comparisons (for example the probe studies in the repository's
``analysis/probes/``) choose which arms to compare and call :func:`metric_gap`.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd


def keyed_rng(seed: int, *key: object) -> np.random.Generator:
    """A generator of its own for each ``key`` under one ``seed``, so every row of a table has a stable stream.

    The stream depends only on ``seed`` and the text of ``key``, not on the order rows are computed in.
    """
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(map(str, key)).encode())])


def finite_values(values: Iterable[Any]) -> np.ndarray:
    """``values`` as a float array without its non-finite entries; text that is not a number counts as missing."""
    if isinstance(values, np.ndarray | pd.Series) and values.dtype.kind in "biuf":
        v = np.asarray(values, dtype=np.float64)
    else:
        v = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    return v[np.isfinite(v)]


def reference_value(frames: Sequence[pd.DataFrame], column: str) -> float:
    """Mean of the finite values of ``column`` over ``frames`` (e.g. a task's floor over the runs of two arms).

    Frames without the column are skipped; NaN when no finite value is left.
    """
    vals = [pd.to_numeric(f[column], errors="coerce") for f in frames if column in f.columns]
    v = finite_values(pd.concat(vals)) if vals else np.zeros(0)
    return float(v.mean()) if v.size else math.nan


def _generator(rng: np.random.Generator | int) -> np.random.Generator:
    return np.random.default_rng(rng) if not isinstance(rng, np.random.Generator) else rng


def bootstrap_ci(
    values: Iterable[float], n_boot: int = 2000, level: float = 0.95, rng: np.random.Generator | int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of the mean of ``values`` (non-finite values ignored).

    Parameters
    ----------
    values
        The sample, e.g. one metric over seeds.
    n_boot
        Bootstrap resamples.
    level
        Coverage of the interval.
    rng
        Generator or seed.

    Returns
    -------
    tuple of float
        ``(low, high)``; both equal the value for a single value, NaN for none.
    """
    v = finite_values(values)
    if v.size == 0:
        return (np.nan, np.nan)
    if v.size == 1:
        return (float(v[0]), float(v[0]))
    rng = _generator(rng)
    means = v[rng.integers(0, v.size, size=(n_boot, v.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(means, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def bootstrap_difference_ci(
    a: Iterable[float], b: Iterable[float], n_boot: int = 2000, level: float = 0.95, rng: np.random.Generator | int = 0
) -> tuple[float, float]:
    """Percentile-bootstrap interval of ``mean(a) - mean(b)``, resampling ``a`` and ``b`` independently.

    Parameters
    ----------
    a, b
        The two samples (non-finite values ignored).
    n_boot
        Bootstrap resamples.
    level
        Coverage of the interval.
    rng
        Generator or seed.

    Returns
    -------
    tuple of float
        ``(low, high)``; NaN when either sample is empty.
    """
    va, vb = finite_values(a), finite_values(b)
    if va.size == 0 or vb.size == 0:
        return (np.nan, np.nan)
    rng = _generator(rng)
    ma = va[rng.integers(0, va.size, size=(n_boot, va.size))].mean(axis=1)
    mb = vb[rng.integers(0, vb.size, size=(n_boot, vb.size))].mean(axis=1)
    alpha = (1.0 - level) / 2.0
    lo, hi = np.quantile(ma - mb, [alpha, 1.0 - alpha])
    return (float(lo), float(hi))


def gap_estimate(
    a: Iterable[float], b: Iterable[float], n_boot: int = 2000, level: float = 0.95, rng: np.random.Generator | int = 0
) -> dict[str, Any]:
    """``mean(a) - mean(b)`` with an unpaired percentile-bootstrap interval (non-finite values dropped).

    Parameters
    ----------
    a, b
        One metric over the seeds of each arm.
    n_boot, level, rng
        As for :func:`bootstrap_difference_ci`.

    Returns
    -------
    dict
        ``n_a``, ``n_b``, ``mean_a``, ``mean_b``, ``gap``, ``ci_low``, ``ci_high``; the interval is NaN when either
        side has fewer than 2 values (the gap is still given when both have one), everything NaN when a side is
        empty.
    """
    va, vb = finite_values(a), finite_values(b)
    out: dict[str, Any] = {"n_a": int(va.size), "n_b": int(vb.size)}
    out["mean_a"] = float(va.mean()) if va.size else math.nan
    out["mean_b"] = float(vb.mean()) if vb.size else math.nan
    out["gap"] = out["mean_a"] - out["mean_b"]
    if va.size >= 2 and vb.size >= 2:
        out["ci_low"], out["ci_high"] = bootstrap_difference_ci(va, vb, n_boot, level, rng)
    else:
        out["ci_low"] = out["ci_high"] = math.nan
    return out


def normalised_score(value: Any, floor: Any, ceiling: Any) -> Any:
    """``(floor - value) / (floor - ceiling)``: 0 at the floor (``no_change``), 1 at the ceiling (split half).

    The same formula serves metrics to minimise and to maximise; higher is better either way. NaN where the
    ceiling equals the floor. Scalars give a float, arrays an array.
    """
    f = np.asarray(floor, dtype=np.float64)
    c = np.asarray(ceiling, dtype=np.float64)
    v = np.asarray(value, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        out = np.where(f != c, (f - v) / (f - c), np.nan)
    return float(out) if out.ndim == 0 else out


def has_range(floor: float, ceiling: float, direction: str) -> bool:
    """Whether ``floor`` to ``ceiling`` is a usable range: both finite, apart, and the ceiling on the better side
    (below the floor for a metric to ``minimize``, above it for one to ``maximize``).
    """
    span = ceiling - floor
    return bool(np.isfinite(span) and span != 0 and ((span < 0) == (direction == "minimize")))


def normalised_gap(
    gap: float, ci_low: float, ci_high: float, floor: float, ceiling: float, direction: str
) -> tuple[float, float, float]:
    """A gap and its interval in units of the floor-to-ceiling range: ``gap / (ceiling - floor)``.

    This is the difference of the two arms' :func:`normalised_score` values, so it is positive when the first arm
    is better, whatever the metric's direction, and 1 is the whole range.

    Returns
    -------
    tuple of float
        ``(norm_gap, norm_ci_low, norm_ci_high)``, the interval ordered low to high; all NaN without a usable range
        (:func:`has_range`).
    """
    if not has_range(floor, ceiling, direction):
        return (math.nan, math.nan, math.nan)
    span = ceiling - floor
    norm = [v / span for v in (gap, ci_low, ci_high)]
    return (norm[0], min(norm[1], norm[2]), max(norm[1], norm[2]))


def metric_gap(
    a: Iterable[float],
    b: Iterable[float],
    direction: str,
    *,
    floor: float = math.nan,
    ceiling: float = math.nan,
    n_boot: int = 2000,
    level: float = 0.95,
    rng: np.random.Generator | int = 0,
    flag_missing_range: bool = True,
) -> dict[str, Any]:
    """One gap-table row: :func:`gap_estimate` of ``a`` minus ``b``, which arm is better, and the normalised gap.

    Parameters
    ----------
    a, b
        One metric over the seeds of each arm.
    direction
        ``minimize`` or ``maximize``: the metric's better side.
    floor, ceiling
        The task's floor and ceiling of the metric (NaN: no normalised gap).
    n_boot, level, rng
        As for :func:`bootstrap_difference_ci`.
    flag_missing_range
        Flag a row whose floor and ceiling give no usable range (:func:`has_range`).

    Returns
    -------
    dict
        The keys of :func:`gap_estimate`, then ``level``, ``excludes_zero`` (the interval lies on one side of 0),
        ``a_better`` (by ``direction``), ``floor``, ``ceiling``, ``norm_gap``, ``norm_ci_low``, ``norm_ci_high``
        (:func:`normalised_gap`) and ``flag``: ``n<2: no interval`` or ``CI excludes 0``, then
        ``no floor-ceiling range`` when asked for, joined by ``"; "``.
    """
    est = gap_estimate(a, b, n_boot, level, rng)
    lo, hi = est["ci_low"], est["ci_high"]
    norm_gap, norm_low, norm_high = normalised_gap(est["gap"], lo, hi, floor, ceiling, direction)
    flag = []
    if min(est["n_a"], est["n_b"]) < 2:
        flag.append("n<2: no interval")
    elif lo > 0 or hi < 0:
        flag.append("CI excludes 0")
    if flag_missing_range and not has_range(floor, ceiling, direction):
        flag.append("no floor-ceiling range")
    return {
        **est,
        "level": level,
        "excludes_zero": bool(lo > 0 or hi < 0),
        "a_better": bool(est["gap"] < 0) if direction == "minimize" else bool(est["gap"] > 0),
        "floor": floor,
        "ceiling": ceiling,
        "norm_gap": norm_gap,
        "norm_ci_low": norm_low,
        "norm_ci_high": norm_high,
        "flag": "; ".join(flag),
    }
