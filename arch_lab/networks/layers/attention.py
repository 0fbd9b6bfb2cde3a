"""Scaled dot-product attention with an xformers fast path, and a multi-head attention module.

Every attention computation in :mod:`arch_lab.networks` goes through :func:`attention`. On CUDA it uses
``xformers.ops.memory_efficient_attention`` when xformers is importable and accepts the inputs, and falls
back to :func:`torch.nn.functional.scaled_dot_product_attention` otherwise. The backend of the latest call
is reported by :func:`last_backend`; :func:`force_backend` pins one for a block of code.

One exception: on CPU, :class:`MultiHeadAttention` cross-attending to at most :data:`FEW_KEYS_MAX` context
tokens (gene tokens reading a handful of condition or latent tokens) computes the same function with two
batched products whose inner width is ``heads x keys``, folding the query and output projections into small
per-row matrices (backend ``"few_keys"``). It is only chosen under ``"auto"``; pinning ``"sdpa"`` or
``"xformers"`` routes every call through :func:`attention`.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator
from types import ModuleType

import torch
import torch.nn.functional as F
from einops import rearrange
from torch import nn

#: Names accepted by the ``backend`` argument of :func:`attention` and by :func:`force_backend`.
BACKENDS = ("auto", "xformers", "sdpa")
#: On CPU, cross-attention to at most this many context tokens takes the few-key path of
#: :class:`MultiHeadAttention` (backend ``"few_keys"``) under ``"auto"``.
FEW_KEYS_MAX = 16

_last_backend: str | None = None
_forced_backend: str = "auto"


@functools.cache
def _xformers_ops() -> ModuleType | None:
    """``xformers.ops`` if it can be imported, else None."""
    try:
        import xformers.ops as xops
    except Exception:
        return None
    return xops


def xformers_available() -> bool:
    """Whether ``xformers.ops`` can be imported."""
    return _xformers_ops() is not None


def last_backend() -> str | None:
    """Backend of the latest attention computed: ``"xformers"``, ``"sdpa"``, ``"few_keys"`` (the CPU path of
    :class:`MultiHeadAttention` for few context tokens), or None before any call.
    """
    return _last_backend


@contextlib.contextmanager
def force_backend(name: str) -> Iterator[None]:
    """Pin the backend of every :func:`attention` call made inside the ``with`` block.

    Parameters
    ----------
    name
        ``"xformers"``, ``"sdpa"`` or ``"auto"`` (the default choice).
    """
    global _forced_backend
    _check_backend(name)
    previous = _forced_backend
    _forced_backend = name
    try:
        yield
    finally:
        _forced_backend = previous


def _check_backend(name: str) -> None:
    if name not in BACKENDS:
        raise ValueError(f"unknown attention backend {name!r}: expected one of {', '.join(BACKENDS)}")


def _xformers_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None, dropout_p: float
) -> torch.Tensor:
    xops = _xformers_ops()
    if xops is None:
        raise RuntimeError("xformers is not importable")
    if not q.is_cuda:
        raise RuntimeError("the xformers backend needs CUDA tensors")
    batch, heads, len_q, _ = q.shape
    len_k = k.shape[2]
    bias = None
    if key_padding_mask is not None:
        # xformers wants the bias' last dimension aligned to 8 elements: allocate wider, then slice.
        aligned = -(-len_k // 8) * 8
        storage = torch.zeros(batch, heads, len_q, aligned, device=q.device, dtype=q.dtype)
        bias = storage[..., :len_k]
        bias.masked_fill_(~key_padding_mask[:, None, None, :], float("-inf"))
    out = xops.memory_efficient_attention(
        rearrange(q, "b h l d -> b l h d"),
        rearrange(k, "b h l d -> b l h d"),
        rearrange(v, "b h l d -> b l h d"),
        attn_bias=bias,
        p=dropout_p,
    )
    return rearrange(out, "b l h d -> b h l d")


def _sdpa_attention(
    q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, key_padding_mask: torch.Tensor | None, dropout_p: float
) -> torch.Tensor:
    mask = None if key_padding_mask is None else key_padding_mask[:, None, None, :]
    return F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=dropout_p)


def attention(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    key_padding_mask: torch.Tensor | None = None,
    *,
    dropout_p: float = 0.0,
    backend: str | None = None,
) -> torch.Tensor:
    """Softmax attention ``softmax(q k^T / sqrt(D)) v`` over the key axis.

    Parameters
    ----------
    q
        ``[B, H, Lq, D]`` queries.
    k, v
        ``[B, H, Lk, D]`` keys and values.
    key_padding_mask
        Optional ``[B, Lk]`` bool tensor, True for keys that take part. A row with no kept key yields zeros.
    dropout_p
        Dropout probability on the attention weights (pass 0 in evaluation).
    backend
        ``"auto"`` (xformers on CUDA when it works, else sdpa), ``"xformers"`` or ``"sdpa"``. None uses the
        backend pinned by :func:`force_backend`, ``"auto"`` by default.

    Returns
    -------
    torch.Tensor
        ``[B, H, Lq, D]``.
    """
    global _last_backend
    choice = _forced_backend if backend is None else backend
    _check_backend(choice)

    empty_rows = None
    if key_padding_mask is not None:
        key_padding_mask = key_padding_mask.to(device=q.device, dtype=torch.bool)
        has_key = key_padding_mask.any(dim=-1)
        if not bool(has_key.all()):
            empty_rows = ~has_key
            key_padding_mask = key_padding_mask | empty_rows[:, None]

    if choice == "xformers":
        out = _xformers_attention(q, k, v, key_padding_mask, dropout_p)
        _last_backend = "xformers"
    elif choice == "auto" and q.is_cuda and xformers_available():
        try:
            out = _xformers_attention(q, k, v, key_padding_mask, dropout_p)
            _last_backend = "xformers"
        except Exception:
            out = _sdpa_attention(q, k, v, key_padding_mask, dropout_p)
            _last_backend = "sdpa"
    else:
        out = _sdpa_attention(q, k, v, key_padding_mask, dropout_p)
        _last_backend = "sdpa"

    if empty_rows is not None:
        out = out.masked_fill(empty_rows[:, None, None, None], 0.0)
    return out


class MultiHeadAttention(nn.Module):
    """Multi-head attention with query, key, value and output projections.

    Self-attention when called without ``context``; cross-attention from ``x`` to ``context`` otherwise.

    Parameters
    ----------
    dim
        Width of the queries and of the output.
    heads
        Number of heads; must divide ``dim``.
    kv_dim
        Width of the context tokens (defaults to ``dim``).
    dropout
        Dropout probability on the attention weights during training.
    zero_init_output
        Start the output projection at zero, so a residual branch begins as the identity.
    """

    def __init__(
        self, dim: int, heads: int, kv_dim: int | None = None, dropout: float = 0.0, zero_init_output: bool = False
    ) -> None:
        super().__init__()
        if heads < 1 or dim % heads != 0:
            raise ValueError(f"attention heads ({heads}) must divide the width ({dim})")
        kv_dim = dim if kv_dim is None else kv_dim
        self.heads = heads
        self.dropout = dropout
        self.to_q = nn.Linear(dim, dim)
        self.to_k = nn.Linear(kv_dim, dim)
        self.to_v = nn.Linear(kv_dim, dim)
        self.to_out = nn.Linear(dim, dim)
        if zero_init_output:
            nn.init.zeros_(self.to_out.weight)
            nn.init.zeros_(self.to_out.bias)

    def forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor | None = None,
        key_padding_mask: torch.Tensor | None = None,
        query_modulation: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Attend from ``x`` ``[B, Lq, dim]`` to ``context`` ``[B, Lk, kv_dim]`` (or to ``x`` itself).

        Parameters
        ----------
        x
            ``[B, Lq, dim]`` query tokens.
        context
            ``[B, Lk, kv_dim]`` key/value tokens; None for self-attention.
        key_padding_mask
            ``[B, Lk]`` bool, True for context tokens that take part.
        query_modulation
            Optional ``(scale, shift)``, each ``[B, dim]``: the queries are ``x * scale + shift`` (row-wise), as
            after an adaptive normalisation; the few-key path folds them into its per-row matrices.

        Returns
        -------
        torch.Tensor
            ``[B, Lq, dim]``.
        """
        if context is not None and _few_keys_applies(x, context):
            return self._few_keys_forward(x, context, key_padding_mask, query_modulation)
        if query_modulation is not None:
            scale, shift = query_modulation
            x = torch.addcmul(shift[:, None, :], x, scale[:, None, :])
        context = x if context is None else context
        q = rearrange(self.to_q(x), "b l (h d) -> b h l d", h=self.heads)
        k = rearrange(self.to_k(context), "b l (h d) -> b h l d", h=self.heads)
        v = rearrange(self.to_v(context), "b l (h d) -> b h l d", h=self.heads)
        out = attention(q, k, v, key_padding_mask, dropout_p=self.dropout if self.training else 0.0)
        return self.to_out(rearrange(out, "b h l d -> b l (h d)"))

    def _few_keys_forward(
        self,
        x: torch.Tensor,
        context: torch.Tensor,
        key_padding_mask: torch.Tensor | None,
        query_modulation: tuple[torch.Tensor, torch.Tensor] | None = None,
    ) -> torch.Tensor:
        """Cross-attention to few context tokens with the query and output projections folded per row.

        With ``K_b`` the ``[H D, Lk H]`` matrix of row ``b``'s keys that holds key ``s`` of head ``h`` in rows
        ``h D..(h+1) D`` of column ``s H + h`` (zero elsewhere) and ``V_b`` the ``[Lk H, H D]`` matrix of its
        values laid out alike, the scores of all heads are ``x (W_q^T K_b) + b_q K_b`` (``[Lq, Lk H]``, scaled by
        ``1/sqrt(D)``) and the output is ``P (V_b W_o^T) + b_o`` for the per-head softmax ``P``: the same
        function as the generic path, without the ``[B, Lq, dim]`` query projection, head rearrangements and
        output projection over the long query axis. Key-major columns let the softmax run over a middle axis,
        which torch vectorises across heads (several times faster than a softmax over a last axis of a few keys).

        Parameters
        ----------
        x
            ``[B, Lq, dim]`` query tokens.
        context
            ``[B, Lk, kv_dim]`` key/value tokens.
        key_padding_mask
            ``[B, Lk]`` bool, True for context tokens that take part; a row with none yields ``b_o``.
        query_modulation
            Optional ``(scale, shift)``, each ``[B, dim]``, for queries ``x * scale + shift``: folded into the
            score matrix (rows scaled by ``scale``) and the score bias (plus ``shift`` times the score matrix).

        Returns
        -------
        torch.Tensor
            ``[B, Lq, dim]``.
        """
        global _last_backend
        batch, len_k = context.shape[0], context.shape[1]
        heads = self.heads
        head_dim = self.to_q.out_features // heads
        k = self.to_k(context).view(batch, len_k, heads, head_dim) * head_dim**-0.5
        v = self.to_v(context).view(batch, len_k, heads, head_dim)
        eye = torch.eye(heads, dtype=k.dtype, device=k.device)
        # [B, H, D, Lk, H] and [B, Lk, H, H, D], zero off the head diagonal
        keys = (k.permute(0, 2, 3, 1)[..., None] * eye[:, None, None, :]).reshape(
            batch, heads * head_dim, len_k * heads
        )
        values = (v[:, :, :, None, :] * eye[:, :, None]).reshape(batch, len_k * heads, heads * head_dim)
        score_proj = torch.matmul(self.to_q.weight.t(), keys)  # [B, dim, H Lk]
        score_bias = torch.matmul(self.to_q.bias, keys)  # [B, H Lk]
        if query_modulation is not None:
            scale, shift = query_modulation
            score_bias = score_bias + torch.matmul(shift[:, None, :], score_proj)[:, 0]
            score_proj = score_proj * scale[:, :, None]
        out_proj = torch.matmul(values, self.to_out.weight.t())  # [B, H Lk, dim]
        if key_padding_mask is not None:
            keep = key_padding_mask.to(device=x.device, dtype=torch.bool)
            has_key = keep.any(dim=-1)
            keep = keep | ~has_key[:, None]
            score_bias = score_bias.masked_fill(~keep.repeat_interleave(heads, dim=1), float("-inf"))
            if not bool(has_key.all()):
                out_proj = out_proj * has_key[:, None, None].to(out_proj.dtype)
        scores = torch.baddbmm(score_bias[:, None, :], x, score_proj)
        probs = torch.softmax(scores.view(batch, x.shape[1], len_k, heads), dim=-2)
        if self.training and self.dropout > 0:
            probs = F.dropout(probs, self.dropout)
        _last_backend = "few_keys"
        return torch.baddbmm(self.to_out.bias, probs.view(batch, x.shape[1], len_k * heads), out_proj)


def _few_keys_applies(x: torch.Tensor, context: torch.Tensor) -> bool:
    """Whether cross-attention from ``x`` to ``context`` takes the few-key path (CPU, ``"auto"``, few keys)."""
    return (
        _forced_backend == "auto"
        and x.device.type == "cpu"
        and x.ndim == 3
        and context.ndim == 3
        and context.shape[1] <= FEW_KEYS_MAX
    )


def available_memory_bytes(device: torch.device | str) -> int | None:
    """Memory that ``device`` can still hand out, in bytes; None when it cannot be told.

    CUDA: the free memory reported by :func:`torch.cuda.mem_get_info`. CPU: ``MemAvailable`` from
    ``/proc/meminfo`` (or psutil's ``available`` when psutil is installed and ``/proc`` is not readable).
    """
    device = torch.device(device)
    if device.type == "cuda":
        return int(torch.cuda.mem_get_info(device)[0])
    if device.type != "cpu":
        return None
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    try:
        import psutil
    except ImportError:
        return None
    return int(psutil.virtual_memory().available)


def full_attention_bytes(
    batch: int, heads: int, length: int, layers: int, itemsize: int = 4, training: bool = True
) -> int:
    """Bytes of the ``[B, H, L, L]`` attention weights of ``layers`` full self-attention layers.

    Evaluation holds the scores and their softmax of one layer at a time (2 copies); training keeps the softmax
    of every layer for the backward pass plus the scores of the layer being computed (``layers + 1`` copies). Fused kernels may need less,
    so this is an upper bound of the quadratic part, the part that decides whether a gene count fits.
    """
    if layers < 1:
        return 0
    per_layer = batch * heads * length * length * itemsize
    return (layers + 1) * per_layer if training else 2 * per_layer


def check_full_attention_memory(
    batch: int,
    heads: int,
    length: int,
    layers: int,
    device: torch.device | str,
    itemsize: int = 4,
    training: bool = True,
    limit_bytes: int | None = None,
) -> None:
    """Refuse full self-attention over ``length`` tokens whose attention weights would not fit in memory.

    Parameters
    ----------
    batch, heads, length, layers
        Shape of the computation: rows, heads, tokens (genes) and self-attention layers.
    device
        Where it would run; its available memory is the limit unless ``limit_bytes`` is given.
    itemsize
        Bytes per element of the attention weights.
    training
        Whether the weights of every layer are kept for a backward pass.
    limit_bytes
        Memory limit in bytes (None: what ``device`` has available now).

    Raises
    ------
    ConfigError
        When :func:`full_attention_bytes` exceeds the limit; the message is one line and suggests the
        linear-in-G alternatives.
    """
    from arch_lab.errors import ConfigError

    need = full_attention_bytes(batch, heads, length, layers, itemsize, training)
    limit = available_memory_bytes(device) if limit_bytes is None else limit_bytes
    if limit is not None and need > limit:
        raise ConfigError(
            f"full gene self-attention over {length} genes at batch {batch} needs about {need / 2**30:.1f} GiB "
            f"for attention weights but {limit / 2**30:.1f} GiB is available; set network.self_attention: latent "
            "(or none for cross-attention only), or lower the batch size"
        )
