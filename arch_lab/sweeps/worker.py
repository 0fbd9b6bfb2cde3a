"""A worker: claim queued trials of a study one at a time and run them until the queue is empty.

Claiming is atomic (a queued trial turns RUNNING for exactly one worker), so any number of workers on any
machines share one budget without duplicates; requeued trials are claimed before fresh ones. While a trial runs,
a heartbeat thread marks it alive (RDB storages); before each claim, and every poll while idle, the worker fails
trials whose heartbeat went stale, and Optuna requeues them. Trials of workers on this machine whose process is
gone are failed and requeued at the same moments, on every storage (journal storage has no heartbeats). A worker
with an empty queue waits while trials that can still finish or be requeued run, so a lost one is retried.
A failed trial is recorded as FAIL with its reason and the worker goes on; an interrupted one (Ctrl-C,
SIGTERM) is marked failed, requeued, and the interruption propagates. :func:`requeue_running` (``arch-lab sweep
requeue``) requeues running trials by hand, for workers lost on other machines.

While a trial runs, the worker logs a progress line every :data:`PROGRESS_EVERY_S` seconds: the runs it is
training (every one of them with ``--parallel-runs``) and their steps (from each run's status, see
:meth:`arch_lab.rundir.RunDir.set_progress`), the study's finished trials, and the time left in the trial and the
study at the current pace.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import logging
import math
import threading
import time
import warnings
from collections.abc import Sequence
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arch_lab.errors import ArchLabError
from arch_lab.rundir import RunDir
from arch_lab.stopping import sigterm_as_interrupt
from arch_lab.sweeps.carry import RetryUnlessStuck, earlier_trials
from arch_lab.sweeps.runner import TrialProgress, TrialRunner, worker_alive, worker_label
from arch_lab.sweeps.storage import StorageSpec
from arch_lab.sweeps.study import BudgetCount, StudyHandle, budget_count, is_retry, load_study, locate_study, open_study
from arch_lab.sweeps.sweep import Sweep, load_sweep

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

log = logging.getLogger("arch_lab.sweeps")
#: Seconds between the progress lines a worker logs while a trial runs.
PROGRESS_EVERY_S = 30.0

#: A running trial younger than this is never taken for lost by the process check (its worker label may still be
#: its previous run's, copied into a retry, until the claiming worker writes its own).
CLAIM_GRACE_S = 5.0


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
    number: int, current: TrialProgress | None, statuses: Sequence[dict[str, Any]], count: BudgetCount
) -> str | None:
    """One line on a running trial: the runs it is training and their steps, and the time left in the trial and in
    the study at this pace.

    Parameters
    ----------
    number
        The trial's number.
    current
        The runs in progress (:attr:`TrialRunner.current`).
    statuses
        The status record of each of ``current.jobs`` (:meth:`arch_lab.rundir.RunDir.read_status`; a running run's
        carries its ``progress``, see :meth:`arch_lab.rundir.RunDir.set_progress`).
    count
        The study's budget when the trial was claimed, this trial counted as running.

    Returns
    -------
    str or None
        None until one of the runs has recorded progress.

    Notes
    -----
    The time left schedules the runs not yet started onto ``current.slots`` slots as the running ones free them,
    each taking a whole run at the running runs' pace (a resumed run is counted whole too, so the estimate errs
    long); runs that have ended (completed, failed, pruned) count nothing.
    """
    if current is None:
        return None
    running: list[tuple[int, dict[str, Any]]] = []
    waiting_runs = unstepped = 0
    for (index, _), status in zip(current.jobs, statuses, strict=True):
        state, progress = status.get("status"), status.get("progress")
        if state == "running" and isinstance(progress, dict):
            running.append((index, progress))
        elif state == "running":
            unstepped += 1  # started (or resumed, e.g. into its final evaluation) without a step recorded yet
        elif state not in ("completed", "failed", "pruned"):
            waiting_runs += 1  # not started, or waiting to resume
    if not running:
        return None
    runs, first = current.runs, running[0][1]
    total = int(first["max_steps"])
    pace = sum(float(p["seconds_per_step"]) for _, p in running) / len(running)
    run_seconds = min(total * pace, float(first.get("max_seconds") or math.inf))  # a train.max_seconds cap
    ends = sorted(
        float(p.get("eta_seconds", (int(p["max_steps"]) - int(p["step"])) * float(p["seconds_per_step"])))
        for _, p in running
    )
    ends += [0.0] * max(current.slots - len(ends), 0)
    for _ in range(waiting_runs + unstepped):  # each takes the slot that frees first, a whole run long (errs long)
        ends.sort()
        ends[0] += run_seconds
    trial_left = max(ends) + current.later * run_seconds
    waiting = max(count.slots - count.finished - count.running, 0)
    trial_seconds = math.ceil(runs / max(current.slots, 1)) * run_seconds
    study_left = trial_left + waiting * trial_seconds / max(count.running, 1)
    steps = ", ".join(f"run {index + 1}/{runs} at step {int(p['step'])}/{int(p['max_steps'])}" for index, p in running)
    queued = f", {unstepped} more running without a step recorded yet" if unstepped else ""
    queued += f", {waiting_runs} more to start" if waiting_runs else ""
    return (
        f"trial {number}: {steps} ({pace:.2g} s/step){queued}; about {format_duration(trial_left)} left in this "
        f"trial; study {count.finished}/{count.slots} trials finished, about {format_duration(study_left)} left at "
        "this pace"
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
        while not self._stop.wait(self.interval):
            current = self.runner.current
            statuses = [_status(path) for _, path in current.jobs] if current is not None else []
            line = progress_line(self.number, current, statuses, self.count)
            if line is not None:
                log.info(line)

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join()


def _status(path: Path) -> dict[str, Any]:
    """A run's status record; ``{"status": "missing"}`` while it is unreadable (being written, or not yet there)."""
    try:
        return RunDir(path).read_status()
    except (OSError, ValueError):
        return {"status": "missing"}


def fail_stale(handle: StudyHandle) -> None:
    """Mark trials whose worker stopped beating as failed (Optuna then requeues them)."""
    if handle.storage.heartbeats:
        import optuna

        with warnings.catch_warnings(), handle.storage.lock():
            warnings.simplefilter("ignore", optuna.exceptions.ExperimentalWarning)
            optuna.storages.fail_stale_trials(handle.study)


def _age_seconds(trial: FrozenTrial) -> float:
    start = trial.datetime_start
    return (_dt.datetime.now() - start).total_seconds() if start is not None else float("inf")


def _may_end(trial: FrozenTrial) -> bool:
    """True while a running trial may still finish (its worker here is alive) or be requeued by
    :func:`fail_lost_local` (its worker here is gone, and the claim grace has not passed yet).
    """
    alive = worker_alive(trial)
    return bool(alive) or (alive is False and _age_seconds(trial) <= CLAIM_GRACE_S + 1)


def fail_and_requeue(handle: StudyHandle, number: int, reason: str, max_retry: int | None = None) -> int | None:
    """Fail a running trial with ``reason`` and queue a copy with the same parameters (its retry).

    The trial's run directories that no process writes any more are marked ``failed`` with the same reason.

    Returns
    -------
    int or None
        The retry's number; None when the trial had already finished (another worker got there first) or
        ``max_retry`` retries of it were used up (it stays failed).
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    backend, study = handle.backend, handle.study
    trial_id = backend.get_trial_id_from_study_id_trial_number(handle.study_id, number)
    with handle.storage.lock():
        if backend.get_trial(trial_id).state != TrialState.RUNNING:
            return None
        try:  # its worker may finish it meanwhile (storages other than SQLite are not locked here)
            backend.set_trial_user_attr(trial_id, "reason", reason)
            if not backend.set_trial_state_values(trial_id, state=TrialState.FAIL):
                return None
        except UpdateFinishedTrialError:
            return None
        frozen = backend.get_trial(trial_id)
        RetryUnlessStuck(max_retry)(study, frozen)
    retry = next(
        (
            t.number
            for t in study.get_trials(deepcopy=False)
            if (t.system_attrs.get("retry_history") or [None])[-1] == number
        ),
        None,
    )
    for path in frozen.user_attrs.get("run_dirs") or []:
        run = RunDir(path)
        with contextlib.suppress(ArchLabError, OSError):  # a run directory out of reach must not stop the worker
            if run.process_gone():
                run.set_status("failed", reason=reason + (f"; retried as trial {retry}" if retry is not None else ""))
    return retry


def fail_lost_local(handle: StudyHandle, max_retry: int | None = None) -> list[int]:
    """Requeue running trials of workers on this machine whose process is gone (any storage); returns their
    numbers.
    """
    from optuna.trial import TrialState

    lost = []
    for t in handle.study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        if _age_seconds(t) > CLAIM_GRACE_S and worker_alive(t) is False:
            retry = fail_and_requeue(handle, t.number, f"worker lost ({t.user_attrs.get('worker')} is gone)", max_retry)
            log.warning(
                "trial %d: its worker %s is gone; requeued as trial %s", t.number, t.user_attrs.get("worker"), retry
            )
            lost.append(t.number)
    return lost


def claim(handle: StudyHandle) -> int | None:
    """Atomically take a queued trial (its id), or None when the queue is empty.

    Requeued trials (retries of lost or interrupted ones) come first, then the oldest. The claiming worker's
    label (``host:pid``) is recorded at once.
    """
    from optuna.exceptions import UpdateFinishedTrialError
    from optuna.trial import TrialState

    backend = handle.backend
    with handle.storage.lock():
        # Listing through the study keeps Optuna's trial cache aware of the trial this worker is about to run.
        waiting = handle.study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
        for t in sorted(waiting, key=lambda t: (not is_retry(t), t.number)):
            trial_id = backend.get_trial_id_from_study_id_trial_number(handle.study_id, t.number)
            try:
                if backend.set_trial_state_values(trial_id, state=TrialState.RUNNING):
                    backend.set_trial_user_attr(trial_id, "worker", worker_label())
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
    parallel_runs: int = 1,
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
        How often an idle worker checks on other workers' trials (default: the heartbeat interval, at most 10 s;
        1 s without heartbeats).
    parallel_runs
        Train up to this many of a trial's runs (seeds, folds) at once, each in its own process
        (:mod:`arch_lab.sweeps.parallel`; needs ``pruner: none``).

    Returns
    -------
    WorkerReport
    """
    from optuna.trial import TrialState

    from arch_lab.provenance import git_sha

    runner = TrialRunner(sweep, git_sha(), parallel_runs)  # refuses a bad parallel_runs before the study is touched
    handle = open_study(sweep, storage, create=create, seed_offset=seed_offset)
    budget = sweep.spec.budget
    interval = sweep.spec.study.heartbeat_interval if storage.heartbeats else None
    poll = poll_seconds if poll_seconds is not None else min(float(interval or 1), 10.0)
    deadline = time.monotonic() + budget.timeout if budget.timeout else None
    report = WorkerReport()
    max_retry = sweep.spec.study.max_retry
    with sigterm_as_interrupt():
        while True:
            fail_stale(handle)
            fail_lost_local(handle, max_retry)
            if deadline is not None and time.monotonic() > deadline:
                report.stopped = "timeout"
                break
            trials = handle.study.get_trials(deepcopy=False)
            if budget.max_failures is not None and counted_failures(trials) >= budget.max_failures:
                report.stopped = "max_failures"
                break
            trial_id = claim(handle)
            if trial_id is None:
                # wait while a running trial can still finish or be requeued by this worker: with heartbeats any,
                # without them those of live workers on this machine (a lost one is then noticed at the next poll)
                running = [t for t in trials if t.state == TrialState.RUNNING]
                if any(interval is not None or _may_end(t) for t in running):
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
        value = runner(trial, earlier_trials(handle.backend.get_trial(trial_id)))
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
    from optuna.trial import TrialState

    if handle.backend.get_trial(trial_id).state.is_finished():
        return  # already failed by another worker's heartbeat check, which requeued it
    trial.set_user_attr("reason", reason)
    handle.study.tell(trial, state=TrialState.FAIL)
    RetryUnlessStuck()(handle.study, handle.backend.get_trial(trial_id))  # an interruption is never the trial's fault
    log.warning("trial %d interrupted and requeued", trial.number)


@dataclass
class RequeueReport:
    """What :func:`requeue_running` did.

    Parameters
    ----------
    requeued
        ``(trial, retry)`` numbers; ``retry`` is None when the trial's retries were used up (it stays failed).
    left
        ``(trial, why)`` for running trials left alone.
    """

    requeued: list[tuple[int, int | None]] = field(default_factory=list)
    left: list[tuple[int, str]] = field(default_factory=list)


def requeue_running(
    source: str | Path, storage: str | None = None, older_than: float = 0.0, profile: str | None = None
) -> RequeueReport:
    """Fail and requeue the running trials of a study whose workers are gone, on any storage.

    For workers killed without a trace (SIGKILL, a lost machine) on journal storage, which has no heartbeats, or
    to requeue before the grace period of RDB storage ends. Each trial is failed with reason ``worker lost
    (requeued by hand)`` and a copy with its parameters is queued (up to ``study.max_retry`` times when ``source``
    is a sweep YAML); the next worker runs it before fresh trials.

    Parameters
    ----------
    source, storage, profile
        The study (see :func:`~arch_lab.sweeps.study.locate_study`).
    older_than
        Only trials that started more than this many seconds ago.

    Returns
    -------
    RequeueReport

    Notes
    -----
    A trial whose worker runs on this machine and is alive is left alone; on other machines the worker cannot be
    seen from here, so only requeue trials whose workers you know are gone (a live worker's result would be
    dropped and its trial run again).
    """
    from optuna.trial import TrialState

    location = locate_study(source, storage, profile)
    study = load_study(source, storage, profile)
    backend = study._storage
    handle = StudyHandle(study, location.storage, backend, backend.get_study_id_from_name(study.study_name), False)
    max_retry = None
    if Path(str(source)).suffix in (".yaml", ".yml"):
        max_retry = load_sweep(source, profile).spec.study.max_retry
    report = RequeueReport()
    for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        age = _age_seconds(t)
        if age < older_than:
            report.left.append((t.number, f"started {age:.0f} s ago (--older-than {older_than:g})"))
        elif worker_alive(t):
            report.left.append((t.number, f"its worker {t.user_attrs.get('worker')} is alive"))
        else:
            report.requeued.append(
                (t.number, fail_and_requeue(handle, t.number, "worker lost (requeued by hand)", max_retry))
            )
    return report
