"""``analysis/source_offset.py``: the training cells' per-gene means of every dataset a study trains on."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pandas as pd
from conftest import REPO

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from analysis import source_offset
from arch_lab.data.task import build_task
from arch_lab.sweeps.sweep import load_sweep

KANG = REPO / "sweeps" / "probes" / "centred_kang.yaml"


def test_one_row_per_dataset_with_the_training_means_of_every_training_cell():
    rows = source_offset.dataset_rows(KANG, "quick")
    # four arms differ only in network and source: one dataset (the quick profile has one gene count)
    assert len(rows) == 1
    row = rows[0]
    sweep = load_sweep(KANG, "quick")
    task = build_task(sweep.experiment(sweep.grid()[0]))
    X = np.asarray(task.data.X[np.sort(task.cells("train"))], dtype=np.float64)
    mu = X.mean(0)
    assert row["n_genes"] == X.shape[1] == 32
    assert row["dataset"] == "kang_celltype_transfer"
    np.testing.assert_allclose(row["mean_sq_offset"], float(np.mean(mu**2)), rtol=1e-5)
    np.testing.assert_allclose(row["mean_gene_mean"], float(mu.mean()), rtol=1e-5)
    np.testing.assert_allclose(row["observed_variance_per_gene"], float(X.var(0).mean()), rtol=1e-9)


def test_the_command_writes_the_table_and_names_a_missing_yaml(tmp_path: Path, capsys):
    out = tmp_path / "offset.csv"
    assert source_offset.main([str(KANG), "--profile", "quick", "--out", str(out)]) == 0
    table = pd.read_csv(out)
    expected = pd.DataFrame(source_offset.dataset_rows(KANG, "quick"))
    assert list(table.columns) == list(expected.columns)
    assert table["study"].tolist() == ["centred_kang"]
    np.testing.assert_allclose(table["mean_sq_offset"], expected["mean_sq_offset"], rtol=1e-12)
    assert source_offset.main([str(tmp_path / "nope.yaml"), "--out", str(tmp_path / "o.csv")]) == 2
    assert "nope.yaml" in capsys.readouterr().err
    assert not (tmp_path / "o.csv").exists()


def test_each_row_names_the_data_settings_its_grid_varies():
    rows = source_offset.dataset_rows(REPO / "sweeps" / "probes" / "gene_identity_k562.yaml")
    # five folds x five arms that change no data setting: one row per fold, named by it
    assert sorted(row["cell"] for row in rows) == [f"task.fold={fold}" for fold in range(5)]
    assert len({row["mean_sq_offset"] for row in rows}) == 5  # each fold trains on its own cells
    rows = source_offset.dataset_rows(REPO / "sweeps" / "probes" / "layernorm_synthetic.yaml", "quick")
    assert [row["cell"] for row in rows] == [""]  # nothing in data. or task. varies
    rows = source_offset.dataset_rows(REPO / "sweeps" / "probes" / "centred_kang.yaml")
    # two gene counts, four arms that change no data setting: two datasets, named by their gene count
    assert sorted(row["cell"] for row in rows) == ["data.max_genes=2048", "data.max_genes=512"]
    assert sorted(row["n_genes"] for row in rows) == [512, 2048]
