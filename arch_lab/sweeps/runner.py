"""One trial: sample a configuration, train it once per replicate seed, and score it.

Replicate ``s`` runs the base experiment with ``fixed``, the sampled values and ``seed = base seed + s`` in
``<output_dir>/<study>/trial-<number>/seed-<s>``. The first replicate reports its periodic validation objective
to the pruner. The trial value is the mean over seeds of the objective on each run's val (or test) metrics.
A retry takes over the runs its earlier trials completed or checkpointed (:mod:`arch_lab.sweeps.carry`).
"""

from __future__ import annotations

import json
import logging
import math
import os
import socket
import time
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from arch_lab.errors import ArchLabError
from arch_lab.rundir import RunDir, pid_alive
from arch_lab.sweeps.carry import EarlierRun, find_earlier_run
from arch_lab.sweeps.parallel import RunJob, train_concurrently
from arch_lab.sweeps.sweep import Sweep

if TYPE_CHECKING:
    import optuna
    from optuna.trial import FrozenTrial

    from arch_lab.api import RunResult
    from arch_lab.config import ExperimentConfig
    from arch_lab.data.task import Task

log = logging.getLogger("arch_lab.sweeps")


def worker_label() -> str:
    """``host:pid`` of this process."""
    return f"{socket.gethostname()}:{os.getpid()}"


def worker_alive(trial: FrozenTrial) -> bool | None:
    """Whether the worker running ``trial`` (its ``worker`` attribute, ``host:pid``) is alive; only known on the
    same host (None elsewhere, or without a label).
    """
    host, _, pid = str(trial.user_attrs.get("worker") or "").rpartition(":")
    if host != socket.gethostname() or not pid.isdigit():
        return None
    return pid_alive(int(pid))


def json_safe(value: Any) -> Any:
    """``value`` as plain JSON types (tuples become lists)."""
    return json.loads(json.dumps(value, default=str))


class TaskCache:
    """Tasks built in this process, keyed by what builds them: the data and task sections and
    ``train.val_train_fraction`` (trials sharing them share a task).
    """

    def __init__(self, size: int = 2) -> None:
        self.size = size
        self._tasks: OrderedDict[str, Task] = OrderedDict()

    def get(self, cfg: ExperimentConfig) -> Task:
        """The task of ``cfg`` (built on first use; as its method needs it, :func:`arch_lab.methods.task_config`)."""
        from arch_lab.data.task import build_task
        from arch_lab.methods import task_config

        cfg = task_config(cfg)
        key = json.dumps(
            {
                "data": cfg.data.model_dump(mode="json"),
                "task": cfg.task.model_dump(mode="json"),
                "val_train_fraction": cfg.train.val_train_fraction,  # it moves cells to the val split
                "dir": cfg.base_dir,
            },
            sort_keys=True,
        )
        if key not in self._tasks:
            self._tasks[key] = build_task(cfg)
            while len(self._tasks) > self.size:
                self._tasks.popitem(last=False)
        self._tasks.move_to_end(key)
        return self._tasks[key]


def check_parallel_runs(sweep: Sweep, parallel_runs: int) -> None:
    """Refuse ``parallel_runs`` below 1, or above 1 with a pruner (which watches one run as it trains)."""
    if parallel_runs < 1:
        raise ArchLabError(f"--parallel-runs must be at least 1 (got {parallel_runs})")
    if parallel_runs > 1 and sweep.spec.pruner.type != "none":
        raise ArchLabError(
            f"--parallel-runs {parallel_runs} trains a trial's runs in other processes, where pruner "
            f"{sweep.spec.pruner.type!r} cannot watch them; set pruner: {{type: none}} in the sweep YAML or drop "
            "--parallel-runs"
        )


@dataclass(frozen=True)
class TrialProgress:
    """The runs of a trial that a worker is training now, for its progress lines.

    Parameters
    ----------
    runs
        Runs in the trial (its seeds and folds).
    jobs
        ``(index, run directory)`` of each run being trained now or queued to train with them, in order of start.
    slots
        How many of ``jobs`` train at once (``--parallel-runs``; 1 trains them one after another).
    later
        Runs that will train after ``jobs`` (one at a time) and have no directory yet.
    """

    runs: int
    jobs: tuple[tuple[int, Path], ...]
    slots: int = 1
    later: int = 0


class TrialRunner:
    """The objective of a sweep: ``runner(trial) -> value``.

    Parameters
    ----------
    sweep
        The validated sweep.
    git_sha
        Recorded on every trial.
    parallel_runs
        Train up to this many of a trial's runs at once, each in its own process
        (:mod:`arch_lab.sweeps.parallel`); 1 trains them one after another in this process. Above 1 the
        sweep's pruner must be ``none`` (a pruner watches the first run as it trains, in this process).
    """

    def __init__(self, sweep: Sweep, git_sha: str, parallel_runs: int = 1) -> None:
        check_parallel_runs(sweep, parallel_runs)
        self.sweep = sweep
        self.git_sha = git_sha
        self.parallel_runs = parallel_runs
        self.space_hash = sweep.space_hash()
        self.tasks = TaskCache()
        #: The runs in progress; None between trials.
        self.current: TrialProgress | None = None

    def run_dir(self, number: int, replicate: int, fold: int | None = None) -> Path:
        """``<output_dir>/<study>/trial-<number>/[fold-<fold>/]seed-<replicate>`` (absolute)."""
        trial = self.sweep.run_root / f"trial-{number}"
        return (trial / (f"fold-{fold}" if fold is not None else "") / f"seed-{replicate}").resolve()

    def __call__(self, trial: optuna.Trial, earlier: Sequence[int] = ()) -> float:
        """Run every replicate (of every fold, with ``budget.folds``) of the trial's configuration and return the
        mean objective.

        Parameters
        ----------
        trial
            The claimed trial.
        earlier
            For a retry, the numbers of the trials it retries, newest first
            (:func:`arch_lab.sweeps.carry.earlier_trials`): each replicate one of them completed is taken over,
            and one they checkpointed is resumed (:func:`arch_lab.sweeps.carry.find_earlier_run`).

        Raises
        ------
        optuna.TrialPruned
            The pruner stopped the first replicate.
        ArchLabError
            A run failed or diverged, or its objective is not finite.
        """
        started = time.perf_counter()
        self.current = None
        values = self.sweep.space.sample(trial)
        runs = [(fold, replicate) for fold in self.sweep.folds for replicate in range(self.sweep.replicates)]
        for key, value in {
            "params": json_safe(values),
            "overrides": json_safe(self.sweep.space.expand(values)),
            "worker": worker_label(),
            "git_sha": self.git_sha,
            "space_hash": self.space_hash,
            "run_dirs": [],
            "n_runs": len(runs),
            "seeds": [],
            "values_per_seed": [],
            "reason": None,
            "taken_over": [],
        }.items():
            trial.set_user_attr(key, value)
        run_dirs: list[str] = []
        seeds: list[int] = []
        per_seed: list[float] = []
        taken_over: list[dict[str, Any]] = []
        concurrent = self.parallel_runs > 1 and len(runs) > 1
        jobs: list[RunJob] = []
        cfgs: list[ExperimentConfig] = []
        for i, (fold, replicate) in enumerate(runs):
            cfg = self.sweep.experiment(values, replicate, fold)
            cfgs.append(cfg)
            found = find_earlier_run(cfg, [(n, self.run_dir(n, replicate, fold)) for n in earlier])
            run_dir = found.run_dir if found is not None else self.run_dir(trial.number, replicate, fold)
            run_dirs.append(str(run_dir))
            seeds.append(cfg.seed)
            trial.set_user_attr("run_dirs", run_dirs)
            trial.set_user_attr("seeds", seeds)
            if fold is not None:
                trial.set_user_attr("folds", [f for f, _ in runs[: i + 1]])
            callbacks = [self._reporter(trial)] if i == 0 else None
            self.current = TrialProgress(len(runs), ((i, run_dir),), later=len(runs) - i - 1)
            if found is not None:
                log.info("trial %d: run %d/%d (%s) %s", trial.number, i + 1, len(runs), run_dir.name, found.describe())
                earlier_sha = RunDir(run_dir).read_meta().get("git_sha")
                if found.how == "completed" and earlier_sha and earlier_sha != self.git_sha:
                    log.warning(
                        "trial %d: run %s was completed under commit %s, this worker runs %s; it is taken over as it "
                        "is, and the trial's taken_over attribute records its commit",
                        trial.number, run_dir, str(earlier_sha)[:12], self.git_sha[:12],
                    )  # fmt: skip
                taken_over.append(
                    {"run_dir": str(run_dir), "how": found.how, "trial": found.trial, "step": found.step,
                     "git_sha": earlier_sha}
                )  # fmt: skip
                trial.set_user_attr("taken_over", taken_over)
            if concurrent:  # trained below, all at once
                if found is None or found.how == "checkpoint":
                    jobs.append(RunJob(i, cfg, run_dir, resume=found is not None))
                continue
            if found is None:
                self._train(cfg, run_dir, callbacks)
            elif found.how == "checkpoint":
                self._resume(found, callbacks)
            self._record(trial, per_seed, cfg, run_dir, started)
        if concurrent:
            self.current = TrialProgress(len(runs), tuple((j.index, j.run_dir) for j in jobs), self.parallel_runs)
            train_concurrently(jobs, self.parallel_runs)
            for cfg, path in zip(cfgs, run_dirs, strict=True):
                self._record(trial, per_seed, cfg, Path(path), started)
        self.current = None
        return float(sum(per_seed) / len(per_seed))

    def _record(
        self, trial: optuna.Trial, per_seed: list[float], cfg: ExperimentConfig, run_dir: Path, started: float
    ) -> None:
        """Score a run from the ``metrics.json`` it recorded (however it got there) and note it on the trial."""
        record = _read_metrics(run_dir)
        per_seed.append(self._score(record, cfg, run_dir))
        trial.set_user_attr("values_per_seed", per_seed)
        if "parameter_count" in record:
            trial.set_user_attr("parameter_count", record["parameter_count"])
        trial.set_user_attr("wall_seconds", time.perf_counter() - started)

    def _train(self, cfg: ExperimentConfig, run_dir: Path, callbacks: list | None) -> RunResult:
        from arch_lab import api

        return api.train(cfg, run_dir=run_dir, callbacks=callbacks, task=self.tasks.get(cfg))

    def _resume(self, found: EarlierRun, callbacks: list | None) -> RunResult:
        from arch_lab import api

        return api.resume(found.run_dir, callbacks=callbacks)

    def _score(self, record: dict[str, Any], cfg: ExperimentConfig, run_dir: Path) -> float:
        """The objective on a run's ``metrics`` (the evaluated split) or ``val_metrics``, as ``metrics.json`` holds
        them.
        """
        objective = self.sweep.objective
        metrics = record.get("metrics") if objective.split == cfg.eval.split else record.get("val_metrics")
        if metrics is None:
            raise ArchLabError(f"objective.split {objective.split}: the run has no {objective.split} metrics")
        value = objective.value(metrics)
        if not math.isfinite(value):
            raise ArchLabError(
                f"objective is not finite: {', '.join(objective.missing(metrics))} missing or not finite "
                f"in the {objective.split} metrics of {run_dir}"
            )
        return value

    def _reporter(self, trial: optuna.Trial):
        import optuna

        objective = self.sweep.objective

        def report(step: int, val_metrics: dict[str, float]) -> None:
            value = objective.value(val_metrics)
            if not math.isfinite(value):
                return
            trial.report(value, step)
            if trial.should_prune():
                raise optuna.TrialPruned(f"pruned at step {step} (val {objective.label} = {value:.4g})")

        return report


def _read_metrics(run_dir: Path) -> dict[str, Any]:
    try:
        return RunDir(run_dir).read_metrics()
    except (ArchLabError, OSError, ValueError):
        return {}
