"""Training batches per condition: from tensors in memory, or from data that stays on disk.

Both samplers share one interface (``sample(batch_size, n_conditions, g) -> (x1, cond, cid)``,
``control_source(cid, g) -> x0``, ``conditions``), so the trainer uses one or the other without further changes:

- :class:`ConditionSampler` draws from the whole training matrix in memory;
- :class:`ChunkedConditionSampler` draws from shuffled chunks of rows read from disk in the background, through a
  shuffle buffer. Rows are never assumed sorted by condition on disk.

Both draw rows with :func:`draw_rows` and build conditioning with :func:`condition_batch`, so a batch is drawn
the same way whichever sampler runs.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
import weakref
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from arch_lab.data.backed import BackedMatrix
from arch_lab.data.task import Task
from arch_lab.errors import DataError
from arch_lab.spec import PAD_TOKEN, CondBatch

log = logging.getLogger(__name__)


def encode_conditions(
    task: Task, conditions: list[Any], device: torch.device
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, list[str]]:
    """Token ids ``[C, width]`` (``PAD_TOKEN``-padded), covariate ids ``[C, K]``, state index ``[C]`` and the
    sorted state names of ``conditions``, on ``device``: what a sampler needs to build a :class:`CondBatch`.
    """
    width = max(task.spec.max_perturbations, 1)
    tokens = torch.full((len(conditions), width), PAD_TOKEN, dtype=torch.long)
    covs = torch.zeros((len(conditions), len(task.data.covariate_keys)), dtype=torch.long)
    states = sorted({c.state for c in conditions})
    for i, c in enumerate(conditions):
        tok, cov = task.encode(c)
        tokens[i, : len(tok)] = torch.tensor(tok, dtype=torch.long)
        covs[i] = torch.tensor(cov, dtype=torch.long)
    state_index = torch.tensor([states.index(c.state) for c in conditions], device=device)
    return tokens.to(device), covs.to(device), state_index, states


def draw_rows(
    flat_rows: torch.Tensor, starts: torch.Tensor, counts: torch.Tensor, group: torch.Tensor, g: torch.Generator
) -> torch.Tensor:
    """One uniformly drawn row of each entry's group.

    Groups are stored back to back in ``flat_rows``: group ``i`` is ``flat_rows[starts[i] : starts[i] + counts[i]]``.

    Parameters
    ----------
    flat_rows
        Row indices (or any values) of all groups, concatenated.
    starts, counts
        Offset and size of each group in ``flat_rows``.
    group
        The group of each draw ``[N]``.
    g
        Random generator (on the tensors' device).

    Returns
    -------
    torch.Tensor
        ``[N]`` values of ``flat_rows``, drawn with replacement within each group.
    """
    u = torch.rand(len(group), generator=g, device=flat_rows.device)
    n = counts[group]
    return flat_rows[starts[group] + (u * n).long().clamp_max(n - 1)]


def condition_batch(tokens: torch.Tensor, covs: torch.Tensor, cid: torch.Tensor) -> CondBatch:
    """The :class:`CondBatch` of conditions ``cid`` from per-condition token ids and covariate ids (never null)."""
    tok = tokens[cid]
    return CondBatch(tok, tok != PAD_TOKEN, covs[cid], torch.zeros(len(cid), dtype=torch.bool, device=tok.device))


def _offsets(counts: torch.Tensor) -> torch.Tensor:
    """Start of each group when groups of ``counts`` sizes are stored back to back."""
    return torch.cumsum(counts, 0) - counts


class ConditionSampler:
    """Draws training batches per condition from tensors in memory.

    Each batch holds ``conditions_per_batch`` conditions (drawn uniformly among training conditions, controls
    of every state included) with ``batch_size // conditions_per_batch`` cells each, so a control source of the
    same state can be matched and OT coupling stays within a condition.
    """

    def __init__(self, task: Task, X: torch.Tensor, device: torch.device) -> None:
        self.X = X
        conditions = task.conditions("train", include_control=True)
        self.conditions = conditions
        rows = [torch.from_numpy(task.cells("train", c)) for c in conditions]
        self.counts = torch.tensor([len(r) for r in rows], device=device)
        self.starts = _offsets(self.counts)
        self.flat_rows = torch.cat(rows).to(device)
        self.tokens, self.covs, self.state_index, states = encode_conditions(task, conditions, device)
        ctrl = [torch.from_numpy(task.controls(s, "train")) for s in states]
        self.ctrl_counts = torch.tensor([len(r) for r in ctrl], device=device)
        self.ctrl_starts = _offsets(self.ctrl_counts)
        self.ctrl_rows = torch.cat(ctrl).to(device)
        self.device = device

    def sample(
        self, batch_size: int, n_conditions: int, g: torch.Generator
    ) -> tuple[torch.Tensor, CondBatch, torch.Tensor]:
        """``(x1 [B, G], cond, condition id per row)``."""
        k = min(n_conditions, len(self.conditions))
        per = max(batch_size // k, 1)
        cids = torch.randint(len(self.conditions), (k,), generator=g, device=self.device)
        cid = cids.repeat_interleave(per)
        rows = draw_rows(self.flat_rows, self.starts, self.counts, cid, g)
        return self.X[rows], condition_batch(self.tokens, self.covs, cid), cid

    def control_source(self, cid: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """A random training control cell of each row's state."""
        rows = draw_rows(self.ctrl_rows, self.ctrl_starts, self.ctrl_counts, self.state_index[cid], g)
        return self.X[rows]


@dataclass
class ChunkStats:
    """Throughput of the chunk stream (read in the background thread, waited for in the training loop)."""

    chunks: int = 0
    rows: int = 0
    bytes_read: int = 0
    read_seconds: float = 0.0
    wait_seconds: float = 0.0
    refreshes: int = 0
    per_chunk: list[float] = field(default_factory=list)

    def summary(self) -> dict[str, float]:
        """Chunks, rows, MB read, read MB/s and seconds the training loop waited on I/O."""
        mb = self.bytes_read / 1e6
        return {
            "chunks": self.chunks,
            "rows": self.rows,
            "mb_read": mb,
            "read_mb_per_s": mb / self.read_seconds if self.read_seconds > 0 else float("nan"),
            "read_seconds_per_chunk": self.read_seconds / self.chunks if self.chunks else float("nan"),
            "wait_seconds": self.wait_seconds,
        }


def chunk_plan(
    n_rows: int, chunk_size: int, useful: np.ndarray, rng: np.random.Generator, rank: int = 0, world_size: int = 1
) -> Iterator[tuple[int, int]]:
    """Endless stream of ``(start, stop)`` logical row ranges: every useful chunk once per pass, shuffled.

    ``useful`` marks the rows worth reading (training rows); chunks without any are skipped. With several
    processes, each takes every ``world_size``-th chunk of the same shuffled pass.
    """
    starts = np.arange(0, n_rows, chunk_size)
    counts = np.add.reduceat(useful.astype(np.int64), starts) if n_rows else np.zeros(0, np.int64)
    starts = starts[counts > 0]
    if len(starts) == 0:
        raise DataError("no training rows to read")
    while True:
        for s in rng.permutation(starts)[rank::world_size]:
            yield int(s), int(min(s + chunk_size, n_rows))


def _reader_loop(
    X: BackedMatrix,
    plan: Iterable[tuple[int, int]],
    row_cid: np.ndarray,
    order: np.ndarray | None,
    out: queue.Queue,
    stop: threading.Event,
    stats: ChunkStats,
) -> None:
    """Background thread: read the planned chunks, keep training rows, reorder genes, hand them over."""
    try:
        for start, stop_row in plan:
            if stop.is_set():
                return
            t = time.perf_counter()
            before = X.reader.bytes_read
            x = X.block(start, stop_row)
            cid = row_cid[start:stop_row]
            keep = np.flatnonzero(cid >= 0)
            x = x[keep] if len(keep) < len(cid) else x
            if order is not None:
                x = x[:, order]
            x = np.ascontiguousarray(x)
            if not np.isfinite(x).all():
                raise DataError(f"rows {start}..{stop_row} hold non-finite values (NaN/inf); clean the file first")
            stats.read_seconds += time.perf_counter() - t
            stats.bytes_read += X.reader.bytes_read - before
            stats.per_chunk.append(time.perf_counter() - t)
            stats.chunks += 1
            stats.rows += len(keep)
            item = (x, cid[keep].astype(np.int64), keep + start)
            while not stop.is_set():
                try:
                    out.put(item, timeout=0.1)
                    break
                except queue.Full:
                    continue
    except BaseException as exc:  # handed to the training loop, which re-raises it
        out.put(exc)


class ChunkedConditionSampler:
    """Draws training batches per condition from shuffled chunks of a matrix on disk.

    A background thread reads random chunks of ``data.chunk_size`` contiguous rows (every chunk with training
    rows once per pass, in a new order each pass), keeps their training rows and puts them in a queue two chunks
    deep. The sampler holds ``data.shuffle_buffer`` chunks; each batch draws ``conditions_per_batch`` conditions
    (with replacement, uniformly among the training conditions present in the buffer) and ``batch_size //
    conditions_per_batch`` cells of each, like the in-memory sampler. Once as many cells have been drawn as the
    oldest chunk holds, that chunk is replaced by the next one from the queue, so one pass over the chunks takes
    about one epoch of cells.

    For ``flow.source: control`` a pool of training control cells per state (``control_pool`` each, read up front
    and refreshed from every chunk that passes) supplies the source cells, whatever the order of rows on disk.

    Parameters
    ----------
    task
        The task; ``task.data.X`` is a :class:`arch_lab.data.backed.BackedMatrix`.
    device
        Where batches go.
    chunk_size, shuffle_buffer
        Rows per read and chunks held.
    seed
        Seed of the chunk order (batches themselves use the trainer's generator).
    controls
        Keep the per-state control pool (needed for ``flow.source: control``).
    control_pool
        Control cells kept per state.
    rank, world_size
        Split the chunks between processes.
    """

    def __init__(
        self,
        task: Task,
        device: torch.device,
        *,
        chunk_size: int = 2048,
        shuffle_buffer: int = 4,
        seed: int = 0,
        controls: bool = True,
        control_pool: int = 256,
        rank: int = 0,
        world_size: int = 1,
    ) -> None:
        X = task.data.X
        if not isinstance(X, BackedMatrix):
            raise TypeError("ChunkedConditionSampler needs backed data (data.storage: backed)")
        self.device = device
        self.task = task
        conditions = task.conditions("train", include_control=True)
        self.conditions = conditions
        index = {(c.state, c.perturbation): i for i, c in enumerate(conditions)}
        obs = task.obs
        keys = zip(obs["state"].to_numpy(), obs["perturbation"].to_numpy(), strict=True)
        train = (obs["split"] == "train").to_numpy()
        self.row_cid = np.array([index.get(k, -1) for k in keys], dtype=np.int64)
        self.row_cid[~train] = -1
        self.tokens, self.covs, self.state_index, states = encode_conditions(task, conditions, device)
        ctrl_value = task.data.control_value
        self.is_control_cid = np.array([c.perturbation == ctrl_value for c in conditions])
        self.cid_state = self.state_index.cpu().numpy()

        order = None if np.array_equal(task.order, np.arange(len(task.order))) else task.order
        n_genes = X.shape[1]
        self.chunk_size = int(chunk_size)
        self.n_slots = int(shuffle_buffer)
        useful = self.row_cid >= 0
        starts = np.arange(0, X.shape[0], chunk_size)
        self.chunks_per_epoch = int((np.add.reduceat(useful.astype(np.int64), starts) > 0).sum()) if len(starts) else 0
        self.loaded = np.zeros(X.shape[0], dtype=np.int32)  # times each row entered the buffer
        self.stats = ChunkStats()
        self._queue: queue.Queue = queue.Queue(maxsize=2)
        self._stop = threading.Event()
        rng = np.random.default_rng([seed, 0x5EED])
        plan = chunk_plan(X.shape[0], chunk_size, useful, rng, rank, world_size)
        self._thread = threading.Thread(
            target=_reader_loop,
            args=(X, plan, self.row_cid, order, self._queue, self._stop, self.stats),
            name="arch-lab-chunk-reader",
            daemon=True,
        )
        self._thread.start()
        weakref.finalize(self, self._stop.set)

        # the ring buffer: n_slots chunks of up to chunk_size rows
        self.bx = torch.zeros((self.n_slots * self.chunk_size, n_genes), dtype=torch.float32, device=device)
        self.bcid = torch.full((self.n_slots * self.chunk_size,), -1, dtype=torch.long, device=device)
        self.brow = torch.full((self.n_slots * self.chunk_size,), -1, dtype=torch.long, device=device)
        self.slot_rows = [0] * self.n_slots
        self.oldest = 0
        self.drawn = 0
        self.last_rows = torch.zeros(0, dtype=torch.long)

        self.pool: torch.Tensor | None = None
        if controls:
            self._init_control_pool(task, X, states, control_pool, order, np.random.default_rng([seed, 0xC7]))
        for s in range(self.n_slots):
            self._fill(s)
        self._index()

    # ------------------------------------------------------------------------------------------ buffer
    def _init_control_pool(
        self,
        task: Task,
        X: BackedMatrix,
        states: list[str],
        size: int,
        order: np.ndarray | None,
        rng: np.random.Generator,
    ) -> None:
        pool = torch.zeros((len(states), size, task.data.n_genes), dtype=torch.float32, device=self.device)
        counts = torch.zeros(len(states), dtype=torch.long, device=self.device)
        picks = []
        for s in states:
            rows = task.controls(s, "train")
            picks.append(np.sort(rng.choice(rows, size=min(size, len(rows)), replace=False)))
        flat = np.concatenate(picks) if picks else np.zeros(0, np.int64)
        x = X.take(flat) if len(flat) else np.zeros((0, task.data.n_genes), np.float32)
        x = x[:, order] if order is not None else x
        at = 0
        for i, rows in enumerate(picks):
            pool[i, : len(rows)] = torch.from_numpy(np.ascontiguousarray(x[at : at + len(rows)])).to(self.device)
            counts[i] = len(rows)
            at += len(rows)
        self.pool, self.pool_counts, self.pool_size = pool, counts, size
        self._pool_rng = rng

    def _next_chunk(self) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        t = time.perf_counter()
        item = self._queue.get()
        self.stats.wait_seconds += time.perf_counter() - t
        if isinstance(item, BaseException):
            raise item
        return item

    def _fill(self, slot: int) -> None:
        x, cid, rows = self._next_chunk()
        n = len(cid)
        at = slot * self.chunk_size
        self.bx[at : at + n] = torch.from_numpy(x).to(self.device)
        self.bcid[at : at + self.chunk_size] = -1
        self.bcid[at : at + n] = torch.from_numpy(cid).to(self.device)
        self.brow[at : at + n] = torch.from_numpy(rows).to(self.device)
        self.slot_rows[slot] = n
        self.loaded[rows] += 1
        if self.pool is not None:
            self._refresh_pool(x, cid)

    def _refresh_pool(self, x: np.ndarray, cid: np.ndarray) -> None:
        """New control cells of a chunk overwrite random pool entries of their state."""
        ctrl = np.flatnonzero(self.is_control_cid[cid])
        if self.pool is None or not len(ctrl):
            return
        sid = self.cid_state[cid[ctrl]]
        for s in np.unique(sid):
            new = ctrl[sid == s]
            filled = int(self.pool_counts[s])
            if filled == 0:
                continue
            k = min(len(new), filled)
            slots = self._pool_rng.choice(filled, size=k, replace=False)
            take = self._pool_rng.choice(new, size=k, replace=False)
            self.pool[s, torch.from_numpy(slots)] = torch.from_numpy(x[take]).to(self.device)

    def _index(self) -> None:
        """Group the buffered rows by condition (vectorised, like the in-memory sampler's tables)."""
        valid = torch.nonzero(self.bcid >= 0).squeeze(1)
        cid = self.bcid[valid]
        perm = torch.argsort(cid, stable=True)
        self.flat_rows = valid[perm]
        self.counts = torch.bincount(cid, minlength=len(self.conditions))
        self.starts = _offsets(self.counts)
        self.present = torch.nonzero(self.counts > 0).squeeze(1)

    def _advance(self, drawn: int) -> None:
        self.drawn += drawn
        if self.drawn >= max(self.slot_rows[self.oldest], 1):
            self.drawn = 0
            self._fill(self.oldest)
            self.oldest = (self.oldest + 1) % self.n_slots
            self.stats.refreshes += 1
            self._index()

    # ------------------------------------------------------------------------------- sampler interface
    def sample(
        self, batch_size: int, n_conditions: int, g: torch.Generator
    ) -> tuple[torch.Tensor, CondBatch, torch.Tensor]:
        """``(x1 [B, G], cond, condition id per row)``, the conditions drawn among those in the buffer."""
        k = min(n_conditions, len(self.conditions))
        per = max(batch_size // k, 1)
        pick = torch.randint(len(self.present), (k,), generator=g, device=self.device)
        cid = self.present[pick].repeat_interleave(per)
        rows = draw_rows(self.flat_rows, self.starts, self.counts, cid, g)
        cond = condition_batch(self.tokens, self.covs, cid)
        x = self.bx[rows]
        self.last_rows = self.brow[rows]
        self._advance(len(cid))
        return x, cond, cid

    def control_source(self, cid: torch.Tensor, g: torch.Generator) -> torch.Tensor:
        """A random training control cell of each row's state (from the per-state pool)."""
        if self.pool is None:
            raise RuntimeError("the control pool is off; build the sampler with controls=True")
        sid = self.state_index[cid]
        u = torch.rand(len(cid), generator=g, device=self.device)
        n = self.pool_counts[sid].clamp_min(1)
        return self.pool[sid, (u * n).long().clamp_max(n - 1)]

    def close(self) -> None:
        """Stop the background reader."""
        self._stop.set()
        log.info("chunk stream: %s", self.stats.summary())


def source_center(task: Task, source: str, source_mean: str) -> torch.Tensor | None:
    """``[G]`` float32 centre of a Gaussian source in the network's gene order (``flow.source_mean: train``: each
    gene's mean over the training cells), or None for N(0, I) and for a control-cell source.
    """
    if source != "gaussian" or source_mean == "zero":
        return None
    return torch.from_numpy(task.gene_means("train")[task.order].copy())
