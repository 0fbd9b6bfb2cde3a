"""The top-level ``arch-lab`` commands (train, runs, predict, networks, methods, compare, report, synth, preprocess);
``arch-lab sweep`` is :mod:`arch_lab.cli.sweep`.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated, Any, Literal

import typer

from arch_lab.cli.errors import USER_ERROR, friendly
from arch_lab.cli.sweep import sweep_app
from arch_lab.errors import ArchLabError
from arch_lab.rundir import RunDir, is_run_dir

app = typer.Typer(
    add_completion=False, no_args_is_help=True, help="Velocity networks for flow-matching models of cell perturbation."
)
app.add_typer(sweep_app, name="sweep")
export_app = typer.Typer(help="Write a run's predictions in the layout another evaluator reads.", no_args_is_help=True)
app.add_typer(export_app, name="export")


def _print_version(value: bool) -> None:
    if value:
        from arch_lab import __version__

        typer.echo(f"arch-lab {__version__}")
        raise typer.Exit()


@app.callback()
def _root(
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    """Velocity networks for flow-matching models of cell perturbation."""


def _overrides(values: list[str] | None) -> dict[str, Any]:
    from arch_lab.config import parse_override

    return dict(parse_override(v) for v in values or [])


SetOpt = Annotated[
    list[str] | None,
    typer.Option("--set", "-s", help="Override a config key, e.g. --set network.name=mlp (repeatable)."),
]


@app.command()
@friendly
def train(
    experiment: Annotated[Path | None, typer.Argument(help="Experiment YAML.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run directory.")] = None,
    set_: SetOpt = None,
    run_dir: Annotated[
        Path | None, typer.Option("--run-dir", help="Write into this directory (new, or holding no run).")
    ] = None,
) -> None:
    """Train and evaluate one experiment; writes a run directory."""
    if resume is not None:
        extra = [what for what, given in (("EXPERIMENT", experiment), ("--set", set_), ("--run-dir", run_dir)) if given]
        if extra:
            raise ArchLabError(
                f"--resume continues {resume} with its own config.yaml; drop {' and '.join(extra)} (to change the "
                "config, start a new run from a YAML)"
            )
        from arch_lab import api

        result = api.resume(resume, notes=_note)
    elif experiment is None:
        raise ArchLabError("give an EXPERIMENT.yaml, or --resume RUN_DIR")
    else:
        from arch_lab.config import load_experiment

        # the config is checked before torch and anndata are imported, so a config error returns at once
        cfg = load_experiment(experiment, _overrides(set_))
        if run_dir is not None:
            RunDir(run_dir).check_unused()
        from arch_lab import api

        result = api.train(cfg, run_dir=run_dir, notes=_note)
    if result.rank == 0:  # under torchrun the other ranks only train
        _print_summary(result.run_dir, result.summary, result.reference)


def _note(message: str) -> None:
    """Print a note about the data on stderr (``note: ...``)."""
    typer.echo(f"note: {message}", err=True)


@app.command()
@friendly
def runs(
    folders: Annotated[list[Path] | None, typer.Argument(help="Run directories or folders of runs.")] = None,
) -> None:
    """List run directories with their status; a running run whose process is gone says so, and how to resume it."""
    found: list[RunDir] = []
    for folder in folders or [Path("runs")]:
        if not folder.exists():
            raise ArchLabError(f"{folder}: no such folder; pass a run directory or a folder of runs")
        found += [RunDir(folder)] if is_run_dir(folder) else RunDir.find(folder)
    if not found:
        raise ArchLabError(f"no run directory under {', '.join(str(f) for f in folders or [Path('runs')])}")
    for run in found:
        typer.echo(f"{run.path}  {run.describe_status()}")


def _print_summary(run_dir: Path, summary: dict[str, float], reference: dict[str, dict[str, float]] | None) -> None:
    from rich.console import Console
    from rich.table import Table

    keys = [
        "energy_distance",
        "energy_distance_pca",
        "cosine_logfc",
        "pearson_delta",
        "rmse_mean",
        "rmse_mean_rank",
        "deg_recall",
    ]
    table = Table(title=str(run_dir))
    table.add_column("metric")
    table.add_column("model", justify="right")
    for name in reference or {}:
        table.add_column(name, justify="right")
    for k in keys:
        if k in summary:
            row = [k, f"{summary[k]:.4f}"] + [
                f"{(reference or {})[n].get(k, float('nan')):.4f}" for n in (reference or {})
            ]
            table.add_row(*row)
    Console(stderr=False).print(table)


@app.command()
@friendly
def predict(
    run_dir: Annotated[Path, typer.Argument(help="A completed run directory.")],
    conditions: Annotated[
        Path, typer.Option(help="CSV with the data's perturbation column and its covariate columns.")
    ],
    out: Annotated[Path, typer.Option(help="Output .h5ad.")] = Path(RunDir.PREDICTIONS),
    n_cells: Annotated[
        str, typer.Option(help="Cells per condition: a number, or 'observed' (as many as the data holds).")
    ] = "100",
    seed: int = 0,
) -> None:
    """Generate cells for the conditions listed in a CSV."""
    from arch_lab import api

    count: int | Literal["observed"]
    if n_cells == "observed":
        count = "observed"
    elif n_cells.isdigit() and int(n_cells) > 0:
        count = int(n_cells)
    else:
        raise ArchLabError(f"--n-cells {n_cells}: give a positive number of cells or 'observed'")
    adata = api.predict(run_dir, conditions, out, n_cells=count, seed=seed)
    typer.echo(f"wrote {adata.n_obs} cells × {adata.n_vars} genes to {out}")


@export_app.command("cell-eval")
@friendly
def export_cell_eval(
    run_dir: Annotated[Path, typer.Argument(help="A completed run directory.")],
    out: Annotated[Path, typer.Option(help="Folder for pred.h5ad and real.h5ad.")],
) -> None:
    """Write pred.h5ad and real.h5ad for cell-eval and print the cell-eval command that scores them."""
    from arch_lab.export import export_run_cell_eval

    export = export_run_cell_eval(run_dir, out)
    typer.echo(f"wrote {export.pred} and {export.real}; score them with:")
    typer.echo(export.command())


@app.command()
@friendly
def networks(
    experiment: Annotated[Path | None, typer.Argument(help="Experiment YAML giving the data spec.")] = None,
    set_: SetOpt = None,
) -> None:
    """List registered velocity networks with their parameter counts for an experiment."""
    from arch_lab.networks import build_network, count_parameters, get_network_class, list_networks

    spec = None
    if experiment is not None:
        from arch_lab.config import load_experiment
        from arch_lab.data.task import build_task

        cfg = load_experiment(experiment, _overrides(set_))
        spec = build_task(cfg).spec
    for name in list_networks():
        line = f"{name:20s}"
        if spec is not None:
            knobs = cfg.network.knobs() if cfg.network.name == name else {}
            line += f" {count_parameters(build_network(name, knobs, spec)):>12,d} parameters at G={spec.n_genes}"
        doc = (get_network_class(name).__doc__ or "").strip().splitlines()
        typer.echo(line + (f"  {doc[0]}" if doc else ""))


@app.command()
@friendly
def methods() -> None:
    """List registered prediction methods."""
    from arch_lab.methods import list_methods

    for name in list_methods():
        typer.echo(name)


@app.command()
@friendly
def compare(
    experiments: Annotated[list[Path], typer.Argument(help="Experiment YAMLs (tasks).")],
    methods_: Annotated[
        list[str] | None, typer.Option("--method", "-m", help="Method or network name (repeatable).")
    ] = None,
    seeds: Annotated[int, typer.Option(help="Seeds per method.")] = 1,
    out: Annotated[
        Path,
        typer.Option(
            help="Markdown file; its tables go between '<!-- arch-lab compare: begin/end -->' markers (text outside "
            "them is kept), the rows to the CSV beside it."
        ),
    ] = Path("results/scoreboard.md"),
    set_: SetOpt = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Train every job again; reuse no row of the CSV beside --out.")
    ] = False,
) -> None:
    """Run baselines and backbones on tasks and write a markdown scoreboard with floor and ceiling.

    Rows of the CSV beside --out are reused only when their resolved config (experiment, --set overrides, entry,
    seed) is the job's; the command says how many it reused and from where.
    """
    from arch_lab.scoreboard import default_entries, run_scoreboard

    board = run_scoreboard(
        experiments,
        methods_ or default_entries(),
        seeds=seeds,
        out=out,
        overrides=_overrides(set_),
        fresh=fresh,
        say=lambda line: typer.echo(line, err=True),
    )
    typer.echo(f"wrote {out} and {board.csv} ({len(board.table)} rows: {board.reused} reused, {board.trained} trained)")


@app.command()
@friendly
def report(
    sources: Annotated[
        list[str], typer.Argument(help="Run directories, folders of runs, or studies (name, storage URL, URL#NAME).")
    ],
    out: Annotated[Path, typer.Option(help="Folder for figures/, tables/ and report.md.")],
    metric: Annotated[
        str | None,
        typer.Option(help="Primary metric (default: the study's declared primary metric, else energy_distance)."),
    ] = None,
    storage: Annotated[str | None, typer.Option(help="Storage URL for bare study names.")] = None,
    condition: Annotated[
        list[str] | None, typer.Option(help="STATE/PERTURBATION shown in figures 6-7 (repeatable).")
    ] = None,
) -> None:
    """Write every figure the runs support, summary and paired comparison tables (t intervals, Holm-adjusted
    p-values, primary metric first), and report.md.
    """
    import warnings

    from arch_lab.analysis import build_report

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        result = build_report(sources, out, metric=metric, storage=storage, conditions=condition)
    for w in caught:
        if issubclass(w.category, UserWarning):
            typer.echo(f"warning: {w.message}", err=True)
    for name, why in result.skipped:
        typer.echo(f"not drawn: {name}: {why}", err=True)
    typer.echo(f"wrote {result.path} ({len(result.figures)} figures, {len(result.tables)} tables)")


@app.command()
@friendly
def synth(
    out: Annotated[Path, typer.Argument(help="Output .h5ad.")],
    set_: Annotated[
        list[str] | None,
        typer.Option("--set", "-s", help="Set a synthetic-benchmark key, e.g. --set locality=0.5 (repeatable)."),
    ] = None,
) -> None:
    """Write the synthetic perturb-seq benchmark (known ground truth, gene-order locality) to an .h5ad file."""
    from arch_lab.data.synthetic import program_contiguity, synthetic_config, write_synthetic

    adata = write_synthetic(synthetic_config(_overrides(set_)), out)
    typer.echo(
        f"wrote {adata.n_obs} cells × {adata.n_vars} genes to {out} (program contiguity "
        f"{program_contiguity(adata):.2f})"
    )


@app.command()
@friendly
def preprocess(
    src: Annotated[Path, typer.Argument(help="Raw-count .h5ad or .zarr (dense or CSR).")],
    out: Annotated[Path, typer.Argument(help="Output .h5ad, log-normalised.")],
    layer: Annotated[str | None, typer.Option(help="Read counts from this layer instead of X.")] = None,
    chunk_size: Annotated[int, typer.Option(help="Rows per read and write.")] = 2048,
    max_genes: Annotated[
        int | None, typer.Option(help="Also mark this many highly variable genes in var['highly_variable'].")
    ] = None,
) -> None:
    """Write a log-normalised copy chunk by chunk (median total count, log1p) for data.storage: backed."""
    from arch_lab.data.backed import normalize_file

    info = normalize_file(src, out, layer=layer, chunk_size=chunk_size, max_genes=max_genes)
    typer.echo(
        f"wrote {out} ({info['cells']} cells x {info['genes']} genes, median total {info['target']:.0f}, "
        f"{info['seconds']:.1f} s)"
    )


def main() -> None:
    """Console-script entry point."""
    try:
        app()
    except ArchLabError as exc:  # errors raised outside a command's own handler (e.g. while importing it)
        typer.echo(f"error: {exc}", err=True)
        sys.exit(USER_ERROR)
