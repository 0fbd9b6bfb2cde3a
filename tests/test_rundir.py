"""Run directories: the layout, atomic writes with per-process temporary names, status and read helpers."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pandas as pd
import pytest
import torch

from arch_lab.errors import ArchLabError
from arch_lab.rundir import STATUSES, RunDir, atomic_path, is_run_dir, write_json

LAYOUT = {
    "config": "config.yaml",
    "meta": "meta.json",
    "split": "split.csv",
    "status": "status.json",
    "checkpoint": "checkpoint.pt",
    "best": "best.pt",
    "history": "history.csv",
    "predictions": "predictions.h5ad",
    "metrics": "metrics.json",
    "per_condition": "metrics_per_condition.csv",
    "reference_per_condition": "reference_per_condition.csv",
    "model": "model.pt",
}


def test_paths_are_attributes_of_one_layout(tmp_path: Path):
    run = RunDir(tmp_path)
    for attr, name in LAYOUT.items():
        assert getattr(run, attr) == tmp_path / name
    assert RunDir(run).path == tmp_path
    assert os.fspath(run) == str(tmp_path)


def test_atomic_writes_use_a_temporary_name_per_process(tmp_path: Path):
    target = tmp_path / "metrics.json"
    with atomic_path(target) as tmp:
        assert str(os.getpid()) in tmp.name
        assert tmp.parent == tmp_path
        assert tmp.suffix == ".json"
        tmp.write_text("{}")
        assert not target.exists()
    assert target.read_text() == "{}"
    assert list(tmp_path.iterdir()) == [target]

    def die_while_writing() -> None:
        with atomic_path(target) as tmp:
            tmp.write_text("half")
            raise RuntimeError("writer died")

    with pytest.raises(RuntimeError, match="writer died"):
        die_while_writing()
    assert target.read_text() == "{}"
    assert list(tmp_path.iterdir()) == [target]
    write_json(target, {"b": 1, "a": Path("x")})
    assert json.loads(target.read_text()) == {"a": "x", "b": 1}


def test_status_is_one_of_four_and_a_failure_keeps_its_first_line(tmp_path: Path):
    run = RunDir.create(tmp_path / "a" / "run")
    assert run.read_status() == {"status": "missing"}
    assert not is_run_dir(run)
    for status in STATUSES:
        run.set_status(status, note=1)
        assert run.read_status()["status"] == status
        assert run.read_status()["note"] == 1
    with pytest.raises(ValueError, match="unknown run status"):
        run.set_status("done")
    run.mark_failed(ArchLabError("diverged at step 3\ntraceback"))
    assert run.read_status()["status"] == "failed"
    assert run.read_status()["reason"] == "diverged at step 3"
    TrialPruned = type("TrialPruned", (Exception,), {})
    run.mark_failed(TrialPruned("pruned at step 10"))
    assert run.read_status() | {"updated": None} == {
        "status": "pruned",
        "reason": "TrialPruned: pruned at step 10",
        "updated": None,
    }


def test_readers_and_discovery(tmp_path: Path):
    run = RunDir.create(tmp_path / "runs" / "r1")
    with pytest.raises(ArchLabError, match="not a run directory"):
        run.read_config()
    (run.config).write_text("name: toy\nseed: 3\n")
    run.set_status("running")
    assert is_run_dir(run)
    assert run.read_config_dict() == {"name": "toy", "seed": 3}
    assert run.read_meta() == {}
    assert run.read_history() is None
    assert run.read_per_condition() is None
    with pytest.raises(ArchLabError, match="no metrics.json"):
        run.read_metrics()
    with pytest.raises(ArchLabError, match="no predictions.h5ad"):
        run.read_predictions()
    with pytest.raises(ArchLabError, match="run is not completed"):
        run.load_model()
    run.write_meta({"seed": 3})
    run.update_meta(parameter_count=10)
    assert run.read_meta() == {"seed": 3, "parameter_count": 10}
    run.write_history([{"step": 5, "val_energy_distance": 1.0}])
    run.write_per_condition(pd.DataFrame({"state": ["01"], "perturbation": ["1"], "rmse_mean": [0.5]}))
    per = run.read_per_condition()
    assert per["state"].tolist() == ["01"]
    assert per["perturbation"].tolist() == ["1"]
    assert run.read_history()["step"].tolist() == [5]
    run.save_model("no_change", {"w": torch.ones(2)})
    run.write_metrics({"metrics": {"rmse_mean": 0.5}})
    assert not run.is_completed()
    run.set_status("completed")
    assert run.is_completed()
    assert run.read_metrics()["metrics"] == {"rmse_mean": 0.5}
    assert torch.equal(run.load_model()["state"]["w"], torch.ones(2))
    other = RunDir.create(tmp_path / "runs" / "nested" / "r0")
    other.config.write_text("{}\n")
    other.set_status("failed", reason="boom")
    RunDir.create(tmp_path / "runs" / "not_a_run")
    assert [r.path for r in RunDir.find(tmp_path / "runs")] == [other.path, run.path]
    assert sorted(p.name for p in run.path.iterdir() if p.name.startswith(".")) == []


def test_progress_is_recorded_in_the_status_of_a_running_run(tmp_path: Path):
    run = RunDir.create(tmp_path / "r")
    assert run.read_progress() is None
    run.set_status("running", resumed=True)
    run.set_progress(40, 200, 0.5)
    status = run.read_status()
    assert status["status"] == "running"
    assert status["resumed"] is True
    assert run.read_progress() == {"step": 40, "max_steps": 200, "seconds_per_step": 0.5, "eta_seconds": 80.0}
    run.set_progress(200, 200, 0.5)
    assert run.read_progress()["eta_seconds"] == 0.0
    run.set_status("completed")
    assert run.read_progress() is None
