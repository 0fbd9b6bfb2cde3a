"""Figure 3: a metric against trainable parameters and training time per backbone, the Pareto front marked.

Usage: python analysis/fig_quality_vs_cost.py RUNS_OR_STUDIES... --out DIR [--metric M]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from matplotlib.figure import Figure

from arch_lab.analysis import Sources, fig_quality_cost_panels
from arch_lab.analysis.script import figure_parser, run_figure_script


def draw(sources: Sources, args: argparse.Namespace) -> Figure:
    """One panel per cost with values."""
    return fig_quality_cost_panels(sources.runs, metric=args.metric)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; returns the exit code."""
    return run_figure_script("fig3_quality_vs_cost", figure_parser(__doc__.splitlines()[0]), draw, argv)


if __name__ == "__main__":
    sys.exit(main())
