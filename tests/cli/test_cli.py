"""The command-line package: entry points, one-line errors, and an import graph without cycles."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import typer
import yaml
from conftest import REPO, experiment_dict
from test_layout import cycles, import_graph, module_names
from typer.testing import CliRunner

from arch_lab.cli import app, main
from arch_lab.cli.errors import friendly, friendly_with
from arch_lab.errors import ArchLabError, RunInterrupted
from arch_lab.rundir import RunDir

runner = CliRunner()


def test_console_script_and_module_entry_points():
    assert callable(main)
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "sweep" in result.stdout
    assert "train" in result.stdout
    result = runner.invoke(app, ["sweep", "--help"])
    assert result.exit_code == 0
    assert "export" in result.stdout
    done = subprocess.run(
        [sys.executable, "-m", "arch_lab.cli", "sweep", "--help"], capture_output=True, text=True, cwd=REPO
    )
    assert done.returncode == 0
    assert "worker" in done.stdout


def _raises(exc: BaseException):
    def command() -> None:
        raise exc

    return command


@pytest.mark.parametrize(
    ("decorate", "exc", "code", "message"),
    [
        (friendly, ArchLabError("bad key\nsecond line"), 2, "error: bad key"),
        (friendly, KeyboardInterrupt(), 130, "error: interrupted; resume with: arch-lab train --resume RUN_DIR"),
        (friendly_with("stopped: rerun"), KeyboardInterrupt(), 130, "error: stopped: rerun"),
        (
            friendly,
            RunInterrupted("runs/a b/r1"),
            130,
            "error: interrupted; resume with: arch-lab train --resume 'runs/a b/r1'",
        ),
    ],
)
def test_user_errors_are_one_line_and_a_non_zero_exit(decorate, exc, code, message, capsys):
    with pytest.raises(typer.Exit) as stop:
        decorate(_raises(exc))()
    assert stop.value.exit_code == code
    assert capsys.readouterr().err.strip() == message


def test_interrupted_training_prints_the_run_to_resume(synthetic_h5ad: Path, tmp_path: Path, monkeypatch):
    """Ctrl-C during ``arch-lab train`` names the run directory it created, and that command resumes it."""
    from arch_lab.training.trainer import FlowTrainer

    step = FlowTrainer.train_step
    calls = []

    def interrupt_at_three(self):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return step(self)

    experiment = tmp_path / "exp.yaml"
    experiment.write_text(yaml.safe_dump(experiment_dict(synthetic_h5ad, tmp_path)))
    monkeypatch.setattr(FlowTrainer, "train_step", interrupt_at_three)
    result = runner.invoke(app, ["train", str(experiment)])
    assert result.exit_code == 130
    (run,) = RunDir.find(tmp_path / "runs")
    assert result.stderr.strip() == f"error: interrupted; resume with: arch-lab train --resume {run.path}"
    assert "RUN_DIR" not in result.stderr
    assert run.read_status()["status"] == "interrupted"  # SIGINT/SIGTERM mark the run interrupted (resumable)
    monkeypatch.setattr(FlowTrainer, "train_step", step)
    resumed = runner.invoke(app, ["train", "--resume", str(run.path)])
    assert resumed.exit_code == 0, resumed.output
    assert run.is_completed()


def test_cli_modules_import_downwards_only():
    """The sweep commands and the error formatting never import the top-level command module (the cycle check of
    the whole library is ``tests/test_layout.py``)."""
    graph = import_graph(module_names(REPO / "arch_lab"))
    assert {"arch_lab.cli.main", "arch_lab.cli.sweep", "arch_lab.cli.errors"} <= set(graph)
    assert "arch_lab.cli.main" not in graph["arch_lab.cli.sweep"] | graph["arch_lab.cli.errors"]
    assert cycles(graph) == []


def test_version_option_prints_the_package_version():
    from arch_lab import __version__

    result = runner.invoke(app, ["--version"])
    assert result.exit_code == 0
    assert result.stdout.strip() == f"arch-lab {__version__}"
