"""Running a sweep locally: create or resume the study, then run its queue with N worker processes.

Each worker is a separate ``arch-lab sweep worker`` process on the same storage, exactly as a worker on
another machine would be, so local and distributed runs share one code path.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from arch_lab.errors import ArchLabError
from arch_lab.sweeps.report import SweepStatus, sweep_status
from arch_lab.sweeps.runner import check_parallel_runs
from arch_lab.sweeps.storage import StorageSpec, default_storage_url, parse_storage
from arch_lab.sweeps.study import issue_slots, load_study, open_study
from arch_lab.sweeps.sweep import Sweep, load_sweep
from arch_lab.sweeps.worker import counted_failures, run_worker

THREAD_VARS = ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS")
INTERRUPT_GRACE_S = 15.0


@dataclass
class SweepRun:
    """The outcome of :func:`run_sweep`.

    Parameters
    ----------
    sweep
        The sweep that ran.
    storage
        Its storage.
    status
        The study's state afterwards.
    """

    sweep: Sweep
    storage: StorageSpec
    status: SweepStatus


def resolve_storage(sweep: Sweep, storage: str | None = None) -> StorageSpec:
    """``storage`` if given, else the YAML's ``study.storage``, else the default SQLite file."""
    st = sweep.spec.study
    return parse_storage(storage or st.storage or default_storage_url(st.name, st.output_dir))


def run_sweep(
    path: str | Path,
    workers: int = 1,
    storage: str | None = None,
    threads: int | None = None,
    profile: str | None = None,
    parallel_runs: int = 1,
) -> SweepRun:
    """Create (or resume) a sweep's study and run its queue to the end with ``workers`` processes.

    Parameters
    ----------
    path
        The sweep YAML.
    workers
        Worker processes (1 runs in this process).
    storage
        Overrides ``study.storage``.
    threads
        Torch threads per worker (default: the CPU count divided among the workers).
    profile
        A profile of the YAML (``profiles:``) merged over it; the study is ``<name>_<profile>``.
    parallel_runs
        Each worker trains up to this many of a trial's runs (seeds, folds) at once, each in its own process
        (:mod:`arch_lab.sweeps.parallel`; needs ``pruner: none``); ``threads`` is then per run.

    Returns
    -------
    SweepRun

    Raises
    ------
    ArchLabError
        An invalid sweep (nothing is created), a study made with another space, or a worker that crashed.
    """
    if workers < 1:
        raise ArchLabError(f"--workers must be at least 1 (got {workers})")
    sweep = load_sweep(path, profile)
    check_parallel_runs(sweep, parallel_runs)
    spec = resolve_storage(sweep, storage)
    handle = open_study(sweep, spec, create=True)
    if not handle.created:
        issue_slots(handle, sweep)
    if workers == 1:
        if threads:
            import torch

            torch.set_num_threads(threads)
        run_worker(sweep, spec, seed_offset=0, create=False, parallel_runs=parallel_runs)
    else:
        default = max(1, (os.cpu_count() or 1) // (workers * parallel_runs))
        _run_processes(Path(path), spec, workers, threads or default, profile, parallel_runs)
    limit = sweep.spec.budget.max_failures
    status = sweep_status(path, spec.url, profile=profile)
    if limit is not None and status.finished < status.slots:
        failed = counted_failures(load_study(path, spec.url, profile).get_trials(deepcopy=False))
        if failed >= limit:
            raise ArchLabError(
                f"stopped after {failed} failed trials (budget.max_failures: {limit}); see arch-lab sweep status "
                f"{path}, fix the cause or raise max_failures, and rerun to continue"
            )
    return SweepRun(sweep, spec, status)


@contextlib.contextmanager
def sigterm_forwarded(procs: list[subprocess.Popen]) -> Iterator[None]:
    """While the block runs, a SIGTERM to this process (``kill``, a scheduler's preemption) goes on to the workers
    still running, each of which requeues its trial, and is raised here as :class:`KeyboardInterrupt`.

    Only in the main thread (elsewhere signals cannot be handled); the previous handler is restored afterwards.
    A Ctrl-C reaches the workers without help: the terminal sends it to the whole process group.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        for p in procs:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        raise KeyboardInterrupt(signal.Signals(signum).name)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _run_processes(
    path: Path, spec: StorageSpec, workers: int, threads: int, profile: str | None = None, parallel_runs: int = 1
) -> None:
    env = dict(os.environ)
    for var in THREAD_VARS:
        env.setdefault(var, str(threads))
    procs = []
    for i in range(workers):
        cmd = [sys.executable, "-m", "arch_lab.cli", "sweep", "worker", str(path), "--storage", spec.url]
        cmd += ["--worker-id", str(i), "--threads", str(threads)]
        cmd += ["--profile", profile] if profile else []
        cmd += ["--parallel-runs", str(parallel_runs)] if parallel_runs > 1 else []
        procs.append(subprocess.Popen(cmd, env=env))
    try:
        with sigterm_forwarded(procs):
            codes = [p.wait() for p in procs]
    except KeyboardInterrupt:
        # Workers in this terminal got the same Ctrl-C (or the SIGTERM this process forwarded); give them time to
        # requeue their trial, then insist.
        for p in procs:
            try:
                p.wait(timeout=INTERRUPT_GRACE_S)
            except subprocess.TimeoutExpired:
                p.send_signal(signal.SIGTERM)
        for p in procs:
            p.wait()
        raise
    bad = [(i, c) for i, c in enumerate(codes) if c != 0]
    if bad:
        listing = ", ".join(f"worker {i} exited with code {c}" for i, c in bad)
        raise ArchLabError(f"{listing}; see their output above, then rerun the same command to resume")
