"""``analysis/partial_curves.py``: the validation curves of a study's runs, finished or not."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pandas as pd
import yaml
from conftest import REPO

if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from analysis import partial_curves
from arch_lab import api
from arch_lab.rundir import RunDir
from arch_lab.sweeps.sweep import load_sweep


def small_sweep(tmp_path: Path) -> Path:
    """Two arms on a tiny synthetic dataset, 4 steps with a validation every 2, two seeds."""
    spec = {
        "study": {"name": "partial", "output_dir": str(tmp_path / "runs")},
        "base": str(REPO / "experiments" / "synthetic_combination.yaml"),
        "fixed": {
            "data.synthetic.n_genes": 24, "data.synthetic.n_programs": 2, "data.synthetic.program_size": 6,
            "data.synthetic.n_single": 4, "data.synthetic.n_combinations": 3,
            "data.synthetic.cells_per_condition": 12, "data.synthetic.control_cells": 24,
            "train.max_steps": 4, "train.eval_every": 2, "train.checkpoint_every": 2, "train.val_conditions": 1,
            "train.val_cells": 8, "train.threads": 1, "train.progress": False, "flow.steps": 2, "eval.n_cells": 8,
            "eval.pca_components": 4, "eval.deg_top_k": 5, "eval.energy_max_cells": 16,
        },
        "objective": {"metric": "energy_distance", "split": "val", "direction": "minimize"},
        "space": {"arm": {"type": "arms", "choices": {
            "mlp": {"network.name": "mlp"},
            "mlp_wide": {"network.name": "mlp", "network.width": 32},
        }}},
        "sampler": {"type": "brute_force", "seed": 0},
        "budget": {"replicates": 2},
    }  # fmt: skip
    path = tmp_path / "partial.yaml"
    path.write_text(yaml.safe_dump(spec))
    return path


def test_runs_are_named_by_their_grid_point_and_the_furthest_copy_of_a_replicate_is_kept(tmp_path: Path, capsys):
    sweep = load_sweep(small_sweep(tmp_path))
    root = sweep.run_root
    trained = {}
    for number, point in enumerate(sweep.grid()):
        cfg = sweep.experiment(point, 1)
        api.train(cfg, run_dir=root / f"trial-{number}" / "seed-1")
        trained[point["arm"]] = cfg.seed
    # a copy of the first run that got less far (as a requeued trial leaves), and a run of another experiment
    stale = root / "trial-9" / "seed-1"
    shutil.copytree(root / "trial-0" / "seed-1", stale)
    log = pd.read_csv(stale / RunDir.TRAIN_LOG)
    log[log["step"] <= 2].to_csv(stale / RunDir.TRAIN_LOG, index=False)
    RunDir(stale).set_status("interrupted", reason="SIGTERM")
    foreign = root / "trial-8" / "seed-1"
    shutil.copytree(root / "trial-1" / "seed-1", foreign)
    config = foreign / RunDir.CONFIG
    config.write_text(config.read_text().replace("max_steps: 4", "max_steps: 5"))

    table, skipped = partial_curves.partial_curves(sweep)
    assert skipped == [f"{foreign}: its config is none of the study's experiments; skipped"]
    assert list(table.columns) == list(partial_curves.COLUMNS)
    assert table.groupby("arm")["step"].apply(list).to_dict() == {"mlp": [2, 4], "mlp_wide": [2, 4]}
    assert table.groupby("arm")["seed"].first().to_dict() == trained
    assert set(table["status"]) == {"completed"}  # the stale copy, interrupted at step 2, is not the one kept
    assert (table["last_step"] == 4).all()
    for arm, number in (("mlp", 0), ("mlp_wide", 1)):
        logged = RunDir(root / f"trial-{number}" / "seed-1").read_train_log()
        val = logged.dropna(subset=["val/energy_distance"])
        assert table[table["arm"] == arm]["val_energy_distance"].tolist() == val["val/energy_distance"].tolist()
        assert (
            table[table["arm"] == arm]["val_floor_energy_distance"].tolist()
            == val["val/floor_energy_distance"].tolist()
        )

    # with the finished copies gone, the stale one stands for its replicate
    shutil.rmtree(root / "trial-0")
    table, _ = partial_curves.partial_curves(sweep)
    mlp = table[table["arm"] == "mlp"]
    assert (mlp["step"].tolist(), set(mlp["status"]), set(mlp["last_step"])) == ([2], {"interrupted"}, {2})

    out = tmp_path / "curves.csv"
    assert partial_curves.main([str(small_sweep(tmp_path)), "--out", str(out)]) == 0
    assert pd.read_csv(out).shape == (3, len(partial_curves.COLUMNS))
    assert "3 validations of 2 runs" in capsys.readouterr().out
