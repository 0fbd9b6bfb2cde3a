"""Intervals, paired comparisons, metric roles and a study's comparison tables (``arch_lab.analysis.intervals``,
``paired``, ``roles``, ``comparisons``), against hand-computed cases and scipy / statsmodels."""

from __future__ import annotations

import math
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import yaml
from scipy import stats as sps
from statsmodels.stats.weightstats import DescrStatsW

from arch_lab.analysis.comparisons import study_comparisons
from arch_lab.analysis.intervals import (
    difference_interval,
    mean_interval,
    t_bounds,
    t_interval,
    welch_interval,
)
from arch_lab.analysis.multiplicity import holm
from arch_lab.analysis.paired import compare_arms, condition_keys, paired_comparison, seed_keys, unit_values
from arch_lab.analysis.roles import MetricRoles, resolve_roles, roles_from_study, roles_from_sweep_file
from arch_lab.errors import ArchLabError


# -------------------------------------------------------------------------------------------- intervals
def test_t_interval_hand_computed_and_against_statsmodels() -> None:
    # mean 3, s = sqrt(2.5), se = s / sqrt(5) = 0.70711, t_{0.975, 4} = 2.776445
    est = t_interval([1.0, 2.0, 3.0, 4.0, 5.0, np.nan])
    assert est.estimate == 3.0
    assert est.df == 4
    assert est.se == pytest.approx(math.sqrt(0.5))
    assert (est.low, est.high) == pytest.approx((3 - 2.776445 * math.sqrt(0.5), 3 + 2.776445 * math.sqrt(0.5)))
    x = np.random.default_rng(0).gamma(2.0, 1.0, 7)
    est = t_interval(x, level=0.9)
    assert (est.low, est.high) == pytest.approx(DescrStatsW(x).tconfint_mean(alpha=0.1))
    assert est.p_value == pytest.approx(sps.ttest_1samp(x, 0.0).pvalue)
    single = t_interval([2.0])
    assert single.estimate == 2.0
    assert math.isnan(single.low)
    assert math.isnan(single.p_value)
    flat = t_interval([0.3, 0.3, 0.3])
    assert (flat.low, flat.high, flat.p_value) == (0.3, 0.3, 0.0)
    assert t_interval([0.0, 0.0]).p_value == 1.0
    with pytest.raises(ValueError, match="level"):
        t_interval(x, level=95)


def test_welch_and_paired_against_scipy() -> None:
    rng = np.random.default_rng(1)
    a, b = rng.normal(1.0, 1.0, 5), rng.normal(0.0, 3.0, 8)
    w = welch_interval(a, b, level=0.9)
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert (w.low, w.high) == pytest.approx(tuple(ref.confidence_interval(0.9)))
    assert w.p_value == pytest.approx(ref.pvalue)
    assert w.df == pytest.approx(ref.df)
    assert w.method == "welch"
    c = b[:5] + rng.normal(0, 0.1, 5)
    p = difference_interval(a, c[:5], paired=True)
    ref = sps.ttest_rel(a, c[:5])
    assert p.method == "paired t"
    assert (p.low, p.high) == pytest.approx(tuple(ref.confidence_interval()))
    assert p.p_value == pytest.approx(ref.pvalue)
    assert math.isnan(welch_interval([1.0], [1.0, 2.0]).low)
    assert t_bounds(1.0, 0.0, 3.0, 0.95) == (1.0, 1.0)
    assert all(map(math.isnan, t_bounds(1.0, math.nan, 3.0, 0.95)))
    assert mean_interval([1.0, 2.0, 3.0], "percentile", rng=0).method == "percentile"
    with pytest.raises(ValueError, match="unknown interval method"):
        mean_interval([1.0, 2.0], "jackknife")
    with pytest.raises(ValueError, match="same length"):
        difference_interval([1.0, 2.0], [1.0], paired=True)


# --------------------------------------------------------------------------------------------- pairing
def _runs() -> pd.DataFrame:
    """Arms A and B on seeds 0-3 (A also on seed 4; B twice on seed 0, to be averaged), one task."""
    a = {0: 1.0, 1: 2.0, 2: 2.5, 3: 4.0, 4: 9.0}
    b = {0: [0.4, 0.6], 1: [1.7], 2: [2.4], 3: [3.3]}
    rows = [{"arm": "A", "seed": s, "task": "t", "energy_distance": v} for s, v in a.items()]
    rows += [{"arm": "B", "seed": s, "task": "t", "energy_distance": v} for s, vs in b.items() for v in vs]
    rows.append({"arm": "B", "seed": 5, "task": "t", "energy_distance": np.nan})
    return pd.DataFrame(rows)


def test_paired_comparison_hand_computed() -> None:
    runs = _runs()
    assert seed_keys(runs) == ["task", "seed"]
    got = paired_comparison(runs, seed_keys(runs), "arm", "A", "B", "energy_distance")
    diffs = np.array([1.0 - 0.5, 2.0 - 1.7, 2.5 - 2.4, 4.0 - 3.3])  # seed 4 has no B, seed 5 no value
    ref = sps.ttest_1samp(diffs, 0.0)
    assert (got["n_pairs"], got["n_only_a"], got["n_only_b"]) == (4, 1, 0)
    assert got["difference"] == pytest.approx(diffs.mean())
    assert got["method"] == "paired t"
    assert got["mean_a"] == pytest.approx(2.375)
    assert got["mean_b"] == pytest.approx(1.975)
    assert (got["ci_low"], got["ci_high"]) == pytest.approx(tuple(ref.confidence_interval()))
    assert got["p_value"] == pytest.approx(ref.pvalue)
    with pytest.raises(ArchLabError, match="arm 'C' not in the table"):
        paired_comparison(runs, ["seed"], "arm", "A", "C", "energy_distance")
    with pytest.raises(ArchLabError, match="no 'fold' column"):
        paired_comparison(runs, ["fold"], "arm", "A", "B", "energy_distance")


def test_per_condition_pairing_pools_folds() -> None:
    """Conditions held out in different folds are paired on (fold, state, perturbation) and pooled."""
    rows = []
    for fold, conds in ((0, ["s1/p1", "s1/p2"]), (1, ["s2/p1"]), (2, ["s2/p3"])):
        for cond in conds:
            state, pert = cond.split("/")
            for seed in (0, 1):
                for arm, shift in (("A", 0.0), ("B", 0.3)):
                    value = 1.0 + fold + 0.1 * seed + shift + (0.05 if pert == "p2" else 0.0)
                    rows.append({"arm": arm, "experiment": "e", "fold": fold, "state": state,
                                 "perturbation": pert, "seed": seed, "energy_distance": value})  # fmt: skip
    pc = pd.DataFrame(rows)
    keys = condition_keys(pc)
    assert keys == ["experiment", "fold", "state", "perturbation"]
    assert len(unit_values(pc[pc["arm"] == "A"], keys, "energy_distance")) == 4
    got = paired_comparison(pc, keys, "arm", "A", "B", "energy_distance")
    assert got["n_pairs"] == 4
    assert got["difference"] == pytest.approx(-0.3)
    assert got["ci_low"] == pytest.approx(-0.3)
    with pytest.raises(ArchLabError, match="not a per-condition table"):
        condition_keys(pc.drop(columns="state"))


def test_compare_arms_pairs_matched_seeds_and_falls_back_to_welch() -> None:
    runs = _runs()
    matched = runs[runs["seed"].between(0, 3)]
    table = compare_arms(matched, ["task", "seed"], "arm", [("A", "B")], ["energy_distance"])
    row = table.iloc[0]
    assert row["pairing"] == "paired"
    assert row["n_a"] == 4
    assert row["method"] == "paired t"
    assert not row["a_better"]  # energy: lower is better, A is higher
    loose = compare_arms(runs, ["task", "seed"], "arm", [("A", "B")], ["energy_distance"]).iloc[0]
    a = [1.0, 2.0, 2.5, 4.0, 9.0]
    b = [0.5, 1.7, 2.4, 3.3]
    ref = sps.ttest_ind(a, b, equal_var=False)
    assert loose["pairing"] == "unpaired"
    assert loose["method"] == "welch"
    assert (loose["n_a"], loose["n_b"]) == (5, 4)
    assert (loose["ci_low"], loose["ci_high"]) == pytest.approx(tuple(ref.confidence_interval()))
    forced = compare_arms(runs, ["task", "seed"], "arm", [("A", "B")], ["energy_distance"], pairing="paired")
    assert forced.iloc[0]["pairing"] == "paired"
    assert forced.iloc[0]["n_a"] == 4
    assert compare_arms(runs, ["seed"], "arm", [("A", "B")], ["not_there"]).empty


# ----------------------------------------------------------------------------------------------- roles
def test_roles_from_sweep_yaml_and_study(tmp_path) -> None:
    declared = tmp_path / "declared.yaml"
    declared.write_text(yaml.safe_dump({"objective": {"metric": "energy_distance"},
                                        "analysis": {"primary_metric": "cosine_logfc",
                                                     "secondary_metrics": ["deg_recall"]}}))  # fmt: skip
    roles = roles_from_sweep_file(declared)
    assert roles.primary == "cosine_logfc"
    assert roles.secondary == ("deg_recall",)
    assert roles.declared
    weighted = tmp_path / "weighted.yaml"
    weighted.write_text(yaml.safe_dump({"objective": {"metrics": {"rmse_mean": 1.0, "rmse_mean_rank": 0.1}}}))
    assert roles_from_sweep_file(weighted).primary == "rmse_mean"
    assert roles_from_sweep_file(tmp_path / "missing.yaml") is None
    assert roles.role("cosine_logfc") == "primary"
    assert roles.role("energy_distance") == "secondary"
    assert roles.ordered(["energy_distance", "deg_recall", "cosine_logfc", "energy_distance"]) == [
        "cosine_logfc", "deg_recall", "energy_distance"]  # fmt: skip
    study = SimpleNamespace(study_name="s", user_attrs={"primary_metric": "deg_recall", "secondary_metrics": []})
    assert roles_from_study(study).primary == "deg_recall"
    old = SimpleNamespace(study_name="old", user_attrs={"sweep_file": str(declared)})
    assert roles_from_study(old).primary == "cosine_logfc"
    assert resolve_roles([study], None, "energy_distance").primary == "deg_recall"
    assert resolve_roles([study], "deg_recall", "energy_distance").declared
    chosen = resolve_roles([study], "energy_distance", "energy_distance")
    assert chosen.primary == "energy_distance"
    assert not chosen.declared
    assert chosen.source == "--metric"
    assert not resolve_roles([], None, "energy_distance").declared


# ----------------------------------------------------------------------------------- comparison tables
def test_study_comparisons_primary_first_and_corrected_per_family() -> None:
    rng = np.random.default_rng(2)
    rows, pc_rows = [], []
    effect = {"A": 0.0, "B": 0.5, "C": 0.05}
    for arm, shift in effect.items():
        for seed in range(5):
            noise = rng.normal(0, 0.05)
            rows.append({"run_dir": f"{arm}{seed}", "experiment": "e", "backbone": arm, "seed": seed,
                         "energy_distance": 1.0 + shift + noise, "cosine_logfc": 0.5 - shift + noise})  # fmt: skip
            for cond in ("p1", "p2", "p3"):
                pc_rows.append({"run_dir": f"{arm}{seed}", "experiment": "e", "backbone": arm, "seed": seed,
                                "state": "s", "perturbation": cond,
                                "energy_distance": 1.0 + shift + 0.1 * int(cond[1]) + noise})  # fmt: skip
    runs, pc = pd.DataFrame(rows), pd.DataFrame(pc_rows)
    roles = MetricRoles("energy_distance", (), "test", True)
    per_seed, per_cond = study_comparisons(runs, pc, roles, ["cosine_logfc", "energy_distance"])
    assert per_seed["role"].tolist() == ["primary"] * 3 + ["secondary"] * 3
    assert per_seed["metric"].tolist()[:3] == ["energy_distance"] * 3
    assert set(per_seed["pairing"]) == {"paired"}
    assert (per_seed["family_size"] == 3).all()
    prim = per_seed[per_seed["role"] == "primary"]
    np.testing.assert_allclose(prim["p_holm"], holm(prim["p_value"]))
    ab = prim[(prim["arm_a"] == "A") & (prim["arm_b"] == "B")].iloc[0]
    assert ab["difference"] == pytest.approx(-0.5, abs=0.1)
    assert ab["significant_holm"]
    assert ab["a_better"]
    assert ab["ci_low_holm"] <= ab["ci_low"]
    assert ab["ci_high"] <= ab["ci_high_holm"]
    assert set(per_cond["unit"]) == {"condition"}
    assert (per_cond["n_a"] == 3).all()
    assert per_cond["metric"].tolist() == ["energy_distance"] * 3  # cosine has no per-condition values here
    empty_seed, empty_cond = study_comparisons(runs[runs["backbone"] == "A"], pc, roles, ["energy_distance"])
    assert empty_seed.empty
    assert empty_cond.empty
