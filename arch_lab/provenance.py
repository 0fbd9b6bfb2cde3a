"""Where a result came from: the git commit, the installed package versions and the device."""

from __future__ import annotations

import os
import platform
import socket
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

#: The packages whose versions shape results (recorded in every run's meta).
PACKAGES = ("arch-lab", "torch", "numpy", "scipy", "pandas", "anndata", "optuna", "pot", "einops", "xformers")


#: The commit to record when the code runs from a copy of the checkout (a container image, a tree staged on a
#: cluster or a GPU machine), whose ``.git`` is missing or does not describe it: set it to ``git rev-parse HEAD``
#: of the checkout that was copied. When set, it is recorded as it is.
GIT_SHA_ENV = "ARCH_LAB_GIT_SHA"


def _checkout_sha() -> str:
    """``git rev-parse HEAD`` of the checkout this module lives in, ``+dirty`` when modified; ``unknown`` outside git."""
    root = Path(__file__).resolve().parent.parent
    try:
        sha = subprocess.run(
            ["git", "-C", str(root), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=10, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


#: The checkout's commit when this process first imported arch_lab's provenance, i.e. the code it runs. A long job
#: (a sweep worker) whose checkout is edited or committed to meanwhile keeps recording the commit it started from.
_PROCESS_SHA = _checkout_sha()


def git_sha() -> str:
    """The git commit of the arch_lab code this process runs, ``+dirty`` when the checkout was modified.

    Read from the checkout once, when the process imports this module (before any run starts), so that later
    edits or commits to the checkout do not relabel the runs of a process that is still running the earlier code.
    The ``ARCH_LAB_GIT_SHA`` environment variable, when set, is recorded instead (a copied tree); outside git
    without it, ``unknown``.
    """
    if os.environ.get(GIT_SHA_ENV):
        return os.environ[GIT_SHA_ENV]
    return _PROCESS_SHA


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape results."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def cpu_model() -> str:
    """The CPU's model name (``/proc/cpuinfo`` on Linux, else :func:`platform.processor`; ``unknown`` if neither)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def device_info() -> dict[str, Any]:
    """The device that ran the job (the CPU model too: ``train.precision: auto`` resolves per CPU)."""
    import torch

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu": cpu_model(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
