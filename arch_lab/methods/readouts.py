"""Mechanistic read-outs of a trained flow: what the velocity network can and cannot change in a cell.

A network whose output layer maps a hidden vector of width ``h`` to ``G`` genes (the MLP without its linear skip)
can only move a cell within the span of that layer's columns and bias: every velocity lies in a subspace of rank at
most ``h + 1``. Whatever the source holds outside that subspace reaches the generated cell unchanged. With a
Gaussian source and ``h < G`` that is unit-variance noise in ``G - h - 1`` directions, which no amount of training
removes; with a control-cell source it is the control cell itself (the ``no_change`` prediction in those
directions). :func:`source_outside_span` measures that left-over against the observed cells' own variance.

A network declares the subspace through an ``output_span()`` method returning a ``[G, r]`` matrix (network gene
order) whose columns span every output, or None when its outputs span all ``G`` genes. Networks without the method
make no claim and get NaN.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from arch_lab.data.task import Task


def output_span(network: nn.Module) -> np.ndarray | None | float:
    """The network's declared output subspace: a ``[G, r]`` orthonormal basis (network gene order), None when the
    outputs span every gene, or NaN when the network declares nothing.
    """
    declare = getattr(network, "output_span", None) or getattr(getattr(network, "module", None), "output_span", None)
    if declare is None:
        return math.nan
    with torch.no_grad():
        columns = declare()
    if columns is None:
        return None
    columns = columns.detach().double().cpu().numpy()
    u, s, _ = np.linalg.svd(columns, full_matrices=False)
    tol = s.max(initial=0.0) * max(columns.shape) * np.finfo(np.float64).eps
    return u[:, s > tol]


def source_outside_span(
    network: nn.Module, task: Task, source: Literal["gaussian", "control"], split: str
) -> dict[str, float]:
    """How much source variance the network cannot move, relative to the observed cells' variance.

    For each condition of ``split``: ``trace(P Σ_source) / trace(Σ_observed)``, with ``P`` the projection onto
    the orthogonal complement of the network's output subspace, ``Σ_source`` the source covariance (the identity
    for a Gaussian source; the covariance of the state's training controls for a control source) and
    ``Σ_observed`` the covariance of the condition's observed cells. 0 when the outputs span every gene; about
    ``(G - r) / trace(Σ_observed)`` for a Gaussian source and a rank-``r`` output layer.

    Parameters
    ----------
    network
        The trained velocity network (or a wrapper holding it as ``module``).
    task
        The task whose conditions are read.
    source
        ``flow.source`` of the run.
    split
        The split whose conditions are read (the evaluated split).

    Returns
    -------
    dict[str, float]
        ``source_outside_span`` (mean over conditions; NaN when the network declares no output subspace or the
        split has no condition with 2 observed cells) and ``output_rank`` (rank of the output subspace; ``G`` when
        it spans every gene, NaN when undeclared).
    """
    genes = task.data.n_genes
    basis = output_span(network)
    if isinstance(basis, float):
        return {"source_outside_span": math.nan, "output_rank": math.nan}
    if basis is None:
        return {"source_outside_span": 0.0, "output_rank": float(genes)}
    stored = basis[task.inverse_order]  # row i = stored gene i
    X = task.data.X
    ratios = []
    source_trace: dict[str, float] = {}
    for condition in task.conditions(split):
        observed = np.asarray(X[task.cells(split, condition)], dtype=np.float64)
        if observed.shape[0] < 2:
            continue
        state = condition.state
        if state not in source_trace:
            if source == "gaussian":
                source_trace[state] = float(genes - stored.shape[1])
            else:
                controls = np.asarray(X[task.controls(state, "train")], dtype=np.float64)
                centred = controls - controls.mean(0)
                total = float((centred**2).sum()) / max(controls.shape[0] - 1, 1)
                inside = float(((centred @ stored) ** 2).sum()) / max(controls.shape[0] - 1, 1)
                source_trace[state] = total - inside
        observed_trace = float(observed.var(axis=0, ddof=1).sum())
        if observed_trace > 0:
            ratios.append(source_trace[state] / observed_trace)
    value = float(np.mean(ratios)) if ratios else math.nan
    return {"source_outside_span": value, "output_rank": float(stored.shape[1])}
