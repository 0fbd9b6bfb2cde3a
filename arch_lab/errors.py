"""User-facing errors: one line naming the problem and the fix."""

from __future__ import annotations

from pathlib import Path


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


class RunInterrupted(KeyboardInterrupt):
    """Ctrl-C (or a SIGTERM turned into one) while a run was training; the run can be resumed.

    Parameters
    ----------
    run_dir
        The interrupted run's directory (``arch-lab train --resume RUN_DIR`` continues it).
    message
        The original interruption's message, if any.
    """

    def __init__(self, run_dir: str | Path, message: str = "") -> None:
        super().__init__(message)
        self.run_dir = Path(run_dir)
