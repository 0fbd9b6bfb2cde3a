"""Outputs the field's tools accept: predictions with the data's own names, and a cell-eval export that cell-eval
scores unchanged, agreeing with arch_lab's own numbers."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
from conftest import EXPERIMENTS

from arch_lab import api
from arch_lab.config import load_experiment
from arch_lab.export import cell_eval_tables, export_cell_eval
from arch_lab.harness import perturbation_column


@pytest.fixture(scope="module")
def kang_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("runs")
    cfg = load_experiment(EXPERIMENTS / "kang_celltype_transfer.yaml",
                          {"method.name": "perturbation_mean", "output_dir": str(out)})  # fmt: skip
    result = api.train(cfg)
    return cfg, result, api.load_run_task(result.run_dir), ad.read_h5ad(result.run_dir / "predictions.h5ad")


def test_predictions_keep_the_data_column_names_genes_and_log1p(kang_run):
    cfg, _, task, pred = kang_run
    assert perturbation_column(pred) == cfg.data.perturbation_key == "condition"
    assert "condition" in pred.obs
    assert "cell_type" in pred.obs
    assert "perturbation" not in pred.obs
    assert list(pred.var_names) == task.data.genes
    source = ad.read_h5ad(EXPERIMENTS.parent / "data" / "kang_scgen_valid" / "valid.h5ad")
    assert list(pred.var.columns) == list(source.var.columns)
    pd.testing.assert_frame_equal(pred.var, source.var.loc[task.data.genes], check_names=False)
    assert "log1p" in pred.uns
    assert pred.uns["arch_lab"]["control_value"] == "control"
    assert pred.uns["arch_lab"]["gene_selection"].startswith("top 500")


def test_cell_eval_tables_hold_the_same_perturbations_and_disjoint_controls(kang_run):
    cfg, _, task, pred = kang_run
    p, r = cell_eval_tables(task, pred, cfg.eval.split)
    key = "condition"
    assert set(p.obs[key]) == set(r.obs[key]) == {"control", "stimulated"}
    assert list(p.var_names) == list(r.var_names) == task.data.genes
    for state in sorted(set(pred.obs["state"])):
        p_ctrl = p[(p.obs[key] == "control").to_numpy() & (p.obs["state"] == state).to_numpy()].X
        r_ctrl = r[(r.obs[key] == "control").to_numpy() & (r.obs["state"] == state).to_numpy()].X
        np.testing.assert_array_equal(p_ctrl, task.data.X[task.controls(state, "train")])
        np.testing.assert_array_equal(r_ctrl, task.data.X[task.controls(state, cfg.eval.split)])
    assert float(p.X.max()) < 15
    assert float(p.X.min()) >= 0


@pytest.mark.slow
def test_cell_eval_scores_an_export_unchanged_and_agrees_on_pearson_delta(kang_run, tmp_path):
    pytest.importorskip("cell_eval", reason="install the cell-eval extra: pip install -e '.[cell-eval]'")
    cfg, result, task, pred = kang_run
    export = export_cell_eval(task, pred, cfg.eval.split, tmp_path / "export")
    command = shlex.split(export.command(num_threads=1, profile="anndata"))
    exe = shutil.which("cell-eval", path=str(Path(sys.executable).parent)) or shutil.which("cell-eval")
    assert exe is not None
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "1"}
    proc = subprocess.run([exe, *command[1:]], capture_output=True, text=True, timeout=900, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours = result.per_condition.set_index("state")["pearson_delta"]
    assert len(ours) == 2
    for state, value in ours.items():
        theirs = pd.read_csv(export.outdir / f"{state}_results.csv").set_index("perturbation")
        assert theirs.loc["stimulated", "pearson_delta"] == pytest.approx(value, abs=1e-5)
