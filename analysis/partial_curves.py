"""The validation curves of a study's runs as far as they got: for the record of a study that has not finished.

Usage:
  python analysis/partial_curves.py sweeps/probes/unet_plateau_2048_cpu_synthetic.yaml \
      --out results/probes_v2/partial/unet_plateau_2048_cpu_synthetic_val_curves.csv

A study that runs over several sessions has no per-run table until its trials complete (``arch-lab sweep export
--runs`` exports completed runs). This reads every run directory below the study's ``run_root`` whatever its status
and writes one row per validation: ``arm`` (the grid point whose experiment the run's config is, matched by
:func:`arch_lab.config.config_hash`, so any space works), ``seed``, ``status``, ``step`` (the validation's),
``last_step`` (the last training step the run logged), the validation energy, its ``no_change`` floor and cosine
logFC, the run's device and precision, and ``code_commit`` (every commit it trained under, ``+``-joined). Where a
replicate has several directories (a trial requeued before its run wrote a checkpoint starts it again elsewhere),
the one that got furthest is kept. Run directories that match no grid point of the study are reported and skipped.
Nothing in ``docs/`` reads these tables: they record the state of an unfinished study.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from arch_lab.config import ExperimentConfig, config_hash
from arch_lab.errors import ArchLabError
from arch_lab.recording import trained_commits
from arch_lab.rundir import RunDir
from arch_lab.sweeps.sweep import Sweep, load_sweep

VALUES = {
    "val/energy_distance": "val_energy_distance",
    "val/floor_energy_distance": "val_floor_energy_distance",
    "val/cosine_logfc": "val_cosine_logfc",
}
COLUMNS = ("arm", "seed", "status", "step", "last_step", *VALUES.values(), "device", "precision", "code_commit")


def grid_point_names(sweep: Sweep) -> dict[str, tuple[str, int]]:
    """``config_hash`` of every experiment the study trains, to its grid point's name and replicate seed."""
    names = {}
    for values in sweep.grid():
        name = str(values["arm"]) if "arm" in values else ", ".join(f"{k}={v}" for k, v in sorted(values.items()))
        for replicate in range(sweep.replicates):
            cfg = sweep.experiment(values, replicate)
            names[config_hash(cfg)] = (name, cfg.seed)
    return names


def run_rows(run: RunDir, config: ExperimentConfig, arm: str, seed: int) -> list[dict[str, Any]]:
    """One row per validation of ``run``, whose resolved config is ``config`` (none when it logged no validation
    yet)."""
    log = run.read_train_log()
    if log is None or "val/energy_distance" not in log:
        return []
    meta = run.read_meta()
    device = meta.get("device") or {}  # provenance.device_info(): the GPU's name where there was one, else the CPU's
    common = {
        "arm": arm,
        "seed": seed,
        "status": run.read_status().get("status"),
        "last_step": int(log["step"].max()),
        "device": device.get("gpu") or device.get("cpu"),
        "precision": config.train.precision,
        "code_commit": "+".join(sha[:7] for sha in trained_commits(meta) if sha),
    }
    rows = []
    for _, entry in log.dropna(subset=["val/energy_distance"]).iterrows():
        row = {**common, "step": int(entry["step"])}
        row.update({out: entry.get(name) for name, out in VALUES.items()})
        rows.append(row)
    return rows


def partial_curves(sweep: Sweep, root: Path | None = None) -> tuple[pd.DataFrame, list[str]]:
    """The study's validation curves (``COLUMNS``) and a line per run directory that matches no grid point."""
    names = grid_point_names(sweep)
    root = root if root is not None else sweep.run_root
    best: dict[tuple[str, int], list[dict[str, Any]]] = {}
    skipped = []
    for config in sorted(root.glob("*/*/config.yaml")):
        run = RunDir(config.parent)
        config = run.read_config()
        found = names.get(config_hash(config))
        if found is None:
            skipped.append(f"{run.path}: its config is none of the study's experiments; skipped")
            continue
        rows = run_rows(run, config, *found)
        kept = best.get(found, [])
        if rows and (not kept or rows[0]["last_step"] > kept[0]["last_step"]):
            best[found] = rows
    table = pd.DataFrame([row for rows in best.values() for row in rows], columns=list(COLUMNS))
    return table.sort_values(["arm", "seed", "step"], kind="stable").reset_index(drop=True), skipped


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweep", type=Path, help="the study's sweep YAML")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write")
    parser.add_argument("--root", type=Path, help="the study's run folder (default: the YAML's run_root)")
    args = parser.parse_args(argv)
    try:
        table, skipped = partial_curves(load_sweep(args.sweep), args.root)
    except ArchLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    for line in skipped:
        print(line, file=sys.stderr)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    table.to_csv(args.out, index=False)
    last = table.groupby(["arm", "seed"])[["status", "last_step"]].last() if len(table) else table
    print(f"{args.out}: {len(table)} validations of {len(last)} runs")
    for (arm, seed), row in last.iterrows() if len(table) else []:
        print(f"  {arm} seed {seed}: {row['status']} at step {row['last_step']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
