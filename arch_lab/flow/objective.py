"""The conditional flow-matching regression objective."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from arch_lab.flow._random import Shard, rand
from arch_lab.flow.couplings import Coupling
from arch_lab.flow.paths import ProbabilityPath
from arch_lab.flow.time import TimeSampler
from arch_lab.spec import CondBatch


@dataclass
class FlowBatch:
    """Network inputs and regression targets of one minibatch: path points, times, conditions, velocities."""

    x_t: torch.Tensor
    t: torch.Tensor
    cond: CondBatch
    dx_t: torch.Tensor
    #: Target cells and their condition groups, kept only when a distribution-level loss needs them.
    x1: torch.Tensor | None = None
    groups: torch.Tensor | None = None

    @property
    def size(self) -> int:
        """Number of rows."""
        return int(self.x_t.shape[0])

    def blocks(self, size: int | None) -> list[FlowBatch]:
        """The batch in consecutive blocks of at most ``size`` rows (the whole batch when ``size`` is None or at
        least the batch size): the trainer's micro-batches. Weight each block's loss by ``block.size / self.size``
        to get the whole batch's loss and gradients.
        """
        n = self.size
        if size is None or size >= n:
            return [self]
        return [self.rows(slice(start, start + size)) for start in range(0, n, size)]

    def rows(self, idx: slice) -> FlowBatch:
        """The rows ``idx`` (e.g. one micro-batch)."""
        return FlowBatch(
            self.x_t[idx],
            self.t[idx],
            self.cond.index(idx),
            self.dx_t[idx],
            None if self.x1 is None else self.x1[idx],
            None if self.groups is None else self.groups[idx],
        )


@dataclass
class LossOutput:
    """A differentiable scalar loss and detached floats for logging."""

    loss: torch.Tensor
    logs: dict[str, float] = field(default_factory=dict)


def drop_condition(
    cond: CondBatch, p: float, generator: torch.Generator | None = None, shard: Shard | None = None
) -> CondBatch:
    """Copy of ``cond`` with ``null`` set on a random fraction ``p`` of rows (rows already null stay null).

    Parameters
    ----------
    cond
        Condition batch.
    p
        Probability in [0, 1] that a row is dropped; 0 drops none, 1 drops all.
    generator
        Source of randomness.
    shard
        When ``cond`` holds one process's shard of a larger batch: the mask is drawn for the whole batch and
        the shard's rows are kept.
    """
    if not 0.0 <= p <= 1.0:
        raise ValueError(f"condition dropout must be in [0, 1], got {p}")
    if p == 0.0:
        return cond
    if shard is None:
        drop = rand((cond.batch_size,), generator, cond.null.device) < p
    else:
        drop = shard.take(rand((shard.total,), generator, cond.null.device)) < p
    return cond.with_null(cond.null | drop)


def mmd_rbf(
    x: torch.Tensor, y: torch.Tensor, scales: tuple[float, ...] = (0.25, 0.5, 1.0, 2.0, 4.0), paired: bool = False
) -> torch.Tensor:
    """Unbiased squared MMD between the rows of ``x`` and ``y`` with a mixture of Gaussian kernels.

    Each kernel is ``exp(-|a - b|^2 / (s * h))`` with ``h`` the mean squared distance between the two sets
    (detached: the bandwidth follows the data and receives no gradient) and ``s`` in ``scales``.

    Parameters
    ----------
    x, y
        ``[n, G]`` and ``[m, G]`` rows, ``n, m >= 2``.
    scales
        Multipliers of the bandwidth.
    paired
        Row ``i`` of ``x`` was made from row ``i`` of ``y`` (``n == m``), as a generated cell from its coupled
        target: the cross term and the within-``y`` term then leave out every pair ``(i, j)`` whose targets are
        the same cell (``y_i == y_j``: the diagonal, and repeats of a cell drawn more than once). Kept in, those
        pairs reward a network for reproducing each row's own target, which drives the estimate negative and,
        on conditions with few cells, trains the network to memorise them.

    Returns
    -------
    torch.Tensor
        A scalar; about 0 for two samples of one distribution (it can be slightly negative).
    """
    n, m = x.shape[0], y.shape[0]
    if n < 2 or m < 2:
        raise ValueError(f"MMD needs at least 2 rows in each set, got {n} and {m}")
    d_xx = torch.cdist(x, x).square()
    d_yy = torch.cdist(y, y).square()
    d_xy = torch.cdist(x, y).square()
    h = d_xy.detach().mean().clamp_min(1e-12)
    k_xx = torch.stack([torch.exp(-d_xx / (s * h)) for s in scales]).sum(0)
    k_yy = torch.stack([torch.exp(-d_yy / (s * h)) for s in scales]).sum(0)
    k_xy = torch.stack([torch.exp(-d_xy / (s * h)) for s in scales]).sum(0)
    within_x = (k_xx.sum() - k_xx.diagonal().sum()) / (n * (n - 1))
    within_y = (k_yy.sum() - k_yy.diagonal().sum()) / (m * (m - 1))
    if paired:
        if n != m:
            raise ValueError(f"paired MMD needs as many rows in x as in y, got {n} and {m}")
        distinct = (d_yy > 0).to(k_xy.dtype)  # pairs of different target cells
        count = distinct.sum()
        if float(count) == 0:
            return x.new_zeros(())  # one target cell repeated: nothing to compare against
        cross = (k_xy * distinct).sum() / count
        within_y = (k_yy * distinct).sum() / count
    else:
        cross = k_xy.mean()
    return (within_x + within_y - 2 * cross) / len(scales)


def grouped_mmd(x: torch.Tensor, y: torch.Tensor, groups: torch.Tensor, paired: bool = False) -> torch.Tensor:
    """Mean over groups of :func:`mmd_rbf` between the rows of ``x`` and ``y`` of each group (groups with fewer
    than 2 rows are skipped; 0 when none is left).
    """
    values = []
    for g in torch.unique(groups):
        rows = groups == g
        if int(rows.sum()) >= 2:
            values.append(mmd_rbf(x[rows], y[rows], paired=paired))
    return torch.stack(values).mean() if values else x.new_zeros(())


class FlowMatchingObjective:
    """Regress the network's velocity onto the path's target velocity.

    One call of :meth:`loss` pairs sources with targets through the coupling (within groups), draws times,
    samples the path, drops conditions at random, and returns the mean squared error between
    ``network(x_t, t, cond)`` and ``dx_t``, averaged over genes and rows.

    Parameters
    ----------
    path
        Probability path, e.g. :class:`~arch_lab.flow.paths.StraightPath`.
    time_sampler
        Sampler of training times in (0, 1).
    coupling
        Pairing of source and target rows; it reorders ``x0`` only, so ``x1`` and ``cond`` stay aligned.
    cond_dropout
        Fraction of rows whose condition is replaced by the null condition (for classifier-free guidance).
    mmd_weight
        Weight of a distribution-level auxiliary loss (0: none): the squared MMD (:func:`grouped_mmd`), condition
        by condition, between the one-step endpoint estimates ``x_t + (1 - t) v`` of the rows with
        ``t >= mmd_min_t`` and their target cells. The regression alone fits each condition's velocity in mean;
        this term asks the generated cells of a condition to match the observed cells as a distribution.
    mmd_min_t
        Rows with earlier times are left out of the MMD: near ``t = 0`` the endpoint estimate is close to the
        condition's mean, not a cell.
    mmd_pairs
        ``all``: the cross term compares every endpoint with every target of its condition, its own coupled
        target included. That pair rewards each endpoint for landing on its own OT partner (a pull that
        sharpens the field against averaging over targets; it also makes the term negative and, on conditions
        with few cells, lets the network memorise them). ``distinct``: pairs whose targets are the same cell are
        left out (:func:`mmd_rbf` with ``paired=True``), a plain distribution distance.
    """

    def __init__(
        self,
        path: ProbabilityPath,
        time_sampler: TimeSampler,
        coupling: Coupling,
        cond_dropout: float = 0.0,
        mmd_weight: float = 0.0,
        mmd_min_t: float = 0.5,
        mmd_pairs: str = "all",
    ) -> None:
        if not 0.0 <= cond_dropout <= 1.0:
            raise ValueError(f"cond_dropout must be in [0, 1], got {cond_dropout}")
        if mmd_weight < 0 or not 0.0 <= mmd_min_t < 1.0:
            raise ValueError(f"mmd_weight must be >= 0 and mmd_min_t in [0, 1), got {mmd_weight}, {mmd_min_t}")
        self.path = path
        self.time_sampler = time_sampler
        self.coupling = coupling
        self.cond_dropout = float(cond_dropout)
        self.mmd_weight = float(mmd_weight)
        self.mmd_min_t = float(mmd_min_t)
        if mmd_pairs not in ("all", "distinct"):
            raise ValueError(f"mmd_pairs must be 'all' or 'distinct', got {mmd_pairs!r}")
        self.mmd_pairs = mmd_pairs

    def __repr__(self) -> str:
        return (
            f"FlowMatchingObjective(path={self.path!r}, time_sampler={self.time_sampler!r}, "
            f"coupling={self.coupling!r}, cond_dropout={self.cond_dropout}, mmd_weight={self.mmd_weight})"
        )

    def loss(
        self,
        network: nn.Module,
        x1: torch.Tensor,
        cond: CondBatch,
        x0: torch.Tensor,
        groups: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        shard: Shard | None = None,
        logs: bool = True,
    ) -> LossOutput:
        """Flow-matching loss on one minibatch.

        Parameters
        ----------
        network
            Velocity network ``network(x_t [B, G], t [B], cond) -> [B, G]``.
        x1
            Target cells, ``[B, G]``.
        cond
            Condition of each target row.
        x0
            Source rows, ``[B, G]`` (Gaussian noise or control cells, chosen by the caller).
        groups
            Long tensor ``[B]``; the coupling pairs rows only within the same group. ``None``: one group.
        generator
            Source of randomness for times, path noise, coupling draws and condition dropout.
        shard
            Train on rows ``shard.start:shard.stop`` of a global batch of ``shard.total`` rows (one process of a
            multi-process job). ``x1``, ``cond``, ``x0`` and ``groups`` hold either the whole global batch
            (needed when the coupling has ``whole_batch = True``) or only the shard's rows. Times, path noise
            and the dropout mask are drawn for the whole batch and sliced, so every process's generator stays in
            the same state and the shards together see a single process's draws. The loss is the mean over
            the shard's rows.
        logs
            Compute the detached logging floats (each one waits for the device); the trainer skips them.

        Returns
        -------
        LossOutput
            ``loss`` and the logs ``loss``, ``null_fraction``, ``pair_sq_dist`` (mean squared distance of the
            paired rows) and ``target_sq_norm`` (mean squared target velocity, per gene); no logs when
            ``logs`` is False.
        """
        batch = self.prepare(x1, cond, x0, groups, generator, shard)
        loss = self.regress(network, batch)
        if not logs:
            return LossOutput(loss=loss)
        with torch.no_grad():
            target_sq = batch.dx_t.square().mean()
            values = {
                "loss": float(loss.detach()),
                "null_fraction": float(batch.cond.null.float().mean()),
                "pair_sq_dist": float(target_sq * batch.dx_t[0].numel()),
                "target_sq_norm": float(target_sq),
            }
        return LossOutput(loss=loss, logs=values)

    def prepare(
        self,
        x1: torch.Tensor,
        cond: CondBatch,
        x0: torch.Tensor,
        groups: torch.Tensor | None = None,
        generator: torch.Generator | None = None,
        shard: Shard | None = None,
    ) -> FlowBatch:
        """Every random draw of :meth:`loss` (coupling, times, path noise, condition dropout), no network call.

        Splitting the result into row blocks and regressing each (:meth:`regress`, weighted by its share of
        rows) gives the same loss and gradients as one :meth:`loss` call on the whole batch: the trainer's
        micro-batches. Arguments as in :meth:`loss`.
        """
        if x1.shape != x0.shape:
            raise ValueError(f"x0 and x1 must have the same shape, got {tuple(x0.shape)} and {tuple(x1.shape)}")
        if cond.batch_size != x1.shape[0]:
            raise ValueError(f"cond has {cond.batch_size} rows but x1 has {x1.shape[0]}")
        x0, x1 = self.coupling.pair(x0, x1, groups, generator)
        if shard is None:
            t = self.time_sampler.sample(x1.shape[0], generator, x1.device).to(x1.dtype)
            sample = self.path.sample(x0, x1, t, generator)
        else:
            if cond.batch_size != shard.size:
                cond = cond.index(shard.rows)
            x0, x1 = shard.take(x0), shard.take(x1)
            t = shard.take(self.time_sampler.sample(shard.total, generator, x1.device)).to(x1.dtype)
            sample = self.path.sample(x0, x1, t, generator, shard=shard)
        cond = drop_condition(cond, self.cond_dropout, generator, shard)
        if self.mmd_weight == 0:
            return FlowBatch(sample.x_t, sample.t, cond, sample.dx_t)
        if groups is None:
            groups = torch.zeros(x1.shape[0], dtype=torch.long, device=x1.device)
        elif shard is not None and groups.shape[0] != shard.size:
            groups = shard.take(groups)
        return FlowBatch(sample.x_t, sample.t, cond, sample.dx_t, x1, groups)

    def regress(self, network: nn.Module, batch: FlowBatch) -> torch.Tensor:
        """Mean squared error between ``network(x_t, t, cond)`` and the target velocity, over genes and rows,
        plus ``mmd_weight`` times the grouped MMD of the endpoint estimates when that is on.
        """
        pred = network(batch.x_t, batch.t, batch.cond)
        loss = nn.functional.mse_loss(pred, batch.dx_t.to(pred.dtype))  # one fused kernel forward and backward
        if self.mmd_weight == 0 or batch.x1 is None or batch.groups is None:
            return loss
        late = batch.t >= self.mmd_min_t
        if int(late.sum()) < 2:
            return loss
        t = batch.t[late].to(pred.dtype).unsqueeze(1)
        endpoint = batch.x_t[late].to(pred.dtype) + (1 - t) * pred[late]
        paired = self.mmd_pairs == "distinct"
        mmd = grouped_mmd(endpoint.float(), batch.x1[late].float(), batch.groups[late], paired=paired)
        return loss + self.mmd_weight * mmd.to(loss.dtype)
