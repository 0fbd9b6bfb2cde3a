"""A trial's runs trained at once in child processes (``--parallel-runs``, :mod:`arch_lab.sweeps.parallel`):
the same runs and values as one after another, a failed run that leaves the others complete, a pruner refused,
and children that stop (their runs marked interrupted, then resumed by the retry) when their worker is killed.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from optuna.trial import TrialState
from test_sweeps import make_bench, sweep_dict, write_sweep

from arch_lab.errors import ArchLabError
from arch_lab.rundir import RunDir, pid_alive
from arch_lab.sweeps import load_study, load_sweep, run_sweep

LRS = [1e-3, 3e-3]


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A working directory with a synthetic dataset and a tiny base experiment (``base.yaml``)."""
    return make_bench(tmp_path, monkeypatch)


def three_seed_sweep(folder: Path, name: str, **fixed: object) -> Path:
    raw = sweep_dict(
        name,
        study={"name": name, "storage": f"sqlite:///{folder / (name + '.db')}"},
        space={"optim.lr": {"type": "categorical", "choices": LRS}},
        fixed={"train.max_steps": 20, "train.eval_every": 10, "train.checkpoint_every": 10, **fixed},
        budget={"replicates": 3},
    )
    return write_sweep(folder, raw)


def outcome(path: Path) -> dict[float, tuple[list[int], list[float]]]:
    """Per learning rate: the seeds and the per-seed values of its complete trial."""
    trials = load_study(path).get_trials(deepcopy=False, states=(TrialState.COMPLETE,))
    return {t.params["optim.lr"]: (t.user_attrs["seeds"], t.user_attrs["values_per_seed"]) for t in trials}


def test_parallel_runs_give_the_runs_and_values_of_one_after_another(bench: Path):
    serial = three_seed_sweep(bench, "serial")
    parallel = three_seed_sweep(bench, "parallel")
    run_sweep(serial, threads=1)
    result = run_sweep(parallel, threads=1, parallel_runs=3)
    assert result.status.counts == {"COMPLETE": 2}
    assert outcome(parallel) == outcome(serial)  # same seeds, same values: the same computation, elsewhere
    for trial in load_study(parallel).get_trials(deepcopy=False):
        dirs = [Path(d) for d in trial.user_attrs["run_dirs"]]
        assert [d.name for d in dirs] == ["seed-0", "seed-1", "seed-2"]
        assert all(RunDir(d).read_status()["status"] == "completed" for d in dirs)
        pids = {json.loads((d / RunDir.STATUS).read_text()).get("pid") for d in dirs}
        assert os.getpid() not in pids  # trained in child processes, not in the worker


def test_a_failed_run_fails_the_trial_and_the_other_runs_complete(bench: Path):
    path = three_seed_sweep(bench, "failing")
    sweep = load_sweep(path)
    occupied = sweep.run_root / "trial-0" / "seed-1"
    occupied.mkdir(parents=True)
    (occupied / RunDir.CONFIG).write_text("name: someone else's run\n")  # not a directory a run may start in
    run_sweep(path, threads=1, parallel_runs=3)
    first = load_study(path).get_trials(deepcopy=False)[0]
    assert first.state == TrialState.FAIL
    assert "seed-1" in first.user_attrs["reason"]
    assert "\n" not in first.user_attrs["reason"]
    for seed in (0, 2):
        assert RunDir(sweep.run_root / "trial-0" / f"seed-{seed}").read_status()["status"] == "completed"


def test_parallel_runs_refuse_a_pruner_and_a_count_below_one(bench: Path):
    raw = sweep_dict("pruned", pruner={"type": "median"}, budget={"replicates": 2})
    path = write_sweep(bench, raw)
    with pytest.raises(ArchLabError, match=r"--parallel-runs 2 .*pruner 'median'.*pruner: \{type: none\}"):
        run_sweep(path, parallel_runs=2)
    with pytest.raises(ArchLabError, match="at least 1"):
        run_sweep(three_seed_sweep(bench, "zero"), parallel_runs=0)
    assert not (bench / "runs" / "pruned").exists()  # refused before anything was created


@pytest.mark.slow
def test_children_of_a_killed_worker_stop_and_their_runs_are_resumed(bench: Path):
    # long enough to be killed mid-run, checkpointing often so the retry has something to resume
    path = three_seed_sweep(bench, "killed", **{"train.max_steps": 400, "train.checkpoint_every": 20})
    cmd = [sys.executable, "-m", "arch_lab.cli", "sweep", "worker", str(path), "--threads", "1"]
    worker = subprocess.Popen(
        [*cmd, "--worker-id", "0", "--parallel-runs", "3"], env={**os.environ, "OMP_NUM_THREADS": "1"}
    )
    run_root = load_sweep(path).run_root
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        checkpoints = list((run_root / "trial-0").glob("seed-*/checkpoint.pt"))
        if len(checkpoints) == 3:
            break
        time.sleep(0.2)
    else:
        worker.kill()
        raise AssertionError("the three runs never checkpointed")
    runs = [RunDir(run_root / "trial-0" / f"seed-{s}") for s in range(3)]
    children = [r.read_status().get("pid") for r in runs]
    worker.send_signal(signal.SIGKILL)
    worker.wait(timeout=30)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and any(pid_alive(p) for p in children if p):
        time.sleep(0.2)
    assert not any(pid_alive(p) for p in children if p), "children outlived their worker"
    assert {r.read_status()["status"] for r in runs} <= {"interrupted", "completed"}
    run_sweep(path, threads=1, parallel_runs=3)
    trials = load_study(path).get_trials(deepcopy=False)
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == 0)
    assert retry.state == TrialState.COMPLETE
    taken = {Path(t["run_dir"]).name: t["how"] for t in retry.user_attrs["taken_over"]}
    assert set(taken) == {"seed-0", "seed-1", "seed-2"}  # every run continued where it stopped, none afresh
    assert set(taken.values()) <= {"checkpoint", "completed"}
    assert not (run_root / f"trial-{retry.number}").exists()


@pytest.mark.slow
def test_a_sigterm_to_sweep_run_interrupts_the_children_and_requeues_the_trial(bench: Path):
    path = three_seed_sweep(bench, "stopped", **{"train.max_steps": 400, "train.checkpoint_every": 20})
    cmd = [sys.executable, "-m", "arch_lab.cli", "sweep", "run", str(path), "--threads", "1", "--parallel-runs", "3"]
    proc = subprocess.Popen(cmd, env={**os.environ, "OMP_NUM_THREADS": "1"})
    run_root = load_sweep(path).run_root
    deadline = time.monotonic() + 300
    while len(list((run_root / "trial-0").glob("seed-*/checkpoint.pt"))) < 3:
        assert time.monotonic() < deadline, "the three runs never checkpointed"
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=120) != 0
    runs = [RunDir(run_root / "trial-0" / f"seed-{s}") for s in range(3)]
    for run in runs:
        status = run.read_status()
        if status["status"] == "running":  # a child that did not stop within the grace period was killed
            assert not pid_alive(status["pid"])
        else:
            assert status["status"] in ("interrupted", "completed")
    first = load_study(path).get_trials(deepcopy=False)[0]
    assert first.state == TrialState.FAIL
    assert first.user_attrs["reason"].startswith("interrupted; requeued")
