"""Which earlier run a retried trial takes over (:func:`arch_lab.sweeps.carry.find_earlier_run`), on real run
directories: a completed run beats any checkpoint, the furthest checkpoint beats a newer but shorter one, and a run
of another config, one a live process writes, or one whose checkpoint is torn is never taken. And when a lost trial
is requeued (:class:`arch_lab.sweeps.carry.RetryUnlessStuck`): always after progress, ``max_retry`` times without.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import optuna
import pytest
from conftest import experiment_dict
from optuna.trial import FrozenTrial, TrialState

from arch_lab import api
from arch_lab.config import experiment_from_dict
from arch_lab.rundir import RunDir
from arch_lab.sweeps.carry import (
    STUCK_ATTR,
    RetryUnlessStuck,
    checkpoint_step,
    earlier_trials,
    find_earlier_run,
    made_progress,
)


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


def _lost(study: optuna.Study, run_dirs: list[Path], taken_over: list[dict], system_attrs: dict | None = None):
    """Add a failed trial with these runs to ``study`` (as a lost worker leaves it) and return it frozen."""
    study.add_trial(
        optuna.create_trial(
            state=TrialState.FAIL,
            params={"optim.lr": 2e-3},
            distributions={"optim.lr": optuna.distributions.CategoricalDistribution([2e-3])},
            user_attrs={"run_dirs": [str(p) for p in run_dirs], "taken_over": taken_over},
            system_attrs=system_attrs or {},
        )
    )
    return study.get_trials(deepcopy=False)[-1]


def _retries(study: optuna.Study) -> list[FrozenTrial]:
    return [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.WAITING]


def test_a_trial_lost_after_progress_is_requeued_whatever_max_retry(finished, tmp_path: Path):
    _, done = finished
    study = optuna.create_study()
    # it completed a run of its own: requeued although max_retry is 0
    lost = _lost(study, [done], [])
    assert made_progress(lost)
    RetryUnlessStuck(max_retry=0)(study, lost)
    [retry] = _retries(study)
    assert retry.system_attrs == {"failed_trial": lost.number, "retry_history": [lost.number], STUCK_ATTR: 0}
    assert retry.params == lost.params
    assert retry.user_attrs["run_dirs"] == [str(done)]
    # a checkpoint beyond the step it took over is progress; the same step is not
    ahead = unfinished_copy(done, tmp_path / "ahead", step=20)
    assert made_progress(
        _lost(study, [done, ahead.path], [_taken(done, "completed"), _taken(ahead.path, "checkpoint", 10)])
    )
    assert not made_progress(
        _lost(study, [done, ahead.path], [_taken(done, "completed"), _taken(ahead.path, "checkpoint", 20)])
    )
    # a run it started afresh counts from step 0; one out of reach does not count
    assert made_progress(_lost(study, [ahead.path], []))
    assert not made_progress(_lost(study, [tmp_path / "elsewhere"], []))


def test_max_retry_caps_only_the_losses_without_progress(finished, tmp_path: Path):
    _, done = finished
    study = optuna.create_study()
    stuck = [_taken(done, "completed")]  # it only took over what was there
    first = _lost(study, [done], stuck, {"failed_trial": 0, "retry_history": [0], STUCK_ATTR: 0})
    RetryUnlessStuck(max_retry=1)(study, first)
    [retry] = _retries(study)
    assert retry.system_attrs[STUCK_ATTR] == 1
    assert retry.system_attrs["retry_history"] == [0, first.number]
    assert retry.system_attrs["failed_trial"] == 0  # the chain's first trial, as Optuna records it
    # the next loss without progress is one too many for max_retry 1: the trial stays failed
    second = _lost(study, [done], stuck, dict(retry.system_attrs))
    before = len(study.trials)
    RetryUnlessStuck(max_retry=1)(study, second)
    assert len(study.trials) == before
    # without a cap (an interruption) it is requeued anyway, with its count kept
    RetryUnlessStuck()(study, second)
    assert _retries(study)[-1].system_attrs[STUCK_ATTR] == 2


def _taken(path: Path, how: str, step: int = 0) -> dict:
    return {"run_dir": str(path), "how": how, "trial": 0, "step": step}
