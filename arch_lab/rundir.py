"""Run directories: one class owns their layout, writes every file atomically and reads them back.

A run directory holds ``config.yaml`` (resolved), ``meta.json`` (seed, git SHA, package versions, device),
``split.csv``, ``gene_order.txt`` (the genes in the order the network reads them), ``status.json``, the trainer's ``checkpoint.pt`` and ``best.pt`` and, once finished,
``history.csv``, ``predictions.h5ad``, ``metrics_per_condition.csv``, ``reference_per_condition.csv``,
``model.pt`` and ``metrics.json``; the training curve goes to ``train_log.csv`` and ``tensorboard/`` (the
loggers ``train.loggers`` names), and a run trained on an AnnData held in memory keeps its prepared cells in
``data.h5ad``. ``status.json`` says ``running`` (with the writer's pid and host), ``completed``, ``failed``,
``pruned`` or ``interrupted`` (with the reason); ``metrics.json`` is only ever written for a completed run, so a
crashed run never looks complete.

One run per directory: a directory that already holds a run is refused as the target of a new one
(:meth:`RunDir.check_unused`), and a process writing a run holds an exclusive lock on it (:meth:`RunDir.lock`,
``fcntl.flock`` on ``.lock``, removed when it is done), so a second writer is refused and a reader can tell a running
run from one whose process is gone (:meth:`RunDir.process_gone`). While the lock is held SIGTERM raises :class:`KeyboardInterrupt`,
so an interrupted run says ``interrupted`` (:meth:`RunDir.recording_failures`); inside
:func:`~arch_lab.stopping.sigterm_deferred` (the trainer's steps) a first SIGTERM is held until the step ends, so the
trainer can write a checkpoint of that step before it stops, and a preempted run loses nothing.

Every file is written to a temporary name that includes the writer's process id and then renamed over the
target, so a reader never sees half a file and two writers never share a temporary file. An operating-system
error while writing (a read-only folder, a full disk) becomes a one-line
:class:`~arch_lab.errors.FileSystemError` naming the path, the reason and the fix, and leaves no temporary file.
No other module spells a file name of the layout: they go through :class:`RunDir`.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import fcntl
import io
import json
import os
import secrets
import shutil
import socket
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

from arch_lab.errors import ArchLabError, FileSystemError, RunInterrupted, error_number, os_error
from arch_lab.stopping import sigterm_as_interrupt

if TYPE_CHECKING:
    import anndata as ad
    import pandas as pd

    from arch_lab.config import ExperimentConfig

#: Values of ``status.json``'s ``status`` (``missing`` is what :meth:`RunDir.read_status` says without one).
STATUSES = ("running", "completed", "failed", "pruned", "interrupted")
_PathLike = str | os.PathLike
#: How long :meth:`RunDir.lock` retries before refusing (a reader probing the lock holds it for microseconds).
LOCK_WAIT_S = 2.0
#: Below this many free bytes, a write that failed without naming an OS error is taken for a full disk.
_NEARLY_FULL = 1 << 20


def utc_now() -> str:
    """The current UTC time as ISO 8601 to the second (the time stamps of status and meta)."""
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


@contextlib.contextmanager
def atomic_path(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` to write to; renamed over ``path`` when the block succeeds.

    The temporary name holds the process id (``.<stem>.<pid>.tmp<suffix>``, the suffix kept for writers that
    look at it), so concurrent writers never share one. On an error it is removed and ``path`` is untouched.
    """
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.{os.getpid()}.tmp{path.suffix}")
    try:
        yield tmp
        os.replace(tmp, path)
    except FileSystemError:
        raise
    except Exception as exc:
        if isinstance(exc, OSError) or error_number(exc) is not None:
            raise os_error(exc, path) from exc
        if _nearly_full(path.parent):  # libraries (h5py, torch) that swallow the errno of a full disk
            raise os_error(OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)), path) from exc
        raise
    finally:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)


def _nearly_full(folder: Path) -> bool:
    try:
        return shutil.disk_usage(folder).free < _NEARLY_FULL
    except OSError:
        return False


def pid_alive(pid: int) -> bool:
    """True when a process with this id exists on this machine."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def write_json(path: Path, obj: Any) -> None:
    """Write ``obj`` as indented, key-sorted JSON, atomically."""
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")


def _read_json(path: Path) -> dict[str, Any]:
    return json.loads(path.read_text())


class RunDir:
    """One run directory: its file paths as attributes, atomic writers, readers and the run's status.

    Parameters
    ----------
    path
        The directory (need not exist yet; :meth:`create` and :meth:`new` make it).

    Examples
    --------
    >>> run = RunDir("runs/demo/20240101-120000-s0-ab12")  # doctest: +SKIP
    >>> run.read_status()["status"], run.read_metrics()["metrics"]["energy_distance"]  # doctest: +SKIP
    """

    CONFIG = "config.yaml"
    LOCK = ".lock"
    META = "meta.json"
    SPLIT = "split.csv"
    GENE_ORDER = "gene_order.txt"
    STATUS = "status.json"
    CHECKPOINT = "checkpoint.pt"
    BEST = "best.pt"
    HISTORY = "history.csv"
    PREDICTIONS = "predictions.h5ad"
    METRICS = "metrics.json"
    PER_CONDITION = "metrics_per_condition.csv"
    REFERENCE_PER_CONDITION = "reference_per_condition.csv"
    MODEL = "model.pt"
    TRAIN_LOG = "train_log.csv"
    TENSORBOARD = "tensorboard"
    SNAPSHOT = "data.h5ad"

    def __init__(self, path: _PathLike | RunDir) -> None:
        self.path: Path = path.path if isinstance(path, RunDir) else Path(path)

    def __repr__(self) -> str:
        return f"RunDir({str(self.path)!r})"

    def __fspath__(self) -> str:
        return os.fspath(self.path)

    # ------------------------------------------------------------------------------------ creating
    @classmethod
    def create(cls, path: _PathLike) -> RunDir:
        """The run directory at ``path``, created (with its parents) when missing.

        Raises
        ------
        FileSystemError
            The folder cannot be created (one line: path, reason, fix).
        """
        run = cls(path)
        _mkdir(run.path, exist_ok=True)
        return run

    @classmethod
    def new(cls, cfg: ExperimentConfig) -> RunDir:
        """A fresh, unique run directory ``<output_dir>/<name>/<time>-s<seed>-<random>``.

        Raises
        ------
        FileSystemError
            The folder cannot be created (a read-only or full disk, a file in the way).
        """
        stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
        path = Path(cfg.output_dir) / cfg.name / f"{stamp}-s{cfg.seed}-{secrets.token_hex(2)}"
        _mkdir(path, exist_ok=False)
        return cls(path)

    @classmethod
    def find(cls, folder: _PathLike) -> list[RunDir]:
        """Every run directory under ``folder`` (searched recursively), sorted by path."""
        return [cls(d) for d in sorted(s.parent for s in Path(folder).rglob(cls.STATUS)) if is_run_dir(d)]

    # --------------------------------------------------------------------------------------- paths
    @property
    def config(self) -> Path:
        """The resolved experiment config (YAML)."""
        return self.path / self.CONFIG

    @property
    def meta(self) -> Path:
        """Provenance: seed, git SHA, package versions, device, command, parameter count."""
        return self.path / self.META

    @property
    def split(self) -> Path:
        """Which cells are train, val and test (CSV)."""
        return self.path / self.SPLIT

    @property
    def gene_order(self) -> Path:
        """The gene names in the order the network reads them, one per line."""
        return self.path / self.GENE_ORDER

    @property
    def status(self) -> Path:
        """The run's status record (JSON)."""
        return self.path / self.STATUS

    @property
    def checkpoint(self) -> Path:
        """The trainer's latest full checkpoint (for resuming)."""
        return self.path / self.CHECKPOINT

    @property
    def best(self) -> Path:
        """The EMA weights of the best validation step."""
        return self.path / self.BEST

    @property
    def history(self) -> Path:
        """The training curve: one row per validation (CSV)."""
        return self.path / self.HISTORY

    @property
    def predictions(self) -> Path:
        """The generated cells of the evaluated split (``.h5ad``)."""
        return self.path / self.PREDICTIONS

    @property
    def metrics(self) -> Path:
        """The completed run's summary (JSON); written last."""
        return self.path / self.METRICS

    @property
    def per_condition(self) -> Path:
        """Metrics per evaluated condition (CSV)."""
        return self.path / self.PER_CONDITION

    @property
    def reference_per_condition(self) -> Path:
        """The floor and ceiling reference points per condition (CSV)."""
        return self.path / self.REFERENCE_PER_CONDITION

    @property
    def model(self) -> Path:
        """The trained method's state (``{"method": name, "state": state_dict}``)."""
        return self.path / self.MODEL

    @property
    def lock_file(self) -> Path:
        """The file a writing process holds an exclusive ``flock`` on (see :meth:`lock`)."""
        return self.path / self.LOCK

    # ---------------------------------------------------------------------------- one run, one writer
    def holds_run(self) -> bool:
        """True when the directory already holds (part of) a run: a config, status, meta, split or checkpoint."""
        names = (self.CONFIG, self.STATUS, self.META, self.SPLIT, self.CHECKPOINT, self.METRICS, self.MODEL)
        return any((self.path / name).exists() for name in names)

    def check_unused(self) -> None:
        """Refuse a directory that cannot take a new run: a file, or a folder that already holds a run.

        Raises
        ------
        ArchLabError
            Names what is there and the fix (resume it, or pass another directory).
        """
        if self.path.exists() and not self.path.is_dir():
            raise FileSystemError(f"{self.path}: is a file, not a folder; pass a new directory as --run-dir")
        block = next((p for p in self.path.parents if p.exists() and not p.is_dir()), None)
        if block is not None:
            raise FileSystemError(f"{block}: is a file, not a folder, so {self.path} cannot be created; move it")
        if not self.holds_run():
            return
        status = self.read_status().get("status")
        if status == "running" and self.is_locked():
            raise ArchLabError(
                f"{self.path}: already holds a run that another process ({_read_holder(self.lock_file)}) is writing; "
                "pass a new --run-dir"
            )
        if status == "completed":
            fix = "pass a new --run-dir (a directory holds one run)"
        else:
            fix = f"continue it with arch-lab train --resume {self.path}, or pass a new --run-dir"
        raise ArchLabError(f"{self.path}: already holds a run (status {status}); {fix}")

    @contextlib.contextmanager
    def lock(self) -> Iterator[RunDir]:
        """Hold an exclusive lock on the run while this process writes it.

        An exclusive ``fcntl.flock`` on ``.lock`` in the directory, released when the block ends or the process
        dies, however it dies; the file names the holder (pid and host) and is removed when the block ends, so only
        a run whose process was killed keeps one (unlocked). While it is held SIGTERM raises
        :class:`KeyboardInterrupt` (main thread only), so the run can be marked ``interrupted``.

        Raises
        ------
        ArchLabError
            Another process holds the lock (names it).
        FileSystemError
            The lock file cannot be created.
        """
        deadline = time.monotonic() + LOCK_WAIT_S
        while True:
            try:
                fh = open(self.lock_file, "a+")  # held open for the whole block
            except OSError as exc:
                raise os_error(exc, self.lock_file, "lock the run directory") from None
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.close()
                if time.monotonic() > deadline:
                    raise ArchLabError(
                        f"{self.path}: another process ({_read_holder(self.lock_file)}) is writing this run; wait for "
                        "it to finish or stop it, or pass another directory"
                    ) from None
                time.sleep(0.05)
                continue
            try:  # the previous holder may have removed the file between our open and our lock: lock the new one
                current = os.stat(self.lock_file).st_ino == os.fstat(fh.fileno()).st_ino
            except FileNotFoundError:
                current = False
            if current:
                break
            fh.close()
        try:
            with contextlib.suppress(OSError):  # who holds it, for the message above (a full disk may refuse)
                fh.seek(0)
                fh.truncate()
                fh.write(f"pid {os.getpid()} on {socket.gethostname()}\n")
                fh.flush()
            with sigterm_as_interrupt():
                yield self
        finally:
            with contextlib.suppress(OSError):
                self.lock_file.unlink()  # while still holding it
            fh.close()  # releases the lock

    def is_locked(self) -> bool | None:
        """True while a process holds :meth:`lock`, False for the lock file of a process that was killed, None when
        there is no lock file (a run that ended, or was written before locks).
        """
        try:
            fd = os.open(self.lock_file, os.O_RDONLY)
        except FileNotFoundError:
            return None
        except OSError:
            return None
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(fd)  # closing releases a shared lock taken above
        return False

    def process_gone(self) -> bool | None:
        """For a ``running`` run: True when no process is writing it any more (killed, crashed machine), False
        when one is, None when that cannot be told (a run on another host written before locks). None for a run
        that is not ``running``.
        """
        status = self.read_status()
        if status.get("status") != "running":
            return None
        locked = self.is_locked()
        if locked is not None:
            return not locked
        pid, host = status.get("pid"), status.get("host")  # no lock file: its writer ended (or predates locks)
        if isinstance(pid, int) and host == socket.gethostname():
            return not pid_alive(pid)
        return None

    def describe_status(self) -> str:
        """The status in one line for listings: ``completed``, ``failed: <reason>``, ``running (pid 12 on h)``, or
        ``running, but its process is gone ...; resume with ...`` for a run whose writer died.
        """
        status = self.read_status()
        state = status.get("status", "missing")
        where = f"pid {status['pid']} on {status['host']}" if "pid" in status and "host" in status else None
        if state == "running":
            gone = self.process_gone()
            if gone:
                return (
                    f"running, but its process{f' ({where})' if where else ''} is gone; resume with: "
                    f"arch-lab train --resume {self.path}"
                )
            return f"running ({where})" if where else "running"
        return f"{state}: {status['reason']}" if status.get("reason") else state

    @property
    def train_log(self) -> Path:
        """The training curve step by step: ``step,name,value`` rows (CSV, the ``csv`` logger)."""
        return self.path / self.TRAIN_LOG

    @property
    def tensorboard(self) -> Path:
        """The TensorBoard event files (a folder, the ``tensorboard`` logger)."""
        return self.path / self.TENSORBOARD

    @property
    def snapshot(self) -> Path:
        """The prepared cells of a run trained on an AnnData held in memory (``.h5ad``; see
        :mod:`arch_lab.data.snapshot`).
        """
        return self.path / self.SNAPSHOT

    # -------------------------------------------------------------------------------------- status
    def set_status(self, status: str, **extra: Any) -> None:
        """Record the run's status (one of :data:`STATUSES`) with a time stamp and any extra fields.

        ``running`` also records this process's ``pid`` and ``host`` (unless given), so listings can tell a run
        whose process is gone.

        Raises
        ------
        ValueError
            An unknown status.
        """
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}; one of {STATUSES}")
        if status == "running":
            extra = {"pid": os.getpid(), "host": socket.gethostname(), **extra}
        write_json(self.status, {"status": status, "updated": utc_now(), **extra})

    def mark_failed(self, exc: BaseException) -> None:
        """Record why the run stopped, with the reason: ``pruned`` for a pruned sweep trial, ``interrupted`` for
        Ctrl-C or SIGTERM (:class:`KeyboardInterrupt`), else ``failed``.

        When even the status cannot be written (a full or read-only disk) the status is left as it was: the error
        that stopped the run is what gets reported.
        """
        if isinstance(exc, KeyboardInterrupt):
            how = str(exc) if str(exc).startswith("SIG") else "Ctrl-C"
            kind, reason = "interrupted", f"interrupted ({how}); resume with: arch-lab train --resume {self.path}"
        else:
            kind = "pruned" if type(exc).__name__ == "TrialPruned" else "failed"
            reason = str(exc) if isinstance(exc, ArchLabError) else f"{type(exc).__name__}: {exc}"
        with contextlib.suppress(OSError, ArchLabError):
            self.set_status(kind, reason=reason.splitlines()[0] if reason else type(exc).__name__)

    @contextlib.contextmanager
    def recording_failures(self) -> Iterator[RunDir]:
        """Mark the run ``failed``, ``pruned`` or ``interrupted`` (:meth:`mark_failed`) when the block raises.

        An interruption is re-raised as :class:`~arch_lab.errors.RunInterrupted` (still a
        :class:`KeyboardInterrupt`), whose message says how to resume this run.
        """
        try:
            yield self
        except KeyboardInterrupt as exc:
            self.mark_failed(exc)
            if isinstance(exc, RunInterrupted):
                raise
            raise RunInterrupted(self.path) from exc
        except FileSystemError as exc:
            self.mark_failed(exc)
            if exc.disk_full and "--resume" not in str(exc):  # the checkpoints so far are whole: say how to go on
                raise FileSystemError(
                    f"{exc}; then resume with: arch-lab train --resume {self.path}", exc.errno
                ) from exc
            raise
        except BaseException as exc:
            self.mark_failed(exc)
            raise

    def set_progress(
        self,
        step: int,
        max_steps: int,
        seconds_per_step: float,
        max_seconds: float | None = None,
        train_seconds: float | None = None,
    ) -> None:
        """Record a running run's progress in its status: ``progress`` with ``step``, ``max_steps``,
        ``seconds_per_step`` and ``eta_seconds`` (the steps left at that pace, capped by the time left of a
        ``train.max_seconds`` budget, which is then recorded as ``max_seconds``), keeping the other fields.
        """
        record = self.read_status()
        record.pop("status", None)
        record.pop("updated", None)
        eta = max(max_steps - step, 0) * seconds_per_step
        progress = {"step": step, "max_steps": max_steps, "seconds_per_step": seconds_per_step}
        if max_seconds is not None:
            eta = min(eta, max(max_seconds - (train_seconds or 0.0), 0.0))
            progress["max_seconds"] = max_seconds
        progress["eta_seconds"] = eta
        self.set_status("running", **{**record, "progress": progress})

    def read_progress(self) -> dict[str, Any] | None:
        """The ``progress`` a running run last recorded (see :meth:`set_progress`); None when it has none."""
        try:
            record = self.read_status()
        except (OSError, ValueError):
            return None
        progress = record.get("progress")
        return progress if record.get("status") == "running" and isinstance(progress, dict) else None

    def read_status(self) -> dict[str, Any]:
        """The run's status record (``{"status": "missing"}`` when there is none)."""
        return _read_json(self.status) if self.status.is_file() else {"status": "missing"}

    def is_completed(self) -> bool:
        """True when the run finished: status ``completed`` and ``metrics.json`` written."""
        return self.read_status().get("status") == "completed" and self.metrics.is_file()

    # -------------------------------------------------------------------------------------- writing
    def write_config(self, cfg: ExperimentConfig) -> None:
        """Write the resolved config."""
        with atomic_path(self.config) as tmp:
            tmp.write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))

    def write_meta(self, meta: dict[str, Any]) -> None:
        """Write ``meta.json`` (replacing it)."""
        write_json(self.meta, meta)

    def update_meta(self, **values: Any) -> None:
        """Add keys to ``meta.json``."""
        meta = self.read_meta()
        meta.update(values)
        write_json(self.meta, meta)

    def write_gene_order(self, genes: Sequence[str]) -> None:
        """Write the gene names in the order the network reads them (one per line)."""
        with atomic_path(self.gene_order) as tmp:
            tmp.write_text("".join(f"{name}\n" for name in genes))

    def read_gene_order(self) -> list[str] | None:
        """The recorded gene order (None for runs written before it was recorded)."""
        if not self.gene_order.is_file():
            return None
        return self.gene_order.read_text().splitlines()

    def write_split(self, split: pd.Series) -> None:
        """Write the split of cells (``cell_id`` to ``train``/``val``/``test``)."""
        from arch_lab.data.splits import save_split

        with atomic_path(self.split) as tmp:
            save_split(split, tmp)

    def write_history(self, records: list[dict[str, Any]]) -> None:
        """Write the training curve (one record per validation)."""
        import pandas as pd

        self._write_csv(self.history, pd.DataFrame(records))

    def write_predictions(self, adata: ad.AnnData) -> None:
        """Write the generated cells."""
        from arch_lab.data.h5ad import write_h5ad

        with atomic_path(self.predictions) as tmp:
            write_h5ad(adata, tmp)

    def write_per_condition(self, df: pd.DataFrame) -> None:
        """Write the metrics per condition."""
        self._write_csv(self.per_condition, df)

    def write_reference_per_condition(self, df: pd.DataFrame) -> None:
        """Write the reference points (floor, ceiling) per condition."""
        self._write_csv(self.reference_per_condition, df)

    def write_snapshot(self, adata: ad.AnnData) -> None:
        """Write the prepared cells of a run trained on an AnnData held in memory."""
        from arch_lab.data.h5ad import write_h5ad

        with atomic_path(self.snapshot) as tmp:
            write_h5ad(adata, tmp)

    def write_metrics(self, metrics: dict[str, Any]) -> None:
        """Write the completed run's summary (call last: its presence means the results are whole)."""
        write_json(self.metrics, metrics)

    def save_model(self, method: str, state: dict[str, Any]) -> None:
        """Save the trained method's state."""
        self.save_torch(self.model, {"method": method, "state": state})

    def save_checkpoint(self, payload: dict[str, Any]) -> None:
        """Save the trainer's full state."""
        self.save_torch(self.checkpoint, payload)

    def save_best(self, payload: dict[str, Any]) -> None:
        """Save the best validation step's weights."""
        self.save_torch(self.best, payload)

    @staticmethod
    def save_torch(path: Path, payload: Any) -> None:
        """``torch.save`` to ``path``, atomically (serialised in memory first, so a full disk raises a plain
        operating-system error, reported in one line).
        """
        import torch

        buffer = io.BytesIO()
        torch.save(payload, buffer)
        with atomic_path(path) as tmp:
            tmp.write_bytes(buffer.getbuffer())

    @staticmethod
    def _write_csv(path: Path, df: pd.DataFrame) -> None:
        with atomic_path(path) as tmp:
            df.to_csv(tmp, index=False)

    # -------------------------------------------------------------------------------------- reading
    def read_config(self) -> ExperimentConfig:
        """The resolved config, validated.

        Raises
        ------
        ArchLabError
            Not a run directory (no config).
        """
        from arch_lab.config import experiment_from_dict, load_yaml

        if not self.config.is_file():
            raise ArchLabError(
                f"{self.path}: not a run directory (no {self.CONFIG}); pass the folder arch-lab train created"
            )
        return experiment_from_dict(load_yaml(self.config))

    def read_config_dict(self) -> dict[str, Any]:
        """The resolved config as plain data (not validated; ``{}`` for an empty file)."""
        return yaml.safe_load(self.config.read_text()) or {}

    def read_meta(self) -> dict[str, Any]:
        """``meta.json`` (``{}`` when there is none)."""
        return _read_json(self.meta) if self.meta.is_file() else {}

    def read_metrics(self) -> dict[str, Any]:
        """A completed run's summary.

        Raises
        ------
        ArchLabError
            No summary (the run did not complete).
        """
        if not self.metrics.is_file():
            raise ArchLabError(f"{self.path}: no {self.METRICS}; the run did not complete")
        return _read_json(self.metrics)

    def read_history(self) -> pd.DataFrame | None:
        """The training curve (None for runs without one, e.g. closed-form baselines)."""
        return self._read_csv(self.history)

    def read_train_log(self) -> pd.DataFrame | None:
        """The step-by-step training curve: a ``step`` column, one column per value (``train/loss``, ``val/...``), one
        row per logged step (None when missing).
        """
        log = self._read_csv(self.train_log)
        if log is None:
            return None
        wide = log.pivot_table(index="step", columns="name", values="value", aggfunc="last", dropna=False)
        return wide.rename_axis(columns=None).reset_index()

    def read_snapshot(self) -> ad.AnnData | None:
        """The prepared cells a run trained on an in-memory AnnData keeps (None for a run that reads a file)."""
        import anndata as ad

        return ad.read_h5ad(self.snapshot) if self.snapshot.is_file() else None

    def read_per_condition(self) -> pd.DataFrame | None:
        """The metrics per condition (None when missing); ``state`` and ``perturbation`` read as text."""
        return self._read_csv(self.per_condition, {"state": str, "perturbation": str})

    def read_reference_per_condition(self) -> pd.DataFrame | None:
        """The reference points per condition (None when missing); ``state`` and ``perturbation`` as text."""
        return self._read_csv(self.reference_per_condition, {"state": str, "perturbation": str})

    def read_predictions(self) -> ad.AnnData:
        """The generated cells.

        Raises
        ------
        ArchLabError
            No predictions.
        """
        import anndata as ad

        if not self.predictions.is_file():
            raise ArchLabError(f"{self.path}: no {self.PREDICTIONS}")
        return ad.read_h5ad(self.predictions)

    def load_model(self) -> dict[str, Any]:
        """The saved method state (``{"method": name, "state": state_dict}``), on the CPU.

        Raises
        ------
        ArchLabError
            The run is not completed or has no saved model.
        """
        if self.read_status()["status"] != "completed" or not self.model.is_file():
            raise ArchLabError(
                f"{self.path}: run is not completed; finish it (arch-lab train --resume) before predicting"
            )
        return self.load_torch(self.model, "cpu")

    @staticmethod
    def load_torch(path: Path, map_location: Any = "cpu") -> Any:
        """``torch.load`` of a file this run wrote (full pickles: only load run directories you trust)."""
        import torch

        return torch.load(path, map_location=map_location, weights_only=False)

    @staticmethod
    def _read_csv(path: Path, dtype: dict[str, Any] | None = None) -> pd.DataFrame | None:
        import pandas as pd

        return pd.read_csv(path, dtype=dtype) if path.is_file() else None


def _mkdir(path: Path, exist_ok: bool) -> None:
    try:
        path.mkdir(parents=True, exist_ok=exist_ok)
    except OSError as exc:
        raise os_error(exc, path, "create the run directory") from None


def _read_holder(lock_file: Path) -> str:
    try:
        return lock_file.read_text().strip() or "unknown"
    except OSError:
        return "unknown"


def is_run_dir(path: _PathLike | RunDir) -> bool:
    """True when ``path`` looks like an arch_lab run directory (it has a config and a status)."""
    run = RunDir(path)
    return run.config.is_file() and run.status.is_file()
