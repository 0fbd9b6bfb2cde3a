"""Tidy tables, statistics, figures and the report, on a small real study and run set trained here."""

from __future__ import annotations

import importlib.util
import shutil
import struct
from pathlib import Path

import matplotlib
import numpy as np
import optuna
import pandas as pd
import pytest
import torch
from conftest import REPO, experiment_dict, synthetic_adata
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from scipy import stats as sps
from typer.testing import CliRunner

from arch_lab import analysis as A
from arch_lab import api
from arch_lab.cli import app
from arch_lab.config import experiment_from_dict
from arch_lab.data import build_task
from arch_lab.errors import ArchLabError
from arch_lab.metrics.info import METRICS
from arch_lab.networks import get_network_class
from arch_lab.rundir import RunDir

matplotlib.use("Agg")
runner = CliRunner()
SEEDS = (0, 1)
#: (network, guidance) per completed trial: mlp twice (two guidance scales), unet1d once.
TRIALS = (("mlp", 1.0), ("unet1d", 1.0), ("mlp", 2.0))
FLOW_POINTS = {"mlp": 4, "unet1d": 2}
DISTRIBUTIONS = {
    "network.name": optuna.distributions.CategoricalDistribution(["mlp", "unet1d"]),
    "flow.guidance": optuna.distributions.FloatDistribution(0.5, 3.0),
}
optuna.logging.set_verbosity(optuna.logging.WARNING)


def _network(name: str) -> dict:
    return {"name": name, **get_network_class(name).tiny_config()}


@pytest.fixture(scope="module")
def lab(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A study of 3 completed trials × 2 seeds (plus a pruned and a failed trial) and 2 baseline runs."""
    root = tmp_path_factory.mktemp("lab")
    data = root / "synthetic.h5ad"
    synthetic_adata().write_h5ad(data)
    storage = f"sqlite:///{root / 'toy.db'}"
    study = optuna.create_study(study_name="toy", storage=storage, direction="minimize")
    task = None
    threads = torch.get_num_threads()
    for number, (net, guidance) in enumerate(TRIALS):
        dirs, values = [], []
        for seed in SEEDS:
            raw = experiment_dict(data, root, seed=seed, flow={"guidance": guidance}, train={"threads": 1})
            raw["network"] = _network(net)
            cfg = experiment_from_dict(raw)
            task = task or build_task(cfg)
            res = api.train(cfg, run_dir=root / "sweep" / f"t{number}-s{seed}", task=task)
            dirs.append(str(res.run_dir))
            values.append(res.summary["energy_distance"])
        attrs = {"run_dirs": dirs, "seeds": list(SEEDS), "values_per_seed": values, "parameter_count": 1,
                 "wall_seconds": 1.0, "git_sha": "test", "space_hash": "h"}  # fmt: skip
        study.add_trial(
            optuna.trial.create_trial(
                params={"network.name": net, "flow.guidance": guidance},
                distributions=DISTRIBUTIONS,
                value=float(np.mean(values)),
                user_attrs=attrs,
            )
        )
    pruned = root / "sweep" / "t3-s0"
    shutil.copytree(root / "sweep" / "t0-s0", pruned)
    RunDir(pruned).set_status("pruned", reason="pruned at step 10")
    study.add_trial(optuna.trial.create_trial(
        params={"network.name": "mlp", "flow.guidance": 1.5}, distributions=DISTRIBUTIONS,
        state=optuna.trial.TrialState.PRUNED, user_attrs={"run_dirs": [str(pruned)], "reason": "pruned"},
    ))  # fmt: skip
    study.add_trial(optuna.trial.create_trial(
        params={"network.name": "unet1d", "flow.guidance": 0.5}, distributions=DISTRIBUTIONS,
        state=optuna.trial.TrialState.FAIL, user_attrs={"run_dirs": [], "reason": "diverged"},
    ))  # fmt: skip
    for seed in SEEDS:
        raw = experiment_dict(data, root, seed=seed, method={"name": "perturbation_mean"})
        api.train(experiment_from_dict(raw), run_dir=root / "baselines" / f"pm-s{seed}", task=task)
    torch.set_num_threads(threads)
    broken = root / "baselines" / "broken"
    shutil.copytree(root / "baselines" / "pm-s0", broken)
    RunDir(broken).set_status("failed", reason="boom")
    with pytest.warns(A.RunSkipped):
        sweep_runs = A.study_runs(A.load_study(storage))
    with pytest.warns(A.RunSkipped):
        baseline_runs = A.load_runs([root / "baselines"])
    runs = pd.concat([sweep_runs, baseline_runs], ignore_index=True)
    return {"root": root, "storage": storage, "study": study, "sweep_runs": sweep_runs, "runs": runs,
            "baselines": root / "baselines", "per_condition": A.load_per_condition(runs)}  # fmt: skip


def _points(fig: Figure, gid: str) -> np.ndarray:
    """Offsets of the one scatter collection with ``gid`` in ``fig``."""
    found = [c for ax in fig.axes for c in ax.collections if c.get_gid() == gid]
    assert len(found) == 1, [c.get_gid() for ax in fig.axes for c in ax.collections]
    return np.asarray(found[0].get_offsets())


def _all_points(fig: Figure, gid: str) -> np.ndarray:
    """Offsets of every scatter collection with ``gid`` in ``fig`` (one per panel), stacked."""
    return np.concatenate([c.get_offsets() for ax in fig.axes for c in ax.collections if c.get_gid() == gid])


def _png_dpi(path: Path) -> float:
    raw = path.read_bytes()
    i = raw.index(b"pHYs")
    ppu_x, _, unit = struct.unpack(">IIB", raw[i + 4 : i + 13])
    assert unit == 1
    return ppu_x * 0.0254


# ----------------------------------------------------------------------------------------------- tables
def test_study_runs_join_trials_with_runs(lab):
    runs = lab["sweep_runs"]
    assert len(runs) == len(TRIALS) * len(SEEDS)
    assert runs.groupby("backbone").size().to_dict() == FLOW_POINTS
    assert set(runs["trial"]) == {0, 1, 2}
    assert {"seed", "parameter_count", "train_seconds", "params_network.name", "params_flow.guidance",
            "user_attrs_git_sha", "objective", "seed_value", *METRICS} <= set(runs.columns)  # fmt: skip
    np.testing.assert_allclose(runs["seed_value"], runs["energy_distance"])
    assert (runs["backbone"] == runs["params_network.name"]).all()
    np.testing.assert_array_equal(runs["guidance"], runs["params_flow.guidance"])
    assert (runs["parameter_count"] > 0).all()
    assert (runs["train_seconds"] > 0).all()
    per_trial = runs.groupby("trial")["energy_distance"].mean()
    np.testing.assert_allclose(per_trial.to_numpy(), runs.groupby("trial")["objective"].first().to_numpy())


def test_study_runs_lists_a_run_of_a_requeued_trial_once(lab, tmp_path):
    """A trial interrupted after one seed is requeued; both trials list that seed's run directory."""
    done = lab["sweep_runs"].sort_values(["trial", "replicate"])["run_dir"].tolist()[:2]
    study = optuna.create_study(study_name="requeue", storage=f"sqlite:///{tmp_path / 'r.db'}")
    params = {"network.name": "mlp", "flow.guidance": 1.0}
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions=DISTRIBUTIONS, state=optuna.trial.TrialState.FAIL,
        user_attrs={"run_dirs": done[:1], "reason": "interrupted"},
    ))  # fmt: skip
    study.add_trial(optuna.trial.create_trial(
        params=params, distributions=DISTRIBUTIONS, value=1.0,
        user_attrs={"run_dirs": done, "values_per_seed": [1.0, 1.0]},
    ))  # fmt: skip
    runs = A.study_runs(study)
    assert sorted(runs["run_dir"]) == sorted(done)
    assert runs["run_dir"].is_unique
    assert runs["trial"].tolist() == [1, 1]
    assert runs["trial_state"].tolist() == ["complete", "complete"]


def test_trials_table_keeps_every_trial(lab):
    trials = A.trials_table(lab["study"])
    assert trials["state"].tolist() == ["complete", "complete", "complete", "pruned", "fail"]
    assert trials["backbone"].tolist() == ["mlp", "unet1d", "mlp", "mlp", "unet1d"]
    assert trials.loc[4, "user_attrs_reason"] == "diverged"


def test_load_runs_skips_incomplete_runs_with_a_warning(lab):
    with pytest.warns(A.RunSkipped, match="broken.*failed.*boom"):
        runs = A.load_runs([lab["baselines"]])
    assert runs["backbone"].tolist() == ["perturbation_mean", "perturbation_mean"]
    assert runs["seed"].tolist() == [0, 1]
    assert runs["train_seconds"].isna().all()
    assert runs["network"].isna().all()
    assert runs["floor_energy_distance"].notna().all()
    assert runs["ceiling_energy_distance"].notna().all()


def test_per_condition_and_history_tables(lab):
    runs, pc = lab["runs"], lab["per_condition"]
    assert len(pc) == int(runs["n_conditions"].sum())
    assert (pc["condition"] == pc["state"] + "/" + pc["perturbation"]).all()
    history = A.load_history(runs)
    assert set(history["backbone"]) == set(FLOW_POINTS)
    assert sorted(history["step"].unique()) == [10, 20, 30]
    assert len(history) == 3 * len(lab["sweep_runs"])
    ref = A.load_reference(runs)
    assert set(ref["reference"]) == {"no_change", "split_half"}
    long = A.long_metrics(runs, ["energy_distance", "deg_recall"])
    assert len(long) == 2 * len(runs)
    assert set(long["direction"]) == {"minimize", "maximize"}


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda lab: A.load_runs([lab["root"] / "nowhere"]), "no such file or directory"),
        (lambda lab: A.load_runs([lab["root"] / "synthetic.h5ad"]), "not a run directory"),
        (lambda lab: A.load_runs([_empty_dir(lab)]), "not a run directory and holds none"),
        (lambda lab: A.trials_table(_empty_study(lab)), "has no trials"),
        (lambda lab: A.load_study("no_such_sweep"), "not a run directory, a folder of runs, or a study"),
        (lambda lab: A.load_study(lab["storage"] + "#other"), "no study named 'other'"),
        (lambda lab: A.fig_metric_by_backbone(lab["runs"], metric="energy"), "unknown metric 'energy'"),
        (lambda lab: A.summarize(lab["runs"], ["not_a_metric"]), "unknown metric"),
        (lambda lab: A.paired_differences(lab["per_condition"], "deg_recall", [("mlp", "cpa")]), "backbone 'cpa'"),
        (lambda lab: A.fig_guidance_sweep(lab["runs"][lab["runs"]["guidance"] != 2.0]), "does not vary"),
        (lambda lab: A.cell_projection([lab["baselines"] / "pm-s0"], ["s9/A"]), "not held out"),
    ],
)
def test_bad_input_is_a_one_line_error(lab, call, message):
    with pytest.raises(ArchLabError) as err:
        call(lab)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def _empty_dir(lab: dict) -> Path:
    p = lab["root"] / "empty"
    p.mkdir(exist_ok=True)
    return p


def _empty_study(lab: dict) -> optuna.Study:
    storage = f"sqlite:///{lab['root'] / 'empty.db'}"
    optuna.create_study(study_name="empty", storage=storage, load_if_exists=True)
    return A.load_study(storage)


def test_load_study_by_name_url_and_journal(lab, tmp_path):
    assert A.load_study("toy", storage=lab["storage"]).study_name == "toy"
    assert A.load_study(lab["storage"] + "#toy").study_name == "toy"
    assert A.load_study(Path(lab["storage"].removeprefix("sqlite:///"))).study_name == "toy"
    journal = tmp_path / "sweep.log"
    storage = optuna.storages.JournalStorage(optuna.storages.journal.JournalFileBackend(str(journal)))
    for name in ("a", "b"):
        optuna.create_study(study_name=name, storage=storage).add_trial(
            optuna.trial.create_trial(params={}, distributions={}, value=1.0)
        )
    assert A.load_study(f"journal:{journal}#b").study_name == "b"
    with pytest.raises(ArchLabError, match="several studies"):
        A.load_study(f"journal:{journal}")
    with pytest.raises(ArchLabError, match="journal file not found"):
        A.load_study(f"journal:{tmp_path / 'missing.log'}")


# ----------------------------------------------------------------------------------------------- statistics
def test_bootstrap_interval_contains_the_mean_and_narrows_with_level():
    rng = np.random.default_rng(3)
    for n in (2, 3, 5, 20):
        v = rng.normal(size=n)
        lo, hi = A.bootstrap_ci(v, rng=1)
        assert lo <= v.mean() <= hi
        assert lo < hi
        lo50, hi50 = A.bootstrap_ci(v, level=0.5, rng=1)
        assert lo <= lo50 <= hi50 <= hi
    assert A.bootstrap_ci([2.5]) == (2.5, 2.5)
    assert all(np.isnan(A.bootstrap_ci([np.nan])))


def test_summary_and_paired_intervals_contain_their_means(lab):
    summary = A.summarize(lab["runs"])
    assert set(summary["backbone"]) == {"mlp", "unet1d", "perturbation_mean"}
    finite = summary.dropna(subset=["ci_low"])
    assert ((finite["ci_low"] <= finite["mean"] + 1e-12) & (finite["mean"] <= finite["ci_high"] + 1e-12)).all()
    ed = summary[summary["metric"] == "energy_distance"].set_index("backbone")
    expected = lab["runs"].groupby("backbone")["energy_distance"].agg(["mean", "size"])
    np.testing.assert_allclose(ed.loc[expected.index, "mean"], expected["mean"])
    assert (ed.loc[expected.index, "n"] == expected["size"]).all()
    diffs = A.paired_differences(lab["per_condition"], "energy_distance")
    assert {(a, b) for a, b in zip(diffs["backbone_a"], diffs["backbone_b"], strict=True)} == {
        ("unet1d", "mlp"), ("unet1d", "perturbation_mean"), ("mlp", "perturbation_mean")}  # fmt: skip
    assert ((diffs["ci_low"] <= diffs["difference"] + 1e-12) & (diffs["difference"] <= diffs["ci_high"] + 1e-12)).all()
    np.testing.assert_allclose(diffs["difference"], diffs["mean_a"] - diffs["mean_b"])
    pair = A.paired_summary(diffs)
    assert (
        (pair["ci_low"] <= pair["mean_difference"] + 1e-12) & (pair["mean_difference"] <= pair["ci_high"] + 1e-12)
    ).all()


def test_study_comparisons_pair_backbones_by_seed(lab):
    """Per seed, each backbone's runs sharing a seed are averaged, and the backbones paired on that seed."""
    runs = lab["runs"]
    roles = A.resolve_roles([lab["study"]], None, "energy_distance")
    assert roles.primary == "energy_distance"
    assert not roles.declared
    per_seed, per_cond = A.study_comparisons(runs, lab["per_condition"], roles, ["energy_distance", "deg_recall"],
                                             arms=["unet1d", "mlp", "perturbation_mean"])  # fmt: skip
    row = per_seed[(per_seed["metric"] == "energy_distance") & (per_seed["arm_a"] == "unet1d")]
    row = row[row["arm_b"] == "mlp"].iloc[0]
    by_seed = runs.groupby(["backbone", "seed"])["energy_distance"].mean()
    diffs = [by_seed[("unet1d", s)] - by_seed[("mlp", s)] for s in SEEDS]
    assert row["pairing"] == "paired"
    assert row["n_a"] == len(SEEDS)
    assert row["difference"] == pytest.approx(np.mean(diffs))
    if np.ptp(diffs) > 0:
        assert row["p_value"] == pytest.approx(sps.ttest_1samp(diffs, 0.0).pvalue)
    assert per_seed["role"].tolist() == ["primary"] * 3 + ["secondary"] * 3
    assert set(per_cond["unit"]) == {"condition"}
    assert (per_cond["n_a"] == lab["per_condition"]["condition"].nunique()).all()


def test_pareto_front_keeps_only_undominated_points():
    cost = [1, 2, 3, 4, np.nan]
    quality = [5.0, 3.0, 4.0, 1.0, 0.0]
    np.testing.assert_array_equal(A.pareto_front(cost, quality, maximize=False), [True, True, False, True, False])
    np.testing.assert_array_equal(A.pareto_front(cost, quality, maximize=True), [True, False, False, False, False])


def test_palette_gives_a_backbone_the_same_colour_everywhere():
    alone = A.backbone_palette(["mlp"])
    mixed = A.backbone_palette(["zeta", "unet1d", "mlp", "no_change"])
    assert alone["mlp"] == mixed["mlp"]
    assert list(mixed) == ["unet1d", "mlp", "no_change", "zeta"]
    assert len(set(mixed.values())) == len(mixed)


# ----------------------------------------------------------------------------------------------- figures
def test_metric_by_backbone_draws_every_seed_of_every_trial(lab):
    runs = lab["runs"]
    fig = A.fig_metric_by_backbone(runs, metric="energy_distance")
    palette = A.backbone_palette(runs["backbone"])
    for backbone, group in runs.groupby("backbone"):
        pts = _points(fig, f"points:{backbone}")
        assert len(pts) == len(group) == {**FLOW_POINTS, "perturbation_mean": 2}[backbone]
        np.testing.assert_allclose(np.sort(pts[:, 1]), np.sort(group["energy_distance"].to_numpy()))
        fc = fig.axes[0].collections[[c.get_gid() for c in fig.axes[0].collections].index(f"points:{backbone}")]
        np.testing.assert_allclose(fc.get_facecolor()[0][:3], to_rgb(palette[backbone]))
    lines = {
        line.get_gid(): line.get_ydata()[0] for line in fig.axes[0].lines if line.get_gid() in ("floor", "ceiling")
    }
    assert lines["floor"] == pytest.approx(runs["floor_energy_distance"].mean())
    assert lines["ceiling"] == pytest.approx(runs["ceiling_energy_distance"].mean())
    panel = A.fig_metrics_by_backbone(runs)
    assert len(panel.axes) == sum(runs[m].notna().any() for m in A.HEADLINE_METRICS)


def test_paired_plot_has_one_point_per_condition(lab):
    pc = lab["per_condition"]
    fig = A.fig_paired_conditions(pc, a="mlp", b="unet1d", metric="energy_distance")
    pts = _points(fig, "points:paired")
    means = pc.groupby(["backbone", "condition"])["energy_distance"].mean().unstack(0)
    assert len(pts) == means[["mlp", "unet1d"]].dropna().shape[0] == pc["condition"].nunique()
    np.testing.assert_allclose(np.sort(pts[:, 0]), np.sort(means["mlp"].to_numpy()))
    np.testing.assert_allclose(np.sort(pts[:, 1]), np.sort(means["unet1d"].to_numpy()))
    assert any(line.get_gid() == "diagonal" for line in fig.axes[0].lines)


def test_quality_vs_cost_marks_the_pareto_front(lab):
    runs = lab["runs"]
    fig = A.fig_quality_vs_cost(runs, metric="energy_distance", cost="parameter_count")
    for backbone, n in {**FLOW_POINTS, "perturbation_mean": 2}.items():
        assert len(_points(fig, f"points:{backbone}")) == n
    front = next(line for line in fig.axes[0].lines if line.get_gid() == "pareto_front")
    mask = A.pareto_front(runs["parameter_count"], runs["energy_distance"], maximize=False)
    np.testing.assert_allclose(np.sort(front.get_ydata()), np.sort(runs.loc[mask, "energy_distance"].to_numpy()))
    panels = A.fig_quality_cost_panels(runs, metric="energy_distance")
    assert len(panels.axes) == 2
    assert sum(len(_all_points(panels, f"points:{b}")) for b in FLOW_POINTS) == 2 * 6


def test_learning_curves_average_the_seeds(lab):
    history = A.load_history(lab["runs"])
    fig = A.fig_learning_curves(history, metric="energy_distance")
    for backbone in FLOW_POINTS:
        line = next(x for x in fig.axes[0].lines if x.get_gid() == f"curve:{backbone}")
        expected = history[history["backbone"] == backbone].groupby("step")["val_energy_distance"].mean()
        np.testing.assert_array_equal(line.get_xdata(), expected.index)
        np.testing.assert_allclose(line.get_ydata(), expected.to_numpy())
    with pytest.raises(ArchLabError, match="no training history"):
        A.fig_learning_curves(A.load_history(lab["runs"][lab["runs"]["network"].isna()]))


def test_sweep_diagnostics_and_small_studies(lab, tmp_path):
    trials = A.trials_table(lab["study"])
    importances = A.param_importances(lab["study"])
    assert set(importances["param"]) == {"network.name", "flow.guidance"}
    assert importances["importance"].sum() == pytest.approx(1.0)
    fig = A.fig_sweep_diagnostics(trials, importances=importances)
    assert len(fig.axes) == 2
    assert sum(len(_points(fig, f"points:{b}")) for b in ("mlp", "unet1d")) == 3
    assert len([p for p in fig.axes[1].patches if p.get_gid() == "importance"]) == 2
    small = optuna.create_study(storage=f"sqlite:///{tmp_path / 'small.db'}", study_name="small")
    dist = {"flow.guidance": DISTRIBUTIONS["flow.guidance"]}
    small.add_trial(optuna.trial.create_trial(params={"flow.guidance": 1.0}, distributions=dist, value=1.0))
    with pytest.raises(ArchLabError, match="too few completed trials"):
        A.param_importances(small)
    assert len(A.fig_sweep_diagnostics(A.trials_table(small)).axes) == 1


def test_cells_projection_and_gene_logfc(lab):
    runs = A.best_runs(lab["runs"], "energy_distance")
    assert sorted(runs["backbone"]) == ["mlp", "perturbation_mean", "unet1d"]
    cells = A.cell_projection(list(runs["run_dir"]), n_conditions=2)
    conds = cells["condition"].unique()
    assert len(conds) == 2
    gen = cells[cells["source"] == "generated"]
    assert gen.groupby("backbone")["condition"].nunique().to_dict() == dict.fromkeys(runs["backbone"], 2)
    fig = A.fig_cells_pca(cells)
    assert len(fig.axes) == 3 * 2
    n_obs = (cells["source"] == "observed").sum()
    assert (
        sum(len(c.get_offsets()) for c in fig.axes[0].collections if c.get_gid() == "points:observed")
        == ((cells["source"] == "observed") & (cells["condition"] == conds[0])).sum()
    )
    assert n_obs > 0
    genes = A.gene_logfc(list(runs["run_dir"]))
    n_genes = genes["gene"].nunique()
    assert len(genes) == 3 * n_genes
    assert sorted(genes["de_rank"].unique()) == list(range(1, n_genes + 1))
    fig = A.fig_gene_logfc(genes, n_labels=4)
    for ax in fig.axes:
        assert len([t for t in ax.texts if t.get_gid() == "gene_label"]) == 4
        assert len(_points(ax.figure, f"points:{ax.get_title()}")) == n_genes


def test_guidance_sweep_draws_a_line_per_varied_backbone(lab):
    fig = A.fig_guidance_sweep(lab["runs"])
    gids = {line.get_gid() for line in fig.axes[0].lines}
    assert "curve:mlp" in gids
    assert "curve:unet1d" not in gids
    line = next(x for x in fig.axes[0].lines if x.get_gid() == "curve:mlp")
    mlp = lab["runs"][lab["runs"]["backbone"] == "mlp"].groupby("guidance")["energy_distance"].mean()
    np.testing.assert_allclose(line.get_xdata(), mlp.to_numpy())


# ----------------------------------------------------------------------------------------------- report
def test_report_cli_writes_every_figure_table_and_caption(lab, tmp_path):
    out = tmp_path / "report"
    result = runner.invoke(app, ["report", lab["storage"], str(lab["baselines"]), "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "broken" in result.stderr
    pdfs = sorted(p.stem for p in (out / "figures").glob("*.pdf"))
    assert sorted(p.stem for p in (out / "figures").glob("*.png")) == pdfs
    for n in range(1, 9):
        assert any(s.startswith(f"fig{n}_") for s in pdfs), (n, pdfs)
    for stem in pdfs:
        pdf, png = out / "figures" / f"{stem}.pdf", out / "figures" / f"{stem}.png"
        assert pdf.read_bytes().startswith(b"%PDF")
        assert pdf.stat().st_size > 1000
        assert png.read_bytes().startswith(b"\x89PNG")
        assert _png_dpi(png) == pytest.approx(300, abs=1)
    text = (out / "report.md").read_text()
    for backbone in ("mlp", "unet1d", "perturbation_mean"):
        assert backbone in text
    for stem in pdfs:
        assert f"figures/{stem}.png" in text
        assert f"figures/{stem}.pdf" in text
    tables = ("runs", "per_condition", "summary", "references", "comparisons", "condition_comparisons",
              "paired_differences", "paired_summary", "trials")  # fmt: skip
    for table in tables:
        assert (out / "tables" / f"{table}.csv").is_file()
        assert f"tables/{table}.csv" in text
    comparisons = pd.read_csv(out / "tables" / "comparisons.csv")
    assert comparisons["role"].iloc[0] == "primary"
    assert comparisons["metric"].iloc[0] == "energy_distance"
    assert set(comparisons["pairing"]) == {"paired"}
    assert {"p_holm", "p_bh", "ci_low_holm"} <= set(comparisons.columns)
    assert "## Comparisons" in text
    assert "### Primary claim: `energy_distance`, per seed" in text
    assert "### Secondary metrics, per seed" in text
    assert "per held-out condition" in text
    assert "Primary metric: `energy_distance`" in text
    assert "not pre-declared" in text
    summary = pd.read_csv(out / "tables" / "summary.csv").dropna(subset=["ci_low"])
    assert ((summary["ci_low"] <= summary["mean"] + 1e-9) & (summary["mean"] <= summary["ci_high"] + 1e-9)).all()
    runs = pd.read_csv(out / "tables" / "runs.csv")
    assert len(runs) == len(lab["runs"])


def test_report_notes_figures_the_data_cannot_support(tmp_path, lab):
    report = A.build_report([lab["baselines"] / "pm-s0", lab["baselines"] / "pm-s1"], tmp_path / "r")
    drawn = {a.name for a in report.figures}
    skipped = dict(report.skipped)
    assert {"fig4_learning_curves", "fig5_sweep_diagnostics", "fig8_guidance_sweep", "fig2_paired"} <= set(skipped)
    assert not drawn & set(skipped)
    assert "does not vary" in skipped["fig8_guidance_sweep"]
    assert not list((tmp_path / "r" / "figures").glob("fig8*"))
    text = report.path.read_text()
    assert "## Not drawn" in text
    assert "fig8_guidance_sweep" in text


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (lambda lab: [str(lab["root"] / "empty_again")], "not a run directory and holds none"),
        (lambda lab: [str(lab["baselines"]), "--metric", "energy"], "unknown metric 'energy'"),
        (lambda lab: [f"sqlite:///{lab['root'] / 'hollow.db'}"], "has no trials"),
        (lambda lab: ["sqlite:///" + str(lab["root"] / "missing.db")], "not found"),
    ],
)
def test_report_cli_bad_input_exits_non_zero_with_one_line(lab, tmp_path, args, message):
    (lab["root"] / "empty_again").mkdir(exist_ok=True)
    optuna.create_study(study_name="hollow", storage=f"sqlite:///{lab['root'] / 'hollow.db'}", load_if_exists=True)
    result = runner.invoke(app, ["report", *args(lab), "--out", str(tmp_path / "out")])
    assert result.exit_code != 0
    err = result.stderr.strip()
    assert err.startswith("error: ")
    assert "\n" not in err
    assert message in err
    assert not (tmp_path / "out" / "report.md").exists()


@pytest.mark.parametrize(
    "script",
    sorted(p.name for p in (REPO / "analysis").glob("fig_*.py")),
)
def test_analysis_scripts_write_their_figure(lab, tmp_path, script):
    spec = importlib.util.spec_from_file_location(script.removesuffix(".py"), REPO / "analysis" / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    out = tmp_path / "fig"
    code = module.main([lab["storage"], str(lab["baselines"]), "--out", str(out)])
    assert code == 0
    written = sorted(p.suffix for p in out.iterdir())
    assert written == [".pdf", ".png"]
    assert all(p.stat().st_size > 1000 for p in out.iterdir())


# ------------------------------------------------------------------------------- splits, words, polish
def test_figures_name_the_split_and_label_metrics_in_words(lab):
    runs = lab["runs"]
    label = A.fig_metric_by_backbone(runs, metric="energy_distance").axes[0].get_ylabel()
    assert label == "test split: energy distance, genes\n(log expression; lower is better ↓)"
    assert A.metric_label("cosine_logfc") == "cosine of log2 fold changes (higher is better ↑)"
    assert A.metric_label("deg_recall") == "recall of top DE genes (fraction; higher is better ↑)"
    assert all(info.label for info in METRICS.values())
    paired = A.fig_paired_conditions(lab["per_condition"], a="mlp", b="unet1d").axes[0]
    assert paired.get_xlabel().startswith("mlp, test split: energy distance")
    cost = A.fig_quality_cost_panels(runs, metric="energy_distance")
    assert all(ax.get_ylabel().startswith("test split: ") for ax in cost.axes)
    guidance = A.fig_guidance_sweep(runs).axes[0]
    assert guidance.get_xlabel().startswith("test split: energy distance")
    trials = A.trials_table(lab["study"])
    history = A.fig_sweep_diagnostics(trials, split="val").axes[0]
    assert history.get_ylabel() == "validation split: objective\n(lower is better ↓)"


def test_quality_vs_cost_ticks_share_one_format(lab):
    assert [A.compact_number(v) for v in (0.5, 20, 300, 1500, 20000, 3e6)] == ["0.5", "20", "300", "1.5k", "20k", "3M"]
    fig = A.fig_quality_cost_panels(lab["runs"], metric="energy_distance")
    fig.canvas.draw()
    for ax in fig.axes:
        labels = [t.get_text() for t in ax.get_xticklabels() if t.get_text()]
        assert labels, ax.get_xlabel()
        assert all("$" not in t and "^" not in t for t in labels), labels  # no 10^k mathtext beside plain numbers


def test_learning_curves_have_markers_step_zero_and_the_floor(lab):
    history = A.load_history(lab["runs"])
    assert {"val_floor_energy_distance", "val_ceiling_energy_distance"} <= set(history.columns)
    ax = A.fig_learning_curves(history, metric="energy_distance").axes[0]
    curves = [x for x in ax.lines if str(x.get_gid()).startswith("curve:")]
    assert curves
    assert all(x.get_marker() == "o" for x in curves)
    assert ax.get_xlim()[0] == 0
    floor = next(x for x in ax.lines if x.get_gid() == "floor")
    assert floor.get_ydata()[0] == pytest.approx(history["val_floor_energy_distance"].mean())
    assert any(x.get_gid() == "ceiling" for x in ax.lines)


def test_control_cells_stay_visible_over_generated_ones(lab):
    runs = A.best_runs(lab["runs"], "energy_distance")
    cells = A.cell_projection(list(runs["run_dir"]), n_conditions=1)
    assert cells.attrs["split"] == "test"
    fig = A.fig_cells_pca(cells)
    ax = fig.axes[0]
    by_gid = {c.get_gid(): c for c in ax.collections}
    control = by_gid["points:control"]
    generated = [c for gid, c in by_gid.items() if str(gid).startswith("points:generated:")]
    assert generated
    assert all(control.get_zorder() > c.get_zorder() for c in generated)
    assert len(control.get_facecolor()) == 0 or control.get_facecolor()[0][3] == 0  # rings: no fill
    assert fig.legends[0].get_title().get_text() == "cells of the test split"


def test_one_parameter_grid_gets_no_sweep_diagnostics(lab, tmp_path):
    assert A.one_parameter_grid(lab["study"]) is None  # two parameters, one of them continuous
    storage = f"sqlite:///{tmp_path / 'grid.db'}"
    grid = optuna.create_study(study_name="grid", storage=storage)
    grid.set_user_attr("objective_split", "val")
    dist = {"network.name": optuna.distributions.CategoricalDistribution(["mlp", "unet1d"])}
    done = lab["study"].trials[:2]  # mlp and unet1d, two seeds each
    for t in done:
        grid.add_trial(
            optuna.trial.create_trial(
                params={"network.name": t.params["network.name"]},
                distributions=dist,
                value=t.value,
                user_attrs=t.user_attrs,
            )
        )
    assert A.one_parameter_grid(grid) == "network.name"
    report = A.build_report([storage, lab["baselines"]], tmp_path / "r")
    skipped = dict(report.skipped)
    assert "grid over network.name alone (2 configurations" in skipped["fig5_sweep_diagnostics"]
    assert not list((tmp_path / "r" / "figures").glob("fig5*"))
    text = report.path.read_text()
    assert "Study `grid` ranked its trials by" in text
    assert "on the **val** split" in text
    assert "so they differ" in text


def test_report_names_its_split_and_places_each_backbone_between_floor_and_ceiling(lab, tmp_path):
    report = A.build_report([lab["storage"], lab["baselines"]], tmp_path / "r")
    text = report.path.read_text()
    assert "Split: every table and figure scores the **test** split" in text
    assert "Mean over runs (seeds) with a 95% t interval, on the test split." in text
    assert "## Against the floor and the ceiling" in text
    section = text.split("## Against the floor and the ceiling")[1].split("\n## ")[0]
    for backbone in ("mlp", "unet1d", "perturbation_mean"):
        line = next(x for x in section.splitlines() if x.startswith(f"- **{backbone}**"))
        assert "floor" in line
        assert "ceiling" in line
    for art in report.tables:
        assert "split" in art.caption
        df = pd.read_csv(art.files[0])
        assert "split" in df.columns or "objective_split" in df.columns, art.name
    assert set(pd.read_csv(tmp_path / "r" / "tables" / "summary.csv")["split"]) == {"test"}
    standing = pd.read_csv(tmp_path / "r" / "tables" / "standing.csv")
    assert {"backbone", "metric", "vs_floor", "vs_floor_low", "floor_verdict", "ceiling_verdict"} <= set(
        standing.columns
    )
    row = standing[(standing["backbone"] == "mlp") & (standing["metric"] == "energy_distance")].iloc[0]
    mlp = lab["runs"][lab["runs"]["backbone"] == "mlp"]
    assert row["vs_floor"] == pytest.approx((mlp["energy_distance"] - mlp["floor_energy_distance"]).mean())
    for art in report.figures:
        assert "split" in art.caption, art.name
