"""Training throughput on a CUDA device: bf16 autocast against fp32, and one process against several sharing the GPU.

Times :meth:`arch_lab.training.FlowTrainer.train_step` (the trainer's whole step: condition sampler, source noise,
objective, autocast, clipping, EMA) on the study arms of ``sweeps/probes/unet_plateau_2048_synthetic.yaml`` at
G = 2048 and batch 256, and reports ratios measured in the same process (bf16 over fp32). Then runs the default
U-Net in k processes at once (as ``arch-lab sweep run --parallel-runs`` does) and reports the summed steps per
second over the single process's: without NVIDIA MPS the processes take turns on the GPU, so this says whether
several runs per GPU pay.

Usage::

    python benchmarks/gpu_throughput.py --out benchmarks/results     # gpu_throughput.csv, gpu_concurrency.csv
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

ARMS = {
    "unet1d": ("unet1d", {}),
    "unet1d_gene_embedding": ("unet1d", {"gene_embedding_dim": 4}),
    "mlp_w2048_no_norm": ("mlp", {"width": 2048, "norm": False}),
    "mlp_repaired": ("mlp", {"width": 256, "norm": False, "linear_skip": True}),
}


def steps_per_second(
    arm: str, precision: str, n_genes: int, batch_size: int, seconds: float, start_at: float | None = None
) -> float:
    """Trainer steps per second of ``arm`` on the GPU (after 20 warm-up steps), synchronised at both ends;
    ``start_at`` (a ``time.time()``) lines up the timed windows of several processes.
    """
    import torch
    from throughput import _synthetic_task, bench_trainer

    network, knobs = ARMS[arm]
    trainer = bench_trainer(network, _synthetic_task(n_genes), batch_size, knobs, device="cuda", precision=precision)
    for _ in range(20):
        trainer.train_step()
    torch.cuda.synchronize()
    if start_at is not None:
        time.sleep(max(0.0, start_at - time.time()))
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for _ in range(10):
            trainer.train_step()
        steps += 10
        torch.cuda.synchronize()
    return steps / (time.perf_counter() - start)


def main(argv: list[str] | None = None) -> int:
    """Measure precision ratios in this process, then the concurrency ratios in child processes; write CSVs."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, default=2048)
    parser.add_argument("--batch-size", type=int, default=256)
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--processes", type=int, nargs="+", default=[1, 4, 10])
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--one", nargs=2, metavar=("ARM", "PRECISION"), help=argparse.SUPPRESS)
    parser.add_argument("--start-at", type=float, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        rate = steps_per_second(args.one[0], args.one[1], args.genes, args.batch_size, args.seconds, args.start_at)
        print(json.dumps({"steps_per_s": rate}))
        return 0

    import pandas as pd
    import torch

    rows = []
    for arm in ARMS:
        rates = {p: steps_per_second(arm, p, args.genes, args.batch_size, args.seconds) for p in ("fp32", "bf16")}
        rows.append({"arm": arm, "n_genes": args.genes, "batch_size": args.batch_size,
                     "fp32_steps_per_s": rates["fp32"], "bf16_steps_per_s": rates["bf16"],
                     "bf16_over_fp32": rates["bf16"] / rates["fp32"]})  # fmt: skip
        print(json.dumps(rows[-1]), flush=True)
    device = torch.cuda.get_device_name(0)
    args.out.mkdir(parents=True, exist_ok=True)
    pd.DataFrame(rows).assign(device=device).to_csv(args.out / "gpu_throughput.csv", index=False)

    shared = []
    for k in args.processes:
        cmd = [sys.executable, __file__, "--one", "unet1d", "bf16", "--genes", str(args.genes),
               "--batch-size", str(args.batch_size), "--seconds", str(args.seconds),
               "--start-at", str(time.time() + 25)]  # fmt: skip
        procs = [subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True) for _ in range(k)]
        outs = [p.communicate()[0] for p in procs]
        rates = [json.loads(o.strip().splitlines()[-1])["steps_per_s"] for o in outs]
        shared.append({"arm": "unet1d", "precision": "bf16", "processes": k, "total_steps_per_s": sum(rates),
                       "per_process_steps_per_s": sum(rates) / k})  # fmt: skip
        print(json.dumps(shared[-1]), flush=True)
    frame = pd.DataFrame(shared)
    frame["total_over_one_process"] = frame["total_steps_per_s"] / frame["total_steps_per_s"].iloc[0]
    frame.assign(device=device).to_csv(args.out / "gpu_concurrency.csv", index=False)
    print(frame.to_string(index=False))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
