"""Building blocks shared by the backbones: time and condition embeddings, and attention.

Nothing here is registered; a backbone module imports what it needs, e.g.
``from arch_lab.networks.layers import ConditionEncoder, normalize_time``.
"""

from __future__ import annotations

from arch_lab.networks.layers.attention import (
    MultiHeadAttention,
    attention,
    check_full_attention_memory,
    force_backend,
    last_backend,
)
from arch_lab.networks.layers.conditioning import (
    ConditionEncoder,
    SinusoidalTimeEmbedding,
    check_expression,
    normalize_time,
)

__all__ = [
    "ConditionEncoder",
    "MultiHeadAttention",
    "SinusoidalTimeEmbedding",
    "attention",
    "check_expression",
    "check_full_attention_memory",
    "force_backend",
    "last_backend",
    "normalize_time",
]
