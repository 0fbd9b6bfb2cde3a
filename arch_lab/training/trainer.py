"""The shared flow-matching trainer. It knows no network by name: any registered velocity network plugs in.

AdamW with linear warm-up and cosine decay, gradient clipping, EMA weights for evaluation, bf16 autocast where
the hardware has it, batches drawn per condition from tensors held in memory (vectorised, no per-cell loop),
periodic validation with the harness metrics on a fixed subset of val conditions, the best checkpoint by a chosen
val metric, early stopping, NaN detection, and exact resumption (model, optimiser, scheduler, EMA, RNG).

Under ``torchrun`` (an initialised process group, see :mod:`arch_lab.training.distributed`) the network is wrapped
in ``DistributedDataParallel``: every rank draws the same global batch from the same seeded generator and trains
on its own contiguous rows, so the averaged update equals the single-process one up to float reduction order.
Rank 0 alone validates and writes; its decisions are broadcast so the ranks stay in lockstep.
"""

from __future__ import annotations

import contextlib
import logging
import math
import sys
import time
import weakref
from collections.abc import Callable
from contextlib import nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from tqdm.auto import tqdm

from arch_lab.config import ExperimentConfig, config_hash
from arch_lab.data.task import Condition, Task
from arch_lab.errors import ArchLabError, TrainingDiverged
from arch_lab.flow import FlowMatchingObjective, StraightPath, make_coupling, make_time_sampler
from arch_lab.flow._random import Shard
from arch_lab.metrics import METRICS
from arch_lab.rundir import RunDir
from arch_lab.stopping import StopRequest, sigterm_deferred
from arch_lab.training import distributed
from arch_lab.training.ema import EMA
from arch_lab.training.loggers import Logger, open_loggers
from arch_lab.training.micro_batch import fastest_block
from arch_lab.training.precision import resolve_precision
from arch_lab.training.sampling import ChunkedConditionSampler, ConditionSampler, source_center

log = logging.getLogger(__name__)

#: Steps after which the trainer logs its expected wall time (measured seconds per step x steps left).
ETA_AFTER_STEPS = 20
#: Parameters with at least this many elements have their gradient norm taken in a hook during backward.
HOOKED_NUMEL = 1 << 16
#: Seconds between progress records in the run's status (read by sweep workers and ``arch-lab sweep status``).
PROGRESS_EVERY_S = 10.0


def lr_lambda(warmup: int, total: int, min_ratio: float) -> Callable[[int], float]:
    """Linear warm-up to 1, then cosine decay to ``min_ratio`` at ``total`` steps."""

    def f(step: int) -> float:
        if warmup > 0 and step < warmup:
            return (step + 1) / warmup
        progress = min(max(step - warmup, 0) / max(total - warmup, 1), 1.0)
        return min_ratio + (1 - min_ratio) * 0.5 * (1 + math.cos(math.pi * progress))

    return f


@dataclass
class TrainState:
    """What the trainer carries between steps and checkpoints.

    ``pending_losses`` are the training losses since the last validation, whose mean the next validation records
    (kept in the checkpoint, so a resume records the same mean whatever the checkpoint interval).
    """

    step: int = 0
    history: list[dict[str, Any]] = field(default_factory=list)
    best_value: float | None = None
    best_step: int | None = None
    evals_since_best: int = 0
    stopped_early: bool = False
    train_seconds: float = 0.0
    #: True when training stopped at ``train.max_seconds`` of wall time rather than at ``train.max_steps``.
    time_limited: bool = False
    pending_losses: list[float] = field(default_factory=list)


def _grad_sq_recorder(trainer_ref: weakref.ReferenceType) -> Callable[[torch.Tensor], None]:
    """A post-accumulate-grad hook appending ``|grad|^2`` to the trainer's list while it records."""

    def record(p: torch.Tensor) -> None:
        trainer = trainer_ref()
        if trainer is not None and trainer._recording and p.grad is not None:  # set once accumulated
            g = p.grad.reshape(-1)
            trainer._grad_sq.append(torch.dot(g, g))

    return record


class FlowTrainer:
    """Train one velocity network with the shared flow-matching objective.

    Parameters
    ----------
    cfg
        The experiment (``flow``, ``optim``, ``train`` sections are read).
    task
        The task; training uses its ``train`` cells, validation its ``val`` conditions.
    network
        Any velocity network following the contract ``forward(x_t, t, cond) -> v``.
    validate
        ``validate(model, conditions) -> metrics summary``; called every ``train.eval_every`` steps with the
        EMA model on a fixed subset of val conditions.
    run_dir
        Where checkpoints go (None: no checkpoints).
    callbacks
        Called as ``callback(step, val_metrics)`` after each validation (e.g. to report to a sweep pruner);
        may raise to stop training. With several processes they run on rank 0 only.
    device
        Where to train (default: ``cuda:LOCAL_RANK`` with several processes, else CUDA when available, else CPU).
    """

    def __init__(
        self,
        cfg: ExperimentConfig,
        task: Task,
        network: nn.Module,
        validate: Callable[[nn.Module, list[Condition]], dict[str, float]] | None = None,
        run_dir: Path | RunDir | None = None,
        callbacks: list[Callable[[int, dict], None]] | None = None,
        device: torch.device | str | None = None,
    ) -> None:
        self.cfg = cfg
        self.task = task
        self.dist = distributed.current()
        if device is None:
            device = self.dist.device() if self.dist.distributed else ("cuda" if torch.cuda.is_available() else "cpu")
        self.device = torch.device(device)
        if cfg.train.threads:
            torch.set_num_threads(cfg.train.threads)
        torch.manual_seed(cfg.seed)
        self.network = network.to(self.device)
        model: nn.Module = self.network
        if self.dist.distributed:  # gradients averaged over ranks in backward; checkpoints keep the bare network
            ids = [self.device.index] if self.device.type == "cuda" else None
            model = DistributedDataParallel(self.network, device_ids=ids, output_device=ids[0] if ids else None)
        self._ddp = model if isinstance(model, DistributedDataParallel) else None
        # torch.compile's annotations return a plain callable; for a module it is a module (OptimizedModule)
        self.model: nn.Module = torch.compile(model) if cfg.train.compile else model  # type: ignore[assignment]
        self.ema = EMA(self.network, cfg.optim.ema_decay, cfg.optim.ema_every)
        self.validate = validate
        self.run_dir = RunDir(run_dir) if run_dir is not None else None
        self.callbacks = list(callbacks or [])
        o = cfg.optim
        self.parameters = [p for p in self.network.parameters() if p.requires_grad]
        # fused kernels on CUDA and CPU (on CPU ~3x faster than foreach/per-tensor updates; same arithmetic up to
        # float rounding order); other devices get torch's default
        self._fused = self.device.type in ("cuda", "cpu")
        self.optimizer = torch.optim.AdamW(
            self.parameters, lr=o.lr, weight_decay=o.weight_decay, fused=True if self._fused else None
        )
        self.scheduler = torch.optim.lr_scheduler.LambdaLR(
            self.optimizer, lr_lambda(o.warmup_steps, cfg.train.max_steps, o.min_lr_ratio)
        )
        f = cfg.flow
        self.objective = FlowMatchingObjective(
            StraightPath(f.sigma),
            make_time_sampler(f.time_sampler),
            make_coupling(f.coupling),
            f.cond_dropout,
            mmd_weight=f.mmd_weight,
            mmd_min_t=f.mmd_min_t,
            mmd_pairs=f.mmd_pairs,
        )
        self.autocast_dtype = resolve_precision(cfg.train.precision, self.device)
        if getattr(task.data.X, "backed", False):  # data on disk: shuffled chunks (arch_lab.training.sampling)
            d = cfg.data
            self.X: torch.Tensor | None = None
            self.sampler: ConditionSampler | ChunkedConditionSampler = ChunkedConditionSampler(
                task, self.device, chunk_size=d.chunk_size, shuffle_buffer=d.shuffle_buffer, seed=cfg.seed,
                controls=cfg.flow.source == "control",
            )  # fmt: skip
        else:
            X = task.data.X[:, task.order]
            self.X = torch.from_numpy(np.ascontiguousarray(X)).to(self.device)
            self.sampler = ConditionSampler(task, self.X, self.device)
        center = source_center(task, cfg.flow.source, cfg.flow.source_mean)
        self.source_center = None if center is None else center.to(self.device)
        self.generator = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.state = TrainState()
        val = task.conditions("val")
        pick = np.random.default_rng(cfg.seed).permutation(len(val))[: cfg.train.val_conditions]
        self.val_conditions = [val[i] for i in sorted(pick)]
        info = METRICS.get(cfg.train.select_metric)
        self.maximize = info is not None and info.direction == "maximize"
        self._shard_cache: Shard | None = None
        # squared norms of the large gradients recorded as each is accumulated, while it is still in cache (a
        # separate norm pass afterwards reads every gradient again); small ones are normed together at clipping
        # time, sparing a Python hook call each. Under DDP hooks would see unreduced gradients, and with
        # micro-batches partial sums: there every norm is taken after backward.
        self._grad_sq: list[torch.Tensor] = []
        self._recording = False  # True during a backward whose hooked norms the step will use
        self._hook_handles: list[Any] = []
        if o.grad_clip is not None and not self.dist.distributed:
            # the hook holds the trainer weakly: a network that outlives its trainer does not keep it (and its
            # copy of the data) alive, and backward passes outside train_step record nothing
            record = _grad_sq_recorder(weakref.ref(self))
            self._hook_handles = [
                p.register_post_accumulate_grad_hook(record) for p in self.parameters if p.numel() >= HOOKED_NUMEL
            ]
        self._unhooked = [p for p in self.parameters if not self._hook_handles or p.numel() < HOOKED_NUMEL]
        self.best_weights: dict[str, torch.Tensor] | None = None  # the best validated weights, set by fit
        #: Rows per forward/backward block (``optim.micro_batch_size``, ``auto`` resolved by timing here).
        self.micro_batch_size: int | None = self._resolve_micro_batch()

    # ----------------------------------------------------------------------------------- checkpoints
    def _payload(self) -> dict[str, Any]:
        return {
            "network": self.network.state_dict(),
            "ema": self.ema.state_dict(),
            "optimizer": self.optimizer.state_dict(),
            "scheduler": self.scheduler.state_dict(),
            "generator": self.generator.get_state(),
            "torch_rng": torch.get_rng_state(),
            "cuda_rng": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else None,
            "state": self.state.__dict__,
            "config_hash": config_hash(self.cfg),
        }

    def save_checkpoint(self) -> None:
        """Write the run's checkpoint atomically (rank 0 only; every rank holds the same state)."""
        if self.run_dir is not None and self.dist.is_main:
            self.run_dir.save_checkpoint(self._payload())

    def load_checkpoint(self, path: Path) -> None:
        """Restore everything from a checkpoint written by :meth:`save_checkpoint`.

        Raises
        ------
        ArchLabError
            The checkpoint was written for another config (its stored config hash differs).
        """
        ck = torch.load(path, map_location=self.device, weights_only=False)
        stored, current = ck.get("config_hash"), config_hash(self.cfg)
        if stored is not None and stored != current:
            raise ArchLabError(
                f"{path}: written for another config (hash {stored}, the run's config.yaml gives {current}); it "
                "belongs to another run: restore this run's config.yaml, or start a new run"
            )
        self.network.load_state_dict(ck["network"])
        self.ema.load_state_dict(ck["ema"])
        self.optimizer.load_state_dict(ck["optimizer"])
        self.scheduler.load_state_dict(ck["scheduler"])
        self.generator.set_state(ck["generator"])
        torch.set_rng_state(ck["torch_rng"])
        if ck.get("cuda_rng") is not None and torch.cuda.is_available():
            torch.cuda.set_rng_state_all(ck["cuda_rng"])
        self.state = TrainState(**ck["state"])

    # -------------------------------------------------------------------------------------- training
    def _shard(self, n_rows: int) -> Shard | None:
        """The rows of a global batch, for this rank, of ``n_rows`` (None in a single process)."""
        if not self.dist.distributed:
            return None
        if self._shard_cache is None or self._shard_cache.total != n_rows:
            rows = distributed.shard_rows(n_rows, self.dist)
            self._shard_cache = Shard(rows.start, rows.stop, n_rows)
        return self._shard_cache

    def _autocast(self) -> Any:
        """bf16 autocast when ``train.precision`` asks for it (entering a disabled autocast is not free)."""
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def close(self) -> None:
        """Remove the gradient-norm hooks from the network (called at the end of :meth:`fit`)."""
        for handle in self._hook_handles:
            handle.remove()
        self._hook_handles = []
        self._unhooked = self.parameters

    def _clip(self, max_norm: float) -> float:
        """Clip gradients to ``max_norm`` like ``clip_grad_norm_`` and return the total norm before clipping.

        The same norm and coefficient as torch's. The norms of large gradients are taken in hooks as backward
        produces them (see ``HOOKED_NUMEL``). With the fused AdamW (CPU and CUDA) the coefficient is handed to
        the optimizer as ``grad_scale``, the divisor its kernel applies to the gradients (the hook
        ``torch.amp.GradScaler`` uses, the CPU kernel writing the rescaled gradients back): no host sync on
        accelerators, and on the CPU nothing happens when the norm is already within ``max_norm``. Other
        optimizers get the gradients rescaled in place.
        """
        hooked = self._grad_sq  # filled by the hooks of this step's backward, or empty
        params = self._unhooked if hooked else self.parameters
        rest = [p.grad for p in params if p.grad is not None]
        squares = hooked + ([torch.stack(torch._foreach_norm(rest)).square().sum()] if rest else [])
        self._grad_sq = []
        if not squares:
            return 0.0
        total = torch.stack(squares).sum().sqrt()
        coef = torch.clamp(max_norm / (total + 1e-6), max=1.0)
        if self.device.type == "cpu" and coef.item() == 1.0:  # nothing to rescale (free to ask on the CPU)
            if self._fused:
                self.optimizer.grad_scale = None  # type: ignore[attr-defined]  # read by step(), undeclared in torch
        elif self._fused:
            self.optimizer.grad_scale = coef.reciprocal().float()  # type: ignore[attr-defined]  # as above
        else:
            torch._foreach_mul_([p.grad for p in self.parameters if p.grad is not None], coef)
        return float(total)

    def _noise(self, x1: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
        """Gaussian source rows shaped like ``x1``: N(0, I), or N(m, I) with ``flow.source_mean: train``."""
        x0 = torch.randn(x1.shape, generator=generator, device=self.device)
        return x0 if self.source_center is None else x0 + self.source_center

    def _resolve_micro_batch(self) -> int | None:
        """``optim.micro_batch_size``, with ``auto`` timed on one batch drawn with a separate generator (the
        training draws, the weights and the optimizer are left as they were).
        """
        setting = self.cfg.optim.micro_batch_size
        if setting != "auto":
            return setting
        o = self.cfg.optim
        probe = torch.Generator(device=self.device).manual_seed(self.cfg.seed + 7919)
        x1, cond, cid = self.sampler.sample(o.batch_size, o.conditions_per_batch, probe)
        x0 = self.sampler.control_source(cid, probe) if self.cfg.flow.source == "control" else self._noise(x1, probe)
        batch = self.objective.prepare(x1, cond, x0, cid, probe)
        n = batch.size
        rng = torch.get_rng_state()

        def run(block: int) -> None:
            for part in batch.blocks(block):
                with self._autocast():
                    loss = self.objective.regress(self.network, part).float() * (part.size / n)
                loss.backward()
            self.optimizer.zero_grad(set_to_none=True)

        chosen, seconds = fastest_block(run, n)
        torch.set_rng_state(rng)
        timings = ", ".join(f"{b}: {1e3 * s:.0f} ms" for b, s in seconds.items())
        log.info("optim.micro_batch_size auto: %d rows per block (forward + backward per batch: %s)", chosen, timings)
        return None if chosen >= n else chosen

    def train_step(self) -> dict[str, float]:
        """One optimisation step; raises :class:`TrainingDiverged` on a non-finite loss (on every rank alike)."""
        cfg = self.cfg
        if not self.network.training:  # walking the module tree every step is not free
            self.network.train()
        x1, cond, cid = self.sampler.sample(cfg.optim.batch_size, cfg.optim.conditions_per_batch, self.generator)
        if cfg.flow.source == "control":
            x0 = self.sampler.control_source(cid, self.generator)
        else:
            x0 = self._noise(x1, self.generator)
        shard = self._shard(x1.shape[0])
        batch = self.objective.prepare(x1, cond, x0, cid, self.generator, shard=shard)
        n = batch.size
        parts = batch.blocks(self.micro_batch_size)
        # unequal shards: weight so that DDP's average over ranks is the mean over the global batch
        weight = 1.0 if shard is None else shard.size * self.dist.world_size / shard.total
        self.optimizer.zero_grad(set_to_none=True)
        losses = []
        for i, part in enumerate(parts):
            last = i == len(parts) - 1
            sync = nullcontext() if last or self._ddp is None else self._ddp.no_sync()  # all-reduce once
            with sync:  # the backward must run inside no_sync
                with self._autocast():
                    loss = self.objective.regress(self.model, part).float() * (weight * part.size / n)
                self._grad_sq = []
                self._recording = len(parts) == 1  # with several blocks the hooks would see partial sums
                try:
                    loss.backward()
                finally:
                    self._recording = False
            losses.append(loss.detach())
        value = losses[0] if len(losses) == 1 else torch.stack(losses).sum()
        if shard is not None:  # the global batch's loss on every rank: same log, same NaN decision everywhere
            value = value.clone()
            torch.distributed.all_reduce(value)
            value = value / self.dist.world_size
        loss_value = float(value.item())
        if not math.isfinite(loss_value):  # before the optimizer touches the weights
            raise TrainingDiverged(
                f"training diverged: loss is {loss_value} at step {self.state.step + 1}; "
                "lower optim.lr or set optim.grad_clip"
            )
        grad_norm = float("nan")
        if cfg.optim.grad_clip is not None:
            grad_norm = self._clip(cfg.optim.grad_clip)
        self.optimizer.step()
        self.scheduler.step()
        self.ema.update(self.network)
        return {"loss": loss_value, "grad_norm": grad_norm, "lr": float(self.scheduler.get_last_lr()[0])}

    def eval_model(self) -> nn.Module:
        """The EMA model (the raw network when EMA is off)."""
        return self.ema.module if self.cfg.optim.ema_decay else self.network

    def _better(self, value: float) -> bool:
        if not math.isfinite(value):
            return False
        if self.state.best_value is None:
            return True
        return value > self.state.best_value if self.maximize else value < self.state.best_value

    def _evaluate(self, step: int, train_logs: dict[str, float]) -> dict[str, float] | None:
        if self.validate is None or not self.val_conditions:
            return None
        if not self.dist.distributed:
            return self._validate_here(self.validate, step, train_logs)
        # rank 0 validates; the others take its metrics and bookkeeping, so early stopping agrees everywhere
        metrics = self._validate_here(self.validate, step, train_logs) if self.dist.is_main else None
        s = self.state
        shared = (metrics, s.history[-1:], s.best_value, s.best_step, s.evals_since_best)
        metrics, last, s.best_value, s.best_step, s.evals_since_best = distributed.broadcast_object(shared, self.dist)
        if not self.dist.is_main:
            s.history.extend(last)
        return metrics

    def _validate_here(
        self,
        validate: Callable[[nn.Module, list[Condition]], dict[str, float]],
        step: int,
        train_logs: dict[str, float],
    ) -> dict[str, float]:
        model = self.eval_model()
        model.eval()
        metrics = validate(model, self.val_conditions)
        record = {
            "step": step,
            **{f"train_{k}": v for k, v in train_logs.items()},
            **{f"val_{k}": v for k, v in metrics.items()},
        }
        self.state.history.append(record)
        value = float(metrics.get(self.cfg.train.select_metric, float("nan")))
        if self._better(value):
            self.state.best_value, self.state.best_step, self.state.evals_since_best = value, step, 0
            if self.run_dir is not None:
                self.run_dir.save_best({"ema": model.state_dict(), "step": step, "value": value})
            self.best_weights = {k: v.detach().clone() for k, v in model.state_dict().items()}
        else:
            self.state.evals_since_best += 1
        return metrics

    def _run_callbacks(self, step: int, metrics: dict[str, float]) -> None:
        """Call the callbacks (rank 0 only with several processes; a raise there stops every rank)."""
        if not self.dist.distributed:
            for cb in self.callbacks:
                cb(step, metrics)
            return
        error: BaseException | None = None
        if self.dist.is_main:
            try:
                for cb in self.callbacks:
                    cb(step, metrics)
            except BaseException as exc:  # re-raised below, once the other ranks know
                error = exc
        reason = distributed.broadcast_object(None if error is None else f"{type(error).__name__}: {error}", self.dist)
        if error is not None:
            raise error
        if reason is not None:
            raise ArchLabError(f"training stopped on rank 0 at step {step}: {reason}")

    def _out_of_time(self, max_seconds: float) -> bool:
        """Whether the wall-time budget is spent (rank 0 decides for every rank, so they stop together)."""
        over = self.state.train_seconds >= max_seconds
        if self.dist.distributed:
            over = bool(distributed.broadcast_object(over if self.dist.is_main else None, self.dist))
        return over

    def _agreed_stop(self, stop: StopRequest) -> str | None:
        """The signal to stop on after this step (None: go on): under DDP any rank's, agreed by every rank
        (:func:`~arch_lab.training.distributed.agreed_signal`), so all of them stop after the same step and rank 0's
        checkpoint is theirs.
        """
        return distributed.agreed_signal(stop, self.dist, self.device)

    def _part_ways(self) -> None:
        """Under DDP, wait until every rank has agreed to stop and rank 0 has written its checkpoint.

        Without it a rank could exit (closing its connections) while another is still finishing the agreement's
        all-reduce, which then fails. A rank that leaves first may still close its connection during this barrier:
        every rank is stopping anyway, so that error is ignored.
        """
        if self.dist.distributed:
            with contextlib.suppress(RuntimeError):
                torch.distributed.barrier()

    def _record_progress(self, step: int, seconds_per_step: float) -> None:
        """Write the step and the pace into the run's status (rank 0; nothing without a run directory)."""
        if self.run_dir is not None and self.dist.is_main:
            self.run_dir.set_progress(
                step, self.cfg.train.max_steps, seconds_per_step, self.cfg.train.max_seconds, self.state.train_seconds
            )

    def fit(self, resume: bool = False) -> TrainState:
        """Train until ``train.max_steps`` or early stopping; returns the final :class:`TrainState`.

        With a run directory, rank 0 sends the training curve to the loggers ``train.loggers`` names
        (:mod:`arch_lab.training.loggers`); they are closed when training ends or fails.
        """
        if resume and self.run_dir is not None and self.run_dir.checkpoint.is_file():
            self.load_checkpoint(self.run_dir.checkpoint)
        self.best_weights = None
        if resume and self.dist.is_main and self.run_dir is not None and self.run_dir.best.is_file():
            self.best_weights = RunDir.load_torch(self.run_dir.best, self.device)["ema"]
        self.loggers: list[Logger] = []
        if self.run_dir is not None and self.dist.is_main:
            self.loggers = open_loggers(self.cfg.train.loggers, self.run_dir, self.cfg, self.state.step)
        try:
            self._fit_loop()
        finally:
            for logger in self.loggers:
                logger.close()
        return self.state

    def _log(self, step: int, values: dict[str, float], flush: bool = False) -> None:
        for logger in self.loggers:
            logger.log(step, values)
            if flush and hasattr(logger, "flush"):  # a validation: the curve so far is on disk for a live view
                logger.flush()

    def _fit_loop(self) -> None:
        cfg = self.cfg.train
        bar = tqdm(
            total=cfg.max_steps,
            initial=self.state.step,
            desc=f"train {self.cfg.network.name}",
            disable=not cfg.progress or not self.dist.is_main,
            leave=None,  # kept on screen unless nested under another bar (arch-lab compare)
        )
        started = time.perf_counter() - self.state.train_seconds
        first_step, first_seconds, recorded = self.state.step, self.state.train_seconds, -math.inf
        logs: dict[str, float] = {}
        first_time = time.perf_counter()
        if cfg.validate_at_start and self.state.step == 0:
            # the untrained model is a candidate too: with a control source and a zero-initialised output layer it
            # leaves every cell as it is, which a null effect (or a field not yet learned) cannot beat
            start_metrics = self._evaluate(0, {})
            if start_metrics is not None and self.loggers:
                self._log(0, {f"val/{k}": v for k, v in start_metrics.items()}, flush=True)
        # One held-SIGTERM block around the whole loop: a signal that arrives after this step's check (under DDP,
        # after the ranks agreed) stays held for the next step's, so every rank stops after the same step.
        with sigterm_deferred() as stop:
            while self.state.step < cfg.max_steps and not self.state.stopped_early:
                tick = time.perf_counter()
                logs = self.train_step()
                self.state.pending_losses.append(logs["loss"])
                self.state.step += 1
                step = self.state.step
                bar.update(1)
                if self.loggers and step % cfg.log_every == 0:
                    values = {f"train/{k}": v for k, v in logs.items()}
                    values["train/step_seconds"] = time.perf_counter() - tick
                    self._log(step, values)
                metrics = None
                if step % cfg.eval_every == 0 or step == cfg.max_steps:
                    # the mean training loss since the previous validation, not one noisy batch
                    metrics = self._evaluate(step, {**logs, "loss": float(np.mean(self.state.pending_losses))})
                    self.state.pending_losses = []
                    if cfg.patience is not None and self.state.evals_since_best >= cfg.patience:
                        self.state.stopped_early = True
                    if metrics is not None and self.loggers:
                        self._log(step, {f"val/{k}": v for k, v in metrics.items()}, flush=True)
                if step % 25 == 0 or metrics is not None:
                    post = {"loss": f"{logs['loss']:.4f}"}
                    if self.state.best_value is not None:
                        post[f"best_{cfg.select_metric}"] = f"{self.state.best_value:.4f}"
                    bar.set_postfix(post, refresh=False)
                self.state.train_seconds = time.perf_counter() - started
                if step - first_step == ETA_AFTER_STEPS and self.dist.is_main:
                    per_step = (time.perf_counter() - first_time) / ETA_AFTER_STEPS
                    left = cfg.max_steps - step
                    limit = "" if cfg.max_seconds is None else f", capped at train.max_seconds={cfg.max_seconds:g} s"
                    message = (
                        f"expected training time: {per_step * left:.0f} s more ({per_step:.3f} s/step measured over "
                        f"{ETA_AFTER_STEPS} steps x {left} steps left{limit})"
                    )
                    if bar.disable:
                        log.info(message)
                    else:
                        bar.write(message, file=sys.stderr)
                if cfg.max_seconds is not None and not self.state.stopped_early and self._out_of_time(cfg.max_seconds):
                    if metrics is None:  # a last validation, so the best checkpoint considers the final weights
                        metrics = self._evaluate(step, {**logs, "loss": float(np.mean(self.state.pending_losses))})
                        self.state.pending_losses = []
                    self.state.stopped_early = self.state.time_limited = True
                now = time.perf_counter()
                final = step == cfg.max_steps or self.state.stopped_early
                measured = step - first_step >= ETA_AFTER_STEPS  # a pace over the first step alone is its warm-up
                if final or (measured and now - recorded >= PROGRESS_EVERY_S):  # validations included in the pace
                    pace = (self.state.train_seconds - first_seconds) / (step - first_step)
                    self._record_progress(step, pace)
                    recorded = now
                saved = step % cfg.checkpoint_every == 0 or step == cfg.max_steps or self.state.stopped_early
                if saved:
                    self.save_checkpoint()
                if metrics is not None:
                    self._run_callbacks(step, metrics)
                signalled = self._agreed_stop(stop)
                if signalled is not None:
                    # a SIGTERM (preemption) arrived: keep this step, then stop as an interruption (on every rank)
                    if not saved:
                        self.save_checkpoint()
                    self._part_ways()
                    raise stop.interrupt(signalled)
        bar.close()
        self.close()
        if self.best_weights is not None:
            self.eval_model().load_state_dict(self.best_weights)
