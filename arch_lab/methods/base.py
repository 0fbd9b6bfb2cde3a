"""The contract every prediction method follows, and the method registry."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

import numpy as np

from arch_lab.config import ExperimentConfig
from arch_lab.data.task import Condition, Task
from arch_lab.errors import ConfigError


@dataclass
class PredictionRequest:
    """Generate ``n_cells`` cells of ``condition``.

    ``source`` holds ``n_cells`` control cells of the same state (stored gene order), drawn from the training
    controls: matching methods map them to perturbed cells, a control-source flow integrates from them, and a
    Gaussian-source flow ignores them. They are never the observed controls the predictions are scored against.
    ``source_rows`` are their rows in the task's data (None when the cells came from elsewhere).
    """

    condition: Condition
    n_cells: int
    source: np.ndarray
    source_rows: np.ndarray | None = None


#: ``predict(requests, rng) -> one [n_cells, G] array per request`` (stored gene order).
Predictor = Callable[[list[PredictionRequest], np.random.Generator], list[np.ndarray]]
#: ``validate(predict, conditions) -> metric summary``: built by the harness
#: (:func:`arch_lab.harness.make_validator`) and handed to :meth:`Method.fit`.
Validator = Callable[[Predictor, list[Condition]], dict[str, float]]


class Method:
    """Base class of a prediction method.

    Subclasses set ``name``, implement :meth:`fit` and :meth:`predict`, and may override
    :meth:`state_dict` / :meth:`load_state_dict` so ``arch-lab predict`` can reload them.
    """

    name: ClassVar[str] = ""
    #: Whether :meth:`fit` selects checkpoints or stops on validation scores. Only such a method gets
    #: ``train.val_train_fraction`` of its training cells moved to the val split (:func:`task_config`); a
    #: closed-form method fits on every training cell.
    validates: ClassVar[bool] = False

    def __init__(self, cfg: ExperimentConfig, task: Task) -> None:
        self.cfg = cfg
        self.task = task
        self.params = dict(cfg.method.params)

    def fit(
        self,
        run_dir: Path | None = None,
        callbacks: list[Callable[[int, dict], None]] | None = None,
        validate: Validator | None = None,
    ) -> dict:
        """Train on the task's training cells; return a summary (e.g. steps, wall time).

        Parameters
        ----------
        run_dir
            Where a trained method may keep checkpoints (None: nowhere).
        callbacks
            ``callback(step, val_metrics)`` after each validation of an iteratively trained method.
        validate
            Scores a predictor on val conditions (:data:`Validator`); a trained method calls it with its
            current model's predictor to select checkpoints and stop early. Closed-form methods ignore it.
        """
        return {}

    def predict(self, requests: list[PredictionRequest], rng: np.random.Generator) -> list[np.ndarray]:
        """One ``[n_cells, G]`` array per request, in stored gene order."""
        raise NotImplementedError

    def parameter_count(self) -> int:
        """Number of trainable parameters (0 for closed-form methods)."""
        return 0

    def readouts(self, split: str) -> dict[str, float]:
        """Mechanistic read-outs of the fitted method on ``split`` (name -> value; none for most methods)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to predict again after :meth:`load_state_dict`."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""

    def check_params(self, allowed: set[str]) -> None:
        """Reject unknown ``method.params`` keys with a one-line error."""
        unknown = sorted(set(self.params) - allowed)
        if unknown:
            raise ConfigError(
                f"method.params.{unknown[0]}: unknown option for method {self.name!r}; "
                f"valid options: {', '.join(sorted(allowed)) or 'none'}"
            )


_METHODS: dict[str, type[Method]] = {}


def register_method(name: str) -> Callable[[type[Method]], type[Method]]:
    """Class decorator adding a method to the registry under ``name``."""

    def deco(cls: type[Method]) -> type[Method]:
        if name in _METHODS:
            raise ValueError(f"method {name!r} is already registered")
        cls.name = name
        _METHODS[name] = cls
        return cls

    return deco


def list_methods() -> list[str]:
    """Registered method names, sorted."""
    return sorted(_METHODS)


def task_config(cfg: ExperimentConfig) -> ExperimentConfig:
    """``cfg`` as its task should be built for its method (pass the result to ``build_task``).

    ``train.val_train_fraction`` moves training cells to the val split for checkpoint selection; a method that
    does not validate (:attr:`Method.validates`) would only lose those cells, so it gets the fraction at 0. An
    unknown method name is left for :func:`build_method` to reject.
    """
    cls = _METHODS.get(cfg.method.name)
    if cls is None or cls.validates or cfg.train.val_train_fraction == 0:
        return cfg
    return cfg.model_copy(update={"train": cfg.train.model_copy(update={"val_train_fraction": 0.0})})


def build_method(cfg: ExperimentConfig, task: Task) -> Method:
    """Instantiate the method named in ``cfg.method.name``."""
    name = cfg.method.name
    if name not in _METHODS:
        raise ConfigError(f"method.name: unknown method {name!r}; registered methods are {', '.join(list_methods())}")
    return _METHODS[name](cfg, task)
