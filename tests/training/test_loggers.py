"""Training curves where a lab tracks them: train_log.csv and TensorBoard by default, W&B and MLflow when named
(imported only then, with a one-line error when missing)."""

from __future__ import annotations

import re
import sys
import types

import pytest
import yaml
from conftest import experiment_dict
from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
from typer.testing import CliRunner

from arch_lab import api
from arch_lab.cli import app
from arch_lab.config import experiment_from_dict
from arch_lab.errors import ConfigError
from arch_lab.rundir import RunDir
from arch_lab.training.loggers import CsvLogger, MlflowLogger, TensorBoardLogger, check_loggers

STEPS, EVERY = 12, 6
TRAIN_KEYS = {"train/loss", "train/lr", "train/grad_norm", "train/step_seconds"}


def config(synthetic_h5ad, tmp_path, **train):
    raw = experiment_dict(synthetic_h5ad, tmp_path,
                          train={"max_steps": STEPS, "eval_every": EVERY, "checkpoint_every": EVERY, **train})  # fmt: skip
    return experiment_from_dict(raw)


@pytest.fixture(scope="module")
def default_run(tmp_path_factory):
    from conftest import synthetic_adata

    tmp = tmp_path_factory.mktemp("loggers")
    path = tmp / "synthetic.h5ad"
    synthetic_adata().write_h5ad(path)
    cfg = config(path, tmp)
    assert cfg.train.loggers == ["csv", "tensorboard"]
    return RunDir(api.train(cfg).run_dir)


def test_tensorboard_event_file_holds_every_step_and_each_validation(default_run):
    events = EventAccumulator(str(default_run.tensorboard))
    events.Reload()
    tags = set(events.Tags()["scalars"])
    assert TRAIN_KEYS <= tags
    assert {"val/energy_distance", "val/pearson_delta"} <= tags
    for key in TRAIN_KEYS:
        assert [e.step for e in events.Scalars(key)] == list(range(1, STEPS + 1)), key
    assert [e.step for e in events.Scalars("val/energy_distance")] == [EVERY, 2 * EVERY]
    history = default_run.read_history()
    assert [e.value for e in events.Scalars("val/energy_distance")] == pytest.approx(
        history["val_energy_distance"].tolist(), rel=1e-6
    )
    lr = [e.value for e in events.Scalars("train/lr")]
    assert lr[0] < lr[4]  # warm-up (5 steps) then decay
    assert all(e.value > 0 for e in events.Scalars("train/step_seconds"))


def test_csv_log_matches_the_tensorboard_curve(default_run):
    log = default_run.read_train_log()
    assert log["step"].tolist() == list(range(1, STEPS + 1))
    assert TRAIN_KEYS | {"val/energy_distance"} <= set(log.columns)
    events = EventAccumulator(str(default_run.tensorboard))
    events.Reload()
    assert log["train/loss"].tolist() == pytest.approx([e.value for e in events.Scalars("train/loss")], rel=1e-6)
    assert log["val/energy_distance"].dropna().index.tolist() == [EVERY - 1, 2 * EVERY - 1]


def test_log_every_and_no_logger(synthetic_h5ad, tmp_path):
    run = RunDir(api.train(config(synthetic_h5ad, tmp_path, loggers=["csv"], log_every=4)).run_dir)
    log = run.read_train_log()
    assert log.dropna(subset=["train/loss"])["step"].tolist() == [4, 8, 12]
    assert log.dropna(subset=["val/energy_distance"])["step"].tolist() == [EVERY, 2 * EVERY]
    assert not run.tensorboard.exists()
    quiet = RunDir(api.train(config(synthetic_h5ad, tmp_path / "q", loggers=[])).run_dir)
    assert not quiet.train_log.exists()
    assert not quiet.tensorboard.exists()


def test_a_resumed_run_drops_what_it_logged_past_its_checkpoint(tmp_path):
    run = RunDir.create(tmp_path / "run")
    first = CsvLogger(run)
    tb = TensorBoardLogger(run)
    for step in range(1, 11):
        first.log(step, {"train/loss": float(step)})
        tb.log(step, {"train/loss": float(step)})
    first.close()
    tb.close()
    again = CsvLogger(run, start_step=5)  # the checkpoint was at step 5
    tb = TensorBoardLogger(run, start_step=5)
    for step in range(6, 9):
        again.log(step, {"train/loss": 100.0 + step, "train/grad_norm": float("nan")})
        tb.log(step, {"train/loss": 100.0 + step})
    again.close()
    tb.close()
    log = run.read_train_log()
    assert log["step"].tolist() == list(range(1, 9))
    assert log["train/loss"].tolist() == [1, 2, 3, 4, 5, 106, 107, 108]
    assert "train/grad_norm" not in log.columns  # not finite: not a value (gradients not clipped)
    events = EventAccumulator(str(run.tensorboard))
    events.Reload()
    assert [(e.step, e.value) for e in events.Scalars("train/loss")] == [(1, 1), (2, 2), (3, 3), (4, 4), (5, 5),
                                                                         (6, 106), (7, 107), (8, 108)]  # fmt: skip


def test_default_loggers_and_bad_names_are_one_line():
    raw = {"name": "x", "data": {"path": "x.h5ad"}, "task": {"kind": "combination"}}
    assert experiment_from_dict(raw).train.loggers == ["csv", "tensorboard"]
    with pytest.raises(ConfigError, match=r"^train\.loggers\.1: Input should be 'csv', 'tensorboard', 'wandb' or"):
        experiment_from_dict(raw, {"train.loggers": ["csv", "tb"]})
    with pytest.raises(ConfigError, match=r"^train: loggers: each logger once"):
        experiment_from_dict(raw, {"train.loggers": ["csv", "csv"]})


@pytest.mark.parametrize("name", ["wandb", "mlflow"])
def test_a_named_logger_that_is_not_installed_fails_before_the_run(name, synthetic_h5ad, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, name, None)  # import fails as when the package is absent
    message = f"train.loggers: {name} is named but not installed; pip install 'arch-lab[{name}]' or remove it from "
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        check_loggers(["csv", name])
    with pytest.raises(ConfigError, match=f"^{re.escape(message)}"):
        api.train(config(synthetic_h5ad, tmp_path, loggers=["csv", name]))
    assert not (tmp_path / "runs").exists()
    exp = tmp_path / "exp.yaml"
    exp.write_text(yaml.safe_dump(experiment_dict(synthetic_h5ad, tmp_path)))
    result = CliRunner().invoke(app, ["train", str(exp), "--set", f"train.loggers=[csv,{name}]"])
    assert result.exit_code == 2
    assert result.stderr.strip() == f"error: {message}train.loggers"


def test_optional_loggers_are_imported_only_when_named():
    import subprocess

    code = ("import sys; from arch_lab.training import trainer, loggers; "
            "print(sorted(m for m in ('wandb', 'mlflow') if m in sys.modules))")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


class FakeWandb(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("wandb")
        self.calls: list[tuple] = []

    def init(self, **kwargs):
        self.calls.append(("init", kwargs))
        fake = self

        class Run:
            def log(self, values, step):
                fake.calls.append(("log", step, dict(values)))

            def finish(self):
                fake.calls.append(("finish",))

        return Run()


def test_wandb_gets_the_config_every_step_and_the_validations(synthetic_h5ad, tmp_path, monkeypatch):
    fake = FakeWandb()
    monkeypatch.setitem(sys.modules, "wandb", fake)
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    run_dir = api.train(config(synthetic_h5ad, tmp_path, loggers=["wandb"])).run_dir
    (kind, init), *logs, last = fake.calls
    assert kind == "init"
    assert last == ("finish",)
    assert init["project"] == "synthetic"
    assert init["name"] == run_dir.name
    assert init["resume"] == "allow"
    assert init["config"]["network"]["name"] == "mlp"
    steps = [c[1] for c in logs if "train/loss" in c[2]]
    assert steps == list(range(1, STEPS + 1))
    assert [c[1] for c in logs if "val/energy_distance" in c[2]] == [EVERY, 2 * EVERY]
    assert not RunDir(run_dir).train_log.exists()


class FakeMlflow(types.ModuleType):
    def __init__(self) -> None:
        super().__init__("mlflow")
        self.calls: list[tuple] = []

    def set_experiment(self, name):
        self.calls.append(("experiment", name))

    def start_run(self, run_name=None, run_id=None):
        self.calls.append(("start", run_name, run_id))
        return types.SimpleNamespace(info=types.SimpleNamespace(run_id=run_id or "abc123"))

    def log_params(self, params):
        self.calls.append(("params", dict(params)))

    def log_metrics(self, values, step):
        self.calls.append(("metrics", step, dict(values)))

    def end_run(self):
        self.calls.append(("end",))


def test_mlflow_logs_params_and_metrics_and_resumes_the_same_run(synthetic_h5ad, tmp_path, monkeypatch):
    fake = FakeMlflow()
    monkeypatch.setitem(sys.modules, "mlflow", fake)
    cfg = config(synthetic_h5ad, tmp_path, loggers=["mlflow"])
    run = RunDir(api.train(cfg).run_dir)
    assert fake.calls[0] == ("experiment", "synthetic")
    assert fake.calls[1] == ("start", run.path.name, None)
    params = fake.calls[2][1]
    assert params["network.name"] == "mlp"
    assert params["train.max_steps"] == str(STEPS)
    metrics = [c for c in fake.calls if c[0] == "metrics"]
    assert [c[1] for c in metrics if "train/loss" in c[2]] == list(range(1, STEPS + 1))
    assert fake.calls[-1] == ("end",)
    assert run.read_meta()["mlflow_run_id"] == "abc123"
    fake.calls.clear()
    MlflowLogger(run, cfg, start_step=6).close()
    assert fake.calls == [("start", None, "abc123"), ("end",)]
