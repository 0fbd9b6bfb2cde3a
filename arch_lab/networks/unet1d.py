"""One-dimensional U-Net along the gene axis, in the style of guided-diffusion's U-Net."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any, ClassVar, Literal

import torch
import torch.nn.functional as F
from einops import rearrange, repeat
from pydantic import BaseModel, ConfigDict, Field, model_validator
from torch import nn

from arch_lab.networks._registry import register_network
from arch_lab.networks.layers import ConditionEncoder, MultiHeadAttention, check_expression, normalize_time
from arch_lab.spec import CondBatch, DataSpec

#: What a convolution reads beyond the ends of the gene axis (:class:`torch.nn.Conv1d`'s ``padding_mode``).
PaddingMode = Literal["zeros", "circular", "reflect", "replicate"]


def group_norm(channels: int) -> nn.GroupNorm:
    """GroupNorm with a group count (at most 32) that divides ``channels``."""
    return nn.GroupNorm(math.gcd(32, channels), channels)


def _zero(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        nn.init.zeros_(p)
    return module


class ResBlock(nn.Module):
    """Residual block with FiLM scale-shift conditioning.

    ``norm -> SiLU -> conv -> norm * (1 + scale) + shift -> SiLU -> dropout -> conv`` plus a skip path (a 1x1
    conv when the channel count changes).

    Parameters
    ----------
    in_channels, out_channels
        Channel counts.
    emb_dim
        Width of the conditioning embedding.
    kernel_size
        Convolution kernel size along the gene axis (1 = no mixing of neighbouring positions).
    dropout
        Dropout before the second convolution.
    padding_mode
        What the convolutions read beyond the ends of the gene axis (:class:`torch.nn.Conv1d`'s ``padding_mode``).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        emb_dim: int,
        kernel_size: int,
        dropout: float,
        padding_mode: PaddingMode = "zeros",
    ) -> None:
        super().__init__()
        self.in_layers = nn.Sequential(
            group_norm(in_channels),
            nn.SiLU(),
            nn.Conv1d(in_channels, out_channels, kernel_size, padding="same", padding_mode=padding_mode),
        )
        self.emb_layers = nn.Sequential(nn.SiLU(), nn.Linear(emb_dim, 2 * out_channels))
        self.out_norm = group_norm(out_channels)
        self.out_layers = nn.Sequential(
            nn.SiLU(),
            nn.Dropout(dropout),
            _zero(nn.Conv1d(out_channels, out_channels, kernel_size, padding="same", padding_mode=padding_mode)),
        )
        self.skip = nn.Identity() if in_channels == out_channels else nn.Conv1d(in_channels, out_channels, 1)

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:
        """Map ``[B, C_in, L]`` to ``[B, C_out, L]`` under embedding ``emb`` ``[B, emb_dim]``."""
        h = self.in_layers(x)
        scale, shift = rearrange(self.emb_layers(emb), "b (two c) -> two b c 1", two=2)
        h = self.out_norm(h) * (1 + scale) + shift
        return self.skip(x) + self.out_layers(h)


class AttentionBlock(nn.Module):
    """Residual self-attention over positions of the gene axis.

    Parameters
    ----------
    channels
        Channel count (the token width).
    heads
        Attention heads; must divide ``channels``.
    """

    def __init__(self, channels: int, heads: int) -> None:
        super().__init__()
        self.norm = group_norm(channels)
        self.attention = MultiHeadAttention(channels, heads, zero_init_output=True)

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """Map ``[B, C, L]`` to ``[B, C, L]``."""
        h = rearrange(self.norm(x), "b c l -> b l c")
        return x + rearrange(self.attention(h), "b l c -> b c l")


class Downsample(nn.Module):
    """Halve the gene axis with a stride-2 convolution, or keep it (``enabled=False``)."""

    def __init__(self, channels: int, enabled: bool, padding_mode: PaddingMode = "zeros") -> None:
        super().__init__()
        self.op = (
            nn.Conv1d(channels, channels, 3, stride=2, padding=1, padding_mode=padding_mode)
            if enabled
            else nn.Identity()
        )

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """Map ``[B, C, L]`` to ``[B, C, L / 2]`` (or ``[B, C, L]``)."""
        return self.op(x)


class Upsample(nn.Module):
    """Double the gene axis (nearest neighbour, then a convolution), or keep it (``enabled=False``)."""

    def __init__(self, channels: int, enabled: bool, padding_mode: PaddingMode = "zeros") -> None:
        super().__init__()
        self.enabled = enabled
        self.conv = nn.Conv1d(channels, channels, 3, padding=1, padding_mode=padding_mode) if enabled else None

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """Map ``[B, C, L]`` to ``[B, C, 2 L]`` (or ``[B, C, L]``)."""
        if self.conv is None:
            return x
        return self.conv(F.interpolate(x, scale_factor=2, mode="nearest"))


class Stage(nn.Sequential):
    """Layers applied in order, each given the conditioning embedding."""

    def forward(self, x: torch.Tensor, emb: torch.Tensor) -> torch.Tensor:  # type: ignore[override]  # takes emb too
        """Apply every layer to ``x`` with embedding ``emb``."""
        for layer in self:
            x = layer(x, emb)
        return x


@register_network("unet1d")
class UNet1D(nn.Module):
    """U-Net over the gene axis with FiLM conditioning, skip connections and optional self-attention.

    The expression vector ``[B, G]`` is read as a one-channel signal of length G (plus optional learned
    per-gene embedding channels), zero-padded to a multiple of ``2 ** (levels - 1)`` when down-sampling,
    processed by the encoder, middle and decoder stages, and cropped back to G.

    Parameters
    ----------
    config
        The network's knobs.
    spec
        Data facts (gene count, vocabularies).
    """

    #: Knob chosen by parameter matching when none is named.
    match_knob: ClassVar[str] = "base_channels"

    class Config(BaseModel):
        """Knobs of :class:`UNet1D`."""

        model_config = ConfigDict(extra="forbid")

        base_channels: int = Field(16, ge=1, description="Channels at the first level.")
        channel_mult: tuple[int, ...] = Field((1, 2, 4), min_length=1, description="Channel multiplier per level.")
        num_res_blocks: int = Field(1, ge=1, description="Residual blocks per level.")
        kernel_size: int = Field(3, ge=1, description="Convolution kernel size (1 = no neighbour mixing).")
        skip_connections: bool = Field(True, description="Concatenate encoder activations into the decoder.")
        attention_levels: tuple[int, ...] = Field((), description="Levels (indices) with self-attention.")
        mid_attention: bool = Field(False, description="Self-attention in the middle stage.")
        attention_heads: int = Field(4, ge=1, description="Heads of every self-attention layer.")
        downsample: bool = Field(True, description="Halve the gene axis between levels (False keeps it).")
        gene_embedding_dim: int = Field(0, ge=0, description="Learned per-gene input channels (0 = none).")
        cond_dim: int = Field(128, ge=1, description="Width of the time and condition embedding.")
        dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout inside residual blocks.")
        padding_mode: PaddingMode = Field(
            "zeros",
            description="What the convolutions read beyond the ends of the gene axis: zeros (the default), or "
            "circular (the axis wraps around: no ends, and the network commutes with cyclic shifts of the genes by "
            "multiples of 2 ** (levels - 1) when G is such a multiple), reflect or replicate.",
        )

        @model_validator(mode="after")
        def _check_levels(self) -> UNet1D.Config:
            levels = len(self.channel_mult)
            if any(m < 1 for m in self.channel_mult):
                raise ValueError("network.channel_mult entries must be >= 1")
            for level in self.attention_levels:
                if not 0 <= level < levels:
                    raise ValueError(
                        f"network.attention_levels has level {level}, but channel_mult defines levels 0..{levels - 1}"
                    )
            used = {self.channel_mult[level] for level in self.attention_levels}
            if self.mid_attention:
                used.add(self.channel_mult[-1])
            for mult in sorted(used):
                channels = self.base_channels * mult
                if channels % self.attention_heads:
                    raise ValueError(
                        f"network.attention_heads ({self.attention_heads}) must divide the {channels} channels "
                        "of every attention level"
                    )
            return self

    def __init__(self, config: Config, spec: DataSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec
        c = config
        levels = len(c.channel_mult)
        self.pad_multiple = 2 ** (levels - 1) if c.downsample else 1
        self.encoder = ConditionEncoder(spec, c.cond_dim)
        self.gene_embedding = (
            nn.Parameter(torch.randn(c.gene_embedding_dim, spec.n_genes) * 0.02) if c.gene_embedding_dim else None
        )

        def res(cin: int, cout: int) -> ResBlock:
            return ResBlock(cin, cout, c.cond_dim, c.kernel_size, c.dropout, c.padding_mode)

        ch = c.base_channels
        pad = c.padding_mode
        self.input_conv = nn.Conv1d(1 + c.gene_embedding_dim, ch, c.kernel_size, padding="same", padding_mode=pad)
        skip_channels = [ch]
        self.down = nn.ModuleList()
        for level, mult in enumerate(c.channel_mult):
            for _ in range(c.num_res_blocks):
                layers: list[nn.Module] = [res(ch, mult * c.base_channels)]
                ch = mult * c.base_channels
                if level in c.attention_levels:
                    layers.append(AttentionBlock(ch, c.attention_heads))
                self.down.append(Stage(*layers))
                skip_channels.append(ch)
            if level != levels - 1:
                self.down.append(Stage(Downsample(ch, c.downsample, c.padding_mode)))
                skip_channels.append(ch)

        mid: list[nn.Module] = [res(ch, ch)]
        if c.mid_attention:
            mid.append(AttentionBlock(ch, c.attention_heads))
        mid.append(res(ch, ch))
        self.mid = Stage(*mid)

        self.up = nn.ModuleList()
        for level, mult in reversed(list(enumerate(c.channel_mult))):
            for i in range(c.num_res_blocks + 1):
                skip = skip_channels.pop() if c.skip_connections else 0
                layers = [res(ch + skip, mult * c.base_channels)]
                ch = mult * c.base_channels
                if level in c.attention_levels:
                    layers.append(AttentionBlock(ch, c.attention_heads))
                if level and i == c.num_res_blocks:
                    layers.append(Upsample(ch, c.downsample, c.padding_mode))
                self.up.append(Stage(*layers))

        self.out = nn.Sequential(
            group_norm(ch), nn.SiLU(), _zero(nn.Conv1d(ch, 1, c.kernel_size, padding="same", padding_mode=pad))
        )

    @classmethod
    def knob_step(cls, knob: str, knobs: Mapping[str, Any]) -> int:
        """Granularity of ``knob`` for parameter matching: with attention, ``base_channels`` comes in multiples of
        ``attention_heads``; else 1.
        """
        if knob == "base_channels" and (knobs.get("mid_attention", False) or knobs.get("attention_levels", ())):
            return int(knobs.get("attention_heads", cls.Config.model_fields["attention_heads"].default))
        return 1

    @classmethod
    def tiny_config(cls) -> dict:
        """A very small configuration for tests (two levels, attention, gene embedding)."""
        return {
            "base_channels": 8,
            "channel_mult": [1, 2],
            "num_res_blocks": 1,
            "attention_levels": [1],
            "mid_attention": True,
            "attention_heads": 2,
            "gene_embedding_dim": 2,
            "cond_dim": 8,
        }

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float, cond: CondBatch) -> torch.Tensor:
        """Velocity ``[B, G]`` at state ``x_t`` ``[B, G]``, time ``t`` and condition ``cond``."""
        check_expression(x_t, self.spec.n_genes)
        batch, genes = x_t.shape
        dtype = self.input_conv.weight.dtype
        t = normalize_time(t, batch, x_t.device)
        emb = self.encoder.pooled(t, cond)

        h = rearrange(x_t.to(dtype), "b g -> b 1 g")
        if self.gene_embedding is not None:
            h = torch.cat([h, repeat(self.gene_embedding.to(h.dtype), "e g -> b e g", b=batch)], dim=1)
        padded = -(-genes // self.pad_multiple) * self.pad_multiple
        h = F.pad(h, (0, padded - genes))

        h = self.input_conv(h)
        skips = [h]
        for stage in self.down:
            h = stage(h, emb)
            skips.append(h)
        h = self.mid(h, emb)
        for stage in self.up:
            if self.config.skip_connections:
                skip = skips.pop()
                h = torch.cat([h, skip.to(h.dtype)], dim=1)
            h = stage(h, emb)
        out = self.out(h)
        return out[:, 0, :genes].to(x_t.dtype)
