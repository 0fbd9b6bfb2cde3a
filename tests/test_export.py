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
from typer.testing import CliRunner

from arch_lab import api
from arch_lab.cli import app
from arch_lab.config import load_experiment
from arch_lab.export import cell_eval_tables
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
    """``arch-lab export cell-eval RUN --out DIR`` prints a command; run exactly that command."""
    pytest.importorskip("cell_eval", reason="install the cell-eval extra: pip install -e '.[cell-eval]'")
    _, result, _, _ = kang_run
    printed = CliRunner().invoke(app, ["export", "cell-eval", str(result.run_dir), "--out", str(tmp_path / "ex")])
    assert printed.exit_code == 0, printed.output
    command = shlex.split(printed.stdout.strip().splitlines()[-1])
    assert command[:2] == ["cell-eval", "run"]
    exe = shutil.which("cell-eval", path=str(Path(sys.executable).parent)) or shutil.which("cell-eval")
    assert exe is not None
    env = {**os.environ, "OMP_NUM_THREADS": "1", "NUMBA_NUM_THREADS": "2"}
    proc = subprocess.run([exe, *command[1:]], capture_output=True, text=True, timeout=1200, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    ours = result.per_condition.set_index("state")["pearson_delta"]
    assert len(ours) == 1  # fold 0 tests one cell type
    for state, value in ours.items():
        theirs = pd.read_csv(tmp_path / "ex" / "cell_eval" / f"{state}_results.csv").set_index("perturbation")
        assert theirs.loc["stimulated", "pearson_delta"] == pytest.approx(value, abs=1e-5)


def test_export_refuses_a_run_that_is_not_complete(tmp_path):
    printed = CliRunner().invoke(app, ["export", "cell-eval", str(tmp_path), "--out", str(tmp_path / "ex")])
    assert printed.exit_code != 0
    assert "not a run directory" in printed.stderr or "not completed" in printed.stderr


def test_predict_reads_the_data_column_names_and_observed_counts(kang_run, tmp_path):
    cfg, result, task, _ = kang_run
    conditions = tmp_path / "conditions.csv"
    pd.DataFrame({"condition": ["stimulated", "stimulated"], "cell_type": ["CD4T", "B"]}).to_csv(
        conditions, index=False
    )
    out = tmp_path / "generated.h5ad"
    printed = CliRunner().invoke(
        app,
        ["predict", str(result.run_dir), "--conditions", str(conditions), "--out", str(out), "--n-cells", "observed"],
    )
    assert printed.exit_code == 0, printed.output
    generated = ad.read_h5ad(out)
    assert "condition" in generated.obs
    counts = generated.obs.groupby("cell_type", observed=True).size()
    for cell_type in ("CD4T", "B"):
        state_cells = task.cells(None, next(c for c in task.conditions("test") + task.conditions("val") + task.conditions("train")
                                            if c.state == cell_type and c.perturbation == "stimulated"))  # fmt: skip
        assert counts[cell_type] == len(state_cells)
    bad = CliRunner().invoke(app, ["predict", str(result.run_dir), "--conditions", str(conditions), "--n-cells", "x"])
    assert bad.exit_code != 0
    assert "--n-cells x: give a positive number of cells or 'observed'" in bad.stderr
