"""The bad-input corpus: inputs a new user gets wrong, each refused with one line before any run is written.

Every case is generated here from the shipped devel data (no stored files): a broken config, a broken copy of the
data, or a misuse of the command line. One parametrised test asserts for each: a non-zero exit, at most a few
lines of output and no traceback, a message naming the problem, and no file written or changed (so no run
directory at all, let alone one that looks complete). Repairs that let the run go on (stripped whitespace, small
conditions kept in training) are checked separately.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import anndata as ad
import numpy as np
import pandas as pd
import pytest
import scipy.sparse as sp
import yaml
from conftest import DEVEL
from typer.testing import CliRunner

from arch_lab.cli import app
from arch_lab.config import experiment_from_dict
from arch_lab.data import build_task
from arch_lab.rundir import RunDir

runner = CliRunner()


@dataclass
class Env:
    """A scratch folder with helpers that write broken inputs made from the shipped devel data."""

    tmp: Path
    devel: ad.AnnData

    def data(self, mutate: Callable[[ad.AnnData], ad.AnnData | None] | None = None, name: str = "data.h5ad") -> Path:
        a = self.devel.copy()
        changed = mutate(a) if mutate is not None else None
        a = changed if changed is not None else a  # (an AnnData without cells is falsy)
        path = self.tmp / name
        a.write_h5ad(path)
        return path

    def config(self, path: Path | None = None, **sections: dict) -> dict:
        cfg = {
            "name": "corpus",
            "seed": 0,
            "output_dir": str(self.tmp / "runs"),
            "data": {"path": str(path or DEVEL), "perturbation_key": "condition", "control_value": "control",
                     "covariate_keys": ["cell_type"]},
            "task": {"kind": "covariate_transfer", "seed": 0},
            "network": {"name": "mlp", "width": 16, "depth": 1},
            "optim": {"batch_size": 16, "conditions_per_batch": 2, "warmup_steps": 1},
            "train": {"max_steps": 2, "eval_every": 2, "checkpoint_every": 2, "progress": False, "threads": 1,
                      "val_conditions": 1, "val_cells": 8},
            "flow": {"steps": 2},
            "eval": {"pca_components": 5, "deg_top_k": 5},
        }  # fmt: skip
        for key, value in sections.items():
            cfg[key] = {**cfg.get(key, {}), **value} if isinstance(value, dict) else value
        return cfg

    def combination(self, path: Path | None = None, **sections: dict) -> dict:
        """The K562 doubles task (combination, 5 folds)."""
        cfg = self.config(path, **sections)
        cfg["data"].setdefault("subset", {"cell_type": ["k562"]})
        cfg["task"] = {"kind": "combination", "seed": 0, "n_folds": 5, **sections.get("task", {})}
        return cfg

    def yaml(self, cfg: dict | str, name: str = "exp.yaml") -> Path:
        path = self.tmp / name
        path.write_text(cfg if isinstance(cfg, str) else yaml.safe_dump(cfg))
        return path

    def train(self, cfg: dict | str | None = None, *extra: str) -> list[str]:
        return ["train", str(self.yaml(cfg if cfg is not None else self.config())), *extra]

    def fake_run(self, status: str = "failed", name: str = "fake") -> Path:
        """A run directory (config, status, meta; metrics too when completed) made without training."""
        run = RunDir.create(self.tmp / name)
        run.write_config(experiment_from_dict(self.config()))
        run.write_meta({"seed": 0})
        if status == "completed":
            run.write_metrics({"metrics": {}})
        run.set_status(status, reason="made by the test")
        return run.path


# ------------------------------------------------------------------------------------------------ mutations
def _obs(key: str, values: Callable[[pd.Series], pd.Series]) -> Callable[[ad.AnnData], None]:
    def mutate(a: ad.AnnData) -> None:
        a.obs[key] = values(a.obs[key].astype(object)).astype(object)

    return mutate


def _some(value: object, n: int = 7) -> Callable[[pd.Series], pd.Series]:
    def put(col: pd.Series) -> pd.Series:
        col = col.copy()
        col.iloc[np.arange(0, len(col), len(col) // n)[:n]] = value
        return col

    return put


def _dense(change: Callable[[np.ndarray], None]) -> Callable[[ad.AnnData], None]:
    def mutate(a: ad.AnnData) -> None:
        X = a.X.toarray() if sp.issparse(a.X) else np.array(a.X)
        change(X)
        a.X = X

    return mutate


def _duplicate_gene(a: ad.AnnData) -> None:
    names = list(a.var_names)
    names[3] = names[2]
    a.var_names = names


def _single_cell(a: ad.AnnData) -> ad.AnnData:
    pair = ((a.obs["condition"] == "PLK4") & (a.obs["cell_type"] == "A172")).to_numpy()
    drop = np.flatnonzero(pair)[1:]
    return a[np.setdiff1d(np.arange(a.n_obs), drop)].copy()


def _counts(a: ad.AnnData) -> None:
    X = a.X.toarray() if sp.issparse(a.X) else np.asarray(a.X)
    a.X = np.round(np.expm1(X) * 3).astype(np.float32)


def _underscored(a: ad.AnnData) -> None:
    a.obs["condition"] = a.obs["condition"].astype(str).str.replace("+", "_", regex=False)


def _holdout(perturbation: str, cell_type: str) -> dict:
    return {"kind": "manual", "holdout": [{"perturbation": perturbation, "covariates": {"cell_type": cell_type}}]}


# ---------------------------------------------------------------------------------------------------- cases
Builder = Callable[[Env], list[str]]
CASES: list[tuple[str, Builder, str]] = [
    # the YAML and --set: refused before torch or the data are loaded
    ("yaml-missing", lambda e: ["train", str(e.tmp / "nope.yaml")], "file not found"),
    ("yaml-malformed", lambda e: e.train("name: x\ndata: [unclosed\n"), "malformed YAML at line 3"),
    ("yaml-not-a-mapping", lambda e: e.train("- a\n- b\n"), "expected a mapping of sections"),
    ("key-unknown-section", lambda e: e.train({**e.config(), "trian": {}}), "trian: unknown key"),
    ("key-unknown", lambda e: e.train(e.config(train={"max_step": 3})), "train.max_step: unknown key"),
    ("key-missing-task", lambda e: e.train({k: v for k, v in e.config().items() if k != "task"}), "task: required key is missing"),
    ("value-type", lambda e: e.train(e.config(optim={"lr": "fast"})), "optim.lr"),
    ("value-range", lambda e: e.train(e.config(), "--set", "train.max_steps=-1"), "train.max_steps"),
    ("task-kind", lambda e: e.train(e.config(task={"kind": "transfer"})), "task.kind"),
    ("fold-out-of-range", lambda e: e.train(e.combination(), "--set", "task.fold=5"), "fold: 5 is out of range"),
    ("two-data-sources", lambda e: e.train(e.config(data={"synthetic": {}})), "give exactly one of 'path'"),
    ("set-without-equals", lambda e: e.train(e.config(), "--set", "network.width"), "expected KEY=VALUE"),
    ("set-unknown-key", lambda e: e.train(e.config(), "--set", "optim.lrr=0.1"), "optim.lrr: unknown key"),
    ("set-bad-yaml", lambda e: e.train(e.config(), "--set", "network.width=[1,"), "not valid YAML"),
    ("select-metric", lambda e: e.train(e.config(train={"select_metric": "energy"})), "train.select_metric: unknown metric 'energy'"),
    ("network-unknown", lambda e: e.train(e.config(network={"name": "unet"})), "unknown network 'unet'"),
    ("network-knob", lambda e: e.train(e.config(network={"widht": 3})), "network.widht"),
    ("method-unknown", lambda e: e.train(e.config(method={"name": "cpa"})), "unknown method 'cpa'"),
    # the command line
    ("train-nothing", lambda e: ["train"], "give an EXPERIMENT.yaml"),
    ("resume-with-set", lambda e: ["train", "--resume", str(e.fake_run()), "--set", "optim.lr=0.1"], "drop --set"),
    ("resume-with-experiment", lambda e: [*e.train(), "--resume", str(e.fake_run())], "drop EXPERIMENT"),
    ("resume-with-run-dir", lambda e: ["train", "--resume", str(e.fake_run()), "--run-dir", str(e.tmp / "x")], "drop --run-dir"),
    ("resume-not-a-run", lambda e: ["train", "--resume", str(e.tmp)], "not a run directory"),
    ("resume-completed", lambda e: ["train", "--resume", str(e.fake_run("completed"))], "already completed"),
    ("run-dir-holds-a-run", lambda e: [*e.train(), "--run-dir", str(e.fake_run())], "already holds a run (status failed)"),
    ("run-dir-holds-a-completed-run", lambda e: [*e.train(), "--run-dir", str(e.fake_run("completed"))], "pass a new --run-dir"),
    ("run-dir-is-a-file", lambda e: [*e.train(), "--run-dir", str(e.yaml("x", "file.txt"))], "is a file, not a folder"),
    ("output-dir-is-a-file", lambda e: e.train(e.config(output_dir=str(e.yaml("x", "runs.txt")))), "runs.txt: is a file, not a folder"),
    ("predict-not-a-run", lambda e: ["predict", str(e.tmp), "--conditions", str(e.tmp / "c.csv")], "not a run directory"),
    ("predict-n-cells", lambda e: ["predict", str(e.tmp), "--conditions", "c.csv", "--n-cells", "-3"], "--n-cells -3"),
    # the data file and its columns
    ("data-missing", lambda e: e.train(e.config(e.tmp / "nope.h5ad")), "data file not found"),
    ("data-not-h5ad", lambda e: e.train(e.config(e.yaml("not anndata", "bad.h5ad"))), "not a readable .h5ad"),
    ("no-cells", lambda e: e.train(e.config(e.data(lambda a: a[:0].copy()))), "the data holds no cells"),
    ("perturbation-key", lambda e: e.train(e.config(data={"perturbation_key": "cond"})), "'cond' not in obs"),
    ("perturbation-key-whitespace", lambda e: e.train(e.config(data={"perturbation_key": "condition "})), "did you mean 'condition'"),
    ("covariate-key", lambda e: e.train(e.config(data={"covariate_keys": ["celltype"]})), "covariate_keys column 'celltype'"),
    ("control-value", lambda e: e.train(e.config(data={"control_value": "ctrl"})), "control_value 'ctrl' not found"),
    ("labels-nan", lambda e: e.train(e.config(e.data(_obs("condition", _some(np.nan))))), "obs['condition']: 7 of 5961 cells have no label"),
    ("labels-empty", lambda e: e.train(e.config(e.data(_obs("condition", _some(""))))), "obs['condition']: 7 of 5961 cells have no label"),
    ("labels-text-nan", lambda e: e.train(e.config(e.data(_obs("condition", _some("nan"))))), "cells have no label"),
    ("covariate-nan", lambda e: e.train(e.config(e.data(_obs("cell_type", _some(np.nan))))), "obs['cell_type']: 7 of 5961 cells have no label"),
    ("covariate-whitespace-only", lambda e: e.train(e.config(e.data(_obs("cell_type", lambda c: c.map(lambda _: "  "))))), "obs['cell_type']: 5961 of 5961 cells have no label"),
    ("subset-value", lambda e: e.train(e.config(data={"subset": {"cell_type": ["K562"]}})), "subset cell_type: values ['K562'] not present"),
    ("expression-nan", lambda e: e.train(e.config(e.data(_dense(lambda X: X.__setitem__((0, 0), np.nan))))), "non-finite values"),
    ("expression-negative", lambda e: e.train(e.config(e.data(_dense(lambda X: X.__setitem__((0, 0), -1.0))))), "negative values"),
    ("counts-refused", lambda e: e.train(e.config(e.data(_counts), data={"counts": "refuse"})), "the matrix holds raw counts"),
    ("layer-missing", lambda e: e.train(e.config(data={"layer": "counts"})), "layer 'counts' not in the AnnData"),
    # genes
    ("one-gene", lambda e: e.train(e.config(e.data(lambda a: a[:, :1].copy()))), "the data has 1 gene;"),
    ("genes-vs-deg-top-k", lambda e: e.train(e.config(e.data(lambda a: a[:, :10].copy()), eval={"deg_top_k": 50})), "eval.deg_top_k is 50"),
    ("genes-duplicated", lambda e: e.train(e.config(e.data(_duplicate_gene))), "var_names_make_unique()"),
    # tasks
    ("delimiter-matches-nothing", lambda e: e.train(e.combination(data={"combination_delimiter": "_"})), "combination delimiter '_'"),
    ("delimiter-of-the-labels", lambda e: e.train(e.combination(e.data(_underscored))), "set data.combination_delimiter: '_'"),
    ("transfer-one-state", lambda e: e.train(e.config(data={"subset": {"cell_type": ["k562"]}})), "holds out no (perturbation, state) pair"),
    ("folds-too-many", lambda e: e.train(e.combination(task={"n_folds": 9})), "task.n_folds=9 but only 5"),
    ("holdout-unknown", lambda e: e.train(e.config(task=_holdout("NOPE", "A172"))), "perturbation 'NOPE' not measured"),
    ("holdout-single-cell", lambda e: e.train(e.config(e.data(_single_cell), task=_holdout("PLK4", "A172"))), "A172/PLK4 has 1 cell"),
    ("split-file-missing", lambda e: e.train(e.config(task={"split_file": str(e.tmp / "split.csv")})), "split file not found"),
    # sweeps
    ("sweep-requeue-no-study", lambda e: ["sweep", "requeue", "nosuch_study", "--storage", f"sqlite:///{e.tmp / 'x.db'}"], "database file not found"),
]  # fmt: skip


@pytest.fixture(scope="module")
def devel() -> ad.AnnData:
    return ad.read_h5ad(DEVEL)


def _files(folder: Path) -> dict[Path, int]:
    return {p: p.stat().st_mtime_ns for p in folder.rglob("*") if p.is_file() and p.name != RunDir.LOCK}


def test_the_corpus_is_large_and_its_cases_distinct():
    assert len(CASES) >= 35
    assert len({name for name, _, _ in CASES}) == len(CASES)


@pytest.mark.parametrize(("name", "build", "expected"), CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_refused_in_one_line_before_any_run(tmp_path, devel, monkeypatch, name, build, expected):
    monkeypatch.chdir(tmp_path)
    args = build(Env(tmp_path, devel))
    before = _files(tmp_path)
    result = runner.invoke(app, args)
    output = (result.stdout + result.stderr).strip()
    assert result.exit_code != 0, output
    assert isinstance(result.exception, SystemExit), f"{type(result.exception).__name__}: {result.exception}"
    assert "Traceback" not in output
    lines = output.splitlines()
    assert 1 <= len(lines) <= 3, output
    assert lines[-1].startswith("error: "), output
    assert expected in lines[-1], output
    assert _files(tmp_path) == before  # nothing written or changed: no run directory, complete or not


# ------------------------------------------------------------------------------------------ repairs, noted
def test_whitespace_around_labels_is_stripped_with_a_printed_note(tmp_path, devel):
    env = Env(tmp_path, devel)

    def pad(a: ad.AnnData) -> None:
        cond = a.obs["condition"].astype(str)
        a.obs["condition"] = np.where(cond == "KLF1", "KLF1 ", np.where(cond == "KLF1+TGFBR2", "KLF1 + TGFBR2", cond))
        a.obs["cell_type"] = " " + a.obs["cell_type"].astype(str)

    cfg = experiment_from_dict(env.combination(env.data(pad), data={"subset": {"cell_type": ["k562"]}}))
    clean = experiment_from_dict(env.combination())
    task, reference = build_task(cfg), build_task(clean)
    assert task.conditions("test") == reference.conditions("test")  # the singles still count for the doubles
    pd.testing.assert_series_equal(task.split, reference.split)
    notes = " ".join(task.data.notes)
    assert "obs['condition']: stripped surrounding whitespace" in notes
    assert "'KLF1 + TGFBR2' -> 'KLF1+TGFBR2'" in notes or "'KLF1 ' -> 'KLF1'" in notes
    assert "obs['cell_type']: stripped surrounding whitespace from 4 labels" in notes


def test_single_cell_conditions_stay_in_training_with_a_note(tmp_path, devel):
    env = Env(tmp_path, devel)
    task = build_task(experiment_from_dict(env.config(env.data(_single_cell))))
    held = {(c.state, c.perturbation) for split in ("val", "test") for c in task.conditions(split)}
    assert ("A172", "PLK4") not in held
    assert ("A172", "PLK4") in {(c.state, c.perturbation) for c in task.conditions("train")}
    assert any("a single cell and stay in training" in n and "A172/PLK4" in n for n in task.data.notes)


def test_notes_are_printed_and_recorded(tmp_path, devel):
    env = Env(tmp_path, devel)

    def duplicate_ids(a: ad.AnnData) -> None:
        a.obs_names = ["cell"] * a.n_obs

    path = env.yaml(env.config(env.data(duplicate_ids), data={"subset": {"cell_type": ["A172", "T98G"]}}))
    result = runner.invoke(app, ["train", str(path), "--run-dir", str(tmp_path / "run")])
    assert result.exit_code == 0, result.output
    assert "note: cell ids were not unique" in result.stderr
    meta = json.loads((tmp_path / "run" / "meta.json").read_text())
    assert any("cell ids were not unique" in n for n in meta["data_notes"])


def test_a_reader_that_closes_the_pipe_ends_the_command_quietly():
    """`arch-lab ... | head`: the command stops with SIGPIPE's exit status and no error line (it used to print
    'error: ?: cannot read or write it (Broken pipe)')."""
    import subprocess
    import sys

    script = (
        "import typer\n"
        "from arch_lab.cli.errors import friendly\n"
        "@friendly\n"
        "def table():\n"
        "    for i in range(200_000):\n"
        "        typer.echo(f'row {i:07d} ' + 'x' * 60)\n"
        "typer.run(table)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert proc.stdout is not None
    assert proc.stderr is not None
    assert proc.stdout.readline().startswith(b"row 0000000")
    proc.stdout.close()  # the reader goes away, as `head -1` does
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=120) == 141
    assert err == ""
