"""docs/tutorial.py, the notebook tutorial, runs end to end at a tiny budget (TUTORIAL_TINY=1): an AnnData, two
backbones, a sweep, the report figures, a cell-eval export and the optuna-dashboard command."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time

import pytest
from conftest import REPO

TUTORIAL = REPO / "docs" / "tutorial.py"


def test_tutorial_is_a_percent_format_notebook():
    text = TUTORIAL.read_text()
    assert "format_name: percent" in text.split("# ---", 2)[1]  # the jupytext header
    cells = re.split(r"^# %%", text, flags=re.M)[1:]
    markdown = [c for c in cells if c.startswith(" [markdown]")]
    assert len(cells) >= 15
    assert len(markdown) >= 7
    for cell in markdown:  # markdown cells are comments only
        assert all(line.startswith("#") for line in cell.strip().splitlines()[1:]), cell[:60]
    assert "run_server" not in text  # the dashboard command is shown, never started


@pytest.mark.slow
def test_tutorial_runs_at_a_tiny_budget(tmp_path):
    env = {**os.environ, "TUTORIAL_TINY": "1", "TUTORIAL_OUT": str(tmp_path), "MPLBACKEND": "Agg"}
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(REPO), env.get("PYTHONPATH")) if p)
    start = time.perf_counter()
    done = subprocess.run([sys.executable, str(TUTORIAL)], cwd=REPO, env=env, capture_output=True, text=True,
                          timeout=300)  # fmt: skip
    elapsed = time.perf_counter() - start
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    out = done.stdout
    runs = sorted((tmp_path / "runs" / "kang_celltype_transfer").iterdir())
    assert len(runs) == 2
    for run in runs:
        assert (run / "metrics.json").is_file()
        assert (run / "data.h5ad").is_file()  # trained on the AnnData in memory
        assert any((run / "tensorboard").iterdir())
    assert (tmp_path / "report" / "report.md").is_file()
    assert (tmp_path / "report" / "figures" / "fig1_metric_by_backbone.png").is_file()
    assert (tmp_path / "cell_eval" / "pred.h5ad").is_file()
    assert (tmp_path / "cell_eval" / "real.h5ad").is_file()
    assert "cell-eval run -ap " in out
    assert f"optuna-dashboard sqlite:///{tmp_path / 'sweep.db'}" in out
    assert elapsed < 240, f"the tiny tutorial took {elapsed:.0f} s"
