"""What a retried trial takes over from the trials it retries.

A trial requeued after its worker was lost or interrupted (its *retry*, see :mod:`arch_lab.sweeps.worker`) runs the
same configuration with the same seeds, so each run its predecessors finished, or checkpointed, is still good:

- a **completed** run of the same config is adopted as it is (its metrics are scored, nothing is trained);
- an **unfinished** run of the same config with a checkpoint, which no process writes any more, is resumed where
  its checkpoint left it (:func:`arch_lab.api.resume`, bit-identical to a run never stopped);
- only a run none of them reached is trained from scratch, in the retry's own directory.

A study stopped by the end of a session, a preempted job or a killed worker thus loses at most the steps since
each run's last checkpoint (``train.checkpoint_every``), not the trial's finished runs.

Because a retry continues rather than restarts, losing a worker that *made progress* (completed a run, or
checkpointed beyond what it took over) costs nothing, so :class:`RetryUnlessStuck` requeues such a trial whatever its
number of earlier retries; ``study.max_retry`` caps only the retries after which nothing moved, the ones a
configuration that kills its worker (out of memory, say) would repeat for ever.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from arch_lab.errors import ArchLabError
from arch_lab.rundir import RunDir

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from arch_lab.config import ExperimentConfig


@dataclass(frozen=True)
class EarlierRun:
    """A run of an earlier trial that a retry takes over.

    Parameters
    ----------
    run_dir
        The earlier run's directory (the retry continues there).
    how
        ``"completed"`` (adopted as it is) or ``"checkpoint"`` (resumed from its checkpoint).
    trial
        The number of the trial that started it.
    step
        The step its checkpoint holds (0 for a completed run, whose step is not read).
    """

    run_dir: Path
    how: Literal["completed", "checkpoint"]
    trial: int
    step: int = 0

    def describe(self) -> str:
        """One line for the log, e.g. ``completed in trial 0, taken over`` or ``resumed from trial 0's checkpoint at
        step 1118``.
        """
        if self.how == "completed":
            return f"completed in trial {self.trial}, taken over"
        return f"resumed from trial {self.trial}'s checkpoint at step {self.step}"


def earlier_trials(frozen: FrozenTrial) -> list[int]:
    """The numbers of the trials ``frozen`` retries, newest first (empty for a trial that is not a retry).

    Optuna records them as ``retry_history`` (oldest first) when it requeues a failed trial.
    """
    history = frozen.system_attrs.get("retry_history") or []
    return [int(n) for n in reversed(history)]


def _same_config(run: RunDir, cfg: ExperimentConfig) -> bool:
    """True when ``run`` was written for what ``cfg`` computes (:func:`arch_lab.config.config_hash`)."""
    from arch_lab.config import config_hash

    try:
        return config_hash(run.read_config()) == config_hash(cfg)
    except (ArchLabError, OSError, ValueError):  # a torn or foreign config.yaml: not this run's
        return False


def checkpoint_step(run: RunDir) -> int | None:
    """The training step ``run``'s checkpoint holds; None when it cannot be read (torn, foreign or missing).

    The checkpoint is memory-mapped, so only the few bytes of its step are read, not its weights.
    """
    import torch

    try:
        payload = torch.load(run.checkpoint, map_location="cpu", mmap=True, weights_only=False)
        return int(payload["state"]["step"])
    except Exception:  # any unreadable checkpoint means "train this replicate afresh", never a crash
        return None


def find_earlier_run(cfg: ExperimentConfig, candidates: list[tuple[int, Path]]) -> EarlierRun | None:
    """The run a retry should take over for one replicate, or None to train it from scratch.

    Parameters
    ----------
    cfg
        The replicate's experiment (the retry's).
    candidates
        ``(trial number, run directory)`` of the same replicate in each earlier trial, newest first.

    Returns
    -------
    EarlierRun or None
        A completed run of the same config when there is one (the newest); otherwise the unfinished run of the same
        config whose checkpoint got furthest (the newest on ties), unless a live process still writes it; None when
        there is neither.
    """
    resumable: list[EarlierRun] = []
    for number, path in candidates:
        run = RunDir(path)
        if not run.holds_run() or not _same_config(run, cfg):
            continue
        if run.is_completed():
            return EarlierRun(run.path, "completed", number)
        if not run.checkpoint.is_file() or run.is_locked():
            continue
        step = checkpoint_step(run)
        if step is not None:
            resumable.append(EarlierRun(run.path, "checkpoint", number, step))
    if not resumable:
        return None
    return max(resumable, key=lambda r: r.step)  # max keeps the first (newest) of equal steps


#: Optuna system attribute of a retry: how many trials of its chain were lost without progress.
STUCK_ATTR = "stuck_retries"


def made_progress(trial: FrozenTrial) -> bool:
    """True when ``trial`` moved its runs on: one of its ``run_dirs`` completed without being taken over completed,
    or holds a checkpoint beyond the step it was taken over at (any step for a run it started).

    Run directories out of reach (another machine) count as no progress.
    """
    taken = {str(t["run_dir"]): t for t in trial.user_attrs.get("taken_over") or []}
    for path in trial.user_attrs.get("run_dirs") or []:
        run, before = RunDir(path), taken.get(str(path))
        try:
            if run.is_completed():
                if before is None or before["how"] != "completed":
                    return True
                continue
            step = checkpoint_step(run) if run.checkpoint.is_file() else None
        except (ArchLabError, OSError, ValueError):
            continue
        if step is not None and step > int(before["step"] if before is not None else 0):
            return True
    return False


class RetryUnlessStuck:
    """Queue a copy of a failed trial (same parameters and user attributes) that takes over its runs.

    Like Optuna's ``RetryHeartbeatStaleTrialCallback`` (the copy records ``failed_trial`` and ``retry_history``), but
    ``max_retry`` counts only the trials of the chain lost without progress (:func:`made_progress`; recorded as
    :data:`STUCK_ATTR`): a trial whose worker is lost after moving its runs on is always requeued.

    Parameters
    ----------
    max_retry
        Retries after a loss without progress; None: no limit.
    """

    def __init__(self, max_retry: int | None = None) -> None:
        self.max_retry = max_retry

    def __call__(self, study: optuna.Study, trial: FrozenTrial) -> None:
        """Requeue ``trial`` (a failed trial of ``study``) unless its chain is out of retries."""
        import optuna

        attrs: dict[str, Any] = dict(trial.system_attrs)
        attrs.setdefault("failed_trial", trial.number)
        attrs["retry_history"] = [*(trial.system_attrs.get("retry_history") or []), trial.number]
        stuck = int(trial.system_attrs.get(STUCK_ATTR, 0)) + (0 if made_progress(trial) else 1)
        attrs[STUCK_ATTR] = stuck
        if self.max_retry is not None and stuck > self.max_retry:
            return
        study.add_trial(
            optuna.create_trial(
                state=optuna.trial.TrialState.WAITING,
                params=trial.params,
                distributions=trial.distributions,
                user_attrs=trial.user_attrs,
                system_attrs=attrs,
            )
        )
