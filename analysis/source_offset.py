"""How far a zero-mean Gaussian source starts from the data: the training cells' per-gene means, per study cell.

Usage:
  python analysis/source_offset.py --out results/probes_v2/source_offset.csv \
      sweeps/probes/layernorm_synthetic.yaml sweeps/probes/centred_2048_synthetic.yaml sweeps/probes/centred_kang.yaml \
      sweeps/probes/gene_identity_k562.yaml sweeps/probes/backbones_glioblastoma.yaml

For every distinct dataset a study's grid trains on (its first replicate's seed, as ``arch-lab sweep run`` builds
it), the task is built exactly as a run builds it and the training cells' per-gene means ``mu`` are read
(``Task.gene_means``, the centre ``flow.source_mean: train`` uses). One row per study and dataset: ``cell`` (the
data and task settings its grid varies, e.g. ``task.fold=2``; empty when it varies none), ``n_genes``,
``mean_sq_offset`` (``||mu||^2 / G``: the squared distance an N(0, I) source starts from the data's mean, per gene,
against 1 for the source's own variance per gene), ``mean_gene_mean`` and ``observed_variance_per_gene`` (the
training cells' total variance over G). ``docs/findings.md`` (point 13) cites this table.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from arch_lab.data.task import build_task
from arch_lab.errors import ArchLabError
from arch_lab.sweeps.sweep import load_sweep

#: config keys that change the cells a run trains on; arms that differ only elsewhere share a dataset
DATA_PREFIXES = ("data.", "task.")


def dataset_rows(sweep_path: Path, profile: str | None = None) -> list[dict[str, object]]:
    """One row per distinct dataset of a sweep's grid (see the module docstring for the columns).

    Parameters
    ----------
    sweep_path
        A sweep YAML.
    profile
        One of its ``profiles:`` (e.g. ``quick``); None: the sweep as written.
    """
    sweep = load_sweep(sweep_path, profile)
    fixed = sweep.spec.fixed
    seen: set[tuple[tuple[str, str], ...]] = set()
    rows: list[dict[str, object]] = []
    for values in sweep.grid():
        overrides = sweep.overrides(values)
        key = tuple(sorted((k, repr(v)) for k, v in overrides.items() if k.startswith(DATA_PREFIXES)))
        if key in seen:
            continue
        seen.add(key)
        varied = [f"{k}={v}" for k, v in sorted(overrides.items()) if k.startswith(DATA_PREFIXES) and k not in fixed]
        cfg = sweep.experiment(values)
        task = build_task(cfg)
        mu = np.asarray(task.gene_means(), dtype=np.float64)
        rows_train = np.sort(task.cells("train"))
        variance = float(np.var(np.asarray(task.data.X[rows_train], dtype=np.float64), axis=0).sum())
        rows.append(
            {
                "study": sweep_path.stem,
                "dataset": cfg.name,
                "cell": "; ".join(varied),
                "n_genes": int(mu.size),
                "mean_sq_offset": float((mu**2).sum() / mu.size),
                "mean_gene_mean": float(mu.mean()),
                "observed_variance_per_gene": variance / mu.size,
            }
        )
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry: write the offsets of the given sweeps' datasets to ``--out``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sweeps", nargs="+", type=Path, help="sweep YAMLs whose datasets to measure")
    parser.add_argument("--out", type=Path, required=True, help="CSV to write")
    parser.add_argument("--profile", default=None, help="a profile of every sweep (e.g. quick); default: none")
    args = parser.parse_args(argv)
    try:
        rows = [row for path in args.sweeps for row in dataset_rows(path, args.profile)]
    except ArchLabError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    args.out.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).to_csv(args.out, index=False)
    print(f"wrote {args.out} ({len(rows)} datasets)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
