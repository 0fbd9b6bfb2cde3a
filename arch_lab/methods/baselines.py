"""Baselines on the same predict interface as flow models.

- ``no_change``: the source control cells themselves (the floor).
- ``perturbation_mean``: control cells plus the training mean shift of the perturbation in other states; for an
  unseen combination, the sum of its singles' shifts.
- ``linear_additive``: control cells plus a learned linear function of the multi-hot perturbation and one-hot
  covariates (ridge regression on matched control/perturbed cells; PerturBench's Linear).
- ``latent_additive``: an encoder of the control cell, plus learned perturbation (and covariate) embeddings added
  in a latent space, then a decoder (PerturBench's Latent Additive).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn
from tqdm.auto import tqdm
from typing_extensions import override

from arch_lab.data.task import Condition, Task
from arch_lab.methods.base import Method, PredictionRequest, Validator, register_method


def _clamp(x: np.ndarray) -> np.ndarray:
    return np.clip(x, 0.0, None).astype(np.float32)


def matched_controls(task: Task, rows: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """For each cell row, a random training control row of the same state."""
    states = task.obs["state"].to_numpy()
    out = np.empty(len(rows), dtype=np.int64)
    for state in np.unique(states[rows]):
        pool = task.controls(str(state), "train")
        sel = np.flatnonzero(states[rows] == state)
        out[sel] = rng.choice(pool, size=len(sel), replace=True)
    return out


def features(task: Task, conditions: list[Condition]) -> np.ndarray:
    """Multi-hot perturbation tokens and one-hot covariates, one row per condition."""
    n_tok = len(task.token_ids)
    sizes = [len(v) for v in task.covariate_vocabs.values()]
    F = np.zeros((len(conditions), n_tok + sum(sizes)), dtype=np.float32)
    for i, c in enumerate(conditions):
        tokens, covs = task.encode(c)
        for t in tokens:
            F[i, t - 1] += 1.0
        off = n_tok
        for size, cid in zip(sizes, covs, strict=True):
            F[i, off + cid] = 1.0
            off += size
    return F


@register_method("no_change")
class NoChange(Method):
    """Predict the source control cells unchanged."""

    @override
    def fit(
        self,
        run_dir: Path | None = None,
        callbacks: list[Callable[[int, dict], None]] | None = None,
        validate: Validator | None = None,
    ) -> dict:
        self.check_params(set())
        return {}

    @override
    def predict(self, requests: list[PredictionRequest], rng: np.random.Generator) -> list[np.ndarray]:
        return [r.source.astype(np.float32) for r in requests]


@register_method("perturbation_mean")
class PerturbationMean(Method):
    """Control cells plus the mean training shift of the perturbation (summed singles for combinations)."""

    @override
    def fit(
        self,
        run_dir: Path | None = None,
        callbacks: list[Callable[[int, dict], None]] | None = None,
        validate: Validator | None = None,
    ) -> dict:
        self.check_params(set())
        task = self.task
        X = task.data.X
        self.shifts: dict[tuple[str, str], np.ndarray] = {}
        train_obs = task.obs[task.obs["split"] == "train"]
        ctrl_means = {
            s: X[task.controls(s, "train")].mean(axis=0)
            for s in train_obs["state"].unique()
            if len(task.controls(s, "train"))
        }
        for c in task.conditions("train"):
            if c.state in ctrl_means:
                self.shifts[(c.perturbation, c.state)] = X[task.cells("train", c)].mean(axis=0) - ctrl_means[c.state]
        return {"n_shifts": len(self.shifts)}

    def shift(self, condition: Condition) -> np.ndarray:
        """The predicted mean shift of a condition."""
        key = (condition.perturbation, condition.state)
        if key in self.shifts:
            return self.shifts[key]
        other = [v for (p, _), v in self.shifts.items() if p == condition.perturbation]
        if other:
            return np.mean(other, axis=0)
        total = np.zeros(self.task.data.n_genes, dtype=np.float64)
        for token in self.task.data.tokens(condition.perturbation):
            same = self.shifts.get((token, condition.state))
            if same is not None:
                total += same
                continue
            other = [v for (p, _), v in self.shifts.items() if p == token]
            if other:
                total += np.mean(other, axis=0)
        return total

    @override
    def predict(self, requests: list[PredictionRequest], rng: np.random.Generator) -> list[np.ndarray]:
        return [_clamp(r.source + self.shift(r.condition)) for r in requests]

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"shifts": self.shifts}

    @override
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.shifts = state["shifts"]


@register_method("linear_additive")
class LinearAdditive(Method):
    """x̂ = x_ctrl + W·[perturbation multi-hot; covariate one-hot] + b, fit by ridge regression on cells."""

    @override
    def fit(
        self,
        run_dir: Path | None = None,
        callbacks: list[Callable[[int, dict], None]] | None = None,
        validate: Validator | None = None,
    ) -> dict:
        self.check_params({"ridge"})
        task = self.task
        rng = np.random.default_rng(self.cfg.seed)
        rows = task.cells("train")
        ctrl = matched_controls(task, rows, rng)
        conds = [
            Condition(s, p)
            for s, p in zip(task.obs["state"].iloc[rows], task.obs["perturbation"].iloc[rows], strict=True)
        ]
        uniq = sorted(set(conds), key=lambda c: (c.state, c.perturbation))
        F_u = features(task, uniq)
        index = {c: i for i, c in enumerate(uniq)}
        F = np.concatenate([F_u[[index[c] for c in conds]], np.ones((len(rows), 1), np.float32)], axis=1)
        Y = task.data.X[rows] - task.data.X[ctrl]
        ridge = float(self.params.get("ridge", 1.0))
        A = F.T.astype(np.float64) @ F + ridge * np.eye(F.shape[1])
        self.W = np.linalg.solve(A, F.T.astype(np.float64) @ Y).astype(np.float32)
        return {"n_features": int(F.shape[1])}

    @override
    def predict(self, requests: list[PredictionRequest], rng: np.random.Generator) -> list[np.ndarray]:
        F = features(self.task, [r.condition for r in requests])
        F = np.concatenate([F, np.ones((len(requests), 1), np.float32)], axis=1)
        return [_clamp(r.source + f @ self.W) for r, f in zip(requests, F, strict=True)]

    @override
    def parameter_count(self) -> int:
        return int(self.W.size) if hasattr(self, "W") else 0

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"W": self.W}

    @override
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.W = state["W"]


class _LatentAdditiveNet(nn.Module):
    def __init__(self, n_genes: int, n_features: int, hidden: int, latent: int, dropout: float) -> None:
        super().__init__()
        self.encoder = nn.Sequential(
            nn.Linear(n_genes, hidden), nn.LayerNorm(hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, latent)
        )
        self.effect = nn.Linear(n_features, latent, bias=False)
        self.decoder = nn.Sequential(
            nn.Linear(latent, hidden), nn.LayerNorm(hidden), nn.SiLU(), nn.Dropout(dropout), nn.Linear(hidden, n_genes)
        )

    def forward(self, x_ctrl: torch.Tensor, feats: torch.Tensor) -> torch.Tensor:
        return nn.functional.softplus(self.decoder(self.encoder(x_ctrl) + self.effect(feats)))


@register_method("latent_additive")
class LatentAdditive(Method):
    """Encoder of the control cell plus additive perturbation/covariate effects in a latent space, then a decoder.

    Options (``method.params``): ``hidden`` (512), ``latent`` (64), ``dropout`` (0.1), ``steps`` (1500),
    ``batch_size`` (256), ``lr`` (1e-3), ``weight_decay`` (1e-5).
    """

    OPTIONS = {"hidden": 512, "latent": 64, "dropout": 0.1, "steps": 1500, "batch_size": 256, "lr": 1e-3,
               "weight_decay": 1e-5}  # fmt: skip

    def _opts(self) -> dict[str, Any]:
        self.check_params(set(self.OPTIONS))
        return {k: type(v)(self.params.get(k, v)) for k, v in self.OPTIONS.items()}

    def _build(self) -> None:
        o = self._opts()
        n_feat = features(self.task, []).shape[1]
        torch.manual_seed(self.cfg.seed)
        self.net = _LatentAdditiveNet(self.task.data.n_genes, n_feat, o["hidden"], o["latent"], o["dropout"])

    @override
    def fit(
        self,
        run_dir: Path | None = None,
        callbacks: list[Callable[[int, dict], None]] | None = None,
        validate: Validator | None = None,
    ) -> dict:
        o = self._opts()
        self._build()
        task = self.task
        rng = np.random.default_rng(self.cfg.seed)
        rows = task.cells("train")
        conds = [
            Condition(s, p)
            for s, p in zip(task.obs["state"].iloc[rows], task.obs["perturbation"].iloc[rows], strict=True)
        ]
        uniq = sorted(set(conds), key=lambda c: (c.state, c.perturbation))
        F_u = torch.from_numpy(features(task, uniq))
        cond_idx = torch.tensor([{c: i for i, c in enumerate(uniq)}[c] for c in conds])
        X = torch.from_numpy(task.data.X)
        opt = torch.optim.AdamW(self.net.parameters(), lr=o["lr"], weight_decay=o["weight_decay"])
        start = time.perf_counter()
        bar = tqdm(range(o["steps"]), desc="latent_additive", disable=not self.cfg.train.progress, leave=False)
        self.net.train()
        for _ in bar:
            b = rng.integers(0, len(rows), size=o["batch_size"])
            ctrl = matched_controls(task, rows[b], rng)
            pred = self.net(X[ctrl], F_u[cond_idx[b]])
            loss = nn.functional.mse_loss(pred, X[rows[b]])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.4f}", refresh=False)
        self.net.eval()
        return {"steps": o["steps"], "final_loss": float(loss.item()), "train_seconds": time.perf_counter() - start}

    @override
    @torch.no_grad()
    def predict(self, requests: list[PredictionRequest], rng: np.random.Generator) -> list[np.ndarray]:
        F = torch.from_numpy(features(self.task, [r.condition for r in requests]))
        out = []
        for r, f in zip(requests, F, strict=True):
            x = torch.from_numpy(r.source.astype(np.float32))
            out.append(self.net(x, f.expand(len(x), -1)).numpy().astype(np.float32))
        return out

    @override
    def parameter_count(self) -> int:
        return sum(p.numel() for p in self.net.parameters()) if hasattr(self, "net") else 0

    @override
    def state_dict(self) -> dict[str, Any]:
        return {"net": self.net.state_dict()}

    @override
    def load_state_dict(self, state: dict[str, Any]) -> None:
        self._build()
        self.net.load_state_dict(state["net"])
        self.net.eval()
