"""Time and condition embeddings shared by every network.

All backbones build a :class:`ConditionEncoder` so they receive the same information: the flow time, the
perturbation set (an order-free sum of token embeddings, or the unpooled tokens), the covariates, and a
learned null embedding for rows whose condition is dropped.
"""

from __future__ import annotations

import math
import numbers

import torch
from einops import rearrange
from torch import nn

from arch_lab.spec import PAD_TOKEN, CondBatch, DataSpec


def normalize_time(
    t: torch.Tensor | float, batch_size: int, device: torch.device | str, dtype: torch.dtype = torch.float32
) -> torch.Tensor:
    """Turn a time argument into a ``[B]`` tensor.

    Parameters
    ----------
    t
        A python number, a 0-d tensor, a ``[1]`` tensor, a ``[B]`` tensor or a ``[B, 1]`` tensor.
    batch_size
        B.
    device, dtype
        Placement of the result.

    Returns
    -------
    torch.Tensor
        ``[B]`` times.
    """
    if isinstance(t, numbers.Real):
        return torch.full((batch_size,), float(t), device=device, dtype=dtype)
    if not isinstance(t, torch.Tensor):
        raise TypeError(f"t must be a number or a tensor, got {type(t).__name__}")
    t = t.to(device=device, dtype=dtype)
    if t.numel() == 1 and t.ndim <= 1:
        return t.reshape(1).expand(batch_size)
    if t.ndim == 2 and t.shape[1] == 1:
        t = t[:, 0]
    if t.shape != (batch_size,):
        raise ValueError(f"t must be a scalar or have shape [1] or [{batch_size}], got {list(t.shape)}")
    return t


def check_expression(x_t: torch.Tensor, n_genes: int) -> None:
    """Raise ValueError unless ``x_t`` has shape ``[B, n_genes]``."""
    if x_t.ndim != 2 or x_t.shape[1] != n_genes:
        raise ValueError(f"x_t must have shape [B, {n_genes}], got {list(x_t.shape)}")


class SinusoidalTimeEmbedding(nn.Module):
    """Fixed sinusoidal features of a scalar time.

    Parameters
    ----------
    dim
        Number of features (an odd ``dim`` gets one trailing zero feature).
    scale
        Times are multiplied by ``scale`` first, so that ``t`` in ``[0, 1]`` spans many periods.
    max_period
        Longest period of the sinusoids.
    """

    freqs: torch.Tensor  # buffer

    def __init__(self, dim: int, scale: float = 1000.0, max_period: float = 10000.0) -> None:
        super().__init__()
        self.dim = dim
        self.scale = scale
        half = dim // 2
        freqs = torch.exp(-math.log(max_period) * torch.arange(half, dtype=torch.float32) / max(half, 1))
        self.register_buffer("freqs", freqs, persistent=False)

    def forward(self, t: torch.Tensor) -> torch.Tensor:
        """Map ``[B]`` times to ``[B, dim]`` float32 features."""
        args = (t.float() * self.scale)[:, None] * self.freqs[None, :]
        emb = torch.cat([torch.cos(args), torch.sin(args)], dim=-1)
        if self.dim % 2:
            emb = torch.cat([emb, torch.zeros_like(emb[:, :1])], dim=-1)
        return emb


class ConditionEncoder(nn.Module):
    """Embeddings of time, perturbation set, covariates and the null condition.

    Parameters
    ----------
    spec
        Gives the perturbation vocabulary (embedding table with ``padding_idx=PAD_TOKEN``) and the
        covariate vocabularies (one embedding table per covariate key).
    dim
        Width of every embedding this module returns.
    """

    def __init__(self, spec: DataSpec, dim: int) -> None:
        super().__init__()
        self.dim = dim
        self.pert_embedding = nn.Embedding(spec.n_perturbation_tokens, dim, padding_idx=PAD_TOKEN)
        self.covariate_embeddings = nn.ModuleList(nn.Embedding(size, dim) for size in spec.covariate_sizes)
        self.null_embedding = nn.Parameter(torch.randn(dim) * 0.02)
        self.time_features = SinusoidalTimeEmbedding(dim)
        self.time_mlp = nn.Sequential(nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))
        self.pooled_mlp = nn.Sequential(nn.SiLU(), nn.Linear(dim, dim), nn.SiLU(), nn.Linear(dim, dim))

    def time(self, t: torch.Tensor) -> torch.Tensor:
        """Embed ``[B]`` times as ``[B, dim]``."""
        return self.time_mlp(self.time_features(t))

    def _perturbation_tokens(self, cond: CondBatch) -> tuple[torch.Tensor, torch.Tensor]:
        mask = cond.pert_mask.to(torch.bool)
        tokens = self.pert_embedding(cond.pert_tokens) * mask[..., None]
        return tokens, mask

    def _covariate_tokens(self, cond: CondBatch) -> torch.Tensor:
        batch = cond.batch_size
        if not self.covariate_embeddings:
            return self.null_embedding.new_zeros(batch, 0, self.dim)
        if cond.covariates.shape[1] != len(self.covariate_embeddings):
            raise ValueError(
                f"cond.covariates has {cond.covariates.shape[1]} columns, the spec has "
                f"{len(self.covariate_embeddings)} covariate keys"
            )
        return torch.stack([emb(cond.covariates[:, k]) for k, emb in enumerate(self.covariate_embeddings)], dim=1)

    def pooled(self, t: torch.Tensor, cond: CondBatch) -> torch.Tensor:
        """One embedding per row of time, perturbation set and covariates.

        The perturbation set is the masked sum of its token embeddings (a control has none), so the
        result does not depend on token order or on padding. Rows with ``cond.null`` use the learned null
        embedding in place of the perturbation and covariate part.

        Parameters
        ----------
        t
            ``[B]`` times.
        cond
            The rows' conditions.

        Returns
        -------
        torch.Tensor
            ``[B, dim]``.
        """
        pert, _ = self._perturbation_tokens(cond)
        condition = pert.sum(dim=1) + self._covariate_tokens(cond).sum(dim=1)
        null = cond.null.to(torch.bool)[:, None]
        condition = torch.where(null, self.null_embedding.to(condition.dtype), condition)
        return self.pooled_mlp(self.time(t) + condition)

    def tokens(self, cond: CondBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """Unpooled condition tokens for cross-attention.

        Parameters
        ----------
        cond
            The rows' conditions.

        Returns
        -------
        tokens
            ``[B, S + K, dim]``: the S perturbation token embeddings followed by one token per covariate key
            (S is widened to 1 when both S and K are 0).
        mask
            ``[B, S + K]`` bool, True for tokens that take part. On null rows only the first position is
            kept and it holds the learned null embedding.
        """
        pert, pert_mask = self._perturbation_tokens(cond)
        if pert.shape[1] == 0 and not self.covariate_embeddings:
            pert = pert.new_zeros(pert.shape[0], 1, self.dim)
            pert_mask = pert_mask.new_zeros(pert.shape[0], 1)
        cov = self._covariate_tokens(cond).to(pert.dtype)
        tokens = torch.cat([pert, cov], dim=1)
        mask = torch.cat([pert_mask, pert_mask.new_ones(cov.shape[:2])], dim=1)

        null = cond.null.to(torch.bool)
        first = torch.zeros_like(mask)
        first[:, 0] = True
        null_tokens = rearrange(self.null_embedding.to(tokens.dtype), "d -> 1 1 d") * first[..., None]
        tokens = torch.where(null[:, None, None], null_tokens, tokens)
        mask = torch.where(null[:, None], first, mask)
        return tokens, mask
