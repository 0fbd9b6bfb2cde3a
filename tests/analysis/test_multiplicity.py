"""Multiple comparisons (``arch_lab.analysis.multiplicity``): Holm and Benjamini-Hochberg adjusted p-values against
hand-computed cases and statsmodels, Holm-consistent interval levels, and adjustment per family of a table."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats as sps
from statsmodels.stats.multitest import multipletests

from arch_lab.analysis.intervals import t_bounds
from arch_lab.analysis.multiplicity import (
    adjust,
    adjust_family,
    benjamini_hochberg,
    bonferroni_level,
    holm,
    holm_levels,
)

P = [0.01, 0.04, 0.03, 0.005]


def test_holm_hand_computed() -> None:
    # sorted: 0.005 x 4 = 0.02; 0.01 x 3 = 0.03; 0.03 x 2 = 0.06; 0.04 x 1 = 0.04 -> running max 0.06
    np.testing.assert_allclose(holm(P), [0.03, 0.06, 0.06, 0.02])
    np.testing.assert_allclose(holm([0.5, 0.9]), [1.0, 1.0])  # capped at 1
    got = holm([0.01, np.nan, 0.04])  # NaN: not tested, not counted (m = 2)
    assert math.isnan(got[1])
    assert got[[0, 2]].tolist() == pytest.approx([0.02, 0.04])
    assert holm([]).size == 0
    assert np.isnan(holm([np.nan])).all()


def test_benjamini_hochberg_hand_computed() -> None:
    # sorted: 0.005 x 4/1 = 0.02; 0.01 x 4/2 = 0.02; 0.03 x 4/3 = 0.04; 0.04 x 4/4 = 0.04 (running min from the top)
    np.testing.assert_allclose(benjamini_hochberg(P), [0.02, 0.04, 0.04, 0.02])
    got = benjamini_hochberg([0.01, np.nan, 0.04])
    assert math.isnan(got[1])
    assert got[[0, 2]].tolist() == pytest.approx([0.02, 0.04])


def test_adjustments_agree_with_statsmodels() -> None:
    rng = np.random.default_rng(11)
    p = np.concatenate([rng.uniform(0, 0.01, 8), rng.uniform(0, 1, 40)])
    rng.shuffle(p)
    for ours, theirs in (("holm", "holm"), ("bh", "fdr_bh"), ("bonferroni", "bonferroni")):
        reject, adjusted, _, _ = multipletests(p, alpha=0.05, method=theirs)
        np.testing.assert_allclose(adjust(p, ours), adjusted, rtol=1e-12, err_msg=ours)
        assert ((adjust(p, ours) <= 0.05) == reject).all()
    np.testing.assert_array_equal(adjust(p, "none"), p)
    with pytest.raises(ValueError, match="unknown adjustment"):
        adjust(p, "sidak")
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        holm([0.2, 1.5])


def test_holm_levels_hand_computed_and_consistent_with_holm() -> None:
    # sorted 0.005 < 0.05/4 and 0.01 < 0.05/3 are rejected, 0.03 >= 0.05/2 is not: r = 2
    np.testing.assert_allclose(holm_levels(P), [1 - 0.05 / 3, 1 - 0.05 / 2, 1 - 0.05 / 2, 1 - 0.05 / 4])
    assert bonferroni_level(4) == pytest.approx(0.9875)
    assert bonferroni_level(1) == pytest.approx(0.95)
    assert np.isnan(holm_levels([np.nan, 0.01])[0])
    assert holm_levels([np.nan, 0.01])[1] == pytest.approx(0.95)
    # a t interval at its Holm level excludes 0 exactly when Holm rejects (many random families)
    rng = np.random.default_rng(5)
    for _ in range(200):
        m = int(rng.integers(1, 12))
        est, se, df = rng.normal(0, 3, m), rng.uniform(0.5, 1.5, m), rng.integers(2, 10, m).astype(float)
        p = 2 * sps.t.sf(np.abs(est / se), df)
        levels, rejected = holm_levels(p), holm(p) < 0.05
        for e, s, d, lv, rej in zip(est, se, df, levels, rejected, strict=True):
            lo, hi = t_bounds(e, s, d, lv)
            assert (lo > 0 or hi < 0) == rej


def test_adjust_family_adjusts_within_each_family() -> None:
    table = pd.DataFrame(
        {
            "family": ["primary", "secondary", "secondary", "primary", "secondary"],
            "p_value": [0.01, 0.04, 0.03, 0.04, np.nan],
            "difference": [1.0, 0.5, -0.7, 0.4, 0.1],
            "se": [0.2, 0.2, 0.3, 0.18, math.nan],
            "df": [4.0, 4.0, 4.0, 4.0, math.nan],
        }
    )
    out = adjust_family(table, family="family", estimate="difference")
    assert out["family_size"].tolist() == [2, 2, 2, 2, 2]
    np.testing.assert_allclose(out.loc[[0, 3], "p_holm"], holm([0.01, 0.04]))
    np.testing.assert_allclose(out.loc[[1, 2], "p_bh"], benjamini_hochberg([0.04, 0.03]))
    assert out["significant_holm"].tolist() == [True, False, False, True, False]
    assert math.isnan(out.loc[4, "p_holm"])
    assert math.isnan(out.loc[4, "ci_low_holm"])
    lo, hi = t_bounds(1.0, 0.2, 4.0, out.loc[0, "level_holm"])
    assert (out.loc[0, "ci_low_holm"], out.loc[0, "ci_high_holm"]) == pytest.approx((lo, hi))
    whole = adjust_family(table)  # one family of four tests
    np.testing.assert_allclose(whole["p_holm"].iloc[:4], holm(table["p_value"].iloc[:4]))
    assert adjust_family(table.iloc[:0])["p_holm"].empty
