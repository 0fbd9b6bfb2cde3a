"""Where a study lives: an Optuna RDB URL (SQLite, PostgreSQL, MySQL) or a journal file (``journal:PATH``).

RDB storages get heartbeats: a trial whose worker stops beating for ``grace_period`` seconds is marked failed
and requeued. SQLite is made safe for several processes on one machine: WAL mode, a long busy timeout, and a
file lock around the few read-then-write steps (claiming a queued trial, failing stale ones) that SQLite does
not make atomic across processes.
"""

from __future__ import annotations

import contextlib
import fcntl
import random
import sqlite3
import time
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from arch_lab.errors import ConfigError

if TYPE_CHECKING:
    from optuna.storages import BaseStorage

JOURNAL_PREFIX = "journal:"
SQLITE_TIMEOUT_S = 120
OPEN_ATTEMPTS = 5


@dataclass(frozen=True)
class StorageSpec:
    """A parsed storage location.

    Parameters
    ----------
    url
        The URL workers are given (relative file paths made absolute).
    kind
        ``sqlite``, ``rdb`` (a database server) or ``journal``.
    path
        The file of a SQLite or journal storage.
    """

    url: str
    kind: Literal["sqlite", "rdb", "journal"]
    path: Path | None = None

    @property
    def heartbeats(self) -> bool:
        """True when lost workers are detected (RDB storages)."""
        return self.kind != "journal"

    def exists(self) -> bool:
        """False when the storage file is missing (a server database is assumed to exist)."""
        return self.path.is_file() if self.path is not None else True

    def describe(self) -> str:
        """The URL without a password."""
        if self.kind != "rdb":
            return self.url
        from sqlalchemy.engine import make_url

        return make_url(self.url).render_as_string(hide_password=True)

    @contextlib.contextmanager
    def lock(self) -> Iterator[None]:
        """Serialise read-then-write steps across processes (a file lock for SQLite, nothing otherwise)."""
        if self.kind != "sqlite" or self.path is None:
            yield
            return
        with open(self.path.with_name(self.path.name + ".lock"), "a") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    def open(
        self,
        heartbeat_interval: int | None = None,
        grace_period: int | None = None,
        max_retry: int | None = None,
        create: bool = True,
    ) -> BaseStorage:
        """The Optuna storage object.

        Parameters
        ----------
        heartbeat_interval, grace_period, max_retry
            Heartbeat settings (RDB only; None disables heartbeats). Stale trials are requeued; ``max_retry`` caps
            the requeues after losses without progress (:class:`arch_lab.sweeps.carry.RetryUnlessStuck`).
        create
            Create a missing SQLite or journal file (and its folder); otherwise refuse.

        Raises
        ------
        ArchLabError
            A missing file with ``create=False``, or a storage that cannot be opened.
        """
        import optuna
        from optuna.exceptions import ExperimentalWarning

        from arch_lab.sweeps.carry import RetryUnlessStuck

        if not create and not self.exists():
            raise ConfigError(f"storage {self.url}: no such file; check the study name or pass --storage")
        if self.path is not None:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        if self.kind == "journal":
            from optuna.storages.journal import JournalFileBackend

            return optuna.storages.JournalStorage(JournalFileBackend(str(self.path)))
        engine_kwargs: dict = {"pool_pre_ping": True}
        if self.kind == "sqlite":
            _enable_wal(self.path)
            engine_kwargs = {"connect_args": {"timeout": SQLITE_TIMEOUT_S}}
        for attempt in range(OPEN_ATTEMPTS):
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", ExperimentalWarning)
                    kwargs: dict = {}
                    if heartbeat_interval is not None:
                        kwargs = {
                            "heartbeat_interval": heartbeat_interval,
                            "grace_period": grace_period or 2 * heartbeat_interval,
                            "heartbeat_stale_trial_callback": RetryUnlessStuck(max_retry),
                        }
                    return optuna.storages.RDBStorage(self.url, engine_kwargs=engine_kwargs, **kwargs)
            except ImportError as exc:
                raise ConfigError(f"storage {self.describe()}: database driver missing ({exc})") from None
            except Exception as exc:  # unreachable server, bad credentials, or workers racing to create the tables
                if attempt + 1 < OPEN_ATTEMPTS:
                    time.sleep(random.uniform(0.5, 2.0))
                    continue
                first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
                raise ConfigError(f"storage {self.describe()}: cannot open ({type(exc).__name__}: {first})") from None
        raise AssertionError("unreachable")


def _enable_wal(path: Path | None) -> None:
    if path is None:
        return
    with contextlib.closing(sqlite3.connect(path, timeout=SQLITE_TIMEOUT_S)) as con:
        con.execute("PRAGMA journal_mode=WAL")


def default_storage_url(name: str, output_dir: str | Path = "runs/sweeps") -> str:
    """``sqlite:///<output_dir>/<name>.db``."""
    return f"sqlite:///{Path(output_dir) / f'{name}.db'}"


def parse_storage(url: str) -> StorageSpec:
    """Parse a storage URL, making file paths absolute (so workers started elsewhere find the same file).

    Raises
    ------
    ConfigError
        Not a journal path nor a SQLAlchemy URL.
    """
    if url.startswith(JOURNAL_PREFIX):
        raw = url[len(JOURNAL_PREFIX) :]
        if not raw:
            raise ConfigError("study.storage: journal: needs a file path, e.g. journal:runs/sweeps/name.log")
        path = Path(raw).expanduser().resolve()
        return StorageSpec(f"{JOURNAL_PREFIX}{path}", "journal", path)
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        parsed = make_url(url)
    except ArgumentError:
        raise ConfigError(
            f"study.storage: {url!r} is not a storage URL; use sqlite:///FILE, postgresql+psycopg2://USER@HOST/DB "
            "or journal:FILE"
        ) from None
    if parsed.get_backend_name() == "sqlite":
        if not parsed.database or parsed.database == ":memory:":
            raise ConfigError("study.storage: an in-memory SQLite database cannot be shared; give a file")
        path = Path(parsed.database).expanduser().resolve()
        return StorageSpec(f"sqlite:///{path}", "sqlite", path)
    return StorageSpec(url, "rdb")
