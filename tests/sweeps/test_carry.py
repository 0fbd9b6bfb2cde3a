"""Which earlier run a retried trial takes over (:func:`arch_lab.sweeps.carry.find_earlier_run`), on real run
directories: a completed run beats any checkpoint, the furthest checkpoint beats a newer but shorter one, and a run
of another config, one a live process writes, or one whose checkpoint is torn is never taken.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from conftest import experiment_dict
from optuna.trial import FrozenTrial, TrialState

from arch_lab import api
from arch_lab.config import experiment_from_dict
from arch_lab.rundir import RunDir
from arch_lab.sweeps.carry import checkpoint_step, earlier_trials, find_earlier_run


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict, Path]:
    """A completed 30-step run (checkpoints every 10 steps) and its config."""
    from conftest import synthetic_adata

    tmp = tmp_path_factory.mktemp("carry")
    synthetic_adata().write_h5ad(tmp / "synthetic.h5ad")
    raw = experiment_dict(tmp / "synthetic.h5ad", tmp)
    api.train(experiment_from_dict(raw), run_dir=tmp / "done")
    return raw, tmp / "done"


def unfinished_copy(done: Path, to: Path, step: int) -> RunDir:
    """A copy of ``done`` as a killed run leaves it: status ``running`` of a gone process, no results, and its
    checkpoint rewritten to hold ``step``.
    """
    shutil.copytree(done, to)
    run = RunDir(to)
    for name in (RunDir.METRICS, RunDir.MODEL):
        (to / name).unlink()
    payload = RunDir.load_torch(run.checkpoint)
    payload["state"]["step"] = step
    run.save_checkpoint(payload)
    run.set_status("running", pid=2**22 + 7, host="gone")
    return run


def test_a_completed_run_is_taken_over_before_any_checkpoint(finished, tmp_path: Path):
    raw, done = finished
    cfg = experiment_from_dict(raw)
    newer = unfinished_copy(done, tmp_path / "newer", step=20)
    found = find_earlier_run(cfg, [(3, newer.path), (1, done)])
    assert found is not None
    assert (found.run_dir, found.how, found.trial) == (done, "completed", 1)
    assert found.describe() == "completed in trial 1, taken over"


def test_the_furthest_checkpoint_is_resumed_and_the_newest_wins_ties(finished, tmp_path: Path):
    raw, done = finished
    cfg = experiment_from_dict(raw)
    short = unfinished_copy(done, tmp_path / "short", step=10)
    far = unfinished_copy(done, tmp_path / "far", step=20)
    tie = unfinished_copy(done, tmp_path / "tie", step=20)
    assert checkpoint_step(far) == 20
    found = find_earlier_run(cfg, [(5, short.path), (4, far.path), (2, tie.path)])
    assert found is not None
    assert (found.run_dir, found.how, found.trial, found.step) == (far.path, "checkpoint", 4, 20)
    assert found.describe() == "resumed from trial 4's checkpoint at step 20"
    found = find_earlier_run(cfg, [(5, tie.path), (4, far.path)])
    assert found is not None
    assert found.run_dir == tie.path


def test_runs_of_another_config_live_writers_and_torn_checkpoints_are_not_taken(finished, tmp_path: Path):
    raw, done = finished
    cfg = experiment_from_dict(raw)
    other = experiment_from_dict({**raw, "optim": {**raw["optim"], "lr": 5e-3}})
    assert find_earlier_run(other, [(1, done)]) is None
    # where a run is written does not change what it computes: another output_dir still matches
    moved = experiment_from_dict({**raw, "output_dir": str(tmp_path / "elsewhere")})
    assert find_earlier_run(moved, [(1, done)]) is not None

    live = unfinished_copy(done, tmp_path / "live", step=20)
    with live.lock():  # a process still writes it (a worker whose heartbeat was late, not gone)
        assert find_earlier_run(cfg, [(2, live.path)]) is None
    assert find_earlier_run(cfg, [(2, live.path)]) is not None

    torn = unfinished_copy(done, tmp_path / "torn", step=20)
    torn.checkpoint.write_bytes(b"PK\x03\x04 cut short")
    assert checkpoint_step(torn) is None
    assert find_earlier_run(cfg, [(2, torn.path)]) is None
    never = unfinished_copy(done, tmp_path / "never", step=20)
    never.checkpoint.unlink()  # killed before its first checkpoint
    assert find_earlier_run(cfg, [(2, never.path), (1, tmp_path / "missing")]) is None


def test_earlier_trials_are_read_newest_first_from_optunas_retry_history():
    def frozen(system_attrs: dict) -> FrozenTrial:
        return FrozenTrial(
            number=7, state=TrialState.WAITING, value=None, datetime_start=None, datetime_complete=None,
            params={}, distributions={}, user_attrs={}, system_attrs=system_attrs, intermediate_values={},
            trial_id=7,
        )  # fmt: skip

    assert earlier_trials(frozen({})) == []
    assert earlier_trials(frozen({"failed_trial": 5, "retry_history": [0, 5]})) == [5, 0]
