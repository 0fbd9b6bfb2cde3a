"""A trial's runs (its seeds, its folds) trained at the same time, each in its own process.

A trial trains its runs one after another by default. With ``parallel_runs`` above 1 (``arch-lab sweep run
--parallel-runs N``) up to N of them train at once in child processes of the worker, which then reads each run's
``metrics.json`` as it does after training in-process. On a GPU that one small network leaves mostly idle, or on a
machine with more cores than a worker's threads, this shortens a trial by up to N times.

Each child trains with the worker's torch thread count, traps SIGTERM as an interruption (its run is marked
``interrupted`` and keeps its checkpoints, which a retry resumes), and stops itself the same way when the worker
dies. A failed run does not stop the others: the ones started finish, no new one starts, and the first failure is
raised. An interruption of the worker (Ctrl-C, SIGTERM) interrupts every child.
"""

from __future__ import annotations

import faulthandler
import logging
import multiprocessing as mp
import os
import queue
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arch_lab.errors import ArchLabError

if TYPE_CHECKING:
    from arch_lab.config import ExperimentConfig

log = logging.getLogger("arch_lab.sweeps")

#: Seconds an interrupted child gets to mark its run and exit before it is killed.
INTERRUPT_GRACE_S = 15.0
#: How often the worker checks its children, and a child its worker.
POLL_S = 0.5


@dataclass(frozen=True)
class RunJob:
    """One run of a trial to train in a child process.

    Parameters
    ----------
    index
        The run's position in the trial (its seeds and folds in order).
    cfg
        The run's experiment (unused when ``resume``).
    run_dir
        Where it trains.
    resume
        Continue the unfinished run in ``run_dir`` from its checkpoint instead of starting one.
    """

    index: int
    cfg: ExperimentConfig
    run_dir: Path
    resume: bool = False


def train_concurrently(jobs: list[RunJob], limit: int, threads: int | None = None) -> None:
    """Train ``jobs``, at most ``limit`` at a time, each in a child process; return when all have ended.

    Parameters
    ----------
    jobs
        The runs to train (in this order of start).
    limit
        Children at a time.
    threads
        Torch threads per child (default: this process's).

    Raises
    ------
    ArchLabError
        A run failed (the first failure, by its message; the started runs were let finish), or a child ended
        without a word (killed, out of memory).
    KeyboardInterrupt
        This process was interrupted; every child was interrupted first (its run marked ``interrupted``).
    """
    if limit < 1:
        raise ArchLabError(f"parallel runs must be at least 1 (got {limit})")
    import torch

    threads = threads or torch.get_num_threads()
    ctx = mp.get_context("spawn")  # a fork of a process holding torch threads or CUDA state is not safe
    results: Any = ctx.Queue()
    waiting = list(jobs)
    active: dict[int, Any] = {}
    failures: list[str] = []
    try:
        while waiting or active:
            while waiting and len(active) < limit and not failures:
                job = waiting.pop(0)
                proc = ctx.Process(target=_child, args=(job, threads, os.getpid(), results), name=f"run-{job.index}")
                proc.start()
                active[job.index] = proc
                log.info("run %d (%s) started in process %d", job.index + 1, job.run_dir.name, proc.pid)
            if failures and not active:
                break
            try:
                index, error = results.get(timeout=POLL_S)
            except queue.Empty:
                for index, proc in list(active.items()):
                    if not proc.is_alive() and proc.exitcode != 0:
                        active.pop(index)
                        failures.append(f"run {index + 1} ended without a result (exit code {proc.exitcode})")
                continue
            finished = active.pop(index, None)  # None: already counted as ended without a result
            if finished is not None:
                finished.join()
            if error is not None:
                failures.append(error)
    finally:
        _interrupt(list(active.values()))
    if failures:
        raise ArchLabError(failures[0])


def _interrupt(procs: list[Any]) -> None:
    """SIGTERM each live child (it marks its run interrupted), wait for it, then kill what is left."""
    for proc in procs:
        if proc.is_alive():
            proc.terminate()
    deadline = time.monotonic() + INTERRUPT_GRACE_S
    for proc in procs:
        proc.join(max(0.0, deadline - time.monotonic()))
        if proc.is_alive():
            os.kill(proc.pid, signal.SIGUSR1)  # the child's faulthandler prints where it is stuck
            time.sleep(0.5)
            log.warning("%s (process %d) did not stop within %.0f s of SIGTERM; killed", proc.name, proc.pid,
                        INTERRUPT_GRACE_S)  # fmt: skip
            proc.kill()
            proc.join()
        elif proc.exitcode != 0:
            log.warning("%s (process %d) ended with exit code %s", proc.name, proc.pid, proc.exitcode)


def _child(job: RunJob, threads: int, parent: int, results: Any) -> None:
    """Train (or resume) one run and put ``(index, None or the failure's one-line message)``."""
    import torch

    from arch_lab import api
    from arch_lab.stopping import sigterm_as_interrupt

    torch.set_num_threads(threads)
    faulthandler.register(signal.SIGUSR1, all_threads=True)
    threading.Thread(target=_stop_with_parent, args=(parent,), daemon=True).start()
    error: str | None = None
    try:
        with sigterm_as_interrupt():
            if job.resume:
                api.resume(job.run_dir)
            else:
                api.train(job.cfg, run_dir=job.run_dir)
    except ArchLabError as exc:
        error = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    except KeyboardInterrupt:
        error = f"run {job.index + 1} was interrupted"
    except BaseException as exc:  # a bug: its type, message and where it happened reach the worker's log
        log.error("run %d failed:\n%s", job.index + 1, traceback.format_exc())
        error = f"{type(exc).__name__}: {exc}".splitlines()[0]
    results.put((job.index, error))
    results.close()
    results.join_thread()


def _stop_with_parent(parent: int) -> None:
    """Interrupt this process (as SIGTERM would) once the worker that started it is gone; if it has not ended
    within the grace period, print its stack and kill it (nobody else is left to).
    """
    while os.getppid() == parent:
        time.sleep(POLL_S)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(INTERRUPT_GRACE_S)
    faulthandler.dump_traceback(all_threads=True)
    os.kill(os.getpid(), signal.SIGKILL)
