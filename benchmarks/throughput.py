"""Training and sampling throughput per backbone, and the trainer's overhead over a bare torch loop.

Each (network, gene count) runs in its own subprocess, so its peak resident memory is its own. Inside that
process the same network is timed twice: through :class:`arch_lab.training.FlowTrainer` (condition sampler,
objective, autocast, clipping, scheduler, EMA) and through a bare loop (random tensors, the straight-path loss,
AdamW), and the ratio of step times is reported; absolute speeds drift on shared machines, ratios less so.

Usage::

    python benchmarks/throughput.py                      # G = 500, 2000, 8000; all registered networks
    python benchmarks/throughput.py --genes 500 --out benchmarks/results
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np


def _synthetic_task(n_genes: int, cells_per_condition: int = 64):
    import anndata as ad
    import pandas as pd

    from arch_lab.config import TaskConfig
    from arch_lab.data import Task, load_perturbation_data, make_split

    rng = np.random.default_rng(0)
    perts = ["control", "A", "B", "C", "A+B"]
    states = ["s0", "s1", "s2"]
    obs = pd.DataFrame(
        [(p, s) for s in states for p in perts for _ in range(cells_per_condition)], columns=["condition", "cell_type"]
    )
    obs.index = [f"c{i}" for i in range(len(obs))]
    X = np.log1p(rng.gamma(0.5, 2.0, size=(len(obs), n_genes))).astype(np.float32)
    adata = ad.AnnData(X=X, obs=obs, var=pd.DataFrame(index=[f"g{i}" for i in range(n_genes)]))
    data = load_perturbation_data(
        adata, perturbation_key="condition", control_value="control", covariate_keys=["cell_type"]
    )
    return Task(data, make_split(data, TaskConfig(kind="covariate_transfer", heldout_fraction=0.4)))


def _interleaved(fns: list, min_seconds: float, min_rounds: int = 5) -> list[float]:
    """Mean seconds per call of each function, alternating calls so machine-load drift hits all alike."""
    for fn in fns:
        fn()  # warm-up
    totals, rounds, start = [0.0] * len(fns), 0, time.perf_counter()
    while rounds < min_rounds or time.perf_counter() - start < min_seconds * len(fns):
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            totals[i] += time.perf_counter() - t0
        rounds += 1
    return [t / rounds for t in totals]


def _time(fn, min_seconds: float, min_reps: int = 3) -> float:
    fn()  # warm-up
    reps, start = 0, time.perf_counter()
    while reps < min_reps or time.perf_counter() - start < min_seconds:
        fn()
        reps += 1
    return (time.perf_counter() - start) / reps


def bare_loop_step(network: str, knobs: dict, spec, batch_size: int):
    """A bare torch flow-matching step for ``network`` (straight path, MSE on ``x1 - x0``, AdamW built as the
    trainer builds it: fused on CPU and CUDA), the baseline the trainer's step is timed against."""
    import torch

    from arch_lab.networks import build_network
    from arch_lab.spec import CondBatch

    bare = build_network(network, knobs, spec)
    opt = torch.optim.AdamW(bare.parameters(), lr=1e-3, fused=True)
    x1 = torch.randn(batch_size, spec.n_genes)
    cond = CondBatch.repeat([1], [0], batch_size, width=spec.max_perturbations)

    def step() -> None:
        x0 = torch.randn_like(x1)
        t = torch.rand(batch_size)
        xt = (1 - t[:, None]) * x0 + t[:, None] * x1
        loss = (bare(xt, t, cond) - (x1 - x0)).pow(2).mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    return step


def bench_trainer(
    network: str,
    task,
    batch_size: int,
    knobs: dict | None = None,
    optim: dict | None = None,
    flow: dict | None = None,
    compile_: bool = False,
    device: str = "cpu",
    precision: str = "fp32",
):
    """The :class:`~arch_lab.training.FlowTrainer` every benchmark times: trainer defaults (at fp32 on the CPU
    unless ``device``/``precision`` say otherwise), up to 8 conditions per batch, ``optim``/``flow`` overrides on
    top, network seeded with 0."""
    import torch

    from arch_lab.config import experiment_from_dict
    from arch_lab.networks import build_network
    from arch_lab.training import FlowTrainer

    knobs = dict(knobs or {})
    cfg = experiment_from_dict(
        {
            "name": "bench",
            "data": {"path": "-"},
            "task": {"kind": "covariate_transfer"},
            "network": {"name": network, **knobs},
            "optim": {"batch_size": batch_size, "conditions_per_batch": min(8, batch_size), **(optim or {})},
            "flow": dict(flow or {}),
            "train": {"max_steps": 10_000, "progress": False, "precision": precision, "compile": compile_},
        }
    )
    torch.manual_seed(0)
    return FlowTrainer(cfg, task, build_network(network, knobs, task.spec), validate=None, device=device)


def measure(network: str, n_genes: int, batch_size: int, threads: int, min_seconds: float) -> dict:
    """Measure one (network, gene count) in this process."""
    import torch

    from arch_lab.flow import generate
    from arch_lab.networks import count_parameters
    from arch_lab.spec import CondBatch

    torch.set_num_threads(threads)
    task = _synthetic_task(n_genes)
    trainer = bench_trainer(network, task, batch_size)
    net = trainer.network

    torch.manual_seed(0)
    bare_step = bare_loop_step(network, {}, task.spec, batch_size)

    t_trainer, t_bare = _interleaved([trainer.train_step, bare_step], min_seconds)
    n_sample = 256
    cond_s = CondBatch.repeat([1], [0], n_sample, width=task.spec.max_perturbations)
    x0 = torch.randn(n_sample, n_genes)
    t_euler = _time(lambda: generate(net, cond_s, x0, solver="euler", steps=20), min_seconds, 1)
    return {
        "network": network,
        "n_genes": n_genes,
        "batch_size": batch_size,
        "threads": threads,
        "parameters": count_parameters(net),
        "train_cells_per_s": batch_size / t_trainer,
        "bare_cells_per_s": batch_size / t_bare,
        "trainer_over_bare": t_trainer / t_bare,
        "sample_cells_per_s_euler20": n_sample / t_euler,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }


def main(argv: list[str] | None = None) -> int:
    """Run every (network, G) in a subprocess and write ``throughput.csv``/``.json``."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--genes", type=int, nargs="+", default=[500, 2000, 8000])
    parser.add_argument("--networks", nargs="+", default=None)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--min-seconds", type=float, default=2.0)
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results"))
    parser.add_argument("--one", nargs=2, metavar=("NETWORK", "GENES"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        row = measure(args.one[0], int(args.one[1]), args.batch_size, args.threads, args.min_seconds)
        print(json.dumps(row))
        return 0

    import pandas as pd
    import torch
    from tqdm.auto import tqdm

    from arch_lab.networks import list_networks

    rows = []
    jobs = [(n, g) for g in args.genes for n in (args.networks or list_networks())]
    for network, genes in tqdm(jobs, desc="throughput"):
        cmd = [sys.executable, __file__, "--one", network, str(genes), "--batch-size", str(args.batch_size),
               "--threads", str(args.threads), "--min-seconds", str(args.min_seconds)]  # fmt: skip
        proc = subprocess.run(cmd, capture_output=True, text=True)
        if proc.returncode != 0:
            rows.append({"network": network, "n_genes": genes, "error": proc.stderr.strip().splitlines()[-1]})
            continue
        rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    df = pd.DataFrame(rows)
    args.out.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.out / "throughput.csv", index=False)
    (args.out / "throughput.json").write_text(
        json.dumps({"torch": torch.__version__, "threads": args.threads, "rows": rows}, indent=2)
    )
    with pd.option_context("display.width", 200, "display.max_columns", 20):
        print(df.round(2).to_string(index=False))
    return 0


if __name__ == "__main__":
    sys.exit(main())
