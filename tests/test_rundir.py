"""Run directories: the layout, atomic writes with per-process temporary names, status and read helpers, one run
per directory (refusal, the writer's lock, a process gone), interruptions, and one-line operating-system errors."""

from __future__ import annotations

import errno
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest
import torch

from arch_lab.errors import ArchLabError, FileSystemError, RunInterrupted, os_error
from arch_lab.rundir import STATUSES, RunDir, atomic_path, is_run_dir, write_json
from arch_lab.stopping import _STOP, sigterm_as_interrupt, sigterm_deferred

REPO = Path(__file__).resolve().parents[1]
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
    run.set_progress(40, 200, 0.5, max_seconds=100.0, train_seconds=70.0)  # a wall-clock cap: 30 s left, not 80
    assert run.read_progress() == {"step": 40, "max_steps": 200, "seconds_per_step": 0.5, "max_seconds": 100.0,
                                   "eta_seconds": 30.0}  # fmt: skip
    run.set_status("completed")
    assert run.read_progress() is None


# ---------------------------------------------------------------------------------- one run, one writer
def test_a_directory_holding_a_run_is_refused_as_a_new_one(tmp_path: Path):
    RunDir(tmp_path / "fresh").check_unused()  # missing: fine
    RunDir.create(tmp_path / "empty").check_unused()  # empty: fine
    (tmp_path / "empty" / "notes.txt").write_text("unrelated files are fine")
    RunDir(tmp_path / "empty").check_unused()
    run = RunDir.create(tmp_path / "run")
    run.set_status("failed", reason="boom")
    with pytest.raises(
        ArchLabError, match=r"already holds a run \(status failed\); continue it with arch-lab train --resume"
    ):
        run.check_unused()
    run.set_status("completed")
    with pytest.raises(ArchLabError, match=r"\(status completed\); pass a new --run-dir"):
        run.check_unused()
    (tmp_path / "file").write_text("x")
    with pytest.raises(FileSystemError, match="is a file, not a folder"):
        RunDir(tmp_path / "file").check_unused()
    with pytest.raises(FileSystemError, match="file: is a file, not a folder"):
        RunDir(tmp_path / "file" / "run").check_unused()


def test_the_lock_is_exclusive_and_tells_a_live_run_from_a_gone_one(tmp_path: Path):
    run = RunDir.create(tmp_path / "run")
    assert run.is_locked() is None  # no lock file
    with run.lock():
        run.set_status("running")
        assert run.read_status()["pid"] == os.getpid()
        assert run.is_locked() is True
        assert run.process_gone() is False
        assert run.describe_status().startswith(f"running (pid {os.getpid()} on ")
        with pytest.raises(ArchLabError, match=f"another process \\(pid {os.getpid()} on .*\\) is writing this run"):
            with RunDir(run.path).lock():
                pass
        with pytest.raises(ArchLabError, match="already holds a run that another process"):
            run.check_unused()
    assert run.is_locked() is None  # removed when the writer is done
    assert [p.name for p in run.path.iterdir()] == ["status.json"]
    assert run.process_gone() is False  # told by the pid in the status: this process is alive
    # a writer killed while it holds the lock leaves the file, unlocked: its run is shown as gone
    script = (
        "import os, signal, sys; from arch_lab.rundir import RunDir; run = RunDir(sys.argv[1]); "
        "held = run.lock(); held.__enter__(); run.set_status('running'); os.kill(os.getpid(), signal.SIGKILL)"
    )
    killed = subprocess.run([sys.executable, "-c", script, str(run.path)], env={**os.environ, "PYTHONPATH": str(REPO)})
    assert killed.returncode == -signal.SIGKILL
    assert run.is_locked() is False
    assert run.process_gone() is True
    pid = run.read_status()["pid"]
    assert run.describe_status() == (
        f"running, but its process (pid {pid} on {socket.gethostname()}) is gone; resume with: "
        f"arch-lab train --resume {run.path}"
    )
    with run.lock():  # the lock of a killed writer is free to take
        run.set_status("failed", reason="boom")
    assert run.process_gone() is None
    assert run.describe_status() == "failed: boom"
    # without a lock file (a run written before locks): told by its pid, on this host
    old = RunDir.create(tmp_path / "old")
    write_json(old.status, {"status": "running", "pid": 2**22 + 12345, "host": socket.gethostname()})
    assert old.process_gone() is True
    write_json(old.status, {"status": "running", "pid": os.getpid(), "host": socket.gethostname()})
    assert old.process_gone() is False
    write_json(old.status, {"status": "running", "pid": 1, "host": "elsewhere"})
    assert old.process_gone() is None


def test_interruptions_and_failures_are_recorded_with_how_to_go_on(tmp_path: Path):
    run = RunDir.create(tmp_path / "run")
    with pytest.raises(RunInterrupted, match=f"interrupted; resume with: arch-lab train --resume {run.path}"):
        with run.recording_failures():
            raise KeyboardInterrupt("SIGTERM")
    assert run.read_status()["status"] == "interrupted"
    assert run.read_status()["reason"] == f"interrupted (SIGTERM); resume with: arch-lab train --resume {run.path}"
    with pytest.raises(KeyboardInterrupt), run.recording_failures():
        raise KeyboardInterrupt
    assert run.read_status()["reason"].startswith("interrupted (Ctrl-C)")
    full = os_error(OSError(errno.ENOSPC, "No space left on device"), run.checkpoint)
    with pytest.raises(FileSystemError, match=f"; then resume with: arch-lab train --resume {run.path}$"):
        with run.recording_failures():
            raise full
    assert run.read_status()["status"] == "failed"
    assert "No space left on device" in run.read_status()["reason"]


def test_sigterm_raises_keyboard_interrupt_while_the_lock_is_held(tmp_path: Path):
    run = RunDir.create(tmp_path / "run")

    def terminated_while_writing() -> None:
        with run.lock():
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)

    with pytest.raises(KeyboardInterrupt, match="SIGTERM"):
        terminated_while_writing()
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _held_then_raised(steps: list[str], fail: bool = False, second: bool = False) -> None:
    """One deferred block that gets a SIGTERM, then (optionally) another one or an error, recording what ran."""
    with sigterm_deferred() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)  # the handler has run: held, not raised
        steps.append(f"held {stop.pending}")
        if second:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(5)
        if fail:
            raise ValueError("the step failed")
        steps.append("the rest of the step")


def _raised_at_once() -> None:
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)


def test_a_sigterm_inside_sigterm_deferred_is_held_until_the_block_ends():
    with sigterm_as_interrupt():
        steps: list[str] = []
        with pytest.raises(KeyboardInterrupt, match="^SIGTERM$"):
            _held_then_raised(steps)
        assert steps == ["held SIGTERM", "the rest of the step"]
        # a second SIGTERM while one is held raises at once
        steps.clear()
        with pytest.raises(KeyboardInterrupt, match="^SIGTERM$"):
            _held_then_raised(steps, second=True)
        assert steps == ["held SIGTERM"]
        # a block that fails while a SIGTERM is held ends as the interruption, with the failure as its cause
        with pytest.raises(KeyboardInterrupt, match="^SIGTERM$") as caught:
            _held_then_raised([], fail=True)
        assert isinstance(caught.value.__cause__, ValueError)
        # the process is now stopping: a SIGTERM outside a deferred block is ignored until this block ends
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
    with sigterm_as_interrupt():  # outside a deferred block the handler raises at once
        with pytest.raises(KeyboardInterrupt, match="^SIGTERM$"):
            _raised_at_once()
        with sigterm_deferred() as stop:  # a block without a signal ends normally, and nothing is left pending
            pass
        assert stop.pending is None
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL


def _stopped_and_signalled_while_recording(run: RunDir, own_signal: bool) -> None:
    """Stop on a held SIGTERM (this process's, or under DDP another rank's), then get one while recording the stop."""
    with run.lock(), run.recording_failures(), sigterm_deferred() as stop:
        if own_signal:
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)
            assert stop.pending == "SIGTERM"
        try:
            raise stop.interrupt("SIGTERM")
        finally:  # what recording the stop does next, with a SIGTERM landing in the middle
            assert stop.stopping
            assert stop.pending is None
            os.kill(os.getpid(), signal.SIGTERM)
            time.sleep(0.05)


def test_once_stopping_on_a_held_sigterm_further_ones_do_not_cut_the_record_short(tmp_path: Path):
    """Under torchrun, once one rank has stopped and exited, the others get SIGTERM while they record their stop."""
    run = RunDir.create(tmp_path / "run")
    run.set_status("running")
    for own_signal in (True, False):  # this process's held signal, or (under DDP) another rank's
        with pytest.raises(KeyboardInterrupt, match="^interrupted; resume with: arch-lab train --resume"):
            _stopped_and_signalled_while_recording(run, own_signal)
        status = run.read_status()
        assert (status["status"], status["reason"][:23]) == ("interrupted", "interrupted (SIGTERM); ")
        assert not _STOP.stopping  # the lock's block ended: the next SIGTERM interrupts again
        run.set_status("running")
    with pytest.raises(KeyboardInterrupt, match="^SIGTERM$"):
        with run.lock():
            _raised_at_once()
    # a stop taken and caught inside the block: the next deferred block holds a signal again, and a second raises
    with sigterm_as_interrupt():
        with pytest.raises(KeyboardInterrupt), sigterm_deferred() as stop:
            raise stop.interrupt("SIGTERM")
        steps: list[str] = []
        with pytest.raises(KeyboardInterrupt, match="^SIGTERM$"):
            _held_then_raised(steps, second=True)
        assert steps == ["held SIGTERM"]


@pytest.mark.parametrize(
    ("exc", "message"),
    [
        (OSError(errno.ENOSPC, "x"), "p: cannot write (No space left on device); free disk space"),
        (OSError(errno.EROFS, "x"), "p: cannot write (Read-only file system); the filesystem is read-only"),
        (PermissionError(errno.EACCES, "x"), "p: cannot write (Permission denied); choose a writable output_dir"),
        (
            RuntimeError("Can't write data (file write failed: errno = 28, error message = 'x')"),
            "(No space left on device)",
        ),
        (OSError("[Errno 30] Read-only file system: 'p'"), "(Read-only file system)"),
        (RuntimeError("opaque"), "p: cannot write (opaque); check the path and the disk"),
    ],
)
def test_os_errors_become_one_line_with_the_reason_and_the_fix(exc, message):
    err = os_error(exc, "p")
    assert message in str(err)
    assert "\n" not in str(err)


def test_a_failed_write_leaves_no_temporary_file_and_names_the_os_reason(tmp_path: Path):
    target = tmp_path / "gone" / "metrics.json"  # its folder is missing: the write fails with ENOENT
    with pytest.raises(FileSystemError, match=r"metrics.json: cannot write \(No such file or directory\)"):
        write_json(target, {"a": 1})
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(FileSystemError, match="file.txt: is a file, not a folder, so .* cannot be created"):
        RunDir.create(tmp_path / "file.txt" / "run")
    run = RunDir.create(tmp_path / "run")
    run.save_torch(run.checkpoint, {"w": torch.ones(3)})
    assert torch.equal(RunDir.load_torch(run.checkpoint)["w"], torch.ones(3))
    assert [p.name for p in run.path.iterdir()] == ["checkpoint.pt"]
