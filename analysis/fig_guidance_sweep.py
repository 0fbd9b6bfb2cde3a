"""Figure 8: distributional fit against DEG recall as the guidance scale (flow.guidance) varies.

Usage: python analysis/fig_guidance_sweep.py RUNS_OR_STUDIES... --out DIR [--x energy_distance --y deg_recall]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from matplotlib.figure import Figure

from arch_lab.analysis import Sources, fig_guidance_sweep
from arch_lab.analysis.script import figure_parser, run_figure_script


def draw(sources: Sources, args: argparse.Namespace) -> Figure:
    """One line per backbone run at two or more guidance scales."""
    return fig_guidance_sweep(sources.runs, x_metric=args.x, y_metric=args.y)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; returns the exit code."""
    parser = figure_parser(__doc__.splitlines()[0])
    parser.add_argument("--x", default="energy_distance", help="metric on the x axis")
    parser.add_argument("--y", default="deg_recall", help="metric on the y axis")
    return run_figure_script("fig8_guidance_sweep", parser, draw, argv)


if __name__ == "__main__":
    sys.exit(main())
