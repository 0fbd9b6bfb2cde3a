"""How long a config error takes to come back, against ``arch-lab --help``, in one run of this script.

Each command is a fresh ``python -m arch_lab.cli`` process (imports included), run ``--repeat`` times in
alternation so the machine's load hits them alike; the table gives median wall seconds and the ratio to
``--help``. A structural config error (unknown key, bad type, bad ``--set``) is reported before torch and anndata
are imported; a network-knob error needs the network registry (torch), and a data error the data (anndata).

Usage::

    python benchmarks/fast_errors.py                 # 7 rounds
    python benchmarks/fast_errors.py --repeat 15
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]


def _experiment(folder: Path, **changes: dict) -> Path:
    cfg = {
        "name": "fast",
        "data": {"path": str(REPO / "data" / "perturbench_devel" / "devel.h5ad"), "covariate_keys": ["cell_type"]},
        "task": {"kind": "covariate_transfer"},
    }
    for key, value in changes.items():
        cfg[key] = {**cfg.get(key, {}), **value}
    path = folder / f"exp{len(list(folder.iterdir()))}.yaml"
    path.write_text(yaml.safe_dump(cfg))
    return path


def commands(folder: Path) -> dict[str, list[str]]:
    """The timed command lines (after ``python -m arch_lab.cli``)."""
    good = _experiment(folder)
    return {
        "--help": ["--help"],
        "unknown key (train.max_step)": ["train", str(_experiment(folder, train={"max_step": 3}))],
        "bad --set value": ["train", str(good), "--set", "optim.lr=fast"],
        "network knob (needs torch)": ["train", str(_experiment(folder, network={"widht": 3}))],
        "data column (needs anndata)": ["train", str(_experiment(folder, data={"perturbation_key": "cond"}))],
    }


def time_once(args: list[str]) -> tuple[float, int]:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    start = time.perf_counter()
    done = subprocess.run([sys.executable, "-m", "arch_lab.cli", *args], capture_output=True, env=env, cwd=REPO)
    return time.perf_counter() - start, done.returncode


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=7)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        cmds = commands(Path(tmp))
        times: dict[str, list[float]] = {name: [] for name in cmds}
        for _ in range(opts.repeat):
            for name, args in cmds.items():
                seconds, code = time_once(args)
                assert (code == 0) == (name == "--help"), (name, code)
                times[name].append(seconds)
    base = statistics.median(times["--help"])
    load = os.getloadavg()[0]
    print(f"{opts.repeat} rounds, load average {load:.2f}, {os.cpu_count()} CPUs\n")
    print("| command | median s | ratio to --help |")
    print("|---|---:|---:|")
    for name, values in times.items():
        median = statistics.median(values)
        print(f"| {name} | {median:.2f} | {median / base:.2f} |")


if __name__ == "__main__":
    main()
