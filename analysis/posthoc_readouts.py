"""Compute the mechanistic read-outs of finished runs again, for runs recorded before a read-out existed.

Usage:
  python analysis/posthoc_readouts.py --results results/probes_v2 mlp_width_2048_synthetic [more studies]

For every run of ``<results>/<study>.csv`` (an ``arch-lab sweep export --runs`` table) the run's trained method is
rebuilt from its directory and asked for its read-outs (``Method.readouts`` on the run's evaluated split: for a flow,
``source_outside_span``, ``output_rank`` and ``source_sensitivity`` of :mod:`arch_lab.methods.readouts`), exactly as
a run computes them after training. The values go to ``<results>/readouts/<study>.csv``, one row per run directory,
with the commit that computed them; ``analysis/gene_scale.py`` fills the study table's missing read-out columns
from it. The run directories must be on this machine (the study's sweep command makes them).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from arch_lab.api import load_method
from arch_lab.errors import ArchLabError
from arch_lab.provenance import git_sha


def run_readouts(run_dir: Path) -> dict[str, float]:
    """The read-outs of one finished run, recomputed from its trained state (``readout_<name>`` keys)."""
    if not (run_dir / "config.yaml").is_file():
        raise ArchLabError(f"{run_dir}: no run directory here; run the study's sweep on this machine first")
    cfg, _, method = load_method(run_dir)
    return {f"readout_{k}": v for k, v in method.readouts(cfg.eval.split).items()}


def study_readouts(table: Path, threads: int = 1) -> pd.DataFrame:
    """One row per run of an exported study table: ``run_dir``, its read-outs and ``readouts_git_sha``.

    Raises
    ------
    ArchLabError
        The table is missing or has no ``run_dir`` column, or a run directory is not on this machine.
    """
    if not table.is_file():
        raise ArchLabError(f"{table}: no such table; export the study with `arch-lab sweep export ... --runs`")
    runs = pd.read_csv(table)
    if "run_dir" not in runs.columns:
        raise ArchLabError(f"{table}: no run_dir column; export it with --runs")
    torch.set_num_threads(threads)
    sha = git_sha()
    rows = []
    for run_dir in tqdm(list(runs["run_dir"].astype(str)), desc=table.stem):
        rows.append({"run_dir": run_dir, **run_readouts(Path(run_dir)), "readouts_git_sha": sha})
    return pd.DataFrame(rows)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; returns the exit code (2 on a user error, printed as one ``error:`` line)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("studies", nargs="+", help="study table stems, e.g. mlp_width_2048_synthetic")
    p.add_argument("--results", type=Path, default=Path("results/probes_v2"), help="folder of <study>.csv tables")
    p.add_argument("--threads", type=int, default=1, help="CPU threads")
    args = p.parse_args(argv)
    try:
        for stem in args.studies:
            out = args.results / "readouts" / f"{stem}.csv"
            table = study_readouts(args.results / f"{stem}.csv", args.threads)
            out.parent.mkdir(parents=True, exist_ok=True)
            table.to_csv(out, index=False)
            print(out)
    except ArchLabError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
