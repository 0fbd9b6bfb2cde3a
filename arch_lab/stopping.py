"""Stopping on SIGTERM: turned into :class:`KeyboardInterrupt`, or held until a unit of work ends.

A scheduler's preemption (Slurm, Kubernetes) or ``kill`` sends SIGTERM. Under :func:`sigterm_as_interrupt` it raises
:class:`KeyboardInterrupt` like Ctrl-C, so whatever is running records an interruption (a run directory says
``interrupted``, a sweep requeues its trial). Inside :func:`sigterm_deferred` a first SIGTERM is held in a
:class:`StopRequest` instead, so that the block (the trainer's loop) can finish its step, write a checkpoint of it
and stop there; under DDP every rank agrees on it (:func:`arch_lab.training.distributed.agreed_signal`). Once a
process is stopping on a held signal, further SIGTERMs are ignored until it has recorded the stop.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator


class StopRequest:
    """A SIGTERM held back by :func:`sigterm_deferred`: ``pending`` names the signal, None while there is none.

    ``stopping`` is set once a held signal is taken: the process is then on its way out (writing its checkpoint's
    status, requeueing its trial), and further SIGTERMs are ignored until the outermost
    :func:`sigterm_as_interrupt` block ends (or a new :func:`sigterm_deferred` block starts), so that they cannot
    cut that record short. Under torchrun this is what lets rank 0 finish: once another rank has stopped and
    exited, torchrun sends SIGTERM to the ranks left.
    """

    def __init__(self) -> None:
        self.deferring = False
        self.stopping = False
        self.pending: str | None = None
        self.depth = 0  # nested sigterm_as_interrupt blocks

    def take(self) -> str | None:
        """The pending signal's name (None when there is none).

        It is no longer pending afterwards, and when there was one the process counts as stopping.
        """
        name, self.pending = self.pending, None
        if name is not None:
            self.stopping = True
        return name

    def interrupt(self, name: str) -> KeyboardInterrupt:
        """Stop on ``name``: this process's held signal or, under DDP, another rank's.

        Drops the held signal, counts the process as stopping, and returns the :class:`KeyboardInterrupt` to raise.
        """
        self.take()
        self.stopping = True
        return KeyboardInterrupt(name)


_STOP = StopRequest()


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Turn SIGTERM (``kill``, Slurm preemption) into :class:`KeyboardInterrupt` while the block runs.

    Inside :func:`sigterm_deferred` the first SIGTERM is held until that block ends (a second one raises at once).
    Once a held signal has been taken to stop (:attr:`StopRequest.stopping`), further SIGTERMs are ignored until the
    outermost block ends. Only in the main thread (elsewhere signals cannot be handled); the previous handler is
    restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: object) -> None:
        name = signal.Signals(signum).name
        if _STOP.stopping:  # already stopping on a held signal: let it finish writing what it must
            return
        if _STOP.deferring and _STOP.pending is None:
            _STOP.pending = name
            return
        raise KeyboardInterrupt(name)

    previous = signal.signal(signal.SIGTERM, handler)
    _STOP.depth += 1
    try:
        yield
    finally:
        _STOP.depth -= 1
        if _STOP.depth == 0:
            _STOP.stopping = False
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def sigterm_deferred() -> Iterator[StopRequest]:
    """Hold a first SIGTERM until the block ends, so that a unit of work (a training step) ends whole.

    Under :func:`sigterm_as_interrupt` a SIGTERM that arrives inside the block is recorded in the yielded
    :class:`StopRequest` (``pending``) instead of raised. The block checks it at its own boundaries (the trainer:
    after each step), saves what it must, and stops by raising :meth:`StopRequest.interrupt`. A signal still held
    when the block ends is raised then, as an immediate interruption would have been, also when the block ends with
    another error. A second SIGTERM raises at once, and so does Ctrl-C. Outside :func:`sigterm_as_interrupt` SIGTERM
    keeps its handler. Only the outermost of nested blocks raises.
    """
    outermost = not _STOP.deferring
    if outermost:  # new work starts: a process that was stopping has gone on after all (a test, a caught stop)
        _STOP.stopping = False
    _STOP.deferring = True
    try:
        yield _STOP
    except BaseException as exc:
        _STOP.deferring = not outermost
        name = _STOP.take() if outermost else None
        if name is not None and not isinstance(exc, KeyboardInterrupt):
            raise KeyboardInterrupt(name) from exc
        raise
    _STOP.deferring = not outermost
    name = _STOP.take() if outermost else None
    if name is not None:
        raise KeyboardInterrupt(name)
