"""Where the training curve goes: the loggers ``train.loggers`` names.

Every logger receives the same values: at each logged step ``train/loss``, ``train/lr``, ``train/grad_norm`` (when
gradients are clipped) and ``train/step_seconds``; at each validation ``val/<metric>`` for every validation metric.

``csv`` appends ``step,name,value`` rows to the run's ``train_log.csv``; ``tensorboard`` writes event files to the
run's ``tensorboard/`` folder (``tensorboard --logdir runs/``); ``wandb`` and ``mlflow`` log to those services
(optional extras, imported only when named; their own environment variables, e.g. ``WANDB_PROJECT``,
``WANDB_MODE`` or ``MLFLOW_TRACKING_URI``, choose where). A resumed run continues the same curve: rows and events
past the checkpoint's step are dropped, and W&B and MLflow resume the same run.
"""

from __future__ import annotations

import csv
import hashlib
import importlib
import math
import os
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, Protocol

from arch_lab.errors import ConfigError
from arch_lab.rundir import RunDir, atomic_path

if TYPE_CHECKING:
    from arch_lab.config import ExperimentConfig

#: Logger name -> (module it imports, the pip extra that installs it).
REQUIRES = {"tensorboard": ("tensorboard", "arch-lab"), "wandb": ("wandb", "arch-lab[wandb]"),
            "mlflow": ("mlflow", "arch-lab[mlflow]")}  # fmt: skip


class Logger(Protocol):
    """What the trainer calls: ``log(step, values)`` any number of times, then ``close()`` once."""

    def log(self, step: int, values: Mapping[str, float]) -> None:
        """Record ``values`` (name -> number) at ``step``."""

    def close(self) -> None:
        """Flush and release whatever the logger holds."""


def check_loggers(names: Sequence[str]) -> None:
    """Import the module behind each named logger, so a missing one fails before a run starts.

    Raises
    ------
    ConfigError
        One line naming the logger and the install command, e.g. ``train.loggers: wandb is named but not
        installed; pip install 'arch-lab[wandb]' or remove it from train.loggers``.
    """
    for name in names:
        if name not in REQUIRES:
            continue
        module, extra = REQUIRES[name]
        try:
            importlib.import_module(module)
        except ImportError:
            raise ConfigError(
                f"train.loggers: {name} is named but not installed; pip install '{extra}' or remove it from "
                "train.loggers"
            ) from None


def open_loggers(names: Sequence[str], run: RunDir, cfg: ExperimentConfig, start_step: int = 0) -> list[Logger]:
    """The loggers ``names`` for a run, continuing after ``start_step`` (0 for a fresh run).

    Parameters
    ----------
    names
        ``train.loggers``.
    run
        The run directory (file loggers write into it; W&B and MLflow runs are named after it).
    cfg
        The experiment (logged as the W&B config and the MLflow parameters).
    start_step
        The step training resumes from; anything logged after it by an interrupted run is dropped.

    Returns
    -------
    list of Logger
    """
    check_loggers(names)
    makers = {"csv": CsvLogger, "tensorboard": TensorBoardLogger, "wandb": WandbLogger, "mlflow": MlflowLogger}
    return [makers[name](run, cfg, start_step) for name in names]


def finite(values: Mapping[str, Any]) -> dict[str, float]:
    """The finite numbers of ``values`` as floats (a gradient norm of NaN means "not clipped", not a value)."""
    out = {}
    for k, v in values.items():
        try:
            f = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(f):
            out[k] = f
    return out


class CsvLogger:
    """``step,name,value`` rows appended to the run's ``train_log.csv`` (long format: new names need no new header)."""

    FIELDS = ("step", "name", "value")

    def __init__(self, run: RunDir, cfg: ExperimentConfig | None = None, start_step: int = 0) -> None:
        self.path = run.train_log
        if self.path.is_file():
            self._truncate(start_step)
        new = not self.path.is_file()
        self._file = self.path.open("a", newline="")
        self._writer = csv.writer(self._file)
        if new:
            self._writer.writerow(self.FIELDS)

    def _truncate(self, start_step: int) -> None:
        """Keep the rows up to ``start_step`` (a resumed run logs the later steps again)."""
        with self.path.open(newline="") as f:
            rows = list(csv.reader(f))
        kept = [rows[0], *(r for r in rows[1:] if r and int(r[0]) <= start_step)] if rows else []
        with atomic_path(self.path) as tmp:
            with tmp.open("w", newline="") as f:
                csv.writer(f).writerows(kept)

    def log(self, step: int, values: Mapping[str, float]) -> None:
        """Append one row per value."""
        self._writer.writerows((step, k, repr(v)) for k, v in finite(values).items())

    def flush(self) -> None:
        """Write buffered rows to disk."""
        self._file.flush()

    def close(self) -> None:
        """Flush and close the file."""
        if not self._file.closed:
            self._file.close()


#: Seconds between the TensorBoard writer's flushes (and the longest its close can wait after an interruption).
FLUSH_SECONDS = 5


class TensorBoardLogger:
    """Scalars in TensorBoard event files in the run's ``tensorboard/`` folder."""

    def __init__(self, run: RunDir, cfg: ExperimentConfig | None = None, start_step: int = 0) -> None:
        from torch.utils.tensorboard import SummaryWriter

        purge = start_step + 1 if start_step > 0 else None  # hide what an interrupted run logged past its checkpoint
        # The writer's thread wakes every flush_secs. An interruption (SIGTERM as KeyboardInterrupt) that lands
        # inside the queue's notify can leave that thread asleep through close(), which then waits for its next
        # wake-up: 120 s by default, so an interrupted run lingered that long; 5 s bounds the wait.
        self.writer = SummaryWriter(log_dir=str(run.tensorboard), purge_step=purge, flush_secs=FLUSH_SECONDS)

    def log(self, step: int, values: Mapping[str, float]) -> None:
        """One scalar per value, at ``step``."""
        for k, v in finite(values).items():
            self.writer.add_scalar(k, v, step)

    def flush(self) -> None:
        """Write pending events to disk."""
        self.writer.flush()

    def close(self) -> None:
        """Flush and close the event file."""
        self.writer.close()


def _flat(d: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, Mapping):
            out.update(_flat(v, f"{key}."))
        else:
            out[key] = v
    return out


def _run_id(run: RunDir) -> str:
    """A stable id for a run directory, so a resumed run logs to the same W&B run."""
    return hashlib.sha1(str(run.path.resolve()).encode()).hexdigest()[:16]


class WandbLogger:
    """A Weights & Biases run named after the run directory (project: ``$WANDB_PROJECT`` or the experiment name)."""

    def __init__(self, run: RunDir, cfg: ExperimentConfig, start_step: int = 0) -> None:
        import wandb

        self.run = wandb.init(
            project=os.environ.get("WANDB_PROJECT", cfg.name),
            name=run.path.name,
            id=_run_id(run),
            resume="allow",
            dir=str(run.path),
            config=cfg.model_dump(mode="json"),
        )

    def log(self, step: int, values: Mapping[str, float]) -> None:
        """Log the values at ``step``."""
        self.run.log(finite(values), step=step)

    def close(self) -> None:
        """Finish the W&B run."""
        self.run.finish()


class MlflowLogger:
    """An MLflow run in the experiment named like the arch_lab experiment; its id is kept in the run's meta."""

    def __init__(self, run: RunDir, cfg: ExperimentConfig, start_step: int = 0) -> None:
        import mlflow

        self.mlflow = mlflow
        previous = run.read_meta().get("mlflow_run_id") if start_step > 0 else None
        if previous is not None:
            self.active = mlflow.start_run(run_id=previous)
            return
        mlflow.set_experiment(cfg.name)
        self.active = mlflow.start_run(run_name=run.path.name)
        params = {k: str(v)[:500] for k, v in _flat(cfg.model_dump(mode="json")).items()}
        mlflow.log_params(params)
        run.update_meta(mlflow_run_id=self.active.info.run_id)

    def log(self, step: int, values: Mapping[str, float]) -> None:
        """Log the values as metrics at ``step``."""
        self.mlflow.log_metrics(finite(values), step=step)

    def close(self) -> None:
        """End the MLflow run."""
        self.mlflow.end_run()
