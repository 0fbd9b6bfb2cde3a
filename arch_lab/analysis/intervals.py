"""Intervals of a mean and of a difference of means, with the matching p-values: the library's one home for them.

Comparisons in arch_lab rest on a handful of seeds (often 5) or conditions. At that size the percentile bootstrap
(:func:`bootstrap_ci`, :func:`bootstrap_difference_ci`) is too narrow: it uses the plug-in standard deviation and
normal-like quantiles, and holds a 95% target only about 84% of the time at n = 5 (``tests/analysis/test_gaps.py``
simulates this). The library therefore uses

- :func:`t_interval`: the Student t interval of a mean with the one-sample t test of ``mean = 0``; applied to
  paired differences (one value per matched seed or condition) it is the paired t interval and test;
- :func:`welch_interval`: Welch's interval of ``mean(a) - mean(b)`` for unpaired samples (Welch-Satterthwaite
  degrees of freedom) with Welch's t test;

and offers

- :func:`bca_interval`, :func:`bca_difference_interval`: bias-corrected and accelerated bootstrap intervals
  (``scipy.stats.bootstrap``) for larger samples (many conditions); at n = 5 they under-cover like the percentile
  bootstrap and give no p-value, so nothing uses them by default;
- :func:`bootstrap_ci`, :func:`bootstrap_difference_ci`: the plain percentile bootstrap, kept to reproduce
  earlier results;
- :func:`t_bounds`: the t interval of an estimate at another level (multiplicity-adjusted levels);
- :func:`mean_interval`, :func:`difference_interval`: any of the above by name (:data:`METHODS`).

Non-finite values are dropped first (:func:`finite_values`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats as sps

#: Interval methods by name: ``t`` (Student / paired t, Welch when unpaired), ``bca`` (BCa bootstrap) and
#: ``percentile`` (the plain percentile bootstrap, kept for comparison with earlier results).
METHODS: tuple[str, ...] = ("t", "bca", "percentile")


@dataclass(frozen=True)
class Interval:
    """An estimate with its interval.

    Attributes
    ----------
    estimate
        The mean, or the difference of means.
    low, high
        The interval (NaN when it cannot be computed, e.g. fewer than 2 values).
    level
        Its nominal coverage.
    method
        ``t``, ``paired t``, ``welch``, ``bca`` or ``percentile``.
    se
        Standard error of the estimate (NaN for the bootstrap methods).
    df
        Degrees of freedom of the t reference distribution (NaN for the bootstrap methods).
    p_value
        Two-sided p-value of ``estimate = 0`` (NaN for the bootstrap methods).
    """

    estimate: float
    low: float
    high: float
    level: float
    method: str
    se: float = math.nan
    df: float = math.nan
    p_value: float = math.nan

    def as_dict(self) -> dict[str, Any]:
        """The fields as a plain mapping."""
        return asdict(self)


def finite_values(values: Iterable[Any]) -> np.ndarray:
    """``values`` as a float array without its non-finite entries; text that is not a number counts as missing."""
    if isinstance(values, np.ndarray | pd.Series) and values.dtype.kind in "biuf":
        v = np.asarray(values, dtype=np.float64)
    else:
        v = pd.to_numeric(pd.Series(list(values), dtype=object), errors="coerce").to_numpy(dtype=np.float64)
    return v[np.isfinite(v)]


def _check_level(level: float) -> None:
    if not 0.0 < level < 1.0:
        raise ValueError(f"level must lie strictly between 0 and 1 (got {level})")


def t_bounds(estimate: float, se: float, df: float, level: float) -> tuple[float, float]:
    """``estimate ± t_{df}((1 + level) / 2) · se``: a t interval at ``level``.

    A zero ``se`` gives the point ``(estimate, estimate)``; a non-finite ``se`` or ``df`` gives NaNs.
    """
    _check_level(level)
    if not (np.isfinite(estimate) and np.isfinite(se) and np.isfinite(df) and df > 0):
        return (math.nan, math.nan)
    half = float(sps.t.ppf(0.5 + level / 2.0, df)) * se
    return (estimate - half, estimate + half)


def _t_p_value(estimate: float, se: float, df: float) -> float:
    if not (np.isfinite(estimate) and np.isfinite(se) and np.isfinite(df) and df > 0):
        return math.nan
    if se == 0.0:  # no spread: the estimate is exact
        return 1.0 if estimate == 0.0 else 0.0
    return float(2.0 * sps.t.sf(abs(estimate / se), df))


def t_interval(values: Iterable[float], level: float = 0.95) -> Interval:
    """Student t interval of the mean of ``values`` and the two-sided one-sample t test of ``mean = 0``.

    Given paired differences (``a_i - b_i`` over matched units) this is the paired t interval and test.

    Parameters
    ----------
    values
        The sample (non-finite values dropped).
    level
        Coverage of the interval.

    Returns
    -------
    Interval
        ``method="t"``; ``df = n - 1``. With fewer than 2 values the interval, ``se`` and ``p_value`` are NaN
        (the estimate is still the single value); identical values give a point interval and p = 0 (or 1 when
        they are all 0).
    """
    _check_level(level)
    v = finite_values(values)
    mean = float(v.mean()) if v.size else math.nan
    if v.size < 2:
        return Interval(mean, math.nan, math.nan, level, "t")
    se = 0.0 if np.ptp(v) == 0 else float(v.std(ddof=1) / math.sqrt(v.size))
    df = float(v.size - 1)
    low, high = t_bounds(mean, se, df, level)
    return Interval(mean, low, high, level, "t", se, df, _t_p_value(mean, se, df))


def welch_interval(a: Iterable[float], b: Iterable[float], level: float = 0.95) -> Interval:
    """Welch's interval of ``mean(a) - mean(b)`` for two independent samples, and Welch's two-sided t test.

    The standard error is ``sqrt(s_a² / n_a + s_b² / n_b)`` and the degrees of freedom the Welch-Satterthwaite
    approximation, so the arms may have different spreads and sizes.

    Returns
    -------
    Interval
        ``method="welch"``. NaN interval (and p-value) unless both samples have at least 2 values; two samples
        without spread give a point interval.
    """
    _check_level(level)
    va, vb = finite_values(a), finite_values(b)
    diff = float(va.mean() - vb.mean()) if va.size and vb.size else math.nan
    if va.size < 2 or vb.size < 2:
        return Interval(diff, math.nan, math.nan, level, "welch")
    qa = 0.0 if np.ptp(va) == 0 else float(va.var(ddof=1)) / va.size
    qb = 0.0 if np.ptp(vb) == 0 else float(vb.var(ddof=1)) / vb.size
    se = math.sqrt(qa + qb)
    if se == 0.0:
        df = float(va.size + vb.size - 2)
    else:
        df = (qa + qb) ** 2 / (qa**2 / (va.size - 1) + qb**2 / (vb.size - 1))
    low, high = t_bounds(diff, se, df, level)
    return Interval(diff, low, high, level, "welch", se, df, _t_p_value(diff, se, df))


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


def _mean_difference(x: np.ndarray, y: np.ndarray, axis: int = -1) -> np.ndarray:
    return np.mean(x, axis=axis) - np.mean(y, axis=axis)


def bca_interval(
    values: Iterable[float], level: float = 0.95, n_boot: int = 2000, rng: np.random.Generator | int = 0
) -> Interval:
    """Bias-corrected and accelerated (BCa) bootstrap interval of the mean (``scipy.stats.bootstrap``).

    Meant for samples of a few dozen values or more; at n = 5 it under-covers (see the module docstring).

    Returns
    -------
    Interval
        ``method="bca"``, no ``se``, ``df`` or p-value. NaN interval with fewer than 2 values; identical values
        give the point interval.
    """
    _check_level(level)
    v = finite_values(values)
    mean = float(v.mean()) if v.size else math.nan
    if v.size < 2:
        return Interval(mean, math.nan, math.nan, level, "bca")
    if np.ptp(v) == 0:
        return Interval(mean, mean, mean, level, "bca")
    res = sps.bootstrap(
        (v,), np.mean, confidence_level=level, n_resamples=n_boot, method="BCa", random_state=_generator(rng)
    )
    ci = res.confidence_interval
    return Interval(mean, float(ci.low), float(ci.high), level, "bca")


def bca_difference_interval(
    a: Iterable[float],
    b: Iterable[float],
    level: float = 0.95,
    n_boot: int = 2000,
    rng: np.random.Generator | int = 0,
) -> Interval:
    """BCa bootstrap interval of ``mean(a) - mean(b)``, resampling the two independent samples separately
    (``scipy.stats.bootstrap`` with two samples). For paired samples, pass the differences to
    :func:`bca_interval` instead.

    Returns
    -------
    Interval
        ``method="bca"``; NaN interval unless both samples have at least 2 values.
    """
    _check_level(level)
    va, vb = finite_values(a), finite_values(b)
    diff = float(va.mean() - vb.mean()) if va.size and vb.size else math.nan
    if va.size < 2 or vb.size < 2:
        return Interval(diff, math.nan, math.nan, level, "bca")
    if np.ptp(va) == 0 and np.ptp(vb) == 0:
        return Interval(diff, diff, diff, level, "bca")
    res = sps.bootstrap(
        (va, vb),
        _mean_difference,
        confidence_level=level,
        n_resamples=n_boot,
        method="BCa",
        random_state=_generator(rng),
    )
    ci = res.confidence_interval
    return Interval(diff, float(ci.low), float(ci.high), level, "bca")


def mean_interval(
    values: Iterable[float],
    method: str = "t",
    level: float = 0.95,
    n_boot: int = 2000,
    rng: np.random.Generator | int = 0,
) -> Interval:
    """The interval of a mean by ``method`` (:data:`METHODS`): :func:`t_interval`, :func:`bca_interval` or the
    percentile bootstrap (:func:`bootstrap_ci`, whose single-value interval is that value).

    Raises
    ------
    ValueError
        An unknown method.
    """
    if method == "t":
        return t_interval(values, level)
    if method == "bca":
        return bca_interval(values, level, n_boot, rng)
    if method == "percentile":
        v = finite_values(values)
        low, high = bootstrap_ci(v, n_boot, level, rng)
        return Interval(float(v.mean()) if v.size else math.nan, low, high, level, "percentile")
    raise ValueError(f"unknown interval method {method!r}; choose one of {', '.join(METHODS)}")


def difference_interval(
    a: Iterable[float],
    b: Iterable[float],
    method: str = "t",
    paired: bool = False,
    level: float = 0.95,
    n_boot: int = 2000,
    rng: np.random.Generator | int = 0,
) -> Interval:
    """The interval of ``mean(a) - mean(b)`` by ``method`` (:data:`METHODS`).

    Parameters
    ----------
    a, b
        The two samples; when ``paired``, matched element by element (same length, a pair is dropped when either
        of its values is not finite) and the interval is that of the mean of ``a - b``.
    method
        ``t`` (paired t when ``paired``, else Welch), ``bca`` or ``percentile``.
    paired
        Whether ``a[i]`` and ``b[i]`` are measured on the same unit (seed, condition).
    level, n_boot, rng
        Coverage, bootstrap resamples and generator (bootstrap methods only).

    Returns
    -------
    Interval
        A paired t interval reports ``method="paired t"``.

    Raises
    ------
    ValueError
        An unknown method, or paired samples of different lengths.
    """
    if method not in METHODS:
        raise ValueError(f"unknown interval method {method!r}; choose one of {', '.join(METHODS)}")
    if paired:
        xa = pd.to_numeric(pd.Series(list(a), dtype=object), errors="coerce").to_numpy(dtype=np.float64)
        xb = pd.to_numeric(pd.Series(list(b), dtype=object), errors="coerce").to_numpy(dtype=np.float64)
        if xa.size != xb.size:
            raise ValueError(f"paired samples need the same length (got {xa.size} and {xb.size})")
        est = mean_interval(xa - xb, method, level, n_boot, rng)
        return Interval(**{**est.as_dict(), "method": "paired t"}) if method == "t" else est
    if method == "t":
        return welch_interval(a, b, level)
    if method == "bca":
        return bca_difference_interval(a, b, level, n_boot, rng)
    va, vb = finite_values(a), finite_values(b)
    low, high = bootstrap_difference_ci(va, vb, n_boot, level, rng)
    diff = float(va.mean() - vb.mean()) if va.size and vb.size else math.nan
    return Interval(diff, low, high, level, "percentile")
