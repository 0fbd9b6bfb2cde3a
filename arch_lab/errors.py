"""User-facing errors: one line naming the problem and the fix."""

from __future__ import annotations

import errno
import os
import re
import shlex
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
    """Ctrl-C (or a SIGTERM turned into one) stopped a run; it is marked ``interrupted`` and can be resumed.

    Parameters
    ----------
    run_dir
        The interrupted run's directory (``arch-lab train --resume RUN_DIR`` continues it).
    message
        The message; by default it says how to resume the run.
    """

    def __init__(self, run_dir: str | Path, message: str = "") -> None:
        super().__init__(message or f"interrupted; resume with: arch-lab train --resume {shlex.quote(str(run_dir))}")
        self.run_dir = Path(run_dir)


class FileSystemError(ArchLabError):
    """The operating system refused a read or write (read-only folder, a file in the way, a full disk...).

    Its message is one line: the path, what was being done, the operating system's reason and the fix. Build one
    with :func:`os_error`.

    Parameters
    ----------
    message
        The line.
    number
        The ``errno`` behind it, when known.
    """

    def __init__(self, message: str, number: int | None = None) -> None:
        super().__init__(message)
        self.errno = number

    @property
    def disk_full(self) -> bool:
        """True for a full disk or an exhausted quota."""
        return self.errno in (errno.ENOSPC, errno.EDQUOT)


#: What to do about an operating-system error, by errno.
_FIXES = {
    errno.ENOSPC: "free disk space or point output_dir at another disk (--set output_dir=DIR)",
    errno.EDQUOT: "free space within your quota or point output_dir at another disk (--set output_dir=DIR)",
    errno.EROFS: "the filesystem is read-only: choose a writable output_dir (--set output_dir=DIR)",
    errno.EACCES: "choose a writable output_dir (--set output_dir=DIR) or fix the folder's permissions",
    errno.EPERM: "choose a writable output_dir (--set output_dir=DIR) or fix the folder's permissions",
    errno.ENOTDIR: "a file is in the way where a folder is needed: move it or choose another output_dir",
    errno.EEXIST: "a file is in the way where a folder is needed: move it or choose another output_dir",
    errno.ENOENT: "check the path",
    errno.EISDIR: "a folder is in the way where a file is needed: move it or choose another path",
}


def error_number(exc: BaseException) -> int | None:
    """The errno behind an exception: its ``errno``, or one named in its message (``[Errno 28]``, ``errno = 28``,
    ``No space left on device``), as libraries that wrap operating-system errors (h5py, torch) write them.
    """
    number = getattr(exc, "errno", None)
    if isinstance(number, int) and number:
        return number
    text = str(exc)
    found = re.search(r"\[Errno (\d+)\]|errno = (\d+)", text)
    if found:
        return int(found.group(1) or found.group(2))
    for code in (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES):
        if os.strerror(code) in text:
            return code
    return None


def blocking_file(path: str | os.PathLike) -> Path | None:
    """The nearest of ``path`` and its ancestors that exists and is not a folder (None when there is none)."""
    p = Path(path)
    for candidate in (p, *p.parents):
        if candidate.exists() or candidate.is_symlink():
            return None if candidate.is_dir() else candidate
    return None


def os_error(exc: BaseException, path: str | os.PathLike | None = None, doing: str = "write") -> FileSystemError:
    """One line for an operating-system error: ``<path>: cannot <doing> (<reason>); <fix>``.

    Parameters
    ----------
    exc
        The error (an :class:`OSError`, or a library error naming one in its message).
    path
        The file or folder concerned (default: the error's own ``filename``).
    doing
        What was being done, e.g. ``create the run directory``.

    Returns
    -------
    FileSystemError
        To raise (``raise os_error(exc, path) from None``).
    """
    number = error_number(exc)
    where = path if path is not None else getattr(exc, "filename", None)
    if number in (errno.ENOTDIR, errno.EEXIST, errno.ENOENT) and where is not None:
        block = blocking_file(where)
        if block is not None:
            return FileSystemError(
                f"{block}: is a file, not a folder, so {where} cannot be created; move the file or choose another "
                "output_dir (--set output_dir=DIR)",
                number,
            )
    reason = os.strerror(number) if number else (str(exc).strip().splitlines() or [type(exc).__name__])[0]
    fix = _FIXES.get(number, "check the path and the disk") if number else "check the path and the disk"
    return FileSystemError(f"{where if where is not None else '?'}: cannot {doing} ({reason}); {fix}", number)
