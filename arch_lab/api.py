"""Typed entry points behind the CLI: train, resume and predict.

The CLI is a thin layer over these functions; tests and sweeps call them directly.
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import anndata as ad
import numpy as np
import pandas as pd

from arch_lab.config import ExperimentConfig
from arch_lab.data.h5ad import write_h5ad
from arch_lab.data.snapshot import data_from_snapshot, snapshot_anndata
from arch_lab.data.task import Condition, Task, build_task, data_path, load_data, prepare_data
from arch_lab.errors import ArchLabError, DataError
from arch_lab.harness import evaluate, make_requests, make_validator, predictions_to_anndata
from arch_lab.methods import Method, build_method, task_config
from arch_lab.recording import record_results, record_resume, start_run
from arch_lab.rundir import RunDir
from arch_lab.stopping import sigterm_as_interrupt
from arch_lab.training import distributed
from arch_lab.training.loggers import check_loggers

log = logging.getLogger("arch_lab")


@dataclass
class RunResult:
    """What a finished run produced."""

    run_dir: Path
    summary: dict[str, float]
    per_condition: pd.DataFrame
    reference: dict[str, dict[str, float]] | None
    fit_summary: dict[str, Any]
    val_summary: dict[str, float] | None = None
    #: Rank of the process under torchrun; only rank 0 evaluates and writes (other ranks get empty results).
    rank: int = 0


def train(
    cfg: ExperimentConfig,
    run_dir: Path | None = None,
    callbacks: list[Callable[[int, dict], None]] | None = None,
    task: Task | None = None,
    notes: Callable[[str], None] | None = None,
    adata: ad.AnnData | None = None,
) -> RunResult:
    """Build the task, fit the method, predict and score the evaluated split, and record everything.

    Parameters
    ----------
    cfg
        The validated experiment.
    run_dir
        A directory to write into: new, empty, or holding no run (default: a fresh one under ``cfg.output_dir``).
    callbacks
        Passed to the trainer (called after each validation).
    task
        A pre-built task (skips loading; must come from the same config).
    notes
        Called with each note about the data (normalisation, repaired labels, gene selection...) before training;
        the notes are recorded in ``meta.json`` either way.
    adata
        Train on this AnnData, held in memory, instead of reading ``data.path`` (prepared as the ``data`` section
        says). The run keeps a snapshot of the prepared cells (``data.h5ad``) and records ``data.path`` as that
        snapshot, so predicting, exporting and resuming work later (:mod:`arch_lab.data.snapshot`).

    Returns
    -------
    RunResult

    Raises
    ------
    ArchLabError
        Bad config or data, or a ``run_dir`` that already holds a run or is being written by another process
        (raised before any run directory is created or touched); a diverged run (the directory is marked
        ``failed``); an operating-system error (:class:`~arch_lab.errors.FileSystemError`, one line; the run is
        marked ``failed`` when its status can still be written).
    KeyboardInterrupt
        Ctrl-C or SIGTERM (:class:`~arch_lab.errors.RunInterrupted`); the run is marked ``interrupted``.

    Notes
    -----
    Under ``torchrun`` every process runs this function: the process group is set up here, every rank builds
    the task and trains its shard, and rank 0 alone creates and writes the run directory (``docs/distributed.md``).
    While it writes, rank 0 holds the run directory's lock (:meth:`RunDir.lock`).
    """
    check_loggers(cfg.train.loggers)
    if run_dir is not None:
        RunDir(run_dir).check_unused()  # before the data is read
    with distributed.session() as info, contextlib.ExitStack() as held:
        _interruptible(info, held)
        if adata is not None:
            task = build_task(task_config(cfg), prepare_data(adata, cfg.data))
        task = task if task is not None else build_task(task_config(cfg))
        method = build_method(cfg, task)
        created = None
        if info.is_main:
            _tell(notes, task)
            run = RunDir.new(cfg) if run_dir is None else RunDir.create(run_dir)
            held.enter_context(run.lock())
            run.check_unused()  # again under the lock: another process may have started a run here meanwhile
            with run.recording_failures():
                if adata is not None:  # the cells live in the run from now on
                    run.write_snapshot(snapshot_anndata(task.data))
                    data = cfg.data.model_copy(update={"path": RunDir.SNAPSHOT, "synthetic": None})
                    cfg = cfg.model_copy(update={"data": data, "base_dir": str(run.path.resolve())})
                extra = {"task": task.summary(), "data_notes": task.data.notes, "distributed": _dist_meta(info),
                         "data": _data_meta(cfg, task, in_memory=adata is not None)}  # fmt: skip
                start_run(run, cfg, task.split, extra, gene_order=task.spec.gene_names)
            created = str(run.path)
        run_dir = Path(distributed.broadcast_object(created, info))
        return _fit_and_finish(cfg, task, method, run_dir, callbacks, info)


def _interruptible(info: distributed.DistInfo, held: contextlib.ExitStack) -> None:
    """SIGTERM interrupts the other ranks too (rank 0's run lock does it for rank 0), so that a SIGTERM to any
    rank stops every rank after the same step, with rank 0's checkpoint of it (:func:`~arch_lab.stopping.sigterm_deferred`).
    """
    if not info.is_main:
        held.enter_context(sigterm_as_interrupt())


def _tell(notes: Callable[[str], None] | None, task: Task) -> None:
    """Hand each note about the data to ``notes`` (the command line prints them)."""
    if notes is not None:
        for note in task.data.notes:
            notes(note)


def _data_meta(cfg: ExperimentConfig, task: Task, in_memory: bool) -> dict[str, Any]:
    """Where a run's cells came from: ``source``, ``path``, ``content_hash`` and ``snapshot`` (see
    :func:`arch_lab.data.loading.content_hash` and :mod:`arch_lab.data.snapshot`).
    """
    if in_memory:
        source, path = "anndata", None
    elif cfg.data.synthetic is not None:
        source, path = "synthetic", None
    else:
        source, path = cfg.data.storage, str(data_path(cfg.data, cfg).resolve())
    return {"source": source, "path": path, "content_hash": task.data.content_hash,
            "snapshot": RunDir.SNAPSHOT if in_memory else None}  # fmt: skip


def _dist_meta(info: distributed.DistInfo) -> dict[str, Any]:
    """What the run's meta records about the process layout."""
    return {"world_size": info.world_size, "backend": info.backend}


def _fit_and_finish(
    cfg: ExperimentConfig,
    task: Task,
    method: Method,
    run_dir: Path,
    callbacks: list[Callable[[int, dict], None]] | None,
    info: distributed.DistInfo | None = None,
) -> RunResult:
    info = info or distributed.DistInfo()
    if not info.is_main:  # other ranks train their shard; rank 0 evaluates and records
        fit_summary = method.fit(run_dir, callbacks, validate=make_validator(task, cfg))
        return RunResult(run_dir, {}, pd.DataFrame(), None, fit_summary, rank=info.rank)
    run = RunDir(run_dir)
    start = time.perf_counter()
    with run.recording_failures():  # failed, pruned or interrupted, with the reason
        fit_summary = method.fit(run_dir, callbacks, validate=make_validator(task, cfg))
        run.update_meta(parameter_count=method.parameter_count())
        result = evaluate(task, method, cfg.eval, cfg.seed)
        val_summary = None
        if cfg.eval.split != "val" and task.conditions("val"):
            val_cfg = cfg.eval.model_copy(update={"reference_points": False})
            val_summary = evaluate(task, method, val_cfg, cfg.seed, split="val").summary
        readouts = method.readouts(cfg.eval.split)
        record_results(run, method, result, val_summary, fit_summary, time.perf_counter() - start, readouts)
        run.set_status("completed")
    return RunResult(run_dir, result.summary, result.per_condition, result.reference_summary, fit_summary, val_summary)


def load_run_task(run_dir: Path | RunDir, cfg: ExperimentConfig | None = None) -> Task:
    """Rebuild a run's task with the split the run recorded.

    The cells come from the run's snapshot when it has one (a run trained on an AnnData held in memory), else
    from ``data.path`` (or ``data.synthetic``) again. A ``gene_order: file`` order comes from the run's own copy
    (``gene_order.txt``), so editing the user's file later changes nothing.

    Raises
    ------
    DataError
        The data read again differs from the run's (its content hash changed since the run), or its gene order
        from the one the run recorded.
    """
    run = RunDir(run_dir)
    cfg = cfg or run.read_config()
    update: dict[str, Any] = {
        "task": cfg.task.model_copy(update={"split_file": str(run.split.resolve())}),
        # the recorded split already holds the cells the run validated on
        "train": cfg.train.model_copy(update={"val_train_fraction": 0.0}),
    }
    recorded_order = run.read_gene_order()
    if cfg.data.gene_order == "file" and recorded_order is not None:  # the run's copy, not the user's file
        update["data"] = cfg.data.model_copy(
            update={"gene_order_file": str(run.gene_order.resolve()), "gene_order_shift": 0}
        )
    cfg = cfg.model_copy(update=update)
    snapshot = run.read_snapshot()
    if snapshot is not None:
        task = build_task(cfg, data_from_snapshot(snapshot))
    else:
        data = load_data(cfg.data, cfg)
        recorded = run.read_meta().get("data", {}).get("content_hash")
        if recorded and data.content_hash and data.content_hash != recorded:
            where = cfg.data.path or "data.synthetic"
            raise DataError(
                f"{where}: the data changed since run {run.path.name} (content hash {data.content_hash[:19]}, run "
                f"recorded {recorded[:19]}); restore the data the run was trained on"
            )
        task = build_task(cfg, data)
    if recorded_order is not None and list(task.spec.gene_names) != recorded_order:
        raise DataError(
            f"{run.path}: the gene order built again differs from the one the run recorded in "
            f"{RunDir.GENE_ORDER}; restore the data and data.gene_order settings the run was trained with"
        )
    return task


def resume(
    run_dir: Path,
    callbacks: list[Callable[[int, dict], None]] | None = None,
    notes: Callable[[str], None] | None = None,
) -> RunResult:
    """Continue an interrupted run exactly where its last checkpoint left it.

    The run's own ``config.yaml`` is used; its checkpoint must have been written for it (the config hash stored
    in the checkpoint is checked). Any number of processes may resume a checkpoint written by any number
    (``docs/distributed.md``); every rank reads the run directory, so under multi-node ``torchrun`` it must be on a
    shared filesystem.

    Raises
    ------
    ArchLabError
        Not a run directory, a completed run, a run another process is writing, a method without checkpoints, or
        a checkpoint written for another config.
    """
    run = RunDir(run_dir)
    with distributed.session() as info, contextlib.ExitStack() as held:
        _interruptible(info, held)
        cfg = run.read_config()
        if info.is_main:
            held.enter_context(run.lock())  # refuses while another process writes the run
        status = run.read_status()["status"]
        if status == "completed":
            raise ArchLabError(f"{run_dir}: run already completed; start a new run instead of --resume")
        task = load_run_task(run, cfg)
        method = build_method(cfg, task)
        if not hasattr(method, "resume"):
            raise ArchLabError(f"{run_dir}: method {cfg.method.name!r} has no checkpoints to resume; rerun it")
        method.resume = True
        distributed.barrier(info)  # every rank has read the status before rank 0 rewrites it
        if info.is_main:
            _tell(notes, task)
            with run.recording_failures():
                run.set_status("running", resumed=True)
                run.update_meta(distributed=_dist_meta(info))
                commits = record_resume(run)
            if commits is not None:
                message = (
                    f"{run_dir}: started under commit {commits[0][:12]}, resumed under {commits[1][:12]}; its "
                    "meta.json lists both (resumes), and analyses report runs that mix commits"
                )
                (notes or log.warning)(message)
        return _fit_and_finish(cfg, task, method, run.path, callbacks, info)


def load_method(run_dir: Path) -> tuple[ExperimentConfig, Task, Method]:
    """Rebuild a completed run's method with its trained state."""
    run = RunDir(run_dir)
    cfg = run.read_config()
    saved = run.load_model()
    task = load_run_task(run, cfg)
    method = build_method(cfg, task)
    method.load_state_dict(saved["state"])
    return cfg, task, method


def predict(
    run_dir: Path, conditions_csv: Path, out: Path, n_cells: int | Literal["observed"] = 100, seed: int = 0
) -> ad.AnnData:
    """Generate cells for the conditions listed in a CSV and write them as ``.h5ad``.

    Parameters
    ----------
    run_dir
        A completed run directory.
    conditions_csv
        One row per condition: the data's perturbation column (the run's ``data.perturbation_key``, e.g.
        ``condition``; ``perturbation`` is accepted too) and one column per covariate key (or a ``state`` column
        of covariate values joined by ``|``). Combinations never seen in training are fine as long as each single
        is known.
    out
        The ``.h5ad`` to write (the data's column names, genes and gene annotations).
    n_cells
        Cells per condition, or ``"observed"``: as many as the data holds for the condition (all splits).
    seed
        Seeds the source cells and the generation.

    Returns
    -------
    anndata.AnnData
        The generated cells, as written.

    Raises
    ------
    DataError
        A missing file or column, an unknown perturbation or state, or ``observed`` for a condition the data does
        not hold.
    """
    cfg, task, method = load_method(run_dir)
    p = Path(conditions_csv)
    if not p.is_file():
        raise DataError(f"{p}: conditions file not found")
    adata = generate(task, method, pd.read_csv(p, dtype=str), n_cells, seed, where=str(p))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_h5ad(adata, out)
    return adata


def generate(
    task: Task,
    method: Method,
    conditions: pd.DataFrame,
    n_cells: int | Literal["observed"] = 100,
    seed: int = 0,
    where: str = "conditions",
) -> ad.AnnData:
    """Generate cells for the conditions listed in a table with a trained method (what :func:`predict` writes).

    Parameters
    ----------
    task
        The run's task (:func:`load_run_task`).
    method
        The trained method (:func:`load_method`).
    conditions
        One row per condition: the data's perturbation column (or ``perturbation``) and one column per covariate
        key (or a ``state`` column of covariate values joined by ``|``).
    n_cells
        Cells per condition, or ``"observed"``: as many as the data holds for the condition (all splits).
    seed
        Seeds the source cells and the generation.
    where
        Names the table in error messages (e.g. its file).

    Returns
    -------
    anndata.AnnData
        The generated cells with the data's obs column names and genes.

    Raises
    ------
    DataError
        A missing column, an unknown perturbation or state, or ``observed`` for a condition the data does not hold.
    """
    df = conditions.astype(str)
    key = task.data.perturbation_key
    column = key if key in df.columns else "perturbation" if "perturbation" in df.columns else None
    if column is None:
        raise DataError(f"{where}: needs the perturbation column {key!r} (the data's); columns are {list(df.columns)}")
    keys = task.data.covariate_keys
    if "state" not in df.columns:
        missing = [k for k in keys if k not in df.columns]
        if missing:
            raise DataError(f"{where}: missing covariate columns {missing} (or give a 'state' column)")
        df["state"] = df[keys].agg("|".join, axis=1) if keys else "all"
    wanted = [Condition(s, pert) for s, pert in zip(df["state"], df[column], strict=True)]
    for c in wanted:
        task.encode(c)
        if n_cells == "observed" and not len(task.cells(None, c)):
            raise DataError(
                f"--n-cells observed: {c.perturbation!r} in state {c.state!r} was never observed; give a number"
            )
    rng = np.random.default_rng(seed)
    requests = make_requests(task, wanted, None, n_cells, rng, reuse_sources=True)
    return predictions_to_anndata(task, requests, method.predict(requests, rng))
