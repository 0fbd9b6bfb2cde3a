"""The evaluation harness: build prediction requests for a task's held-out conditions, score the predictions,
and put the task's reference points (floor and ceiling) beside them.

It sits between the methods and the metrics: a method only turns requests into cells (a :data:`Predictor`),
the harness decides which cells are asked for and what they are scored against. The trainer's periodic
validation is a :data:`Validator` built here by :func:`make_validator` and handed down through
``Method.fit(validate=...)``, so nothing below the harness calls back up into it.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

import anndata as ad
import numpy as np
import pandas as pd

from arch_lab.config import EvalConfig, ExperimentConfig
from arch_lab.data.task import Condition, Task
from arch_lab.methods.base import Method, PredictionRequest, Predictor, Validator
from arch_lab.metrics import METRICS, ConditionGroup, MetricSettings, score_conditions, split_half_groups

logger = logging.getLogger(__name__)

#: a generated value beyond this many times the largest observed magnitude (or non-finite) marks a diverged flow
OUT_OF_RANGE_FACTOR = 10.0

__all__ = [
    "EvalResult",
    "cells_to_anndata",
    "Predictor",
    "Validator",
    "condition_groups",
    "evaluate",
    "make_requests",
    "make_validator",
    "metric_settings",
    "perturbation_column",
    "predictions_to_anndata",
    "validation_config",
]


@dataclass
class EvalResult:
    """Predictions and scores of one evaluated split.

    ``out_of_range_cells`` counts, per condition (``state/perturbation``), the generated cells a diverged flow left
    (:func:`out_of_range_cells`); empty when there are none.
    """

    predictions: ad.AnnData
    per_condition: pd.DataFrame
    summary: dict[str, float]
    reference_per_condition: pd.DataFrame | None = None
    reference_summary: dict[str, dict[str, float]] | None = None
    out_of_range_cells: dict[str, int] = field(default_factory=dict)


def make_requests(
    task: Task,
    conditions: list[Condition],
    split: str | None,
    n_cells: int | str,
    rng: np.random.Generator,
    reuse_sources: bool = False,
) -> list[PredictionRequest]:
    """One request per condition, with source control cells drawn from the state's training controls.

    Parameters
    ----------
    task
        The task.
    conditions
        The conditions to predict.
    split
        The split whose observed cells ``n_cells='observed'`` counts (None: every split).
    n_cells
        Cells per condition, or ``'observed'``: as many as were observed for the condition in ``split``.
    rng
        Draws the source cells.
    reuse_sources
        False (evaluation): a source control cell is never used twice in one request, so a request asks for at most
        as many cells as the state has training controls (all of them, or a subsample without replacement). A
        duplicated cell adds zero distances to the within-set term of the energy distance and would bias every
        method that maps source cells. True (generation on demand): draw with replacement when more cells are asked
        for than there are controls.

    Returns
    -------
    list of PredictionRequest
        In the order of ``conditions``; ``source_rows`` records the data rows of the source cells.
    """
    requests = []
    for c in conditions:
        n = len(task.cells(split, c)) if n_cells == "observed" else int(n_cells)
        pool = task.controls(c.state, "train")
        if not reuse_sources:
            n = min(n, len(pool))
        rows = rng.choice(pool, size=n, replace=n > len(pool))
        requests.append(PredictionRequest(c, n, task.data.X[rows], source_rows=rows))
    return requests


def cells_to_anndata(
    task: Task, X: np.ndarray, perturbations: list[str], states: list[str], prefix: str = "pred"
) -> ad.AnnData:
    """Cells of a task as an AnnData the field's tools read: the user's column names and gene annotations.

    Parameters
    ----------
    task
        Gives the column names, the genes (stored order, with the user's ``var`` columns) and the preprocessing.
    X
        ``[n, G]`` log-normalised expression, stored gene order.
    perturbations, states
        Each cell's perturbation label and covariate state.
    prefix
        Cell ids are ``<prefix>-<i>``.

    Returns
    -------
    anndata.AnnData
        ``obs`` holds the data's perturbation column (``data.perturbation_key``), one column per covariate key and
        ``state``; ``var`` the kept genes' annotations; ``uns['log1p']`` (scanpy's marker of log-normalised data,
        natural log) and ``uns['arch_lab']`` (column names, control value, normalisation target, gene selection).
    """
    data = task.data
    key = data.perturbation_key
    obs = pd.DataFrame({key: pd.Series(perturbations, dtype=object)})
    for cov in data.covariate_keys:
        obs[cov] = [task.covariate_values(s)[cov] for s in states] if len(states) else []
    obs["state"] = list(states)
    obs.index = pd.Index([f"{prefix}-{i}" for i in range(len(obs))])
    out = ad.AnnData(X=np.asarray(X, dtype=np.float32).reshape(len(obs), data.n_genes), obs=obs,
                     var=data.gene_annotations())  # fmt: skip
    out.uns["log1p"] = {"base": data.preprocessing.get("log1p_base")}
    out.uns["arch_lab"] = {
        "perturbation_key": key,
        "control_value": data.control_value,
        "covariate_keys": list(data.covariate_keys),
        "combination_delimiter": data.delimiter,
        **{k: v for k, v in data.preprocessing.items() if v is not None},
    }
    out.uns["control_value"] = data.control_value
    out.uns["covariate_keys"] = list(data.covariate_keys)
    return out


def perturbation_column(adata: ad.AnnData) -> str:
    """The obs column holding perturbation labels in an AnnData written by arch_lab (``perturbation`` in files
    written before the data's own column name was kept).
    """
    return str(adata.uns.get("arch_lab", {}).get("perturbation_key", "perturbation"))


def predictions_to_anndata(task: Task, requests: list[PredictionRequest], predicted: list[np.ndarray]) -> ad.AnnData:
    """Stack generated cells into an AnnData with the data's obs column names and genes (stored order).

    Follows cell-eval's conventions: the data's perturbation column, covariate columns, identical genes in the
    same order (see :func:`cells_to_anndata`). Observed controls are not included: scoring uses the observed
    controls of the evaluated split, kept apart from the training controls the predictions were made from
    (``arch-lab export cell-eval`` writes both sets beside each other).
    """
    perturbations = [r.condition.perturbation for r, x in zip(requests, predicted, strict=True) for _ in range(len(x))]
    states = [r.condition.state for r, x in zip(requests, predicted, strict=True) for _ in range(len(x))]
    X = np.concatenate(predicted, axis=0) if predicted else np.zeros((0, task.data.n_genes), np.float32)
    return cells_to_anndata(task, X, perturbations, states)


def condition_groups(
    task: Task, split: str, requests: list[PredictionRequest], predicted: list[np.ndarray]
) -> list[ConditionGroup]:
    """Pair each prediction with the observed cells of its condition in ``split`` and two disjoint control pools.

    The observed response is taken against the observed controls of the state in ``split`` (the scoring
    controls); the predicted response against the state's training controls, the pool its source cells come
    from. Keeping the pools apart (as cell-eval does with the controls of its predicted and real AnnData) means
    the noise of one control sample is never shared by both responses.
    """
    X = task.data.X
    scoring: dict[str, np.ndarray] = {}
    source: dict[str, np.ndarray] = {}
    for r in requests:
        state = r.condition.state
        if state not in scoring:
            scoring[state] = X[task.controls(state, split)].astype(np.float64)
            source[state] = X[task.controls(state, "train")].astype(np.float64)
    return [
        ConditionGroup(
            state=r.condition.state,
            perturbation=r.condition.perturbation,
            predicted=np.asarray(p, dtype=np.float64),
            observed=X[task.cells(split, r.condition)].astype(np.float64),
            controls=scoring[r.condition.state],
            source_controls=source[r.condition.state],
        )
        for r, p in zip(requests, predicted, strict=True)
    ]


def out_of_range_cells(groups: list[ConditionGroup], factor: float = OUT_OF_RANGE_FACTOR) -> dict[str, int]:
    """Generated cells with a value the data cannot hold, per condition (``state/perturbation``); empty when none.

    A cell counts when any of its values is non-finite or larger in magnitude than ``factor`` times the largest
    magnitude among the observed and control cells scored beside it (at least 1). Such cells come from a flow
    whose velocity diverged; a handful of them make distance metrics meaningless (one cell with a gene near 1e34
    gave an energy distance near 1e29 in one run, and float64 cancellation can turn it into noise in another), so
    :func:`evaluate` warns about them.
    """
    scored = {id(a): a for g in groups for a in (g.observed, g.controls) if a.size}  # a state's controls: once
    bound = factor * max([1.0] + [float(np.abs(a).max()) for a in scored.values()])
    out: dict[str, int] = {}
    for g in groups:
        if not g.predicted.size:
            continue
        bad = ~np.isfinite(g.predicted).all(axis=1) | (np.abs(np.nan_to_num(g.predicted, nan=0.0)) > bound).any(axis=1)
        if bad.any():
            out[f"{g.state}/{g.perturbation}"] = int(bad.sum())
    return out


def metric_settings(cfg: EvalConfig, seed: int) -> MetricSettings:
    """Metric options from the eval section."""
    return MetricSettings(
        pca_components=cfg.pca_components, deg_top_k=cfg.deg_top_k, energy_max_cells=cfg.energy_max_cells, seed=seed
    )


def evaluate(
    task: Task,
    method: Method | Predictor,
    cfg: EvalConfig,
    seed: int,
    split: str | None = None,
    conditions: list[Condition] | None = None,
) -> EvalResult:
    """Predict and score every held-out condition of ``split`` (default: ``cfg.split``).

    Parameters
    ----------
    task
        The task whose conditions are predicted.
    method
        A fitted :class:`~arch_lab.methods.base.Method`, or any :data:`Predictor`
        ``(requests, rng) -> [n_cells, G] arrays``.
    cfg
        The eval section (cells per condition, metric options, reference points).
    seed
        Seeds the source cells drawn for the requests and the predictor's generator.
    split
        The split to score (default ``cfg.split``).
    conditions
        A subset of the split's conditions (default: all of them).

    Returns
    -------
    EvalResult
        Predictions, per-condition scores, their summary and, with ``cfg.reference_points``, the floor
        (``no_change``: the source controls as prediction) and ceiling (``split_half``: half of the observed cells
        scored against the other half).
    """
    predict = method.predict if isinstance(method, Method) else method
    split = split or cfg.split
    conditions = conditions if conditions is not None else task.conditions(split)
    rng = np.random.default_rng(seed + 7919)
    requests = make_requests(task, conditions, split, cfg.n_cells, rng)
    predicted = predict(requests, np.random.default_rng(seed + 104729))
    settings = metric_settings(cfg, seed)
    groups = condition_groups(task, split, requests, predicted)
    diverged = out_of_range_cells(groups)
    if diverged:
        total = sum(len(g.predicted) for g in groups)
        where = ", ".join(f"{k} ({n})" for k, n in diverged.items())
        logger.warning(
            "%d of %d generated cells on the %s split hold values beyond %g times the data's largest (or not finite), "
            "in %s: the flow diverged and distance metrics are meaningless with them; check train/loss for spikes "
            "and lower optim.lr or lengthen optim.warmup_steps",
            sum(diverged.values()),
            total,
            split,
            OUT_OF_RANGE_FACTOR,
            where,
        )
    per_condition, summary = score_conditions(groups, settings)
    result = EvalResult(
        predictions_to_anndata(task, requests, predicted), per_condition, summary, out_of_range_cells=diverged
    )
    if cfg.reference_points:
        floor_groups = condition_groups(task, split, requests, [r.source for r in requests])
        floor_df, floor_sum = score_conditions(floor_groups, settings)
        ceil_df, ceil_sum = score_conditions(split_half_groups(groups, seed), settings)
        result.reference_per_condition = pd.concat(
            [floor_df.assign(reference="no_change"), ceil_df.assign(reference="split_half")], ignore_index=True
        )
        result.reference_summary = {"no_change": floor_sum, "split_half": ceil_sum}
    return result


def validation_config(cfg: ExperimentConfig) -> EvalConfig:
    """The eval settings of the trainer's periodic validation: the val split, ``train.val_cells`` cells per
    condition, the experiment's metric options, no reference points.
    """
    return EvalConfig(
        split="val",
        n_cells=cfg.train.val_cells,
        pca_components=cfg.eval.pca_components,
        deg_top_k=cfg.eval.deg_top_k,
        energy_max_cells=cfg.eval.energy_max_cells,
        reference_points=False,
    )


def make_validator(task: Task, cfg: ExperimentConfig, seed: int | None = None) -> Validator:
    """The validator a method's training calls: score a predictor on (a subset of) the val conditions.

    Parameters
    ----------
    task
        The task whose val conditions are scored.
    cfg
        The experiment (see :func:`validation_config`).
    seed
        Seeds the requests and the predictor (default ``cfg.seed``), the same at every validation so that
        successive scores differ only through the model.

    Returns
    -------
    Validator
        ``validate(predict, conditions) -> metric summary``, plus ``floor_<metric>`` and ``ceiling_<metric>``:
        the reference points (``no_change``, split half) on the same val conditions and requests, scored at the
        first validation of a condition set and reused after (they do not depend on the model). Learning curves
        draw them beside the validation metric.
    """
    ecfg = validation_config(cfg)
    seed = cfg.seed if seed is None else seed
    references: dict[tuple[Condition, ...], dict[str, float]] = {}

    def validate(predict: Predictor, conditions: list[Condition]) -> dict[str, float]:
        key = tuple(conditions)
        if key in references:
            return {**evaluate(task, predict, ecfg, seed=seed, split="val", conditions=conditions).summary,
                    **references[key]}  # fmt: skip
        with_refs = ecfg.model_copy(update={"reference_points": True})
        result = evaluate(task, predict, with_refs, seed=seed, split="val", conditions=conditions)
        points = result.reference_summary or {}
        references[key] = {
            f"{prefix}_{k}": v
            for prefix, name in (("floor", "no_change"), ("ceiling", "split_half"))
            for k, v in points.get(name, {}).items()
            if k in METRICS
        }
        return {**result.summary, **references[key]}

    return validate
