"""Registry of velocity networks, built by name from a plain config dict (private: use :mod:`arch_lab.networks`).

A network is an ``nn.Module`` class decorated with :func:`register_network`. It defines

- a nested pydantic ``Config`` (every field has a default, unknown keys are rejected);
- a constructor ``__init__(self, config: Config, spec: DataSpec)`` that stores ``self.config`` and ``self.spec``;
- a classmethod ``tiny_config() -> dict`` giving a very small configuration for tests;
- ``forward(x_t [B, G], t [B] | float, cond: CondBatch) -> [B, G]`` returning a tensor of ``x_t``'s dtype
  (also under bf16 autocast).

For parameter matching (``network.match_parameters``, :mod:`arch_lab.networks._matching`) it may also define

- ``match_knob: ClassVar[str]``, the integer knob of ``Config`` matched when the config names none;
- a classmethod ``knob_step(knob: str, knobs: Mapping[str, Any]) -> int``, the granularity of ``knob`` given the
  other knobs (without it, every integer value is allowed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from pydantic import BaseModel, ValidationError
from torch import nn

from arch_lab.errors import ConfigError
from arch_lab.spec import DataSpec

NetworkClass = TypeVar("NetworkClass", bound=type[nn.Module])

_REGISTRY: dict[str, type[nn.Module]] = {}


def register_network(name: str) -> Callable[[NetworkClass], NetworkClass]:
    """Class decorator registering a network under ``name``.

    Parameters
    ----------
    name
        The name used by :func:`build_network` and in configs.

    Raises
    ------
    ConfigError
        If another class is already registered under ``name``, the class lacks a pydantic ``Config`` or a
        ``tiny_config`` classmethod, or its ``match_knob`` is not an integer knob of its ``Config``.
    """

    def decorate(cls: NetworkClass) -> NetworkClass:
        config_cls = config_class(cls)
        if not callable(getattr(cls, "tiny_config", None)):
            raise ConfigError(f"network class {cls.__qualname__} needs a 'tiny_config' classmethod")
        knob = getattr(cls, "match_knob", None)
        if knob is not None and knob not in integer_knobs(config_cls):
            raise ConfigError(
                f"network class {cls.__qualname__}: match_knob {knob!r} is not an integer knob of its Config "
                f"(its integer knobs: {', '.join(integer_knobs(config_cls)) or 'none'})"
            )
        existing = _REGISTRY.get(name)
        if existing is not None and _qualified_name(existing) != _qualified_name(cls):
            raise ConfigError(f"network name {name!r} is already registered by {_qualified_name(existing)}")
        setattr(cls, "network_name", name)  # noqa: B010 - an attribute the class does not declare
        _REGISTRY[name] = cls
        return cls

    return decorate


def config_class(cls: type[nn.Module]) -> type[BaseModel]:
    """The nested pydantic ``Config`` model of a network class.

    Raises
    ------
    ConfigError
        If the class has none.
    """
    config_cls = getattr(cls, "Config", None)
    if not (isinstance(config_cls, type) and issubclass(config_cls, BaseModel)):
        raise ConfigError(f"network class {cls.__qualname__} needs a nested pydantic 'Config' model")
    return config_cls


def _qualified_name(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


def integer_knobs(config_cls: type[BaseModel]) -> list[str]:
    """Names of the plain integer fields of a network ``Config``, in field order."""
    return [k for k, f in config_cls.model_fields.items() if f.annotation in (int, "int")]


def list_networks() -> list[str]:
    """Registered network names, sorted.

    Returns
    -------
    list of str
        The names ``network.name`` accepts (the shipped backbones and any registered by a module or entry point).
    """
    return sorted(_REGISTRY)


def get_network_class(name: str) -> type[nn.Module]:
    """The class registered under ``name``.

    Raises
    ------
    ConfigError
        If no network has that name (the message lists the registered names).
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise ConfigError(
            f"unknown network {name!r}: registered networks are {', '.join(list_networks()) or '(none)'}"
        ) from None


def _format_loc(loc: tuple[Any, ...]) -> str:
    return ".".join(["network", *(str(part) for part in loc)])


def _one_line(text: str) -> str:
    text = " ".join(str(text).split())
    return text.removeprefix("Value error, ")


def _config_error(name: str, config_cls: type[BaseModel], error: ValidationError) -> ConfigError:
    messages = []
    for item in error.errors():
        loc = tuple(item.get("loc", ()))
        if item.get("type") == "extra_forbidden":
            valid = ", ".join(config_cls.model_fields)
            messages.append(f"unknown key '{_format_loc(loc)}' for network {name!r}: valid keys are {valid}")
        elif loc:
            got = _one_line(repr(item.get("input")))
            messages.append(f"invalid value for '{_format_loc(loc)}' ({name}): {_one_line(item['msg'])}; got {got}")
        else:
            messages.append(f"invalid config for network {name!r}: {_one_line(item['msg'])}")
    return ConfigError("; ".join(messages))


def validate_network_config(name: str, config: dict[str, Any] | BaseModel | None) -> BaseModel:
    """Validate ``config`` into the ``Config`` model of network ``name``.

    Parameters
    ----------
    name
        Registered network name.
    config
        A dict (keys whose value is None are dropped, so the default applies), a ``Config`` instance, or None
        for all defaults.

    Raises
    ------
    ConfigError
        Unknown network, unknown key (named as ``network.<key>``) or invalid value; the message is one line.
    """
    cls = get_network_class(name)
    config_cls = config_class(cls)
    if isinstance(config, config_cls):
        return config
    if config is None:
        values: dict[str, Any] = {}
    elif isinstance(config, BaseModel):
        values = config.model_dump()
    elif isinstance(config, dict):
        values = {key: value for key, value in config.items() if value is not None}
    else:
        raise ConfigError(f"network config for {name!r} must be a mapping, got {type(config).__name__}")
    try:
        return config_cls.model_validate(values)
    except ValidationError as error:
        raise _config_error(name, config_cls, error) from None


def build_network(name: str, config: dict[str, Any] | BaseModel | None, spec: DataSpec) -> nn.Module:
    """Build the network registered under ``name``.

    Parameters
    ----------
    name
        Registered network name (see :func:`list_networks`).
    config
        Knobs of the network's ``Config``: a dict (None values dropped), a ``Config`` instance, or None.
    spec
        Data facts (gene count, vocabularies).

    Returns
    -------
    nn.Module
        The network, with ``config`` and ``spec`` attributes.

    Raises
    ------
    ConfigError
        Unknown network name, unknown config key, or invalid value; the message is one line.
    """
    validated = validate_network_config(name, config)
    return get_network_class(name)(validated, spec)


def network_config(net: nn.Module) -> dict[str, Any]:
    """JSON-serialisable config of ``net``; ``build_network(name, network_config(net), spec)`` rebuilds it."""
    config = getattr(net, "config", None)
    if not isinstance(config, BaseModel):
        raise ConfigError(f"{type(net).__qualname__} has no pydantic 'config'; is it a registered network?")
    return config.model_dump(mode="json")


def network_name(net: nn.Module) -> str:
    """Registered name of ``net``'s class."""
    name = getattr(type(net), "network_name", None)
    if name is None:
        raise ConfigError(f"{type(net).__qualname__} is not a registered network")
    return name


def count_parameters(net: nn.Module, trainable_only: bool = False) -> int:
    """Number of parameters of ``net`` (only those with ``requires_grad`` when ``trainable_only``)."""
    return sum(p.numel() for p in net.parameters() if p.requires_grad or not trainable_only)
