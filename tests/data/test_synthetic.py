"""The synthetic perturb-seq benchmark: locality knob, recoverable ground truth, config and CLI wiring."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pytest
from conftest import EXPERIMENTS
from typer.testing import CliRunner

from arch_lab.cli import app
from arch_lab.config import DataConfig, experiment_from_dict, load_experiment
from arch_lab.data.preprocess import normalize_log1p
from arch_lab.data.synthetic import (
    SyntheticConfig,
    config_from_adata,
    contiguity_score,
    program_contiguity,
    simulate,
    synthetic_config,
)
from arch_lab.data.task import build_task, load_data
from arch_lab.errors import ConfigError

SMALL = {"cells_per_condition": 2, "control_cells": 2}  # cheap when only the gene layout matters


@pytest.fixture(scope="module")
def bench() -> ad.AnnData:
    return simulate(SyntheticConfig())


def empirical(adata: ad.AnnData, log_mean: bool = False) -> np.ndarray:
    """Observed ``[perturbation, state, gene]`` shift against the state's controls, computed from obs and X.

    ``log_mean``: log ratio of mean normalised expression instead of the difference of mean X.
    """
    gt = adata.uns["ground_truth"]
    values = np.expm1(adata.X.astype(np.float64)) if log_mean else adata.X.astype(np.float64)
    cond, state = adata.obs["condition"].to_numpy(), adata.obs["cell_type"].to_numpy()
    out = np.zeros(gt["delta"].shape)
    for s, name in enumerate(gt["states"]):
        ctrl = values[(cond == "control") & (state == name)].mean(axis=0)
        for k, pert in enumerate(gt["perturbations"]):
            mean = values[(cond == pert) & (state == name)].mean(axis=0)
            out[k, s] = np.log(mean) - np.log(ctrl) if log_mean else mean - ctrl
    return out


# ------------------------------------------------------------------------------------------------ locality
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_full_locality_puts_every_program_in_one_block(seed):
    a = simulate(SyntheticConfig(locality=1.0, seed=seed, **SMALL))
    for p in range(a.uns["ground_truth"]["config"]["n_programs"]):
        pos = np.sort(a.var["position"].to_numpy()[a.var["program"].to_numpy() == p])
        assert len(pos) == 12, f"program {p} at positions {pos}"
        assert np.all(np.diff(pos) == 1), f"program {p} at positions {pos}"
    assert program_contiguity(a) == pytest.approx(1.0)


def test_zero_locality_is_near_chance():
    scores = [program_contiguity(simulate(SyntheticConfig(locality=0.0, seed=s, **SMALL))) for s in range(6)]
    assert abs(np.mean(scores)) < 0.06, scores
    assert max(abs(x) for x in scores) < 0.15, scores


def test_contiguity_increases_with_locality_on_average():
    levels = [0.0, 0.25, 0.5, 0.75, 1.0]
    means = [
        np.mean([program_contiguity(simulate(SyntheticConfig(locality=lv, seed=s, **SMALL))) for s in range(4)])
        for lv in levels
    ]
    assert np.all(np.diff(means) > 0.05), means


def test_locality_only_permutes_the_genes():
    a = simulate(SyntheticConfig(locality=1.0, **SMALL))
    b = simulate(SyntheticConfig(locality=0.3, **SMALL))
    assert list(a.var_names) != list(b.var_names)
    b = b[:, a.var_names]
    np.testing.assert_array_equal(a.layers["counts"], b.layers["counts"])
    np.testing.assert_array_equal(a.var["program"], b.var["program"])


def test_layout_seed_crosses_one_gene_order_with_another_biology():
    failing = simulate(SyntheticConfig(locality=0.0, seed=0, **SMALL))
    own = simulate(SyntheticConfig(locality=0.0, seed=1, **SMALL))
    crossed = simulate(SyntheticConfig(locality=0.0, seed=1, layout_seed=0, **SMALL))
    # seed 0's order: the same canonical gene (name) and program at every position, and so the same contiguity
    assert list(crossed.var_names) == list(failing.var_names)
    np.testing.assert_array_equal(crossed.var["program"], failing.var["program"])
    assert program_contiguity(crossed) == program_contiguity(failing)
    assert list(own.var_names) != list(failing.var_names)
    # seed 1's cells: the crossed benchmark is seed 1's, permuted
    np.testing.assert_array_equal(crossed[:, own.var_names].layers["counts"], own.layers["counts"])
    assert not np.array_equal(crossed.layers["counts"], failing.layers["counts"])
    # layout_seed equal to seed is the default order, and it is recorded with the benchmark
    same = simulate(SyntheticConfig(locality=0.0, seed=1, layout_seed=1, **SMALL))
    assert list(same.var_names) == list(own.var_names)
    assert config_from_adata(crossed).layout_seed == 0
    assert config_from_adata(own).layout_seed is None


def test_contiguity_score_reference_values():
    assert contiguity_score([0, 0, 0, -1, 1, 1, 1, -1]) == pytest.approx(1.0)
    assert contiguity_score([0, 1, 0, 1, 0, 1, -1, -1]) < 0  # below chance: never two alike side by side
    assert np.isnan(contiguity_score([-1, -1, 0, 1]))


# ---------------------------------------------------------------------------------------------- ground truth
def test_ground_truth_effects_are_recoverable(bench):
    gt = bench.uns["ground_truth"]
    emp = empirical(bench)
    affected = gt["affected"]
    assert affected.any(axis=2).all(), "every perturbation shifts a program in every state"
    r = np.corrcoef(emp[affected], gt["delta"][affected])[0, 1]
    assert r > 0.95, r
    # Genes outside the shifted programs move only by the (recorded) total-count normalisation offset.
    assert np.abs(emp - gt["delta"])[~affected].mean() < 0.05
    assert np.abs(emp[~affected]).mean() < 0.25 * np.abs(emp[affected]).mean()
    per_condition = [
        np.corrcoef(emp[k, s, affected[k, s]], gt["delta"][k, s, affected[k, s]])[0, 1]
        for k in range(emp.shape[0])
        for s in range(emp.shape[1])
    ]
    assert np.median(per_condition) > 0.9, np.median(per_condition)


def test_interacting_combinations_deviate_from_the_sum_of_singles(bench):
    gt = bench.uns["ground_truth"]
    perts = list(gt["perturbations"])
    assert gt["interacting"].sum() == round(0.5 * len(gt["combinations"]))
    lfc = empirical(bench, log_mean=True)
    # Remove each condition's normalisation offset (the median shift of genes outside its programs).
    for k in range(lfc.shape[0]):
        for s in range(lfc.shape[1]):
            lfc[k, s] -= np.median(lfc[k, s, ~gt["affected"][k, s]])
    deviation = {}
    for combo, flag in zip(gt["combinations"], gt["interacting"], strict=True):
        a, b = (perts.index(t) for t in combo.split("+"))
        ab = perts.index(combo)
        genes = gt["affected"][ab].any(axis=0)
        additive = lfc[a][:, genes] + lfc[b][:, genes]
        deviation[combo] = (bool(flag), np.linalg.norm(lfc[ab][:, genes] - additive) / np.linalg.norm(additive))
    additive = [d for flag, d in deviation.values() if not flag]
    interacting = [d for flag, d in deviation.values() if flag]
    assert max(additive) < 0.35, deviation
    assert min(interacting) > 0.45, deviation


def test_x_is_log_normalised_and_counts_are_integers(bench):
    counts = bench.layers["counts"]
    assert np.issubdtype(counts.dtype, np.integer)
    assert counts.min() >= 0
    assert bench.X.dtype == np.float32
    assert bench.X.min() >= 0
    totals = np.expm1(bench.X.astype(np.float64)).sum(axis=1)
    np.testing.assert_allclose(totals, np.median(counts.sum(axis=1)), rtol=1e-3)
    np.testing.assert_allclose(bench.X, normalize_log1p(counts.astype(np.float32)), rtol=1e-6)
    assert set(bench.obs["condition"]) >= {"control", "P01"}
    assert set(bench.obs["cell_type"]) == {"S1", "S2", "S3"}
    assert (bench.obs.groupby(["cell_type", "condition"]).size().drop("control", level=1) == 100).all()


def test_h5ad_round_trip(bench, tmp_path):
    path = tmp_path / "bench.h5ad"
    bench.write_h5ad(path)
    back = ad.read_h5ad(path)
    np.testing.assert_array_equal(back.X, bench.X)
    np.testing.assert_array_equal(back.layers["counts"], bench.layers["counts"])
    np.testing.assert_array_equal(back.var["program"], bench.var["program"])
    for key, value in bench.uns["ground_truth"].items():
        if key != "config":
            np.testing.assert_array_equal(np.asarray(back.uns["ground_truth"][key]), np.asarray(value), err_msg=key)
    assert config_from_adata(back) == SyntheticConfig()


# -------------------------------------------------------------------------------------------- config wiring
def test_experiment_config_builds_a_task_and_overrides_apply():
    over = {"data.synthetic.locality": 0.0, "data.synthetic.n_genes": 200, "data.synthetic.cells_per_condition": 20}
    cfg = load_experiment(EXPERIMENTS / "synthetic_combination.yaml", over)
    assert cfg.data.synthetic.locality == 0.0
    task = build_task(cfg)
    assert task.data.n_genes == 200
    np.testing.assert_array_equal(task.data.X, simulate(cfg.data.synthetic).X)
    held = task.obs[task.obs["split"].isin(["val", "test"]) & (task.obs["perturbation"] != "control")]
    assert len(held)
    assert held["perturbation"].str.contains("+", regex=False).all()

    cfg = load_experiment(EXPERIMENTS / "synthetic_transfer.yaml", {"data.synthetic.cells_per_condition": 20})
    task = build_task(cfg)
    held = task.obs[task.obs["split"].isin(["val", "test"]) & (task.obs["perturbation"] != "control")]
    assert set(held["state"]) == {"S3"}
    assert held["perturbation"].nunique() == 24


def test_counts_layer_goes_through_the_loader_normalisation():
    data_cfg = {"synthetic": {"cells_per_condition": 20}, "covariate_keys": ["cell_type"]}
    from_x = load_data(DataConfig.model_validate(data_cfg))
    from_counts = load_data(DataConfig.model_validate({**data_cfg, "layer": "counts"}))
    assert any("raw counts detected" in n for n in from_counts.notes)
    np.testing.assert_allclose(from_counts.X, from_x.X, rtol=1e-5)
    hvg = load_data(DataConfig.model_validate({**data_cfg, "max_genes": 64}))
    assert hvg.n_genes == 64


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ({"data.synthetic.locality": 1.5}, r"^data\.synthetic\.locality: .*less than or equal to 1"),
        ({"data.synthetic.localty": 0.5}, r"^data\.synthetic\.localty: unknown key"),
        ({"data.path": "x.h5ad"}, r"^data: give exactly one of 'path' .* or 'synthetic'"),
        ({"data.synthetic": None}, r"^data: give exactly one of 'path' .* or 'synthetic'"),
        ({"data.synthetic.program_size": 40}, r"^data\.synthetic: n_programs \* program_size exceeds n_genes"),
    ],
)
def test_bad_config_is_one_line(override, message):
    raw = {"name": "x", "data": {"synthetic": {}}, "task": {"kind": "combination"}}
    with pytest.raises(ConfigError, match=message) as err:
        experiment_from_dict(raw, override)
    assert "\n" not in str(err.value)


def test_synthetic_config_errors_name_the_key():
    with pytest.raises(ConfigError, match=r"^n_genz: unknown key"):
        synthetic_config({"n_genz": 10})
    with pytest.raises(ConfigError, match=r"^effect_range: "):
        synthetic_config({"effect_range": [2.0, 1.0]})


def test_cli_writes_the_benchmark(tmp_path):
    out = tmp_path / "bench.h5ad"
    result = CliRunner().invoke(app, ["synth", str(out), "--set", "locality=0", "--set", "cells_per_condition=3"])
    assert result.exit_code == 0, result.output
    back = ad.read_h5ad(out)
    assert config_from_adata(back).locality == 0.0
    assert abs(program_contiguity(back)) < 0.2
    bad = CliRunner().invoke(app, ["synth", str(out), "--set", "locality=2"])
    assert bad.exit_code != 0
    assert "locality" in bad.output
