"""Why the U-Net wins: U-Net-minus-comparison gaps across the probe studies, paired t intervals, Holm-corrected.

Usage: python analysis/why_unet.py --results results/probes --out docs/figures/why_unet [--sweeps sweeps/probes]
       [--metrics energy_distance cosine_logfc] [--split test] [--n-boot 2000] [--seed 0]

Writes why_unet.{pdf,png} (the whole panel), why_unet_forest[_normalised].{pdf,png}, gaps.csv, coverage.csv and
summary.md into --out. Missing probe files and unfinished cells are listed in summary.md, not an error.
The study code (comparisons, tables, figures) is the package ``analysis/probes/``; the gap and interval estimates
are the library's ``arch_lab.analysis.gaps`` (paired t over seeds, Welch when unpaired) and the Holm and
Benjamini-Hochberg adjustments ``arch_lab.analysis.multiplicity``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the probe-study package ``analysis.probes`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from analysis.probes import GAP_METRICS, write_why_unet
from arch_lab.errors import ArchLabError


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; returns the exit code (2 on a user error, printed as one ``error:`` line)."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--results", type=Path, default=Path("results/probes"), help="folder of <probe>.csv tables")
    p.add_argument("--out", type=Path, default=Path("docs/figures/why_unet"), help="folder for figures and tables")
    p.add_argument("--sweeps", type=Path, default=Path("sweeps/probes"), help="probe YAMLs (expected cells)")
    p.add_argument("--metrics", nargs="+", default=list(GAP_METRICS), help="metrics whose gaps are estimated")
    p.add_argument("--split", choices=("test", "val"), default="test", help="evaluated split (default: test)")
    p.add_argument("--n-boot", type=int, default=2000, help="bootstrap resamples (bootstrap intervals only)")
    p.add_argument("--seed", type=int, default=0, help="seed of any bootstrap")
    args = p.parse_args(argv)
    try:
        paths = write_why_unet(
            args.results,
            args.out,
            sweep_dir=args.sweeps,
            metrics=args.metrics,
            split=args.split,
            n_boot=args.n_boot,
            seed=args.seed,
        )
    except ArchLabError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    for path in paths:
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
