"""Baselines and backbones on the same tasks, with each task's floor and ceiling, as one table."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from arch_lab.config import load_experiment
from arch_lab.data.task import build_task
from arch_lab.methods import list_methods
from arch_lab.networks import list_networks
from arch_lab.rundir import RunDir


def default_entries() -> list[str]:
    """Every registered baseline (each method but ``flow_matching``), then every registered network."""
    return [m for m in list_methods() if m != "flow_matching"] + list_networks()


COLUMNS = ("energy_distance", "energy_distance_pca", "cosine_logfc", "pearson_delta", "rmse_mean", "rmse_mean_rank",
           "cosine_logfc_rank", "deg_recall")  # fmt: skip


def entry_overrides(entry: str) -> dict[str, Any]:
    """Config overrides that select a method or a backbone (``unet1d`` means flow matching with that network)."""
    if entry in list_networks():
        return {"method": {"name": "flow_matching", "params": {}}, "network": {"name": entry}}
    if entry in list_methods():
        return {"method": {"name": entry, "params": {}}}
    from arch_lab.errors import ConfigError

    raise ConfigError(f"unknown entry {entry!r}: methods are {list_methods()}, networks are {list_networks()}")


def run_scoreboard(
    experiments: list[Path], entries: list[str], seeds: int = 1, out: Path | None = None, overrides: dict | None = None
) -> pd.DataFrame:
    """Train every entry on every task for ``seeds`` seeds; write ``out`` (markdown) and a CSV beside it.

    Returns
    -------
    pandas.DataFrame
        One row per (task, entry, seed), plus ``floor (no_change)`` and ``ceiling (split-half)`` rows per task.
    """
    from arch_lab.api import train

    for e in entries:
        entry_overrides(e)
    csv_path = Path(out).with_suffix(".csv") if out is not None else None
    rows: list[dict] = []
    if csv_path is not None and csv_path.is_file():  # resume: keep finished rows
        rows = pd.read_csv(csv_path).to_dict("records")
    done = {(r["task"], r["entry"], int(r["seed"])) for r in rows}
    jobs = [(exp, e, s) for exp in experiments for e in entries for s in range(seeds)]
    tasks = {}
    for exp, entry, seed in tqdm(jobs, desc="scoreboard"):
        ov = {**(overrides or {}), **{"seed": seed, "output_dir": "runs/scoreboard", "train.progress": False}}
        cfg = load_experiment(exp, ov)
        if (cfg.name, entry, seed) in done:
            continue
        cfg = cfg.model_copy(
            update={k: type(getattr(cfg, k)).model_validate(v) for k, v in entry_overrides(entry).items()}
        )
        if exp not in tasks:
            tasks[exp] = build_task(cfg)
        res = train(cfg, task=tasks[exp])
        meta = RunDir(res.run_dir).read_metrics()
        rows.append({"task": cfg.name, "entry": entry, "seed": seed, **{k: res.summary.get(k, np.nan) for k in COLUMNS},
                     "parameters": meta["parameter_count"], "seconds": meta["wall_seconds"], "run_dir": str(res.run_dir)})  # fmt: skip
        if res.reference and not any(r["task"] == cfg.name and str(r["entry"]).startswith("floor") for r in rows):
            for name, ref in res.reference.items():
                label = "floor (no_change)" if name == "no_change" else "ceiling (split-half)"
                rows.append(
                    {"task": cfg.name, "entry": label, "seed": seed, **{k: ref.get(k, np.nan) for k in COLUMNS}}
                )
        if out is not None:
            _write(pd.DataFrame(rows), Path(out))
    df = pd.DataFrame(rows)
    if out is not None:
        _write(df, Path(out))
    return df


def _write(df: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(out.with_suffix(".csv"), index=False)
    out.write_text(to_markdown(df))


def to_markdown(df: pd.DataFrame) -> str:
    """Mean over seeds per (task, entry), one table per task."""
    parts = []
    for task, grp in df.groupby("task", sort=False):
        agg = grp.groupby("entry", sort=False)[list(COLUMNS)].mean()
        n = grp.groupby("entry", sort=False)["seed"].nunique()
        header = "| entry | seeds | " + " | ".join(COLUMNS) + " |"
        lines = [f"### {task}", "", header, "|" + "---|" * (len(COLUMNS) + 2)]
        for entry, row in agg.iterrows():
            vals = " | ".join("" if pd.isna(v) else f"{v:.3f}" for v in row)
            lines.append(f"| {entry} | {n[entry]} | {vals} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
