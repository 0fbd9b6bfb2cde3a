"""Sweeps: YAML validation, conditional spaces, grids, pruning, failures, resume, export, and several workers on
one PostgreSQL study (including a worker killed mid-trial). Tiny real trials on a synthetic dataset."""

from __future__ import annotations

import copy
import glob
import json
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from conftest import REPO, experiment_dict, synthetic_adata
from optuna.trial import TrialState
from typer.testing import CliRunner

from arch_lab.cli import app
from arch_lab.errors import ConfigError
from arch_lab.sweeps import (
    Objective,
    SearchSpace,
    export_trials,
    load_sweep,
    parse_storage,
    run_sweep,
    run_worker,
    sweep_status,
)
from arch_lab.sweeps.runner import TrialRunner
from arch_lab.sweeps.schema import ObjectiveSection
from arch_lab.sweeps.study import trial_reason

cli = CliRunner()
LRS = [1e-3, 2e-3]


# ----------------------------------------------------------------------------------------------- helpers
def make_bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, **sections: dict) -> Path:
    """A working directory (made current) with a synthetic dataset and a tiny base experiment (``base.yaml``): an
    MLP of width 32, the conftest experiment otherwise, ``sections`` merged over it.
    """
    monkeypatch.chdir(tmp_path)
    synthetic_adata().write_h5ad(tmp_path / "synthetic.h5ad")
    base = experiment_dict(
        tmp_path / "synthetic.h5ad", tmp_path, network={"name": "mlp", "width": 32, "depth": 1}, **sections
    )
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    return tmp_path


@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The bench with 10-step runs."""
    return make_bench(tmp_path, monkeypatch, train={"max_steps": 10, "eval_every": 5, "checkpoint_every": 10})


def sweep_dict(name: str, **sections: object) -> dict:
    """A small sweep over the bench's base experiment: a 2-point grid over optim.lr, one seed, fast heartbeats."""
    raw: dict = {
        "study": {"name": name, "heartbeat_interval": 2, "grace_period": 10},
        "base": "base.yaml",
        "objective": {"metric": "energy_distance"},
        "space": {"optim.lr": {"type": "categorical", "choices": LRS}},
        "sampler": {"type": "brute_force"},
        "budget": {"replicates": 1},
    }
    raw.update(copy.deepcopy(sections))
    return raw


def write_sweep(folder: Path, raw: dict, filename: str | None = None) -> Path:
    path = folder / (filename or f"{raw['study']['name']}.yaml")
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


_STORAGES: dict[str, optuna.storages.RDBStorage] = {}


def load(name: str, storage: str) -> optuna.Study:
    """The study, through one storage object per URL (polling must not open a connection pool per call)."""
    if storage not in _STORAGES:
        _STORAGES[storage] = optuna.storages.RDBStorage(storage)
    return optuna.load_study(study_name=name, storage=_STORAGES[storage])


def states(study: optuna.Study) -> dict[str, int]:
    out: dict[str, int] = {}
    for t in study.get_trials(deepcopy=False):
        out[t.state.name] = out.get(t.state.name, 0) + 1
    return out


def storage_files(folder: Path) -> list[str]:
    return [p for pattern in ("**/*.db", "**/*.log") for p in glob.glob(str(folder / pattern), recursive=True)]


# -------------------------------------------------------------------------------------- shipped sweeps
def test_shipped_sweeps_validate_and_tune_files_share_the_budget():
    demo = load_sweep(REPO / "sweeps" / "demo.yaml")
    assert demo.is_grid
    assert demo.n_trials == 3
    assert demo.replicates == 3
    assert sorted(c["network.name"] for c in demo.grid()) == ["gene_transformer", "mlp", "unet1d"]
    assert demo.objective.metrics == ["energy_distance"]
    assert demo.objective.split == "val"
    assert demo.primary_metric == "energy_distance"
    assert demo.secondary_metrics == []
    tunes = {n: load_sweep(REPO / "sweeps" / f"tune_{n}.yaml") for n in ("unet1d", "mlp", "gene_transformer")}
    shared = {
        n: (s.spec.budget, s.spec.sampler, s.spec.pruner, s.objective, s.spec.space["optim.lr"], s.spec.space["optim.weight_decay"])
        for n, s in tunes.items()
    }  # fmt: skip
    assert len({json.dumps(v, default=str) for v in shared.values()}) == 1
    knobs = {n: {k for k in s.space.keys() if k.startswith("network.")} for n, s in tunes.items()}
    assert all(knobs.values())
    assert not (knobs["unet1d"] & knobs["mlp"])
    for n, s in tunes.items():
        assert s.experiment(s.space.resolve({})).network.name == n


# ----------------------------------------------------------------------------------------- validation
BAD = [
    ({"sampler": {"type": "tpe", "seeed": 1}}, "sampler.seeed: unknown key"),
    ({"budget": {"replicates": "two"}}, "budget.replicates"),
    ({"pruner": {"type": "median", "min_resource": 2}}, "pruner.min_resource: not an option of the median pruner"),
    ({"space": {"optim.lr": {"type": "float", "low": 0.1, "high": 0.01}}}, "space.optim.lr.low: must not exceed high"),
    ({"space": {"optim.lr": {"type": "float", "low": 0, "high": 0.1, "log": True}}}, "space.optim.lr.low: a log-scale"),
    ({"space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2}}}, "space.optim.lr: a grid needs a step"),
    ({"space": {"optim.lr": {"type": "int", "low": 1, "high": 4, "choices": [1]}}}, "space.optim.lr.choices: not used"),
    ({"space": {"optim.lrr": {"type": "categorical", "choices": [1e-3]}}}, "optim.lrr: unknown key"),
    ({"objective": {"metric": "energy"}}, "objective.metric: unknown metric 'energy'"),
    ({"objective": {"metric": "energy_distance", "direction": "maximize"}}, "objective.direction: maximize contradicts energy_distance"),
    ({"objective": {"metrics": {"energy_distance": 1.0, "pearson_delta": 1.0}}}, "objective.metrics: terms pull in different directions"),
    ({"base": "missing.yaml"}, "base: "),
    ({"fixed": {"seed": 3}}, "fixed.seed: seeds come from"),
    ({"analysis": {"primary_metric": "energy"}}, "analysis.primary_metric: unknown metric 'energy'"),
    ({"analysis": {"secondary_metrics": ["energy_distance"]}}, "analysis.secondary_metrics: energy_distance is the primary"),
    ({"analysis": {"primary": "energy_distance"}}, "analysis.primary: unknown key"),
    ({"fixed": {"optim.batch_size": -1}}, "fixed.optim.batch_size"),
    (
        {"space": {"network.name": {"type": "categorical", "choices": ["mlp", "unet1d"]}, "conditional": [
            {"when": {"network.name": "unet1d"}, "space": {"network.widht": {"type": "categorical", "choices": [8]}}}]}},
        "space.conditional.0.space.network.widht",
    ),
    (
        {"space": {"optim.lr": {"type": "categorical", "choices": LRS}, "conditional": [
            {"when": {"network.name": "mlp"}, "space": {"network.width": {"type": "categorical", "choices": [8]}}}]}},
        "space.conditional.0.when.network.name: not a dimension",
    ),
    (
        {"sampler": {"type": "tpe"}, "budget": {"n_trials": 3},
         "space": {"optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True}}, "enqueue": [{"optim.lr": 5.0}]},
        "enqueue.0.optim.lr: 5.0 is outside",
    ),
]  # fmt: skip


@pytest.mark.parametrize(("change", "message"), BAD, ids=[m.split(":")[0] for _, m in BAD])
def test_bad_sweep_gives_one_line_error_and_leaves_no_study(bench: Path, change: dict, message: str):
    path = write_sweep(bench, sweep_dict("bad", **change))
    result = cli.invoke(app, ["sweep", "run", str(path), "--workers", "2"])
    assert result.exit_code == 2, result.output
    err = result.stderr.strip()
    assert err.startswith("error: "), err
    assert "\n" not in err, err
    assert message in err, err
    assert storage_files(bench) == []
    assert not (bench / "runs").exists()


def test_bad_sweep_is_refused_for_every_storage_before_it_is_touched(bench: Path):
    raw = sweep_dict("bad", objective={"metric": "energy_distance", "direction": "maximize"})
    path = write_sweep(bench, raw)
    result = cli.invoke(app, ["sweep", "worker", str(path), "--storage", f"journal:{bench / 'j.log'}"])
    assert result.exit_code == 2
    assert "objective.direction" in result.stderr
    assert not (bench / "j.log").exists()
    result = cli.invoke(app, ["sweep", "status", "nosuch"])
    assert result.exit_code == 2
    assert "no such file" in result.stderr
    assert storage_files(bench) == []


def test_analysis_section_declares_the_primary_metric(bench: Path):
    declared = {"primary_metric": "cosine_logfc", "secondary_metrics": ["energy_distance"]}
    sweep = load_sweep(write_sweep(bench, sweep_dict("declared", analysis=declared)))
    assert sweep.primary_metric == "cosine_logfc"
    assert sweep.secondary_metrics == ["energy_distance"]
    weighted = sweep_dict("weighted", objective={"metrics": {"rmse_mean": 1.0, "rmse_mean_rank": 0.1}})
    assert load_sweep(write_sweep(bench, weighted)).primary_metric == "rmse_mean"  # default: the first term
    # what the results are read by is recorded with the study, not part of what makes trial values comparable
    assert sweep.space_hash() == load_sweep(write_sweep(bench, sweep_dict("declared"), "plain.yaml")).space_hash()


# ------------------------------------------------------------------------------- space and objective
COND_SPACE = {
    "network.name": {"type": "categorical", "choices": ["mlp", "unet1d"]},
    "optim.lr": {"type": "float", "low": 1e-4, "high": 1e-2, "log": True},
    "conditional": [
        {"when": {"network.name": "mlp"}, "space": {"network.width": {"type": "int", "low": 16, "high": 64, "step": 16}}},
        {"when": {"network.name": "unet1d"}, "space": {
            "network.mid_attention": {"type": "categorical", "choices": [False, True]},
            "network.channel_mult": {"type": "categorical", "choices": [[1, 2], [1, 2, 4]]},
            "conditional": [{"when": {"network.mid_attention": True},
                             "space": {"network.attention_heads": {"type": "categorical", "choices": [2, 4]}}}]}},
    ],
}  # fmt: skip


def test_conditional_parameters_appear_only_when_their_condition_holds():
    space = SearchSpace(COND_SPACE)
    study = optuna.create_study(sampler=optuna.samplers.RandomSampler(seed=0))
    seen = []

    def objective(trial: optuna.Trial) -> float:
        seen.append(space.sample(trial))
        return 0.0

    study.optimize(objective, n_trials=40)
    branches = set()
    for values in seen:
        keys = set(values)
        if values["network.name"] == "mlp":
            assert keys == {"network.name", "optim.lr", "network.width"}
            assert values["network.width"] in (16, 32, 48, 64)
        else:
            expected = {"network.name", "optim.lr", "network.mid_attention", "network.channel_mult"}
            expected |= {"network.attention_heads"} if values["network.mid_attention"] else set()
            assert keys == expected
            assert values["network.channel_mult"] in ([1, 2], [1, 2, 4])
        branches.add((values["network.name"], values.get("network.mid_attention")))
    assert branches == {("mlp", None), ("unet1d", False), ("unet1d", True)}


def test_grid_enumerates_every_conditional_combination_once():
    raw = copy.deepcopy(COND_SPACE)
    raw["optim.lr"] = {"type": "categorical", "choices": LRS}
    combos = list(SearchSpace(raw).iter_grid())
    # mlp: 4 widths; unet1d: 2 channel_mult x (no attention + attention with 2 head counts); times 2 lrs.
    assert len(combos) == (4 + 2 * (1 + 2)) * 2
    assert len({json.dumps(c, sort_keys=True) for c in combos}) == len(combos)
    assert all(("network.attention_heads" in c) == bool(c.get("network.mid_attention")) for c in combos)


def test_space_refuses_overlapping_or_incompatible_duplicates():
    overlapping = {
        "network.name": {"type": "categorical", "choices": ["mlp", "gene_transformer"]},
        "network.dropout": {"type": "float", "low": 0.0, "high": 0.2},
        "conditional": [
            {"when": {"network.name": "mlp"}, "space": {"network.dropout": {"type": "fixed", "value": 0.1}}}
        ],
    }
    with pytest.raises(ConfigError, match="already defined in an enclosing scope"):
        SearchSpace(overlapping)
    exclusive = {
        "network.name": {"type": "categorical", "choices": ["mlp", "gene_transformer"]},
        "conditional": [
            {"when": {"network.name": "mlp"}, "space": {"network.depth": {"type": "int", "low": 1, "high": 6}}},
            {
                "when": {"network.name": "gene_transformer"},
                "space": {"network.depth": {"type": "int", "low": 1, "high": 3}},
            },
        ],
    }
    assert SearchSpace(exclusive).keys() == ["network.name", "network.depth"]
    exclusive["conditional"][1]["space"]["network.depth"]["log"] = True
    with pytest.raises(ConfigError, match="same type, log scale and choices"):
        SearchSpace(exclusive)


def test_weighted_objective_direction_and_value():
    obj = Objective.from_section(ObjectiveSection(metrics={"rmse_mean": 1.0, "rmse_mean_rank": 0.1}))
    assert obj.direction == "minimize"
    assert obj.label == "rmse_mean + 0.1 * rmse_mean_rank"
    assert obj.value({"rmse_mean": 2.0, "rmse_mean_rank": 0.5, "pearson_delta": 0.3}) == pytest.approx(2.05)
    assert obj.value({"rmse_mean": 2.0}) != obj.value({"rmse_mean": 2.0})  # NaN when a term is missing
    flipped = Objective.from_section(ObjectiveSection(metrics={"pearson_delta": -1.0, "rmse_mean": 1.0}))
    assert flipped.direction == "minimize"
    assert Objective.from_section(ObjectiveSection(metric="deg_recall")).direction == "maximize"
    with pytest.raises(ConfigError, match="maximize contradicts energy_distance"):
        Objective.from_section(ObjectiveSection(metric="energy_distance", direction="maximize"))


def test_storage_urls():
    assert parse_storage("sqlite:///runs/x.db").path == Path("runs/x.db").resolve()
    assert parse_storage("journal:runs/x.log").kind == "journal"
    pg = parse_storage("postgresql+psycopg2://u:secret@h:5432/db")
    assert pg.kind == "rdb"
    assert "secret" not in pg.describe()
    with pytest.raises(ConfigError, match="not a storage URL"):
        parse_storage("runs/x.db")


# ------------------------------------------------------------------------------------- running sweeps
@pytest.mark.slow
def test_grid_with_two_sqlite_workers_runs_each_combination_once_and_exports(bench: Path):
    space = {
        "optim.lr": {"type": "categorical", "choices": LRS},
        "network.name": {"type": "categorical", "choices": ["mlp"]},
        "conditional": [{"when": {"network.name": "mlp"}, "space": {"network.width": {"type": "categorical", "choices": [16, 32]}}}],
    }  # fmt: skip
    path = write_sweep(bench, sweep_dict("grid", space=space, budget={"replicates": 2}))
    result = cli.invoke(app, ["sweep", "run", str(path), "--workers", "2"])
    assert result.exit_code == 0, result.output + result.stderr
    study = load("grid", f"sqlite:///{bench / 'runs/sweeps/grid.db'}")
    trials = study.get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4
    combos = {(t.params["optim.lr"], t.params["network.width"]) for t in trials}
    assert combos == {(lr, w) for lr in LRS for w in (16, 32)}
    assert study.user_attrs["primary_metric"] == "energy_distance"
    assert study.user_attrs["secondary_metrics"] == []

    out = cli.invoke(app, ["sweep", "export", str(path), "--out", "trials.csv"])
    assert out.exit_code == 0, out.stderr
    df = pd.read_csv(bench / "trials.csv")
    assert len(df) == 4
    assert set(df["state"]) == {"COMPLETE"}
    for _, row in df.iterrows():
        run_dirs = row["run_dirs"].split(";")
        assert [Path(d).name for d in run_dirs] == ["seed-0", "seed-1"]
        assert row["seeds"] == "0;1"
        per_seed = [row["value_seed_0"], row["value_seed_1"]]
        assert row["value"] == pytest.approx(sum(per_seed) / 2)
        for d, v in zip(run_dirs, per_seed, strict=True):
            record = json.loads((Path(d) / "metrics.json").read_text())
            assert record["val_metrics"]["energy_distance"] == pytest.approx(v)
            assert record["parameter_count"] > 0
        assert Path(run_dirs[0]).parent.name == f"trial-{row['number']}"
        assert row["parameter_count"] > 0
        assert row["wall_seconds"] > 0
    status = cli.invoke(app, ["sweep", "status", "grid"])
    assert status.exit_code == 0
    assert "budget 4/4 finished" in status.stdout


@pytest.mark.slow
def test_pruner_stops_a_clearly_worse_trial(bench: Path):
    raw = sweep_dict(
        "prune",
        space={"optim.lr": {"type": "categorical", "choices": [3e-3, 1e-7]}},
        fixed={"train.max_steps": 20, "train.eval_every": 10},
        pruner={"type": "median", "n_startup_trials": 1, "n_warmup_steps": 0},
    )
    run = run_sweep(write_sweep(bench, raw))
    study = load("prune", run.storage.url)
    good, bad = study.get_trials()
    assert good.params["optim.lr"] == 3e-3
    assert good.state == TrialState.COMPLETE
    assert bad.params["optim.lr"] == 1e-7
    assert bad.state == TrialState.PRUNED
    assert bad.user_attrs["reason"].startswith("pruned at step 10")
    assert set(bad.intermediate_values) == {10}
    status = json.loads((Path(bad.user_attrs["run_dirs"][0]) / "status.json").read_text())
    assert status["status"] == "pruned"
    assert run.status.finished == 2
    assert run.status.failures[0]["state"] == "PRUNED"


@pytest.mark.slow
def test_diverging_trial_is_recorded_failed_and_the_sweep_goes_on(bench: Path):
    raw = sweep_dict(
        "diverge",
        space={"optim.lr": {"type": "categorical", "choices": [1e8, 2e-3]}},
        fixed={"optim.grad_clip": None},
    )
    run = run_sweep(write_sweep(bench, raw))
    bad, good = load("diverge", run.storage.url).get_trials()
    assert bad.state == TrialState.FAIL
    assert "training diverged" in bad.user_attrs["reason"]
    assert good.state == TrialState.COMPLETE
    assert "training diverged" in run.status.failures[0]["reason"]
    status = json.loads((Path(bad.user_attrs["run_dirs"][0]) / "status.json").read_text())
    assert status["status"] == "failed"


@pytest.mark.slow
def test_interrupted_study_resumes_to_its_budget_and_refuses_a_changed_space(bench: Path, monkeypatch):
    raw = sweep_dict(
        "resume",
        space={"optim.lr": {"type": "float", "low": 1e-3, "high": 3e-3, "log": True}},
        sampler={"type": "tpe", "seed": 0},
        budget={"n_trials": 3, "replicates": 1},
    )
    path = write_sweep(bench, raw)
    calls = {"n": 0}
    real_train = TrialRunner._train

    def train_then_interrupt(self, cfg, run_dir, callbacks):
        calls["n"] += 1
        if calls["n"] == 2:
            raise KeyboardInterrupt
        return real_train(self, cfg, run_dir, callbacks)

    monkeypatch.setattr(TrialRunner, "_train", train_then_interrupt)
    with pytest.raises(KeyboardInterrupt):
        run_sweep(path)
    monkeypatch.setattr(TrialRunner, "_train", real_train)
    storage = f"sqlite:///{bench / 'runs/sweeps/resume.db'}"
    study = load("resume", storage)
    assert states(study) == {"COMPLETE": 1, "FAIL": 1, "WAITING": 2}
    interrupted = study.trials[1]
    assert interrupted.user_attrs["reason"].startswith("interrupted")

    run = run_sweep(path)  # resume
    study = load("resume", storage)
    assert states(study) == {"COMPLETE": 3, "FAIL": 1}
    retry = next(t for t in study.trials if t.system_attrs.get("failed_trial") == 1)
    assert retry.params == interrupted.params
    assert retry.state == TrialState.COMPLETE
    assert run.status.finished == run.status.slots == 3

    raw["budget"]["n_trials"] = 4  # a larger budget extends the study by exactly one trial
    run_sweep(write_sweep(bench, raw))
    assert states(load("resume", storage)) == {"COMPLETE": 4, "FAIL": 1}

    raw["space"]["optim.lr"]["high"] = 5e-3
    changed = write_sweep(bench, raw)
    result = cli.invoke(app, ["sweep", "run", str(changed)])
    assert result.exit_code == 2
    assert "different search space" in result.stderr
    assert "bump study.name (e.g. resume_v2)" in result.stderr
    assert len(load("resume", storage).trials) == 5


# ---------------------------------------------------------------------------------------- PostgreSQL
def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def pg_url() -> str:
    """``ARCH_LAB_PG_URL``, or a throw-away server started with scripts/start_postgres.sh, or a skip."""
    url = os.environ.get("ARCH_LAB_PG_URL")
    if url:
        yield url
        return
    if not glob.glob("/usr/lib/postgresql/*/bin"):
        pytest.skip("PostgreSQL tests need ARCH_LAB_PG_URL or a server under /usr/lib/postgresql/*/bin")
    env = {**os.environ, "ARCH_LAB_PG_PORT": str(_free_port())}
    proc = subprocess.run(
        ["bash", str(REPO / "scripts" / "start_postgres.sh")], capture_output=True, text=True, env=env, timeout=120
    )
    if proc.returncode != 0 or not proc.stdout.strip():
        pytest.skip(f"could not start PostgreSQL: {(proc.stderr or proc.stdout).strip()[-300:]}")
    url = proc.stdout.strip().splitlines()[-1]
    yield url
    _stop_postgres(url)


def _stop_postgres(url: str) -> None:
    import sqlalchemy

    engine = sqlalchemy.create_engine(url)
    with engine.connect() as con:
        data_dir = con.execute(sqlalchemy.text("SHOW data_directory")).scalar()
    engine.dispose()
    pg_ctl = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))[-1]
    cmd = f"{pg_ctl} -D {data_dir} stop -m fast"
    args = ["su", "postgres", "-s", "/bin/sh", "-c", cmd] if os.geteuid() == 0 else ["sh", "-c", cmd]
    subprocess.run(args, capture_output=True, timeout=60)


def _worker(path: Path, storage: str, worker_id: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "arch_lab.cli", "sweep", "worker", str(path), "--storage", storage]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    return subprocess.Popen(cmd + ["--worker-id", str(worker_id), "--threads", "1"], env=env)


@pytest.mark.slow
def test_postgres_workers_racing_to_create_a_study_run_exactly_its_budget(bench: Path, pg_url: str):
    name = f"race_{uuid.uuid4().hex[:8]}"
    raw = sweep_dict(
        name,
        space={"optim.lr": {"type": "float", "low": 1e-3, "high": 3e-3, "log": True}},
        sampler={"type": "tpe", "seed": 0},
        budget={"n_trials": 4, "replicates": 1},
    )
    path = write_sweep(bench, raw)
    procs = [_worker(path, pg_url, i) for i in range(3)]
    assert [p.wait(timeout=240) for p in procs] == [0, 0, 0]
    trials = load(name, pg_url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 4  # no overshoot, whatever the worker count
    assert sorted(t.user_attrs["slot"] for t in trials) == [0, 1, 2, 3]
    assert len({t.params["optim.lr"] for t in trials}) == 4


@pytest.mark.slow
def test_postgres_grid_with_three_workers_has_no_duplicates_and_no_losses(bench: Path, pg_url: str):
    name = f"grid_{uuid.uuid4().hex[:8]}"
    lrs = [1e-3, 1.5e-3, 2e-3, 2.5e-3, 3e-3]
    path = write_sweep(bench, sweep_dict(name, space={"optim.lr": {"type": "categorical", "choices": lrs}}))
    run_sweep(path, workers=3, storage=pg_url)
    trials = load(name, pg_url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 5
    assert sorted(t.params["optim.lr"] for t in trials) == lrs


@pytest.mark.slow
def test_postgres_worker_killed_mid_trial_is_failed_by_heartbeat_and_retried(bench: Path, pg_url: str):
    name = f"kill_{uuid.uuid4().hex[:8]}"
    raw = sweep_dict(
        name,
        study={"name": name, "heartbeat_interval": 1, "grace_period": 4},
        space={"optim.lr": {"type": "categorical", "choices": [1e-3, 2e-3, 3e-3]}},
        fixed={"train.max_steps": 40, "train.eval_every": 10},
    )
    path = write_sweep(bench, raw)
    victim = _worker(path, pg_url, 0)
    deadline = time.monotonic() + 120
    killed = None
    while killed is None and time.monotonic() < deadline and victim.poll() is None:
        time.sleep(0.2)
        try:
            study = load(name, pg_url)
        except KeyError:
            continue
        for t in study.get_trials(states=(TrialState.RUNNING,)):
            # the worker labels a trial when it claims it; kill it once the trial has sampled its configuration
            if str(t.user_attrs.get("worker", "")).endswith(f":{victim.pid}") and t.params:
                victim.send_signal(signal.SIGKILL)
                killed = t
    victim.wait(timeout=30)
    assert killed is not None, "the worker never started a trial"

    sweep = load_sweep(path)
    report = run_worker(sweep, parse_storage(pg_url), seed_offset=1, create=False, poll_seconds=0.5)
    trials = load(name, pg_url).get_trials()
    assert states(load(name, pg_url)) == {"COMPLETE": 3, "FAIL": 1}
    lost = next(t for t in trials if t.state == TrialState.FAIL)
    assert lost.number == killed.number
    retry = next(t for t in trials if t.system_attrs.get("failed_trial") == killed.number)
    assert retry.state == TrialState.COMPLETE
    assert retry.params == killed.params
    assert retry.number in report.trials
    retried_by = {killed.number: retry.number}
    assert trial_reason(lost, retried_by).startswith("worker lost")
    assert f"retried as trial {retry.number}" in (trial_reason(lost, retried_by))
    assert sorted(t.params["optim.lr"] for t in trials if t.state == TrialState.COMPLETE) == [1e-3, 2e-3, 3e-3]
    status = sweep_status(path, pg_url)
    assert status.finished == status.slots == 3
    assert "worker lost" in status.failures[0]["reason"]
    assert len(export_trials(path, bench / "k.csv", pg_url)) == 4


# ------------------------------------------------------------------------------------------------ folds
def test_budget_folds_runs_every_fold_of_each_configuration(bench: Path):
    """``budget.folds: all`` runs each configuration on every cross-validation fold; the trial value is the mean
    over folds and seeds, and each held-out pair of the data is tested in exactly one of the runs."""
    raw = sweep_dict(
        "folds",
        space={"optim.lr": {"type": "categorical", "choices": [2e-3]}},
        fixed={"task.kind": "combination", "task.n_folds": 3, "train.max_steps": 4, "train.eval_every": 4},
        budget={"replicates": 2, "folds": "all"},
    )
    run = run_sweep(write_sweep(bench, raw))
    (trial,) = load("folds", run.storage.url).get_trials()
    assert trial.state == TrialState.COMPLETE
    dirs = [Path(d) for d in trial.user_attrs["run_dirs"]]
    assert [d.relative_to(dirs[0].parents[1]).as_posix() for d in dirs] == [
        f"fold-{f}/seed-{s}" for f in range(3) for s in range(2)
    ]
    assert trial.user_attrs["folds"] == [0, 0, 1, 1, 2, 2]
    values = trial.user_attrs["values_per_seed"]
    assert len(values) == 6
    assert trial.value == pytest.approx(sum(values) / 6)
    tested = []
    for d in dirs[::2]:
        per = pd.read_csv(d / "metrics_per_condition.csv")
        cfg = yaml.safe_load((d / "config.yaml").read_text())
        tested += [(cfg["task"]["fold"], s, p) for s, p in zip(per["state"], per["perturbation"], strict=True)]
    assert sorted((s, p) for _, s, p in tested) == [(s, "A+B") for s in ("s0", "s1", "s2")]
    assert sorted({f for f, _, _ in tested}) == [0, 1, 2]


@pytest.mark.parametrize(
    ("fixed", "budget", "message"),
    [
        ({}, {"folds": "all"}, "the base experiment has no folds; set task.n_folds"),
        ({"task.kind": "combination", "task.n_folds": 3}, {"folds": [0, 3]}, "numbers from 0 to 2"),
        ({"task.kind": "combination", "task.n_folds": 3, "task.fold": 1}, {"folds": "all"}, "set by budget.folds"),
    ],
)
def test_bad_fold_budgets_are_named(bench: Path, fixed: dict, budget: dict, message: str):
    raw = sweep_dict("badfolds", fixed=fixed, budget={"replicates": 1, **budget})
    with pytest.raises(ConfigError, match=message):
        load_sweep(write_sweep(bench, raw))


# --------------------------------------------------------------------------------------------- progress
def test_progress_line_gives_the_step_and_the_time_left():
    from arch_lab.sweeps.runner import TrialProgress
    from arch_lab.sweeps.study import BudgetCount
    from arch_lab.sweeps.worker import progress_line

    progress = {"step": 50, "max_steps": 200, "seconds_per_step": 0.5}
    running = {"status": "running", "progress": progress}
    first_of_two = TrialProgress(runs=2, jobs=((0, Path("x")),), later=1)
    # run 1 of 2: 150 steps left in it, 200 in the next; 2 trials waiting beyond the 2 running, 2 workers
    line = progress_line(4, first_of_two, [running], BudgetCount(finished=2, slots=6, running=2))
    assert line == (
        "trial 4: run 1/2 at step 50/200 (0.5 s/step); about 3 min left in this trial; "
        "study 2/6 trials finished, about 6 min left at this pace"
    )
    capped = {"status": "running", "progress": {**progress, "max_seconds": 40.0, "eta_seconds": 15.0}}
    # train.max_seconds: 40 s per run at most
    assert progress_line(4, first_of_two, [capped], BudgetCount(finished=2, slots=6, running=2)) == (
        "trial 4: run 1/2 at step 50/200 (0.5 s/step); about 55 s left in this trial; "
        "study 2/6 trials finished, about 2 min left at this pace"
    )
    assert progress_line(4, None, [], BudgetCount(0, 1, 1)) is None
    assert progress_line(4, TrialProgress(1, ((0, Path("x")),)), [{"status": "missing"}], BudgetCount(0, 1, 1)) is None


def test_progress_line_follows_every_parallel_run_after_the_first_ends():
    """With --parallel-runs the line reads every run of the trial, not only the first: once the first has
    completed the others are still reported, and the runs still to start are scheduled onto the freed slots."""
    from arch_lab.sweeps.runner import TrialProgress
    from arch_lab.sweeps.study import BudgetCount
    from arch_lab.sweeps.worker import progress_line

    jobs = tuple((i, Path(f"seed-{i}")) for i in range(2, 5))  # runs 3-5 of 5 (runs 1 and 2 were taken over)
    trial = TrialProgress(runs=5, jobs=jobs, slots=2)
    done = {"status": "completed"}
    at = {"status": "running", "progress": {"step": 2600, "max_steps": 3000, "seconds_per_step": 1.5}}
    fresh = {"status": "running", "progress": {"step": 500, "max_steps": 3000, "seconds_per_step": 1.5}}
    count = BudgetCount(finished=0, slots=1, running=1)
    # run 3 done: runs 4 (400 steps left, 600 s) and 5 (2500 steps left, 3750 s) train; nothing waits
    assert progress_line(11, trial, [done, at, fresh], count) == (
        "trial 11: run 4/5 at step 2600/3000, run 5/5 at step 500/3000 (1.5 s/step); about 62 min left in this "
        "trial; study 0/1 trials finished, about 62 min left at this pace"
    )
    # run 5 not started yet: run 3's slot is free, so it starts there now and takes a whole run (4500 s)
    waiting = {"status": "missing"}
    assert progress_line(11, trial, [done, at, waiting], count) == (
        "trial 11: run 4/5 at step 2600/3000 (1.5 s/step), 1 more to start; about 75 min left in this trial; "
        "study 0/1 trials finished, about 75 min left at this pace"
    )
    # two runs to start beside one running: one starts in the free slot, the other when run 1 ends (600 + 4500 s)
    three = TrialProgress(runs=3, jobs=tuple((i, Path(f"s{i}")) for i in range(3)), slots=2)
    assert progress_line(1, three, [at, waiting, {"status": "interrupted"}], count) == (
        "trial 1: run 1/3 at step 2600/3000 (1.5 s/step), 2 more to start; about 85 min left in this trial; "
        "study 0/1 trials finished, about 85 min left at this pace"
    )
    # a run resumed into its final evaluation is running without a step: it is named apart and counted whole
    resumed = {"status": "running", "resumed": True}
    assert progress_line(11, trial, [resumed, at, waiting], count) == (
        "trial 11: run 4/5 at step 2600/3000 (1.5 s/step), 1 more running without a step recorded yet, 1 more to "
        "start; about 85 min left in this trial; study 0/1 trials finished, about 85 min left at this pace"
    )
    assert progress_line(11, trial, [done, done, {"status": "failed"}], count) is None


def test_format_duration_reads_as_a_person_would():
    from arch_lab.sweeps.worker import format_duration

    assert [format_duration(s) for s in (5, 89, 600, 7500, float("nan"))] == [
        "5 s",
        "89 s",
        "10 min",
        "2 h 05 min",
        "?",
    ]


def test_worker_logs_progress_while_a_trial_runs_and_status_shows_it(bench: Path, monkeypatch, caplog):
    import logging

    from arch_lab.rundir import RunDir
    from arch_lab.sweeps import worker as worker_module
    from arch_lab.sweeps.report import _run_progress
    from arch_lab.training import trainer as trainer_module

    monkeypatch.setattr(trainer_module, "PROGRESS_EVERY_S", 0.0)
    monkeypatch.setattr(worker_module, "PROGRESS_EVERY_S", 0.05)
    step = trainer_module.FlowTrainer.train_step

    def slow_step(self):
        time.sleep(0.03)
        return step(self)

    monkeypatch.setattr(trainer_module.FlowTrainer, "train_step", slow_step)
    path = write_sweep(bench, sweep_dict("progress", space={"optim.lr": {"type": "categorical", "choices": [1e-3]}}))
    with caplog.at_level(logging.INFO, logger="arch_lab.sweeps"):
        run_sweep(path)
    lines = [r.getMessage() for r in caplog.records]
    assert "study 0/1 trials finished" in next(m for m in lines if m.startswith("trial 0 started"))
    progress = [m for m in lines if m.startswith("trial 0: run 1/1 at step ")]
    assert progress, lines
    assert all(" left in this trial; study 0/1 trials finished, about " in m for m in progress)
    # a running trial's row in `arch-lab sweep status` carries its run's progress
    run = RunDir.create(bench / "r")
    run.set_status("running")
    run.set_progress(3, 10, 1.0)
    row = _run_progress({"run_dirs": [str(run.path)], "n_runs": 2})
    assert row == {
        "run": 1, "runs": 2, "running": 1, "step": 3, "max_steps": 10, "seconds_per_step": 1.0, "eta_seconds": 7.0
    }  # fmt: skip
    # runs training at once (--parallel-runs): the row follows the one that ends last, and counts them
    later = RunDir.create(bench / "r2")
    later.set_status("running")
    later.set_progress(1, 10, 2.0)
    done = RunDir.create(bench / "r0")
    done.set_status("completed")
    row = _run_progress({"run_dirs": [str(done.path), str(run.path), str(later.path)], "n_runs": 3})
    assert (row["run"], row["running"], row["step"], row["eta_seconds"]) == (3, 2, 1, 18.0)
    assert _run_progress({"run_dirs": []}) == {}
