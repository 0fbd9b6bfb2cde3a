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

A full-rank network can still fail to move the source: :func:`source_sensitivity` measures, for any network, how
much a small change of the source sample changes the generated cell (the trace of ``J Jᵀ``, ``J`` the Jacobian of
the generated cell with respect to its source sample, through the configured solver), again against the observed
cells' variance. A flow that carries a Gaussian source onto the observed spread has a value near 1 (exactly 1 for
the optimal map onto a Gaussian); one that moves no source noise at all has ``G / trace(Σ_observed)``, the
``source_outside_span`` of a rank-0 output. With a control-cell source the identity map (``no_change``) is the
reference instead, and values are read against it.

:func:`source_velocity_gain` looks at the start of the path, where the answer is known exactly: with a Gaussian
source and independent coupling the optimal velocity at ``t = 0`` is ``E[x₁ | condition] - x``, whose Jacobian is
``-I`` whatever the data. Its gain along the source (``-tr(J_v) / G``) is therefore 1 for the optimal network and 0
for one whose velocity ignores its input (a velocity that only depends on time and condition).
:func:`hidden_source_share` looks inside a network that exposes its last hidden vector (``hidden(x_t, t, cond)``,
the MLP): how large the part of that vector that varies with the source sample is against the part that does not.
A normalisation before the output layer divides both by the same norm, so a large constant part leaves little of
the source in what the output layer reads.
"""

from __future__ import annotations

import math
from typing import Literal

import numpy as np
import torch
from torch import nn

from arch_lab.data.task import Task
from arch_lab.flow import generate
from arch_lab.spec import CondBatch


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


@torch.no_grad()
def source_sensitivity(
    network: nn.Module,
    task: Task,
    source: Literal["gaussian", "control"],
    split: str,
    *,
    solver: str = "euler",
    steps: int = 20,
    guidance: float = 1.0,
    rtol: float = 1e-5,
    atol: float = 1e-5,
    cells: int = 32,
    eps: float = 1e-2,
    seed: int = 0,
    center: torch.Tensor | None = None,
) -> dict[str, float]:
    """How strongly the generated cells follow their source sample, relative to the observed cells' variance.

    For each condition of ``split``: ``trace(J Jᵀ) / trace(Σ_observed)``, with ``J`` the Jacobian of the generated
    cell (before clipping at zero) with respect to its source sample. ``trace(J Jᵀ) = E‖J u‖²`` for ``u`` uniform on
    the sphere of radius ``√G`` (``E[u uᵀ] = I``; exact for any ``u`` when ``J`` is a multiple of an orthogonal
    matrix), and ``J u`` is taken by central differences, ``(x₁(x₀ + εu) - x₁(x₀ - εu)) / 2ε``, on ``cells`` source
    samples with one direction each.

    Parameters
    ----------
    network
        The trained velocity network (any registered backbone).
    task
        The task whose conditions are read.
    source
        ``flow.source`` of the run: Gaussian samples, or the state's training control cells.
    split
        The split whose conditions are read.
    solver, steps, guidance, rtol, atol
        How cells are generated (``flow.solver``, ``flow.steps``, ``flow.guidance``, ``flow.rtol``, ``flow.atol``).
        Each pair ``x₀ ± εu`` is integrated in one batch, so an adaptive solver takes the same steps for both.
    cells
        Source samples per condition.
    eps
        Finite-difference step, in units of the source's per-gene scale (1 for a Gaussian source).
    seed
        Seeds the source samples and directions.
    center
        ``[G]`` centre of the Gaussian source in network gene order (``flow.source_mean: train``); None: 0.

    Returns
    -------
    dict[str, float]
        ``source_sensitivity`` (mean over the conditions with at least 2 observed cells; NaN when there is none).
    """
    genes = task.data.n_genes
    device = next(network.parameters()).device
    dtype = next(network.parameters()).dtype
    order = torch.from_numpy(task.order)
    gen = torch.Generator().manual_seed(seed)
    X = task.data.X
    ratios = []
    for condition in task.conditions(split):
        observed = np.asarray(X[task.cells(split, condition)], dtype=np.float64)
        if observed.shape[0] < 2:
            continue
        observed_trace = float(observed.var(axis=0, ddof=1).sum())
        if observed_trace <= 0:
            continue
        if source == "gaussian":
            x0 = torch.randn((cells, genes), generator=gen)
            if center is not None:
                x0 = x0 + center
        else:
            pool = task.controls(condition.state, "train")
            pick = torch.randint(len(pool), (cells,), generator=gen).numpy()
            x0 = torch.from_numpy(np.asarray(X[np.sort(pool[pick])], dtype=np.float32))[:, order]
        u = torch.randn((cells, genes), generator=gen)
        u = u * (math.sqrt(genes) / u.norm(dim=1, keepdim=True))
        tokens, covs = task.encode(condition)
        cond = CondBatch.repeat(tokens, covs, 2 * cells, width=task.spec.max_perturbations).to(device)
        pair = torch.cat([x0 + eps * u, x0 - eps * u]).to(device=device, dtype=dtype)
        x1 = generate(network, cond, pair, solver=solver, steps=steps, guidance=guidance, rtol=rtol, atol=atol)
        x1 = x1.double().cpu()
        ju = (x1[:cells] - x1[cells:]) / (2 * eps)
        ratios.append(float((ju**2).sum(1).mean()) / observed_trace)
    return {"source_sensitivity": float(np.mean(ratios)) if ratios else math.nan}


@torch.no_grad()
def source_velocity_gain(
    network: nn.Module,
    task: Task,
    source: Literal["gaussian", "control"],
    coupling: str,
    split: str,
    *,
    cells: int = 32,
    eps: float = 1e-2,
    seed: int = 0,
    center: torch.Tensor | None = None,
) -> dict[str, float]:
    """How much of the source sample the velocity at ``t = 0`` removes: ``-tr(J_v) / G`` (exactly 1 at the optimum).

    ``J_v`` is the Jacobian of the conditional velocity at ``t = 0`` with respect to the state, at Gaussian source
    samples; ``tr(J_v) = E[uᵀ J_v u]`` for ``u`` uniform on the sphere of radius ``√G`` (Hutchinson), with ``J_v u``
    by central differences. With independent coupling ``x₀`` and ``x₁`` are independent, so the optimal velocity at
    ``t = 0`` is ``E[x₁ | condition] - x`` and the gain is 1; a network that cannot (or did not learn to) move the
    source noise has a gain near 0. Defined for ``flow.source: gaussian`` with ``flow.coupling: independent`` only.

    Parameters
    ----------
    network
        The trained velocity network (any registered backbone).
    task
        The task whose conditions are read.
    source, coupling
        ``flow.source`` and ``flow.coupling`` of the run.
    split
        The split whose conditions are read.
    cells
        Source samples per condition.
    eps
        Finite-difference step.
    seed
        Seeds the source samples and directions.
    center
        ``[G]`` centre of the Gaussian source in network gene order (``flow.source_mean: train``); None: 0.

    Returns
    -------
    dict[str, float]
        ``source_velocity_gain``: the mean over conditions (NaN for another source or coupling, or no condition).
    """
    if source != "gaussian" or coupling != "independent":
        return {"source_velocity_gain": math.nan}
    genes = task.data.n_genes
    device = next(network.parameters()).device
    dtype = next(network.parameters()).dtype
    gen = torch.Generator().manual_seed(seed)
    was_training = network.training
    network.eval()
    gains = []
    try:
        for condition in task.conditions(split):
            x0 = torch.randn((cells, genes), generator=gen)
            if center is not None:
                x0 = x0 + center
            u = torch.randn((cells, genes), generator=gen)
            u = u * (math.sqrt(genes) / u.norm(dim=1, keepdim=True))
            tokens, covs = task.encode(condition)
            cond = CondBatch.repeat(tokens, covs, 2 * cells, width=task.spec.max_perturbations).to(device)
            pair = torch.cat([x0 + eps * u, x0 - eps * u]).to(device=device, dtype=dtype)
            v = network(pair, torch.zeros(2 * cells, device=device), cond).double().cpu()
            jvu = (v[:cells] - v[cells:]) / (2 * eps)
            gains.append(-float((jvu * u.double()).sum(1).mean()) / genes)
    finally:
        network.train(was_training)
    return {"source_velocity_gain": float(np.mean(gains)) if gains else math.nan}


@torch.no_grad()
def hidden_source_share(
    network: nn.Module,
    task: Task,
    source: Literal["gaussian", "control"],
    split: str,
    *,
    cells: int = 64,
    seed: int = 0,
    center: torch.Tensor | None = None,
) -> dict[str, float]:
    """The part of the network's last hidden vector that varies with the source sample, against the part that does
    not, at ``t = 0``: ``mean_i ‖h_i - h̄‖ / ‖h̄‖`` over source samples ``i`` of one condition (``h̄`` their mean),
    averaged over the conditions of ``split``.

    Parameters
    ----------
    network
        A velocity network with a ``hidden(x_t, t, cond)`` method (the MLP); others get NaN.
    task
        The task whose conditions are read.
    source
        ``flow.source`` of the run: Gaussian samples, or the state's training control cells.
    split
        The split whose conditions are read.
    cells
        Source samples per condition.
    seed
        Seeds the source samples.
    center
        ``[G]`` centre of the Gaussian source in network gene order (``flow.source_mean: train``); None: 0.

    Returns
    -------
    dict[str, float]
        ``hidden_source_share`` (NaN without ``hidden`` or without a condition).
    """
    read = getattr(network, "hidden", None) or getattr(getattr(network, "module", None), "hidden", None)
    if read is None:
        return {"hidden_source_share": math.nan}
    genes = task.data.n_genes
    device = next(network.parameters()).device
    dtype = next(network.parameters()).dtype
    order = torch.from_numpy(task.order)
    gen = torch.Generator().manual_seed(seed)
    was_training = network.training
    network.eval()
    shares = []
    try:
        for condition in task.conditions(split):
            if source == "gaussian":
                x0 = torch.randn((cells, genes), generator=gen)
                if center is not None:
                    x0 = x0 + center
            else:
                pool = task.controls(condition.state, "train")
                pick = torch.randint(len(pool), (cells,), generator=gen).numpy()
                x0 = torch.from_numpy(np.asarray(task.data.X[np.sort(pool[pick])], dtype=np.float32))[:, order]
            tokens, covs = task.encode(condition)
            cond = CondBatch.repeat(tokens, covs, cells, width=task.spec.max_perturbations).to(device)
            h = read(x0.to(device=device, dtype=dtype), torch.zeros(cells, device=device), cond).double().cpu()
            mean = h.mean(0, keepdim=True)
            shares.append(float((h - mean).norm(dim=1).mean() / mean.norm()))
    finally:
        network.train(was_training)
    return {"hidden_source_share": float(np.mean(shares)) if shares else math.nan}
