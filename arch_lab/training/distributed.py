"""Multi-process training under ``torchrun``: process group, rank roles, row shards and small collectives.

``torchrun`` (``python -m torch.distributed.run``) starts one process per device and sets ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK``, ``MASTER_ADDR`` and ``MASTER_PORT``. :func:`session` turns that environment into an
initialised process group (``gloo`` on CPU, ``nccl`` on CUDA with one GPU per ``LOCAL_RANK``) and destroys it
at the end; outside ``torchrun`` (or with ``WORLD_SIZE=1``) it does nothing and everything below degrades to
single-process no-ops. Rank 0 alone writes files; every rank trains on a contiguous slice of the global batch.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import torch
import torch.distributed as dist

from arch_lab.errors import ConfigError

if TYPE_CHECKING:
    from arch_lab.stopping import StopRequest


@dataclass(frozen=True)
class DistInfo:
    """Where this process stands in a (possibly single-process) job.

    Parameters
    ----------
    world_size
        Number of processes.
    rank
        Global rank of this process (0 writes files).
    local_rank
        Rank on this machine (picks the GPU).
    backend
        ``gloo``, ``nccl`` or ``None`` when no process group is used.
    """

    world_size: int = 1
    rank: int = 0
    local_rank: int = 0
    backend: str | None = None

    @property
    def distributed(self) -> bool:
        """True when more than one process trains together."""
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        """True on rank 0, the process that writes the run directory."""
        return self.rank == 0

    def device(self) -> torch.device:
        """The device this process trains on: ``cuda:LOCAL_RANK`` when CUDA is available, else the CPU."""
        if torch.cuda.is_available():
            return torch.device("cuda", self.local_rank if self.distributed else torch.cuda.current_device())
        return torch.device("cpu")


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ConfigError(f"environment variable {name}={value!r} is not an integer; launch with torchrun") from None


def from_env() -> DistInfo:
    """The job layout ``torchrun`` announces in the environment (single process when it announces none)."""
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1:
        return DistInfo()
    return DistInfo(world, _env_int("RANK", 0), _env_int("LOCAL_RANK", 0), None)


def current() -> DistInfo:
    """The layout of the initialised process group (single process when there is none)."""
    if not (dist.is_available() and dist.is_initialized()) or dist.get_world_size() <= 1:
        return DistInfo()
    local = _env_int("LOCAL_RANK", dist.get_rank())
    return DistInfo(dist.get_world_size(), dist.get_rank(), local, str(dist.get_backend()))


@contextmanager
def session() -> Iterator[DistInfo]:
    """Initialise the process group ``torchrun`` asked for, and destroy it on exit.

    Yields the :class:`DistInfo` of this process. Nested use (a group already initialised, e.g. by a caller)
    reuses that group and leaves it alone.
    """
    if dist.is_available() and dist.is_initialized():
        yield current()
        return
    info = from_env()
    if not info.distributed:
        yield info
        return
    if not dist.is_available():
        raise ConfigError("WORLD_SIZE > 1 but this torch build has no torch.distributed; run one process")
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(info.local_rank)
    dist.init_process_group(backend=backend)
    try:
        yield current()
    finally:
        dist.destroy_process_group()


def broadcast_object(obj: Any, info: DistInfo | None = None) -> Any:
    """Rank 0's ``obj`` on every rank (picklable objects; tensors inside should live on the CPU)."""
    info = info or current()
    if not info.distributed:
        return obj
    box = [obj if info.is_main else None]
    dist.broadcast_object_list(box, src=0)
    return box[0]


def barrier(info: DistInfo | None = None) -> None:
    """Wait until every rank gets here."""
    info = info or current()
    if info.distributed:
        dist.barrier()


def agreed_signal(stop: StopRequest, info: DistInfo, device: torch.device | str = "cpu") -> str | None:
    """The held signal to stop on now: this process's or, under DDP, any rank's; None to go on.

    Every rank calls this at the same point (the trainer: after each step) and all of them get the same answer from
    an all-reduce of one flag. The answer is that flag alone: a signal that reaches this process during the
    all-reduce, after its flag was sent, stays held for the next call (stopping on it now would leave the other
    ranks waiting for this one). Another rank's signal is not recorded as this process's own.

    Parameters
    ----------
    stop
        This process's held signal (:func:`arch_lab.stopping.sigterm_deferred`).
    info
        The process group's layout.
    device
        Where the flag lives (the backend's device: CUDA under NCCL).

    Returns
    -------
    str or None
        The signal's name (``SIGTERM`` when another rank holds it), or None.
    """
    held = stop.pending
    if not info.distributed:
        return held
    flag = torch.tensor([0.0 if held is None else 1.0], device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MAX)
    if flag.item() == 0:
        return None
    return held or stop.pending or "SIGTERM"


def shard_rows(n_rows: int, info: DistInfo) -> slice:
    """The contiguous slice, for this rank, of a global batch of ``n_rows`` rows.

    Slices differ in length by at most one row (the first ``n_rows % world_size`` ranks get the extra row).

    Raises
    ------
    ConfigError
        When the global batch has fewer rows than there are processes.
    """
    if n_rows < info.world_size:
        raise ConfigError(
            f"optim.batch_size: the global batch has {n_rows} rows, fewer than the {info.world_size} processes; "
            f"use at least {info.world_size}"
        )
    base, extra = divmod(n_rows, info.world_size)
    start = info.rank * base + min(info.rank, extra)
    return slice(start, start + base + (1 if info.rank < extra else 0))
