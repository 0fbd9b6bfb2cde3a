"""Shared command line of the one-figure scripts in ``analysis/``: ``SOURCES... --out DIR [--metric M]``."""

from __future__ import annotations

import argparse
import sys
import warnings
from collections.abc import Callable, Sequence
from pathlib import Path

from matplotlib.figure import Figure

from arch_lab.analysis.report import Sources, load_sources
from arch_lab.analysis.style import save_figure
from arch_lab.errors import ArchLabError


def figure_parser(description: str) -> argparse.ArgumentParser:
    """A parser with the arguments every figure script takes.

    ``sources`` (run directories, folders of runs, studies), ``--out`` (folder), ``--storage`` (URL for bare
    study names), ``--metric`` (headline metric) and ``--name`` (file stem).
    """
    p = argparse.ArgumentParser(description=description)
    p.add_argument("sources", nargs="+", help="run directories, folders of runs, or studies (name, URL, URL#NAME)")
    p.add_argument("--out", type=Path, required=True, help="folder for NAME.pdf and NAME.png")
    p.add_argument("--storage", default=None, help="storage URL for bare study names")
    p.add_argument("--metric", default="energy_distance", help="metric to plot (default: energy_distance)")
    p.add_argument("--name", default=None, help="file stem (default: the script's figure name)")
    return p


def run_figure_script(
    name: str,
    parser: argparse.ArgumentParser,
    draw: Callable[[Sources, argparse.Namespace], Figure],
    argv: Sequence[str] | None = None,
) -> int:
    """Parse ``argv``, load the sources, draw, and save ``<out>/<name>.pdf|png``; one-line errors, exit code 2.

    Returns
    -------
    int
        0 on success, 2 on a user error (printed as ``error: ...`` on stderr).
    """
    args = parser.parse_args(argv)
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            sources = load_sources(args.sources, args.storage)
        for w in caught:
            if issubclass(w.category, UserWarning):
                print(f"warning: {w.message}", file=sys.stderr)
        fig = draw(sources, args)
    except ArchLabError as exc:
        print(f"error: {str(exc).splitlines()[0]}", file=sys.stderr)
        return 2
    for path in save_figure(fig, args.out, args.name or name):
        print(path)
    return 0
