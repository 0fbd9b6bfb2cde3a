"""Figure 6: generated and observed cells of chosen conditions on two PCs fit on the observed cells.

Usage: python analysis/fig_cells_pca.py RUNS_OR_STUDIES... --out DIR [--condition STATE/PERT ...] [--metric M]
Shows the best run (on --metric) of each backbone; without --condition, the three strongest observed shifts.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from matplotlib.figure import Figure

from arch_lab.analysis import Sources, best_runs, cell_projection, fig_cells_pca
from arch_lab.analysis.script import figure_parser, run_figure_script


def draw(sources: Sources, args: argparse.Namespace) -> Figure:
    """Rows: backbones; columns: conditions."""
    runs = best_runs(sources.runs, args.metric)
    return fig_cells_pca(cell_projection(list(runs["run_dir"]), args.condition, max_cells=args.max_cells))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; returns the exit code."""
    parser = figure_parser(__doc__.splitlines()[0])
    parser.add_argument("--condition", action="append", default=None, help="STATE/PERTURBATION (repeatable)")
    parser.add_argument("--max-cells", type=int, default=300, help="cells drawn per set and condition")
    return run_figure_script("fig6_cells_pca", parser, draw, argv)


if __name__ == "__main__":
    sys.exit(main())
