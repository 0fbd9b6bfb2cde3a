"""Provenance of a run started from a copy of the checkout without its ``.git``."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from conftest import REPO

from arch_lab.provenance import GIT_SHA_ENV, git_sha


def sha_in_copy(tmp_path: Path, env_sha: str | None) -> str:
    copy = tmp_path / "copy"
    if not copy.exists():
        shutil.copytree(REPO / "arch_lab", copy / "arch_lab", ignore=shutil.ignore_patterns("__pycache__"))
    env = {k: v for k, v in os.environ.items() if k != GIT_SHA_ENV}
    env["GIT_CEILING_DIRECTORIES"] = str(tmp_path)  # git must not find a repository above the copy
    if env_sha is not None:
        env[GIT_SHA_ENV] = env_sha
    code = "from arch_lab.provenance import git_sha; print(git_sha())"
    out = subprocess.run([sys.executable, "-c", code], cwd=copy, env=env, capture_output=True, text=True, check=True)
    return out.stdout.strip()


def test_a_copy_without_git_records_the_commit_it_is_given(tmp_path: Path) -> None:
    assert sha_in_copy(tmp_path, "0123abcd") == "0123abcd"
    assert sha_in_copy(tmp_path, None) == "unknown"


def test_a_checkout_records_its_head_unless_told_otherwise(monkeypatch) -> None:
    monkeypatch.delenv(GIT_SHA_ENV, raising=False)
    head = subprocess.run(["git", "-C", str(REPO), "rev-parse", "HEAD"], capture_output=True, text=True, check=True)
    assert git_sha().split("+")[0] == head.stdout.strip()
    monkeypatch.setenv(GIT_SHA_ENV, "0123abcd")  # a copy whose .git is stale says which commit it is
    assert git_sha() == "0123abcd"


COMMIT = ["-c", "user.name=t", "-c", "user.email=t@t", "commit", "-q", "-m"]


def test_a_process_records_the_commit_it_imported_not_a_later_one(tmp_path: Path, monkeypatch) -> None:
    # a long-running worker whose checkout is edited and committed to keeps recording the code it runs
    monkeypatch.delenv(GIT_SHA_ENV, raising=False)
    repo = tmp_path / "checkout"
    shutil.copytree(REPO / "arch_lab", repo / "arch_lab", ignore=shutil.ignore_patterns("__pycache__"))
    git = ["git", "-C", str(repo)]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, *COMMIT, "first"], check=True)
    first = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    code = (
        "import subprocess, sys\n"
        "from arch_lab.provenance import git_sha\n"
        "print(git_sha())\n"
        "with open('arch_lab/provenance.py', 'a') as fh:\n"
        "    fh.write('# edited\\n')\n"
        "print(git_sha())\n"
        f"subprocess.run({[*git, *COMMIT, 'second', '-a']!r}, check=True)\n"
        "print(git_sha())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=repo, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [first, first, first]
    # a process started afterwards records the new commit
    second = subprocess.run([*git, "rev-parse", "HEAD"], capture_output=True, text=True, check=True).stdout.strip()
    assert second != first
    assert sha_in_copy_of(repo) == second


def sha_in_copy_of(repo: Path) -> str:
    code = "from arch_lab.provenance import git_sha; print(git_sha())"
    env = {k: v for k, v in os.environ.items() if k != GIT_SHA_ENV}
    return subprocess.run(
        [sys.executable, "-c", code], cwd=repo, env=env, capture_output=True, text=True, check=True
    ).stdout.strip()
