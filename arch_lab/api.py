"""Typed entry points behind the CLI: train, resume and predict.

The CLI is a thin layer over these functions; tests and sweeps call them directly.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import torch

from arch_lab.config import ExperimentConfig, experiment_from_dict, load_yaml
from arch_lab.data.splits import save_split
from arch_lab.data.task import Condition, Task, build_task
from arch_lab.errors import ArchLabError, DataError
from arch_lab.harness import EvalResult, evaluate, make_requests, make_validator, predictions_to_anndata
from arch_lab.methods import Method, build_method
from arch_lab.runs import new_run_dir, read_status, set_status, update_meta, write_json, write_run_header
from arch_lab.training import distributed


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


def _write_results(
    run_dir: Path,
    method: Method,
    result: EvalResult,
    val_summary: dict[str, float] | None,
    fit_summary: dict[str, Any],
    elapsed: float,
) -> None:
    result.predictions.write_h5ad(run_dir / "predictions.h5ad")
    result.per_condition.to_csv(run_dir / "metrics_per_condition.csv", index=False)
    if result.reference_per_condition is not None:
        result.reference_per_condition.to_csv(run_dir / "reference_per_condition.csv", index=False)
    history = fit_summary.pop("history", None)
    if history:
        pd.DataFrame(history).to_csv(run_dir / "history.csv", index=False)
    torch.save({"method": method.name, "state": method.state_dict()}, run_dir / "model.pt")
    metrics = {
        "method": method.name,
        "network": method.cfg.network.name if method.name == "flow_matching" else None,
        "split": method.cfg.eval.split,
        "metrics": result.summary,
        "val_metrics": val_summary,
        "reference": result.reference_summary,
        "parameter_count": method.parameter_count(),
        "fit": fit_summary,
        "wall_seconds": elapsed,
    }
    write_json(run_dir / "metrics.json", metrics)


def train(
    cfg: ExperimentConfig,
    run_dir: Path | None = None,
    callbacks: list[Callable[[int, dict], None]] | None = None,
    task: Task | None = None,
) -> RunResult:
    """Build the task, fit the method, predict and score the evaluated split, and record everything.

    Parameters
    ----------
    cfg
        The validated experiment.
    run_dir
        An empty directory to write into (default: a fresh one under ``cfg.output_dir``).
    callbacks
        Passed to the trainer (called after each validation).
    task
        A pre-built task (skips loading; must come from the same config).

    Returns
    -------
    RunResult

    Raises
    ------
    ArchLabError
        Bad config or data (raised before any run directory is created), or a diverged run (the directory is
        marked ``failed``).

    Notes
    -----
    Under ``torchrun`` every process runs this function: the process group is set up here, every rank builds
    the task and trains its shard, and rank 0 alone creates and writes the run directory (``docs/distributed.md``).
    """
    with distributed.session() as info:
        task = task if task is not None else build_task(cfg)
        method = build_method(cfg, task)
        if info.is_main:
            if run_dir is None:
                run_dir = new_run_dir(cfg)
            else:
                run_dir = Path(run_dir)
                run_dir.mkdir(parents=True, exist_ok=True)
            extra = {"task": task.summary(), "data_notes": task.data.notes, "distributed": _dist_meta(info)}
            write_run_header(run_dir, cfg, extra)
            save_split(task.split, run_dir / "split.csv")
            set_status(run_dir, "running")
        run_dir = Path(distributed.broadcast_object(str(run_dir) if info.is_main else None, info))
        return _fit_and_finish(cfg, task, method, run_dir, callbacks, info)


def _dist_meta(info: distributed.DistInfo) -> dict[str, Any]:
    """What ``meta.json`` records about the process layout."""
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
    start = time.perf_counter()
    try:
        fit_summary = method.fit(run_dir, callbacks, validate=make_validator(task, cfg))
        update_meta(run_dir, parameter_count=method.parameter_count())
        result = evaluate(task, method, cfg.eval, cfg.seed)
        val_summary = None
        if cfg.eval.split != "val" and task.conditions("val"):
            val_cfg = cfg.eval.model_copy(update={"reference_points": False})
            val_summary = evaluate(task, method, val_cfg, cfg.seed, split="val").summary
        _write_results(run_dir, method, result, val_summary, dict(fit_summary), time.perf_counter() - start)
    except BaseException as exc:
        kind = "pruned" if type(exc).__name__ == "TrialPruned" else "failed"
        reason = str(exc) if isinstance(exc, ArchLabError) else f"{type(exc).__name__}: {exc}"
        set_status(run_dir, kind, reason=reason.splitlines()[0] if reason else type(exc).__name__)
        raise
    set_status(run_dir, "completed")
    return RunResult(run_dir, result.summary, result.per_condition, result.reference_summary, fit_summary, val_summary)


def load_run_config(run_dir: Path) -> ExperimentConfig:
    """The resolved config recorded in a run directory."""
    run_dir = Path(run_dir)
    if not (run_dir / "config.yaml").is_file():
        raise ArchLabError(f"{run_dir}: not a run directory (no config.yaml); pass the folder arch-lab train created")
    return experiment_from_dict(load_yaml(run_dir / "config.yaml"))


def load_run_task(run_dir: Path, cfg: ExperimentConfig | None = None) -> Task:
    """Rebuild a run's task with the split recorded in its ``split.csv``."""
    cfg = cfg or load_run_config(run_dir)
    cfg = cfg.model_copy(
        update={"task": cfg.task.model_copy(update={"split_file": str(Path(run_dir).resolve() / "split.csv")})}
    )
    return build_task(cfg)


def resume(run_dir: Path, callbacks: list[Callable[[int, dict], None]] | None = None) -> RunResult:
    """Continue an interrupted run exactly where its last checkpoint left it.

    Any number of processes may resume a checkpoint written by any number (``docs/distributed.md``); every rank
    reads the run directory, so under multi-node ``torchrun`` it must be on a shared filesystem.
    """
    run_dir = Path(run_dir)
    with distributed.session() as info:
        cfg = load_run_config(run_dir)
        status = read_status(run_dir)["status"]
        if status == "completed":
            raise ArchLabError(f"{run_dir}: run already completed; start a new run instead of --resume")
        task = load_run_task(run_dir, cfg)
        method = build_method(cfg, task)
        if not hasattr(method, "resume"):
            raise ArchLabError(f"{run_dir}: method {cfg.method.name!r} has no checkpoints to resume; rerun it")
        method.resume = True
        distributed.barrier(info)  # every rank has read the status before rank 0 rewrites it
        if info.is_main:
            set_status(run_dir, "running", resumed=True)
            update_meta(run_dir, distributed=_dist_meta(info))
        return _fit_and_finish(cfg, task, method, run_dir, callbacks, info)


def load_method(run_dir: Path) -> tuple[ExperimentConfig, Task, Method]:
    """Rebuild a completed run's method with its trained state."""
    run_dir = Path(run_dir)
    cfg = load_run_config(run_dir)
    if read_status(run_dir)["status"] != "completed" or not (run_dir / "model.pt").is_file():
        raise ArchLabError(f"{run_dir}: run is not completed; finish it (arch-lab train --resume) before predicting")
    task = load_run_task(run_dir, cfg)
    method = build_method(cfg, task)
    saved = torch.load(run_dir / "model.pt", map_location="cpu", weights_only=False)
    method.load_state_dict(saved["state"])
    return cfg, task, method


def predict(run_dir: Path, conditions_csv: Path, out: Path, n_cells: int = 100, seed: int = 0):
    """Generate cells for the conditions listed in a CSV and write them as ``.h5ad``.

    The CSV has a ``perturbation`` column and one column per covariate key of the run (or a ``state`` column).
    Combinations never seen in training are fine as long as each single is known.
    """
    cfg, task, method = load_method(run_dir)
    p = Path(conditions_csv)
    if not p.is_file():
        raise DataError(f"{p}: conditions file not found")
    df = pd.read_csv(p, dtype=str)
    if "perturbation" not in df.columns:
        raise DataError(f"{p}: needs a 'perturbation' column; columns are {list(df.columns)}")
    keys = task.data.covariate_keys
    if "state" not in df.columns:
        missing = [k for k in keys if k not in df.columns]
        if missing:
            raise DataError(f"{p}: missing covariate columns {missing} (or give a 'state' column)")
        df["state"] = df[keys].agg("|".join, axis=1) if keys else "all"
    conditions = [Condition(s, pert) for s, pert in zip(df["state"], df["perturbation"], strict=True)]
    for c in conditions:
        task.encode(c)
    rng = np.random.default_rng(seed)
    requests = make_requests(task, conditions, "train", n_cells, rng, reuse_sources=True)
    adata = predictions_to_anndata(task, requests, method.predict(requests, rng))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    adata.write_h5ad(out)
    return adata


def read_metrics(run_dir: Path) -> dict[str, Any]:
    """A completed run's ``metrics.json``."""
    p = Path(run_dir) / "metrics.json"
    if not p.is_file():
        raise ArchLabError(f"{run_dir}: no metrics.json (run not completed)")
    return json.loads(p.read_text())
