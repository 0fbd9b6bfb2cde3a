"""Figure 7: per-gene logFC, predicted against observed, for one condition; the top DE genes labelled.

Usage: python analysis/fig_gene_logfc.py RUNS_OR_STUDIES... --out DIR [--condition STATE/PERT] [--labels 6]
Shows the best run (on --metric) of each backbone; without --condition, the strongest observed shift.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from matplotlib.figure import Figure

from arch_lab.analysis import Sources, best_runs, fig_gene_logfc, gene_logfc
from arch_lab.analysis.script import figure_parser, run_figure_script


def draw(sources: Sources, args: argparse.Namespace) -> Figure:
    """One panel per backbone."""
    runs = best_runs(sources.runs, args.metric)
    return fig_gene_logfc(gene_logfc(list(runs["run_dir"]), args.condition), n_labels=args.labels)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; returns the exit code."""
    parser = figure_parser(__doc__.splitlines()[0])
    parser.add_argument("--condition", default=None, help="STATE/PERTURBATION")
    parser.add_argument("--labels", type=int, default=6, help="label this many top DE genes")
    return run_figure_script("fig7_gene_logfc", parser, draw, argv)


if __name__ == "__main__":
    sys.exit(main())
