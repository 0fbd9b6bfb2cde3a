"""Figure 5: a sweep's optimisation history and hyperparameter importances (history alone if too few trials).

Usage: python analysis/fig_sweep_diagnostics.py STUDY --out DIR [--storage URL] [--importance fanova]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from matplotlib.figure import Figure

from arch_lab.analysis import Sources, fig_sweep_diagnostics, param_importances
from arch_lab.analysis.script import figure_parser, run_figure_script
from arch_lab.errors import ArchLabError


def draw(sources: Sources, args: argparse.Namespace) -> Figure:
    """The first study among the sources."""
    if not sources.studies:
        raise ArchLabError("give an Optuna study (name, storage URL or URL#NAME)")
    study = sources.studies[0]
    try:
        importances = param_importances(study, args.importance)
    except ArchLabError as exc:
        print(f"note: importances left out: {exc}", file=sys.stderr)
        importances = None
    return fig_sweep_diagnostics(sources.trials[sources.trials["study"] == study.study_name], importances=importances)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the script; returns the exit code."""
    parser = figure_parser(__doc__.splitlines()[0])
    parser.add_argument("--importance", default="fanova", help="fanova, mean_decrease_impurity or ped_anova")
    return run_figure_script("fig5_sweep_diagnostics", parser, draw, argv)


if __name__ == "__main__":
    sys.exit(main())
