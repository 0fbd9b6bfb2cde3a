"""Run directories: created once, written atomically, marked complete only at the very end.

A run directory holds ``config.yaml`` (resolved), ``meta.json`` (seed, git SHA, package versions, device),
``split.csv``, ``status.json`` and, once finished, ``predictions.h5ad``, ``metrics.json`` and
``metrics_per_condition.csv``. ``status.json`` says ``running``, ``completed`` or ``failed`` (with the reason);
``metrics.json`` is only ever written for a completed run, so a crashed run never looks complete.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import secrets
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

import yaml

from arch_lab.config import ExperimentConfig

STATUS_FILE = "status.json"
PACKAGES = ("arch-lab", "torch", "numpy", "scipy", "pandas", "anndata", "optuna", "pot", "einops", "xformers")


def _now() -> str:
    return _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds")


def write_json(path: Path, obj: Any) -> None:
    """Write JSON atomically (temporary file, then rename)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True, default=_json_default) + "\n")
    os.replace(tmp, path)


def _json_default(o: Any) -> Any:
    if hasattr(o, "item"):
        return o.item()
    if isinstance(o, Path):
        return str(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def new_run_dir(cfg: ExperimentConfig) -> Path:
    """A fresh, unique run directory ``<output_dir>/<name>/<time>-s<seed>-<random>``."""
    stamp = _dt.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = Path(cfg.output_dir) / cfg.name / f"{stamp}-s{cfg.seed}-{secrets.token_hex(2)}"
    path.mkdir(parents=True, exist_ok=False)
    return path


def set_status(run_dir: Path, status: str, **extra: Any) -> None:
    """Record the run's status (``running``, ``completed``, ``failed``) with a time stamp."""
    write_json(run_dir / STATUS_FILE, {"status": status, "updated": _now(), **extra})


def read_status(run_dir: Path) -> dict[str, Any]:
    """The run's status record (``{"status": "missing"}`` when there is none)."""
    p = Path(run_dir) / STATUS_FILE
    return json.loads(p.read_text()) if p.is_file() else {"status": "missing"}


def is_run_dir(path: Path) -> bool:
    """True when ``path`` looks like an arch_lab run directory."""
    return (Path(path) / "config.yaml").is_file() and (Path(path) / STATUS_FILE).is_file()


def git_sha() -> str:
    """The git commit of the arch_lab checkout (``unknown`` outside git), ``+dirty`` when modified."""
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


def package_versions() -> dict[str, str | None]:
    """Installed versions of the packages that shape results."""
    out: dict[str, str | None] = {"python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def device_info() -> dict[str, Any]:
    """The device that ran the job."""
    import torch

    info: dict[str, Any] = {
        "host": socket.gethostname(),
        "platform": platform.platform(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info


def write_run_header(run_dir: Path, cfg: ExperimentConfig, extra: dict[str, Any] | None = None) -> None:
    """Write the resolved config and ``meta.json`` into a run directory."""
    (run_dir / "config.yaml").write_text(yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False))
    meta = {
        "seed": cfg.seed,
        "git_sha": git_sha(),
        "packages": package_versions(),
        "device": device_info(),
        "command": sys.argv,
        "started": _now(),
        **(extra or {}),
    }
    write_json(run_dir / "meta.json", meta)


def update_meta(run_dir: Path, **values: Any) -> None:
    """Add keys to ``meta.json``."""
    p = run_dir / "meta.json"
    meta = json.loads(p.read_text()) if p.is_file() else {}
    meta.update(values)
    write_json(p, meta)
