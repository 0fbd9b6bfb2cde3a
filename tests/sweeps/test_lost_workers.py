"""Fault drills for sweeps: a worker killed with SIGKILL mid-trial on SQLite and on journal storage (which has no
heartbeats). A worker on the same machine notices the dead process and requeues its trial at once; a worker lost
on another machine is reported by ``sweep run`` with the command that requeues it, ``sweep requeue``. Either way
the budget ends with every configuration complete once: nothing lost, nothing duplicated. The retry takes over the
runs the lost trial completed and resumes the one it checkpointed.
"""

from __future__ import annotations

import logging
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
import torch
from optuna.trial import FrozenTrial, TrialState
from test_sweeps import _worker, make_bench, sweep_dict, write_sweep
from typer.testing import CliRunner

from arch_lab import api
from arch_lab.cli import app
from arch_lab.provenance import GIT_SHA_ENV
from arch_lab.rundir import RunDir
from arch_lab.sweeps import load_study, load_sweep, parse_storage, run_worker
from arch_lab.sweeps.carry import STUCK_ATTR

cli = CliRunner()
LRS = [1e-3, 2e-3, 3e-3]


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a synthetic dataset and a tiny base experiment (``base.yaml``)."""
    return make_bench(tmp_path, monkeypatch)


def storage_url(kind: str, folder: Path) -> str:
    return f"sqlite:///{folder / 'lost.db'}" if kind == "sqlite" else f"journal:{folder / 'lost.log'}"


def lost_sweep(folder: Path, kind: str) -> tuple[Path, str]:
    """Three 40-step trials; heartbeats every second but a 10-minute grace, so only the drills requeue. No
    checkpoint before the end, so a killed run is trained again by the retry, in its own directory (resuming a
    checkpointed one is drilled in the last test).
    """
    url = storage_url(kind, folder)
    raw = sweep_dict(
        "lost",
        study={"name": "lost", "storage": url, "heartbeat_interval": 1, "grace_period": 600},
        space={"optim.lr": {"type": "categorical", "choices": LRS}},
        fixed={"train.max_steps": 40, "train.eval_every": 10, "train.checkpoint_every": 1000},
    )
    return write_sweep(folder, raw), url


def _training(runs: list[RunDir]) -> bool:
    return bool(runs) and runs[0].read_status().get("status") == "running"


def kill_mid_trial(
    path: Path, url: str, when: Callable[[list[RunDir]], bool] = _training, poll: float = 0.3
) -> FrozenTrial:
    """Start a worker process, SIGKILL it once ``when`` holds for its trial's runs (default: while it trains the
    first), and return that trial.
    """
    victim = _worker(path, url, 0)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline and victim.poll() is None:
        time.sleep(poll)
        try:
            trials = load_study(path).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        except Exception:  # the study is not created yet
            continue
        for t in trials:
            if not str(t.user_attrs.get("worker", "")).endswith(f":{victim.pid}"):
                continue
            if when([RunDir(d) for d in t.user_attrs.get("run_dirs") or []]):
                victim.send_signal(signal.SIGKILL)
                victim.wait(timeout=30)
                return t
    victim.kill()
    raise AssertionError("the worker never reached the point to kill it at")


def check_budget(path: Path, killed: FrozenTrial, reason: str) -> FrozenTrial:
    """Every configuration complete once, the killed trial failed with ``reason`` and retried; returns the retry."""
    trials = load_study(path).get_trials(deepcopy=False)
    assert sorted(t.state.name for t in trials) == ["COMPLETE"] * 3 + ["FAIL"]
    assert sorted(t.params["optim.lr"] for t in trials if t.state == TrialState.COMPLETE) == LRS
    lost = next(t for t in trials if t.state == TrialState.FAIL)
    assert lost.number == killed.number
    assert lost.user_attrs["reason"].startswith(reason)
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == killed.number)
    assert retry.state == TrialState.COMPLETE
    assert retry.params == killed.params
    assert retry.system_attrs[STUCK_ATTR] == 1  # killed before its first checkpoint: a loss without progress
    run = RunDir(killed.user_attrs["run_dirs"][0])
    status = run.read_status()
    assert status["status"] == "failed"
    assert status["reason"] == f"{lost.user_attrs['reason']}; retried as trial {retry.number}"
    return retry


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_worker_killed_here_is_requeued_by_the_next_worker_at_once(bench: Path, kind: str):
    path, url = lost_sweep(bench, kind)
    killed = kill_mid_trial(path, url)
    status = cli.invoke(app, ["sweep", "status", str(path)])
    assert status.exit_code == 0, status.output
    assert f"running #{killed.number} on {killed.user_attrs['worker']} (worker gone)" in status.stdout
    started = time.monotonic()
    report = run_worker(load_sweep(path), parse_storage(url), seed_offset=1, create=False, poll_seconds=0.5)
    assert time.monotonic() - started < 600  # well before the grace period could have requeued it
    retry = check_budget(path, killed, f"worker lost ({killed.user_attrs['worker']} is gone)")
    assert retry.number in report.trials


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["sqlite", "journal"])
def test_a_worker_lost_elsewhere_is_reported_and_requeued_by_hand(bench: Path, kind: str):
    path, url = lost_sweep(bench, kind)
    killed = kill_mid_trial(path, url)
    study = load_study(path)
    backend = study._storage
    trial_id = backend.get_trial_id_from_study_id_trial_number(backend.get_study_id_from_name("lost"), killed.number)
    backend.set_trial_user_attr(trial_id, "worker", "elsewhere:1")  # as if it ran on a machine that is gone
    if kind == "journal":  # without heartbeats nothing notices: sweep run names the trial and the fix
        result = cli.invoke(app, ["sweep", "run", str(path)])
        assert result.exit_code == 2, result.output
        err = result.stderr.strip()
        assert "\n" not in err
        assert err == (
            f"error: budget 2/3 finished: 1 trial still RUNNING with no worker here to finish it (#{killed.number} on "
            f"elsewhere:1); if its worker is gone, requeue with: arch-lab sweep requeue {path}, then rerun this command"
        )
    young = cli.invoke(app, ["sweep", "requeue", str(path), "--older-than", "3600"])
    assert young.exit_code == 0, young.output
    assert f"trial {killed.number} left running: started" in young.stdout
    requeued = cli.invoke(app, ["sweep", "requeue", str(path)])
    assert requeued.exit_code == 0, requeued.output
    assert f"trial {killed.number} failed (worker lost); requeued as trial " in requeued.stdout
    nothing = cli.invoke(app, ["sweep", "requeue", str(path)])
    assert nothing.stdout.strip() == "no running trial"
    done = cli.invoke(app, ["sweep", "run", str(path)])
    assert done.exit_code == 0, done.output
    assert "budget 3/3 finished" in done.stdout
    retry = check_budget(path, killed, "worker lost (requeued by hand)")
    if kind == "sqlite":  # the other trials were still queued: the retry is claimed before them
        queued = [t for t in load_study(path).get_trials() if t.number not in (killed.number, retry.number)]
        assert all(retry.datetime_start <= t.datetime_start for t in queued)


@pytest.mark.slow
def test_sigterm_to_sweep_run_stops_its_workers_and_requeues_their_trials(bench: Path):
    # `kill <sweep run>` (or a scheduler's preemption) reaches only the launching process: it must pass the signal
    # on, or its workers train on, orphaned, after the command has ended.
    url = storage_url("sqlite", bench)
    raw = sweep_dict(
        "term",
        study={"name": "term", "storage": url, "heartbeat_interval": 1, "grace_period": 600},
        space={"optim.lr": {"type": "categorical", "choices": LRS}},
        fixed={"train.max_steps": 400, "train.eval_every": 100},
    )
    path = write_sweep(bench, raw)
    cmd = [sys.executable, "-m", "arch_lab.cli", "sweep", "run", str(path), "--workers", "2", "--threads", "1"]
    launcher = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"}, stderr=subprocess.PIPE, text=True)
    workers: set[int] = set()
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline and launcher.poll() is None and not workers:
        time.sleep(0.3)
        try:
            trials = load_study(path).get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        except Exception:  # the study is not created yet
            continue
        for t in trials:
            runs = [RunDir(d) for d in t.user_attrs.get("run_dirs") or []]
            if runs and runs[0].read_status().get("status") == "running":
                workers.add(int(str(t.user_attrs["worker"]).rsplit(":", 1)[1]))
    assert workers, "no worker started training"
    launcher.send_signal(signal.SIGTERM)
    _, err = launcher.communicate(timeout=120)
    assert launcher.returncode == 130
    assert err.strip().splitlines()[-1] == (
        "error: interrupted; running trials were requeued: rerun the same command to resume"
    )
    for pid in workers:  # the workers ended with the command
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
    trials = load_study(path).get_trials(deepcopy=False)
    assert not [t for t in trials if t.state == TrialState.RUNNING]
    stopped = [t for t in trials if t.state == TrialState.FAIL]
    assert stopped
    assert all(t.user_attrs["reason"].startswith("interrupted") for t in stopped)
    done = cli.invoke(app, ["sweep", "run", str(path)])
    assert done.exit_code == 0, done.output
    finished = [t for t in load_study(path).get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    assert sorted(t.params["optim.lr"] for t in finished) == LRS


@pytest.mark.slow
def test_a_retry_takes_over_finished_runs_and_resumes_the_checkpointed_one(
    bench: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
):
    # A long study stopped mid-trial (end of a session, preemption) must not lose the trial's finished runs: the
    # retry adopts replicate 0, which the killed worker completed, resumes replicate 1 from its checkpoint, and
    # scores both exactly as a trial never stopped would.
    url = storage_url("sqlite", bench)
    raw = sweep_dict(
        "carry",
        # max_retry 0: a trial lost after progress is requeued anyway (its retry continues where it stopped)
        study={"name": "carry", "storage": url, "heartbeat_interval": 1, "grace_period": 600, "max_retry": 0},
        space={"optim.lr": {"type": "categorical", "choices": [2e-3]}},
        fixed={"train.max_steps": 400, "train.eval_every": 50, "train.checkpoint_every": 5},
        budget={"replicates": 2},
    )
    path = write_sweep(bench, raw)
    killed = kill_mid_trial(path, url, when=lambda runs: len(runs) == 2 and runs[1].checkpoint.is_file(), poll=0.1)
    first, second = (RunDir(d) for d in killed.user_attrs["run_dirs"])
    assert first.is_completed()
    assert not second.is_completed()
    first_metrics = first.metrics.read_bytes()

    started = first.read_meta()["git_sha"]
    later = "f" * 40  # the retry runs under another commit: it says so, and the runs record both
    monkeypatch.setenv(GIT_SHA_ENV, later)
    with caplog.at_level(logging.WARNING, logger="arch_lab"):
        run_worker(load_sweep(path), parse_storage(url), seed_offset=1, create=False, poll_seconds=0.5)
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert any(f"was completed under commit {started[:12]}, this worker runs {later[:12]}" in m for m in warned)
    assert any(f"started under commit {started[:12]}, resumed under {later[:12]}" in m for m in warned)
    assert [r["git_sha"] for r in second.read_meta()["resumes"]] == [later]
    trials = load_study(path).get_trials(deepcopy=False)
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == killed.number)
    assert retry.state == TrialState.COMPLETE
    assert retry.system_attrs[STUCK_ATTR] == 0
    assert retry.user_attrs["run_dirs"] == killed.user_attrs["run_dirs"]  # both runs continued where they were
    taken = retry.user_attrs["taken_over"]
    assert [(t["run_dir"], t["how"], t["trial"], t["git_sha"]) for t in taken] == [
        (str(first.path), "completed", killed.number, started),
        (str(second.path), "checkpoint", killed.number, started),
    ]
    assert taken[1]["step"] > 0
    assert taken[1]["step"] % 5 == 0
    assert first.metrics.read_bytes() == first_metrics  # adopted, not trained again
    assert second.is_completed()
    assert second.read_status()["status"] == "completed"
    sweep = load_sweep(path)
    assert not (sweep.run_root / f"trial-{retry.number}").exists()

    # the second run, never stopped: identical weights, so an identical value
    cfg = sweep.experiment(retry.params, 1, None)
    uninterrupted = api.train(cfg, run_dir=bench / "uninterrupted")
    resumed = RunDir.load_torch(second.model)["state"]["weights"]
    fresh = RunDir.load_torch(uninterrupted.run_dir / "model.pt")["state"]["weights"]
    assert resumed.keys() == fresh.keys()
    for key in fresh:
        assert torch.equal(resumed[key], fresh[key]), key
    assert retry.user_attrs["values_per_seed"][1] == sweep.objective.value(uninterrupted.val_summary)
