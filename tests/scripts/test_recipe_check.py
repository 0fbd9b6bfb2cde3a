"""``analysis/recipe_check.py``: the recipe against the baselines, paired per held-out condition, on tables built
here with known differences (checked against scipy's paired t test and a hand-computed gap share)."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from scipy import stats as sps

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from analysis import recipe_check

TASK = "toy_task"
CONDITIONS = [("s1", "A"), ("s2", "A"), ("s3", "B"), ("s4", "B"), ("s5", "C")]


def _tables() -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    rng = np.random.default_rng(0)
    floor = np.array([1.0, 2.0, 0.5, 3.0, 1.5])
    ceiling = np.array([0.01, -0.02, 0.0, 0.03, 0.02])
    pm = np.array([0.4, 0.9, 0.3, 1.2, 0.6])
    flow = np.array([0.2, 0.5, 0.35, 0.7, 0.3])
    per, ref = [], []
    for i, (state, pert) in enumerate(CONDITIONS):
        fold = i % 3
        for seed, noise in enumerate((-0.01, 0.0, 0.01)):  # seeds average back to `flow`
            per.append({"task": TASK, "fold": fold, "seed": seed, "backbone": "mlp", "recipe": "recommended",
                        "state": state, "perturbation": pert, "energy_distance": flow[i] + noise,
                        "pearson_delta": 0.5 + noise, "cosine_logfc": 0.4, "rmse_mean": 0.1, "deg_recall": 0.2,
                        "steps": 1500, "git_sha": "abc"})  # fmt: skip
        for entry, value in (("no_change", floor[i]), ("perturbation_mean", pm[i]), ("linear_additive", pm[i] + 0.1),
                             ("ceiling (split-half)", ceiling[i]), ("floor (no_change)", floor[i])):  # fmt: skip
            ref.append({"task": TASK, "fold": fold, "state": state, "perturbation": pert, "entry": entry,
                        "energy_distance": value, "pearson_delta": rng.random(), "cosine_logfc": rng.random()})  # fmt: skip
    runs = pd.DataFrame([{"task": TASK, "fold": f, "seed": s, "backbone": "mlp", "recipe": "recommended",
                          "steps": 1500, "train_seconds": 60.0, "wall_seconds": 70.0, "git_sha": "abc"}
                         for f in range(3) for s in range(3)])  # fmt: skip
    return pd.DataFrame(per), pd.DataFrame(ref), runs


def test_paired_difference_matches_scipy():
    per, ref, _ = _tables()
    table = recipe_check._table(per, ref.rename(columns={"entry": "arm"}))
    comp = recipe_check.comparisons(table)
    row = comp[(comp["metric"] == "energy_distance") & (comp["arm_b"] == "perturbation_mean")].iloc[0]
    flow = np.array([0.2, 0.5, 0.35, 0.7, 0.3])
    pm = np.array([0.4, 0.9, 0.3, 1.2, 0.6])
    diff = flow - pm
    assert row["n_a"] == 5
    assert row["difference"] == pytest.approx(diff.mean())
    t = sps.ttest_rel(flow, pm)
    assert row["p_value"] == pytest.approx(t.pvalue, rel=1e-6)
    half = sps.t.ppf(0.975, 4) * diff.std(ddof=1) / np.sqrt(5)
    assert row["ci_low"] == pytest.approx(diff.mean() - half)
    assert row["ci_high"] == pytest.approx(diff.mean() + half)
    primary = comp[comp["role"] == "primary"]
    assert len(primary) == 3  # mlp against three baselines
    assert (primary["p_holm"] >= primary["p_value"] - 1e-12).all()
    assert (primary["ci_high_holm"] - primary["ci_low_holm"] >= primary["ci_high"] - primary["ci_low"] - 1e-12).all()


def test_gap_share_is_hand_computed():
    per, ref, _ = _tables()
    table = recipe_check._table(per, ref.rename(columns={"entry": "arm"}))
    gap = recipe_check.gap_closed(table).iloc[0]
    floor, ceiling = np.mean([1.0, 2.0, 0.5, 3.0, 1.5]), np.mean([0.01, -0.02, 0.0, 0.03, 0.02])
    seed0 = np.mean(np.array([0.2, 0.5, 0.35, 0.7, 0.3]) - 0.01)
    assert gap["closed_per_seed"].split(", ")[0] == f"{(floor - seed0) / (floor - ceiling):.2f}"
    flow = np.mean([0.2, 0.5, 0.35, 0.7, 0.3])
    assert gap["closed_mean"] == pytest.approx((floor - flow) / (floor - ceiling))


def test_script_writes_between_its_markers_and_reads_its_own_csvs(tmp_path: Path):
    per, ref, runs = _tables()
    results = tmp_path / "results"
    results.mkdir()
    per.to_csv(results / "per_condition.csv", index=False)
    runs.to_csv(results / "runs.csv", index=False)
    ref.to_csv(tmp_path / "reference.csv", index=False)
    out = tmp_path / "results.md"
    out.write_text("# Hand-written header\n\nkept\n")
    args = ["--from-csv", str(results), "--reference", str(tmp_path / "reference.csv"), "--out", str(out)]
    assert recipe_check.main(args) == 0
    first = out.read_text()
    assert first.startswith("# Hand-written header\n\nkept\n")
    assert first.count(recipe_check.BEGIN) == first.count(recipe_check.END) == 1
    assert "| toy_task | energy_distance | mlp | perturbation_mean | 5 |" in first
    assert recipe_check.main(args) == 0
    assert out.read_text() == first  # regenerated from the same rows: identical
