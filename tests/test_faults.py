"""Fault drills on run directories, with real processes, signals and filesystems (no mocks of the code under test):
a training killed with SIGKILL and resumed to a bit-identical model, two writers on one run directory, SIGTERM,
a full disk and a read-only output folder (tiny tmpfs mounts: root only, skipped otherwise).
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, experiment_dict
from typer.testing import CliRunner

from arch_lab import api
from arch_lab.cli import app
from arch_lab.config import experiment_from_dict
from arch_lab.rundir import RunDir

runner = CliRunner()


def write_yaml(path: Path, cfg: dict) -> Path:
    path.write_text(yaml.safe_dump(cfg))
    return path


def start_training(args: list[str]) -> subprocess.Popen:
    """``arch-lab train ARGS`` in its own process (one thread), output captured."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(REPO)}
    cmd = [sys.executable, "-m", "arch_lab.cli", "train", *args]
    return subprocess.Popen(cmd, env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for(condition, proc: subprocess.Popen, timeout: float = 180.0, what: str = "") -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the process ended before {what}: {proc.communicate()}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def one_line_error(text: str) -> str:
    lines = text.strip().splitlines()
    assert len(lines) == 1, text
    assert lines[0].startswith("error: "), text
    assert "Traceback" not in text
    return lines[0]


# ------------------------------------------------------------------------------------------------ SIGKILL
@pytest.mark.slow
def test_sigkill_then_resume_gives_a_bit_identical_model(synthetic_h5ad, tmp_path):
    # 300 steps with a checkpoint every 7: the kill lands between checkpoints and between validations
    raw = experiment_dict(synthetic_h5ad, tmp_path, train={"max_steps": 300, "eval_every": 50, "checkpoint_every": 7})
    full = api.train(experiment_from_dict(raw), run_dir=tmp_path / "full")
    cut = tmp_path / "cut"
    proc = start_training([str(write_yaml(tmp_path / "exp.yaml", raw)), "--run-dir", str(cut)])
    wait_for(lambda: (cut / "checkpoint.pt").is_file(), proc, what="the first checkpoint")
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    run = RunDir(cut)
    assert run.read_status()["status"] == "running"
    assert not run.metrics.exists()
    listing = runner.invoke(app, ["runs", str(tmp_path)])
    assert listing.exit_code == 0, listing.output
    assert f"{cut}  running, but its process (pid {proc.pid} on " in listing.stdout
    assert f"is gone; resume with: arch-lab train --resume {cut}" in listing.stdout
    assert f"{tmp_path / 'full'}  completed" in listing.stdout

    # a checkpoint must belong to the run's config: the same run with another learning rate is refused
    other = tmp_path / "other"
    subprocess.run(["cp", "-r", str(cut), str(other)], check=True)
    cfg = yaml.safe_load((other / "config.yaml").read_text())
    cfg["optim"]["lr"] = 0.5
    (other / "config.yaml").write_text(yaml.safe_dump(cfg))
    refused = runner.invoke(app, ["train", "--resume", str(other)])
    assert refused.exit_code == 2
    assert "checkpoint.pt: written for another config" in one_line_error(refused.stderr)

    resumed = runner.invoke(app, ["train", "--resume", str(cut)])
    assert resumed.exit_code == 0, resumed.output
    a = RunDir.load_torch(full.run_dir / "model.pt")["state"]["weights"]
    b = RunDir.load_torch(cut / "model.pt")["state"]["weights"]
    assert a.keys() == b.keys()
    for key in a:
        assert torch.equal(a[key], b[key]), key  # bit-identical, not merely close
    pd.testing.assert_frame_equal(run.read_history(), RunDir(full.run_dir).read_history())
    assert run.read_status()["status"] == "completed"


# ----------------------------------------------------------------------------------- two writers, SIGTERM
@pytest.mark.slow
def test_two_writers_on_one_run_directory_and_sigterm(synthetic_h5ad, tmp_path):
    raw = experiment_dict(synthetic_h5ad, tmp_path, train={"max_steps": 100_000, "eval_every": 1000})
    exp = write_yaml(tmp_path / "exp.yaml", raw)
    target = tmp_path / "shared"
    first, second = (start_training([str(exp), "--run-dir", str(target)]) for _ in range(2))
    run = RunDir(target)
    # exactly one of two processes started together on one directory writes it; the other says why it stopped
    deadline = time.monotonic() + 600  # both import torch first: minutes on a loaded machine
    while first.poll() is None and second.poll() is None and time.monotonic() < deadline:
        time.sleep(0.05)
    if first.poll() is None and second.poll() is None:  # neither was refused: fail here, not in a blocking read
        first.kill()
        second.kill()
        raise AssertionError("neither of two writers on one run directory stopped within 600 s")
    loser = first if first.poll() is not None else second
    winner = second if loser is first else first
    wait_for(lambda: run.read_status().get("status") == "running", winner, what="the run to start")
    out, err = loser.communicate()
    assert loser.returncode == 2, err
    assert str(target) in one_line_error(err)
    assert winner.poll() is None
    assert run.read_status()["pid"] == winner.pid
    assert run.is_locked() is True
    assert run.process_gone() is False

    # a third writer is refused, whether it starts a run there or resumes it
    again = runner.invoke(app, ["train", str(exp), "--run-dir", str(target)])
    assert again.exit_code == 2
    assert f"pid {winner.pid} on" in one_line_error(again.stderr)
    resume = runner.invoke(app, ["train", "--resume", str(target)])
    assert resume.exit_code == 2
    assert "another process" in one_line_error(resume.stderr)
    assert f"pid {winner.pid} on" in resume.stderr

    # SIGTERM: the run is marked interrupted, in one line that says how to resume
    wait_for(lambda: run.checkpoint.is_file(), winner, what="a checkpoint")
    winner.send_signal(signal.SIGTERM)
    out, err = winner.communicate(timeout=60)
    assert winner.returncode == 130, err
    assert one_line_error(err) == f"error: interrupted; resume with: arch-lab train --resume {target}"
    status = run.read_status()
    assert status["status"] == "interrupted"
    assert status["reason"].startswith("interrupted (SIGTERM)")
    assert run.is_locked() is None  # the lock file goes with its writer
    assert sorted(p.name for p in target.iterdir() if p.name.startswith(".")) == []  # no temporary files
    listing = runner.invoke(app, ["runs", str(target)])
    assert f"{target}  interrupted: interrupted (SIGTERM)" in listing.stdout


@pytest.mark.slow
def test_sigterm_between_checkpoints_keeps_the_step_it_stopped_at(synthetic_h5ad, tmp_path):
    # checkpoints and validations 50,000 steps apart: a SIGTERM raised wherever it landed would lose every step
    train = {"max_steps": 100_000, "eval_every": 50_000, "checkpoint_every": 50_000}
    exp = write_yaml(tmp_path / "exp.yaml", experiment_dict(synthetic_h5ad, tmp_path, train=train))
    target = tmp_path / "run"
    run = RunDir(target)
    stops = []
    for args in ([str(exp), "--run-dir", str(target)], ["--resume", str(target)]):
        proc = start_training(args)
        after = stops[-1] if stops else 0
        wait_for(lambda a=after: (run.read_progress() or {}).get("step", 0) > a, proc, what="training steps")
        seen = run.read_progress()["step"]
        proc.send_signal(signal.SIGTERM)
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 130, err
        assert one_line_error(err) == f"error: interrupted; resume with: arch-lab train --resume {target}"
        assert run.read_status()["reason"].startswith("interrupted (SIGTERM)")
        # the step the signal arrived in ended, and the checkpoint holds it
        stopped = RunDir.load_torch(run.checkpoint)["state"]["step"]
        assert seen <= stopped < 50_000
        stops.append(stopped)
    assert stops[0] < stops[1]  # the resume went on from the first stop, and its own stop was kept too
    assert run.is_locked() is None
    assert sorted(p.name for p in target.iterdir() if p.name.startswith(".")) == []


# ------------------------------------------------------------------------------------------ filesystems
@contextlib.contextmanager
def tmpfs(path: Path, options: str) -> Iterator[Path]:
    """A tmpfs mounted at ``path`` for the block (root only; the test is skipped otherwise)."""
    path.mkdir()
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield path
    finally:
        subprocess.run(["umount", "-l", str(path)], check=True)


def test_full_disk_is_one_line_and_the_run_is_marked_failed(synthetic_h5ad, tmp_path):
    # a 1 MiB filesystem: the config, meta and split fit; the first checkpoint (a wide MLP, ~9 MB) does not
    with tmpfs(tmp_path / "small", "size=1m") as small:
        raw = experiment_dict(synthetic_h5ad, tmp_path, output_dir=str(small), network={"width": 512})
        result = runner.invoke(app, ["train", str(write_yaml(tmp_path / "exp.yaml", raw))])
        assert result.exit_code == 2, result.output
        line = one_line_error(result.stderr)
        (run_dir,) = (small / "synthetic").iterdir()
        assert line.startswith(f"error: {run_dir}/")
        assert "cannot write (No space left on device); free disk space" in line
        assert f"then resume with: arch-lab train --resume {run_dir}" in line
        status = RunDir(run_dir).read_status()
        assert status["status"] == "failed"
        assert "No space left on device" in status["reason"]
        assert sorted(p.name for p in run_dir.iterdir() if p.name.startswith(".")) == []  # no .tmp debris, no lock


def test_read_only_output_folder_is_one_line_before_any_run(synthetic_h5ad, tmp_path):
    with tmpfs(tmp_path / "ro", "ro,size=1m") as ro:
        raw = experiment_dict(synthetic_h5ad, tmp_path, output_dir=str(ro / "runs"))
        result = runner.invoke(app, ["train", str(write_yaml(tmp_path / "exp.yaml", raw))])
        assert result.exit_code == 2, result.output
        line = one_line_error(result.stderr)
        assert line.startswith(f"error: {ro / 'runs'}/synthetic/")
        assert "cannot create the run directory (Read-only file system)" in line
        assert "choose a writable output_dir (--set output_dir=DIR)" in line
        assert list(ro.iterdir()) == []


def test_a_status_that_cannot_be_written_does_not_hide_the_error(tmp_path):
    with tmpfs(tmp_path / "ro", "size=1m") as folder:
        run = RunDir.create(folder / "run")
        run.set_status("running")
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        with pytest.raises(RuntimeError, match="the real error"), run.recording_failures():
            raise RuntimeError("the real error")
        assert run.read_status()["status"] == "running"
        assert json.loads(run.status.read_text())["pid"] == os.getpid()
