"""Figure 1: headline metrics per backbone, a box plus every seed as a point, with floor and ceiling.

Usage: python analysis/fig_metric_by_backbone.py RUNS_OR_STUDIES... --out DIR [--metrics energy_distance deg_recall]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from matplotlib.figure import Figure

from arch_lab.analysis import HEADLINE_METRICS, Sources, fig_metrics_by_backbone
from arch_lab.analysis.script import figure_parser, run_figure_script


def draw(sources: Sources, args: argparse.Namespace) -> Figure:
    """One panel per metric."""
    return fig_metrics_by_backbone(sources.runs, metrics=args.metrics)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; returns the exit code."""
    parser = figure_parser(__doc__.splitlines()[0])
    parser.add_argument("--metrics", nargs="+", default=list(HEADLINE_METRICS), help="one panel per metric")
    return run_figure_script("fig1_metric_by_backbone", parser, draw, argv)


if __name__ == "__main__":
    sys.exit(main())
