"""``MultiheadAttention``, PyTorch's ``nn.MultiheadAttention`` with its parameter names
(``in_proj_weight``, ``in_proj_bias``, ``out_proj.weight``, ``out_proj.bias``), so weights
saved from PyTorch load as they are."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ferrograd import _core
from ferrograd._core import NdArray, Tensor
from ferrograd.layers._init import _check_dtype, constant_parameter, uniform_parameter
from ferrograd.layers.linear import Linear
from ferrograd.layers.module import Module

__all__ = ["MultiheadAttention"]


def _attention(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    mask: Tensor | None,
    dropout_p: float,
    training: bool,
    need_weights: bool = True,
) -> tuple[Tensor, Tensor | None]:
    """Scaled dot-product attention over the last two axes: ``q`` (..., L, D), ``k``
    (..., S, D), ``v`` (..., S, Dv) → ``(softmax(q kᵀ/√D + mask) v, weights or None)``.

    ``mask`` is None or an additive float Tensor broadcastable to (..., L, S) (-inf where
    a position is blocked). The weights are returned after dropout, as PyTorch's
    ``MultiheadAttention`` returns them. Without ``need_weights`` (and with no mask that
    takes a gradient) the fused ``scaled_dot_product_attention`` runs instead, as in
    PyTorch: a row with every position blocked is then 0, not NaN.
    """
    if not need_weights and (mask is None or not mask.requires_grad):
        # The fused kernel: no (L, S) weights kept, the backward from per-row statistics.
        out = _core.scaled_dot_product_attention(
            q, k, v, mask, dropout_p if training else 0.0, False, None
        )
        return out, None
    # q is scaled before the product, as PyTorch does (smaller intermediate values).
    scores = (q * (1.0 / math.sqrt(q.shape[-1]))) @ k.transpose(-2, -1)
    if mask is not None:
        scores = scores + mask
    weights = scores.softmax(axis=-1)
    if dropout_p > 0.0 and training:
        weights = _core.dropout(weights, dropout_p, True)
    return weights @ v, (weights if need_weights else None)


def _float_mask(name: str, mask: Any, dtype: str) -> Tensor:
    """A bool mask (True = blocked) as an additive -inf/0 Tensor; a float mask as it is
    (a float Tensor keeps its graph). Integer masks are refused, as in PyTorch."""
    if isinstance(mask, Tensor) and mask.dtype in ("float32", "float64"):
        return mask if mask.dtype == dtype else mask.astype(dtype)
    arr = mask.numpy() if isinstance(mask, (Tensor, NdArray)) else np.asarray(mask)
    if arr.dtype == np.bool_:
        return Tensor(np.where(arr, -np.inf, 0.0).astype(dtype))
    if np.issubdtype(arr.dtype, np.floating):
        return Tensor(arr.astype(dtype))
    raise TypeError(f"MultiheadAttention: {name} must be a bool or float mask, got {arr.dtype}")


class MultiheadAttention(Module):
    """Multi-head attention, ``torch.nn.MultiheadAttention``'s layer: the query, key and
    value are projected by the rows of ``in_proj_weight`` (3·E, E) and ``in_proj_bias``
    (3·E,), split into ``num_heads`` heads of size E / num_heads, attended with
    ``softmax(q kᵀ / √head_dim + mask)``, merged and projected by ``out_proj`` (a
    ``Linear(E, E)``).

    Initialised as in PyTorch: ``in_proj_weight`` Xavier-uniform, both biases zero,
    ``out_proj.weight`` like any ``Linear``. Inputs are (N, L, E) with ``batch_first=True``
    (the default here, as docs/design.md records), (L, N, E) with ``batch_first=False``, or
    unbatched (L, E). ``dropout`` drops attention weights in training mode.
    """

    def __init__(
        self,
        embed_dim: int,
        num_heads: int,
        dropout: float = 0.0,
        bias: bool = True,
        batch_first: bool = True,
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        for arg, value in (("embed_dim", embed_dim), ("num_heads", num_heads)):
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
                raise TypeError(f"MultiheadAttention: {arg} must be an int, got {value!r}")
            if value <= 0:
                raise ValueError(f"MultiheadAttention: {arg} must be positive, got {value}")
        if embed_dim % num_heads:
            raise ValueError(
                f"MultiheadAttention: embed_dim={embed_dim} must be divisible by "
                f"num_heads={num_heads}"
            )
        if not 0.0 <= dropout < 1.0:
            raise ValueError(f"MultiheadAttention: dropout must be in [0, 1), got {dropout}")
        dtype = _check_dtype(dtype)
        self.embed_dim = int(embed_dim)
        self.num_heads = int(num_heads)
        self.head_dim = self.embed_dim // self.num_heads
        self.dropout = float(dropout)
        self.batch_first = bool(batch_first)
        e = self.embed_dim
        # xavier_uniform_ on a (3E, E) matrix: fan_in E, fan_out 3E.
        self.in_proj_weight = uniform_parameter((3 * e, e), math.sqrt(6.0 / (4 * e)), dtype)
        if bias:
            self.in_proj_bias = constant_parameter((3 * e,), 0.0, dtype)
        else:
            self.register_parameter("in_proj_bias", None)
        self.out_proj = Linear(e, e, bias=bias, dtype=dtype)
        if bias:
            self.out_proj.bias = constant_parameter((e,), 0.0, dtype)

    def extra_repr(self) -> str:
        return (
            f"embed_dim={self.embed_dim}, num_heads={self.num_heads}, dropout={self.dropout}, "
            f"batch_first={self.batch_first}"
        )

    # -- forward ---------------------------------------------------------------------------

    def _check_inputs(self, query: Any, key: Any, value: Any) -> bool:
        """Checks types and shapes; returns whether the inputs are batched."""
        for name, t in (("query", query), ("key", key), ("value", value)):
            if not isinstance(t, Tensor):
                raise TypeError(
                    f"MultiheadAttention: {name} must be a Tensor, got {type(t).__name__}"
                )
        if query.ndim not in (2, 3):
            raise ValueError(
                f"MultiheadAttention: query must be (N, L, E) or unbatched (L, E), got shape "
                f"{query.shape}"
            )
        if key.ndim != query.ndim or value.ndim != query.ndim:
            raise ValueError(
                f"MultiheadAttention: query, key and value must have the same number of axes, "
                f"got shapes {query.shape}, {key.shape}, {value.shape}"
            )
        for name, t in (("query", query), ("key", key), ("value", value)):
            if t.shape[-1] != self.embed_dim:
                raise ValueError(
                    f"MultiheadAttention: {name} of shape {t.shape} does not end in "
                    f"embed_dim={self.embed_dim}"
                )
        # The sequence axis: 0 unbatched, 1 batch-first, 0 otherwise (the batch is axis 1).
        seq = 1 if query.ndim == 3 and self.batch_first else 0
        if key.shape[seq] != value.shape[seq]:
            raise ValueError(
                f"MultiheadAttention: key and value must have the same sequence length, got "
                f"shapes {key.shape} and {value.shape}"
            )
        if query.ndim == 3 and not (
            query.shape[1 - seq] == key.shape[1 - seq] == value.shape[1 - seq]
        ):
            raise ValueError(
                f"MultiheadAttention: query, key and value must have the same batch size, got "
                f"shapes {query.shape}, {key.shape}, {value.shape}"
            )
        return bool(query.ndim == 3)

    def _mask(
        self,
        attn_mask: Any,
        key_padding_mask: Any,
        is_causal: bool,
        n: int,
        length: int,
        source: int,
        dtype: str,
        batched: bool,
    ) -> Tensor | None:
        """Every mask given, merged into one additive float mask broadcastable to
        (N, H, L, S)."""
        h = self.num_heads
        masks: list[Tensor] = []
        if attn_mask is not None:
            m = _float_mask("attn_mask", attn_mask, dtype)
            if m.shape == (length, source):
                masks.append(m)
            elif m.ndim == 3 and m.shape == (n * h, length, source):
                masks.append(m.reshape(n, h, length, source))
            else:
                three_d = f"(N·num_heads, L, S) = {(n * h, length, source)}"
                if not batched:
                    three_d = f"(num_heads, L, S) = {(h, length, source)}"
                raise ValueError(
                    f"MultiheadAttention: attn_mask of shape {m.shape} should be (L, S) = "
                    f"{(length, source)} or {three_d}"
                )
        if key_padding_mask is not None:
            m = _float_mask("key_padding_mask", key_padding_mask, dtype)
            want = (n, source) if batched else (source,)
            if m.shape != want:
                raise ValueError(
                    f"MultiheadAttention: key_padding_mask of shape {m.shape} should be "
                    f"{'(N, S)' if batched else '(S,)'} = {want}"
                )
            masks.append(m.reshape(n, 1, 1, source))
        if is_causal:
            # Position i attends to positions <= i (top-left aligned, as PyTorch's).
            blocked = np.triu(np.ones((length, source), dtype=bool), k=1)
            masks.append(Tensor(np.where(blocked, -np.inf, 0.0).astype(dtype)))
        if not masks:
            return None
        merged = masks[0]
        for m in masks[1:]:
            merged = merged + m
        return merged

    def forward(
        self,
        query: Tensor,
        key: Tensor,
        value: Tensor,
        attn_mask: Any = None,
        need_weights: bool = True,
        is_causal: bool = False,
        *,
        key_padding_mask: Any = None,
        average_attn_weights: bool = True,
    ) -> tuple[Tensor, Tensor | None]:
        """Attends ``query`` to ``key``/``value``; returns ``(output, weights)``.

        ``output`` has the query's shape. ``weights`` (after dropout) are (N, L, S)
        averaged over the heads, (N, num_heads, L, S) with ``average_attn_weights=False``,
        without the N axis for unbatched input, or None when ``need_weights=False``.

        Masks: ``attn_mask`` is (L, S) or (N·num_heads, L, S); ``key_padding_mask`` is
        (N, S) (or (S,) unbatched). A bool mask marks positions that may NOT attend
        (True = blocked), as in PyTorch; a float mask is added to the scores.
        ``is_causal=True`` blocks each position from attending to later ones (here it
        needs no ``attn_mask``, and combines with one if given). A row with every
        position blocked gives NaN, as in PyTorch; with ``need_weights=False`` the fused
        attention kernel runs and such a row gives 0 (PyTorch's fast path does the same).
        A mask of the wrong shape raises ValueError, an integer mask TypeError.
        """
        batched = self._check_inputs(query, key, value)
        self_attention = query is key and key is value  # decided before reshaping
        if not batched:
            query, key, value = (t.reshape(1, *t.shape) for t in (query, key, value))
        elif not self.batch_first:
            query, key, value = (t.transpose(0, 1) for t in (query, key, value))
        n, length, e = query.shape
        source = key.shape[1]
        h, d = self.num_heads, self.head_dim
        w, b = self.in_proj_weight, self.in_proj_bias

        def heads(x: Tensor, rows: slice) -> Tensor:
            proj = _core.linear(x, w[rows], None if b is None else b[rows])
            return proj.reshape(n, x.shape[1], h, d).permute(0, 2, 1, 3)  # (N, H, ·, D)

        if self_attention:
            # Self-attention: one (E → 3E) projection, then split into q, k, v.
            qkv = _core.linear(query, w, b).reshape(n, length, 3, h, d).permute(2, 0, 3, 1, 4)
            q, k, v = qkv[0], qkv[1], qkv[2]
        else:
            q = heads(query, slice(0, e))
            k = heads(key, slice(e, 2 * e))
            v = heads(value, slice(2 * e, 3 * e))
        if is_causal and attn_mask is None and key_padding_mask is None and not need_weights:
            # The fused kernel applies the causal mask itself (never materialised).
            out = _core.scaled_dot_product_attention(
                q, k, v, None, self.dropout if self.training else 0.0, True, None
            )
            weights = None
        else:
            mask = self._mask(
                attn_mask, key_padding_mask, is_causal, n, length, source, query.dtype, batched
            )
            out, weights = _attention(q, k, v, mask, self.dropout, self.training, need_weights)
        out = self.out_proj(out.permute(0, 2, 1, 3).reshape(n, length, e))
        if not batched:
            out = out.reshape(length, e)
        elif not self.batch_first:
            out = out.transpose(0, 1)
        if weights is not None:
            if average_attn_weights:
                weights = weights.mean(axis=1)
            if not batched:
                weights = weights.reshape(*weights.shape[1:])
        return out, weights
