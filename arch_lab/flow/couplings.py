"""Couplings: how source rows ``x_0`` are paired with target rows ``x_1`` inside a minibatch.

A coupling reorders ``x0`` and leaves ``x1`` in place, so anything aligned with the rows of ``x1`` (the
condition batch in particular) stays aligned. Pairs are formed only between rows that share a group id.
"""

from __future__ import annotations

from typing import Protocol

import numpy as np
import torch

from arch_lab.errors import ConfigError
from arch_lab.flow._random import rand


class Coupling(Protocol):
    """Anything that pairs ``x0`` rows with ``x1`` rows within groups."""

    def pair(
        self,
        x0: torch.Tensor,
        x1: torch.Tensor,
        groups: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """``(x0, x1)`` re-ordered so that row ``i`` of one is paired with row ``i`` of the other, only within
        the same ``groups`` value (all rows one group when None).
        """
        ...


def _check(x0: torch.Tensor, x1: torch.Tensor, groups: torch.Tensor | None) -> None:
    if x0.shape != x1.shape:
        raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
    if groups is not None and (groups.ndim != 1 or groups.shape[0] != x0.shape[0]):
        raise ValueError(f"groups must have shape [{x0.shape[0]}], got {tuple(groups.shape)}")


class IndependentCoupling:
    """Keep the pairing the caller made: row ``i`` of ``x0`` goes with row ``i`` of ``x1``."""

    #: Pairs each row by itself, so one process's shard of a batch can be paired without the others' rows.
    whole_batch = False

    def __repr__(self) -> str:
        return "IndependentCoupling()"

    def pair(
        self,
        x0: torch.Tensor,
        x1: torch.Tensor,
        groups: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Return ``(x0, x1)`` unchanged.

        Parameters
        ----------
        x0, x1
            Source and target rows, ``[B, G]``.
        groups
            Group id per row, ``[B]``; only checked for shape (the caller's pairing is kept as is).
        generator
            Unused.
        """
        _check(x0, x1, groups)
        return x0, x1


class ExactOTCoupling:
    """Minibatch optimal transport with the exact network-simplex solver (``ot.emd``) on squared Euclidean cost.

    Within each group of ``n`` rows both marginals are uniform on ``n`` points, so the optimal plan is a
    permutation matrix and ``x0`` comes back as a permutation of its rows within each group. Should the solver
    return a plan that is not a permutation, each ``x1`` row draws its partner from its column of the plan.

    Parameters
    ----------
    num_iter_max
        Iteration cap of the network-simplex solver.
    """

    #: Groups may span processes' shards and pairing may draw random numbers: sharded training pairs the
    #: whole global batch on every process, then keeps its own rows.
    whole_batch = True

    def __init__(self, num_iter_max: int = 1_000_000) -> None:
        self.num_iter_max = int(num_iter_max)

    def __repr__(self) -> str:
        return f"ExactOTCoupling(num_iter_max={self.num_iter_max})"

    def pair(
        self,
        x0: torch.Tensor,
        x1: torch.Tensor,
        groups: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Reorder ``x0`` so that ``(x0[i], x1[i])`` follow the optimal plan within each group.

        Parameters
        ----------
        x0, x1
            Source and target rows, ``[B, G]``.
        groups
            Long tensor ``[B]`` of group ids; rows are paired only with rows of the same id. ``None`` treats
            the whole batch as one group.
        generator
            Source of randomness for drawing pairs from a plan that is not a permutation.

        Returns
        -------
        tuple of torch.Tensor
            The reordered ``x0`` and the untouched ``x1``.
        """
        _check(x0, x1, groups)
        n = x0.shape[0]
        if n < 2:
            return x0, x1
        if groups is None:
            members = [torch.arange(n, device=x0.device)]
        else:
            members = [torch.nonzero(groups == g).flatten() for g in torch.unique(groups)]
        source = torch.arange(n, device=x0.device)
        for idx in members:
            if idx.numel() < 2:
                continue
            a, b = x0[idx].detach().flatten(1), x1[idx].detach().flatten(1)
            cost = torch.cdist(a.double(), b.double()).square_().cpu().numpy()
            choice = self._match(cost, generator)
            source[idx] = idx[torch.as_tensor(choice, device=x0.device)]
        return x0[source], x1

    def _match(self, cost: np.ndarray, generator: torch.Generator | None) -> np.ndarray:
        """For each target column, the index of its source row under the optimal plan."""
        m = cost.shape[0]
        scale = cost.max()
        if scale > 0:
            cost = cost / scale
        import ot  # POT takes a while to import and only this coupling needs it

        weights = np.full(m, 1.0 / m)
        plan = ot.emd(weights, weights, np.ascontiguousarray(cost), numItermax=self.num_iter_max)
        rows = plan.argmax(axis=0)
        if np.unique(rows).size == m and np.allclose(plan[rows, np.arange(m)], 1.0 / m):
            return rows
        cols = plan.T / np.maximum(plan.sum(axis=0)[:, None], 1e-300)
        cdf = np.cumsum(cols, axis=1)
        u = rand((m,), generator).double().cpu().numpy()[:, None] * cdf[:, -1:]
        return np.minimum((cdf <= u).sum(axis=1), m - 1)


_COUPLINGS: dict[str, type] = {"independent": IndependentCoupling, "exact_ot": ExactOTCoupling}


def make_coupling(name: str) -> Coupling:
    """Build a coupling by name: ``"independent"`` or ``"exact_ot"``.

    Raises
    ------
    ConfigError
        For an unknown name.
    """
    if name not in _COUPLINGS:
        raise ConfigError(f"unknown coupling {name!r}; choose one of: {', '.join(_COUPLINGS)}")
    return _COUPLINGS[name]()
