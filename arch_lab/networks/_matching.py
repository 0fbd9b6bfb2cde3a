"""Parameter matching: pick the integer value of one knob so a network has (about) a target parameter count.

Used to compare backbones at equal size, e.g. an MLP whose ``width`` gives it the parameter count of the default
1D U-Net at the task's gene count. From a config::

    network:
      name: mlp
      match_parameters:
        reference: {name: unet1d, base_channels: 16}   # or target: 400000
        knob: width
        tolerance: 0.05

The match is resolved where the network is built (:class:`arch_lab.methods.flow.FlowMatching`), against the
task's :class:`~arch_lab.spec.DataSpec`; the chosen value and both counts are recorded in the run's
``metrics.json`` (``fit.parameter_matching``).

Which knob is matched when none is named, and its granularity, are declared by each network class
(``match_knob`` and ``knob_step``, see :mod:`arch_lab.networks._registry`). The public functions are exported
from :mod:`arch_lab.networks`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch

from arch_lab.errors import ConfigError
from arch_lab.networks._registry import (
    build_network,
    config_class,
    count_parameters,
    get_network_class,
    integer_knobs,
    validate_network_config,
)
from arch_lab.spec import DataSpec

_MAX_DOUBLINGS = 24


def parameter_count_of(name: str, knobs: Mapping[str, Any] | None, spec: DataSpec) -> int:
    """Parameter count of network ``name`` with ``knobs`` at ``spec`` (built on the meta device: no memory).

    Raises
    ------
    ConfigError
        Unknown network, knob or invalid value.
    """
    config = validate_network_config(name, dict(knobs or {}))
    try:
        with torch.device("meta"):
            net = build_network(name, config, spec)
    except (RuntimeError, NotImplementedError):  # a layer whose init does not run on meta tensors
        net = build_network(name, config, spec)
    return count_parameters(net)


def default_knob(name: str) -> str | None:
    """The knob network ``name`` matches when none is named: its class's ``match_knob`` (None if undeclared)."""
    return getattr(get_network_class(name), "match_knob", None)


def knob_step(name: str, knob: str, knobs: Mapping[str, Any]) -> int:
    """The granularity of ``knob`` of network ``name``: values are multiples of it.

    Asks the network class's ``knob_step(knob, knobs)`` classmethod (e.g. the heads for a transformer's width);
    1 for a class without one.
    """
    step = getattr(get_network_class(name), "knob_step", None)
    return 1 if step is None else int(step(knob, knobs))


def match_parameters(
    name: str,
    spec: DataSpec,
    target: int,
    knob: str | None = None,
    base_knobs: Mapping[str, Any] | None = None,
    tolerance: float = 0.05,
) -> dict[str, Any]:
    """Knobs of network ``name`` whose parameter count is within ``tolerance`` of ``target``.

    Bisection over ``knob`` (assumed to increase the parameter count monotonically), in multiples of
    :func:`knob_step`; the value whose count is closest to ``target`` wins.

    Parameters
    ----------
    name
        Registered network name.
    spec
        Data facts (the gene count matters).
    target
        Parameter count to reach.
    knob
        Integer knob to choose (default: the network class's ``match_knob``).
    base_knobs
        The other knobs, held fixed (must not set ``knob``).
    tolerance
        Largest accepted relative difference ``|count - target| / target``.

    Returns
    -------
    dict
        ``base_knobs`` with ``knob`` set.

    Raises
    ------
    ConfigError
        Unknown knob, a knob that is not an integer, no knob given for a network that declares no ``match_knob``,
        or no value lands within tolerance (one line, naming the closest value found).
    """
    base = dict(base_knobs or {})
    check_match_config(name, base, {"knob": knob})
    knob = str(knob or default_knob(name))  # check_match_config refused a missing knob
    if target <= 0:
        raise ConfigError(f"network.match_parameters: target must be a positive parameter count (got {target})")
    step = knob_step(name, knob, base)
    cache: dict[int, int] = {}

    def count(k: int) -> int:
        if k not in cache:
            cache[k] = parameter_count_of(name, {**base, knob: k * step}, spec)
        return cache[k]

    lo, hi = 1, 1
    if count(1) < target:
        for _ in range(_MAX_DOUBLINGS):
            lo, hi = hi, hi * 2
            if count(hi) >= target:
                break
        while hi - lo > 1:
            mid = (lo + hi) // 2
            lo, hi = (mid, hi) if count(mid) < target else (lo, mid)
    best = min({lo, hi}, key=lambda k: abs(count(k) - target))
    error = abs(count(best) - target) / target
    if error > tolerance:
        raise ConfigError(
            f"network.match_parameters: no {name}.{knob} gives {target} parameters within {tolerance:.0%} at "
            f"{spec.n_genes} genes (closest: {knob}={best * step} with {count(best)}, {error:+.0%} off); "
            "change another knob or the tolerance"
        )
    return {**base, knob: best * step}


def resolve_matched_knobs(
    name: str, knobs: Mapping[str, Any], match: Mapping[str, Any] | int | None, spec: DataSpec
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Apply a ``network.match_parameters`` setting: the knobs to build with, and a record of the match.

    Parameters
    ----------
    name
        The network being built.
    knobs
        Its other knobs.
    match
        None (no matching), a target parameter count, or a mapping with ``reference`` (``{name: ..., knobs}``)
        or ``target``, plus optional ``knob`` and ``tolerance``.
    spec
        Data facts.

    Returns
    -------
    tuple
        ``(knobs, record)``; ``record`` (None without matching) holds ``knob``, ``value``, ``target``,
        ``reference`` (the reference network and knobs, or None), ``reference_parameter_count``,
        ``parameter_count`` and ``relative_error``.
    """
    if match is None:
        return dict(knobs), None
    spec_: dict[str, Any] = {"target": int(match)} if isinstance(match, int) else dict(match)
    reference = spec_.get("reference")
    if reference is not None:
        reference = dict(reference)
        ref_name = reference.pop("name", None)
        if ref_name is None:
            raise ConfigError("network.match_parameters.reference.name: required (e.g. unet1d)")
        target = parameter_count_of(ref_name, reference, spec)
        ref_record: dict[str, Any] | None = {"name": ref_name, **reference}
    else:
        target = int(spec_["target"])
        ref_record = None
    knob = spec_.get("knob") or default_knob(name)
    resolved = match_parameters(name, spec, target, knob, knobs, float(spec_.get("tolerance", 0.05)))
    assert knob is not None  # match_parameters refused a missing knob
    count = parameter_count_of(name, resolved, spec)
    record = {
        "knob": knob,
        "value": resolved[knob],
        "target": target,
        "reference": ref_record,
        "reference_parameter_count": target if ref_record is not None else None,
        "parameter_count": count,
        "relative_error": (count - target) / target,
    }
    return resolved, record


def check_match_config(name: str, knobs: Mapping[str, Any], match: Mapping[str, Any]) -> None:
    """Check a ``network.match_parameters`` setting without building anything (no gene count needed).

    Raises
    ------
    ConfigError
        An unknown reference network or knob, a knob that is not an integer, no knob given for a network that
        declares no ``match_knob``, or a matched knob also set.
    """
    reference = match.get("reference")
    if reference is not None:
        ref = dict(reference)
        ref_name = ref.pop("name", None)
        try:
            validate_network_config(str(ref_name), ref)
        except ConfigError as err:
            raise ConfigError(f"network.match_parameters.reference: {err}") from None
    integer = integer_knobs(config_class(get_network_class(name)))
    knob = match.get("knob") or default_knob(name)
    if knob is None:
        raise ConfigError(
            f"network.match_parameters.knob: required for {name}, which declares no default knob (match_knob); "
            f"name one of its integer knobs: {', '.join(integer) or 'none'}"
        )
    if knob not in integer:
        raise ConfigError(
            f"network.match_parameters.knob: {knob!r} is not an integer knob of {name} (its integer knobs: "
            f"{', '.join(integer)})"
        )
    if knob in knobs:
        raise ConfigError(f"network.{knob}: set by match_parameters; remove one of them")
