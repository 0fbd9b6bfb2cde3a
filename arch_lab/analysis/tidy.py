"""Tidy tables of runs and sweeps.

:func:`load_runs` reads run directories into one row per run; :func:`study_runs` joins the trials of an Optuna
study (parameters, state, objective, per-seed values, user attributes) with the runs each trial recorded, one row
per (trial, replicate seed). Studies are opened and their trials tabulated by :mod:`arch_lab.sweeps.study`
(:func:`~arch_lab.sweeps.study.load_study`, :func:`~arch_lab.sweeps.study.trials_table`).
:func:`load_per_condition`, :func:`load_reference` and :func:`load_history` add the per-condition scores, the
per-condition floor and ceiling, and the training curves.
"""

from __future__ import annotations

import json
import math
import warnings
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from arch_lab.errors import ArchLabError
from arch_lab.metrics.info import DIAGNOSTICS, METRICS
from arch_lab.recording import trained_commits
from arch_lab.rundir import RunDir, is_run_dir
from arch_lab.sweeps.study import trials_table

if TYPE_CHECKING:
    import optuna

#: Columns that identify a run in every table derived from it.
ID_COLUMNS: tuple[str, ...] = ("run_dir", "experiment", "backbone", "method", "network", "seed")
#: Trial columns carried into derived tables when the runs come from a study.
TRIAL_ID_COLUMNS: tuple[str, ...] = ("study", "trial")
#: What makes a directory a run directory (for messages).
_RUN_FILES = f"a run has {RunDir.CONFIG} and {RunDir.STATUS}"
_PathLike = str | Path


class RunSkipped(UserWarning):
    """A run directory was left out of a table (not completed, or missing)."""


# --------------------------------------------------------------------------------------------------- runs
def find_run_dirs(paths: _PathLike | Iterable[_PathLike]) -> list[Path]:
    """Run directories named by ``paths``: each is a run directory or a folder searched recursively for them.

    Raises
    ------
    ArchLabError
        A path that does not exist, or a folder that holds no run directory.
    """
    found: list[Path] = []
    for p in [paths] if isinstance(paths, str | Path) else list(paths):
        p = Path(p)
        if not p.exists():
            raise ArchLabError(f"{p}: no such file or directory; pass a run directory or a folder of runs")
        if is_run_dir(p):
            found.append(p)
            continue
        inside = [run.path for run in RunDir.find(p)] if p.is_dir() else []
        if not inside:
            raise ArchLabError(f"{p}: not a run directory and holds none ({_RUN_FILES})")
        found.extend(inside)
    unique: dict[str, Path] = {}
    for d in found:
        unique.setdefault(str(d.resolve()), d)
    return list(unique.values())


def _flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for k, v in d.items():
        key = f"{prefix}{k}"
        if isinstance(v, dict) and v:
            out.update(_flatten(v, f"{key}."))
        elif isinstance(v, list | tuple | dict):
            out[key] = json.dumps(v)
        else:
            out[key] = v
    return out


def _num(value: Any) -> float:
    try:
        return float(value) if value is not None else math.nan
    except (TypeError, ValueError):
        return math.nan


def read_run(run_dir: _PathLike) -> dict[str, Any]:
    """One completed run as a flat record (the row :func:`load_runs` makes).

    Raises
    ------
    ArchLabError
        Not a run directory, or a run without its metrics summary (it did not complete).
    """
    run = RunDir(run_dir)
    run_dir = run.path
    if not is_run_dir(run):
        raise ArchLabError(f"{run_dir}: not a run directory ({_RUN_FILES})")
    metrics = run.read_metrics()
    cfg = run.read_config_dict()
    meta = run.read_meta()
    method = metrics.get("method") or cfg.get("method", {}).get("name")
    network = metrics.get("network") if method == "flow_matching" else None
    fit = metrics.get("fit") or {}
    device = meta.get("device") or {}
    row: dict[str, Any] = {
        "run_dir": str(run_dir.resolve()),
        "run": run_dir.name,
        "experiment": cfg.get("name"),
        "backbone": network or method,
        "method": method,
        "network": network,
        "seed": int(cfg.get("seed", meta.get("seed", 0))),
        "split": metrics.get("split"),
        "parameter_count": _num(metrics.get("parameter_count", meta.get("parameter_count"))),
        "train_seconds": _num(fit.get("train_seconds")),
        "wall_seconds": _num(metrics.get("wall_seconds")),
        "steps": _num(fit.get("steps")),
        "flops_per_step": _num(fit.get("flops_per_step")),
        "train_flops": _num(fit.get("train_flops")),
        "max_flops": _num(fit.get("max_flops")),
        "matched_knob": (fit.get("parameter_matching") or {}).get("knob"),
        "matched_value": _num((fit.get("parameter_matching") or {}).get("value")),
        "matched_target": _num((fit.get("parameter_matching") or {}).get("target")),
        "best_step": _num(fit.get("best_step")),
        "best_value": _num(fit.get("best_value")),
        "select_metric": fit.get("select_metric"),
        "guidance": _num(cfg.get("flow", {}).get("guidance")) if method == "flow_matching" else math.nan,
        "git_sha": meta.get("git_sha"),
        # the other commits it was resumed under (";"-joined; empty when it was trained under one commit)
        "resumed_git_shas": ";".join(trained_commits(meta)[1:]),
        "device": device.get("gpu") or ("cpu" if device else None),
        "cpu": device.get("cpu"),
        # what train.precision resolved to on this device ("fp32" or "torch.bfloat16"; auto differs by CPU)
        "precision": fit.get("precision"),
        # generated cells on the evaluated split a diverged flow left (NaN: a run recorded before the count)
        "out_of_range_cells": _out_of_range_total(metrics),
    }
    summary = metrics.get("metrics") or {}
    val = metrics.get("val_metrics") or {}
    ref = metrics.get("reference") or {}
    row["n_conditions"] = _num(summary.get("n_conditions"))
    row["n_genes"] = _num((meta.get("task") or {}).get("n_genes"))
    for name in METRICS:
        row[name] = _num(summary.get(name))
    for name in DIAGNOSTICS:
        row[name] = _num(summary.get(name))
    for name, value in (metrics.get("readouts") or {}).items():
        row[f"readout_{name}"] = _num(value)
    for name in METRICS:
        row[f"val_{name}"] = _num(val.get(name))
    for prefix, key in (("floor", "no_change"), ("ceiling", "split_half")):
        for name in METRICS:
            row[f"{prefix}_{name}"] = _num((ref.get(key) or {}).get(name))
    row.update({f"config.{k}": v for k, v in _flatten(cfg).items()})
    return row


def _out_of_range_total(metrics: dict[str, Any]) -> float:
    counts = metrics.get("out_of_range_cells")
    return float(sum(counts.values())) if isinstance(counts, dict) else math.nan


def _completed(dirs: Iterable[Path]) -> list[Path]:
    keep = []
    for d in dirs:
        run = RunDir(d)
        if not run.is_completed():
            status = run.read_status()
            reason = f" ({status['reason']})" if status.get("reason") else ""
            if run.process_gone():  # running, but nothing writes it any more
                reason = f" ({run.describe_status()})"
            warnings.warn(f"{d}: skipped, status {status.get('status')!r}{reason}", RunSkipped, stacklevel=3)
            continue
        keep.append(d)
    return keep


def load_runs(paths: _PathLike | Iterable[_PathLike]) -> pd.DataFrame:
    """One row per completed run found under ``paths``.

    Parameters
    ----------
    paths
        Run directories, or folders searched recursively for run directories.

    Returns
    -------
    pandas.DataFrame
        Columns: ``run_dir`` (resolved), ``run``, ``experiment``, ``backbone`` (network name for flow runs, else
        the method name), ``method``, ``network``, ``seed``, ``split``, ``parameter_count``, ``train_seconds``
        (NaN for closed-form baselines), ``wall_seconds``, ``steps``, ``best_step``, ``best_value``,
        ``select_metric``, ``flops_per_step`` and ``train_flops`` (training FLOPs per step and in total, see
        :mod:`arch_lab.flops`), ``max_flops`` (the run's ``train.max_flops`` budget), ``matched_knob``,
        ``matched_value`` and ``matched_target`` (``network.match_parameters``: the knob chosen, its value and the
        target parameter count), ``guidance`` (``flow.guidance``; NaN for baselines), ``git_sha``, ``device``,
        ``n_conditions``, every metric of :data:`arch_lab.metrics.info.METRICS` (summary of the evaluated split),
        ``val_<metric>`` (validation split), ``floor_<metric>`` and ``ceiling_<metric>`` (the run's ``no_change``
        and ``split_half`` reference points), and ``config.<dotted key>`` for the resolved config.
        Empty (with the identifying columns) when no run completed.

    Warns
    -----
    RunSkipped
        For each run that is not completed (running, failed, pruned); it is left out.

    Raises
    ------
    ArchLabError
        A path that does not exist or is neither a run directory nor a folder holding one.
    """
    rows = [read_run(d) for d in _completed(find_run_dirs(paths))]
    if not rows:
        return pd.DataFrame(columns=list(ID_COLUMNS))
    return pd.DataFrame(rows).sort_values(["experiment", "backbone", "seed", "run_dir"], ignore_index=True)


def _as_runs(runs: pd.DataFrame | _PathLike | Iterable[_PathLike]) -> pd.DataFrame:
    if isinstance(runs, pd.DataFrame):
        if "run_dir" not in runs.columns:
            raise ArchLabError("expected a runs table with a 'run_dir' column (from load_runs or study_runs)")
        return runs
    return load_runs(runs)


def _id_frame(runs: pd.DataFrame) -> pd.DataFrame:
    cols = [c for c in (*ID_COLUMNS, *TRIAL_ID_COLUMNS, "guidance") if c in runs.columns]
    return runs[cols].drop_duplicates("run_dir")


def _read_per_run(runs: pd.DataFrame, read: Callable[[RunDir], pd.DataFrame | None]) -> pd.DataFrame:
    frames = []
    for ids in _id_frame(runs).to_dict("records"):
        df = read(RunDir(ids["run_dir"]))
        if df is not None:
            frames.append(df.assign(**ids))
    if not frames:
        return pd.DataFrame(columns=list(_id_frame(runs).columns))
    df = pd.concat(frames, ignore_index=True)
    front = [c for c in _id_frame(runs).columns if c in df.columns]
    return df[front + [c for c in df.columns if c not in front]]


def _with_condition(df: pd.DataFrame) -> pd.DataFrame:
    if not df.empty and {"state", "perturbation"} <= set(df.columns):
        df.insert(df.columns.get_loc("state"), "condition", df["state"] + "/" + df["perturbation"])
    return df


def load_per_condition(runs: pd.DataFrame | _PathLike | Iterable[_PathLike]) -> pd.DataFrame:
    """Every run's metrics per condition, stacked, with the run's identifying columns.

    Parameters
    ----------
    runs
        A runs table (from :func:`load_runs` or :func:`study_runs`) or paths for :func:`load_runs`.

    Returns
    -------
    pandas.DataFrame
        One row per (run, condition): the id columns, ``split`` (the evaluated split the run scored),
        ``condition`` (``state/perturbation``), ``state``, ``perturbation``, the cell counts and one column per
        metric.
    """
    runs = _as_runs(runs)
    return _with_split(_with_condition(_read_per_run(runs, RunDir.read_per_condition)), runs)


def load_reference(runs: pd.DataFrame | _PathLike | Iterable[_PathLike]) -> pd.DataFrame:
    """Every run's reference points per condition (floor ``no_change`` and ceiling ``split_half``), stacked, with
    the id columns and ``split``.
    """
    runs = _as_runs(runs)
    return _with_split(_with_condition(_read_per_run(runs, RunDir.read_reference_per_condition)), runs)


def _with_split(df: pd.DataFrame, runs: pd.DataFrame) -> pd.DataFrame:
    """``df`` with the ``split`` each row's run scored, after the id columns (when the runs table has it)."""
    if "split" not in runs.columns or "run_dir" not in df.columns or "split" in df.columns:
        return df
    where = df.columns.get_loc("condition") if "condition" in df.columns else len(df.columns)
    df.insert(where, "split", df["run_dir"].map(dict(zip(runs["run_dir"], runs["split"], strict=False))))
    return df


def load_history(runs: pd.DataFrame | _PathLike | Iterable[_PathLike]) -> pd.DataFrame:
    """Every flow run's training curve (``step``, ``train_*``, ``val_<metric>``), with the id columns.

    Runs without a history (closed-form baselines) contribute no rows.
    """
    return _read_per_run(_as_runs(runs), RunDir.read_history)


def long_metrics(runs: pd.DataFrame, metrics: Iterable[str] | None = None) -> pd.DataFrame:
    """The runs table melted to one row per (run, metric) with ``metric``, ``direction`` and ``value``."""
    names = [m for m in (metrics or METRICS) if m in runs.columns]
    ids = [c for c in runs.columns if c not in METRICS and not c.startswith(("val_", "floor_", "ceiling_", "config."))]
    out = runs.melt(id_vars=ids, value_vars=names, var_name="metric", value_name="value")
    out["direction"] = out["metric"].map(lambda m: METRICS[m].direction)
    return out


def require_metric(df: pd.DataFrame, metric: str, prefix: str = "") -> str:
    """The column holding ``metric`` (with ``prefix``), checked to exist and to hold values.

    Raises
    ------
    ArchLabError
        An unknown metric name, or one with no values in ``df``.
    """
    col = f"{prefix}{metric}"
    if metric not in METRICS and col not in df.columns:
        raise ArchLabError(f"unknown metric {metric!r}; choose one of: {', '.join(METRICS)}")
    if col not in df.columns or not np.isfinite(pd.to_numeric(df[col], errors="coerce")).any():
        raise ArchLabError(f"metric {col!r} has no values in this table ({len(df)} rows)")
    return col


# -------------------------------------------------------------------------------------------------- studies
def _as_list(value: Any) -> list[Any]:
    if isinstance(value, list | tuple):
        return list(value)
    return [] if value is None or (isinstance(value, float) and math.isnan(value)) else [value]


def study_runs(study: optuna.Study, base_dir: _PathLike | None = None) -> pd.DataFrame:
    """The trials of ``study`` joined with the runs they recorded: one row per (trial, replicate).

    Parameters
    ----------
    study
        A study whose trials carry a ``run_dirs`` user attribute (one directory per replicate seed).
    base_dir
        Folder against which relative run directories are resolved when they do not exist as given.

    Returns
    -------
    pandas.DataFrame
        The :func:`load_runs` columns plus ``study``, ``trial``, ``trial_state``, ``objective`` (the trial's
        value), ``replicate``, ``seed_value`` (the trial's per-seed value for this run), ``params_<key>`` and
        ``user_attrs_<key>`` (scalar attributes only). Only completed runs appear, each once (a run finished
        by a trial that was lost and requeued appears under the latest trial listing it).

    Warns
    -----
    RunSkipped
        For each listed run directory that is missing or not completed.

    Raises
    ------
    ArchLabError
        The study has no trials, or none of its trials recorded a completed run.
    """
    trials = trials_table(study)
    listed = []
    for rec in trials.to_dict("records"):
        dirs = _as_list(rec.get("user_attrs_run_dirs"))
        per_seed = _as_list(rec.get("user_attrs_values_per_seed"))
        scalars = {
            k: None if v is pd.NA else v
            for k, v in rec.items()
            if k.startswith("params_") or (k.startswith("user_attrs_") and not isinstance(v, list | tuple | dict))
        }
        for i, d in enumerate(dirs):
            p = Path(d)
            if not p.exists() and base_dir is not None and not p.is_absolute():
                p = Path(base_dir) / p
            listed.append(
                {
                    "study": rec["study"],
                    "trial": rec["trial"],
                    "trial_state": rec["state"],
                    "objective": rec.get("value", math.nan),
                    "replicate": i,
                    "seed_value": _num(per_seed[i]) if i < len(per_seed) else math.nan,
                    "_path": p,
                    **scalars,
                }
            )
    present = []
    for rec in listed:
        if is_run_dir(rec["_path"]):
            present.append(rec)
        else:
            warnings.warn(
                f"{rec['_path']}: skipped, listed by trial {rec['trial']} but not a run directory",
                RunSkipped,
                stacklevel=2,
            )
    runs = [read_run(d) for d in _completed(rec["_path"] for rec in present)]
    if not runs:
        raise ArchLabError(f"study {study.study_name!r}: no completed run among its trials' run_dirs")
    run_frame = pd.DataFrame(runs).drop_duplicates("run_dir")
    trial_frame = pd.DataFrame(present)
    trial_frame["run_dir"] = [str(p.resolve()) for p in trial_frame.pop("_path")]
    merged = trial_frame.merge(run_frame, on="run_dir", how="inner", suffixes=("_trial", ""))
    # a requeued trial reuses the run directories its lost predecessor finished: report each run once, under
    # the latest trial that lists it
    merged = merged.sort_values(["trial", "replicate"]).drop_duplicates("run_dir", keep="last")
    front = ["study", "trial", *ID_COLUMNS]
    merged = merged[front + [c for c in merged.columns if c not in front]]
    return merged.sort_values(["trial", "replicate"], ignore_index=True)


#: Leading columns of :func:`runs_table` (the rest follow: every metric, ``val_``, ``floor_``, ``ceiling_``...).
RUN_COLUMNS = (
    "study",
    "trial",
    "arm",
    "task",
    "dataset",
    "locality",
    "seed",
    "n_genes",
    "parameter_count",
    "flops_per_step",
    "train_flops",
    "steps",
    "wall_seconds",
)


def runs_table(study: optuna.Study, arm_keys: tuple[str, ...] = ("arm",)) -> pd.DataFrame:
    """One row per completed run of a study (trial x replicate seed), for analysis.

    Built on :func:`study_runs` (every column of :func:`load_runs`:
    test metrics, ``val_<metric>``, ``floor_<metric>``, ``ceiling_<metric>``, ``config.<key>``, plus the trial's
    ``params_<key>``), with :data:`RUN_COLUMNS` first: ``arm`` (the value of the first of ``arm_keys`` the
    study sampled), ``task`` (the experiment name), ``dataset`` (the data file's stem, or ``synthetic``) and
    ``locality`` (``data.synthetic.locality``; NaN for real data).

    Raises
    ------
    ArchLabError
        The study has no completed run.
    """
    df = study_runs(study)
    arm = next((f"params_{k}" for k in arm_keys if f"params_{k}" in df.columns), None)
    df["arm"] = df[arm] if arm else None
    df["task"] = df["experiment"]
    path = df.get("config.data.path", pd.Series([None] * len(df)))
    df["dataset"] = [Path(str(p)).stem if isinstance(p, str) and p else "synthetic" for p in path]
    df["locality"] = pd.to_numeric(df.get("config.data.synthetic.locality", pd.Series([math.nan] * len(df))))
    for c in RUN_COLUMNS:
        if c not in df.columns:
            df[c] = math.nan
    return df[list(RUN_COLUMNS) + [c for c in df.columns if c not in RUN_COLUMNS]]


def export_runs(
    name_or_yaml: str | Path, out: str | Path, storage: str | None = None, profile: str | None = None
) -> pd.DataFrame:
    """Write :func:`runs_table` of a study (one row per completed run) as CSV and return it."""
    arm_keys: tuple[str, ...] = ("arm",)
    p = Path(name_or_yaml)
    if p.suffix in (".yaml", ".yml") or p.is_file():
        from arch_lab.sweeps.sweep import load_sweep

        arm_keys = tuple(a.key for a in load_sweep(p, profile).space.arms()) or arm_keys
    from arch_lab.sweeps.study import load_study

    df = runs_table(load_study(name_or_yaml, storage, profile), arm_keys)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out, index=False)
    return df
