"""Runs from Python: train on an AnnData held in memory, open a finished run, generate cells from it.

>>> import arch_lab  # doctest: +SKIP
>>> run = arch_lab.train("experiments/kang_celltype_transfer.yaml", adata=adata,
...                      overrides={"train.max_steps": 500})  # doctest: +SKIP
>>> run.metrics["energy_distance"], run.history.tail()  # doctest: +SKIP
>>> pred = run.predict(conditions_df, n_cells=200)  # AnnData with the data's obs column names  # doctest: +SKIP
>>> run = arch_lab.load_run(run.run_dir)  # the same object back from disk  # doctest: +SKIP

A :class:`Run` is a view of one run directory (:class:`arch_lab.rundir.RunDir` owns its files); everything it
shows is read from there, so a run trained from the command line opens the same way.
"""

from __future__ import annotations

import copy
import os
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import pandas as pd

from arch_lab.config import ExperimentConfig, experiment_from_dict, load_yaml, set_dotted
from arch_lab.errors import ArchLabError, ConfigError
from arch_lab.rundir import RunDir, is_run_dir

if TYPE_CHECKING:
    import anndata as ad

    from arch_lab.data.task import Task
    from arch_lab.export import CellEvalExport
    from arch_lab.methods import Method

#: What :func:`train` accepts as an experiment: a YAML file, a mapping of sections, or a validated config.
Experiment = str | os.PathLike | Mapping[str, Any] | ExperimentConfig


def experiment_config(
    experiment: Experiment, overrides: Mapping[str, Any] | None = None, adata: ad.AnnData | None = None
) -> ExperimentConfig:
    """Validate an experiment given as a YAML path, a mapping or a config, with dotted overrides.

    Parameters
    ----------
    experiment
        A YAML file (relative paths in it resolve against its folder), a mapping of sections (relative paths
        resolve against the current directory) or an :class:`~arch_lab.config.ExperimentConfig`.
    overrides
        Dotted keys set before validation, e.g. ``{"train.max_steps": 500, "network.name": "unet1d"}``.
    adata
        When given, the cells come from it: ``data.path`` (and ``data.synthetic``) may be omitted and are
        replaced. A backed AnnData (opened with ``backed="r"``) is read from its file.

    Returns
    -------
    ExperimentConfig

    Raises
    ------
    ConfigError
        A missing or malformed YAML, or an invalid key (one line naming it).
    """
    if isinstance(experiment, ExperimentConfig):
        raw = experiment.model_dump(mode="json")
    elif isinstance(experiment, Mapping):
        raw = copy.deepcopy(dict(experiment))
    else:
        raw = load_yaml(Path(experiment))
        raw.setdefault("base_dir", str(Path(experiment).resolve().parent))
    for key, value in (overrides or {}).items():
        set_dotted(raw, key, value)
    if adata is not None:
        data = raw.get("data")
        data = dict(data) if isinstance(data, Mapping) else {}
        data.pop("synthetic", None)
        if adata.isbacked:
            data["path"] = str(Path(adata.filename).resolve())
        elif data.get("storage") == "backed":
            raise ConfigError("data.storage: backed reads a file; open the AnnData with backed='r' or use memory")
        else:
            data["path"] = RunDir.SNAPSHOT  # the run's own copy of the prepared cells (arch_lab.api.train)
        raw["data"] = data
    return experiment_from_dict(raw)


def train(
    experiment: Experiment,
    adata: ad.AnnData | None = None,
    overrides: Mapping[str, Any] | None = None,
    *,
    run_dir: str | os.PathLike | None = None,
    callbacks: list[Callable[[int, dict], None]] | None = None,
) -> Run:
    """Train and evaluate one experiment, on an AnnData held in memory or on the experiment's ``data.path``.

    Parameters
    ----------
    experiment
        A YAML file, a mapping of sections or a config (see :func:`experiment_config`). With ``adata`` its
        ``data`` section needs only the column names (``perturbation_key``, ``control_value``,
        ``covariate_keys``) and options such as ``max_genes``.
    adata
        The cells (cells x genes; counts or log-normalised). The run keeps a snapshot of the prepared cells and
        a content hash, so :meth:`Run.predict`, ``arch-lab predict``, ``arch-lab export`` and
        ``arch-lab train --resume`` work on it later without the AnnData.
    overrides
        Dotted keys, e.g. ``{"train.max_steps": 500}``.
    run_dir
        Write into this directory (default: a fresh one under ``output_dir``).
    callbacks
        Called as ``callback(step, val_metrics)`` after each validation.

    Returns
    -------
    Run
        The completed run.

    Raises
    ------
    ArchLabError
        Bad config or data (before any run directory is created), or a failed run (marked ``failed``).
    """
    from arch_lab import api

    cfg = experiment_config(experiment, overrides, adata)
    in_memory = adata if adata is not None and not adata.isbacked else None
    result = api.train(cfg, run_dir=Path(run_dir) if run_dir is not None else None, callbacks=callbacks,
                       adata=in_memory)  # fmt: skip
    return Run(result.run_dir)


def load_run(path: str | os.PathLike) -> Run:
    """Open a run directory written by :func:`train` or ``arch-lab train``.

    Parameters
    ----------
    path
        The run directory (``runs/<experiment>/<time>-s<seed>-<id>``).

    Returns
    -------
    Run
        The same object :func:`train` returns; a run trained on an in-memory AnnData predicts from its snapshot.

    Raises
    ------
    ArchLabError
        ``path`` is not a run directory.
    """
    return Run(path)


class Run:
    """One run directory, seen from Python: its config, scores, curves, and generation from its model.

    Parameters
    ----------
    path
        The run directory.

    Attributes
    ----------
    run_dir : pathlib.Path
        The run directory.

    Raises
    ------
    ArchLabError
        ``path`` is not a run directory.
    """

    def __init__(self, path: str | os.PathLike) -> None:
        self.run_dir = Path(path)
        self._dir = RunDir(self.run_dir)
        if not is_run_dir(self._dir):
            raise ArchLabError(f"{path}: not a run directory (no {RunDir.CONFIG} and {RunDir.STATUS})")
        self._loaded: tuple[ExperimentConfig, Task, Method] | None = None

    def __repr__(self) -> str:
        status = self.status
        parts = [repr(str(self.run_dir)), f"status={status!r}"]
        if status == "completed" and self._dir.metrics.is_file():
            record = self._dir.read_metrics()
            parts.append(f"method={record.get('network') or record.get('method')!r}")
        return f"Run({', '.join(parts)})"

    def __fspath__(self) -> str:
        return os.fspath(self.run_dir)

    # ------------------------------------------------------------------------------------ records
    @property
    def config(self) -> ExperimentConfig:
        """The resolved experiment the run trained."""
        return self._dir.read_config()

    @property
    def status(self) -> str:
        """``running``, ``completed``, ``failed``, ``pruned`` (or ``missing``)."""
        return str(self._dir.read_status()["status"])

    @property
    def meta(self) -> dict[str, Any]:
        """Provenance: seed, git SHA, package versions, device, the data's source and content hash."""
        return self._dir.read_meta()

    @property
    def record(self) -> dict[str, Any]:
        """The whole ``metrics.json``: metrics, validation metrics, reference points, fit summary.

        Raises
        ------
        ArchLabError
            The run did not complete.
        """
        return self._dir.read_metrics()

    @property
    def metrics(self) -> dict[str, float]:
        """The evaluated split's summary (``eval.split``; metric name -> value)."""
        return dict(self.record["metrics"])

    @property
    def val_metrics(self) -> dict[str, float] | None:
        """The validation split's summary when the evaluated split is ``test`` (None otherwise)."""
        return self.record.get("val_metrics")

    @property
    def reference(self) -> dict[str, dict[str, float]] | None:
        """The task's reference points on the evaluated split: floor (``no_change``) and ceiling (``split_half``)."""
        return self.record.get("reference")

    @property
    def per_condition(self) -> pd.DataFrame:
        """Metrics per evaluated condition (one row per state and perturbation).

        Raises
        ------
        ArchLabError
            The run has no scores yet.
        """
        df = self._dir.read_per_condition()
        if df is None:
            raise ArchLabError(f"{self.run_dir}: no {RunDir.PER_CONDITION}; the run did not complete")
        return df

    @property
    def history(self) -> pd.DataFrame | None:
        """The training curve at validation steps (``history.csv``; None for closed-form baselines)."""
        return self._dir.read_history()

    @property
    def train_log(self) -> pd.DataFrame | None:
        """The step-by-step training curve (``train_log.csv``: ``step`` and one column per logged value)."""
        return self._dir.read_train_log()

    def predictions(self) -> ad.AnnData:
        """The generated cells of the evaluated split (``predictions.h5ad``)."""
        return self._dir.read_predictions()

    # ------------------------------------------------------------------------------------ using the model
    def _load(self) -> tuple[ExperimentConfig, Task, Method]:
        if self._loaded is None:
            from arch_lab.api import load_method

            self._loaded = load_method(self.run_dir)
        return self._loaded

    def task(self) -> Task:
        """The run's task rebuilt with its recorded split (from its snapshot for an in-memory AnnData)."""
        return self._load()[1]

    def predict(
        self,
        conditions: pd.DataFrame | Mapping[str, Any] | list[Mapping[str, Any]],
        n_cells: int | Literal["observed"] = 100,
        seed: int = 0,
    ) -> ad.AnnData:
        """Generate cells for conditions with the trained model.

        Parameters
        ----------
        conditions
            One row per condition: the data's perturbation column (e.g. ``condition``) and one column per
            covariate key (e.g. ``cell_type``); anything :class:`pandas.DataFrame` accepts. Combinations never
            seen in training are fine as long as each single is known.
        n_cells
            Cells per condition, or ``"observed"``: as many as the data holds for the condition.
        seed
            Seeds the source cells and the generation.

        Returns
        -------
        anndata.AnnData
            The generated cells with the data's obs column names, its genes and gene annotations.

        Raises
        ------
        ArchLabError
            The run did not complete, or a condition names an unknown perturbation or state.
        """
        from arch_lab.api import generate

        _, task, method = self._load()
        frame = conditions if isinstance(conditions, pd.DataFrame) else pd.DataFrame(conditions)
        return generate(task, method, frame, n_cells, seed)

    def export_cell_eval(self, out: str | os.PathLike) -> CellEvalExport:
        """Write ``pred.h5ad`` and ``real.h5ad`` for cell-eval into ``out``; ``.command()`` scores them.

        See :func:`arch_lab.export.export_run_cell_eval`.
        """
        from arch_lab.export import export_run_cell_eval

        return export_run_cell_eval(self.run_dir, Path(out))
