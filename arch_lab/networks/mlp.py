"""Residual MLP over the whole expression vector."""

from __future__ import annotations

from typing import ClassVar, Literal

import torch
from pydantic import BaseModel, ConfigDict, Field
from torch import nn

from arch_lab.networks._registry import register_network
from arch_lab.networks.layers import ConditionEncoder, check_expression, normalize_time
from arch_lab.spec import CondBatch, DataSpec

NormKind = Literal["layer", "rms"]


def make_norm(width: int, enabled: bool, kind: NormKind) -> nn.Module:
    """A normalisation over the last ``width`` features: LayerNorm (centre and scale) or RMSNorm (scale only), or
    the identity when not ``enabled``.
    """
    if not enabled:
        return nn.Identity()
    return nn.LayerNorm(width) if kind == "layer" else nn.RMSNorm(width)


class MLPBlock(nn.Module):
    """``x + Linear(Dropout(SiLU(Linear(FiLM(Norm(x))))))``.

    Parameters
    ----------
    width
        Hidden width.
    cond_dim
        Width of the conditioning embedding for FiLM; None disables FiLM.
    dropout
        Dropout after the activation.
    residual
        Add the block input to its output.
    norm
        Normalise the block input first.
    norm_kind
        ``"layer"`` (LayerNorm) or ``"rms"`` (RMSNorm).
    """

    def __init__(
        self,
        width: int,
        cond_dim: int | None,
        dropout: float,
        residual: bool,
        norm: bool,
        norm_kind: NormKind = "layer",
    ) -> None:
        super().__init__()
        self.residual = residual
        self.norm = make_norm(width, norm, norm_kind)
        self.film = nn.Sequential(nn.SiLU(), nn.Linear(cond_dim, 2 * width)) if cond_dim is not None else None
        self.body = nn.Sequential(nn.Linear(width, width), nn.SiLU(), nn.Dropout(dropout), nn.Linear(width, width))

    def forward(self, x: torch.Tensor, emb: torch.Tensor | None = None) -> torch.Tensor:
        """Apply the block to ``x`` ``[B, width]`` with conditioning ``emb`` ``[B, cond_dim]``."""
        h = self.norm(x)
        if self.film is not None:
            scale, shift = self.film(emb).chunk(2, dim=-1)
            h = h * (1 + scale) + shift
        h = self.body(h)
        return x + h if self.residual else h


@register_network("mlp")
class ResidualMLP(nn.Module):
    """Residual MLP velocity network.

    ``x_t`` is projected to ``width``, passed through ``depth`` residual blocks and projected back to G genes.
    The pooled time and condition embedding either modulates every block (``conditioning="film"``) or is
    concatenated to ``x_t`` at the input only (``conditioning="concat"``).

    Parameters
    ----------
    config
        The network's knobs.
    spec
        Data facts (gene count, vocabularies).
    """

    #: Knob chosen by parameter matching when none is named.
    match_knob: ClassVar[str] = "width"

    class Config(BaseModel):
        """Knobs of :class:`ResidualMLP`."""

        model_config = ConfigDict(extra="forbid")

        width: int = Field(512, ge=1, description="Hidden width.")
        depth: int = Field(3, ge=0, description="Number of residual blocks.")
        conditioning: Literal["film", "concat"] = Field(
            "film", description="FiLM in every block, or concatenation to the input."
        )
        dropout: float = Field(0.0, ge=0.0, lt=1.0, description="Dropout inside blocks.")
        cond_dim: int = Field(128, ge=1, description="Width of the time and condition embedding.")
        residual: bool = Field(True, description="Residual connections around blocks.")
        norm: bool = Field(
            True,
            description="Normalise at the start of every block and before the output layer (``norm_kind``; "
            "``block_norm`` and ``output_norm`` override either place).",
        )
        norm_kind: NormKind = Field(
            "layer", description="Normalisation used where ``norm`` puts one: LayerNorm or RMSNorm (no centring)."
        )
        block_norm: bool | None = Field(None, description="Normalise the input of every block; None follows ``norm``.")
        output_norm: bool | None = Field(
            None, description="Normalise the hidden vector before the output layer; None follows ``norm``."
        )
        linear_skip: bool = Field(False, description="Add a direct linear map G -> G from x_t to the output.")

    def __init__(self, config: Config, spec: DataSpec) -> None:
        super().__init__()
        self.config = config
        self.spec = spec
        genes = spec.n_genes
        film = config.conditioning == "film"
        self.encoder = ConditionEncoder(spec, config.cond_dim)
        self.input = nn.Linear(genes + (0 if film else config.cond_dim), config.width)
        block_norm = config.norm if config.block_norm is None else config.block_norm
        output_norm = config.norm if config.output_norm is None else config.output_norm
        self.blocks = nn.ModuleList(
            MLPBlock(
                config.width,
                config.cond_dim if film else None,
                config.dropout,
                config.residual,
                block_norm,
                config.norm_kind,
            )
            for _ in range(config.depth)
        )
        self.output_norm = make_norm(config.width, output_norm, config.norm_kind)
        self.output = nn.Linear(config.width, genes)
        nn.init.zeros_(self.output.weight)
        nn.init.zeros_(self.output.bias)
        self.skip = nn.Linear(genes, genes, bias=False) if config.linear_skip else None

    @classmethod
    def tiny_config(cls) -> dict:
        """A very small configuration for tests."""
        return {"width": 16, "depth": 2, "cond_dim": 8}

    def output_span(self) -> torch.Tensor | None:
        """``[G, width + 1]``: the output layer's columns and bias, which span every velocity the network can give
        (None with ``linear_skip``, whose ``G x G`` map reaches every gene). See :mod:`arch_lab.methods.readouts`.
        """
        if self.skip is not None:
            return None
        return torch.cat([self.output.weight, self.output.bias[:, None]], dim=1)

    def hidden(self, x_t: torch.Tensor, t: torch.Tensor | float, cond: CondBatch) -> torch.Tensor:
        """``[B, width]``: the residual stream after the last block, before the output normalisation and layer
        (read by :func:`arch_lab.methods.readouts.hidden_source_share`).
        """
        return self._stream(x_t, t, cond)[0]

    def _stream(self, x_t: torch.Tensor, t: torch.Tensor | float, cond: CondBatch) -> tuple[torch.Tensor, torch.Tensor]:
        """The residual stream after the last block and ``x_t`` in the network's dtype."""
        check_expression(x_t, self.spec.n_genes)
        dtype = self.input.weight.dtype
        t = normalize_time(t, x_t.shape[0], x_t.device)
        x = x_t.to(dtype)
        emb = self.encoder.pooled(t, cond)
        film: torch.Tensor | None = emb  # what modulates the blocks (nothing when concatenated to the input)
        if self.config.conditioning == "concat":
            h = self.input(torch.cat([x, emb.to(x.dtype)], dim=-1))
            film = None
        else:
            h = self.input(x)
        for block in self.blocks:
            h = block(h, film)
        return h, x

    def forward(self, x_t: torch.Tensor, t: torch.Tensor | float, cond: CondBatch) -> torch.Tensor:
        """Velocity ``[B, G]`` at state ``x_t`` ``[B, G]``, time ``t`` and condition ``cond``."""
        h, x = self._stream(x_t, t, cond)
        out = self.output(nn.functional.silu(self.output_norm(h)))
        if self.skip is not None:
            out = out + self.skip(x)
        return out.to(x_t.dtype)
