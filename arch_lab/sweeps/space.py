"""The search space: typed dimensions, conditional blocks, define-by-run sampling and grid enumeration.

A space maps dotted config keys (``optim.lr``, ``network.width``) to dimensions. The reserved key
``conditional`` holds blocks ``{when: {KEY: VALUE or [VALUES]}, space: {...}}`` whose dimensions are sampled only
when the named parameters (defined in an enclosing scope) took one of those values. Blocks nest.

An ``arms`` dimension (under a plain name such as ``arm``) is a categorical over named interventions, each a
mapping of dotted overrides: Optuna records the arm's name, and :meth:`SearchSpace.expand` turns the name into
its overrides when a run's config is built.
"""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from arch_lab.errors import ConfigError
from arch_lab.sweeps.schema import ConditionalBlock, ParamSpec, validate_model

if TYPE_CHECKING:
    import optuna

CONDITIONAL = "conditional"
_ARTICLE = {"float": "a", "int": "an", "categorical": "a", "fixed": "a"}
ARMS = "arms"
_PRIMITIVE = (str, int, float, bool, type(None))
_FIELDS = {
    "float": ({"low", "high"}, {"low", "high", "log", "step"}),
    "int": ({"low", "high"}, {"low", "high", "log", "step"}),
    "categorical": ({"choices"}, {"choices"}),
    "fixed": ({"value"}, {"value"}),
}


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True)


@dataclass(frozen=True)
class Param:
    """One dimension of the space.

    Parameters
    ----------
    key
        Dotted config key it sets (also the Optuna parameter name).
    path
        Where it is declared in the sweep YAML (for messages).
    kind
        ``float``, ``int``, ``categorical`` or ``fixed``.
    """

    key: str
    path: str
    kind: str
    low: float | int | None = None
    high: float | int | None = None
    log: bool = False
    step: float | int | None = None
    choices: tuple[Any, ...] = ()
    value: Any = None
    arms: tuple[tuple[str, dict[str, Any]], ...] = ()

    @property
    def is_arms(self) -> bool:
        """True for an ``arms`` dimension (a categorical over named sets of overrides)."""
        return bool(self.arms)

    def arm_overrides(self, name: str) -> dict[str, Any]:
        """The dotted overrides of arm ``name``."""
        return dict(dict(self.arms)[name])

    @property
    def encoded(self) -> bool:
        """True when some choice is a list or mapping (Optuna then sees its JSON text)."""
        return any(not isinstance(c, _PRIMITIVE) for c in self.choices)

    def optuna_choices(self) -> tuple[Any, ...]:
        """The choices as Optuna stores them."""
        return tuple(_canonical(c) for c in self.choices) if self.encoded else self.choices

    def encode(self, value: Any) -> Any:
        """A config value as Optuna stores it (the inverse of :meth:`decode`)."""
        if not self.encoded:
            return value
        return self.optuna_choices()[[_canonical(c) for c in self.choices].index(_canonical(value))]

    def decode(self, stored: Any) -> Any:
        """The config value of a categorical value as Optuna stores it."""
        return self.choices[self.optuna_choices().index(stored)] if self.encoded else stored

    def bounds(self) -> tuple[float, float]:
        """``(low, high)`` of a ``float`` or ``int`` dimension."""
        if self.low is None or self.high is None:
            raise ConfigError(f"{self.path}: {_ARTICLE[self.kind]} {self.kind} dimension has no bounds")
        return self.low, self.high

    def suggest(self, trial: optuna.Trial) -> Any:
        """Sample (or read back, for enqueued and retried trials) this dimension's value."""
        if self.kind == "float":
            low, high = self.bounds()
            return trial.suggest_float(self.key, low, high, log=self.log, step=self.step)
        if self.kind == "int":
            low, high = self.bounds()
            return trial.suggest_int(self.key, int(low), int(high), log=self.log, step=int(self.step or 1))
        if self.kind == "categorical":
            return self.decode(trial.suggest_categorical(self.key, list(self.optuna_choices())))
        return self.value

    def problem(self, value: Any) -> str | None:
        """Why ``value`` is not a value of this dimension (None when it is)."""
        if self.kind == "fixed":
            return None if _canonical(value) == _canonical(self.value) else f"must equal the fixed value {self.value!r}"
        if self.kind == "categorical":
            return None if self.has_choice(value) else f"{value!r} is not one of the choices {list(self.choices)}"
        if isinstance(value, bool) or not isinstance(value, int | float):
            return f"expected a number, got {value!r}"
        if self.kind == "int" and not float(value).is_integer():
            return f"expected an integer, got {value!r}"
        low, high = self.bounds()
        if not low <= value <= high:
            return f"{value!r} is outside [{self.low}, {self.high}]"
        if self.step is not None and not _on_grid(value, low, self.step):
            return f"{value!r} is not on the grid low + k * step (step {self.step})"
        return None

    def has_choice(self, value: Any) -> bool:
        """True when ``value`` is one of the categorical choices."""
        return _canonical(value) in {_canonical(c) for c in self.choices}

    def grid(self) -> list[Any]:
        """Every value of a discrete dimension, in order."""
        if self.kind == "fixed":
            return [self.value]
        if self.kind == "categorical":
            return list(self.choices)
        low, high = self.bounds()
        if self.kind == "int":
            return list(range(int(low), int(high) + 1, int(self.step or 1)))
        if self.step is None:
            raise ConfigError(f"{self.path}: a grid needs a step for float dimensions (e.g. step: 0.1)")
        n = round((high - low) / self.step)
        return [round(low + k * self.step, 12) for k in range(n + 1)]

    def probes(self) -> list[Any]:
        """Values tried when checking the space against the base experiment (bounds and every choice)."""
        if self.kind in ("fixed", "categorical"):
            return self.grid()
        cast = int if self.kind == "int" else float
        low, high = self.bounds()
        return [cast(low), cast(high)] if low != high else [cast(low)]

    def default(self) -> Any:
        """A representative value (the low bound or the first choice)."""
        return self.probes()[0]

    def compatible(self, other: Param) -> bool:
        """True when both can share one Optuna parameter name (same kind, log scale and choices)."""
        same = self.kind == other.kind and self.log == other.log
        return same and (self.kind != "categorical" or self.optuna_choices() == other.optuna_choices())

    def describe(self) -> dict[str, Any]:
        """A canonical, JSON-friendly description (for the space hash)."""
        out: dict[str, Any] = {"type": self.kind}
        if self.kind in ("float", "int"):
            out.update(low=self.low, high=self.high, log=self.log, step=self.step)
        elif self.kind == "categorical":
            out["choices"] = list(self.choices)
            if self.is_arms:
                out = {"type": ARMS, "choices": dict(self.arms)}
        else:
            out["value"] = self.value
        return out


def _on_grid(value: float, low: float, step: float) -> bool:
    k = (value - low) / step
    return abs(k - round(k)) < 1e-9 * max(1.0, abs(k))


@dataclass(frozen=True)
class Branch:
    """A conditional block: ``when`` maps keys to their allowed values."""

    when: tuple[tuple[str, tuple[Any, ...]], ...]
    scope: Scope
    path: str

    def holds(self, values: Mapping[str, Any]) -> bool:
        """True when every ``when`` key has one of its allowed values in ``values``."""
        return all(
            k in values and _canonical(values[k]) in {_canonical(a) for a in allowed} for k, allowed in self.when
        )


@dataclass(frozen=True)
class Scope:
    """Dimensions sampled together, then the conditional blocks that follow them."""

    params: tuple[Param, ...]
    branches: tuple[Branch, ...]


class SearchSpace:
    """A validated, possibly conditional search space.

    Parameters
    ----------
    raw
        The ``space`` mapping of the sweep YAML.
    path
        Its location in the YAML (for messages).
    """

    def __init__(self, raw: Mapping[str, Any], path: str = "space") -> None:
        self.root = _parse_scope(raw, path, {})
        self._check_duplicates()

    # ------------------------------------------------------------------------------------- structure
    def params(self) -> list[tuple[Param, dict[str, tuple[Any, ...]]]]:
        """Every dimension with the conditions (key → allowed values) under which it is sampled."""
        out: list[tuple[Param, dict[str, tuple[Any, ...]]]] = []

        def walk(scope: Scope, conds: dict[str, tuple[Any, ...]]) -> None:
            out.extend((p, dict(conds)) for p in scope.params)
            for b in scope.branches:
                inner = dict(conds)
                for k, allowed in b.when:
                    inner[k] = tuple(a for a in allowed if k not in conds or _member(a, conds[k]))
                walk(b.scope, inner)

        walk(self.root, {})
        return out

    def keys(self) -> list[str]:
        """Every key of the space (each once): dotted config keys and the names of ``arms`` dimensions."""
        return list(dict.fromkeys(p.key for p, _ in self.params()))

    def arms(self) -> list[Param]:
        """The ``arms`` dimensions."""
        return [p for p, _ in self.params() if p.is_arms]

    def expand(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Dotted config overrides of a configuration: each arm's overrides, then the other values."""
        arms: dict[str, Any] = {}
        rest: dict[str, Any] = {}
        for key, value in values.items():
            p = self.find(key, values)
            if p is not None and p.is_arms:
                arms.update(p.arm_overrides(value))
            else:
                rest[key] = value
        return {**arms, **rest}

    def find(self, key: str, values: Mapping[str, Any]) -> Param | None:
        """The dimension setting ``key`` that is active given ``values`` (None when none is)."""
        for p, conds in self.params():
            if p.key == key and all(k in values and _member(values[k], allowed) for k, allowed in conds.items()):
                return p
        return None

    def describe(self) -> Any:
        """A canonical, JSON-friendly description (for the space hash)."""

        def scope(s: Scope) -> dict[str, Any]:
            out: dict[str, Any] = {p.key: p.describe() for p in s.params}
            if s.branches:
                out[CONDITIONAL] = [{"when": dict(b.when), "space": scope(b.scope)} for b in s.branches]
            return out

        return scope(self.root)

    # -------------------------------------------------------------------------------------- sampling
    def sample(self, trial: optuna.Trial) -> dict[str, Any]:
        """Define-by-run sampling: a scope's dimensions, then the blocks whose conditions hold."""
        values: dict[str, Any] = {}

        def walk(scope: Scope) -> None:
            for p in scope.params:
                values[p.key] = p.suggest(trial)
            for b in scope.branches:
                if b.holds(values):
                    walk(b.scope)

        walk(self.root)
        return values

    def resolve(self, forced: Mapping[str, Any]) -> dict[str, Any]:
        """The active assignment where ``forced`` keys take the given values and the others their default."""
        values: dict[str, Any] = {}

        def walk(scope: Scope) -> None:
            for p in scope.params:
                values[p.key] = forced[p.key] if p.key in forced else p.default()
            for b in scope.branches:
                if b.holds(values):
                    walk(b.scope)

        walk(self.root)
        return values

    def iter_grid(self) -> Iterator[dict[str, Any]]:
        """Every combination of a discrete space, conditional branches included, in declaration order.

        Raises
        ------
        ConfigError
            A float dimension without ``step`` (an infinite grid).
        """
        for p, _ in self.params():
            if p.kind == "float" and p.step is None:
                raise ConfigError(f"{p.path}: a grid needs a step for float dimensions (e.g. step: 0.1)")
        return _grid_scope(self.root, {})

    def probes(self) -> Iterator[tuple[Param | None, dict[str, Any]]]:
        """Assignments that together try every bound and every choice of every dimension (for validation).

        Yields ``(dimension being probed or None for the all-defaults assignment, active assignment)``.
        """
        yield None, self.resolve({})
        for p, conds in self.params():
            for v in p.probes():
                forced = {k: allowed[0] for k, allowed in conds.items() if allowed}
                forced[p.key] = v
                yield p, self.resolve(forced)

    def check_assignment(self, values: Mapping[str, Any], path: str) -> None:
        """Refuse a configuration (e.g. an ``enqueue`` entry) with unknown, inactive or out-of-range values."""
        for key, value in values.items():
            p = self.find(key, values)
            if p is None:
                where = "not a key of the space" if key not in self.keys() else "inactive under the other values"
                raise ConfigError(f"{path}.{key}: {where}; enqueue only keys of the (active) search space")
            problem = p.problem(value)
            if problem:
                raise ConfigError(f"{path}.{key}: {problem}")

    def optuna_params(self, values: Mapping[str, Any]) -> dict[str, Any]:
        """Config values as Optuna stores them (categorical lists become their JSON text)."""
        out = {}
        for key, value in values.items():
            p = self.find(key, values)
            if p is not None and p.kind != "fixed":
                out[key] = p.encode(value)
        return out

    # ------------------------------------------------------------------------------------ validation
    def _check_duplicates(self) -> None:
        seen: dict[str, list[tuple[Param, dict[str, tuple[Any, ...]]]]] = {}
        for p, conds in self.params():
            for q, qconds in seen.get(p.key, []):
                exclusive = any(
                    k in qconds and not set(map(_canonical, v)) & set(map(_canonical, qconds[k]))
                    for k, v in conds.items()
                )
                if not exclusive:
                    raise ConfigError(
                        f"{p.path}: already set by {q.path} under overlapping conditions; "
                        "define a key once, or in blocks whose 'when' values exclude each other"
                    )
                if not p.compatible(q):
                    raise ConfigError(
                        f"{p.path}: must have the same type, log scale and choices as {q.path} "
                        "(ranges may differ): Optuna stores both under one name"
                    )
            seen.setdefault(p.key, []).append((p, conds))


def _member(value: Any, allowed: tuple[Any, ...]) -> bool:
    return _canonical(value) in {_canonical(a) for a in allowed}


def _grid_scope(scope: Scope, outer: dict[str, Any]) -> Iterator[dict[str, Any]]:
    for combo in itertools.product(*(p.grid() for p in scope.params)):
        values = {**outer, **{p.key: v for p, v in zip(scope.params, combo, strict=True)}}
        yield from _grid_branches(list(scope.branches), values)


def _grid_branches(branches: list[Branch], values: dict[str, Any]) -> Iterator[dict[str, Any]]:
    if not branches:
        yield values
        return
    first, rest = branches[0], branches[1:]
    if not first.holds(values):
        yield from _grid_branches(rest, values)
        return
    for inner in _grid_scope(first.scope, values):
        yield from _grid_branches(rest, inner)


def _parse_scope(raw: Mapping[str, Any], path: str, outer: dict[str, Param]) -> Scope:
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping of dotted keys to dimensions, got {type(raw).__name__}")
    params: list[Param] = []
    visible = dict(outer)
    for key, spec in raw.items():
        if key == CONDITIONAL:
            continue
        p = _parse_dimension(str(key), spec, f"{path}.{key}")
        if p.key in outer:
            raise ConfigError(f"{p.path}: already defined in an enclosing scope ({outer[p.key].path})")
        params.append(p)
        visible[p.key] = p
    blocks = raw.get(CONDITIONAL, [])
    if not isinstance(blocks, list):
        raise ConfigError(f"{path}.{CONDITIONAL}: expected a list of {{when, space}} blocks")
    branches = []
    for i, block_raw in enumerate(blocks):
        bpath = f"{path}.{CONDITIONAL}.{i}"
        block = validate_model(ConditionalBlock, block_raw, bpath)
        when = tuple((k, _parse_when(k, v, visible, f"{bpath}.when.{k}")) for k, v in block.when.items())
        branches.append(Branch(when, _parse_scope(block.space, f"{bpath}.space", visible), bpath))
    if not params and not branches:
        raise ConfigError(f"{path}: empty search space; give at least one dimension")
    return Scope(tuple(params), tuple(branches))


def _parse_when(key: str, value: Any, visible: dict[str, Param], path: str) -> tuple[Any, ...]:
    p = visible.get(key)
    if p is None:
        raise ConfigError(f"{path}: not a dimension defined before this block; conditions refer to sampled keys")
    if p.kind == "float":
        raise ConfigError(f"{path}: conditions need a categorical, int or fixed dimension, {key} is a float")
    if p.kind == "categorical" and p.has_choice(value):
        return (value,)
    allowed = tuple(value) if isinstance(value, list) else (value,)
    for a in allowed:
        problem = p.problem(a)
        if problem:
            raise ConfigError(f"{path}: {problem}")
    return allowed


def _parse_dimension(key: str, raw: Any, path: str) -> Param:
    if isinstance(raw, Mapping) and raw.get("type") == ARMS:
        return _arms(key, raw, path)
    return _parse_param(key, raw, path)


def _arms(key: str, raw: Mapping[str, Any], path: str) -> Param:
    if not key.isidentifier():
        raise ConfigError(f"{path}: an arms dimension needs a plain name such as 'arm' (no dots)")
    for field in sorted(set(raw) - {"type", "choices"}):
        raise ConfigError(f"{path}.{field}: not used by an arms dimension (its keys: choices, type)")
    choices = raw.get("choices")
    if not isinstance(choices, Mapping) or not choices:
        raise ConfigError(
            f"{path}.choices: give a mapping of arm names to dotted overrides, e.g. {{mlp: {{network.name: mlp}}}}"
        )
    arms = []
    for name, overrides in choices.items():
        where = f"{path}.choices.{name}"
        if not isinstance(name, str) or not name.replace("-", "_").isidentifier():
            raise ConfigError(f"{where}: arm names are words such as unet1d_k1 (letters, digits, _ and -)")
        if overrides is None:
            overrides = {}
        if not isinstance(overrides, Mapping):
            raise ConfigError(f"{where}: expected a mapping of dotted overrides, e.g. {{network.kernel_size: 1}}")
        for k in overrides:
            if k == "seed":
                raise ConfigError(f"{where}.seed: seeds come from budget.replicates, not from an arm")
            if not isinstance(k, str) or k.count(".") < 1 or not all(part.isidentifier() for part in k.split(".")):
                raise ConfigError(f"{where}.{k}: arm overrides are dotted config paths such as network.kernel_size")
        arms.append((name, dict(overrides)))
    return Param(key, path, "categorical", choices=tuple(n for n, _ in arms), arms=tuple(arms))


def _parse_param(key: str, raw: Any, path: str) -> Param:
    if key.count(".") < 1 or not all(part.isidentifier() for part in key.split(".")):
        hint = "; seeds come from budget.replicates" if key == "seed" else ""
        raise ConfigError(f"{path}: keys are dotted config paths such as optim.lr{hint}")
    if not isinstance(raw, Mapping):
        raise ConfigError(f"{path}: expected a mapping such as {{type: float, low: 1e-4, high: 1e-2, log: true}}")
    spec = validate_model(ParamSpec, raw, path)
    required, allowed = _FIELDS[spec.type]
    given = spec.model_fields_set - {"type"}
    for field in sorted(given - allowed):
        raise ConfigError(
            f"{path}.{field}: not used by {_ARTICLE[spec.type]} {spec.type} dimension (its keys: {', '.join(sorted(allowed))})"
        )
    for field in sorted(required - given):
        raise ConfigError(f"{path}.{field}: required for a {spec.type} dimension")
    if spec.type == "fixed":
        return Param(key, path, "fixed", value=spec.value)
    if spec.type == "categorical":
        return _categorical(key, path, spec.choices or [])
    return _numeric(key, path, spec)


def _categorical(key: str, path: str, choices: list[Any]) -> Param:
    if not choices:
        raise ConfigError(f"{path}.choices: give at least one choice")
    texts = [_canonical(c) for c in choices]
    if len(set(texts)) != len(texts):
        raise ConfigError(f"{path}.choices: duplicate choices {choices}")
    return Param(key, path, "categorical", choices=tuple(choices))


def _numeric(key: str, path: str, spec: ParamSpec) -> Param:
    low, high, step = spec.low, spec.high, spec.step
    assert low is not None
    assert high is not None
    if not (math.isfinite(low) and math.isfinite(high)):
        raise ConfigError(f"{path}: bounds must be finite numbers")
    if low > high:
        raise ConfigError(f"{path}.low: must not exceed high (got {low} > {high})")
    if spec.log and low <= 0:
        raise ConfigError(f"{path}.low: a log-scale dimension needs low > 0 (got {low})")
    if step is not None and step <= 0:
        raise ConfigError(f"{path}.step: must be positive (got {step})")
    if spec.log and step is not None and not (spec.type == "int" and step == 1):
        raise ConfigError(f"{path}.step: cannot be combined with log: true")
    if spec.type == "int":
        for name, v in (("low", low), ("high", high), ("step", step)):
            if v is not None and not float(v).is_integer():
                raise ConfigError(f"{path}.{name}: an int dimension needs whole numbers (got {v})")
        low, high = int(low), int(high)
        step = int(step) if step is not None else None
    if step is not None and not _on_grid(high, low, step):
        raise ConfigError(f"{path}.step: high - low must be a multiple of step (got {high} - {low}, step {step})")
    return Param(key, path, spec.type, low=low, high=high, log=spec.log, step=step)
