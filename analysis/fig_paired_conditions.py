"""Figure 2: backbone A against backbone B on every held-out condition (mean over seeds), with the diagonal.

Usage: python analysis/fig_paired_conditions.py RUNS_OR_STUDIES... --out DIR [--a unet1d --b mlp] [--metric M]
Without --a/--b: the best backbone on the metric against the second best.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from matplotlib.figure import Figure

from arch_lab.analysis import Sources, fig_paired_conditions, load_per_condition, summarize
from arch_lab.analysis.script import figure_parser, run_figure_script
from arch_lab.errors import ArchLabError
from arch_lab.metrics.info import METRICS


def draw(sources: Sources, args: argparse.Namespace) -> Figure:
    """The chosen pair, or the two best backbones."""
    a, b = args.a, args.b
    if a is None or b is None:
        s = summarize(sources.runs, [args.metric])
        ranked = s.sort_values("mean", ascending=METRICS[args.metric].direction == "minimize")["backbone"].tolist()
        if len(ranked) < 2:
            raise ArchLabError("a paired comparison needs at least two backbones")
        a, b = a or ranked[0], b or next(x for x in ranked if x != (a or ranked[0]))
    return fig_paired_conditions(load_per_condition(sources.runs), a=a, b=b, metric=args.metric)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; returns the exit code."""
    parser = figure_parser(__doc__.splitlines()[0])
    parser.add_argument("--a", default=None, help="backbone on the x axis")
    parser.add_argument("--b", default=None, help="backbone on the y axis")
    return run_figure_script("fig2_paired_conditions", parser, draw, argv)


if __name__ == "__main__":
    sys.exit(main())
