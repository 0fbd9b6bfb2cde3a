"""Velocity networks for flow matching, built by name from a registry.

A backbone is one module: drop a file into this package (or ship it in an installed package that declares an
``arch_lab.networks`` entry point) defining an ``nn.Module`` class decorated with :func:`register_network`.
Importing this package imports every public module in it and loads every entry point of that group
(:func:`discover_networks`), so the backbone is listed, built, trained, swept and contract-tested with no other
edit. The contract a backbone follows is in :mod:`arch_lab.networks._registry`; the building blocks the
backbones share (condition encoder, time embedding, attention) are in :mod:`arch_lab.networks.layers`.
"""

from __future__ import annotations

import importlib
import importlib.metadata
import pkgutil
import warnings

from arch_lab.networks._matching import (
    check_match_config,
    match_parameters,
    parameter_count_of,
    resolve_matched_knobs,
)
from arch_lab.networks._registry import (
    build_network,
    count_parameters,
    get_network_class,
    list_networks,
    network_config,
    network_name,
    register_network,
    validate_network_config,
)
from arch_lab.networks.layers import (
    ConditionEncoder,
    MultiHeadAttention,
    SinusoidalTimeEmbedding,
    attention,
    force_backend,
    last_backend,
    normalize_time,
)

#: Entry-point group through which an installed package registers networks: each entry point is loaded
#: (``load()``), which imports the module whose decorated classes register themselves.
ENTRY_POINT_GROUP = "arch_lab.networks"

__all__ = [
    "ENTRY_POINT_GROUP",
    "ConditionEncoder",
    "MultiHeadAttention",
    "SinusoidalTimeEmbedding",
    "attention",
    "build_network",
    "check_match_config",
    "count_parameters",
    "discover_networks",
    "force_backend",
    "get_network_class",
    "last_backend",
    "list_networks",
    "match_parameters",
    "network_config",
    "network_name",
    "normalize_time",
    "parameter_count_of",
    "register_network",
    "resolve_matched_knobs",
    "validate_network_config",
]


def discover_networks() -> list[str]:
    """Import every public module of this package and load every ``arch_lab.networks`` entry point.

    Runs once when the package is first imported. Call it again to pick up a module added to the package's
    folders (``__path__``) or a package installed while the process runs; modules already imported are left as
    they are. Modules whose name starts with ``_`` (registry internals) are skipped.

    Returns
    -------
    list of str
        The registered network names afterwards (as :func:`list_networks`).

    Warns
    -----
    UserWarning
        One line per entry point that fails to load, naming it and its target; the other networks stay usable.
    """
    importlib.invalidate_caches()
    for module in pkgutil.iter_modules(__path__):
        if not module.name.startswith("_"):
            importlib.import_module(f"{__name__}.{module.name}")
    for entry_point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        try:
            entry_point.load()
        except Exception as err:  # a broken plugin must not make the built-in networks unusable
            reason = " ".join(f"{type(err).__name__}: {err}".split())
            dist = getattr(entry_point.dist, "name", None)
            source = f" of package {dist!r}" if dist else ""
            warnings.warn(
                f"network entry point {entry_point.name!r}{source} ({entry_point.value}) in group "
                f"{ENTRY_POINT_GROUP} failed to load, so its networks are not registered: {reason}",
                stacklevel=2,
            )
    return list_networks()


discover_networks()
