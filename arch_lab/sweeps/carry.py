"""What a retried trial takes over from the trials it retries.

A trial requeued after its worker was lost or interrupted (its *retry*, see :mod:`arch_lab.sweeps.worker`) runs the
same configuration with the same seeds, so each run its predecessors finished, or checkpointed, is still good:

- a **completed** run of the same config is adopted as it is (its metrics are scored, nothing is trained);
- an **unfinished** run of the same config with a checkpoint, which no process writes any more, is resumed where
  its checkpoint left it (:func:`arch_lab.api.resume`, bit-identical to a run never stopped);
- only a run none of them reached is trained from scratch, in the retry's own directory.

A study stopped by the end of a session, a preempted job or a killed worker thus loses at most the steps since
each run's last checkpoint (``train.checkpoint_every``), not the trial's finished runs.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from arch_lab.errors import ArchLabError
from arch_lab.rundir import RunDir

if TYPE_CHECKING:
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
        if not run.path.is_dir() or not run.holds_run() or not _same_config(run, cfg):
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
