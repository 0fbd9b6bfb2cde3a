"""Multi-process training under torchrun (gloo on CPU): same updates as one process, rank 0 writes, resume across."""

from __future__ import annotations

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
import yaml
from conftest import experiment_dict

from arch_lab.errors import ConfigError
from arch_lab.rundir import RunDir
from arch_lab.training.distributed import DistInfo, shard_rows

pytestmark = pytest.mark.skipif(not torch.distributed.is_available(), reason="torch.distributed unavailable")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("WORLD_SIZE", "RANK", "LOCAL_RANK")}
    return {**env, "OMP_NUM_THREADS": "1", "CUDA_VISIBLE_DEVICES": ""}


def _launch(target: list[str], nproc: int | None, ok: bool = True) -> subprocess.CompletedProcess:
    """``python TARGET`` in a fresh process, under torchrun with ``nproc`` processes when given."""
    launch = []
    if nproc is not None:
        launch = ["-m", "torch.distributed.run", "--nproc_per_node", str(nproc), "--master_addr", "127.0.0.1",
                  "--master_port", str(_free_port())]  # fmt: skip
    proc = subprocess.run([sys.executable, *launch, *target], capture_output=True, text=True, timeout=300, env=_env())
    assert (proc.returncode == 0) == ok, proc.stdout[-2000:] + proc.stderr[-4000:]
    return proc


def _cli(args: list[str], nproc: int | None) -> subprocess.CompletedProcess:
    return _launch(["-m", "arch_lab.cli", *args], nproc)


STOP_AT_10 = """
import sys
from arch_lab import api
from arch_lab.config import load_experiment

class Stop(Exception):
    pass

def stop(step, metrics):
    if step == 10:
        raise Stop("interrupted at step 10")

api.train(load_experiment(sys.argv[1]), run_dir=sys.argv[2], callbacks=[stop])
"""


def _interrupted(path: Path, run_dir: Path, nproc: int | None, tmp_path: Path) -> None:
    """Train ``path`` into ``run_dir`` and stop it right after the step-10 checkpoint."""
    script = tmp_path / "stop_at_10.py"
    script.write_text(STOP_AT_10)
    proc = _launch([str(script), str(path), str(run_dir)], nproc, ok=False)
    assert "interrupted at step 10" in proc.stderr, proc.stderr[-4000:]
    assert RunDir(run_dir).read_status()["status"] == "failed"
    assert torch.load(run_dir / "checkpoint.pt", weights_only=False)["state"]["step"] == 10


def test_shards_cover_the_batch_contiguously():
    for n, world in [(64, 2), (65, 2), (10, 3), (3, 3)]:
        rows = [shard_rows(n, DistInfo(world, r)) for r in range(world)]
        assert rows[0].start == 0
        assert rows[-1].stop == n
        assert all(a.stop == b.start for a, b in zip(rows, rows[1:], strict=False))
        assert max(r.stop - r.start for r in rows) - min(r.stop - r.start for r in rows) <= 1
    with pytest.raises(ConfigError, match="fewer than the 4 processes"):
        shard_rows(3, DistInfo(4, 0))


@pytest.mark.slow
def test_two_processes_match_one_and_resume_across(synthetic_h5ad, tmp_path):
    # 63 rows (3 conditions x 21 cells) split 32/31 between the ranks; OT pairing and path noise drawn globally
    base = experiment_dict(
        synthetic_h5ad,
        tmp_path,
        train={"max_steps": 20, "checkpoint_every": 10},
        optim={"batch_size": 63, "conditions_per_batch": 3},
        flow={"coupling": "exact_ot", "sigma": 0.1},
    )
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(base))
    single, double = tmp_path / "single", tmp_path / "double"
    _cli(["train", str(path), "--run-dir", str(single)], None)
    out = _cli(["train", str(path), "--run-dir", str(double)], 2)
    assert out.stdout.count("deg_recall") == 1, out.stdout  # only rank 0 prints the summary

    one = pd.read_csv(single / "history.csv")
    two = pd.read_csv(double / "history.csv")
    assert list(two["step"]) == [10, 20]
    for col in ("train_loss", "train_grad_norm", "train_lr", "val_energy_distance"):
        pd.testing.assert_series_equal(two[col], one[col], rtol=1e-4, atol=1e-6, check_names=False)
    # micro-batches inside each rank (32 = 10+10+10+2 and 31 = 10+10+10+1 rows, DDP syncing once): same steps
    micro_path = tmp_path / "micro.yaml"
    micro_path.write_text(yaml.safe_dump({**base, "optim": {**base["optim"], "micro_batch_size": 10}}))
    _cli(["train", str(micro_path), "--run-dir", str(tmp_path / "micro")], 2)
    micro = pd.read_csv(tmp_path / "micro" / "history.csv")
    for col in ("train_loss", "train_grad_norm", "val_energy_distance"):
        pd.testing.assert_series_equal(micro[col], one[col], rtol=1e-4, atol=1e-6, check_names=False)
    m1 = json.loads((single / "metrics.json").read_text())["metrics"]
    m2 = json.loads((double / "metrics.json").read_text())["metrics"]
    assert m2["energy_distance"] == pytest.approx(m1["energy_distance"], rel=1e-3)

    meta = json.loads((double / "meta.json").read_text())
    assert meta["distributed"] == {"world_size": 2, "backend": "gloo"}
    assert json.loads((single / "meta.json").read_text())["distributed"]["world_size"] == 1
    # rank 0 alone wrote: nothing but the run directory's own files (no per-rank copies, no stray temporaries)
    names = {p.name for p in double.iterdir()}
    assert not any(n.startswith(".") for n in names), names
    assert names == {p.name for p in single.iterdir()}
    assert RunDir(double).read_status()["status"] == "completed"

    ck = torch.load(double / "checkpoint.pt", weights_only=False)
    assert not any(k.startswith("module.") for k in ck["network"])  # the bare network, not the DDP wrapper

    # a 2-process checkpoint resumes in one process and ends where the uninterrupted runs end
    cut = tmp_path / "cut2"
    _interrupted(path, cut, 2, tmp_path)
    _cli(["train", "--resume", str(cut)], None)
    resumed = pd.read_csv(cut / "history.csv")
    pd.testing.assert_series_equal(resumed["train_loss"], two["train_loss"], rtol=1e-4, atol=1e-6)
    assert torch.load(cut / "checkpoint.pt", weights_only=False)["state"]["step"] == 20
    assert json.loads((cut / "meta.json").read_text())["distributed"]["world_size"] == 1

    # and a 1-process checkpoint resumes in two processes
    cut = tmp_path / "cut1"
    _interrupted(path, cut, None, tmp_path)
    _cli(["train", "--resume", str(cut)], 2)
    resumed = pd.read_csv(cut / "history.csv")
    pd.testing.assert_series_equal(resumed["train_loss"], one["train_loss"], rtol=1e-4, atol=1e-6)
    assert RunDir(cut).read_status()["status"] == "completed"


def _children(pid: int) -> dict[int, int]:
    """``{rank: pid}`` of the processes ``pid`` started (read from /proc: their parent and their RANK)."""
    ranks = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            stat = (entry / "stat").read_text()
            environ = (entry / "environ").read_bytes().split(b"\0")
        except OSError:
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) != pid:
            continue
        for item in environ:
            if item.startswith(b"RANK="):
                ranks[int(item[5:])] = int(entry.name)
    return ranks


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find the ranks")
def test_a_sigterm_to_one_rank_stops_every_rank_after_the_same_step(synthetic_h5ad, tmp_path):
    # checkpoints 50,000 steps apart: only a stop that every rank agrees on leaves rank 0 free to write one
    base = experiment_dict(
        synthetic_h5ad,
        tmp_path,
        train={"max_steps": 100_000, "eval_every": 50_000, "checkpoint_every": 50_000},
        optim={"batch_size": 63, "conditions_per_batch": 3},
    )
    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump(base))
    target = tmp_path / "run"
    launch = ["-m", "torch.distributed.run", "--nproc_per_node", "2", "--master_addr", "127.0.0.1",
              "--master_port", str(_free_port())]  # fmt: skip
    cmd = [sys.executable, *launch, "-m", "arch_lab.cli", "train", str(path), "--run-dir", str(target)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = RunDir(target)
    deadline = time.monotonic() + 300
    while run.read_progress() is None:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "no training progress within 300 s"
        time.sleep(0.05)
    seen = run.read_progress()["step"]
    ranks = _children(proc.pid)
    assert sorted(ranks) == [0, 1], ranks
    os.kill(ranks[1], signal.SIGTERM)  # rank 1 only: rank 0, the writer, learns of it from the agreement
    out, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    status = run.read_status()
    assert status["status"] == "interrupted", (status, err[-3000:])
    assert status["reason"].startswith("interrupted (SIGTERM)")
    stopped = torch.load(target / "checkpoint.pt", weights_only=False)["state"]["step"]
    assert seen <= stopped < 50_000


AGREE = """
import json, sys, threading, time
from pathlib import Path
from arch_lab.stopping import StopRequest
from arch_lab.training import distributed

out = Path(sys.argv[1])
with distributed.session() as info:
    stop = StopRequest()
    landed = out / "landed"
    if info.rank == 1:  # a SIGTERM's handler holds it while this rank waits in the all-reduce, its flag (0) sent

        def handler():
            stop.pending = "SIGTERM"
            landed.touch()

        threading.Timer(1.0, handler).start()
    else:  # join the all-reduce only once the signal has landed on rank 1
        deadline = time.monotonic() + 120
        while not landed.exists():
            assert time.monotonic() < deadline, "rank 1's signal never landed"
            time.sleep(0.01)
    first = distributed.agreed_signal(stop, info)
    held = stop.pending
    second = distributed.agreed_signal(stop, info)  # the next step's agreement
    (out / f"rank{info.rank}.json").write_text(json.dumps({"answers": [first, second], "held": held}))
"""


def test_a_signal_that_lands_during_the_agreement_waits_for_the_next_one(tmp_path):
    """A rank that stopped on a signal the other ranks never saw would leave them training, waiting for it."""
    script = tmp_path / "agree.py"
    script.write_text(AGREE)
    _launch([str(script), str(tmp_path)], 2)
    rows = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]
    assert rows[1]["held"] == "SIGTERM"  # it landed during the first agreement, after rank 1's flag was sent
    assert [r["answers"] for r in rows] == [[None, "SIGTERM"], [None, "SIGTERM"]]
