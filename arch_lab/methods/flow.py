"""Flow matching in gene-expression space with any registered velocity network."""

from __future__ import annotations

import functools
import weakref
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from typing_extensions import override

from arch_lab.config import ExperimentConfig, FlowConfig
from arch_lab.data.task import Condition, Task
from arch_lab.flow import generate
from arch_lab.methods.base import Method, PredictionRequest, Validator, register_method
from arch_lab.methods.readouts import (
    hidden_source_share,
    source_outside_span,
    source_sensitivity,
    source_velocity_gain,
)
from arch_lab.networks import build_network, count_parameters, network_config, resolve_matched_knobs
from arch_lab.spec import CondBatch
from arch_lab.training.sampling import source_center


@register_method("flow_matching")
class FlowMatching(Method):
    """Conditional flow matching; the velocity network comes from the ``network`` section of the config.

    Generation integrates the (classifier-free guided) velocity from the source (Gaussian noise or the
    request's control cells) at t = 0 to t = 1 with the configured ODE solver. Outputs are put back in stored
    gene order and clipped at zero (log-normalised expression is non-negative).
    """

    validates = True  # the val split picks the checkpoint (and the untrained flow with train.validate_at_start)

    def __init__(self, cfg: ExperimentConfig, task: Task) -> None:
        super().__init__(cfg, task)
        self.check_params(set())
        torch.manual_seed(cfg.seed)
        match = cfg.network.match_parameters
        knobs, self.parameter_matching = resolve_matched_knobs(
            cfg.network.name,
            cfg.network.knobs(),
            match.model_dump(exclude_none=True) if match is not None else None,
            task.spec,
        )
        self.network = build_network(cfg.network.name, knobs, task.spec)
        self.model: nn.Module = self.network
        self.resume = False
        self.train_state: Any = None

    @override
    def parameter_count(self) -> int:
        return count_parameters(self.network)

    @override
    def fit(
        self,
        run_dir: Path | None = None,
        callbacks: list[Callable[[int, dict], None]] | None = None,
        validate: Validator | None = None,
    ) -> dict:
        from arch_lab.training.trainer import FlowTrainer

        cfg, compute = self._compute_budget()
        trainer = FlowTrainer(cfg, self.task, self.network, self._model_validator(validate), run_dir, callbacks)
        state = trainer.fit(resume=self.resume)
        self.model = trainer.eval_model()
        self.device = trainer.device
        self.train_state = state
        return {
            "steps": state.step,
            "best_step": state.best_step,
            "best_value": state.best_value,
            "select_metric": self.cfg.train.select_metric,
            "stopped_early": state.stopped_early,
            "time_limited": state.time_limited,
            "train_seconds": state.train_seconds,
            "history": state.history,
            "precision": str(trainer.autocast_dtype or "fp32"),
            "micro_batch_size": trainer.micro_batch_size,
            "parameter_matching": self.parameter_matching,
            **compute,
            "train_flops": compute["flops_per_step"] * state.step,
        }

    def _compute_budget(self) -> tuple[ExperimentConfig, dict[str, Any]]:
        """FLOPs per training step and, with ``train.max_flops``, the config whose ``max_steps`` spends it."""
        from arch_lab.flops import network_flops, steps_for_budget

        cfg = self.cfg
        o = cfg.optim
        k = min(o.conditions_per_batch, max(len(self.task.conditions("train", include_control=True)), 1))
        rows = k * max(o.batch_size // k, 1)  # what the trainer's ConditionSampler draws per step
        counts = network_flops(self.network, rows)
        record: dict[str, Any] = {
            "flops_per_step": counts.train_step,
            "forward_flops": counts.forward,
            "max_flops": cfg.train.max_flops,
            "flop_budget_steps": None,
            "flop_budget_capped": None,
        }
        budget = cfg.train.max_flops
        if cfg.train.match_flops is not None:
            budget = self._reference_flops(cfg.train.match_flops.reference, rows) * cfg.train.match_flops.steps
            record["max_flops"] = budget
        if budget is None:
            return cfg, record
        wanted = steps_for_budget(budget, counts.train_step)
        steps = min(wanted, cfg.train.max_steps)
        record.update(flop_budget_steps=wanted, flop_budget_capped=wanted > steps)
        train = cfg.train.model_copy(update={"max_steps": steps})
        return cfg.model_copy(update={"train": train}), record

    def _reference_flops(self, reference: dict[str, Any], rows: int) -> int:
        """Training FLOPs per step of the reference network ``{name: ..., ...knobs}`` on this task's data."""
        from arch_lab.flops import network_flops

        knobs = {k: v for k, v in reference.items() if k != "name"}
        network = build_network(reference["name"], knobs, self.task.spec)
        return network_flops(network, rows).train_step

    def _model_validator(
        self, validate: Validator | None
    ) -> Callable[[nn.Module, list[Condition]], dict[str, float]] | None:
        """What the trainer calls: score a model (its EMA weights, say) through ``validate``."""
        if validate is None:
            return None
        task, flow = self.task, self.cfg.flow

        def validate_model(model: nn.Module, conditions: list[Condition]) -> dict[str, float]:
            return validate(functools.partial(predict_cells, model, task, flow), conditions)

        return validate_model

    @override
    def readouts(self, split: str) -> dict[str, float]:
        """``source_outside_span``, ``output_rank``, ``source_sensitivity``, ``source_velocity_gain`` and
        ``hidden_source_share``
        (:mod:`arch_lab.methods.readouts`).
        """
        f = self.cfg.flow
        center = source_center(self.task, f.source, f.source_mean)
        sensitivity = source_sensitivity(
            self.model,
            self.task,
            f.source,
            split,
            solver=f.solver,
            steps=f.steps,
            guidance=f.guidance,
            rtol=f.rtol,
            atol=f.atol,
            seed=self.cfg.seed,
            center=center,
        )
        gain = source_velocity_gain(
            self.model, self.task, f.source, f.coupling, split, seed=self.cfg.seed, center=center
        )
        share = hidden_source_share(self.model, self.task, f.source, split, seed=self.cfg.seed, center=center)
        return source_outside_span(self.model, self.task, f.source, split) | sensitivity | gain | share

    @override
    def predict(self, requests: list[PredictionRequest], rng: np.random.Generator) -> list[np.ndarray]:
        return predict_cells(self.model, self.task, self.cfg.flow, requests, rng)

    @override
    def state_dict(self) -> dict[str, Any]:
        return {
            "network_name": self.cfg.network.name,
            "network_config": network_config(self.network),
            "weights": {k: v.cpu() for k, v in self.model.state_dict().items()},
        }

    @override
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.network = build_network(state["network_name"], state["network_config"], self.task.spec)
        weights = {k.removeprefix("module."): v for k, v in state["weights"].items() if k != "n_averaged"}
        self.network.load_state_dict(weights)
        self.model = self.network.eval()


#: Training cells read to find the smallest non-zero expression value (``flow.zero_threshold: auto``).
_THRESHOLD_ROWS = 20_000
_thresholds: weakref.WeakKeyDictionary[Task, float] = weakref.WeakKeyDictionary()


def zero_threshold(task: Task, flow: FlowConfig) -> float:
    """Generated values below this are set to zero (0: none).

    ``flow.zero_threshold: auto`` is half the smallest non-zero value of the task's training cells (read from at
    most 20,000 of them): log-normalised expression jumps from 0 to ``log1p(1 count scaled)`` and takes no value
    in between, so a generated value below half that step is a zero the velocity field did not hit exactly. On
    sparse data the small positive values left there otherwise add up over thousands of genes and dominate the
    distance between generated and observed cells. A number is taken as given; ``null`` keeps every value.
    """
    setting = flow.zero_threshold
    if setting is None:
        return 0.0
    if setting != "auto":
        return float(setting)
    if task not in _thresholds:
        rows = task.cells("train")
        rows = rows[:: max(1, len(rows) // _THRESHOLD_ROWS)][:_THRESHOLD_ROWS]
        values = np.asarray(task.data.X[np.sort(rows)], dtype=np.float64)
        positive = values[values > 0]
        _thresholds[task] = 0.5 * float(positive.min()) if positive.size else 0.0
    return _thresholds[task]


@torch.no_grad()
def predict_cells(
    model: nn.Module, task: Task, flow: FlowConfig, requests: list[PredictionRequest], rng: np.random.Generator
) -> list[np.ndarray]:
    """Generate the cells of each request with a velocity network.

    A plain function of (model, requests): training validates its EMA model through it, and a fitted
    :class:`FlowMatching` predicts through it with its final weights.

    Parameters
    ----------
    model
        A velocity network (any registered backbone, or a wrapper with the same ``forward``).
    task
        Gives the gene order the network works in and the condition encoding.
    flow
        Source, solver, steps and guidance.
    requests
        What to generate (condition, number of cells, source control cells).
    rng
        Seeds the Gaussian source (unused with ``flow.source: control``).

    Returns
    -------
    list of numpy.ndarray
        One ``[n_cells, G]`` array per request, in stored gene order, clipped at zero, and with values below
        ``flow.zero_threshold`` set to zero (see :func:`zero_threshold`).
    """
    f = flow
    model.eval()
    device = next(model.parameters()).device
    order = torch.from_numpy(task.order)
    inverse = torch.from_numpy(task.inverse_order)
    threshold = zero_threshold(task, f)
    center = source_center(task, f.source, f.source_mean)
    out = []
    for r in requests:
        tokens, covs = task.encode(r.condition)
        cond = CondBatch.repeat(tokens, covs, r.n_cells, width=task.spec.max_perturbations).to(device)
        if f.source == "control":
            x0 = torch.from_numpy(r.source.astype(np.float32))[:, order]
        else:
            g = torch.Generator().manual_seed(int(rng.integers(2**62)))
            x0 = torch.randn((r.n_cells, task.data.n_genes), generator=g)
            if center is not None:
                x0 = x0 + center
        x1 = generate(
            model,
            cond,
            x0.to(device),
            solver=f.solver,
            steps=f.steps,
            guidance=f.guidance,
            rtol=f.rtol,
            atol=f.atol,
        )
        cells = x1.float().cpu()[:, inverse].clamp_min(0)
        if threshold > 0:
            cells = cells.masked_fill(cells < threshold, 0.0)
        out.append(cells.numpy())
    return out
