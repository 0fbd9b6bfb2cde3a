"""Measure first: one command writes ``docs/performance.md`` and tidy CSVs in ``benchmarks/results/``.

What it measures, in this order, each configuration in its own subprocess (so its peak memory is its own):

* the machine's limit: dense matmul GFLOP/s in fp32 and bf16 at the thread count used (and on CUDA, if any);
* per backbone at its registry defaults and each gene count: training cells/s through the real
  :class:`~arch_lab.training.FlowTrainer` step, a bare torch loop and a torchcfm loop of the same network (when
  torchcfm is importable), batches/s of the trainer's condition sampler, sampling cells/s (Euler with a fixed step
  count and dopri5, both through :func:`arch_lab.flow.generate`), the training step's peak memory, model FLOPs
  per step (``torch.utils.flop_counter.FlopCounterMode``) and the fraction of the matmul throughput reached;
* cost against batch size at one gene count, the linear-in-G transformer variants, full gene self-attention
  (refused where it cannot fit), and the ``train.compile`` gain;
* fitted log-log exponents, pass/fail targets and an atlas-scale projection.

Usage::

    python -m benchmarks.performance --out docs/performance.md            # full run, bounded by --budget
    python -m benchmarks.performance --quick --out /tmp/perf.md --results /tmp/results
    python benchmarks/performance.py --genes 500 2000 --batch 64 --networks mlp
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import resource
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

_HERE = Path(__file__).resolve().parent
if str(_HERE) not in sys.path:
    sys.path.insert(0, str(_HERE))

from throughput import _synthetic_task, bare_loop_step, bench_trainer  # noqa: E402

from arch_lab.provenance import cpu_model  # noqa: E402

#: Reference (registry default) gene counts of the gene sweep.
GENES = (500, 2000, 8000, 18000)
#: Batch sizes of the batch sweep.
BATCHES = (32, 64, 128, 256)
#: Targets. Sampler batches/s over step consumption must exceed this for "never makes the step wait".
DATA_RATIO_TARGET = 10.0
#: Hand-written discussion appended to the report (what was changed, what the numbers mean).
DISCUSSION = Path(__file__).with_name("performance_discussion.md")
#: Micro-batch of the transformer at the target batch (rows per forward/backward block).
MICRO_BATCH = 16
#: Token widths of the transformer width sweep (feed-forward 4x, 32-wide heads), its batch and micro-batch 8.
WIDTHS = (128, 256, 512)
WIDTH_BATCH = 64
#: An exponent at most this is called linear.
LINEAR_EXPONENT = 1.15
#: Assumed H100 SXM dense bf16 throughput (TFLOP/s, no sparsity) and model FLOP utilisation for projections.
H100_BF16_TFLOPS = 989.0
ASSUMED_MFU = 0.35
#: PRiMeFlow-size run: genes, cells (VCC pretraining atlas) and epochs assumed.
ATLAS_GENES = 18000
ATLAS_CELLS = 6_975_767
ATLAS_EPOCHS = 20


# ------------------------------------------------------------------------------------------------- helpers
def fit_exponent(x: Any, y: Any) -> float:
    """Slope of ``log y`` against ``log x`` (least squares), i.e. ``k`` in ``y ~ c x^k``.

    Parameters
    ----------
    x, y
        Positive values of equal length (at least two distinct ``x``); non-finite or non-positive pairs are
        dropped.

    Returns
    -------
    float
        The fitted exponent, or NaN when fewer than two usable points remain.
    """
    x, y = np.asarray(x, dtype=float), np.asarray(y, dtype=float)
    keep = np.isfinite(x) & np.isfinite(y) & (x > 0) & (y > 0)
    if len(np.unique(x[keep])) < 2:
        return float("nan")
    return float(np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)[0])


def matmul_gflops(dtype: str, device: str = "cpu", n: int = 2048, seconds: float = 1.0) -> float:
    """Best dense ``n x n`` matmul throughput in GFLOP/s for ``dtype`` (``"fp32"`` or ``"bf16"``) on ``device``."""
    import torch

    dt_ = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    a = torch.randn(n, n, device=device).to(dt_)
    b = torch.randn(n, n, device=device).to(dt_)
    sync = torch.cuda.synchronize if device.startswith("cuda") else (lambda: None)
    a @ b
    sync()
    best, start = float("inf"), time.perf_counter()
    reps = 0
    while reps < 3 or time.perf_counter() - start < seconds:
        t0 = time.perf_counter()
        a @ b
        sync()
        best = min(best, time.perf_counter() - t0)
        reps += 1
    return 2 * n**3 / best / 1e9


def _status_kb(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return None


def _reset_peak_rss() -> bool:
    """Reset VmHWM to the current RSS (Linux ``clear_refs`` 5); False where that is not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
        return True
    except OSError:
        return False


def available_memory_mb() -> float | None:
    """Available RAM in MiB (``MemAvailable``), None where it cannot be read."""
    from arch_lab.networks.layers.attention import available_memory_bytes

    avail = available_memory_bytes("cpu")
    return None if avail is None else avail / 2**20


def _timed_rounds(fns: list[Callable[[], Any]], min_seconds: float, max_seconds: float, min_rounds: int) -> list[float]:
    """Mean seconds per call of each function, alternating calls so load drift hits all alike.

    One warm-up call each, then rounds until at least ``min_rounds`` and ``min_seconds`` per function, or
    ``max_seconds`` in all once one round is done.
    """
    for fn in fns:
        fn()
    totals, rounds, start = [0.0] * len(fns), 0, time.perf_counter()
    while True:
        for i, fn in enumerate(fns):
            t0 = time.perf_counter()
            fn()
            totals[i] += time.perf_counter() - t0
        rounds += 1
        elapsed = time.perf_counter() - start
        if elapsed >= max_seconds or (rounds >= min_rounds and elapsed >= min_seconds * len(fns)):
            break
    return [t / rounds for t in totals]


def label(network: str, config: dict[str, Any], optim: dict[str, Any] | None = None) -> str:
    """Row label of a network with overrides, e.g. ``gene_transformer[latent]``, ``gene_transformer[dim=256,micro=8]``.

    ``self_attention`` shows as its value alone; other network knobs as ``knob=value``; the trainer's
    ``micro_batch_size`` as ``micro=N``.
    """
    parts = [str(v) if k == "self_attention" else f"{k}={v}" for k, v in config.items()]
    if (optim or {}).get("micro_batch_size"):
        parts.append(f"micro={optim['micro_batch_size']}")
    return f"{network}[{','.join(parts)}]" if parts else network


def job_label(job: dict[str, Any]) -> str:
    """:func:`label` of a job."""
    return label(job["network"], job.get("config") or {}, job.get("optim"))


# ------------------------------------------------------------------------------------- one configuration
def _count_step_flops(net: Any, n_genes: int, batch: int, width: int) -> int:
    """Model FLOPs of one forward and backward pass at ``batch`` rows (counted at 2 and 4 rows, linear in rows)."""
    import torch
    from torch.utils.flop_counter import FlopCounterMode

    from arch_lab.spec import CondBatch

    def at(rows: int) -> int:
        x, t = torch.randn(rows, n_genes), torch.rand(rows)
        cond = CondBatch.repeat([1], [0], rows, width=width)
        counter = FlopCounterMode(display=False)
        with counter:
            net(x, t, cond).pow(2).mean().backward()
        net.zero_grad(set_to_none=True)
        return counter.get_total_flops()

    f2, f4 = at(2), at(4)
    return int(round(f2 + (f4 - f2) / 2 * (batch - 2)))


class _Counting:
    """Wraps a network and counts its calls (field evaluations during sampling)."""

    def __init__(self, net: Any) -> None:
        self.net, self.calls = net, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.net, name)

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        self.calls += 1
        return self.net(*args, **kwargs)


def measure(job: dict[str, Any]) -> dict[str, Any]:
    """Measure one configuration in this process.

    Parameters
    ----------
    job
        ``kind`` (``"full"``: everything; ``"train"``: step time, memory, FLOPs; ``"compile"``: compiled over
        eager), ``network``, ``config`` (network overrides), ``genes``, ``batch``, ``threads``, ``min_seconds``,
        ``max_seconds``, ``euler_steps``, ``tiny``.

    Returns
    -------
    dict
        One tidy row.
    """
    import torch

    from arch_lab.flow import generate
    from arch_lab.networks import build_network, count_parameters, get_network_class
    from arch_lab.spec import CondBatch
    from arch_lab.training import FlowTrainer

    torch.set_num_threads(job["threads"])
    network, genes, batch, kind = job["network"], job["genes"], job["batch"], job["kind"]
    knobs = dict(get_network_class(network).tiny_config()) if job.get("tiny") else {}
    knobs.update(job.get("config") or {})
    row: dict[str, Any] = {
        "kind": kind,
        "network": job_label(job),
        "n_genes": genes,
        "batch_size": batch,
        "threads": job["threads"],
    }
    t_start = time.perf_counter()
    row["matmul_fp32_gflops_local"] = matmul_gflops("fp32", seconds=0.3)
    task = _synthetic_task(genes, cells_per_condition=max(16, min(64, batch)))

    def make_trainer(compile_: bool = False) -> FlowTrainer:
        return bench_trainer(network, task, batch, knobs, job.get("optim"), compile_=compile_)

    min_s, max_s = job["min_seconds"], job["max_seconds"]
    if kind == "compile":
        eager = make_trainer(False)
        compiled = make_trainer(True)
        t0 = time.perf_counter()
        compiled.train_step()
        row["compile_first_step_s"] = time.perf_counter() - t0
        t_eager, t_compiled = _timed_rounds([eager.train_step, compiled.train_step], min_s, max_s, 2)
        row.update(eager_step_s=t_eager, compiled_step_s=t_compiled, compiled_over_eager=t_compiled / t_eager)
        row["seconds"] = time.perf_counter() - t_start
        return row

    trainer = make_trainer()
    width = task.spec.max_perturbations
    row["parameters"] = count_parameters(trainer.network)
    bare = build_network(network, knobs, task.spec)
    try:  # the project's counter where present (meta device: no memory, no arithmetic)
        from arch_lab.flops import network_flops

        row["flops_per_step"] = int(network_flops(bare, batch_size=batch).train_step)
        row["flops_counter"] = "arch_lab.flops"
    except ImportError:
        row["flops_per_step"] = _count_step_flops(bare, genes, batch, width)
        row["flops_counter"] = "FlopCounterMode"

    # peak memory of the training step: VmHWM over the step, relative to the RSS just before it
    rss_before = _status_kb("VmRSS")
    reset = _reset_peak_rss()
    trainer.train_step()
    hwm = _status_kb("VmHWM")
    if reset and rss_before is not None and hwm is not None:
        row["rss_before_mb"] = rss_before / 1024
        row["peak_step_mb"] = (hwm - rss_before) / 1024
    row["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    fns: list[Callable[[], Any]] = [trainer.train_step]
    if job.get("bare", True):
        fns.append(bare_loop_step(network, knobs, task.spec, batch))
    if kind == "full" and job.get("torchcfm", True):
        try:
            from torchcfm.conditional_flow_matching import ConditionalFlowMatcher
        except Exception:
            ConditionalFlowMatcher = None
        if ConditionalFlowMatcher is not None:
            cfm_net = build_network(network, knobs, task.spec)
            cfm_opt = torch.optim.AdamW(cfm_net.parameters(), lr=1e-3, fused=True)
            matcher = ConditionalFlowMatcher(sigma=0.0)
            x1 = torch.randn(batch, genes)
            cond = CondBatch.repeat([1], [0], batch, width=width)

            def cfm_step() -> None:
                t, xt, ut = matcher.sample_location_and_conditional_flow(torch.randn_like(x1), x1)
                loss = (cfm_net(xt, t, cond) - ut).pow(2).mean()
                cfm_opt.zero_grad(set_to_none=True)
                loss.backward()
                cfm_opt.step()

            fns.append(cfm_step)
    times = _timed_rounds(fns, min_s, max_s, 2)
    row["train_step_s"] = times[0]
    row["train_cells_per_s"] = batch / times[0]
    if job.get("bare", True):
        row["bare_cells_per_s"] = batch / times[1]
        row["trainer_over_bare"] = times[0] / times[1]
    if len(times) > 2:
        row["torchcfm_cells_per_s"] = batch / times[2]
        row["trainer_over_torchcfm"] = times[0] / times[2]
    if row.get("flops_per_step"):
        achieved = row["flops_per_step"] / times[0] / 1e9
        row["model_gflops"] = achieved
        row["fraction_of_matmul_local"] = achieved / row["matmul_fp32_gflops_local"]

    # data pipeline: what train_step draws before the network runs (cells, conditions, Gaussian source)
    sampler, gen, opt_cfg = trainer.sampler, trainer.generator, trainer.cfg.optim

    def draw() -> None:
        x1_, _, _ = sampler.sample(opt_cfg.batch_size, opt_cfg.conditions_per_batch, gen)
        torch.randn(x1_.shape, generator=gen)

    t_draw = _timed_rounds([draw], min(0.3, min_s), 2.0, 20)[0]
    row["sampler_batches_per_s"] = 1 / t_draw
    row["data_over_step"] = times[0] / t_draw

    if kind == "full":
        n = batch
        cond_s = CondBatch.repeat([1], [0], n, width=width)
        x0 = torch.randn(n, genes)
        counted = _Counting(bare)
        t0 = time.perf_counter()
        generate(counted, cond_s, x0, solver="euler", steps=job["euler_steps"])
        t_euler = time.perf_counter() - t0
        row["sample_cells_per_s_euler"] = n / t_euler
        row["euler_steps"] = job["euler_steps"]
        if time.perf_counter() - t_start + 3 * t_euler < job["budget_s"]:
            counted.calls = 0
            t0 = time.perf_counter()
            try:
                generate(counted, cond_s, x0, solver="dopri5")
                row["sample_cells_per_s_dopri5"] = n / (time.perf_counter() - t0)
                row["dopri5_nfe"] = counted.calls
            except RuntimeError as error:
                row["dopri5_note"] = str(error).splitlines()[0]
        else:
            row["dopri5_note"] = "skipped: configuration time budget"
    row["seconds"] = time.perf_counter() - t_start
    return row


# ------------------------------------------------------------------------------------------ orchestration
def _run_subprocess(job: dict[str, Any], memory_limit_mb: float | None, timeout_s: float) -> dict[str, Any]:
    """Run :func:`measure` for ``job`` in a fresh interpreter, capped in address space and time."""
    base = _base(job)

    def limit() -> None:
        if memory_limit_mb:
            cap = int((memory_limit_mb + 3072) * 2**20)  # address space: RAM cap plus room for code and threads
            resource.setrlimit(resource.RLIMIT_AS, (cap, cap))

    env = {**os.environ, "OMP_NUM_THREADS": str(job["threads"]), "MKL_NUM_THREADS": str(job["threads"])}
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", json.dumps(job)]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout_s, preexec_fn=limit, env=env)
    except subprocess.TimeoutExpired:
        return {**base, "status": f"timed out after {timeout_s:.0f} s"}
    if proc.returncode != 0:
        lines = [ln for ln in proc.stderr.strip().splitlines() if ln.strip()]
        last = lines[-1] if lines else f"exit code {proc.returncode}"
        if "ConfigError:" in last:
            last = "refused: " + last.split("ConfigError:", 1)[1].strip()
        elif proc.returncode < 0 or "can't allocate memory" in last or "MemoryError" in last:
            cap = f"{memory_limit_mb / 1024:.1f} GiB" if memory_limit_mb else "none"
            last = f"out of memory (cap {cap}): {last[:160]}"
        return {**base, "status": last[:300]}
    return {**json.loads(proc.stdout.strip().splitlines()[-1]), "status": "ok"}


def _base(job: dict[str, Any]) -> dict[str, Any]:
    return {"kind": job["kind"], "sweep": job.get("sweep"), "network": job_label(job),
            "n_genes": job["genes"], "batch_size": job["batch"], "threads": job["threads"]}  # fmt: skip


def _predict(rows: list[dict[str, Any]], job: dict[str, Any], key: str, along: str) -> float | None:
    """Extrapolate ``key`` for ``job`` from measured rows of the same network (power law along ``along``)."""
    name = job_label(job)
    fixed = "batch_size" if along == "n_genes" else "n_genes"
    pts = [(r[along], r[key]) for r in rows if r.get("status") == "ok" and r["network"] == name
           and r[fixed] == job["batch" if fixed == "batch_size" else "genes"] and r.get(key, 0) > 0]  # fmt: skip
    if not pts:
        return None
    pts.sort()
    target = job["genes"] if along == "n_genes" else job["batch"]
    if len(pts) == 1:
        return pts[0][1] * target / pts[0][0]
    k = max(fit_exponent(*zip(*pts[-2:], strict=True)), 1.0)
    return pts[-1][1] * (target / pts[-1][0]) ** k


def run_jobs(
    jobs: list[dict[str, Any]],
    budget_s: float,
    memory_limit_mb: float | None,
    log: Callable[[str], None],
    partial: Path | None = None,
) -> list[dict[str, Any]]:
    """Run jobs in order, skipping (and saying so) those predicted not to fit in memory or in the time left.

    After each job the rows so far are written to ``partial`` (a CSV) when given, so an interrupted run keeps
    what it measured.
    """
    rows: list[dict[str, Any]] = []
    start = time.perf_counter()
    for job in jobs:
        name = job_label(job)
        base = _base(job)
        left = budget_s - (time.perf_counter() - start)
        # predictions from earlier, smaller configurations of the same network
        along = "batch_size" if job.get("sweep") == "batch" else "n_genes"
        # full self-attention decides for itself (it refuses before allocating); no prediction
        guarded = (job.get("config") or {}).get("self_attention") == "full"
        mem = None if guarded else _predict(rows, job, "peak_step_mb", along)
        step = None if guarded else _predict(rows, job, "train_step_s", along)
        if memory_limit_mb and mem is not None and mem > memory_limit_mb:
            rows.append({**base, "status": f"not run: predicted step memory {mem / 1024:.1f} GiB exceeds "
                         f"{memory_limit_mb / 1024:.1f} GiB available"})  # fmt: skip
            log(f"{name} G={job['genes']} B={job['batch']} {job['kind']}: {rows[-1]['status']}")
            continue
        if left < 20 or (step is not None and job["kind"] != "compile" and 12 * step > left):
            rows.append({**base, "status": "not run: benchmark time budget exhausted"})
            log(f"{name} G={job['genes']} B={job['batch']} {job['kind']}: {rows[-1]['status']}")
            continue
        job = {**job, "budget_s": min(job["budget_s"], left)}
        row = _run_subprocess(job, memory_limit_mb, timeout_s=min(job["budget_s"] + 60, max(left, 30)))
        row["sweep"] = job.get("sweep")
        rows.append(row)
        log(f"{name} G={job['genes']} B={job['batch']} {job['kind']}: {row.get('status')} "
            f"({row.get('seconds', float('nan')):.0f} s)")  # fmt: skip
        if partial is not None:
            import pandas as pd

            pd.DataFrame(rows).to_csv(partial, index=False)
    return rows


# ----------------------------------------------------------------------------------------------- report
def _fmt(value: Any, digits: int = 3) -> str:
    if value is None or (isinstance(value, float) and not math.isfinite(value)):
        return "–"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e6:
            return str(int(value))
        mag = math.floor(math.log10(abs(value)))
        return f"{value:.{max(digits - 1 - mag, 0)}f}" if -3 <= mag < 6 else f"{value:.3g}"
    return str(value)


def _table(df: Any, columns: list[tuple[str, str]]) -> str:
    head = "| " + " | ".join(title for _, title in columns) + " |"
    sep = "|" + "|".join("---" for _ in columns) + "|"
    body = ["| " + " | ".join(_fmt(r.get(c)) for c, _ in columns) + " |" for r in df.to_dict("records")]
    return "\n".join([head, sep, *body])


def exponents(df: Any, batch: int, ref_genes: int) -> Any:
    """Fitted log-log exponents of step time and memory against genes and against batch size per network.

    Parameters
    ----------
    df
        Tidy rows of :func:`run_jobs`.
    batch
        Batch size of the gene sweep.
    ref_genes
        Gene count of the batch sweep.
    """
    import pandas as pd

    out = []
    ok = df[(df["status"] == "ok") & (df["kind"] != "compile")]
    for name, grp in ok.groupby("network"):
        for against, along, sel in (
            ("genes", "n_genes", grp[grp["batch_size"] == batch]),
            ("batch", "batch_size", grp[(grp["n_genes"] == ref_genes) & (grp["sweep"] != "variants")]),
        ):
            sel = sel.drop_duplicates(along).sort_values(along)
            if len(sel) < 2:
                continue
            out.append(
                {
                    "network": name,
                    "against": against,
                    "range": f"{sel[along].min()}–{sel[along].max()}",
                    "points": len(sel),
                    "time_exponent": fit_exponent(sel[along], sel["train_step_s"]),
                    "memory_exponent": fit_exponent(sel[along], sel["peak_step_mb"]),
                }
            )
    return pd.DataFrame(out, columns=["network", "against", "range", "points", "time_exponent", "memory_exponent"])


def targets(df: Any, exps: Any, g_ref: int, b_ref: int) -> list[tuple[str, str, str]]:
    """``(target, PASS/FAIL/NOT MEASURED, evidence)`` for each target."""
    ok = df[df["status"] == "ok"]
    trainish = ok[ok["kind"].isin(["full", "train"])]
    res: list[tuple[str, str, str]] = []

    ratios = trainish[trainish["trainer_over_bare"].notna() & trainish["sweep"].isin(["genes", "batch"])]
    if len(ratios):
        # judged on each network's median over its configurations: single pairs are noisy on a shared machine
        med = ratios.groupby("network")["trainer_over_bare"].median()
        verdict = "PASS" if med.max() <= 1.10 else "FAIL"
        per = ", ".join(f"{n} {v:.3f}x" for n, v in med.items())
        res.append(("trainer ≤ 1.10x bare loop (median per network)", verdict,
                    f"{per}; single configurations ranged {ratios['trainer_over_bare'].min():.2f}–"
                    f"{ratios['trainer_over_bare'].max():.2f}x"))  # fmt: skip
    if len(trainish):
        worst = trainish.loc[trainish["data_over_step"].idxmin()]
        verdict = "PASS" if trainish["data_over_step"].min() >= DATA_RATIO_TARGET else "FAIL"
        res.append((f"data pipeline never makes the step wait (sampler ≥ {DATA_RATIO_TARGET:.0f}x step rate)", verdict,
                    f"lowest {worst['data_over_step']:.0f}x ({worst['network']}, G={worst['n_genes']}, "
                    f"B={worst['batch_size']}); sampling is {100 / worst['data_over_step']:.1f}% of that step"))  # fmt: skip
    for net in ("mlp", "gene_transformer"):
        # the registry default at the target size, whole batch or (transformer) in micro-batches
        sel = trainish[
            trainish["network"].isin([net, f"{net}[micro={MICRO_BATCH}]"])
            & (trainish["n_genes"] == g_ref)
            & (trainish["batch_size"] == b_ref)
        ]
        name = f"{net} ≥ 0.5 of matmul throughput at G={g_ref}, batch {b_ref}"
        if len(sel) and "fraction_of_matmul_local" in sel and sel["fraction_of_matmul_local"].notna().any():
            best = sel.loc[sel["fraction_of_matmul_local"].idxmax()]
            frac = float(best["fraction_of_matmul_local"])
            evidence = f"{frac:.2f} of fp32 matmul ({float(best['model_gflops']):.0f} GFLOP/s) as {best['network']}"
            if len(sel) > 1:
                evidence += "; " + ", ".join(
                    f"{r['network']} {r['fraction_of_matmul_local']:.2f}" for _, r in sel.iterrows()
                )
            res.append((name + " (registry default)", "PASS" if frac >= 0.5 else "FAIL", evidence))
        else:
            res.append((name + " (registry default)", "NOT MEASURED", "config not run"))
    wide = trainish[(trainish["sweep"] == "width") & trainish["fraction_of_matmul_local"].notna()]
    if len(wide):
        best = wide.loc[wide["fraction_of_matmul_local"].idxmax()]
        frac = float(best["fraction_of_matmul_local"])
        res.append((f"gene_transformer ≥ 0.5 of matmul throughput at G={g_ref}, wider tokens",
                    "PASS" if frac >= 0.5 else "FAIL",
                    f"best {frac:.2f} as {best['network']} (batch {best['batch_size']}); "
                    + ", ".join(f"{r['network']} {r['fraction_of_matmul_local']:.2f}" for _, r in wide.iterrows())))  # fmt: skip
    genes_exp = exps[exps["against"] == "genes"] if len(exps) else exps
    for nets, what in ((("unet1d", "mlp"), "memory linear in G"),
                       (("gene_transformer", "gene_transformer[latent]"), "transformer cross/latent memory linear in G")):  # fmt: skip
        parts, verdicts = [], []
        for net in nets:
            sel = genes_exp[genes_exp["network"] == net] if len(genes_exp) else genes_exp
            if not len(sel) or not math.isfinite(float(sel["memory_exponent"].iloc[0])):
                parts.append(f"{net}: not measured")
                verdicts.append("NOT MEASURED")
                continue
            k = float(sel["memory_exponent"].iloc[0])
            parts.append(f"{net}: exponent {k:.2f} over G {sel['range'].iloc[0]}")
            verdicts.append("PASS" if k <= LINEAR_EXPONENT else "FAIL")
        verdict = "FAIL" if "FAIL" in verdicts else ("NOT MEASURED" if "NOT MEASURED" in verdicts else "PASS")
        label_ = f"{' and '.join(nets)} {what}" if what == "memory linear in G" else what
        res.append((label_, verdict, "; ".join(parts)))
    return res


def projection(df: Any, matmul: dict[str, Any]) -> Any:
    """GPU-hours for a PRiMeFlow-size run per backbone, from FLOPs per cell at the largest measured G."""
    import pandas as pd

    ok = df[(df["status"] == "ok") & df["sweep"].isin(["genes", "batch"]) & df["flops_per_step"].notna()]
    out = []
    cells = ATLAS_CELLS * ATLAS_EPOCHS
    for name, grp in ok.groupby("network"):
        grp = grp.assign(per_cell=grp["flops_per_step"] / grp["batch_size"])
        per_g = grp.groupby("n_genes")["per_cell"].median()
        if per_g.index.max() >= ATLAS_GENES:
            per_cell = float(per_g.loc[per_g.index.max()]) * ATLAS_GENES / per_g.index.max()
            how = f"counted at G={per_g.index.max()}"
        elif len(per_g) >= 2:
            k = fit_exponent(per_g.index, per_g.values)
            per_cell = float(per_g.iloc[-1]) * (ATLAS_GENES / per_g.index[-1]) ** k
            how = f"extrapolated from G={per_g.index[-1]} with exponent {k:.2f}"
        else:
            continue
        total = per_cell * cells
        gpu_h = total / (H100_BF16_TFLOPS * 1e12 * ASSUMED_MFU) / 3600
        g_max = grp["n_genes"].max()
        cpu_rate = float(grp[grp["n_genes"] == g_max]["train_cells_per_s"].median()) * min(g_max / ATLAS_GENES, 1.0)
        out.append(
            {
                "network": name,
                "gflop_per_cell": per_cell / 1e9,
                "flops_source": how,
                "total_pflop": total / 1e15,
                "h100_hours": gpu_h,
                "h100_hours_at_5pct": gpu_h * ASSUMED_MFU / 0.05,
                "gpus_for_1_day": gpu_h / 24,
                "gpus_for_14_days": gpu_h / (24 * 14),
                "cpu_years": cells / cpu_rate / (3600 * 24 * 365) if cpu_rate > 0 else float("nan"),
            }
        )
    return pd.DataFrame(out)


def _counter_name(df: Any) -> str:
    names = df["flops_counter"].dropna().unique() if "flops_counter" in df else []
    return ", ".join(names) if len(names) else "FlopCounterMode"


def write_report(
    path: Path,
    df: Any,
    meta: dict[str, Any],
    args: argparse.Namespace,
    results_dir: Path,
) -> None:
    """Write the markdown report."""
    exps = exponents(df, args.batch, args.ref_genes)
    g_ref, b_ref = args.ref_genes, max(args.batches)
    tg = targets(df, exps, g_ref, b_ref)
    proj = projection(df, meta["matmul"])
    m = meta["matmul"]
    lines = [
        "# Performance",
        "",
        f"Written by `{meta['command']}` on {meta['date']} ({meta['elapsed_s'] / 60:.1f} min). "
        f"CPU: {meta['cpu']}, {meta['threads']} thread(s) used of {os.cpu_count()} cores; torch {meta['torch']}; "
        f"{meta['memory_gib']:.1f} GiB RAM available at start. GPU: {meta['gpu'] or 'none present'}.",
        "",
        f"**Machine load.** {meta['load_note']} Absolute speeds on a shared machine drift; the ratios (trainer "
        "over bare loop, fraction of the matmul throughput measured in the same subprocess a moment before) "
        "hold better than the cells/s.",
        "",
        "Every configuration runs in its own subprocess (fresh interpreter, synthetic data with the given gene "
        "count, trainer at `precision: fp32`, registry-default network knobs unless a variant is named). Times "
        "alternate the loops being compared so load drift hits them alike. Large configurations are timed for a "
        "few steps only; configurations that could not run say why instead of being dropped. Tidy data: "
        f"`{results_dir}/performance.csv`, `performance_exponents.csv`, `performance_matmul.csv`, "
        "`performance_projection.csv`.",
        "",
        "## Machine limit: dense matmul",
        "",
        "| device | threads | fp32 GFLOP/s | bf16 GFLOP/s |",
        "|---|---|---|---|",
        f"| CPU | {meta['threads']} | {m['cpu_fp32']:.0f} | {m['cpu_bf16']:.0f} |",
    ]
    if m.get("cuda_fp32"):
        lines.append(f"| {m['cuda_name']} | – | {m['cuda_fp32']:.0f} | {m['cuda_bf16']:.0f} |")
    lines += [
        "",
        "2048 x 2048 matmul, best of repeated calls. Each configuration also probes fp32 matmul for 0.3 s in its "
        "own process (`matmul_fp32_gflops_local`); its fraction of the matmul throughput divides by that probe.",
        "",
        "## Targets",
        "",
        "| target | result | evidence |",
        "|---|---|---|",
        *[f"| {t} | **{v}** | {e} |" for t, v, e in tg],
        "",
        "## Per backbone and gene count",
        "",
        f"Batch {args.batch}. Train = `FlowTrainer.train_step` at its defaults (sampler, objective, clipping at "
        "norm 1, scheduler, EMA applied every 10 steps); bare = forward, loss, backward and fused AdamW on random "
        "tensors (`benchmarks/throughput.py: bare_loop_step`). "
        f"Sampling: {args.euler_steps}-step Euler and dopri5 (rtol = atol = 1e-5, adaptive; its NFE depends on "
        "the field, here a barely trained network, so read it as cost per solve of a smooth field) through "
        "`arch_lab.flow.generate` on as many cells as the batch. Peak = VmHWM over the first training step "
        "(optimizer state included) minus the RSS before it. FLOPs = forward + backward of the network "
        f"(`{_counter_name(df)}`, built on `torch.utils.flop_counter.FlopCounterMode`), the optimizer excluded. "
        "GFLOP/s = FLOPs per step over trainer step time; 'of matmul' divides it by the fp32 matmul probe of "
        "the same subprocess.",
        "",
    ]
    genes_df = df[df["sweep"] == "genes"].sort_values(["network", "n_genes"])
    full_cols = [("network", "network"), ("n_genes", "G"), ("parameters", "params"),
                 ("train_cells_per_s", "train cells/s"), ("sample_cells_per_s_euler", "Euler cells/s"),
                 ("sample_cells_per_s_dopri5", "dopri5 cells/s"), ("dopri5_nfe", "dopri5 NFE"),
                 ("peak_step_mb", "step peak MiB"), ("flops_per_step", "FLOPs/step"),
                 ("model_gflops", "GFLOP/s"), ("fraction_of_matmul_local", "of matmul"),
                 ("trainer_over_bare", "trainer/bare"), ("trainer_over_torchcfm", "trainer/torchcfm"),
                 ("data_over_step", "sampler/step"), ("status", "status")]  # fmt: skip
    lines += [_table(genes_df, full_cols), ""]
    if "torchcfm_cells_per_s" not in df or df["torchcfm_cells_per_s"].isna().all():
        lines += ["torchcfm was not importable, so the torchcfm comparison is absent.", ""]
    else:
        lines += [
            f"trainer/torchcfm (at G = {args.ref_genes} only, to save time): the same network trained by a loop around torchcfm's `ConditionalFlowMatcher` "
            "(sigma 0, AdamW); torchcfm is a dev-only comparison (`pip install --no-deps torchcfm`), not a "
            "dependency. sampler/step: batches per second the trainer's `ConditionSampler` (plus the Gaussian "
            "source) produces over steps per second the training step consumes.",
            "",
        ]
    batch_df = df[(df["n_genes"] == args.ref_genes) & df["sweep"].isin(["genes", "batch"])]
    batch_df = batch_df.sort_values(["network", "batch_size"])
    if len(batch_df):
        lines += [
            f"## Against batch size (G = {args.ref_genes})",
            "",
            _table(
                batch_df,
                [
                    ("network", "network"),
                    ("batch_size", "batch"),
                    ("train_cells_per_s", "train cells/s"),
                    ("peak_step_mb", "step peak MiB"),
                    ("model_gflops", "GFLOP/s"),
                    ("fraction_of_matmul_local", "of matmul"),
                    ("trainer_over_bare", "trainer/bare"),
                    ("data_over_step", "sampler/step"),
                    ("status", "status"),
                ],
            ),  # fmt: skip
            "",
        ]
    var_df = df[df["sweep"] == "variants"].sort_values(["network", "n_genes"])
    if len(var_df):
        lines += [
            f"## Gene mixing in the transformer (batch {args.batch})",
            "",
            "`gene_transformer[latent]` (latents read all genes, genes read the latents) and "
            "`gene_transformer[full]` (gene-gene self-attention). Full attention is refused before allocation "
            "where its attention weights would exceed the available memory "
            "(`arch_lab.networks.layers.attention.check_full_attention_memory`).",
            "",
            _table(
                var_df,
                [
                    ("network", "network"),
                    ("n_genes", "G"),
                    ("train_cells_per_s", "train cells/s"),
                    ("peak_step_mb", "step peak MiB"),
                    ("flops_per_step", "FLOPs/step"),
                    ("fraction_of_matmul_local", "of matmul"),
                    ("status", "status"),
                ],
            ),  # fmt: skip
            "",
        ]
    tx = df[df["sweep"].isin(["micro", "width"]) | ((df["network"] == "gene_transformer") & (df["n_genes"] == g_ref)
             & (df["batch_size"] == b_ref) & (df["sweep"] == "batch"))].sort_values(["sweep", "network"])  # fmt: skip
    if len(tx):
        lines += [
            f"## Transformer: micro-batches and token width (G = {g_ref})",
            "",
            "The registry-default transformer has 64-wide gene tokens: every layer is a thin product followed by "
            "element-wise work (normalisation, modulation, GELU, residuals) over a `[batch, genes, 64]` tensor, "
            f"so it is memory-bound, and a whole batch of {b_ref} x {g_ref} tokens spills the caches. "
            f"`optim.micro_batch_size` runs forward and backward over blocks of rows and accumulates the "
            "gradients (the same step as the whole batch, tested), which keeps each block's activations in cache; "
            "wider tokens (feed-forward 4x, 32-wide heads) raise the arithmetic per byte moved. Width rows run a "
            f"batch of {WIDTH_BATCH} in micro-batches of 8 (the fraction is per block, so a batch of 256 in the "
            "same blocks runs at the same fraction) and are timed without the bare loop.",
            "",
            _table(
                tx,
                [
                    ("network", "network"),
                    ("batch_size", "batch"),
                    ("parameters", "params"),
                    ("train_cells_per_s", "train cells/s"),
                    ("peak_step_mb", "step peak MiB"),
                    ("flops_per_step", "FLOPs/step"),
                    ("model_gflops", "GFLOP/s"),
                    ("fraction_of_matmul_local", "of matmul"),
                    ("trainer_over_bare", "trainer/bare"),
                    ("status", "status"),
                ],
            ),  # fmt: skip
            "",
        ]
    lines += ["## How cost grows", "",
              "Least-squares slope of log(step time) and log(step peak memory) against log(G) at fixed batch, and "
              f"against log(batch) at G = {args.ref_genes}. 1 = linear; below 1 where fixed costs still dominate "
              "the small end.", ""]  # fmt: skip
    if len(exps):
        lines += [_table(exps, [("network", "network"), ("against", "against"), ("range", "range"),
                                ("points", "points"), ("time_exponent", "time exponent"),
                                ("memory_exponent", "memory exponent")]), ""]  # fmt: skip
    comp = df[df["kind"] == "compile"]
    lines += ["## `train.compile`", ""]
    if len(comp):
        lines += [
            f"Trainer step with `train.compile: true` over eager at G = {args.ref_genes}, batch {args.batch} "
            "(interleaved, after the first compiled step).",
            "",
            _table(
                comp,
                [
                    ("network", "network"),
                    ("compile_first_step_s", "first step s (compiling)"),
                    ("eager_step_s", "eager step s"),
                    ("compiled_step_s", "compiled step s"),
                    ("compiled_over_eager", "compiled/eager"),
                    ("status", "status"),
                ],
            ),  # fmt: skip
            "",
        ]
    else:
        lines += ["Not measured in this run (`--quick` skips it).", ""]
    lines += [
        "## Atlas-scale projection",
        "",
        f"A PRiMeFlow-size run: {ATLAS_GENES:,} genes (the VCC release uses 18,001 genes, VCC 2025 H1 18,080), "
        f"{ATLAS_CELLS:,} cells (the VCC pretraining atlas), {ATLAS_EPOCHS} epochs assumed (PRiMeFlow's epoch and "
        f"step counts are not published), i.e. {ATLAS_CELLS * ATLAS_EPOCHS / 1e6:.0f} M cell-passes. PRiMeFlow "
        "itself requested 12 GPUs for up to 14 days for VCC pretraining (a requested ceiling, not a measured "
        "runtime) and trained with per-GPU batches of 38–54.",
        "",
        "No GPU was present, so GPU time is computed, not measured: model FLOPs per cell (forward + backward, "
        "counted at the largest G measured, scaled linearly to 18,000 where needed), the optimizer and data "
        f"loading ignored, on an H100 SXM at {H100_BF16_TFLOPS:.0f} TFLOP/s dense bf16 with an assumed "
        f"{ASSUMED_MFU:.0%} model FLOP utilisation. Convolutions over a 1-channel-to-64-channel gene axis and "
        "64-wide gene tokens run far below peak on GPUs too, so treat these as lower bounds on time."
        if not m.get("cuda_fp32")
        else "GPU numbers measured on the device listed above.",
        "",
    ]
    if len(proj):
        lines += [
            _table(
                proj,
                [
                    ("network", "network"),
                    ("gflop_per_cell", "GFLOP/cell"),
                    ("flops_source", "FLOPs from"),
                    ("total_pflop", "total PFLOP"),
                    ("h100_hours", "H100-hours"),
                    ("h100_hours_at_5pct", "H100-hours at 5%"),
                    ("gpus_for_1_day", "H100s for 1 day"),
                    ("gpus_for_14_days", "H100s for 14 days"),
                    ("cpu_years", "years on this CPU"),
                ],
            ),  # fmt: skip
            "",
            "Registry defaults are small networks (the U-Net has 16 base channels, the transformer 64-wide tokens "
            "and 2 blocks), so these hours are small; a guided-diffusion-size U-Net (128 base channels) costs about "
            "(128/16)^2 = 64x the FLOPs of the default. Narrow layers are memory-bound, so 35% utilisation is "
            "optimistic for them: the 5% column is the pessimistic case, near what this CPU reached. Years on this "
            "CPU: the measured training cells/s at the largest G run, scaled linearly to 18,000 genes.",
            "",
        ]
    lines += ["## Notes", "", *[f"- {n}" for n in meta["notes"]], ""]
    if DISCUSSION.is_file():  # hand-written reading of the numbers, kept across regenerations
        lines += [DISCUSSION.read_text().rstrip(), ""]
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("\n".join(lines))
    exps.to_csv(results_dir / "performance_exponents.csv", index=False)
    proj.to_csv(results_dir / "performance_projection.csv", index=False)


# ------------------------------------------------------------------------------------------------- main
def build_jobs(args: argparse.Namespace, networks: list[str]) -> list[dict[str, Any]]:
    """Every configuration to measure, in priority order (a cut time budget drops the tail).

    Order: the gene sweep at the two smallest G, the batch sweep's largest batch (the throughput target), the
    compile comparison, the rest of the gene sweep, the transformer variants, then the other batch sizes.
    """
    common = {"threads": args.threads, "tiny": args.tiny, "euler_steps": args.euler_steps,
              "min_seconds": args.min_seconds, "max_seconds": args.max_seconds, "budget_s": args.config_budget}  # fmt: skip
    genes = sorted(args.genes)
    first, rest = genes[:2], genes[2:]

    def gene_jobs(gs: list[int]) -> list[dict[str, Any]]:
        return [{**common, "kind": "full", "sweep": "genes", "network": net, "config": {}, "genes": g,
                 "batch": args.batch, "torchcfm": g == args.ref_genes} for g in gs for net in networks]  # fmt: skip

    def batch_jobs(bs: list[int]) -> list[dict[str, Any]]:
        return [{**common, "kind": "train", "sweep": "batch", "network": net, "config": {}, "genes": args.ref_genes,
                 "batch": b} for b in bs for net in networks
                if not (b == args.batch and args.ref_genes in args.genes)]  # fmt: skip

    batches = sorted(args.batches)
    jobs = gene_jobs(first) + batch_jobs(batches[-1:])
    if "gene_transformer" in networks and not args.tiny:
        # the transformer at the target batch in micro-batches, then wider tokens (same micro-block per row)
        jobs += [{**common, "kind": "train", "sweep": "micro", "network": "gene_transformer", "config": {},
                  "optim": {"micro_batch_size": MICRO_BATCH}, "genes": args.ref_genes, "batch": batches[-1]}]  # fmt: skip
        if not args.quick:
            jobs += [{**common, "kind": "train", "sweep": "width", "network": "gene_transformer", "bare": False,
                      "config": {"dim": d, "heads": d // 32, "ff_mult": 4}, "optim": {"micro_batch_size": 8},
                      "genes": args.ref_genes, "batch": WIDTH_BATCH, "min_seconds": min(args.min_seconds, 1.0)}
                     for d in WIDTHS]  # fmt: skip
    if not args.quick:
        jobs += [{**common, "kind": "compile", "sweep": "compile", "network": net, "config": {},
                  "genes": args.ref_genes, "batch": args.batch, "budget_s": args.compile_budget}
                 for net in networks]  # fmt: skip
    jobs += gene_jobs(rest)
    if "gene_transformer" in networks and not args.tiny:
        quick_timing = {"min_seconds": min(args.min_seconds, 0.5), "max_seconds": min(args.max_seconds, 8.0)}
        jobs += [{**common, **quick_timing, "kind": "train", "sweep": "variants", "network": "gene_transformer",
                  "config": {"self_attention": mix}, "genes": g, "batch": args.batch}
                 for g in genes for mix in ("latent", "full")]  # fmt: skip
    return jobs + batch_jobs(batches[:-1])


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line options, with the defaults that depend on ``--quick`` filled in."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("docs/performance.md"), help="markdown report")
    parser.add_argument("--results", type=Path, default=Path("benchmarks/results"), help="folder for the CSVs")
    parser.add_argument("--quick", action="store_true", help="short run: G=500, 2000; batches 32, 64; no compile")
    parser.add_argument("--genes", type=int, nargs="+", default=None, help=f"gene counts (default {GENES})")
    parser.add_argument("--batch", type=int, default=None, help="batch size of the gene sweep (default 32)")
    parser.add_argument("--batches", type=int, nargs="+", default=None, help=f"batch sweep (default {BATCHES})")
    parser.add_argument("--ref-genes", type=int, default=2000, help="G of the batch sweep and compile")
    parser.add_argument("--networks", nargs="+", default=None, help="registered networks (default all)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--euler-steps", type=int, default=10)
    parser.add_argument("--min-seconds", type=float, default=None, help="timing per loop and configuration")
    parser.add_argument("--max-seconds", type=float, default=None, help="cap on timing per configuration")
    parser.add_argument(
        "--budget", type=float, default=900.0, help="seconds for the whole run (configs beyond: not run)"
    )
    parser.add_argument("--config-budget", type=float, default=90.0, help="seconds per configuration")
    parser.add_argument("--compile-budget", type=float, default=120.0, help="seconds per compile configuration")
    parser.add_argument("--tiny", action="store_true", help="each network's tiny test config (for tests)")
    parser.add_argument("--render", action="store_true", help="only rewrite the report from --results")
    parser.add_argument("--one", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    args.genes = args.genes or ([500, 2000] if args.quick else list(GENES))
    args.batch = args.batch or 32
    args.batches = args.batches or ([32, 64] if args.quick else list(BATCHES))
    args.min_seconds = args.min_seconds if args.min_seconds is not None else (0.3 if args.quick else 1.0)
    args.max_seconds = args.max_seconds if args.max_seconds is not None else (3.0 if args.quick else 20.0)
    return args


def main(argv: list[str] | None = None) -> int:
    """Measure, then write the markdown report and the CSVs."""
    args = parse_args(argv)
    if args.one:
        print(json.dumps(measure(json.loads(args.one))))
        return 0
    if args.render:  # rewrite the report from the CSV and metadata of an earlier run
        import pandas as pd

        meta = json.loads((args.results / "performance_meta.json").read_text())
        for key, value in meta["args"].items():
            setattr(args, key, value)
        write_report(args.out, pd.read_csv(args.results / "performance.csv"), meta, args, args.results)
        return 0

    import pandas as pd
    import torch

    from arch_lab.networks import list_networks

    if args.quick:
        args.ref_genes = args.ref_genes if args.ref_genes in args.genes else args.genes[-1]
    networks = args.networks or list_networks()
    args.results.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    load_start = os.getloadavg()

    torch.set_num_threads(args.threads)
    matmul: dict[str, Any] = {
        "threads": args.threads,
        # a quick run sizes the product down: without AVX512-BF16/AMX, bf16 is emulated (about 1 GFLOP/s per core)
        "cpu_fp32": matmul_gflops("fp32", n=512 if args.quick else 2048, seconds=0.5 if args.quick else 2.0),
        "cpu_bf16": matmul_gflops("bf16", n=512 if args.quick else 2048, seconds=0.5 if args.quick else 2.0),
    }
    if torch.cuda.is_available():
        matmul["cuda_name"] = torch.cuda.get_device_name()
        matmul["cuda_fp32"] = matmul_gflops("fp32", "cuda", n=8192)
        matmul["cuda_bf16"] = matmul_gflops("bf16", "cuda", n=8192)
    print(f"matmul: {matmul}", flush=True)

    avail = available_memory_mb()
    memory_limit = avail * 0.8 if avail else None
    partial = args.results / "performance.partial.csv"
    rows = run_jobs(build_jobs(args, networks), args.budget, memory_limit, lambda s: print(s, flush=True), partial)
    partial.unlink(missing_ok=True)
    df = pd.DataFrame(rows)
    for col in ("status", "sweep", "flops_per_step", "peak_step_mb", "train_step_s", "data_over_step",
                "trainer_over_bare", "fraction_of_matmul_local", "model_gflops", "train_cells_per_s"):  # fmt: skip
        if col not in df:
            df[col] = np.nan
    load_end = os.getloadavg()
    elapsed = time.perf_counter() - started
    busy = max(load_start[0], load_end[0], load_end[1])
    shared = busy > args.threads + 0.5
    load_note = (
        f"The machine was shared while measured: load average {load_start[0]:.1f} at the start and "
        f"{load_end[0]:.1f} (5-min {load_end[1]:.1f}) at the end on {os.cpu_count()} cores, while this run used "
        f"{args.threads} thread(s) (at `nice` {os.nice(0)})."
        if shared
        else f"Load average {load_start[0]:.1f} at the start and {load_end[0]:.1f} at the end on {os.cpu_count()} "
        f"cores; this run used {args.threads} thread(s) (at `nice` {os.nice(0)})."
    )
    notes = [
        "Networks use their registry defaults (`arch-lab networks` lists them); `gene_transformer` defaults to "
        "cross-attention only (`self_attention: none`).",
        "Memory is the resident-set high-water mark of the subprocess over one training step, minus its RSS "
        "before that step; small configurations sit near allocator granularity, so exponents over the smallest "
        "G understate linear growth rather than overstate it.",
        "Configurations were capped at 80% of the RAM available at the start (address-space limit plus a "
        "prediction from the smaller G of the same network); those predicted or found to exceed it are listed "
        "with the reason.",
    ]
    notes += [
        "Attention scores on CPU run in the fused flash kernel, which `FlopCounterMode` does not count: the transformer FLOPs are its projections and feed-forward layers (the cross-attention scores over at most a few condition tokens are negligible; for `[full]` and `[latent]` the score FLOPs are missing, so their fraction of matmul is a lower bound and they are left out of the projection).",
        "With few timing rounds per configuration on a shared machine, single cells/s values can be off by several times (a neighbour's burst lands on one configuration and not the next); trust ratios measured within one subprocess (trainer/bare, of matmul, compiled/eager) more than cross-configuration trends, and exponents fitted over two points least.",
    ]
    try:
        import torchcfm

        notes.append(f"torchcfm {torchcfm.__version__} (dev-only comparison, installed with `--no-deps`).")
    except Exception:
        notes.append("torchcfm not importable: no torchcfm comparison.")
    meta = {
        "command": "python -m benchmarks.performance " + " ".join(argv if argv is not None else sys.argv[1:]),
        "date": dt.datetime.now().strftime("%Y-%m-%d %H:%M"),
        "elapsed_s": elapsed,
        "cpu": cpu_model(),
        "threads": args.threads,
        "torch": torch.__version__,
        "memory_gib": (avail or float("nan")) / 1024,
        "gpu": matmul.get("cuda_name"),
        "matmul": matmul,
        "load_note": load_note,
        "notes": notes,
        "python": platform.python_version(),
    }
    meta["args"] = {k: getattr(args, k) for k in ("batch", "batches", "ref_genes", "euler_steps", "genes")}
    df.to_csv(args.results / "performance.csv", index=False)
    pd.DataFrame([matmul]).to_csv(args.results / "performance_matmul.csv", index=False)
    (args.results / "performance_meta.json").write_text(json.dumps(meta, indent=2))
    write_report(args.out, df, meta, args, args.results)
    print(f"wrote {args.out} and {args.results}/performance*.csv ({elapsed / 60:.1f} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
