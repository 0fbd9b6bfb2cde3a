"""User-facing errors: one line naming the problem and the fix."""

from __future__ import annotations


class ArchLabError(Exception):
    """An error caused by user input (a config, a file, a name).

    The CLI prints ``str(error)`` as a single line and exits non-zero; no traceback is shown.
    """


class ConfigError(ArchLabError):
    """A malformed or invalid configuration (names the offending key path)."""


class DataError(ArchLabError):
    """Input data that cannot be used as given (missing column, absent control, non-finite values...)."""


class TrainingDiverged(ArchLabError):
    """Training produced a NaN or infinite loss; the run is marked failed."""
