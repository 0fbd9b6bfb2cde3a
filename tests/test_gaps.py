"""Gaps between two arms and their intervals (``arch_lab.analysis.gaps``): bootstrap intervals, the gap estimate,
scores and gaps normalised against a floor and a ceiling, and one gap-table row."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from arch_lab.analysis import stats
from arch_lab.analysis.gaps import (
    bootstrap_ci,
    bootstrap_difference_ci,
    finite_values,
    gap_estimate,
    has_range,
    keyed_rng,
    metric_gap,
    normalised_gap,
    normalised_score,
    reference_value,
)


# -------------------------------------------------------------------------------------------------- bootstrap
def test_gap_recovers_planted_difference() -> None:
    rng = np.random.default_rng(1)
    a, b = 1.0 + 0.1 * rng.standard_normal(40), 1.3 + 0.1 * rng.standard_normal(40)
    est = gap_estimate(a, b, n_boot=2000, rng=0)
    assert est["n_a"] == est["n_b"] == 40
    assert est["gap"] == pytest.approx(-0.3, abs=0.06)
    assert est["ci_low"] < est["gap"] < est["ci_high"] < 0  # excludes 0, on the right side
    assert est["ci_high"] - est["ci_low"] < 0.15
    same = gap_estimate(a, 1.0 + 0.1 * rng.standard_normal(40), rng=0)
    assert same["ci_low"] < 0 < same["ci_high"]


def test_gap_interval_coverage() -> None:
    """Over repeated experiments with a known gap, the 95% interval holds it about 95% of the time."""
    rng = np.random.default_rng(2)
    hits = 0
    reps = 300
    for i in range(reps):
        est = gap_estimate(0.5 + rng.standard_normal(25), rng.standard_normal(25), n_boot=400, rng=i)
        hits += est["ci_low"] <= 0.5 <= est["ci_high"]
    assert 0.89 <= hits / reps <= 0.99


def test_gap_skips_nan_and_gives_no_interval_below_two_seeds() -> None:
    est = gap_estimate([1.0, np.nan, 3.0], [np.nan, 0.5], rng=0)
    assert (est["n_a"], est["n_b"]) == (2, 1)
    assert est["gap"] == pytest.approx(1.5)
    assert math.isnan(est["ci_low"]) and math.isnan(est["ci_high"])
    empty = gap_estimate([1.0, 2.0], [np.nan], rng=0)
    assert empty["n_b"] == 0 and math.isnan(empty["gap"])


def test_gap_interval_is_the_difference_interval_and_stats_shares_it() -> None:
    """One owner: the gap's interval is :func:`bootstrap_difference_ci`, and ``stats`` uses the same functions."""
    a, b = [1.0, 1.2, 0.9, 1.1], [2.0, 2.3, 1.8]
    est = gap_estimate(a, b, n_boot=300, level=0.9, rng=5)
    assert (est["ci_low"], est["ci_high"]) == bootstrap_difference_ci(a, b, 300, 0.9, 5)
    assert stats.bootstrap_ci is bootstrap_ci and stats.bootstrap_difference_ci is bootstrap_difference_ci
    assert all(math.isnan(v) for v in bootstrap_difference_ci([1.0, 2.0], [np.nan]))


def test_keyed_rng_depends_on_seed_and_key_only() -> None:
    draw = keyed_rng(0, "a", 1.0, None).integers(0, 10**9, 4)
    assert (draw == keyed_rng(0, "a", 1.0, None).integers(0, 10**9, 4)).all()
    assert not (draw == keyed_rng(1, "a", 1.0, None).integers(0, 10**9, 4)).all()
    assert not (draw == keyed_rng(0, "a", 1.0, "x").integers(0, 10**9, 4)).all()


def test_finite_values_drops_missing_and_text() -> None:
    assert finite_values([1.0, np.nan, np.inf, 2.0]).tolist() == [1.0, 2.0]
    assert finite_values(pd.Series([3, None, "x", "4.5"], dtype=object)).tolist() == [3.0, 4.5]
    assert finite_values(np.array([1, 2], dtype=np.int64)).dtype == np.float64
    frames = [
        pd.DataFrame({"floor_x": [3.0, np.nan]}),
        pd.DataFrame({"other": [1.0]}),
        pd.DataFrame({"floor_x": [1.0]}),
    ]
    assert reference_value(frames, "floor_x") == pytest.approx(2.0)
    assert math.isnan(reference_value(frames, "ceiling_x"))


# ----------------------------------------------------------------------------------------------- normalising
def test_normalised_score_hand_computed() -> None:
    assert normalised_score(2.5, floor=3.0, ceiling=1.0) == pytest.approx(0.25)  # energy: lower is better
    assert normalised_score(0.5, floor=0.1, ceiling=0.9) == pytest.approx(0.5)  # cosine: higher is better
    assert normalised_score(3.0, 3.0, 1.0) == 0.0 and normalised_score(1.0, 3.0, 1.0) == 1.0
    assert math.isnan(normalised_score(1.0, 2.0, 2.0))
    # the normalised gap is the difference of the two arms' normalised scores (the table case is in test_why_unet.py)
    assert normalised_gap(-1.0, -1.2, -0.8, floor=3.0, ceiling=0.0, direction="minimize")[0] == pytest.approx(
        normalised_score(1.5, 3.0, 0.0) - normalised_score(2.5, 3.0, 0.0)
    )
    arr = normalised_score(np.array([3.0, 1.0]), 3.0, 1.0)
    assert isinstance(arr, np.ndarray) and arr.tolist() == [0.0, 1.0]


def test_normalised_gap_orders_its_interval_and_needs_a_usable_range() -> None:
    gap, lo, hi = normalised_gap(-1.0, -1.5, -0.5, floor=3.0, ceiling=1.0, direction="minimize")
    assert (gap, lo, hi) == pytest.approx((0.5, 0.25, 0.75))  # positive: the first arm is better
    assert normalised_gap(0.4, 0.2, 0.6, floor=0.1, ceiling=0.9, direction="maximize") == pytest.approx(
        (0.5, 0.25, 0.75)
    )
    assert has_range(3.0, 1.0, "minimize") and has_range(0.1, 0.9, "maximize")
    for floor, ceiling, direction in ((3.0, 1.0, "maximize"), (1.0, 1.0, "minimize"), (math.nan, 1.0, "minimize")):
        assert not has_range(floor, ceiling, direction)
        assert all(math.isnan(v) for v in normalised_gap(1.0, 0.5, 1.5, floor, ceiling, direction))


def test_metric_gap_row() -> None:
    row = metric_gap([1.0, 1.1, 0.9], [2.0, 2.1, 1.9], "minimize", floor=3.0, ceiling=0.0, n_boot=200, rng=0)
    assert list(row)[:7] == ["n_a", "n_b", "mean_a", "mean_b", "gap", "ci_low", "ci_high"]
    assert row["gap"] == pytest.approx(-1.0) and row["a_better"] and row["excludes_zero"]
    assert row["norm_gap"] == pytest.approx(1.0 / 3.0) and row["norm_ci_low"] <= row["norm_gap"] <= row["norm_ci_high"]
    assert row["flag"] == "CI excludes 0" and row["level"] == 0.95
    single = metric_gap([1.0], [2.0, 2.1], "maximize", rng=0)
    assert not single["a_better"] and not single["excludes_zero"] and math.isnan(single["norm_gap"])
    assert single["flag"] == "n<2: no interval; no floor-ceiling range"
    assert metric_gap([1.0], [2.0, 2.1], "maximize", rng=0, flag_missing_range=False)["flag"] == "n<2: no interval"
