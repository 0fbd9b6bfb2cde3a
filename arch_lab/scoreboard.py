"""Baselines and backbones on the same tasks, with each task's floor and ceiling, as one table.

The rows live in a CSV beside the markdown (``results/scoreboard.md`` -> ``results/scoreboard.csv``), one per
(task, entry, seed), each with the key of the resolved config it was trained with (:func:`config_key`: the
experiment with its ``--set`` overrides, the entry and the seed). A rerun reuses a row only when its job's
resolved config has the same key, and says how many it reused and from which file; everything else is trained
again (``fresh=True``: everything), and the rows of tasks the call does not run are kept as they are. The
markdown's generated tables go between :data:`BEGIN` and :data:`END`; text outside the markers is never changed.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from tqdm.auto import tqdm

from arch_lab.config import ExperimentConfig, load_experiment
from arch_lab.data.task import build_task
from arch_lab.errors import ArchLabError, ConfigError
from arch_lab.methods import list_methods, task_config
from arch_lab.networks import list_networks
from arch_lab.rundir import RunDir, atomic_path

#: Opening marker of the generated tables in the markdown file.
BEGIN = "<!-- arch-lab compare: begin -->"
#: Closing marker of the generated tables in the markdown file.
END = "<!-- arch-lab compare: end -->"
#: Config keys that do not change a result (where files go, whether a progress bar is drawn): not in the key.
IGNORED_KEYS = ("output_dir", "base_dir", "train.progress")
#: Where the scoreboard's runs go.
RUN_ROOT = "runs/scoreboard"
FLOOR, CEILING = "floor (no_change)", "ceiling (split-half)"

COLUMNS = ("energy_distance", "energy_distance_pca", "cosine_logfc", "pearson_delta", "rmse_mean", "rmse_mean_rank",
           "cosine_logfc_rank", "deg_recall")  # fmt: skip


def default_entries() -> list[str]:
    """Every registered baseline (each method but ``flow_matching``), then every registered network."""
    return [m for m in list_methods() if m != "flow_matching"] + list_networks()


def entry_overrides(entry: str) -> dict[str, Any]:
    """Config overrides that select a method or a backbone (``unet1d`` means flow matching with that network)."""
    if entry in list_networks():
        return {"method": {"name": "flow_matching", "params": {}}, "network": {"name": entry}}
    if entry in list_methods():
        return {"method": {"name": entry, "params": {}}}
    raise ConfigError(f"unknown entry {entry!r}: methods are {list_methods()}, networks are {list_networks()}")


def _key(payload: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def config_key(cfg: ExperimentConfig) -> str:
    """A short hash of the resolved config, without the keys of :data:`IGNORED_KEYS`.

    Two jobs with the same key train the same thing: same data, task, method, network, optimisation, budget,
    evaluation and seed.
    """
    raw = cfg.model_dump(mode="json")
    for dotted in IGNORED_KEYS:
        *parents, last = dotted.split(".")
        node = raw
        for p in parents:
            node = node.get(p, {})
        node.pop(last, None)
    return _key(raw)


def reference_key(cfg: ExperimentConfig) -> str:
    """A short hash of what a task's floor and ceiling depend on: the data, the task, the evaluation and the seed."""
    return _key({k: cfg.model_dump(mode="json")[k] for k in ("data", "task", "eval", "seed")})


@dataclass
class Job:
    """One (task, entry, seed) of the scoreboard with its resolved config."""

    experiment: Path
    entry: str
    seed: int
    cfg: ExperimentConfig
    key: str


@dataclass
class Scoreboard:
    """What :func:`run_scoreboard` did.

    Parameters
    ----------
    table
        One row per (task, entry, seed), plus ``floor (no_change)`` and ``ceiling (split-half)`` rows per task.
    jobs
        How many (task, entry, seed) jobs were asked for.
    reused
        Jobs whose row was taken from ``source`` (same resolved config).
    trained
        Jobs trained by this call.
    source
        The CSV the reused rows came from (None when nothing was read: no file, or ``fresh``).
    ignored
        Rows of ``source`` for this call's tasks left out because no job of this call has their resolved config
        (another budget, other overrides, or rows written before the config was recorded); they are replaced.
    kept
        Rows of ``source`` for tasks this call does not run, kept as they are.
    markdown, csv
        The files written (None without ``out``).
    notes
        What was said before training (see ``say`` in :func:`run_scoreboard`).
    """

    table: pd.DataFrame
    jobs: int = 0
    reused: int = 0
    trained: int = 0
    source: Path | None = None
    ignored: int = 0
    kept: int = 0
    markdown: Path | None = None
    csv: Path | None = None
    notes: list[str] = field(default_factory=list)


def job_config(experiment: Path, entry: str, seed: int, overrides: dict[str, Any] | None = None) -> ExperimentConfig:
    """The resolved config of one job: the experiment, the overrides, the seed, then the entry's method/network."""
    ov = {**(overrides or {}), "seed": seed, "output_dir": RUN_ROOT}
    cfg = load_experiment(experiment, ov)
    return cfg.model_copy(
        update={k: type(getattr(cfg, k)).model_validate(v) for k, v in entry_overrides(entry).items()}
    )


def _read_previous(csv_path: Path | None, fresh: bool) -> list[dict[str, Any]]:
    if fresh or csv_path is None or not csv_path.is_file():
        return []
    return pd.read_csv(csv_path).to_dict("records")


def _has_key(row: dict[str, Any]) -> bool:
    return isinstance(row.get("config_key"), str) and bool(row["config_key"])


def run_scoreboard(
    experiments: list[Path],
    entries: list[str],
    seeds: int = 1,
    out: Path | None = None,
    overrides: dict | None = None,
    fresh: bool = False,
    progress: bool = True,
    say: Callable[[str], None] | None = None,
) -> Scoreboard:
    """Train every entry on every task for ``seeds`` seeds; write ``out`` (markdown) and a CSV beside it.

    Parameters
    ----------
    experiments
        Experiment YAMLs (tasks).
    entries
        Method or network names (:func:`default_entries` for all).
    seeds
        Seeds per entry (0, 1, ...).
    out
        Markdown file: its generated tables are replaced between :data:`BEGIN` and :data:`END` (appended when
        the file has no markers; the rest of the file is kept). The rows go to the CSV of the same stem.
    overrides
        Dotted config overrides (``--set``) applied to every job.
    fresh
        Train everything; reuse no row of the CSV.
    progress
        Show a progress bar over the jobs to train and the trainer's bar within each.
    say
        Called with one line before training starts: how many rows are reused, from where, and how many jobs
        are trained.

    Returns
    -------
    Scoreboard
    """
    from arch_lab.api import train

    for e in entries:
        entry_overrides(e)
    csv_path = Path(out).with_suffix(".csv") if out is not None else None
    previous = _read_previous(csv_path, fresh)
    jobs = [
        Job(Path(exp), entry, seed, cfg, config_key(cfg))
        for exp in experiments
        for entry in entries
        for seed in range(seeds)
        for cfg in [job_config(Path(exp), entry, seed, overrides)]
    ]
    keys = {j.key for j in jobs}
    old_rows = {r["config_key"]: r for r in previous if _has_key(r) and r["entry"] not in (FLOOR, CEILING)}
    old_refs = {(r["entry"], r["config_key"]): r for r in previous if _has_key(r) and r["entry"] in (FLOOR, CEILING)}
    rows: dict[str, dict[str, Any]] = {j.key: old_rows[j.key] for j in jobs if j.key in old_rows}
    refs: dict[str, list[dict[str, Any]]] = {}  # task name -> floor and ceiling rows
    first: dict[str, Job] = {}  # task name -> the job whose seed the task's references use
    for j in jobs:
        first.setdefault(j.cfg.name, j)
    for name, j in first.items():
        found = [old_refs.get((label, reference_key(j.cfg))) for label in (FLOOR, CEILING)]
        if all(r is not None for r in found):
            refs[name] = found  # type: ignore[assignment]
    # a task without reusable references trains one job of the references' seed
    forced = {j.key for name, j in first.items() if name not in refs and j.key in rows and j.cfg.eval.reference_points}
    for key in forced:
        rows.pop(key)
    todo = [j for j in jobs if j.key not in rows]
    board = Scoreboard(pd.DataFrame(), jobs=len(jobs), reused=len(jobs) - len(todo), trained=len(todo))
    board.source = csv_path if previous else None
    names = {j.cfg.name for j in jobs}
    others = [r for r in previous if r["task"] not in names]  # other tasks' rows stay as they are
    board.kept = sum(1 for r in others if r["entry"] not in (FLOOR, CEILING))
    board.ignored = sum(
        1
        for r in previous
        if r["task"] in names and r["entry"] not in (FLOOR, CEILING) and r.get("config_key") not in keys
    )
    board.markdown, board.csv = (Path(out), csv_path) if out is not None else (None, None)
    board.notes.append(_plan(board, fresh))
    if say is not None:
        say(board.notes[0])
    tasks: dict[tuple[Path, float], Any] = {}  # per experiment and the share of training cells validated on
    bar = tqdm(todo, desc="compare", unit="job", disable=not progress)
    for job in bar:
        bar.set_postfix_str(f"{job.cfg.name} {job.entry} seed {job.seed}", refresh=True)
        cfg = job.cfg.model_copy(update={"train": job.cfg.train.model_copy(update={"progress": progress})})
        tcfg = task_config(cfg)  # a baseline fits on every training cell, a flow validates on some of them
        task_key = (job.experiment, tcfg.train.val_train_fraction)
        if task_key not in tasks:
            tasks[task_key] = build_task(tcfg)
        res = train(cfg, task=tasks[task_key])
        meta = RunDir(res.run_dir).read_metrics()
        rows[job.key] = {
            "task": cfg.name, "entry": job.entry, "seed": job.seed, "split": cfg.eval.split,
            **{k: res.summary.get(k, np.nan) for k in COLUMNS}, "parameters": meta["parameter_count"],
            "seconds": meta["wall_seconds"], "run_dir": str(res.run_dir), "config_key": job.key,
        }  # fmt: skip
        first_job = first[cfg.name]
        if res.reference and cfg.name not in refs and reference_key(cfg) == reference_key(first_job.cfg):
            refs[cfg.name] = [
                {"task": cfg.name, "entry": FLOOR if name == "no_change" else CEILING, "seed": job.seed,
                 "split": cfg.eval.split, **{k: ref.get(k, np.nan) for k in COLUMNS},
                 "config_key": reference_key(cfg)}
                for name, ref in res.reference.items()
            ]  # fmt: skip
        board.table = _assemble(jobs, rows, refs, others)
        if out is not None:
            _write(board.table, Path(out))
    bar.close()
    board.table = _assemble(jobs, rows, refs, others)
    if out is not None:
        _write(board.table, Path(out))
    return board


def _plan(board: Scoreboard, fresh: bool) -> str:
    if fresh:
        return f"--fresh: training all {board.jobs} jobs"
    if board.source is None:
        return f"no earlier results to reuse; training all {board.jobs} jobs"
    line = (
        f"reusing {board.reused} of {board.jobs} results from {board.source} (same resolved config: experiment, "
        f"--set overrides, entry and seed); training {board.trained}"
    )
    if board.ignored:
        line += f"; {board.ignored} rows there have another config (or none recorded) and are replaced"
    if board.kept:
        line += f"; {board.kept} rows of other tasks are kept as they are"
    return line + " (--fresh reuses none)"


def _assemble(
    jobs: list[Job],
    rows: dict[str, dict[str, Any]],
    refs: dict[str, list[dict[str, Any]]],
    others: list[dict[str, Any]] | None = None,
) -> pd.DataFrame:
    """Rows in job order, each task's floor and ceiling after its first row, then ``others`` (other tasks' rows)."""
    out: list[dict[str, Any]] = []
    placed: set[str] = set()
    for j in jobs:
        if j.key not in rows:
            continue
        out.append(rows[j.key])
        name = j.cfg.name
        if name in refs and name not in placed:
            out.extend(refs[name])
            placed.add(name)
    return pd.DataFrame(out + list(others or []))


def _write(df: pd.DataFrame, out: Path) -> None:
    out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out.with_suffix(".csv")) as tmp:
        df.to_csv(tmp, index=False)
    write_generated(out, to_markdown(df, csv_name=out.with_suffix(".csv").name))


def write_generated(path: Path, body: str, begin: str = BEGIN, end: str = END) -> None:
    """Put ``body`` between the ``begin`` and ``end`` marker lines in ``path`` (default :data:`BEGIN` and
    :data:`END`, those of ``arch-lab compare``), keeping every line outside the markers.

    A marker counts only on a line of its own. A missing file is created with only the marked block; a file without markers gets the block appended.

    Raises
    ------
    ArchLabError
        The file has one marker without the other, ``end`` before ``begin``, or more than one pair.
    """
    block = f"{begin}\n{body.rstrip()}\n{end}"
    text = path.read_text() if path.is_file() else ""
    begins = [m.start() for m in re.finditer(rf"^{re.escape(begin)}$", text, re.MULTILINE)]
    ends = [m.start() for m in re.finditer(rf"^{re.escape(end)}$", text, re.MULTILINE)]
    start, stop = (begins[0] if begins else -1), (ends[0] if ends else -1)
    if len(begins) > 1 or len(ends) > 1:
        raise ArchLabError(f"{path}: more than one pair of {begin} / {end} markers; keep one pair")
    if start < 0 and stop < 0:
        new = (text.rstrip("\n") + "\n\n" if text.strip() else "") + block + "\n"
    elif start < 0 or stop < start:
        raise ArchLabError(
            f"{path}: the markers {begin} and {end} are incomplete or out of order; fix them (generated tables go "
            "between them) or write to another --out"
        )
    else:
        new = text[:start] + block + text[stop + len(end) :]
    with atomic_path(path) as tmp:
        tmp.write_text(new)


def to_markdown(df: pd.DataFrame, csv_name: str | None = None) -> str:
    """Mean over seeds per (task, entry), one table per task, each naming the split it scores."""
    parts = []
    if csv_name:
        parts.append(f"Generated by `arch-lab compare`; raw rows with run directories and config keys: `{csv_name}`.")
    for task, grp in df.groupby("task", sort=False):
        agg = grp.groupby("entry", sort=False)[list(COLUMNS)].mean()
        n = grp.groupby("entry", sort=False)["seed"].nunique()
        splits = sorted(map(str, grp["split"].dropna().unique())) if "split" in grp else []
        where = f" ({' and '.join(splits)} split)" if splits else ""
        header = "| entry | seeds | " + " | ".join(COLUMNS) + " |"
        lines = [f"### {task}{where}", "", header, "|" + "---|" * (len(COLUMNS) + 2)]
        for entry, row in agg.iterrows():
            vals = " | ".join("" if pd.isna(v) else f"{v:.3f}" for v in row)
            lines.append(f"| {entry} | {n[entry]} | {vals} |")
        parts.append("\n".join(lines))
    return "\n\n".join(parts) + "\n"
