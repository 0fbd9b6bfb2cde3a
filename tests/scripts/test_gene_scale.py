"""``analysis/gene_scale.py``: the gene-scale probe tables on per-run tables built here with known values (cells
checked by hand, paired differences against scipy's paired t test, the block written between its markers)."""

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

from analysis import gene_scale

SEEDS = range(5)


def _runs() -> pd.DataFrame:
    rows = []
    rng = np.random.default_rng(0)
    for genes, floor in ((128, 3.5), (2048, 0.26)):
        for seed in SEEDS:
            jitter = rng.normal(0, 0.05)
            for arm, energy, spread, left in (("w64", 3.6 if genes == 128 else 3.7, 2.1, 2.2),
                                              ("w64_linear_skip", 2.8, 1.7, 0.0),
                                              ("w64_control_source", 0.4, 0.96, 0.34)):  # fmt: skip
                rows.append({"arm": arm, "n_genes": genes, "seed": seed, "dataset": "synthetic", "steps": 1000,
                             "train_flops": 1e12, "train_seconds": 10.0, "git_sha": "abc",
                             "energy_distance": energy + jitter + rng.normal(0, 0.02), "cosine_logfc": 0.3 + 0.01 * seed,
                             "gene_spread_ratio": spread, "readout_source_outside_span": left,
                             "floor_energy_distance": floor + jitter, "ceiling_energy_distance": 0.0,
                             "floor_cosine_logfc": 0.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_cells_are_seed_means_with_t_intervals():
    df = _runs()
    probe = gene_scale.PROBES[0]
    cells = gene_scale.cells_table(df, probe)
    row = cells[(cells["n_genes"] == 128) & (cells["arm"] == "w64_linear_skip")].iloc[0]
    values = df[(df["n_genes"] == 128) & (df["arm"] == "w64_linear_skip")]["energy_distance"].to_numpy()
    assert row["seeds"] == 5
    assert row["energy_distance"] == pytest.approx(values.mean())
    half = sps.t.ppf(0.975, 4) * values.std(ddof=1) / np.sqrt(5)
    assert row["energy_distance_low"] == pytest.approx(values.mean() - half)
    assert row["floor_energy_distance"] == pytest.approx(df[df["n_genes"] == 128]["floor_energy_distance"].mean())
    assert list(cells[cells["n_genes"] == 128]["arm"]) == ["w64", "w64_linear_skip", "w64_control_source"]


def test_contrasts_are_paired_over_seeds_and_holm_adjusted():
    df = _runs()
    comp = gene_scale.comparisons_table(df, gene_scale.PROBES[0])
    row = comp[(comp["n_genes"] == 2048) & (comp["metric"] == "energy_distance") & (comp["arm_a"] == "w64_linear_skip")
               & (comp["arm_b"] == "w64")].iloc[0]  # fmt: skip
    a = df[(df["n_genes"] == 2048) & (df["arm"] == "w64_linear_skip")].sort_values("seed")["energy_distance"]
    b = df[(df["n_genes"] == 2048) & (df["arm"] == "w64")].sort_values("seed")["energy_distance"]
    assert row["difference"] == pytest.approx((a.to_numpy() - b.to_numpy()).mean())
    assert row["difference"] == pytest.approx(-0.9, abs=0.05)
    test = sps.ttest_rel(a.to_numpy(), b.to_numpy())
    assert row["n_pairs"] == 5
    assert row["p_value"] == pytest.approx(test.pvalue, rel=1e-6)
    floor = comp[(comp["kind"] == "against the floor") & (comp["metric"] == "energy_distance")]
    # 3 arms x 2 gene counts against the floor, plus the planned contrasts present (2 per gene count)
    assert len(floor) == 6
    family = comp[comp["metric"] == "energy_distance"]
    assert (family["family_size"] == family["p_value"].notna().sum()).all()
    assert (family["p_holm"] >= family["p_value"] - 1e-12).all()


def test_report_writes_between_the_markers(tmp_path: Path):
    results = tmp_path / "results"
    results.mkdir()
    _runs().to_csv(results / "mlp_span_synthetic.csv", index=False)
    out = tmp_path / "findings.md"
    out.write_text(
        "# Findings\n\nkept above\n\n<!-- gene scale: begin -->\nSTALE BLOCK\n<!-- gene scale: end -->\n\nkept below\n"
    )
    assert gene_scale.main(["--results", str(results), "--out", str(out), "--figures", str(tmp_path / "fig")]) == 0
    text = out.read_text()
    assert "kept above" in text
    assert "kept below" in text
    assert "STALE BLOCK" not in text
    assert "| 2048 | w64_linear_skip | w64 | 5 | -0.9" in text
    assert "No results yet" in text  # the headline study has no table here
    assert (tmp_path / "fig" / "mlp_span_synthetic.png").is_file()
    assert (tmp_path / "fig" / "mlp_span_synthetic_comparisons.csv").is_file()


def test_missing_columns_and_no_tables_are_one_line_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    results = tmp_path / "results"
    results.mkdir()
    out = tmp_path / "f.md"
    assert gene_scale.main(["--results", str(results), "--out", str(out), "--figures", str(tmp_path)]) == 2
    assert "no probe table" in capsys.readouterr().err
    _runs().drop(columns=["n_genes"]).to_csv(results / "mlp_span_synthetic.csv", index=False)
    assert gene_scale.main(["--results", str(results), "--out", str(out), "--figures", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "missing column(s) n_genes" in err
    assert err.count("\n") == 1


def test_curves_come_from_each_runs_history_at_its_mean_pace(tmp_path: Path):
    df = _runs().head(2).copy()
    df["train_seconds"] = [20.0, 40.0]
    df["train_flops"] = [1e12, 2e12]
    dirs = []
    for i in range(2):
        run = tmp_path / f"run{i}"
        run.mkdir()
        pd.DataFrame({"step": [250, 500, 1000], "val_energy_distance": [3.0, 2.0, 1.0],
                      "val_floor_energy_distance": [3.5, 3.5, 3.5]}).to_csv(run / "history.csv", index=False)  # fmt: skip
        dirs.append(str(run))
    df["run_dir"] = dirs
    curves = gene_scale.collect_curves(pd.concat([df, df.head(1).assign(run_dir=str(tmp_path / "gone"))]))
    assert len(curves) == 6  # the run whose directory is gone is skipped
    second = curves[curves["arm"] == df["arm"].iloc[1]]
    assert list(second["seconds"]) == pytest.approx([10.0, 20.0, 40.0])
    assert list(second["flops"]) == pytest.approx([5e11, 1e12, 2e12])
    assert list(curves["val_energy_distance"][:3]) == [3.0, 2.0, 1.0]


def test_runs_of_unfinished_trials_are_left_out_and_counted(tmp_path: Path):
    runs = _runs().assign(trial_state="complete")
    # a trial that lost its worker after two runs: its retry (the complete rows above) repeats them
    lost = runs[(runs["arm"] == "w64") & (runs["n_genes"] == 128) & (runs["seed"] < 2)].assign(
        trial_state="fail", energy_distance=99.0
    )
    kept, dropped = gene_scale.finished_runs(pd.concat([runs, lost], ignore_index=True))
    assert dropped == 2
    assert len(kept) == len(runs)
    assert kept["energy_distance"].max() < 99.0
    results = tmp_path / "results"
    results.mkdir()
    pd.concat([runs, lost]).to_csv(results / "mlp_span_synthetic.csv", index=False)
    out = tmp_path / "findings.md"
    assert gene_scale.main(["--results", str(results), "--out", str(out), "--figures", str(tmp_path / "fig")]) == 0
    text = out.read_text()
    assert "2 runs of unfinished trials left out" in text
    finished = runs[(runs["arm"] == "w64") & (runs["n_genes"] == 128)]["energy_distance"].mean()
    assert f"| 128 | w64 | 5 | {finished:.3f} [" in text  # the mean over the five finished runs, not the seven rows


def _fold_runs() -> pd.DataFrame:
    """Five folds x two seeds x two arms; folds differ in scale (as held-out conditions do), seeds add noise."""
    rows = []
    rng = np.random.default_rng(1)
    for fold, floor in enumerate((1.3, 0.06, 0.9, 0.4, 0.2)):
        for seed in (0, 1):
            for arm, share in (("unet1d", 0.2), ("mlp", 0.1)):
                rows.append({"arm": arm, "n_genes": 500, "seed": seed, "config.task.fold": fold, "dataset": "k562",
                             "steps": 1500, "train_flops": 1e12, "train_seconds": 10.0, "git_sha": "abc",
                             "energy_distance": share * floor + rng.normal(0, 0.01), "cosine_logfc": 0.2,
                             "floor_energy_distance": floor, "ceiling_energy_distance": 0.0,
                             "floor_cosine_logfc": 0.0})  # fmt: skip
    return pd.DataFrame(rows)


def test_fold_studies_average_seeds_within_a_fold_and_pair_over_folds(tmp_path: Path):
    df = _fold_runs()
    probe = next(p for p in gene_scale.PROBES if p.unit == "fold")
    results = tmp_path / "results"
    results.mkdir()
    df.to_csv(results / f"{probe.stem}.csv", index=False)
    loaded = gene_scale.load_probe(results, probe)
    assert loaded is not None
    assert sorted(loaded["fold"].unique()) == [0, 1, 2, 3, 4]
    per_fold = df.groupby(["arm", "config.task.fold"])["energy_distance"].mean()
    cells = gene_scale.cells_table(loaded, probe)
    mlp = cells[cells["arm"] == "mlp"].iloc[0]
    assert (mlp["seeds"], mlp["runs"]) == (5, 10)
    values = per_fold["mlp"].to_numpy()
    assert mlp["energy_distance"] == pytest.approx(values.mean())
    half = sps.t.ppf(0.975, 4) * values.std(ddof=1) / np.sqrt(5)  # 4 degrees of freedom: folds, not runs
    assert mlp["energy_distance_high"] == pytest.approx(values.mean() + half)
    comp = gene_scale.comparisons_table(loaded, probe)
    row = comp[(comp["arm_a"] == "mlp") & (comp["arm_b"] == "unet1d") & (comp["metric"] == "energy_distance")].iloc[0]
    test = sps.ttest_rel(per_fold["mlp"].to_numpy(), per_fold["unet1d"].to_numpy())
    assert row["n_pairs"] == 5
    assert row["difference"] == pytest.approx((per_fold["mlp"] - per_fold["unet1d"]).mean())
    assert row["p_value"] == pytest.approx(test.pvalue, rel=1e-6)
    floor = comp[(comp["arm_a"] == "mlp") & (comp["arm_b"] == gene_scale.FLOOR)].iloc[0]
    assert floor["n_pairs"] == 5
    assert floor["difference"] == pytest.approx(-0.9 * np.mean((1.3, 0.06, 0.9, 0.4, 0.2)), abs=0.02)


def test_generator_studies_pair_over_generated_datasets(tmp_path: Path):
    """Each generated dataset is a unit: one seed each, the same seed on every dataset, so pairing by seed (the
    seed-study rule) would pool five datasets into one pair."""
    probe = next(p for p in gene_scale.PROBES if p.unit == "generator")
    rng = np.random.default_rng(2)
    rows = []
    for generator, floor in zip((1, 2, 3, 4, 5), (1.0, 0.5, 2.0, 0.8, 1.4), strict=True):
        for arm, share in (("unet1d", 0.6), ("mlp_repaired", 0.3)):
            rows.append({"arm": arm, "n_genes": 512, "seed": 0, "params_data.synthetic.seed": generator,
                         "dataset": "synthetic", "steps": 300, "train_flops": 1e12, "train_seconds": 180.0,
                         "git_sha": "abc", "energy_distance": share * floor + rng.normal(0, 0.02),
                         "cosine_logfc": 0.3, "floor_energy_distance": floor, "ceiling_energy_distance": 0.0,
                         "floor_cosine_logfc": 0.0})  # fmt: skip
    df = pd.DataFrame(rows)
    results = tmp_path / "results"
    results.mkdir()
    df.to_csv(results / f"{probe.stem}.csv", index=False)
    loaded = gene_scale.load_probe(results, probe)
    assert loaded is not None
    assert sorted(loaded["generator"].unique()) == [1, 2, 3, 4, 5]
    cells = gene_scale.cells_table(loaded, probe)
    unet = cells[cells["arm"] == "unet1d"].iloc[0]
    assert (unet["seeds"], unet["runs"]) == (5, 5)
    comp = gene_scale.comparisons_table(loaded, probe)
    row = comp[(comp["arm_a"] == "mlp_repaired") & (comp["arm_b"] == "unet1d") & (comp["metric"] == "energy_distance")]
    by_arm = df.pivot(index="params_data.synthetic.seed", columns="arm", values="energy_distance")
    test = sps.ttest_rel(by_arm["mlp_repaired"], by_arm["unet1d"])
    assert row.iloc[0]["n_pairs"] == 5
    assert row.iloc[0]["difference"] == pytest.approx((by_arm["mlp_repaired"] - by_arm["unet1d"]).mean())
    assert row.iloc[0]["p_value"] == pytest.approx(test.pvalue, rel=1e-6)
    df.drop(columns=["params_data.synthetic.seed"]).to_csv(results / f"{probe.stem}.csv", index=False)
    with pytest.raises(gene_scale.ArchLabError, match="no generator column"):
        gene_scale.load_probe(results, probe)


def test_a_fold_study_without_a_fold_column_is_a_one_line_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    probe = next(p for p in gene_scale.PROBES if p.unit == "fold")
    results = tmp_path / "results"
    results.mkdir()
    _fold_runs().drop(columns=["config.task.fold"]).to_csv(results / f"{probe.stem}.csv", index=False)
    out = tmp_path / "f.md"
    assert gene_scale.main(["--results", str(results), "--out", str(out), "--figures", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "no fold column" in err
    assert err.count("\n") == 1


def test_curve_summary_finds_the_first_crossing_and_runs_still_improving():
    probe = gene_scale.PROBES[0]
    rows = []
    # seed 0: below its floor (1.0) first at step 200, flat at the end; seed 1: never below, still improving
    for seed, values in ((0, (2.0, 1.5, 0.8, 0.5, 0.5)), (1, (3.0, 2.5, 2.0, 1.6, 1.2))):
        for i, v in enumerate(values):
            rows.append({"arm": "w64", "n_genes": 128, "seed": seed, "fold": 0, "step": 100 * i,
                         "seconds": 2.0 * i, "flops": 1e12 * i, "val_energy_distance": v,
                         "val_floor_energy_distance": 1.0})  # fmt: skip
    summary = gene_scale.curve_summary(pd.DataFrame(rows), probe)
    row = summary.iloc[0]
    assert (row["runs"], row["crossed"], row["still_improving"]) == (2, 1, 1)
    assert (row["cross_step"], row["cross_seconds"], row["cross_tflops"]) == (200, 4.0, 2.0)
    assert row["last_step"] == 400


def test_collecting_curves_without_the_run_directories_keeps_the_committed_table(tmp_path: Path):
    results = tmp_path / "results"
    (results / "curves").mkdir(parents=True)
    df = _runs()
    df["run_dir"] = str(tmp_path / "gone")  # a fresh checkout: the run directories are not there
    df.to_csv(results / "mlp_span_synthetic.csv", index=False)
    committed = pd.DataFrame({"arm": ["w64"], "n_genes": [128], "seed": [0], "step": [250], "seconds": [1.0],
                              "flops": [1e9], "val_energy_distance": [2.0], "val_floor_energy_distance": [3.0]})  # fmt: skip
    committed.to_csv(results / "curves" / "mlp_span_synthetic.csv", index=False)
    gene_scale.report(results, tmp_path / "fig", collect=True)
    assert pd.read_csv(results / "curves" / "mlp_span_synthetic.csv").equals(committed)
    assert (tmp_path / "fig" / "mlp_span_synthetic_curve_summary.csv").is_file()


def _budget_curves() -> pd.DataFrame:
    """Two arms x three seeds, validations every 10 s (1 TFLOP per 10 s): ``fast`` ends by patience at 30 s,
    ``slow`` runs out of time at 60 s."""
    rows = []
    for seed in range(3):
        for arm, values, ended in (("fast", (2.0, 1.0, 1.2), "patience"),
                                   ("slow", (5.0, 4.0, 3.0, 2.5, 2.0, 1.5), "time")):  # fmt: skip
            for i, v in enumerate(values, start=1):
                rows.append({"arm": arm, "n_genes": 64, "seed": seed, "step": 100 * i, "seconds": 10.0 * i,
                             "flops": 1e12 * i, "val_energy_distance": v + 0.1 * seed,
                             "val_floor_energy_distance": 1.5, "ended_by": ended})  # fmt: skip
    return pd.DataFrame(rows)


def test_best_so_far_keeps_a_plateaued_run_and_drops_one_out_of_time():
    curves = _budget_curves()
    fast = curves[(curves["arm"] == "fast") & (curves["seed"] == 0)]
    slow = curves[(curves["arm"] == "slow") & (curves["seed"] == 0)]
    assert np.isnan(gene_scale.best_so_far(fast, "seconds", 5.0))  # no validation yet
    assert gene_scale.best_so_far(fast, "seconds", 25.0) == 1.0
    assert gene_scale.best_so_far(fast, "seconds", 60.0) == 1.0  # ended by patience: its best stands
    assert gene_scale.best_so_far(slow, "seconds", 45.0) == 2.5
    assert np.isnan(gene_scale.best_so_far(slow, "seconds", 70.0))  # out of time before the budget
    assert gene_scale.best_so_far(slow, "flops", 6e12) == 1.5


def test_budget_tables_read_every_run_at_equal_budgets_and_pair_the_contrasts():
    probe = gene_scale.Probe("toy", "toy", (("fast", "slow"),), ("slow", "fast"), budget_seconds=(20.0, 60.0),
                             budget_tflops=(3.0,))  # fmt: skip
    curves = _budget_curves()
    values = gene_scale.budget_values(curves, probe)
    assert len(values) == 2 * 3 * 3  # arms x seeds x budgets
    table = gene_scale.budget_table(values, probe)
    row = table[(table["arm"] == "slow") & (table["axis"] == "seconds") & (table["budget"] == 20.0)].iloc[0]
    ref = sps.t.interval(0.95, 2, loc=4.1, scale=sps.sem([4.0, 4.1, 4.2]))
    assert (row["n"], row["mean"], row["floor"]) == (3, pytest.approx(4.1), 1.5)
    assert (row["lo"], row["hi"]) == pytest.approx(ref)
    comp = gene_scale.budget_comparisons(values, probe)
    assert list(zip(comp["axis"], comp["budget"], strict=True)) == [
        ("seconds", 20.0),
        ("seconds", 60.0),
        ("tflops", 3.0),
    ]
    # fast - slow at 60 s: 1.0 - 1.5 on every seed (both keep their best: patience, and time ends at 60 s)
    at_60 = comp[comp["budget"] == 60.0].iloc[0]
    assert (at_60["n_pairs"], at_60["difference"]) == (3, pytest.approx(-0.5))
    assert (comp["family_size"] == 3).all()
    markdown = gene_scale.budget_markdown(table)
    assert "| G = 64, at equal training seconds | 20s | 60s |" in markdown
    assert "| fast | 1.100 [" in markdown


def test_curve_summary_reports_where_runs_kept_their_best_and_how_they_ended():
    summary = gene_scale.curve_summary(_budget_curves(), gene_scale.Probe("toy", "toy", (), ("slow", "fast")))
    fast, slow = summary.iloc[1], summary.iloc[0]
    assert (slow["arm"], slow["by_patience"], slow["still_improving"], slow["best_step"]) == ("slow", 0, 3, 600)
    assert (fast["arm"], fast["by_patience"], fast["best_seconds"], fast["best_tflops"]) == ("fast", 3, 20.0, 2.0)


def test_a_probe_pairs_with_arms_borrowed_from_another_study(tmp_path: Path):
    results = tmp_path / "results"
    results.mkdir()
    runs = _runs()
    runs[runs["arm"] == "w64"].to_csv(results / "lender.csv", index=False)
    runs[runs["arm"] == "w64_linear_skip"].to_csv(results / "borrower.csv", index=False)
    probe = gene_scale.Probe("borrower", "toy", (("w64_linear_skip", "w64_lent"),), ("w64_lent", "w64_linear_skip"),
                             borrow=(("lender", "w64", "w64_lent"),))  # fmt: skip
    df = gene_scale.load_probe(results, probe)
    assert sorted(df["arm"].unique()) == ["w64_lent", "w64_linear_skip"]
    comp = gene_scale.comparisons_table(df, probe)
    row = comp[(comp["kind"] == "planned") & (comp["metric"] == "energy_distance") & (comp["n_genes"] == 128)].iloc[0]
    a = runs[(runs["arm"] == "w64_linear_skip") & (runs["n_genes"] == 128)]["energy_distance"].to_numpy()
    b = runs[(runs["arm"] == "w64") & (runs["n_genes"] == 128)]["energy_distance"].to_numpy()
    assert row["n_pairs"] == 5
    assert row["difference"] == pytest.approx(float(np.mean(a - b)))
    assert row["p_value"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    gone = gene_scale.Probe("borrower", "toy", (), ("w64_linear_skip",), borrow=(("nowhere", "w64", "x"),))
    with pytest.raises(gene_scale.ArchLabError, match="export nowhere first"):
        gene_scale.load_probe(results, gone)


def test_borrowed_arms_keep_only_the_gene_counts_of_the_borrowing_study(tmp_path: Path):
    results = tmp_path / "results"
    results.mkdir()
    runs = _runs()
    runs[runs["arm"] == "w64"].to_csv(results / "lender.csv", index=False)  # 128 and 2048 genes
    own = runs[(runs["arm"] == "w64_linear_skip") & (runs["n_genes"] == 2048)]
    own.to_csv(results / "borrower.csv", index=False)
    probe = gene_scale.Probe(
        "borrower", "toy", (), ("w64_lent", "w64_linear_skip"), borrow=(("lender", "w64", "w64_lent"),)
    )
    df = gene_scale.load_probe(results, probe)
    assert set(df["n_genes"]) == {2048}
    assert (df["arm"] == "w64_lent").sum() == 5
    own.assign(n_genes=512).to_csv(results / "borrower.csv", index=False)
    with pytest.raises(gene_scale.ArchLabError, match=r"no runs of arm w64 at borrower's gene count\(s\) \[512\]"):
        gene_scale.load_probe(results, probe)


def test_the_precision_note_names_the_arms_of_each_precision():
    df = pd.DataFrame({"arm": ["a", "a", "b", "c"], "precision": ["fp32", "fp32", "torch.bfloat16", None]})
    assert gene_scale.precision_note(df.iloc[:2]) == "precision fp32"
    assert gene_scale.precision_note(df) == "precision differs: bf16 (b); fp32 (a); not recorded (c)"
    assert gene_scale.precision_note(df.drop(columns="precision")) == "precision not recorded"


def test_the_hardware_note_names_the_arms_of_each_machine_and_is_empty_on_one():
    df = pd.DataFrame(
        {
            "arm": ["a", "a", "b", "c", "d"],
            "device": ["cpu", "cpu", "cpu", None, "NVIDIA H200"],
            "cpu": ["AMD EPYC", "AMD EPYC", "Intel Xeon", None, "AMD EPYC"],
        }
    )
    assert gene_scale.hardware_note(df.iloc[:2]) == ""
    assert gene_scale.hardware_note(df.drop(columns=["device", "cpu"])) == ""
    assert gene_scale.hardware_note(df) == (
        "machines differ: AMD EPYC (a); Intel Xeon (b); NVIDIA H200 (d); not recorded (c)"
    )


def test_posthoc_readouts_fill_only_what_the_runs_did_not_record(tmp_path: Path):
    results = tmp_path / "results"
    (results / "readouts").mkdir(parents=True)
    runs = _runs()
    runs["run_dir"] = [f"runs/r{i}" for i in range(len(runs))]
    runs["readout_source_sensitivity"] = np.where(runs.index % 2 == 0, 1.5, np.nan)  # half recorded by the run
    runs.to_csv(results / "toy.csv", index=False)
    extra = pd.DataFrame({"run_dir": runs["run_dir"], "readout_source_sensitivity": 9.0, "readout_new": 2.0})
    extra.assign(readouts_git_sha="def").to_csv(results / "readouts" / "toy.csv", index=False)
    probe = gene_scale.Probe("toy", "toy", (), ("w64", "w64_linear_skip", "w64_control_source"))
    df = gene_scale.load_probe(results, probe)
    recorded = runs.index % 2 == 0
    assert (df.loc[recorded, "readout_source_sensitivity"] == 1.5).all()
    assert (df.loc[~recorded, "readout_source_sensitivity"] == 9.0).all()
    assert (df["readout_new"] == 2.0).all()
    assert "readouts_git_sha" not in df.columns
    cells = gene_scale.cells_table(df, probe)
    assert "source sensitivity" in gene_scale.cells_markdown(cells)
    runs.drop(columns="run_dir").to_csv(results / "toy.csv", index=False)
    with pytest.raises(gene_scale.ArchLabError, match="matched by run_dir"):
        gene_scale.load_probe(results, probe)


def test_posthoc_readouts_recompute_what_a_run_recorded(synthetic_h5ad: Path, tmp_path: Path):
    from analysis import posthoc_readouts
    from arch_lab.analysis.tidy import load_runs
    from arch_lab.api import train
    from arch_lab.config import experiment_from_dict
    from tests.conftest import experiment_dict

    raw = experiment_dict(synthetic_h5ad, tmp_path, network={"name": "mlp", "width": 8, "depth": 1})
    result = train(experiment_from_dict(raw))
    recorded = load_runs([result.run_dir]).iloc[0]
    again = posthoc_readouts.run_readouts(Path(result.run_dir))
    for name in ("readout_source_outside_span", "readout_output_rank", "readout_source_sensitivity"):
        assert again[name] == pytest.approx(recorded[name], rel=1e-6)
    results = tmp_path / "results"
    results.mkdir()
    pd.DataFrame({"run_dir": [str(result.run_dir)]}).to_csv(results / "toy.csv", index=False)
    assert posthoc_readouts.main(["toy", "--results", str(results)]) == 0
    table = pd.read_csv(results / "readouts" / "toy.csv")
    assert table["readout_source_sensitivity"].iloc[0] == pytest.approx(recorded["readout_source_sensitivity"])
    pd.DataFrame({"run_dir": [str(tmp_path / "gone")]}).to_csv(results / "toy.csv", index=False)
    assert posthoc_readouts.main(["toy", "--results", str(results)]) == 2


def test_excluded_runs_leave_every_table_and_their_pairs_drop_out():
    runs = _runs()
    runs.loc[(runs["arm"] == "w64") & (runs["seed"] == 1), "energy_distance"] = 3.6e29  # a diverged run
    probe = gene_scale.Probe("toy", "toy", (("w64_linear_skip", "w64"),), ("w64", "w64_linear_skip"),
                             exclude=(("w64", 1, "diverged"),))  # fmt: skip
    kept, notes = gene_scale.excluded_runs(runs, probe)
    assert notes == ["w64 seed 1 (diverged)"]
    assert len(kept) == len(runs) - 2  # seed 1 of w64 at both gene counts
    cells = gene_scale.cells_table(kept, probe)
    row = cells[(cells["n_genes"] == 2048) & (cells["arm"] == "w64")].iloc[0]
    assert row["seeds"] == 4
    assert row["energy_distance"] < 10
    comp = gene_scale.comparisons_table(kept, probe)
    pair = comp[(comp["kind"] == "planned") & (comp["metric"] == "energy_distance") & (comp["n_genes"] == 2048)].iloc[0]
    seeds = [0, 2, 3, 4]
    part = runs[runs["n_genes"] == 2048].set_index(["arm", "seed"])["energy_distance"]
    a = part.loc["w64_linear_skip"].loc[seeds].to_numpy()
    b = part.loc["w64"].loc[seeds].to_numpy()
    assert pair["n_pairs"] == 4  # the excluded seed's pair is gone, the other arm's run with it
    assert pair["difference"] == pytest.approx(float(np.mean(a - b)))
    assert pair["p_value"] == pytest.approx(sps.ttest_rel(a, b).pvalue)
    wrong = gene_scale.Probe("toy", "toy", (), ("w64",), exclude=(("w64", 9, "typo"),))
    with pytest.raises(gene_scale.ArchLabError, match="seed 9 is not in its table"):
        gene_scale.excluded_runs(runs, wrong)


def test_collected_curves_keep_an_excluded_run_and_the_report_leaves_it_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    # the curves table is collected from every run (so it stays whole and the exclusion can be lifted), and the
    # excluded run leaves it only where it is read; collecting after the exclusion made the report fail
    results, figures = tmp_path / "results", tmp_path / "figures"
    results.mkdir()
    runs = _runs()[lambda d: d["n_genes"] == 2048].copy()
    dirs = []
    for i, _ in enumerate(runs.itertuples()):
        run = tmp_path / f"run{i}"
        run.mkdir()
        pd.DataFrame({"step": [500, 1000], "val_energy_distance": [3.0, 2.0],
                      "val_floor_energy_distance": [2.5, 2.5]}).to_csv(run / "history.csv", index=False)  # fmt: skip
        dirs.append(str(run))
    runs["run_dir"] = dirs
    runs.to_csv(results / "toy.csv", index=False)
    probe = gene_scale.Probe("toy", "toy", (("w64_linear_skip", "w64"),), ("w64", "w64_linear_skip"),
                             exclude=(("w64", 1, "diverged"),))  # fmt: skip
    monkeypatch.setattr(gene_scale, "PROBES", (probe,))
    out = tmp_path / "findings.md"
    out.write_text("<!-- gene scale: begin -->\n<!-- gene scale: end -->\n")
    args = ["--results", str(results), "--out", str(out), "--figures", str(figures), "--collect-curves"]
    assert gene_scale.main(args) == 0
    curves = pd.read_csv(results / "curves" / "toy.csv")
    assert len(curves.groupby(["arm", "seed"])) == len(runs)  # the excluded run's curve is kept in the table
    summary = pd.read_csv(figures / "toy_curve_summary.csv")
    assert summary.set_index("arm").loc["w64", "runs"] == 4  # and left out of what is reported


def test_the_commits_of_a_study_include_those_its_runs_were_resumed_under():
    df = pd.DataFrame({"git_sha": ["abc", "abc", "def"], "resumed_git_shas": ["", "fed;abd", None]})
    assert sorted(gene_scale.run_commits(df)) == ["abc", "abc", "abd", "def", "fed"]
    assert gene_scale.run_commits(df.drop(columns="resumed_git_shas")) == ["abc", "abc", "def"]  # older exports
