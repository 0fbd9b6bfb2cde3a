"""``scripts/start_postgres.sh``: a taken port is replaced by a free one, and a failed start leaves nothing behind."""

from __future__ import annotations

import glob
import os
import socket
import subprocess
import urllib.parse
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
START, STOP = REPO / "scripts" / "start_postgres.sh", REPO / "scripts" / "stop_postgres.sh"
pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(not glob.glob("/usr/lib/postgresql/*/bin"), reason="no PostgreSQL server installed"),
]


def run(script: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["bash", str(script), *args], capture_output=True, text=True, env={**os.environ, **env}, timeout=180
    )


def server_dirs() -> set[str]:
    return set(glob.glob("/tmp/arch_lab_pg.*"))


def dir_of_port(port: int) -> list[str]:
    """The server folders whose running server listens on ``port`` (others may run servers meanwhile)."""
    found = []
    for pid_file in glob.glob("/tmp/arch_lab_pg.*/data/postmaster.pid"):
        lines = Path(pid_file).read_text().splitlines()
        if len(lines) > 3 and lines[3].strip() == str(port):
            found.append(str(Path(pid_file).parents[1]))
    return found


def test_a_taken_port_is_replaced_by_a_free_one():
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        started = run(START, ARCH_LAB_PG_PORT=str(port))
        assert started.returncode == 0, started.stderr
        url = started.stdout.strip().splitlines()[-1]
        used = urllib.parse.urlsplit(url).port
        try:
            assert url.startswith("postgresql+psycopg2://postgres@127.0.0.1:")
            assert used != port
            (folder,) = dir_of_port(used)
        finally:
            stopped = run(STOP, url)
        assert stopped.returncode == 0, stopped.stderr
        assert not Path(folder).exists()


def test_a_failed_start_cleans_up_and_shows_the_log():
    before = server_dirs()
    failed = run(START, ARCH_LAB_PG_OPTIONS="-c max_connections=-1")
    assert failed.returncode != 0
    assert failed.stdout.strip() == ""  # no URL for a caller to pick up
    assert '"max_connections"' in failed.stderr  # the server's own log line
    assert "error: could not start PostgreSQL on 127.0.0.1:" in failed.stderr
    # nothing of this start is left (other servers may come and go meanwhile: look for this one's log)
    for folder in server_dirs() - before:
        log = Path(folder) / "log"
        assert not log.is_file() or "max_connections" not in log.read_text(errors="replace")
