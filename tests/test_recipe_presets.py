"""Recipes fill the keys an experiment leaves unset, and only those."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from arch_lab.config import experiment_from_dict, load_experiment
from arch_lab.errors import ConfigError
from arch_lab.networks import list_networks
from arch_lab.recipes import DEFAULT_RECIPE, apply_recipe, list_recipes, load_recipe

REPO = Path(__file__).resolve().parents[1]
#: Shipped experiments on real data (the synthetic probe benchmarks keep their own settings).
EXPERIMENTS = [
    p for p in sorted((REPO / "experiments").glob("*.yaml")) if "synthetic" not in yaml.safe_load(p.read_text())["data"]
]


def _raw(**extra: object) -> dict:
    raw = {
        "name": "t",
        "data": {"synthetic": {"n_genes": 256}},
        "task": {"kind": "combination"},
        "network": {"name": "mlp"},
    }
    raw.update(extra)
    return raw


def test_every_shipped_network_has_a_recipe() -> None:
    names = set(list_recipes())
    assert DEFAULT_RECIPE in names
    assert {"mlp", "unet1d", "gene_transformer"} <= names


@pytest.mark.parametrize("name", list_recipes())
def test_shipped_recipe_validates_on_its_network(name: str) -> None:
    recipe = load_recipe(name)
    network = recipe.get("network", {}).get("name", "mlp")
    assert network in list_networks()
    cfg = experiment_from_dict(_raw(recipe=name, network={"name": network}))
    for section, values in recipe.items():
        dumped = getattr(cfg, section).model_dump()
        for key, value in values.items():
            got = dumped[key]
            assert (list(got) if isinstance(got, tuple) else got) == value, f"{section}.{key}"


def test_recommended_follows_the_network_name() -> None:
    mlp = experiment_from_dict(_raw(recipe="recommended"))
    unet = experiment_from_dict(_raw(recipe="recommended"), {"network.name": "unet1d"})
    assert mlp.network.knobs()["width"] == load_recipe("mlp")["network"]["width"]
    expected = load_recipe("unet1d")["network"]
    assert unet.network.name == "unet1d"
    assert unet.network.knobs()["base_channels"] == expected["base_channels"]
    assert unet.flow.source == load_recipe("unet1d")["flow"]["source"]


def test_explicit_values_win_over_the_recipe() -> None:
    recipe = load_recipe("mlp")
    other_lr = recipe["optim"]["lr"] * 3
    cfg = experiment_from_dict(_raw(recipe="mlp", optim={"lr": other_lr}), {"flow.steps": 7})
    assert cfg.optim.lr == pytest.approx(other_lr)
    assert cfg.flow.steps == 7
    assert cfg.optim.batch_size == recipe["optim"]["batch_size"]  # unset: from the recipe


def test_no_recipe_keeps_plain_defaults() -> None:
    cfg = experiment_from_dict(_raw())
    assert cfg.recipe == "none"
    assert cfg.flow.source == "gaussian"
    assert apply_recipe(_raw()) == _raw()


def test_recipe_for_another_network_is_refused() -> None:
    with pytest.raises(ConfigError, match="is for network 'mlp'.*recipe: recommended"):
        experiment_from_dict(_raw(recipe="mlp", network={"name": "unet1d"}))


def test_unknown_recipe_lists_the_shipped_ones() -> None:
    with pytest.raises(ConfigError, match="unknown recipe 'fast'.*mlp"):
        experiment_from_dict(_raw(recipe="fast"))


def test_recipe_from_a_path_and_bad_sections(tmp_path: Path) -> None:
    good = tmp_path / "mine.yaml"
    good.write_text(yaml.safe_dump({"flow": {"steps": 3}, "optim": {"lr": 0.01}}))
    cfg = experiment_from_dict(_raw(recipe="mine.yaml", base_dir=str(tmp_path)))
    assert cfg.flow.steps == 3
    assert cfg.optim.lr == pytest.approx(0.01)
    bad = tmp_path / "bad.yaml"
    bad.write_text(yaml.safe_dump({"data": {"path": "x"}}))
    with pytest.raises(ConfigError, match=r"unknown section\(s\) \['data'\]"):
        experiment_from_dict(_raw(recipe=str(bad)))
    with pytest.raises(ConfigError, match="is not a file"):
        experiment_from_dict(_raw(recipe="missing.yaml", base_dir=str(tmp_path)))


def test_parameter_matching_keeps_the_recipe_off_the_network() -> None:
    raw = _raw(recipe="recommended", network={"name": "mlp", "match_parameters": {"target": 5000}})
    cfg = experiment_from_dict(raw)
    assert "width" in load_recipe("mlp")["network"]
    assert "width" not in cfg.network.knobs()  # left to the matching, not filled from the recipe
    assert "width" in experiment_from_dict(_raw(recipe="recommended")).network.knobs()  # filled without matching
    assert cfg.flow.source == load_recipe("mlp")["flow"]["source"]


def test_a_network_without_a_recipe_takes_the_default(tmp_path: Path) -> None:
    default = load_recipe(DEFAULT_RECIPE)
    assert "network" not in default
    raw = apply_recipe(_raw(recipe="recommended", network={"name": "no_such_recipe_network"}))
    for section, values in default.items():
        for key, value in values.items():
            assert raw[section][key] == value


def test_the_real_experiments_are_found() -> None:
    assert len(EXPERIMENTS) >= 3


@pytest.mark.parametrize("path", EXPERIMENTS, ids=lambda p: p.stem)
def test_shipped_real_experiments_use_the_recommended_recipe(path: Path) -> None:
    """A user who copies a shipped experiment and changes data and task gets the recipe."""
    raw = yaml.safe_load(path.read_text())
    assert raw.get("recipe") == "recommended"
    for section in ("flow", "optim"):
        assert section not in raw, f"{path.name} sets {section}: the recipe's values would be shadowed"
    cfg = load_experiment(path)
    recipe = load_recipe(cfg.network.name)
    assert cfg.flow.model_dump()["source"] == recipe["flow"]["source"]
