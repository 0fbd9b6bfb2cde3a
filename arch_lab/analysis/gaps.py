"""Gaps between two arms: the gap with its interval and p-value, and gaps normalised against a floor and a ceiling.

An *arm* here is any group of runs (a backbone, a configuration, a variant); its values are one metric over seeds.
This module gives

- the gap ``mean(a) - mean(b)`` with its interval and p-value (:func:`gap_estimate`): paired over matched seeds
  (a paired t interval) when the two arms were run on the same seeds, else Welch's unpaired interval; the
  percentile and BCa bootstraps on request (the intervals themselves live in
  :mod:`~arch_lab.analysis.intervals`);
- with the metric's direction and the task's floor and ceiling, everything one row of a gap table needs
  (:func:`metric_gap`);
- scores and gaps normalised against a floor and a ceiling (:func:`normalised_score`, :func:`normalised_gap`), so
  they read the same way for every metric and task: 0 at the floor, 1 at the ceiling, higher is better; and the
  check that the floor-to-ceiling range stands out of its own noise (:func:`range_noise`) before a gap is
  divided by it;
- where one arm stands against the floor and the ceiling its own runs measured (:func:`reference_standing`).

Nothing here knows arm, backbone or study names. :mod:`~arch_lab.analysis.stats` builds its per-group and paired
summaries on these functions; study-specific comparisons (for example the probe studies in the repository's
``analysis/probes/``) choose which arms to compare and call :func:`metric_gap`, then adjust the p-values of the
whole family of comparisons (:mod:`~arch_lab.analysis.multiplicity`).
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Iterable, Sequence
from typing import Any

import numpy as np
import pandas as pd

from arch_lab.analysis.intervals import (
    bootstrap_ci,
    bootstrap_difference_ci,
    difference_interval,
    finite_values,
    t_interval,
)

__all__ = [
    "bootstrap_ci",
    "bootstrap_difference_ci",
    "finite_values",
    "gap_estimate",
    "has_range",
    "keyed_rng",
    "metric_gap",
    "normalised_gap",
    "normalised_score",
    "range_noise",
    "reference_standing",
    "reference_value",
]


def keyed_rng(seed: int, *key: object) -> np.random.Generator:
    """A generator of its own for each ``key`` under one ``seed``, so every row of a table has a stable stream.

    The stream depends only on ``seed`` and the text of ``key``, not on the order rows are computed in.
    """
    return np.random.default_rng([seed, zlib.crc32("\x1f".join(map(str, key)).encode())])


def reference_value(frames: Sequence[pd.DataFrame], column: str) -> float:
    """Mean of the finite values of ``column`` over ``frames`` (e.g. a task's floor over the runs of two arms).

    Frames without the column are skipped; NaN when no finite value is left.
    """
    vals = [pd.to_numeric(f[column], errors="coerce") for f in frames if column in f.columns]
    v = finite_values(pd.concat(vals)) if vals else np.zeros(0)
    return float(v.mean()) if v.size else math.nan


def _numbers(values: Iterable[Any]) -> np.ndarray:
    return pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=np.float64)


def gap_estimate(
    a: Iterable[float],
    b: Iterable[float],
    n_boot: int = 2000,
    level: float = 0.95,
    rng: np.random.Generator | int = 0,
    *,
    method: str = "t",
    paired: bool = False,
) -> dict[str, Any]:
    """``mean(a) - mean(b)`` with its interval and two-sided p-value (non-finite values dropped).

    Parameters
    ----------
    a, b
        One metric over the seeds of each arm. When ``paired``, ``a[i]`` and ``b[i]`` come from the same seed
        (or other matched unit); a pair with a non-finite value is dropped as a whole.
    n_boot, level, rng
        Bootstrap resamples (bootstrap methods only), coverage, and generator or seed.
    method
        ``t`` (default: the paired t interval when ``paired``, else Welch's), ``bca`` or ``percentile``
        (:data:`arch_lab.analysis.intervals.METHODS`).
    paired
        Whether the two samples are matched element by element.

    Returns
    -------
    dict
        ``n_a``, ``n_b`` (values used; the number of pairs when paired), ``mean_a``, ``mean_b``, ``gap``,
        ``ci_low``, ``ci_high``, ``se``, ``df``, ``p_value`` (NaN for the bootstrap methods), ``method``
        (``paired t``, ``welch``, ``bca`` or ``percentile``) and ``paired``. The interval and p-value are NaN when
        either side has fewer than 2 values (the gap is still given when both have one), everything NaN when a
        side is empty.
    """
    if paired:
        xa, xb = _numbers(a), _numbers(b)
        if xa.size != xb.size:
            raise ValueError(f"paired samples need the same length (got {xa.size} and {xb.size})")
        keep = np.isfinite(xa) & np.isfinite(xb)
        va, vb = xa[keep], xb[keep]
    else:
        va, vb = finite_values(a), finite_values(b)
    out: dict[str, Any] = {"n_a": int(va.size), "n_b": int(vb.size)}
    out["mean_a"] = float(va.mean()) if va.size else math.nan
    out["mean_b"] = float(vb.mean()) if vb.size else math.nan
    out["gap"] = out["mean_a"] - out["mean_b"]
    est = difference_interval(va, vb, method, paired, level, n_boot, rng)
    if va.size >= 2 and vb.size >= 2:
        out["ci_low"], out["ci_high"] = est.low, est.high
        out["se"], out["df"], out["p_value"] = est.se, est.df, est.p_value
    else:
        out["ci_low"] = out["ci_high"] = out["se"] = out["df"] = out["p_value"] = math.nan
    out["method"] = est.method
    out["paired"] = bool(paired)
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


def range_noise(floors: Iterable[float], ceilings: Iterable[float], level: float = 0.95) -> dict[str, Any]:
    """Whether the floor-to-ceiling range stands out of its own run-to-run noise.

    Parameters
    ----------
    floors, ceilings
        The floor and the ceiling of one metric as each run measured them, matched run by run (same length; a run
        with a non-finite value is dropped).
    level
        Coverage of the range's interval.

    Returns
    -------
    dict
        ``span`` (mean of ``ceiling - floor`` over runs), ``span_ci_low``, ``span_ci_high`` (its t interval over
        runs) and ``range_within_noise``: True when that interval includes 0, i.e. ``|span| < t · se``. Fewer than
        two runs give no interval, and the check is not made (False).
    """
    f, c = _numbers(floors), _numbers(ceilings)
    if f.size != c.size:
        raise ValueError(f"floors and ceilings need one value per run (got {f.size} and {c.size})")
    spans = (c - f)[np.isfinite(c) & np.isfinite(f)]
    est = t_interval(spans, level)
    noisy = bool(np.isfinite(est.low) and est.low <= 0.0 <= est.high)
    return {"span": est.estimate, "span_ci_low": est.low, "span_ci_high": est.high, "range_within_noise": noisy}


def metric_gap(
    a: Iterable[float],
    b: Iterable[float],
    direction: str,
    *,
    floor: float = math.nan,
    ceiling: float = math.nan,
    floors: Iterable[float] | None = None,
    ceilings: Iterable[float] | None = None,
    n_boot: int = 2000,
    level: float = 0.95,
    rng: np.random.Generator | int = 0,
    method: str = "t",
    paired: bool = False,
    flag_missing_range: bool = True,
) -> dict[str, Any]:
    """One gap-table row: :func:`gap_estimate` of ``a`` minus ``b``, which arm is better, and the normalised gap.

    Parameters
    ----------
    a, b
        One metric over the seeds of each arm (matched seed by seed when ``paired``).
    direction
        ``minimize`` or ``maximize``: the metric's better side.
    floor, ceiling
        The task's floor and ceiling of the metric (NaN: no normalised gap).
    floors, ceilings
        The floor and ceiling as each run measured them (matched run by run). When given, the normalised gap is
        left out if the range is within noise (:func:`range_noise`).
    n_boot, level, rng, method, paired
        As for :func:`gap_estimate`.
    flag_missing_range
        Flag a row whose floor and ceiling give no usable range (:func:`has_range`).

    Returns
    -------
    dict
        The keys of :func:`gap_estimate`, then ``level``, ``excludes_zero`` (the interval lies on one side of 0),
        ``a_better`` (by ``direction``), ``floor``, ``ceiling``, ``span_ci_low``, ``span_ci_high``,
        ``range_within_noise`` (:func:`range_noise`; NaN / False without ``floors``), ``norm_gap``,
        ``norm_ci_low``, ``norm_ci_high`` (:func:`normalised_gap`, NaN when the range is within noise) and
        ``flag``: ``n<2: no interval`` or ``CI excludes 0``, then ``no floor-ceiling range`` when asked for, or
        ``range within noise``, joined by ``"; "``.
    """
    est = gap_estimate(a, b, n_boot, level, rng, method=method, paired=paired)
    lo, hi = est["ci_low"], est["ci_high"]
    noise = {"span_ci_low": math.nan, "span_ci_high": math.nan, "range_within_noise": False}
    if floors is not None and ceilings is not None:
        noise = {k: v for k, v in range_noise(floors, ceilings, level).items() if k != "span"}
    usable = has_range(floor, ceiling, direction)
    if usable and not noise["range_within_noise"]:
        norm_gap, norm_low, norm_high = normalised_gap(est["gap"], lo, hi, floor, ceiling, direction)
    else:
        norm_gap = norm_low = norm_high = math.nan
    flag = []
    if min(est["n_a"], est["n_b"]) < 2:
        flag.append("n<2: no interval")
    elif lo > 0 or hi < 0:
        flag.append("CI excludes 0")
    if flag_missing_range and not usable:
        flag.append("no floor-ceiling range")
    elif usable and noise["range_within_noise"]:
        flag.append("range within noise")
    return {
        **est,
        "level": level,
        "excludes_zero": bool(lo > 0 or hi < 0),
        "a_better": bool(est["gap"] < 0) if direction == "minimize" else bool(est["gap"] > 0),
        "floor": floor,
        "ceiling": ceiling,
        **noise,
        "norm_gap": norm_gap,
        "norm_ci_low": norm_low,
        "norm_ci_high": norm_high,
        "flag": "; ".join(flag),
    }


def _side(est: dict[str, Any], direction: str) -> str:
    """``better``, ``worse`` or ``within noise`` of a paired gap ``value - reference`` (``one run`` without an
    interval: then ``better``/``worse`` by the sign alone is given as ``better (one run)``).
    """
    gap, low, high = est["gap"], est["ci_low"], est["ci_high"]
    if not np.isfinite(gap):
        return "unknown"
    sign = -1.0 if direction == "minimize" else 1.0
    if not (np.isfinite(low) and np.isfinite(high)):
        return ("better" if sign * gap > 0 else "worse" if sign * gap < 0 else "equal") + " (one run)"
    if low <= 0.0 <= high:
        return "within noise"
    return "better" if sign * gap > 0 else "worse"


def reference_standing(
    values: Iterable[float],
    floors: Iterable[float],
    ceilings: Iterable[float],
    direction: str,
    level: float = 0.95,
) -> dict[str, Any]:
    """Where one arm stands against the floor and the ceiling that its own runs measured.

    Parameters
    ----------
    values, floors, ceilings
        One metric per run of the arm, and the floor (``no_change``) and ceiling (split half) each run measured on
        its own evaluation (same length; matched run by run).
    direction
        ``minimize`` or ``maximize``.
    level
        Coverage of the paired t intervals.

    Returns
    -------
    dict
        ``n`` (runs), ``mean``, ``floor``, ``ceiling`` (means over runs); ``vs_floor``, ``vs_floor_low``,
        ``vs_floor_high`` (mean of ``value - floor`` and its paired t interval over runs) and ``floor_verdict``
        (``better``, ``worse`` or ``within noise``; ``... (one run)`` without an interval); the same for the
        ceiling (``vs_ceiling``, ..., ``ceiling_verdict``); ``normalised`` (:func:`normalised_score` of the means:
        0 at the floor, 1 at the ceiling) and ``range_within_noise`` (:func:`range_noise`).
    """
    v, f, c = _numbers(values), _numbers(floors), _numbers(ceilings)
    if not v.size == f.size == c.size:
        raise ValueError(f"values, floors and ceilings need one value per run (got {v.size}, {f.size}, {c.size})")
    to_floor = gap_estimate(v, f, paired=True, level=level)
    to_ceiling = gap_estimate(v, c, paired=True, level=level)
    mean_v, mean_f, mean_c = to_floor["mean_a"], to_floor["mean_b"], to_ceiling["mean_b"]
    return {
        "n": to_floor["n_a"],
        "mean": mean_v,
        "floor": mean_f,
        "ceiling": mean_c,
        "vs_floor": to_floor["gap"],
        "vs_floor_low": to_floor["ci_low"],
        "vs_floor_high": to_floor["ci_high"],
        "floor_verdict": _side(to_floor, direction),
        "vs_ceiling": to_ceiling["gap"],
        "vs_ceiling_low": to_ceiling["ci_low"],
        "vs_ceiling_high": to_ceiling["ci_high"],
        "ceiling_verdict": _side(to_ceiling, direction),
        "normalised": normalised_score(mean_v, mean_f, mean_c) if has_range(mean_f, mean_c, direction) else math.nan,
        "range_within_noise": range_noise(f, c, level)["range_within_noise"],
    }
