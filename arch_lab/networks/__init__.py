"""Velocity networks for flow matching, built by name from a registry.

Adding a backbone takes one new module defining a class decorated with :func:`register_network` and one
import line below.
"""

from __future__ import annotations

from arch_lab.networks.attention import MultiHeadAttention, attention, force_backend, last_backend
from arch_lab.networks.conditioning import ConditionEncoder, SinusoidalTimeEmbedding, normalize_time
from arch_lab.networks.gene_transformer import GeneTransformer
from arch_lab.networks.mlp import ResidualMLP
from arch_lab.networks.registry import (
    build_network,
    count_parameters,
    get_network_class,
    list_networks,
    network_config,
    network_name,
    register_network,
    validate_network_config,
)
from arch_lab.networks.unet1d import UNet1D

__all__ = [
    "ConditionEncoder",
    "GeneTransformer",
    "MultiHeadAttention",
    "ResidualMLP",
    "SinusoidalTimeEmbedding",
    "UNet1D",
    "attention",
    "build_network",
    "count_parameters",
    "force_backend",
    "get_network_class",
    "last_backend",
    "list_networks",
    "network_config",
    "network_name",
    "normalize_time",
    "register_network",
    "validate_network_config",
]
