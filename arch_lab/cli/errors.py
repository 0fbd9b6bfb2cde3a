"""How the command line reports failure: user errors as one line on stderr and a non-zero exit, no traceback.

Operating-system errors (a read-only folder, a full disk) that reach a command get the same one line: the path,
the reason and the fix.
"""

from __future__ import annotations

import functools
import os
import shlex
import sys
from collections.abc import Callable
from typing import Any, TypeVar, cast

import typer

from arch_lab.errors import ArchLabError, RunInterrupted, os_error

F = TypeVar("F", bound=Callable[..., Any])
#: What Ctrl-C during ``arch-lab train`` prints; ``RUN_DIR`` becomes the run's path once the run exists.
TRAIN_INTERRUPTED = "interrupted; resume with: arch-lab train --resume RUN_DIR"
#: Exit code of a user error.
USER_ERROR = 2
#: Exit code after Ctrl-C.
INTERRUPTED = 130
#: Exit code when the reader of stdout went away (``arch-lab ... | head``), as for a command killed by SIGPIPE.
BROKEN_PIPE = 141


def fail(message: str, code: int = USER_ERROR) -> None:
    """Print ``error: <message>`` on stderr and exit with ``code``."""
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(code)


def silence_stdout() -> None:
    """Point stdout at the null device, so that flushing it at exit after a broken pipe raises nothing more."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
    except OSError:
        return
    try:
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # no file descriptor behind stdout (captured, replaced)
        pass
    finally:
        os.close(devnull)


def first_line(exc: BaseException) -> str:
    """The first line of an error's message (its type name when it has none)."""
    return str(exc).splitlines()[0] if str(exc) else type(exc).__name__


def interrupted_message(template: str, exc: BaseException) -> str:
    """``template`` with ``RUN_DIR`` replaced by the interrupted run's path when ``exc`` carries one
    (:class:`arch_lab.errors.RunInterrupted`); unchanged otherwise (no run directory was created yet).
    """
    run_dir = getattr(exc, "run_dir", None)
    if run_dir is None or "RUN_DIR" not in template:
        return template
    return template.replace("RUN_DIR", shlex.quote(str(run_dir)))


def friendly_with(interrupted: str, run_message: bool = False) -> Callable[[F], F]:
    """A decorator like :func:`friendly` whose Ctrl-C message is ``interrupted`` (see :func:`interrupted_message`).

    With ``run_message``, an interrupted run (:class:`~arch_lab.errors.RunInterrupted`) prints its own message
    instead, which names the run directory to resume.
    """

    def decorate(fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            try:
                return fn(*args, **kwargs)
            except ArchLabError as exc:
                fail(first_line(exc))
            except KeyboardInterrupt as exc:
                own = run_message and isinstance(exc, RunInterrupted)
                fail(first_line(exc) if own else interrupted_message(interrupted, exc), code=INTERRUPTED)
            except BrokenPipeError:
                # the reader closed the pipe (`| head`): not a failure to report, stop quietly
                silence_stdout()
                raise typer.Exit(BROKEN_PIPE) from None
            except OSError as exc:
                fail(first_line(os_error(exc, doing="read or write it")))

        return cast(F, wrapper)

    return decorate


def friendly(fn: F) -> F:
    """Turn user errors into one line on stderr and a non-zero exit (Ctrl-C says how to resume the run)."""
    return friendly_with(TRAIN_INTERRUPTED, run_message=True)(fn)
