"""Figure 4: validation metric against training step per backbone, mean and ± 1 s.d. band over seeds.

Usage: python analysis/fig_learning_curves.py RUNS_OR_STUDIES... --out DIR [--metric M]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from matplotlib.figure import Figure

from arch_lab.analysis import Sources, fig_learning_curves, load_history
from arch_lab.analysis.script import figure_parser, run_figure_script


def draw(sources: Sources, args: argparse.Namespace) -> Figure:
    """Curves from every flow run's history.csv."""
    return fig_learning_curves(load_history(sources.runs), metric=args.metric)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; returns the exit code."""
    return run_figure_script("fig4_learning_curves", figure_parser(__doc__.splitlines()[0]), draw, argv)


if __name__ == "__main__":
    sys.exit(main())
