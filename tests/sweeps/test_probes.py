"""Probe studies: parameter matching, FLOP counting and budgets, arms and profiles in sweeps, and every
``sweeps/probes/*.yaml`` validated and run end to end with its ``quick`` profile."""

from __future__ import annotations

import copy
import json
import math
import re
from pathlib import Path

import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO, experiment_dict, synthetic_adata
from torch import nn

from arch_lab.analysis.tidy import export_runs
from arch_lab.config import load_experiment
from arch_lab.errors import ConfigError
from arch_lab.flops import forward_backward_flops, network_flops, steps_for_budget
from arch_lab.networks import (
    build_network,
    count_parameters,
    match_parameters,
    parameter_count_of,
    resolve_matched_knobs,
)
from arch_lab.spec import DataSpec
from arch_lab.sweeps import apply_profile, load_sweep, run_sweep, sweep_status

PROBES = sorted((REPO / "sweeps" / "probes").glob("*.yaml"))


# ---------------------------------------------------------------------------------------- parameter matching
@pytest.mark.parametrize("genes", [64, 200, 1000])
@pytest.mark.parametrize("reference", [{}, {"base_channels": 32, "channel_mult": [1, 2, 4, 4]}])
@pytest.mark.parametrize(
    ("name", "knob", "base"),
    [
        ("mlp", "width", {}),
        ("mlp", "width", {"depth": 2, "linear_skip": False}),
        ("gene_transformer", "dim", {"self_attention": "none"}),
        ("gene_transformer", "dim", {"self_attention": "latent", "heads": 2}),
    ],
)
def test_match_parameters_lands_within_tolerance(genes: int, reference: dict, name: str, knob: str, base: dict):
    spec = DataSpec.synthetic(genes)
    target = parameter_count_of("unet1d", reference, spec)
    knobs = match_parameters(name, spec, target, knob=knob, base_knobs=base)
    assert {k: v for k, v in knobs.items() if k != knob} == base
    count = count_parameters(build_network(name, knobs, spec))
    assert abs(count - target) / target <= 0.05
    if name == "gene_transformer":
        assert knobs["dim"] % base.get("heads", 4) == 0


def test_match_parameters_errors_are_one_line():
    spec = DataSpec.synthetic(100)
    with pytest.raises(ConfigError, match=r"no mlp\.width gives 1000 parameters within 5% .*closest: width=1") as err:
        match_parameters("mlp", spec, 1000)
    assert "\n" not in str(err.value)
    with pytest.raises(ConfigError, match="not an integer knob of mlp"):
        match_parameters("mlp", spec, 10**6, knob="conditioning")
    with pytest.raises(ConfigError, match=r"network\.width: set by match_parameters"):
        match_parameters("mlp", spec, 10**6, base_knobs={"width": 8})


def test_match_from_config_records_both_counts(synthetic_h5ad: Path, tmp_path: Path):
    from arch_lab import api
    from arch_lab.config import experiment_from_dict

    raw = experiment_dict(synthetic_h5ad, tmp_path, train={"max_steps": 4, "eval_every": 4, "checkpoint_every": 4})
    raw["network"] = {"name": "mlp", "depth": 1, "match_parameters": {"reference": {"name": "unet1d"}}}
    result = api.train(experiment_from_dict(raw), run_dir=tmp_path / "run")
    record = json.loads((result.run_dir / "metrics.json").read_text())
    match = record["fit"]["parameter_matching"]
    assert match["knob"] == "width"
    assert match["reference"] == {"name": "unet1d"}
    assert record["parameter_count"] == match["parameter_count"]
    assert abs(match["parameter_count"] - match["reference_parameter_count"]) <= 0.05 * match["target"]
    knobs, again = resolve_matched_knobs("mlp", {"depth": 1}, match["target"], DataSpec.synthetic(24))
    assert knobs["width"] == match["value"]
    assert again is not None
    with pytest.raises(ConfigError, match="exactly one of 'reference'"):
        experiment_from_dict({**raw, "network": {"name": "mlp", "match_parameters": {"knob": "width"}}})


# ------------------------------------------------------------------------------------------------------ FLOPs
def test_flops_of_a_plain_mlp_match_the_hand_count():
    batch, sizes = 16, [(24, 40), (40, 40), (40, 7)]
    net = nn.Sequential(nn.Linear(*sizes[0]), nn.ReLU(), nn.Linear(*sizes[1]), nn.SiLU(), nn.Linear(*sizes[2]))
    forward = sum(2 * batch * i * o for i, o in sizes)
    assert forward_backward_flops(net, torch.zeros(batch, 24)) == 3 * forward


def test_network_flops_scale_with_batch_and_guidance():
    spec = DataSpec.synthetic(32)
    net = build_network("mlp", {"width": 16, "depth": 1, "conditioning": "concat"}, spec)
    small, big = network_flops(net, 4), network_flops(net, 8, sample_cells=10, guidance=2.0)
    assert big.train_step == 2 * small.train_step == 6 * small.forward
    assert big.sample_step == 2 * (small.forward // 4) * 10
    # the output layer alone: 2 * rows * width * genes forward
    assert small.forward >= 2 * 4 * 16 * 32


def test_budget_gives_the_expected_steps(synthetic_h5ad: Path, tmp_path: Path):
    from arch_lab import api
    from arch_lab.config import experiment_from_dict

    assert steps_for_budget(1000.0, 300) == 4
    assert steps_for_budget(900.0, 300) == 3
    assert steps_for_budget(1e12, 300, max_steps=50) == 50
    with pytest.raises(ConfigError, match="train.max_flops"):
        steps_for_budget(0.0, 300)
    raw = experiment_dict(synthetic_h5ad, tmp_path, train={"max_steps": 100, "eval_every": 50})
    cfg = experiment_from_dict(raw)
    from arch_lab.data.task import build_task

    task = build_task(cfg)
    net = build_network("mlp", cfg.network.knobs(), task.spec)
    per_step = network_flops(net, cfg.optim.batch_size).train_step
    raw["train"]["max_flops"] = 6.5 * per_step
    result = api.train(experiment_from_dict(raw), run_dir=tmp_path / "run", task=task)
    fit = json.loads((result.run_dir / "metrics.json").read_text())["fit"]
    assert fit["flops_per_step"] == per_step
    assert fit["steps"] == 7
    assert fit["flop_budget_steps"] == 7
    assert fit["train_flops"] == 7 * per_step
    assert fit["flop_budget_capped"] is False


def test_match_flops_spends_the_reference_budget(synthetic_h5ad: Path, tmp_path: Path):
    from arch_lab import api
    from arch_lab.config import experiment_from_dict
    from arch_lab.data.task import build_task

    reference = {"name": "mlp", "width": 256, "depth": 2}
    raw = experiment_dict(synthetic_h5ad, tmp_path, train={"max_steps": 500, "eval_every": 500})
    raw["network"] = {"name": "mlp", "width": 16, "depth": 1}
    raw["train"]["match_flops"] = {"reference": reference, "steps": 3}
    cfg = experiment_from_dict(raw)
    task = build_task(cfg)
    ref = network_flops(build_network("mlp", {"width": 256, "depth": 2}, task.spec), cfg.optim.batch_size).train_step
    own = network_flops(build_network("mlp", {"width": 16, "depth": 1}, task.spec), cfg.optim.batch_size).train_step
    assert ref > 2 * own  # the small network gets more steps for the same compute
    result = api.train(cfg, run_dir=tmp_path / "run", task=task)
    fit = json.loads((result.run_dir / "metrics.json").read_text())["fit"]
    assert fit["max_flops"] == 3 * ref
    assert fit["steps"] == steps_for_budget(3 * ref, own)
    assert fit["steps"] > 3
    raw["train"]["max_flops"] = 1e9
    with pytest.raises(ConfigError, match="not both"):
        experiment_from_dict(raw)


# ------------------------------------------------------------------------------------------- arms, profiles
@pytest.fixture
def bench(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    synthetic_adata().write_h5ad(tmp_path / "synthetic.h5ad")
    base = experiment_dict(
        tmp_path / "synthetic.h5ad",
        tmp_path,
        train={"max_steps": 6, "eval_every": 6, "checkpoint_every": 6},
    )
    base["network"] = {"name": "gene_transformer", "dim": 8, "heads": 2, "depth": 1}  # dropped for other nets
    (tmp_path / "base.yaml").write_text(yaml.safe_dump(base))
    return tmp_path


def arms_sweep(**changes: object) -> dict:
    raw = {
        "study": {"name": "arms"},
        "base": "base.yaml",
        "objective": {"metric": "energy_distance"},
        "space": {
            "arm": {
                "type": "arms",
                "choices": {
                    "unet_k1": {"network.name": "unet1d", "network.kernel_size": 1, "network.channel_mult": [1, 2]},
                    "mlp_matched": {
                        "network.name": "mlp",
                        "network.match_parameters": {"target": 40000, "tolerance": 0.2},
                    },
                },
            },
            "optim.lr": {"type": "categorical", "choices": [1e-3, 2e-3]},
        },
        "sampler": {"type": "brute_force"},
        "budget": {"replicates": 1},
        "profiles": {"quick": {"fixed": {"train.max_steps": 2, "train.eval_every": 2}, "budget": {"n_trials": 2}}},
    }
    raw.update(copy.deepcopy(changes))
    return raw


def write(folder: Path, raw: dict, name: str = "sweep.yaml") -> Path:
    (folder / name).write_text(yaml.safe_dump(raw, sort_keys=False))
    return folder / name


def test_arms_expand_into_overrides_and_grid_crosses_them(bench: Path):
    sweep = load_sweep(write(bench, arms_sweep()))
    assert sorted((c["arm"], c["optim.lr"]) for c in sweep.grid()) == [
        ("mlp_matched", 1e-3), ("mlp_matched", 2e-3), ("unet_k1", 1e-3), ("unet_k1", 2e-3)
    ]  # fmt: skip
    cfg = sweep.experiment({"arm": "unet_k1", "optim.lr": 2e-3})
    assert cfg.network.name == "unet1d"
    assert cfg.network.knobs()["kernel_size"] == 1
    assert cfg.optim.lr == 2e-3
    assert "dim" not in cfg.network.knobs()  # the base's network knobs are dropped for another network
    assert sweep.space.optuna_params({"arm": "unet_k1", "optim.lr": 2e-3}) == {"arm": "unet_k1", "optim.lr": 2e-3}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"unet_k1": {"network.name": "unet1d", "network.kernel_sise": 1}}, r"space\.arm\.unet_k1: unknown key 'network\.kernel_sise'"),
        ({"bad": {"train.max_step": 3}}, r"space\.arm\.bad: train\.max_step: unknown key"),
        ({"bad": {"network.match_parameters": {"reference": {"name": "unet"}}}}, r"space\.arm\.bad: .*unknown network 'unet'"),
        ({"bad": {"seed": 3}}, r"space\.arm\.choices\.bad\.seed: seeds come from budget\.replicates"),
        ({"bad": {"optim.lr": 0.1}}, r"space\.arm\.bad\.optim\.lr: also a dimension of the space"),
        ({"bad": {"lr": 0.1}}, r"space\.arm\.choices\.bad\.lr: arm overrides are dotted config paths"),
    ],
)  # fmt: skip
def test_bad_arm_is_refused_in_one_line_naming_arm_and_key(bench: Path, change: dict, message: str):
    raw = arms_sweep()
    raw["space"]["arm"]["choices"] = change
    with pytest.raises(ConfigError, match=message) as err:
        load_sweep(write(bench, raw))
    assert "\n" not in str(err.value)


def test_profile_merges_and_renames_the_study(bench: Path):
    raw = arms_sweep()
    merged = apply_profile(raw, "quick")
    assert merged["study"]["name"] == "arms_quick"
    assert "profiles" not in merged
    assert merged["fixed"] == {"train.max_steps": 2, "train.eval_every": 2}
    assert merged["budget"] == {"replicates": 1, "n_trials": 2}
    assert merged["space"] == raw["space"]
    path = write(bench, raw)
    quick = load_sweep(path, "quick")
    assert quick.name == "arms_quick"
    assert quick.n_trials == 2
    assert quick.profile == "quick"
    assert quick.experiment({"arm": "unet_k1", "optim.lr": 1e-3}).train.max_steps == 2
    assert load_sweep(path).name == "arms"
    with pytest.raises(ConfigError, match=r"--profile slow: not a profile of this sweep \(its profiles: quick\)"):
        load_sweep(path, "slow")
    raw["profiles"]["bad"] = {"base": "other.yaml"}
    with pytest.raises(ConfigError, match=r"profiles\.bad\.base: a profile may change only"):
        load_sweep(write(bench, raw), "bad")


def test_arms_sweep_runs_records_arm_and_exports_runs(bench: Path):
    path = write(bench, arms_sweep())
    run_sweep(path, profile="quick")
    status = sweep_status(path, profile="quick")
    assert status.name == "arms_quick"
    assert status.finished == 2
    assert {row["params"]["arm"] for row in status.best} <= {"unet_k1", "mlp_matched"}
    df = export_runs(path, bench / "runs.csv", profile="quick")
    assert len(df) == 2
    assert list(df.columns[:4]) == ["study", "trial", "arm", "task"]
    assert df["flops_per_step"].gt(0).all()
    assert df["steps"].eq(2).all()
    assert {"energy_distance", "val_energy_distance", "floor_energy_distance"} <= set(df.columns)
    assert pd.read_csv(bench / "runs.csv")["arm"].notna().all()


# ------------------------------------------------------------------------------------------------ probe YAMLs
def test_probe_files_exist():
    names = {p.stem.split("_")[0] for p in PROBES}
    assert {"backbones", "gene", "unet", "fair", "compute"} <= names


@pytest.mark.parametrize("path", PROBES, ids=lambda p: p.stem)
def test_probe_yaml_validates_with_five_seeds_and_a_quick_profile(path: Path):
    sweep = load_sweep(path)
    # five units per cell: seeds; or, for a real-data study over every fold, folds (each fold's seeds averaged,
    # the comparison paired over folds); or, for a study over several generated datasets, those datasets; or, for
    # one dataset under several splits of its conditions, those splits
    folds = {values.get("task.fold") for values in sweep.grid()}
    datasets = {values.get("data.synthetic.seed") for values in sweep.grid()}
    splits = {values.get("task.seed") for values in sweep.grid()}
    assert max(sweep.replicates, len(folds), len(datasets), len(splits)) >= 5
    assert sweep.is_grid
    assert sweep.space.arms()
    assert sweep.name.startswith("probe_")
    # the header states the grid it runs: "# Cells: N; R seeds each = N*R runs"
    header = re.search(r"# Cells: (\d+); (\d+) seeds each = (\d+) runs", path.read_text())
    assert header is not None, f"{path.name}: header lacks the '# Cells: ...' line"
    cells, seeds, runs = map(int, header.groups())
    assert (cells, seeds, runs) == (len(sweep.grid()), sweep.replicates, len(sweep.grid()) * sweep.replicates)
    quick = load_sweep(path, "quick")
    assert quick.name == f"{sweep.name}_quick"
    assert quick.replicates == 1
    arms = {a.key: set(a.choices) for a in sweep.space.arms()}
    assert {a.key: {c[a.key] for c in quick.grid()} for a in quick.space.arms()} == arms
    for values in quick.grid():
        assert quick.experiment(values).train.max_steps <= 10


@pytest.mark.parametrize("path", PROBES, ids=lambda p: p.stem)
def test_probe_quick_profile_runs_end_to_end(path: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    monkeypatch.chdir(tmp_path)
    result = run_sweep(path, storage=f"sqlite:///{tmp_path / 'quick.db'}", profile="quick")
    assert result.status.finished == result.status.slots == len(result.sweep.grid())
    assert result.status.counts == {"COMPLETE": result.status.slots}, result.status.failures
    df = export_runs(path, tmp_path / "runs.csv", storage=f"sqlite:///{tmp_path / 'quick.db'}", profile="quick")
    assert len(df) == result.status.slots
    assert df["arm"].notna().all()
    assert df["parameter_count"].gt(0).all()
    assert df["flops_per_step"].gt(0).all()
    if "data.synthetic.locality" in result.sweep.space.keys():
        assert df["locality"].notna().all()
    base = load_experiment(result.sweep.base_path)
    assert not math.isnan(df["energy_distance"].iloc[0]) or base.eval.split == "val"
