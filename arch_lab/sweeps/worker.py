"""A worker: claim queued trials of a study one at a time and run them until the queue is empty.

Claiming is atomic (a queued trial turns RUNNING for exactly one worker), so any number of workers on any
machines share one budget without duplicates. While a trial runs, a heartbeat thread marks it alive (RDB
storages); before each claim the worker fails trials whose heartbeat went stale, and Optuna requeues them. A
worker with an empty queue waits while trials of other workers still run, so a lost one is always retried.
A failed trial is recorded as FAIL with its reason and the worker goes on; an interrupted one (Ctrl-C,
SIGTERM) is marked failed, requeued, and the interruption propagates.

While a trial runs, the worker logs a progress line every :data:`PROGRESS_EVERY_S` seconds: the run and step
within the trial (from the run's status, see :meth:`arch_lab.rundir.RunDir.set_progress`), the study's finished
trials, and the time left in the trial and the study at the current pace.
"""

from __future__ import annotations

import logging
import math
import signal
import threading
import time
import warnings
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from arch_lab.errors import ArchLabError
from arch_lab.sweeps.runner import TrialRunner, worker_label
from arch_lab.sweeps.storage import StorageSpec
from arch_lab.sweeps.study import BudgetCount, StudyHandle, budget_count, is_retry, open_study
from arch_lab.sweeps.sweep import Sweep

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

log = logging.getLogger("arch_lab.sweeps")
#: Seconds between the progress lines a worker logs while a trial runs.
PROGRESS_EVERY_S = 30.0


@dataclass
class WorkerReport:
    """What one worker did.

    Parameters
    ----------
    trials
        Numbers of the trials it ran.
    stopped
        Why it stopped: ``done``, ``timeout`` or ``max_failures``.
    """

    trials: list[int] = field(default_factory=list)
    stopped: str = "done"


class _Heartbeat:
    """Records a trial's heartbeat every ``interval`` seconds until stopped."""

    def __init__(self, handle: StudyHandle, trial_id: int, interval: int | None) -> None:
        self.backend, self.trial_id, self.interval = handle.backend, trial_id, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _Heartbeat:
        if self.interval is not None:
            self._record()
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.interval):
            try:
                self._record()
            except Exception as exc:  # a database hiccup must not kill the trial
                log.warning("heartbeat of trial id %s failed: %s", self.trial_id, exc)

    def _record(self) -> None:
        from optuna.storages import RDBStorage

        if not isinstance(self.backend, RDBStorage):  # StorageSpec.heartbeats: only RDB storages keep them
            raise TypeError(f"{type(self.backend).__name__} records no heartbeats")
        self.backend.record_heartbeat(self.trial_id)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def format_duration(seconds: float) -> str:
    """``45 s``, ``12 min``, ``2 h 05 min`` (``?`` when unknown)."""
    if not math.isfinite(seconds):
        return "?"
    s = max(int(round(seconds)), 0)
    if s < 90:
        return f"{s} s"
    minutes = int(round(s / 60))
    if minutes < 90:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min"


def progress_line(
    number: int, current: tuple[int, int, Any] | None, progress: dict[str, Any] | None, count: BudgetCount
) -> str | None:
    """One line on a running trial: its run and step, and the time left in it and in the study at this pace.

    Parameters
    ----------
    number
        The trial's number.
    current
        ``(index, runs, run_dir)`` of the run in progress (:attr:`TrialRunner.current`).
    progress
        What that run last recorded (:meth:`arch_lab.rundir.RunDir.read_progress`).
    count
        The study's budget when the trial was claimed, this trial counted as running.

    Returns
    -------
    str or None
        None until the run has recorded progress.
    """
    if current is None or progress is None:
        return None
    index, runs = current[0], current[1]
    step, total, pace = int(progress["step"]), int(progress["max_steps"]), float(progress["seconds_per_step"])
    trial_left = (total - step) * pace + (runs - index - 1) * total * pace
    waiting = max(count.slots - count.finished - count.running, 0)
    study_left = trial_left + waiting * runs * total * pace / max(count.running, 1)
    return (
        f"trial {number}: run {index + 1}/{runs}, step {step}/{total} ({pace:.2g} s/step); about "
        f"{format_duration(trial_left)} left in this trial; study {count.finished}/{count.slots} trials finished, "
        f"about {format_duration(study_left)} left at this pace"
    )


class _ProgressLog:
    """Logs :func:`progress_line` for the running trial every ``interval`` seconds until stopped."""

    def __init__(self, runner: TrialRunner, number: int, count: BudgetCount, interval: float) -> None:
        self.runner, self.number, self.count, self.interval = runner, number, count, interval
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def __enter__(self) -> _ProgressLog:
        if self.interval > 0:
            self._thread = threading.Thread(target=self._beat, daemon=True)
            self._thread.start()
        return self

    def _beat(self) -> None:
        from arch_lab.rundir import RunDir

        while not self._stop.wait(self.interval):
            current = self.runner.current
            progress = RunDir(current[2]).read_progress() if current is not None else None
            line = progress_line(self.number, current, progress, self.count)
            if line is not None:
                log.info(line)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


@contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (Slurm preemption, ``kill``) into KeyboardInterrupt so the running trial is requeued."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt(f"signal {signum}")

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def fail_stale(handle: StudyHandle) -> None:
    """Mark trials whose worker stopped beating as failed (Optuna then requeues them)."""
    if handle.storage.heartbeats:
        import optuna

        with warnings.catch_warnings(), handle.storage.lock():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(handle.study)


def claim(handle: StudyHandle) -> int | None:
    """Atomically take the oldest queued trial (its id), or None when the queue is empty."""
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    backend = handle.backend
    with handle.storage.lock():
        # Listing through the study keeps Optuna's trial cache aware of the trial this worker is about to run.
        for t in handle.study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
            trial_id = backend.get_trial_id_from_study_id_trial_number(handle.study_id, t.number)
            try:
                if backend.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    return trial_id
            except UpdateFinishedTrialError:
                continue
    return None


def counted_failures(trials: list[FrozenTrial]) -> int:
    """Failed trials that were not requeued (lost workers and interruptions are retried, not counted)."""
    from optuna.trial import TrialState

    retried = {n for t in trials if is_retry(t) for n in t.system_attrs.get("retry_history", [])}
    return sum(1 for t in trials if t.state == TrialState.FAIL and t.number not in retried)


def run_worker(
    sweep: Sweep,
    storage: StorageSpec,
    *,
    seed_offset: int = 0,
    create: bool = True,
    poll_seconds: float | None = None,
) -> WorkerReport:
    """Run queued trials of the sweep's study until none is left (or the timeout or failure limit hits).

    Parameters
    ----------
    sweep
        The validated sweep.
    storage
        Where the study lives.
    seed_offset
        Gives this worker its own sampler stream (each worker of a study needs a different one).
    create
        Create the study if it does not exist yet.
    poll_seconds
        How often an idle worker checks on other workers' trials (default: the heartbeat interval, at most 10 s).

    Returns
    -------
    WorkerReport
    """
    from optuna.trial import TrialState

    from arch_lab.provenance import git_sha

    handle = open_study(sweep, storage, create=create, seed_offset=seed_offset)
    runner = TrialRunner(sweep, git_sha())
    budget = sweep.spec.budget
    interval = sweep.spec.study.heartbeat_interval if storage.heartbeats else None
    poll = poll_seconds if poll_seconds is not None else min(float(interval or 1), 10.0)
    deadline = time.monotonic() + budget.timeout if budget.timeout else None
    report = WorkerReport()
    with sigterm_as_interrupt():
        while True:
            fail_stale(handle)
            if deadline is not None and time.monotonic() > deadline:
                report.stopped = "timeout"
                break
            trials = handle.study.get_trials(deepcopy=False)
            if budget.max_failures is not None and counted_failures(trials) >= budget.max_failures:
                report.stopped = "max_failures"
                break
            trial_id = claim(handle)
            if trial_id is None:
                if interval is not None and any(t.state == TrialState.RUNNING for t in trials):
                    time.sleep(poll)
                    continue
                break
            count = budget_count(trials)
            count = count._replace(running=count.running + 1)  # this trial, claimed after the count
            report.trials.append(run_claimed(handle, runner, trial_id, interval, count))
    return report


def run_claimed(
    handle: StudyHandle, runner: TrialRunner, trial_id: int, interval: int | None, count: BudgetCount | None = None
) -> int:
    """Run one claimed trial under a heartbeat and record its outcome; returns its number.

    With ``count`` (the study's budget when it was claimed), progress lines are logged while it runs.
    """
    import optuna

    with _Heartbeat(handle, trial_id, interval):
        trial = optuna.trial.Trial(handle.study, trial_id)
        where = f" (study {count.finished}/{count.slots} trials finished)" if count is not None else ""
        log.info("trial %d started on %s%s", trial.number, worker_label(), where)
        progress = _ProgressLog(runner, trial.number, count, PROGRESS_EVERY_S) if count is not None else None
        try:
            with progress or nullcontext():
                _run_and_record(handle, runner, trial, trial_id)
        except optuna.exceptions.UpdateFinishedTrialError:
            log.warning(
                "trial %d was failed by another worker (heartbeat too late); its result is dropped", trial.number
            )
    return trial.number


def _run_and_record(handle: StudyHandle, runner: TrialRunner, trial: optuna.trial.Trial, trial_id: int) -> None:
    import optuna
    from optuna.trial import TrialState

    study = handle.study
    try:
        value = runner(trial)
    except optuna.TrialPruned as exc:
        trial.set_user_attr("reason", str(exc) or "pruned")
        study.tell(trial, state=TrialState.PRUNED, skip_if_finished=True)
        log.info("trial %d pruned: %s", trial.number, exc)
        return
    except KeyboardInterrupt:
        _requeue(handle, trial, trial_id, "interrupted; requeued")
        raise
    except optuna.exceptions.UpdateFinishedTrialError:
        raise
    except Exception as exc:
        reason = str(exc) if isinstance(exc, ArchLabError) else f"{type(exc).__name__}: {exc}"
        reason = reason.strip().splitlines()[0] if reason.strip() else type(exc).__name__
        trial.set_user_attr("reason", reason)
        study.tell(trial, state=TrialState.FAIL, skip_if_finished=True)
        log.warning("trial %d failed: %s", trial.number, reason, exc_info=not isinstance(exc, ArchLabError))
        return
    study.tell(trial, value, skip_if_finished=True)
    log.info("trial %d finished: %.6g %s", trial.number, value, trial.user_attrs.get("values_per_seed", []))


def _requeue(handle: StudyHandle, trial: optuna.trial.Trial, trial_id: int, reason: str) -> None:
    import optuna
    from optuna.trial import TrialState

    if handle.backend.get_trial(trial_id).state.is_finished():
        return  # already failed by another worker's heartbeat check, which requeued it
    trial.set_user_attr("reason", reason)
    handle.study.tell(trial, state=TrialState.FAIL)
    frozen = handle.backend.get_trial(trial_id)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
        optuna.storages.RetryHeartbeatStaleTrialCallback()(handle.study, frozen)
    log.warning("trial %d interrupted and requeued", trial.number)
