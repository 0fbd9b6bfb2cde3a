"""The probe study's comparisons and gap tables (``analysis/probes/``, the repository's study code) and the
``analysis/why_unet.py`` script, on per-run tables built here. The generic gap estimates are in ``test_gaps.py``."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import REPO
from scipy import stats as sps

if str(REPO) not in sys.path:  # the study code is ``analysis.probes`` under the repository root, as the script has it
    sys.path.insert(0, str(REPO))

from analysis.probes import (
    build_comparisons,
    coverage,
    expected_cells,
    gap_table,
    load_probe_results,
    locality_contiguity,
    probe_kind,
    tidy_probe_table,
)
from arch_lab.analysis.gaps import normalised_score
from arch_lab.analysis.multiplicity import benjamini_hochberg, holm
from arch_lab.errors import ArchLabError

NETWORK = {"unet": "unet1d", "mlp": "mlp", "gt_": "gene_transformer"}
TASKS = {"synthetic": "synthetic_combination", "k562": "devel_k562_combination", "kang": "kang_celltype_transfer"}


def _network(arm: str) -> str:
    return next(v for k, v in NETWORK.items() if arm.startswith(k))


def runs_table(
    probe: str,
    means: dict[tuple[str, float, str], tuple[float, float]],
    seeds: int = 5,
    sd: float = 0.0,
    floor: tuple[float, float] = (3.0, 0.1),
    ceiling: tuple[float, float] = (0.0, 0.9),
    rng: np.random.Generator | None = None,
) -> pd.DataFrame:
    """A probe's per-run table: ``means[(arm, locality, gene_order)] = (energy, cosine)`` plus noise of ``sd``."""
    rng = rng or np.random.default_rng(0)
    task = TASKS[probe.rsplit("_", 1)[-1]]
    rows = []
    for (arm, loc, order), (energy, cosine) in means.items():
        for s in range(seeds):
            rows.append(
                {
                    "study": f"probe_{probe}_v1",
                    "arm": arm,
                    "task": task,
                    "dataset": "synthetic" if "synthetic" in task else task,
                    "locality": loc,
                    "seed": s,
                    "network": _network(arm),
                    "energy_distance": energy + sd * rng.standard_normal(),
                    "cosine_logfc": cosine + sd * rng.standard_normal(),
                    "floor_energy_distance": floor[0],
                    "ceiling_energy_distance": ceiling[0],
                    "floor_cosine_logfc": floor[1],
                    "ceiling_cosine_logfc": ceiling[1],
                    "config.data.gene_order": order,
                    "config.train.max_steps": 800,
                }
            )
    return pd.DataFrame(rows)


def _tidy(**tables: pd.DataFrame) -> pd.DataFrame:
    return pd.concat([tidy_probe_table(df, name) for name, df in tables.items()], ignore_index=True)


def _pairs(comps: list, probe: str | None = None, primary: bool | None = None) -> set[tuple]:
    return {
        (c.arm_a, c.order_a, c.arm_b, c.order_b, c.locality, c.probe_a, c.probe_b)
        for c in comps
        if (probe is None or c.probe == probe) and (primary is None or c.primary == primary)
    }


# ------------------------------------------------------------------------------------------------- gap table
def test_normalised_gap_of_a_table_is_the_difference_of_normalised_scores() -> None:
    """The normalised gap of a table is the difference of the two arms' normalised scores."""
    runs = _tidy(
        backbones_k562=runs_table(
            "backbones_k562",
            {("unet1d", np.nan, "as_stored"): (1.5, 0.7), ("mlp_matched", np.nan, "as_stored"): (2.5, 0.3)},
        )
    )
    gaps, _ = gap_table(runs, n_boot=200)
    e = gaps[gaps["metric"] == "energy_distance"].iloc[0]
    c = gaps[gaps["metric"] == "cosine_logfc"].iloc[0]
    assert e["gap"] == pytest.approx(-1.0)
    assert e["a_better"]
    assert e["norm_gap"] == pytest.approx(normalised_score(1.5, 3.0, 0.0) - normalised_score(2.5, 3.0, 0.0))
    assert e["norm_gap"] == pytest.approx(1.0 / 3.0)
    assert c["gap"] == pytest.approx(0.4)
    assert c["norm_gap"] == pytest.approx(0.5)
    assert e["n_a"] == e["n_b"] == 5
    assert e["ci_low"] == pytest.approx(-1.0)


# ------------------------------------------------------------------------------------------------ comparisons
def test_probe_kind() -> None:
    assert probe_kind("unet_dissection_k562") == "unet_dissection"
    assert probe_kind("fair_mlp_synthetic") == "fair_mlp"
    with pytest.raises(ArchLabError, match="unknown kind"):
        probe_kind("tuning_k562")


def test_comparisons_per_probe_kind() -> None:
    v = (1.0, 0.5)
    bb_syn = {(a, loc, "as_stored"): v for a in ("unet1d", "mlp_matched", "gt_cross_matched") for loc in (0.0, 1.0)}
    compute = {
        (a, 1.0, "as_stored"): v
        for a in ("unet1d", "unet1d_long", "mlp_matched_equal_flops", "unet1d_converged", "mlp_matched_converged")
    }
    dissect = {(a, 1.0, "as_stored"): v for a in ("unet1d", "unet1d_k1", "unet1d_no_skips")}
    dissect_k562 = {(a, np.nan, "as_stored"): v for a in ("unet1d", "unet1d_k1")}
    order = {(a, loc, o): v for a in ("unet1d", "mlp_matched") for loc in (0.0, 1.0) for o in ("as_stored", "random")}
    fair = {(a, 1.0, "as_stored"): v for a in ("mlp_w64", "mlp_no_norm")}
    runs = _tidy(
        backbones_synthetic=runs_table("backbones_synthetic", bb_syn),
        compute_synthetic=runs_table("compute_synthetic", compute),
        unet_dissection_synthetic=runs_table("unet_dissection_synthetic", dissect),
        unet_dissection_k562=runs_table("unet_dissection_k562", dissect_k562),
        gene_order_synthetic=runs_table("gene_order_synthetic", order),
        fair_mlp_synthetic=runs_table("fair_mlp_synthetic", fair),
    )
    comps = build_comparisons(runs)
    bb, cs, ds, dk = "backbones_synthetic", "compute_synthetic", "unet_dissection_synthetic", "unet_dissection_k562"
    go, fm = "gene_order_synthetic", "fair_mlp_synthetic"
    assert _pairs(comps, bb) == {
        ("unet1d", "as_stored", b, "as_stored", loc, bb, bb)
        for b in ("mlp_matched", "gt_cross_matched")
        for loc in (0.0, 1.0)
    }
    assert _pairs(comps, cs, primary=True) == {
        *{("unet1d", "as_stored", b, "as_stored", 1.0, cs, cs) for (b, _, _) in compute if b != "unet1d"},
        ("unet1d_converged", "as_stored", "mlp_matched_converged", "as_stored", 1.0, cs, cs),
    }
    # each longer or equal-compute arm minus its fixed-step counterpart (from this study, else the backbones one)
    assert _pairs(comps, cs, primary=False) == {
        ("unet1d_long", "as_stored", "unet1d", "as_stored", 1.0, cs, cs),
        ("unet1d_converged", "as_stored", "unet1d", "as_stored", 1.0, cs, cs),
        ("mlp_matched_equal_flops", "as_stored", "mlp_matched", "as_stored", 1.0, cs, bb),
        ("mlp_matched_converged", "as_stored", "mlp_matched", "as_stored", 1.0, cs, bb),
    }
    # dissection: every U-Net arm minus the MLP of the same task and setting (from the backbones study) ...
    assert _pairs(comps, ds, primary=True) == {
        (a, "as_stored", "mlp_matched", "as_stored", 1.0, ds, bb) for a in ("unet1d", "unet1d_k1", "unet1d_no_skips")
    }
    assert _pairs(comps, ds, primary=False) == {
        (a, "as_stored", "unet1d", "as_stored", 1.0, ds, ds) for a in ("unet1d_k1", "unet1d_no_skips")
    }
    assert {c.baseline for c in comps if c.probe == ds and c.primary} == {"mlp_matched (backbones_synthetic)"}
    # ... or, with no MLP for that task (K562 here), minus the default unet1d, as the primary comparison
    assert _pairs(comps, dk) == {("unet1d_k1", "as_stored", "unet1d", "as_stored", None, dk, dk)}
    assert all(c.primary for c in comps if c.probe == dk)
    assert _pairs(comps, go, primary=True) == {
        *{("unet1d", o, "mlp_matched", o, loc, go, go) for o in ("as_stored", "random") for loc in (0.0, 1.0)},
        *{("unet1d", "random", "unet1d", "as_stored", loc, go, go) for loc in (0.0, 1.0)},
    }
    assert _pairs(comps, go, primary=False) == {
        ("mlp_matched", "random", "mlp_matched", "as_stored", loc, go, go) for loc in (0.0, 1.0)
    }
    # fair MLP: the unet1d of the backbones study with the same locality minus each MLP variant
    assert _pairs(comps, fm) == {
        ("unet1d", "as_stored", b, "as_stored", 1.0, bb, fm) for b in ("mlp_w64", "mlp_no_norm")
    }


def test_references_come_from_the_backbones_study_when_a_probe_does_not_repeat_them() -> None:
    """The shipped probes do not rerun unet1d, mlp_matched or the stored gene order: they are looked up."""
    v = (1.0, 0.5)
    bb_syn = {(a, loc, "as_stored"): v for a in ("unet1d", "mlp_matched", "gt_cross_matched") for loc in (0.0, 1.0)}
    compute = {(a, 1.0, "as_stored"): v for a in ("unet1d_long", "mlp_matched_equal_flops", "gt_cross_equal_flops")}
    dissect = {(a, 1.0, "as_stored"): v for a in ("unet1d_k1", "unet1d_no_skips")}
    order = {(a, loc, "random"): v for a in ("unet1d", "mlp_matched") for loc in (0.0, 1.0)}
    transformer = {(a, 1.0, "as_stored"): v for a in ("gt_latent_matched", "gt_full_matched")}
    runs = _tidy(
        backbones_synthetic=runs_table("backbones_synthetic", bb_syn),
        compute_synthetic=runs_table("compute_synthetic", compute),
        unet_dissection_synthetic=runs_table("unet_dissection_synthetic", dissect),
        gene_order_synthetic=runs_table("gene_order_synthetic", order),
        transformer_synthetic=runs_table("transformer_synthetic", transformer),
    )
    comps = build_comparisons(runs)
    bb, cs, ds, go, tr = (
        "backbones_synthetic",
        "compute_synthetic",
        "unet_dissection_synthetic",
        "gene_order_synthetic",
        "transformer_synthetic",
    )
    assert _pairs(comps, cs, primary=True) == {
        ("unet1d", "as_stored", b, "as_stored", 1.0, bb, cs) for b, _, _ in compute
    }
    assert _pairs(comps, cs, primary=False) == {
        ("unet1d_long", "as_stored", "unet1d", "as_stored", 1.0, cs, bb),
        ("mlp_matched_equal_flops", "as_stored", "mlp_matched", "as_stored", 1.0, cs, bb),
        ("gt_cross_equal_flops", "as_stored", "gt_cross_matched", "as_stored", 1.0, cs, bb),
    }
    assert _pairs(comps, ds, primary=False) == {
        (a, "as_stored", "unet1d", "as_stored", 1.0, ds, bb) for a in ("unet1d_k1", "unet1d_no_skips")
    }
    assert {("unet1d", "random", "unet1d", "as_stored", loc, go, bb) for loc in (0.0, 1.0)} <= _pairs(
        comps, go, primary=True
    )
    assert _pairs(comps, tr, primary=True) == {
        ("unet1d", "as_stored", b, "as_stored", 1.0, bb, tr) for b in ("gt_latent_matched", "gt_full_matched")
    }
    assert _pairs(comps, tr, primary=False) == {
        (b, "as_stored", "gt_cross_matched", "as_stored", 1.0, tr, bb) for b in ("gt_latent_matched", "gt_full_matched")
    }


def test_gap_table_signs_and_cross_study_values() -> None:
    """Planted means come back per comparison, including arms taken from another study."""
    rng = np.random.default_rng(3)
    bb = runs_table(
        "backbones_synthetic",
        {("unet1d", 1.0, "as_stored"): (1.0, 0.8), ("mlp_matched", 1.0, "as_stored"): (2.0, 0.4)},
        sd=0.05,
        rng=rng,
    )
    fair = runs_table("fair_mlp_synthetic", {("mlp_w512", 1.0, "as_stored"): (1.2, 0.7)}, sd=0.05, rng=rng)
    ds = runs_table("unet_dissection_synthetic", {("unet1d_k1", 1.0, "as_stored"): (1.9, 0.45)}, sd=0.05, rng=rng)
    gaps, _ = gap_table(_tidy(backbones_synthetic=bb, fair_mlp_synthetic=fair, unet_dissection_synthetic=ds))
    e = gaps[(gaps["metric"] == "energy_distance") & gaps["primary"]].set_index("probe")
    secondary = gaps[(gaps["metric"] == "energy_distance") & ~gaps["primary"]]
    assert len(secondary) == 1
    assert secondary["arm_b"].iloc[0] == "unet1d"
    assert secondary["gap"].iloc[0] == pytest.approx(0.9, abs=0.1)
    assert e.loc["backbones_synthetic", "gap"] == pytest.approx(-1.0, abs=0.1)
    assert e.loc["fair_mlp_synthetic", "gap"] == pytest.approx(-0.2, abs=0.1)
    assert e.loc["fair_mlp_synthetic", "probe_a"] == "backbones_synthetic"
    assert e.loc["unet_dissection_synthetic", "gap"] == pytest.approx(-0.1, abs=0.1)
    assert e.loc["unet_dissection_synthetic", "probe_b"] == "backbones_synthetic"
    assert e.loc["backbones_synthetic", "excludes_zero"]
    assert e.loc["backbones_synthetic", "a_better"]
    assert "CI excludes 0" in e.loc["backbones_synthetic", "flag"]


def test_gap_table_pairs_seeds_and_corrects_each_family() -> None:
    """Arms run on the same seeds are paired (paired t over seeds); arms whose seeds differ are compared with
    Welch's interval. Primary gaps (primary comparisons on the probe's primary metric) and the rest are Holm- and
    BH-adjusted as two families."""
    rng = np.random.default_rng(8)
    bb = runs_table(
        "backbones_synthetic",
        {(a, loc, "as_stored"): (1.0 + 0.3 * (a != "unet1d") * loc, 0.6) for a in ("unet1d", "mlp_matched")
         for loc in (0.0, 0.5, 1.0)},
        sd=0.1,
        rng=rng,
    )  # fmt: skip
    ds = runs_table("unet_dissection_synthetic", {("unet1d_k1", 1.0, "as_stored"): (1.2, 0.55)}, sd=0.1, rng=rng)
    ds = ds[ds["seed"] != 4]  # seeds 0-3 only: compared unpaired with the 5-seed arms of the backbones study
    gaps, _ = gap_table(_tidy(backbones_synthetic=bb, unet_dissection_synthetic=ds))
    e = gaps[gaps["metric"] == "energy_distance"]
    row = e[(e["probe"] == "backbones_synthetic") & (e["locality"] == 1.0)].iloc[0]
    a = bb[(bb["arm"] == "unet1d") & (bb["locality"] == 1.0)].sort_values("seed")["energy_distance"].to_numpy()
    b = bb[(bb["arm"] == "mlp_matched") & (bb["locality"] == 1.0)].sort_values("seed")["energy_distance"].to_numpy()
    ref = sps.ttest_rel(a, b)
    assert row["pairing"] == "paired"
    assert row["method"] == "paired t"
    assert row["n_a"] == row["n_b"] == 5
    assert (row["ci_low"], row["ci_high"]) == pytest.approx(tuple(ref.confidence_interval()))
    assert row["p_value"] == pytest.approx(ref.pvalue)
    unpaired = gaps[gaps["probe"] == "unet_dissection_synthetic"]
    assert set(unpaired["pairing"]) == {"unpaired"}
    assert set(unpaired["method"]) == {"welch"}
    primary = gaps[gaps["family"] == "primary"]
    assert set(primary["metric"]) == {"energy_distance"}
    assert primary["primary"].all()
    assert set(gaps.loc[gaps["metric"] == "cosine_logfc", "family"]) == {"secondary"}
    assert set(gaps.loc[~gaps["primary"], "family"]) == {"secondary"}
    np.testing.assert_allclose(primary["p_holm"], holm(primary["p_value"]))
    secondary = gaps[gaps["family"] == "secondary"]
    np.testing.assert_allclose(secondary["p_bh"], benjamini_hochberg(secondary["p_value"]))
    assert (primary["family_size"] == len(primary)).all()
    assert (gaps["significant_holm"] == (gaps["p_holm"] < 0.05)).all()
    flipped, _ = gap_table(_tidy(backbones_synthetic=bb), primary_metrics={"backbones_synthetic": "cosine_logfc"})
    assert set(flipped.loc[flipped["family"] == "primary", "metric"]) == {"cosine_logfc"}


def test_normalised_gap_left_out_where_the_range_is_within_noise() -> None:
    t = runs_table(
        "backbones_k562", {(a, np.nan, "as_stored"): (1.0 + (a != "unet1d"), 0.5) for a in ("unet1d", "mlp_matched")}
    )
    spans = {0: 0.03, 1: -0.06, 2: 0.02, 3: -0.05, 4: 0.01}  # ceiling - floor per seed: -0.01 on average, noisy
    t["ceiling_energy_distance"] = t["floor_energy_distance"] + t["seed"].map(spans)
    gaps, _ = gap_table(_tidy(backbones_k562=t))
    e = gaps[gaps["metric"] == "energy_distance"].iloc[0]
    c = gaps[gaps["metric"] == "cosine_logfc"].iloc[0]
    assert e["range_within_noise"]
    assert math.isnan(e["norm_gap"])
    assert "range within noise" in e["flag"]
    assert not c["range_within_noise"]
    assert np.isfinite(c["norm_gap"])


def test_nan_metric_skipped_with_note_and_single_seed_flagged() -> None:
    t = runs_table("backbones_kang", {(a, np.nan, "as_stored"): (1.0, 0.5) for a in ("unet1d", "mlp_matched")})
    t["cosine_logfc"] = np.nan
    t = t[(t["arm"] == "unet1d") | (t["seed"] == 0)]  # the MLP has one seed
    gaps, notes = gap_table(_tidy(backbones_kang=t), n_boot=100)
    assert set(gaps["metric"]) == {"energy_distance"}
    assert any("cosine_logfc has no finite values on kang_celltype_transfer" in n for n in notes)
    row = gaps.iloc[0]
    assert (row["n_a"], row["n_b"]) == (5, 1)
    assert math.isnan(row["ci_low"])
    assert row["flag"].startswith("n<2")


def test_coverage_lists_missing_and_partial_cells() -> None:
    probes = ["backbones_synthetic", "backbones_k562"]
    expected = expected_cells(REPO / "sweeps" / "probes", probes)
    assert len(expected[expected["probe"] == "backbones_synthetic"]) == 3 * 5  # 3 arms x 5 localities
    assert set(expected.loc[expected["probe"] == "backbones_k562", "arm"]) >= {"unet1d", "mlp_matched"}
    t = runs_table("backbones_synthetic", {("unet1d", 0.0, "as_stored"): (1.0, 0.5)}, seeds=5)
    t = pd.concat([t, runs_table("backbones_synthetic", {("mlp_matched", 0.0, "as_stored"): (1.0, 0.5)}, seeds=2)])
    cov = coverage(tidy_probe_table(t, "backbones_synthetic"), expected, ["backbones_k562"])
    status = cov.set_index(["probe", "arm", "locality"])["status"]
    assert status[("backbones_synthetic", "unet1d", 0.0)] == "complete"
    assert status[("backbones_synthetic", "mlp_matched", 0.0)] == "partial"
    assert status[("backbones_synthetic", "unet1d", 1.0)] == "missing"
    assert (cov.loc[cov["probe"] == "backbones_k562", "status"] == "missing").all()


def test_locality_contiguity_matches_the_simulated_data() -> None:
    from arch_lab.data.synthetic import simulate, synthetic_config

    settings = {"n_genes": 24, "n_programs": 2, "program_size": 6, "n_single": 4, "n_combinations": 3,
                "cells_per_condition": 12, "control_cells": 24, "seed": 3}  # fmt: skip
    rows = []
    for loc in (0.0, 0.5, 1.0):
        cfg = synthetic_config({**settings, "locality": loc}).model_dump(mode="json")
        rows.append({f"config.data.synthetic.{k}": (str(v) if isinstance(v, list) else v) for k, v in cfg.items()})
    got = locality_contiguity(pd.DataFrame(rows)).set_index("locality")["contiguity"]
    for loc in (0.0, 0.5, 1.0):
        want = simulate(synthetic_config({**settings, "locality": loc})).uns["ground_truth"]["contiguity"]
        assert got[loc] == pytest.approx(want)
    assert got[1.0] == pytest.approx(1.0)


# ------------------------------------------------------------------------------------------------- the script
def _script():
    spec = importlib.util.spec_from_file_location("why_unet", REPO / "analysis" / "why_unet.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)  # type: ignore[union-attr]
    return mod


def test_script_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rng = np.random.default_rng(4)
    results = tmp_path / "results"
    results.mkdir()
    bb = {(a, loc, "as_stored"): (1.0 + (a != "unet1d") * loc, 0.7 - 0.3 * (a != "unet1d") * loc)
          for a in ("unet1d", "mlp_matched", "gt_cross_matched") for loc in (0.0, 0.5, 1.0)}  # fmt: skip
    runs_table("backbones_synthetic", bb, sd=0.05, rng=rng).to_csv(results / "backbones_synthetic.csv", index=False)
    kang = runs_table("backbones_kang", {(a, np.nan, "as_stored"): (1.0, 0.5) for a in ("unet1d", "mlp_matched")})
    kang.loc[kang["arm"] == "mlp_matched", "energy_distance"] = [1.3, 1.4, 1.2, 1.5, 1.35]
    kang.to_csv(results / "backbones_kang.csv", index=False)
    out = tmp_path / "fig"
    rc = _script().main(["--results", str(results), "--out", str(out), "--n-boot", "200"])
    assert rc == 0
    for name in ("why_unet.png", "why_unet.pdf", "why_unet_forest.png", "gaps.csv", "coverage.csv", "summary.md"):
        assert (out / name).is_file(), name
        assert (out / name).stat().st_size > 0, name
    gaps = pd.read_csv(out / "gaps.csv")
    assert len(gaps) == (2 * 3 + 1) * 2  # (2 comparisons x 3 localities + Kang) x 2 metrics
    kang_gap = gaps[(gaps["task"] == "kang_celltype_transfer") & (gaps["metric"] == "energy_distance")].iloc[0]
    assert kang_gap["gap"] == pytest.approx(1.0 - 1.35)
    assert bool(kang_gap["excludes_zero"])
    md = (out / "summary.md").read_text()
    assert "## backbones" in md
    assert "unet1d − mlp_matched" in md
    assert "**✱**" in md
    assert "significant after Holm correction" in md
    assert "## Significance" in md
    assert "Δ energy distance (primary)" in md
    assert "Δ cosine logfc (secondary)" in md
    assert "Pre-declared primary metric" in md
    assert {"p_value", "p_holm", "p_bh", "significant_holm", "family", "pairing"} <= set(gaps.columns)
    assert "backbones_k562" in md  # a probe file not there yet is listed as missing
    assert load_probe_results(results).missing[:1] == ["backbones_k562"]
    assert str(out / "why_unet.png") in capsys.readouterr().out


def test_script_without_results_is_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    rc = _script().main(["--results", str(tmp_path), "--out", str(tmp_path / "fig")])
    err = capsys.readouterr().err
    assert rc == 2
    assert err.startswith("error: ")
    assert err.count("\n") == 1
    assert "no probe results" in err
    assert not (tmp_path / "fig").exists()
