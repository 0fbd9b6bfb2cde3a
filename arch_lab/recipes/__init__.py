"""Tuned training recipes: the flow, optimiser, training and network settings each backbone was found to need.

A recipe is a YAML file of config sections (``network``, ``flow``, ``optim``, ``train``) shipped in this package,
one per backbone (``mlp.yaml``, ``unet1d.yaml``, ``gene_transformer.yaml``), chosen by that backbone's recipe study
(``sweeps/recipes/``); each file's header names the study, the trial and the numbers that chose it. An experiment
asks for one with the top-level key ``recipe``:

- ``recommended``: the recipe of the experiment's own ``network.name`` (``default.yaml``, with no network knobs,
  for a backbone without one), so ``--set network.name=unet1d`` switches the recipe with the network;
- a recipe's name (``mlp``) or a YAML path (relative to the experiment's folder): that recipe; its network must be
  the experiment's;
- ``none`` (the default): the plain config defaults.

A recipe only fills keys the experiment leaves unset: anything written in the YAML, an ``--set`` override or a
sweep's ``fixed``/``space`` value wins. When ``network.match_parameters`` is set, the network's knobs come from
the experiment alone (a recipe's width would fight the matching).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from arch_lab.errors import ConfigError

__all__ = ["RECIPE_SECTIONS", "apply_recipe", "list_recipes", "load_recipe", "recipe_source"]

#: The config sections a recipe may set.
RECIPE_SECTIONS = ("network", "flow", "optim", "train")
#: The recipe of a backbone that has none of its own.
DEFAULT_RECIPE = "default"


def list_recipes() -> list[str]:
    """Names of the shipped recipes, sorted."""
    root = resources.files(__name__)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def recipe_source(name: str, base_dir: str | None = None) -> Path:
    """The file of recipe ``name`` (a shipped recipe's name, or a YAML path relative to ``base_dir``).

    Raises
    ------
    ConfigError
        Neither a shipped recipe nor an existing file; the message lists the shipped recipes.
    """
    if name.endswith((".yaml", ".yml")) or "/" in name:
        path = Path(name)
        if not path.is_absolute() and base_dir is not None:
            path = Path(base_dir) / path
        if path.is_file():
            return path
        raise ConfigError(
            f"recipe: {name} is not a file; give a shipped recipe ({', '.join(list_recipes())}) or a path"
        )
    shipped = resources.files(__name__) / f"{name}.yaml"
    if not shipped.is_file():
        raise ConfigError(
            f"recipe: unknown recipe {name!r}; choose one of recommended, none, {', '.join(list_recipes())} "
            "or a YAML path"
        )
    return Path(str(shipped))


def load_recipe(name: str, base_dir: str | None = None) -> dict[str, Any]:
    """The sections of recipe ``name`` as a mapping (see :func:`recipe_source`).

    Raises
    ------
    ConfigError
        An unknown recipe, malformed YAML, or a section other than ``network``, ``flow``, ``optim``, ``train``.
    """
    path = recipe_source(name, base_dir)
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError:
        raise ConfigError(f"recipe {path}: malformed YAML; fix the syntax") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"recipe {path}: expected a mapping of sections, got {type(raw).__name__}")
    extra = sorted(set(raw) - set(RECIPE_SECTIONS))
    if extra:
        raise ConfigError(f"recipe {path}: unknown section(s) {extra}; a recipe sets only {list(RECIPE_SECTIONS)}")
    for section, values in raw.items():
        if not isinstance(values, dict):
            raise ConfigError(f"recipe {path}: section {section!r} must be a mapping")
    return raw


def apply_recipe(raw: dict[str, Any]) -> dict[str, Any]:
    """Fill the keys ``raw`` leaves unset from the recipe it names (``raw['recipe']``); ``raw`` is not changed.

    Parameters
    ----------
    raw
        An experiment mapping with overrides already applied.

    Returns
    -------
    dict
        A new mapping: ``raw``'s own values, plus the recipe's values for every key ``raw`` does not set.

    Raises
    ------
    ConfigError
        An unknown recipe, or a recipe for another network than the experiment's.
    """
    choice = raw.get("recipe", "none")
    if choice is None or choice == "none":
        return raw
    if not isinstance(choice, str):
        raise ConfigError(f"recipe: expected a name or a path, got {choice!r}")
    network = raw.get("network") or {}
    if not isinstance(network, dict):
        return raw  # the structure check names the problem
    name = network.get("name", "mlp")
    base_dir = raw.get("base_dir")
    if choice == "recommended":
        recipe = load_recipe(name if name in list_recipes() else DEFAULT_RECIPE, base_dir)
    else:
        recipe = load_recipe(choice, base_dir)
        wanted = recipe.get("network", {}).get("name")
        if wanted is not None and wanted != name:
            raise ConfigError(
                f"recipe: {choice!r} is for network {wanted!r}, the experiment trains {name!r}; "
                f"use recipe: recommended to take each network's own recipe"
            )
    out = dict(raw)
    for section, values in recipe.items():
        if section == "network":
            values = {k: v for k, v in values.items() if k != "name"}
            if network.get("match_parameters") is not None:
                continue
        current = out.get(section)
        if current is None:
            current = {}
        if not isinstance(current, dict):
            continue  # the structure check names the problem
        merged = dict(values)
        merged.update(current)
        out[section] = merged
    return out
