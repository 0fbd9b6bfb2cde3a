"""Cross-validation folds over held-out conditions, and PerturBench split files."""

from __future__ import annotations

import pandas as pd
import pytest
from conftest import DEVEL, KANG

from arch_lab.config import TaskConfig
from arch_lab.data import load_perturbation_data, load_split, make_split, read_anndata
from arch_lab.data.splits import fold_of_pairs
from arch_lab.errors import ConfigError, DataError


def load(path, **kw):
    args = {"perturbation_key": "condition", "control_value": "control", "covariate_keys": ["cell_type"]}
    return load_perturbation_data(read_anndata(path), **{**args, **kw})


@pytest.fixture(scope="module")
def kang():
    return load(KANG, max_genes=200)


@pytest.fixture(scope="module")
def k562():
    return load(DEVEL, subset={"cell_type": ["k562"]})


def heldout(data, split) -> dict[str, set[tuple[str, str]]]:
    obs = data.obs.assign(split=split)
    obs = obs[obs["perturbation"] != data.control_value]
    return {
        name: set(map(tuple, obs.loc[obs["split"] == name, ["perturbation", "state"]].drop_duplicates().to_numpy()))
        for name in ("val", "test")
    }


def test_kang_folds_test_every_cell_type_exactly_once(kang):
    states = sorted(kang.obs["state"].unique())
    assert len(states) == 7
    tested: list[tuple[str, str]] = []
    for fold in range(7):
        split = make_split(kang, TaskConfig(kind="covariate_transfer", n_folds=7, fold=fold))
        held = heldout(kang, split)
        assert len(held["test"]) == 1
        assert len(held["val"]) == 1
        assert not held["test"] & held["val"]
        tested += held["test"]
        # the next fold's pair validates this one
        nxt = heldout(kang, make_split(kang, TaskConfig(kind="covariate_transfer", n_folds=7, fold=(fold + 1) % 7)))
        assert held["val"] == nxt["test"]
    assert sorted(tested) == [("stimulated", s) for s in states]


def test_k562_folds_test_all_five_eligible_combinations(k562):
    folds = fold_of_pairs(k562, TaskConfig(kind="combination", n_folds=5))
    assert len(folds) == 5
    assert sorted(folds.values()) == [0, 1, 2, 3, 4]
    for p, _ in folds:
        assert "+" in p
        assert all((t, "k562") in set(map(tuple, k562.obs[["perturbation", "state"]].to_numpy())) for t in p.split("+"))
    tested = set()
    for fold in range(5):
        held = heldout(k562, make_split(k562, TaskConfig(kind="combination", n_folds=5, fold=fold)))
        assert len(held["test"]) == 1
        tested |= held["test"]
    assert tested == set(folds)


def test_fold_assignment_is_seeded_and_balanced(k562):
    a = fold_of_pairs(k562, TaskConfig(kind="combination", n_folds=2, seed=0))
    b = fold_of_pairs(k562, TaskConfig(kind="combination", n_folds=2, seed=0))
    assert a == b
    sizes = pd.Series(a).value_counts()
    assert sizes.max() - sizes.min() <= 1


def test_more_folds_than_eligible_pairs_is_refused(k562):
    with pytest.raises(DataError, match=r"task.n_folds=6 but only 5 .* use task.n_folds <= 5"):
        make_split(k562, TaskConfig(kind="combination", n_folds=6, fold=0))


@pytest.mark.parametrize(
    ("section", "message"),
    [
        ({"kind": "manual", "holdout": [{"covariates": {"cell_type": "B"}}], "n_folds": 3}, "a manual task lists"),
        ({"kind": "combination", "fold": 2}, "set n_folds too"),
        ({"kind": "combination", "n_folds": 3, "fold": 3}, "out of range for n_folds=3"),
        ({"kind": "combination", "n_folds": 1}, "greater than or equal to 2"),
    ],
)
def test_bad_fold_settings_are_named(section, message):
    from arch_lab.config import experiment_from_dict

    raw = {"name": "x", "data": {"path": "x.h5ad", "perturbation_key": "condition", "control_value": "control"},
           "task": section}  # fmt: skip
    with pytest.raises(ConfigError, match=message):
        experiment_from_dict(raw)


def test_perturbench_split_csv_loads_as_a_task(kang, tmp_path):
    split = make_split(kang, TaskConfig(kind="covariate_transfer", n_folds=7, fold=3))
    headerless = tmp_path / "perturbench_split.csv"
    split.to_csv(headerless, header=False)  # PerturBench writes `cell_id,split` rows without a header
    assert not headerless.read_text().startswith("cell_id")
    pd.testing.assert_series_equal(load_split(headerless, kang), split, check_dtype=False, check_names=False)
    bad = tmp_path / "bad.csv"
    bad.write_text("barcode,group\nAAAC,train\n")
    with pytest.raises(DataError, match="expected columns cell_id,split"):
        load_split(bad, kang)
