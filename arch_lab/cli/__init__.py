"""The ``arch-lab`` command line: a thin typer layer over typed functions in :mod:`arch_lab.api`.

:mod:`~arch_lab.cli.main` holds the top-level commands, :mod:`~arch_lab.cli.sweep` the ``arch-lab sweep`` group,
and :mod:`~arch_lab.cli.errors` turns user errors into one line on stderr. ``python -m arch_lab.cli`` runs it too
(e.g. under ``torchrun``).
"""

from __future__ import annotations

from arch_lab.cli.main import app, main

__all__ = ["app", "main"]
