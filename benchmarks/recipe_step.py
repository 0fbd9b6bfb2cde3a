"""Where a training step and an evaluation go at the recommended recipes' sizes, in fp32 and bf16.

Usage: python -m benchmarks.recipe_step --threads 1 --out docs/performance.md

On the shipped Kang task (G = 500) with each backbone's recommended recipe (``arch_lab/recipes/``), the parts of
one :meth:`FlowTrainer.train_step` are timed separately, in the trainer's own order and with its own objects:
drawing the batch (sampler and control source), the within-condition OT coupling and path draw
(``objective.prepare``), forward and backward of the regression loss with and without the MMD term, and the
update (clipping, AdamW, scheduler, EMA); then the whole step, and one test-split evaluation of the trained-so-far
model (generation with the recipe's solver plus every metric). fp32 and bf16 autocast alternate call by call so
load drift hits both alike; the table gives milliseconds and each part's share of the step, and the bf16/fp32
ratio measured in the same process. Tidy rows: ``benchmarks/results/recipe_step.csv``. The tables go between the
``<!-- recipe step: begin -->`` and ``end`` markers of ``--out``.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Callable
from contextlib import nullcontext
from pathlib import Path

import pandas as pd

from arch_lab.provenance import cpu_model
from benchmarks.throughput import _interleaved

BEGIN = "<!-- recipe step: begin -->"
END = "<!-- recipe step: end -->"
EXPERIMENT = Path(__file__).resolve().parents[1] / "experiments" / "kang_celltype_transfer.yaml"


def parts(network: str, precision: str, min_seconds: float) -> tuple[dict[str, Callable[[], object]], object]:
    """Callables timing each part of a training step of ``network``'s recipe at ``precision``, and the trainer."""
    import torch

    from arch_lab.config import load_experiment
    from arch_lab.data.task import build_task
    from arch_lab.networks import build_network
    from arch_lab.training import FlowTrainer

    cfg = load_experiment(EXPERIMENT, {"network.name": network, "train.precision": precision,
                                       "train.progress": False, "train.loggers": []})  # fmt: skip
    task = build_task(cfg)
    torch.manual_seed(0)
    trainer = FlowTrainer(cfg, task, build_network(cfg.network.name, cfg.network.knobs(), task.spec), device="cpu")
    g, obj, opt = trainer.generator, trainer.objective, cfg.optim
    autocast = trainer._autocast if precision != "fp32" else nullcontext

    def draw():
        x1, cond, cid = trainer.sampler.sample(opt.batch_size, opt.conditions_per_batch, g)
        return x1, cond, cid, trainer.sampler.control_source(cid, g)

    x1, cond, cid, x0 = draw()
    batch = obj.prepare(x1, cond, x0, cid, g)
    plain = type(batch)(batch.x_t, batch.t, batch.cond, batch.dx_t)  # the same rows without the MMD targets

    def backward(b):
        def run():
            trainer.optimizer.zero_grad(set_to_none=True)
            for part in b.blocks(trainer.micro_batch_size):  # the trainer's blocks (auto resolved)
                with autocast():
                    loss = obj.regress(trainer.model, part).float() * (part.size / b.size)
                loss.backward()

        return run

    def update():
        trainer._clip(opt.grad_clip) if opt.grad_clip else None
        trainer.optimizer.step()
        trainer.scheduler.step()
        trainer.ema.update(trainer.network)

    fns = {
        "draw batch (sampler + control source)": draw,
        "OT coupling + path (objective.prepare)": lambda: obj.prepare(x1, cond, x0, cid, g),
        "forward + backward, regression only": backward(plain),
        "forward + backward, with MMD": backward(batch),
        "update (clip, AdamW, scheduler, EMA)": update,
        "whole train_step": trainer.train_step,
    }
    return fns, trainer


def measure(network: str, min_seconds: float) -> list[dict]:
    """Rows (part, precision, ms) for one backbone, fp32 and bf16 alternating."""
    from arch_lab.harness import evaluate

    fp32, t32 = parts(network, "fp32", min_seconds)
    bf16, t16 = parts(network, "bf16", min_seconds)
    rows = []
    for name in fp32:
        a, b = _interleaved([fp32[name], bf16[name]], min_seconds)
        rows.append({"network": network, "part": name, "fp32_ms": 1e3 * a, "bf16_ms": 1e3 * b})

    def evaluation(trainer) -> Callable[[], object]:
        def run():
            from arch_lab.methods.flow import FlowMatching

            method = FlowMatching(trainer.cfg, trainer.task)
            method.model, method.device = trainer.eval_model(), trainer.device
            with trainer._autocast():
                return evaluate(trainer.task, method, trainer.cfg.eval, seed=0, split="test")

        return run

    a, b = _interleaved([evaluation(t32), evaluation(t16)], min_seconds, min_rounds=2)
    rows.append({"network": network, "part": "test evaluation (generate + metrics)", "fp32_ms": 1e3 * a,
                 "bf16_ms": 1e3 * b})  # fmt: skip
    return rows


def to_markdown(df: pd.DataFrame, meta: str) -> str:
    """One table per backbone: ms per part, share of the step, bf16/fp32."""
    out = [meta, ""]
    for network, g in df.groupby("network", sort=False):
        step = g[g["part"] == "whole train_step"].iloc[0]
        out += [f"#### {network}", "", "| part | fp32 ms | share of fp32 step | bf16 ms | bf16 / fp32 |",
                "|---|---|---|---|---|"]  # fmt: skip
        for r in g.itertuples():
            share = "" if r.part.startswith(("whole", "test")) else f"{r.fp32_ms / step.fp32_ms:.0%}"
            out.append(f"| {r.part} | {r.fp32_ms:.1f} | {share} | {r.bf16_ms:.1f} | {r.bf16_ms / r.fp32_ms:.2f} |")
        out.append("")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    """Command-line entry point."""
    import torch

    from arch_lab.scoreboard import write_generated
    from arch_lab.training.precision import cpu_bf16_speedup

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--networks", nargs="+", default=["mlp", "gene_transformer", "unet1d"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--min-seconds", type=float, default=1.0)
    parser.add_argument("--csv", type=Path, default=Path("benchmarks/results/recipe_step.csv"))
    parser.add_argument("--out", type=Path, default=Path("docs/performance.md"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    started, load_start = time.time(), os.getloadavg()[0]
    rows = [row for net in args.networks for row in measure(net, args.min_seconds)]
    df = pd.DataFrame(rows)
    args.csv.parent.mkdir(parents=True, exist_ok=True)
    df.to_csv(args.csv, index=False)
    meta = (
        f"Written by `python -m benchmarks.recipe_step --threads {args.threads} --out {args.out}` on "
        f"{time.strftime('%Y-%m-%d %H:%M')} ({(time.time() - started) / 60:.1f} min). CPU: {cpu_model()}, "
        f"{args.threads} thread(s); torch {torch.__version__}; bf16/fp32 matmul speed-up probe "
        f"(`arch_lab.training.precision.cpu_bf16_speedup`): {cpu_bf16_speedup():.2f}x. Kang (G = 500), each "
        "backbone's recommended recipe (batch 128, 8 conditions, control source, exact OT, MMD weight 3; "
        "forward and backward in the trainer's blocks, `optim.micro_batch_size: auto` for the U-Net and the "
        f"transformer). Load average {load_start:.1f} at the start and {os.getloadavg()[0]:.1f} at the end on "
        f"{os.cpu_count()} cores: read the ratios, not the absolute times, when it exceeds the cores."
    )
    write_generated(args.out, to_markdown(df, meta), BEGIN, END)
    print(f"wrote {args.csv} and {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
