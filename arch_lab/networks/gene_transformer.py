"""Transformer with one token per gene, cross-attending to the condition tokens."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar, Literal, cast

import torch
from einops import rearrange, repeat
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from arch_lab.networks._registry import register_network
from arch_lab.networks.layers import (
    ConditionEncoder,
    MultiHeadAttention,
    check_expression,
    check_full_attention_memory,
    normalize_time,
)
from arch_lab.spec import CondBatch, DataSpec


class AdaNorm(nn.Module):
    """LayerNorm without affine parameters, then a scale and shift computed from a conditioning embedding.

    Parameters
    ----------
    dim
        Token width.
    cond_dim
        Width of the conditioning embedding.
    """

    def __init__(self, dim: int, cond_dim: int) -> None:
        super().__init__()
        self.norm = nn.LayerNorm(dim, elementwise_affine=False)
        self.modulation = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * dim))

    def modulation_terms(self, emb: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``(1 + scale, shift)``, each ``[B, dim]``: the output is ``norm(x) * (1 + scale) + shift``.

        The layer that consumes the output can fold these row-wise factors into its own per-row weights
        (see :meth:`FeedForward.modulated` and ``query_modulation`` of :class:`MultiHeadAttention`) and skip the
        pass over ``[B, L, dim]``.
        """
        scale, shift = self.modulation(emb).chunk(2, dim=-1)
        return 1 + scale, shift

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` ``[B, L, dim]`` and modulate it with ``emb`` ``[B, cond_dim]``."""
        scale, shift = rearrange(self.modulation(emb), "b (two d) -> two b 1 d", two=2)
        # shift + norm(x) * (1 + scale) in one pass over the [B, L, dim] tensor
        return torch.addcmul(shift, self.norm(x), 1 + scale)


class FeedForward(nn.Sequential):
    """``Linear -> GELU -> Dropout -> Linear`` applied to every token."""

    def __init__(self, dim: int, mult: int, dropout: float) -> None:
        super().__init__(nn.Linear(dim, mult * dim), nn.GELU(), nn.Dropout(dropout), nn.Linear(mult * dim, dim))

    def modulated(self, x: torch.Tensor, scale: torch.Tensor, shift: torch.Tensor) -> torch.Tensor:
        """The layer applied to ``x * scale + shift`` (``x`` ``[B, L, dim]``, ``scale`` and ``shift`` ``[B, dim]``).

        The row-wise modulation is folded into per-row weights of the first product,
        ``x (scale * W^T) + (shift W^T + b)``, so no modulated copy of ``x`` is made.
        """
        first = cast(nn.Linear, self[0])  # built in __init__
        weight = first.weight.t() * scale[:, :, None]  # [B, dim, hidden]
        bias = torch.addmm(first.bias, shift, first.weight.t())  # [B, hidden]
        hidden = torch.baddbmm(bias[:, None, :], x, weight)
        return self[3](self[2](self[1](hidden)))


class GeneTransformerBlock(nn.Module):
    """Cross-attention to the condition, optional gene-gene mixing, and a feed-forward layer.

    Every sub-layer is pre-normalised with :class:`AdaNorm` (modulated by the pooled time and condition
    embedding) and wrapped in a residual connection.

    Parameters
    ----------
    dim
        Gene token width.
    heads
        Attention heads.
    cond_dim
        Width of the condition tokens and of the pooled embedding.
    self_attention
        ``"none"`` (genes never see each other), ``"full"`` (gene-gene self-attention, quadratic in G) or
        ``"latent"`` (latent tokens read all genes, then genes read the latents; linear in G).
    n_latents
        Number of learned latent tokens for ``"latent"``.
    ff_mult
        Hidden width of the feed-forward layer, as a multiple of ``dim``.
    dropout
        Dropout on attention weights and inside the feed-forward layer.
    """

    def __init__(
        self,
        dim: int,
        heads: int,
        cond_dim: int,
        self_attention: str,
        n_latents: int,
        ff_mult: int,
        dropout: float,
    ) -> None:
        super().__init__()
        self.self_attention = self_attention
        self.cross_norm = AdaNorm(dim, cond_dim)
        self.cross = MultiHeadAttention(dim, heads, kv_dim=cond_dim, dropout=dropout)
        if self_attention == "full":
            self.mix_norm = AdaNorm(dim, cond_dim)
            self.mix = MultiHeadAttention(dim, heads, dropout=dropout)
        elif self_attention == "latent":
            self.latents = nn.Parameter(torch.randn(n_latents, dim) * 0.02)
            self.mix_norm = AdaNorm(dim, cond_dim)
            self.latent_norm = nn.LayerNorm(dim)
            self.read = MultiHeadAttention(dim, heads, dropout=dropout)
            self.write = MultiHeadAttention(dim, heads, dropout=dropout)
        self.ff_norm = AdaNorm(dim, cond_dim)
        self.ff = FeedForward(dim, ff_mult, dropout)

    def forward(
        self, x: torch.Tensor, emb: torch.Tensor, context: torch.Tensor, context_mask: torch.Tensor
    ) -> torch.Tensor:
        """Update gene tokens ``x`` ``[B, G, dim]``.

        Parameters
        ----------
        x
            ``[B, G, dim]`` gene tokens.
        emb
            ``[B, cond_dim]`` pooled time and condition embedding.
        context
            ``[B, S + K, cond_dim]`` condition tokens.
        context_mask
            ``[B, S + K]`` bool, True for condition tokens that take part.
        """
        x = x + self.cross(self.cross_norm.norm(x), context, context_mask, self.cross_norm.modulation_terms(emb))
        if self.self_attention == "full":
            x = x + self.mix(self.mix_norm(x, emb))
        elif self.self_attention == "latent":
            h = self.mix_norm(x, emb)
            latents = repeat(self.latents, "n d -> b n d", b=x.shape[0]).to(h.dtype)
            latents = latents + self.read(latents, h)
            x = x + self.write(h, self.latent_norm(latents))
        return x + self.ff.modulated(self.ff_norm.norm(x), *self.ff_norm.modulation_terms(emb))


@register_network("gene_transformer")
class GeneTransformer(nn.Module):
    """Transformer whose tokens are genes.

    Gene token ``i`` is a learned identity embedding of gene ``i`` plus a projection of its value in ``x_t``
    plus the time embedding. Blocks cross-attend from genes to the condition tokens of
    :meth:`ConditionEncoder.tokens` and optionally mix genes (see :class:`GeneTransformerBlock`); a linear
    head shared by all genes reads each gene's velocity from its token.

    Parameters
    ----------
    config
        The network's knobs.
    spec
        Data facts (gene count, vocabularies).
    """

    #: Knob chosen by parameter matching when none is named.
    match_knob: ClassVar[str] = "dim"

    class Config(BaseModel):
        """Knobs of :class:`GeneTransformer`."""

        model_config = ConfigDict(extra="forbid")

        dim: int = Field(64, ge=1, description="Gene token width.")
        depth: int = Field(2, ge=0, description="Number of blocks.")
        heads: int = Field(4, ge=1, description="Attention heads (must divide dim).")
        self_attention: Literal["none", "full", "latent"] = Field("none", description="Gene-gene mixing.")
        n_latents: int = Field(16, ge=1, description="Latent tokens for self_attention='latent'.")
        ff_mult: int = Field(2, ge=1, description="Feed-forward hidden width as a multiple of dim.")
        dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout on attention and feed-forward.")
        cond_dim: int | None = Field(None, ge=1, description="Width of the condition embeddings (None = dim).")

        @model_validator(mode="after")
        def _check_heads(self) -> GeneTransformer.Config:
            if self.dim % self.heads:
                raise ValueError(f"network.heads ({self.heads}) must divide network.dim ({self.dim})")
            return self

    def __init__(self, config: Config, spec: DataSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec
        dim = config.dim
        cond_dim = config.cond_dim or dim
        self.encoder = ConditionEncoder(spec, cond_dim)
        self.gene_embedding = nn.Parameter(torch.randn(spec.n_genes, dim) * 0.02)
        self.value_proj = nn.Linear(1, dim)
        self.time_proj = nn.Linear(cond_dim, dim)
        self.context_norm = nn.LayerNorm(cond_dim)
        self.blocks = nn.ModuleList(
            GeneTransformerBlock(
                dim, config.heads, cond_dim, config.self_attention, config.n_latents, config.ff_mult, config.dropout
            )
            for _ in range(config.depth)
        )
        self.head_norm = AdaNorm(dim, cond_dim)
        self.head = nn.Linear(dim, 1)
        nn.init.zeros_(self.head.weight)
        nn.init.zeros_(self.head.bias)

    @classmethod
    def knob_step(cls, knob: str, knobs: Mapping[str, Any]) -> int:
        """Granularity of ``knob`` for parameter matching: ``dim`` comes in multiples of ``heads``, else 1."""
        if knob == "dim":
            return int(knobs.get("heads", cls.Config.model_fields["heads"].default))
        return 1

    @classmethod
    def tiny_config(cls) -> dict:
        """A very small configuration for tests (latent gene mixing)."""
        return {"dim": 8, "depth": 1, "heads": 2, "self_attention": "latent", "n_latents": 3, "ff_mult": 1}

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float, cond: CondBatch) -> torch.Tensor:
        """Velocity ``[B, G]`` at state ``x_t`` ``[B, G]``, time ``t`` and condition ``cond``."""
        check_expression(x_t, self.spec.n_genes)
        dtype = self.value_proj.weight.dtype
        if self.config.self_attention == "full" and self.config.depth:
            # quadratic in G: refuse before allocating rather than exhaust the machine
            kind = x_t.device.type
            item = (torch.get_autocast_dtype(kind) if torch.is_autocast_enabled(kind) else dtype).itemsize
            grad = self.training and torch.is_grad_enabled()
            c = self.config
            check_full_attention_memory(x_t.shape[0], c.heads, self.spec.n_genes, c.depth, x_t.device, item, grad)
        t = normalize_time(t, x_t.shape[0], x_t.device)
        emb = self.encoder.pooled(t, cond)
        context, context_mask = self.encoder.tokens(cond)
        context = self.context_norm(context)

        # value_proj(x_t[..., None]) + gene_embedding + time, as one broadcast add and one multiply-add
        # (a Linear(1, dim) is an outer product; value_proj stays a module so checkpoints keep their keys)
        values = rearrange(x_t.to(dtype), "b g -> b g 1")
        offset = self.time_proj(self.encoder.time(t)) + self.value_proj.bias
        x = torch.addcmul(
            self.gene_embedding + rearrange(offset, "b d -> b 1 d"),
            values,
            rearrange(self.value_proj.weight, "d 1 -> d"),
        )
        for block in self.blocks:
            x = block(x, emb, context, context_mask)
        # head(head_norm(x, emb)) with the modulation folded into a per-row weight of the [dim] -> 1 head
        scale, shift = self.head_norm.modulation_terms(emb)
        weight = rearrange(self.head.weight, "1 d -> d") * scale  # [B, dim]
        bias = torch.addmm(self.head.bias, shift, self.head.weight.t())  # [B, 1]
        out = torch.baddbmm(rearrange(bias, "b 1 -> b 1 1"), self.head_norm.norm(x), rearrange(weight, "b d -> b d 1"))
        return rearrange(out, "b g 1 -> b g").to(x_t.dtype)
