"""A backbone is one file and zero edits.

The README's "Add a backbone" example, as printed, is written as one module into a folder of the
``arch_lab.networks`` package and discovered: it is then listed by ``arch-lab networks``, trained through the API,
swept, scored by default and passes every registry contract test of ``tests/networks/test_networks.py``. The same file
shipped by an outside package registers through the ``arch_lab.networks`` entry-point group. Also here: the
parameter-matching knob declared on each network class, and network knobs checked once by the experiment config.
"""

from __future__ import annotations

import importlib.util
import json
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import optuna
import pytest
import test_networks
import torch
import yaml
from conftest import REPO, experiment_dict, synthetic_adata
from optuna.trial import TrialState
from pydantic import BaseModel, ConfigDict
from typer.testing import CliRunner

import arch_lab.networks
from arch_lab import api
from arch_lab.cli import app
from arch_lab.config import experiment_from_dict
from arch_lab.errors import ConfigError
from arch_lab.networks import (
    ENTRY_POINT_GROUP,
    _registry,
    build_network,
    count_parameters,
    discover_networks,
    get_network_class,
    list_networks,
    match_parameters,
    parameter_count_of,
    register_network,
)
from arch_lab.networks._matching import knob_step
from arch_lab.scoreboard import default_entries
from arch_lab.spec import DataSpec
from arch_lab.sweeps import load_sweep, run_sweep

MARKER = "# arch_lab/networks/my_net.py\n"
SPEC = DataSpec.synthetic(n_genes=40)


def readme_backbone() -> str:
    """The README's backbone code block, exactly as printed (its first line names the file)."""
    text = (REPO / "README.md").read_text()
    return MARKER + text.split("```python\n" + MARKER, 1)[1].split("```", 1)[0]


def contract_checks() -> list[Callable[[str], None]]:
    """The registry contract tests of ``tests/networks/test_networks.py``: every test parametrized over all networks."""
    checks = [
        obj
        for name, obj in vars(test_networks).items()
        if name.startswith("test_")
        and any(
            mark.name == "parametrize" and mark.args == ("name", test_networks.NETWORKS)
            for mark in getattr(obj, "pytestmark", [])
        )
    ]
    assert len(checks) >= 10, [c.__name__ for c in checks]
    return checks


@pytest.fixture
def registry(monkeypatch: pytest.MonkeyPatch) -> None:
    """Networks registered during the test are forgotten afterwards."""
    monkeypatch.setattr(_registry, "_REGISTRY", dict(_registry._REGISTRY))


@pytest.fixture
def dropped(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, registry: None) -> Iterator[Path]:
    """The README backbone written as one file into a folder of the networks package, then discovered."""
    folder = tmp_path / "networks_folder"
    folder.mkdir()
    module = folder / "my_net.py"
    module.write_text(readme_backbone())
    monkeypatch.setattr(arch_lab.networks, "__path__", [*arch_lab.networks.__path__, str(folder)])
    assert "my_net" not in list_networks()
    discover_networks()
    yield module
    sys.modules.pop("arch_lab.networks.my_net", None)


# ------------------------------------------------------------------------------ one file, zero edits
def test_dropped_file_is_registered_listed_and_scored_by_default(dropped: Path) -> None:
    assert "my_net" in list_networks()
    assert get_network_class("my_net").__module__ == "arch_lab.networks.my_net"
    result = CliRunner().invoke(app, ["networks"])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.stdout.splitlines() if line.split()[0] == "my_net"]
    assert len(lines) == 1
    assert "Two-layer MLP" in lines[0]
    assert default_entries()[-len(list_networks()) :] == list_networks()
    assert "my_net" in default_entries()
    assert "no_change" in default_entries()
    assert discover_networks() == list_networks()  # discovering again imports nothing twice


def test_dropped_file_passes_every_contract_test(dropped: Path) -> None:
    for check in contract_checks():
        check("my_net")


def test_dropped_file_trains_through_the_api(dropped: Path, synthetic_h5ad: Path, tmp_path: Path) -> None:
    raw = experiment_dict(synthetic_h5ad, tmp_path)
    raw["network"] = {"name": "my_net", "width": 32}  # replaces the default MLP's knobs
    res = api.train(experiment_from_dict(raw))
    assert json.loads((res.run_dir / "metrics.json").read_text())["network"] == "my_net"


def sweep_bench(folder: Path, space: dict, **sections: object) -> Path:
    """A tiny base experiment and a brute-force sweep over ``space`` in ``folder``; the sweep's path."""
    synthetic_adata().write_h5ad(folder / "synthetic.h5ad")
    base = experiment_dict(
        folder / "synthetic.h5ad",
        folder,
        network={"name": "mlp", "width": 32, "depth": 1},
        train={"max_steps": 4, "eval_every": 2, "checkpoint_every": 4},
    )
    (folder / "base.yaml").write_text(yaml.safe_dump(base))
    raw = {
        "study": {"name": "dropped"},
        "base": "base.yaml",
        "objective": {"metric": "energy_distance"},
        "space": space,
        "sampler": {"type": "brute_force"},
        "budget": {"replicates": 1},
        **sections,
    }
    path = folder / "sweep.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def test_dropped_file_is_swept(dropped: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    space = {
        "network.name": {"type": "categorical", "choices": ["mlp", "my_net"]},
        "conditional": [{"when": {"network.name": "my_net"},
                         "space": {"network.width": {"type": "categorical", "choices": [8, 16]}}}],
    }  # fmt: skip
    run = run_sweep(sweep_bench(tmp_path, space))
    trials = optuna.load_study(study_name="dropped", storage=run.storage.url).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 3
    mine = sorted(t.params["network.width"] for t in trials if t.params["network.name"] == "my_net")
    assert mine == [8, 16]
    for t in trials:
        record = json.loads((Path(t.user_attrs["run_dirs"][0]) / "metrics.json").read_text())
        assert record["network"] == t.params["network.name"]


# ------------------------------------------------------------------------- knobs checked by the config
@pytest.mark.parametrize(
    ("space", "fixed", "message"),
    [
        ({"network.widht": {"type": "categorical", "choices": [8]}}, {},
         "space.network.widht: unknown key 'network.widht' for network 'mlp': valid keys are width, depth"),
        ({"optim.lr": {"type": "categorical", "choices": [1e-3]}}, {"network.widht": 8},
         "fixed.network.widht: unknown key 'network.widht' for network 'mlp': valid keys are width, depth"),
        ({"network.name": {"type": "categorical", "choices": ["mlp", "my_net"]}, "conditional": [
            {"when": {"network.name": "my_net"}, "space": {"network.depth": {"type": "categorical", "choices": [2]}}}]},
         {}, "unknown key 'network.depth' for network 'my_net': valid keys are width, cond_dim"),
    ],
)  # fmt: skip
def test_bad_network_knob_in_a_sweep_is_one_line_naming_it(
    dropped: Path, tmp_path: Path, space: dict, fixed: dict, message: str
) -> None:
    with pytest.raises(ConfigError) as err:
        load_sweep(sweep_bench(tmp_path, space, fixed=fixed))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_network_knobs_are_checked_when_the_experiment_is_validated(tmp_path: Path) -> None:
    raw = experiment_dict(tmp_path / "unused.h5ad", tmp_path)
    with pytest.raises(ConfigError, match=r"^unknown key 'network\.widht' for network 'mlp': valid keys are width"):
        experiment_from_dict(raw, {"network.widht": 3})
    with pytest.raises(ConfigError, match=r"^invalid value for 'network\.width' \(mlp\)"):
        experiment_from_dict(raw, {"network.width": "wide"})
    with pytest.raises(ConfigError, match=r"^unknown network 'unet': registered networks are gene_transformer"):
        experiment_from_dict(raw, {"network.name": "unet"})
    with pytest.raises(ConfigError, match=r"^network\.width: set by match_parameters"):
        experiment_from_dict(raw, {"network.match_parameters": {"target": 1000}})
    cfg = experiment_from_dict(raw, {"network": {"name": "unet1d", "match_parameters": {"target": 1000}}})
    assert cfg.network.knobs() == {}


def test_the_networks_package_does_not_import_the_config() -> None:
    code = "import sys, arch_lab.networks; print('arch_lab.config' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=REPO)
    assert out.stdout.strip() == "False"


# --------------------------------------------------------------------- parameter-matching knob per class
def test_match_knob_and_step_are_declared_by_each_class() -> None:
    assert {n: get_network_class(n).match_knob for n in ("mlp", "gene_transformer", "unet1d")} == {
        "mlp": "width", "gene_transformer": "dim", "unet1d": "base_channels"
    }  # fmt: skip
    assert knob_step("gene_transformer", "dim", {}) == 4
    assert knob_step("gene_transformer", "dim", {"heads": 2}) == 2
    assert knob_step("gene_transformer", "depth", {"heads": 2}) == 1
    assert knob_step("unet1d", "base_channels", {}) == 1
    assert knob_step("unet1d", "base_channels", {"mid_attention": True}) == 4
    assert knob_step("unet1d", "base_channels", {"attention_levels": [1], "attention_heads": 2}) == 2
    assert knob_step("mlp", "width", {}) == 1


def test_dropped_file_is_matched_on_its_declared_knob(dropped: Path) -> None:
    target = parameter_count_of("unet1d", {}, SPEC)
    knobs = match_parameters("my_net", SPEC, target, base_knobs={"cond_dim": 32})
    assert set(knobs) == {"cond_dim", "width"}
    assert abs(count_parameters(build_network("my_net", knobs, SPEC)) - target) <= 0.05 * target


def test_a_network_without_a_match_knob_needs_one_named(registry: None, tmp_path: Path) -> None:
    @register_network("knobless")
    class Knobless(torch.nn.Module):
        class Config(BaseModel):
            model_config = ConfigDict(extra="forbid")
            width: int = 8

        def __init__(self, config: Config, spec: DataSpec) -> None:
            super().__init__()
            self.config, self.spec = config, spec
            self.linear = torch.nn.Linear(spec.n_genes, config.width)

        @classmethod
        def tiny_config(cls) -> dict:
            return {}

    message = r"network\.match_parameters\.knob: required for knobless, .*integer knobs: width"
    with pytest.raises(ConfigError, match=message):
        match_parameters("knobless", SPEC, 1000)
    raw = experiment_dict(tmp_path / "unused.h5ad", tmp_path)
    with pytest.raises(ConfigError, match=message):
        experiment_from_dict(raw, {"network": {"name": "knobless", "match_parameters": {"target": 1000}}})
    knobs = match_parameters("knobless", SPEC, 40 * 30 + 30, knob="width")
    assert knobs == {"width": 30}


def test_a_match_knob_that_is_not_an_integer_knob_is_refused_at_registration(registry: None) -> None:
    class Misdeclared(torch.nn.Module):
        match_knob = "name"

        class Config(BaseModel):
            model_config = ConfigDict(extra="forbid")
            name: str = "x"
            width: int = 8

        @classmethod
        def tiny_config(cls) -> dict:
            return {}

    with pytest.raises(ConfigError, match=r"match_knob 'name' is not an integer knob .*integer knobs: width"):
        register_network("misdeclared")(Misdeclared)
    assert "misdeclared" not in list_networks()


# ------------------------------------------------------------------------------------ entry points
def write_distribution(root: Path, name: str, entry_points: dict[str, str]) -> None:
    """An installed distribution (a real ``.dist-info`` folder) declaring ``arch_lab.networks`` entry points."""
    info = root / f"{name}-0.1.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {name}\nVersion: 0.1\n")
    lines = "".join(f"{key} = {value}\n" for key, value in entry_points.items())
    (info / "entry_points.txt").write_text(f"[{ENTRY_POINT_GROUP}]\n{lines}")


def test_an_entry_point_registers_an_outside_backbone(
    registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = readme_backbone().replace('"my_net"', '"plugged_net"').replace("class MyNet", "class PluggedNet")
    (tmp_path / "plugged_backbone.py").write_text(source)
    write_distribution(tmp_path, "plugged_backbone", {"plugged_net": "plugged_backbone"})
    monkeypatch.syspath_prepend(str(tmp_path))
    try:
        assert "plugged_net" not in list_networks()
        assert "plugged_net" in discover_networks()
        assert get_network_class("plugged_net").__module__ == "plugged_backbone"
        for check in contract_checks():
            check("plugged_net")
    finally:
        sys.modules.pop("plugged_backbone", None)


def test_a_broken_entry_point_is_one_warning_naming_it(
    registry: None, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_distribution(tmp_path, "broken_plugin", {"broken_net": "no_such_module_for_arch_lab"})
    monkeypatch.syspath_prepend(str(tmp_path))
    before = list_networks()
    with pytest.warns(UserWarning, match="broken_net") as caught:
        assert discover_networks() == before
    messages = [str(w.message) for w in caught if "broken_net" in str(w.message)]
    assert len(messages) == 1
    assert "\n" not in messages[0]
    assert "network entry point 'broken_net' of package 'broken_plugin' (no_such_module_for_arch_lab)" in messages[0]
    assert "ModuleNotFoundError" in messages[0]


# ------------------------------------------------------------------------------------- README as printed
@pytest.mark.skipif(importlib.util.find_spec("ruff") is None, reason="ruff is not installed")
def test_readme_backbone_passes_ruff_as_printed() -> None:
    source = readme_backbone()
    for command in (["check"], ["format", "--check"]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *command, "--stdin-filename", "arch_lab/networks/my_net.py", "-"],
            input=source,
            capture_output=True,
            text=True,
            cwd=REPO,
        )
        assert result.returncode == 0, result.stdout + result.stderr
