"""Validation on held-out cells of training conditions (``train.val_train_fraction``)."""

from __future__ import annotations

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import KANG, experiment_dict

from arch_lab.api import load_run_task, train
from arch_lab.config import TaskConfig, experiment_from_dict
from arch_lab.data import build_task, load_perturbation_data, make_split, read_anndata
from arch_lab.data.splits import MIN_CELLS, hold_out_training_cells


@pytest.fixture(scope="module")
def kang():
    adata = read_anndata(KANG)
    return load_perturbation_data(
        adata, perturbation_key="condition", control_value="control", covariate_keys=["cell_type"], max_genes=200
    )


def counts(data, split) -> pd.DataFrame:
    """Cells per (state, perturbation, split)."""
    obs = data.obs.assign(split=split.to_numpy())
    return obs.groupby(["state", "perturbation", "split"], observed=True).size().unstack(fill_value=0)


@pytest.mark.parametrize("fold", [1, 6])
def test_moves_the_fraction_of_every_training_condition_and_leaves_test_alone(kang, fold):
    before = make_split(kang, TaskConfig(kind="covariate_transfer", n_folds=7, fold=fold))
    after = hold_out_training_cells(kang, before, 0.2, seed=0)
    # nothing leaves val or test, and nothing enters test
    assert (after[before == "test"] == "test").all()
    assert (after[before == "val"] == "val").all()
    assert set(after[after != before]) == {"val"}
    c0, c1 = counts(kang, before), counts(kang, after)
    ctrl = kang.control_value
    test_state = c0[c0.get("test", 0) > 0].reset_index().query("perturbation != @ctrl")["state"].item()
    val_state = c0[c0.get("val", 0) > 0].reset_index().query("perturbation != @ctrl")["state"].item()
    for (state, pert), row in c0.iterrows():
        moved = c1.loc[(state, pert), "val"] - row.get("val", 0)
        if state == test_state:
            # its training controls are the test source pool: the state keeps all its cells
            assert moved == 0, (state, pert)
        elif state == val_state:
            assert moved == 0  # its condition is the val one; its controls already have a val share
        elif pert != ctrl:
            assert moved == int(0.2 * row["train"]), (state, pert)  # floor(fraction x training cells)
            assert moved >= MIN_CELLS
        else:
            # a state without val controls gives some for scoring its moved cells
            assert moved == max(int(0.2 * row["train"]), 1), (state, pert)
    # every state but the test one now validates: the held-out val cell type and the training cell types
    obs = kang.obs.assign(split=after.to_numpy())
    val_states = set(obs.loc[(obs["split"] == "val") & (obs["perturbation"] != ctrl), "state"])
    assert val_states == set(kang.obs["state"].unique()) - {test_state}


def test_zero_fraction_is_the_task_split_and_the_draw_is_seeded(kang):
    split = make_split(kang, TaskConfig(kind="covariate_transfer", n_folds=7, fold=2))
    assert hold_out_training_cells(kang, split, 0.0, seed=0).equals(split)
    a = hold_out_training_cells(kang, split, 0.15, seed=0)
    b = hold_out_training_cells(kang, split, 0.15, seed=0)
    c = hold_out_training_cells(kang, split, 0.15, seed=1)
    assert a.equals(b)
    assert not a.equals(c)
    assert (a == "val").sum() == (c == "val").sum()


def test_small_conditions_and_states_without_val_controls_stay_in_training():
    # two states with training conditions A (30 cells) and B (5 cells); x validates A+B (and has val controls),
    # y tests A+B and has no val controls, so its training controls (the test source pool) must stay
    sizes = {"control": 40, "A": 30, "B": 5, "A+B": 10}
    rows = [(p, s) for s in ("x", "y") for p, n in sizes.items() for _ in range(n)]
    obs = pd.DataFrame(rows, columns=["condition", "cell_type"], index=[f"c{i}" for i in range(len(rows))])
    rng = np.random.default_rng(0)
    adata = ad.AnnData(X=rng.poisson(1.0, (len(obs), 60)).astype(np.float32), obs=obs)
    data = load_perturbation_data(
        adata, perturbation_key="condition", control_value="control", covariate_keys=["cell_type"], counts=True
    )
    split = pd.Series("train", index=data.obs.index, dtype=object)
    state, pert = data.obs["state"].to_numpy(), data.obs["perturbation"].to_numpy()
    split[(pert == "A+B") & (state == "x")] = "val"
    split[(pert == "A+B") & (state == "y")] = "test"
    for s, label in (("x", "val"), ("y", "test")):
        ctrl = np.flatnonzero(data.is_control & (state == s))
        split.iloc[ctrl[25:]] = label
    after = hold_out_training_cells(data, split, 0.2, seed=0)
    changed = data.obs[(after != split).to_numpy()]
    # x/A: floor(0.2 x 30) = 6; x/B: floor(0.2 x 5) = 1 < MIN_CELLS; x's controls: it has val ones already; y: none
    assert changed.groupby(["state", "perturbation"], observed=True).size().to_dict() == {("x", "A"): 6}


def test_a_run_validates_on_training_conditions_and_reloads_its_own_split(tmp_path, synthetic_h5ad):
    raw = experiment_dict(
        synthetic_h5ad,
        tmp_path,
        train={"max_steps": 2, "eval_every": 1, "val_train_fraction": 0.25, "val_conditions": 50, "progress": False},
    )
    cfg = experiment_from_dict(raw)
    task = build_task(cfg)
    train_conditions = set(task.conditions("train"))
    val_conditions = set(task.conditions("val"))
    assert val_conditions & train_conditions  # training conditions are validated too
    plain = build_task(cfg.model_copy(update={"train": cfg.train.model_copy(update={"val_train_fraction": 0.0})}))
    assert set(plain.conditions("val")) < val_conditions
    assert (task.split == "test").equals(plain.split == "test")
    result = train(cfg, task=task, run_dir=tmp_path / "run")
    assert any(np.isfinite(h.get("val_energy_distance", np.nan)) for h in result.fit_summary["history"])
    again = load_run_task(result.run_dir)
    assert again.split.equals(task.split)  # the recorded split, not carved a second time


def test_only_methods_that_validate_give_up_training_cells(tmp_path, synthetic_h5ad):
    """A closed-form baseline has no checkpoint to pick: its run keeps every training cell in training."""
    from arch_lab.methods import list_methods, task_config
    from arch_lab.methods.base import _METHODS

    raw = experiment_dict(synthetic_h5ad, tmp_path, train={"val_train_fraction": 0.25, "progress": False})
    flow = experiment_from_dict(raw)
    assert task_config(flow) is flow  # flow matching validates: the fraction stays
    for name in list_methods():
        cfg = flow.model_copy(update={"method": flow.method.model_copy(update={"name": name, "params": {}})})
        expected = 0.25 if _METHODS[name].validates else 0.0
        assert task_config(cfg).train.val_train_fraction == expected, name
    baseline = flow.model_copy(update={"method": flow.method.model_copy(update={"name": "perturbation_mean"})})
    result = train(baseline, run_dir=tmp_path / "baseline")
    recorded = pd.read_csv(result.run_dir / "split.csv", index_col="cell_id")["split"]
    plain = build_task(task_config(baseline))
    every_cell = build_task(
        flow.model_copy(update={"train": flow.train.model_copy(update={"val_train_fraction": 0.0})})
    )
    assert recorded.reindex(every_cell.split.index).equals(every_cell.split.rename(recorded.name))
    assert (plain.split == "train").sum() > (build_task(flow).split == "train").sum()
