"""``arch-lab sweep ...``: a thin typer layer over :mod:`arch_lab.sweeps`."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated, Any

import typer

from arch_lab.cli.errors import fail, friendly_with

sweep_app = typer.Typer(
    no_args_is_help=True, help="Hyperparameter sweeps from a YAML: run, join, inspect and export Optuna studies."
)
#: User errors as one line; Ctrl-C says the running trials were requeued.
_friendly = friendly_with("interrupted; running trials were requeued: rerun the same command to resume")

ProfileOpt = Annotated[
    str | None,
    typer.Option(help="A profile of the sweep YAML (profiles:), e.g. quick; the study becomes <name>_<profile>."),
]
ParallelRunsOpt = Annotated[
    int,
    typer.Option(
        help="Train up to this many of a trial's runs (seeds, folds) at once, each in its own process "
        "(needs pruner: none)."
    ),
]
StorageOpt = Annotated[
    str | None,
    typer.Option(help="Storage URL (sqlite:///FILE, postgresql+psycopg2://USER@HOST/DB or journal:FILE)."),
]


def _logging() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("arch_lab.sweeps").setLevel(logging.INFO)


@sweep_app.command("run")
@_friendly
def run(
    sweep: Annotated[Path, typer.Argument(help="Sweep YAML.")],
    workers: Annotated[int, typer.Option(help="Worker processes on this machine.")] = 1,
    storage: StorageOpt = None,
    threads: Annotated[
        int | None, typer.Option(help="Torch threads per worker (per run with --parallel-runs).")
    ] = None,
    profile: ProfileOpt = None,
    parallel_runs: ParallelRunsOpt = 1,
) -> None:
    """Create or resume the study and run its budget locally with N worker processes.

    Exits non-zero, naming them and the requeue command, when trials are left RUNNING with no worker to finish them.
    """
    from arch_lab.sweeps.launch import run_sweep
    from arch_lab.sweeps.report import stuck_message

    _logging()
    result = run_sweep(
        sweep, workers=workers, storage=storage, threads=threads, profile=profile, parallel_runs=parallel_runs
    )
    _print_status(result.status)
    stuck = stuck_message(result.status, sweep, storage, profile)
    if stuck:
        fail(stuck)


@sweep_app.command("worker")
@_friendly
def worker(
    sweep: Annotated[Path, typer.Argument(help="Sweep YAML (the same file on every machine).")],
    storage: StorageOpt = None,
    worker_id: Annotated[
        int | None, typer.Option(help="Distinct per worker (e.g. $SLURM_ARRAY_TASK_ID); seeds its sampler.")
    ] = None,
    threads: Annotated[
        int | None, typer.Option(help="Torch threads for this worker (per run with --parallel-runs).")
    ] = None,
    profile: ProfileOpt = None,
    parallel_runs: ParallelRunsOpt = 1,
) -> None:
    """Join a study (creating it if needed) and run queued trials until its budget is done."""
    import os

    from arch_lab.sweeps.launch import resolve_storage
    from arch_lab.sweeps.sweep import load_sweep
    from arch_lab.sweeps.worker import run_worker

    _logging()
    if threads:
        import torch

        torch.set_num_threads(threads)
    spec = load_sweep(sweep, profile)
    offset = worker_id if worker_id is not None else os.getpid()
    report = run_worker(spec, resolve_storage(spec, storage), seed_offset=offset, parallel_runs=parallel_runs)
    typer.echo(f"worker ran {len(report.trials)} trials {report.trials}; stopped: {report.stopped}")


@sweep_app.command("status")
@_friendly
def status(
    study: Annotated[str, typer.Argument(help="Sweep YAML or study name.")],
    storage: StorageOpt = None,
    top: Annotated[int, typer.Option(help="Best trials to list.")] = 5,
    profile: ProfileOpt = None,
) -> None:
    """Progress, best trials and failures (with reasons) of a study."""
    from arch_lab.sweeps.report import sweep_status

    _print_status(sweep_status(study, storage, top=top, profile=profile))


@sweep_app.command("requeue")
@_friendly
def requeue(
    study: Annotated[str, typer.Argument(help="Sweep YAML or study name.")],
    storage: StorageOpt = None,
    older_than: Annotated[
        float, typer.Option("--older-than", help="Only trials that started more than S seconds ago.", metavar="S")
    ] = 0.0,
    profile: ProfileOpt = None,
) -> None:
    """Fail and requeue RUNNING trials whose workers are gone (killed, lost machine); works for every storage.

    A trial whose worker runs on this machine and is alive is left alone; workers on other machines cannot be seen
    from here, so requeue only when you know they are gone. Rerun the sweep (or a worker) to run the retries.
    """
    from arch_lab.sweeps.worker import requeue_running

    report = requeue_running(study, storage, older_than=older_than, profile=profile)
    for number, retry in report.requeued:
        typer.echo(
            f"trial {number} failed (worker lost); "
            + (f"requeued as trial {retry}" if retry is not None else "not requeued: its retries are used up")
        )
    for number, why in report.left:
        typer.echo(f"trial {number} left running: {why}")
    if not report.requeued and not report.left:
        typer.echo("no running trial")


@sweep_app.command("export")
@_friendly
def export(
    study: Annotated[str, typer.Argument(help="Sweep YAML or study name.")],
    out: Annotated[Path, typer.Option(help="CSV to write.")] = Path("trials.csv"),
    storage: StorageOpt = None,
    profile: ProfileOpt = None,
    runs: Annotated[
        bool, typer.Option("--runs", help="One row per completed run (trial x seed) with its metrics instead.")
    ] = False,
) -> None:
    """Write one CSV row per trial (params, state, value, per-seed values, run directories, reasons), or with
    --runs one row per completed run (arm, seed, parameters, FLOPs, steps, every metric, floor and ceiling).
    """
    from arch_lab.analysis.tidy import export_runs
    from arch_lab.sweeps.report import export_trials

    if runs:
        df = export_runs(study, out, storage, profile)
        typer.echo(f"wrote {out} ({len(df)} runs)")
        return
    df = export_trials(study, out, storage, profile)
    typer.echo(f"wrote {out} ({len(df)} trials)")


def _print_status(st: Any) -> None:
    typer.echo(f"study {st.name}  storage {st.storage}")
    typer.echo(f"objective {st.direction} {st.objective}")
    counts = ", ".join(f"{k.lower()} {v}" for k, v in st.counts.items()) or "no trials"
    typer.echo(f"budget {st.finished}/{st.slots} finished; trials: {counts}")
    for row in st.best:
        seeds = ", ".join(f"{v:.4g}" for v in row["values_per_seed"] or [])
        params = ", ".join(f"{k}={v}" for k, v in row["params"].items())
        typer.echo(f"  best #{row['number']}: {row['value']:.4g} (seeds {seeds})  {params}")
    for row in st.running:
        gone = " (worker gone)" if row.get("gone") else ""
        line = f"  running #{row['number']} on {row['worker']}{gone}"
        if "step" in row:
            from arch_lab.sweeps.worker import format_duration

            line += (
                f": run {row['run']}/{row['runs']}, step {row['step']}/{row['max_steps']}, about "
                f"{format_duration(row['eta_seconds'])} left in this run"
            )
            if row.get("running", 1) > 1:
                line += f" (the last of {row['running']} runs training at once)"
        typer.echo(line)
    for row in st.failures:
        typer.echo(f"  {row['state'].lower()} #{row['number']}: {row['reason']}")
