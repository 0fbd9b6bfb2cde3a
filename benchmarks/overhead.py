"""Where the trainer's time goes beyond a bare loop: its step with EMA and clipping switched off one at a time.

Every variant and the bare loop (:func:`benchmarks.throughput.bare_loop_step`) are built in one process and timed
interleaved, so load drift hits them alike; each is reported as its step time over the bare loop's.

Usage::

    python benchmarks/overhead.py --network mlp --genes 500 --batch-size 64
    python benchmarks/overhead.py --network mlp --genes 2000 --batch-size 256 --out benchmarks/results/overhead.csv
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make ``benchmarks`` importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from benchmarks.throughput import _interleaved, _synthetic_task, bare_loop_step, bench_trainer

#: Trainer variants: name -> ``optim``/``flow`` overrides on top of the defaults.
VARIANTS: dict[str, dict[str, dict]] = {
    "defaults": {},
    "ema_every_step": {"optim": {"ema_every": 1}},
    "no_ema": {"optim": {"ema_decay": None}},
    "no_clip": {"optim": {"grad_clip": None}},
    "no_ema_no_clip": {"optim": {"ema_decay": None, "grad_clip": None}},
}


def measure(network: str, n_genes: int, batch_size: int, threads: int, min_seconds: float) -> list[dict]:
    """Step time of each variant over the bare loop's, one row per variant."""
    import torch

    torch.set_num_threads(threads)
    task = _synthetic_task(n_genes)

    def trainer_step(overrides: dict[str, dict]):
        return bench_trainer(
            network, task, batch_size, optim=overrides.get("optim"), flow=overrides.get("flow")
        ).train_step

    torch.manual_seed(0)
    steps = [bare_loop_step(network, {}, task.spec, batch_size)]
    steps += [trainer_step(v) for v in VARIANTS.values()]
    times = _interleaved(steps, min_seconds)
    return [
        {
            "network": network,
            "n_genes": n_genes,
            "batch_size": batch_size,
            "variant": name,
            "step_ms": t * 1e3,
            "over_bare": t / times[0],
            "bare_step_ms": times[0] * 1e3,
        }  # fmt: skip
        for name, t in zip(VARIANTS, times[1:], strict=True)
    ]


def main(argv: list[str] | None = None) -> int:
    """Measure and print (and optionally write) the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--network", default="mlp")
    parser.add_argument("--genes", type=int, default=500)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=3.0)
    parser.add_argument("--out", type=Path, default=None, help="CSV to write (appended to when it exists)")
    args = parser.parse_args(argv)
    import pandas as pd

    df = pd.DataFrame(measure(args.network, args.genes, args.batch_size, args.threads, args.min_seconds))
    print(df.round(3).to_string(index=False))
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        df.to_csv(args.out, mode="a" if args.out.exists() else "w", header=not args.out.exists(), index=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
