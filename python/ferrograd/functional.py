"""Neural-network functions on Tensors, PyTorch's ``torch.nn.functional`` for ferrograd.

Every function is one call into Rust: the forward and its backward rule are fused kernels
there (im2col + GEMM for ``conv2d``, a max-shifted log-sum-exp for ``cross_entropy``), and
large work runs with the GIL released. Inputs may be ``Tensor`` or ``NdArray`` (NumPy arrays
and lists are copied into constant tensors); each function returns a ``Tensor``.

Class targets (``cross_entropy``, ``nll_loss``) may be a list of ints, an integer NumPy array,
or a float array/Tensor of whole numbers; a negative, fractional or out-of-range class raises
``ValueError`` naming it.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Union

import numpy.typing as npt

from ferrograd import _core
from ferrograd._core import NdArray, Tensor

__all__ = [
    "clamp",
    "conv2d",
    "cross_entropy",
    "dropout",
    "gelu",
    "layer_norm",
    "linear",
    "max_pool2d",
    "maximum",
    "minimum",
    "nll_loss",
    "packed_attention",
    "scaled_dot_product_attention",
]

ArrayLike = Union[Tensor, NdArray, npt.NDArray[Any], Sequence[Any], float]
Pair = Union[int, tuple[int, int]]
Targets = Union[Sequence[int], npt.NDArray[Any], Tensor, NdArray]


def linear(x: ArrayLike, weight: ArrayLike, bias: ArrayLike | None = None) -> Tensor:
    """``x @ weight.T + bias``, fused (the transpose is never materialised).

    ``x`` is ``(..., in_features)``, ``weight`` ``(out_features, in_features)`` (PyTorch's
    layout), ``bias`` ``(out_features,)`` or None; the result is ``(..., out_features)``.
    """
    return _core.linear(x, weight, bias)


def conv2d(
    x: ArrayLike,
    weight: ArrayLike,
    bias: ArrayLike | None = None,
    stride: Pair = 1,
    padding: Pair = 0,
) -> Tensor:
    """2-D convolution (cross-correlation, as PyTorch) with zero padding.

    ``x`` is ``(N, C, H, W)``, ``weight`` ``(O, C, kh, kw)``, ``bias`` ``(O,)`` or None;
    ``stride`` and ``padding`` are an int or an ``(h, w)`` pair. The result is
    ``(N, O, H', W')`` with ``H' = (H + 2·padding - kh) // stride + 1``.
    """
    return _core.conv2d(x, weight, bias, stride, padding)


def max_pool2d(
    x: ArrayLike, kernel_size: Pair, stride: Pair | None = None, padding: Pair = 0
) -> Tensor:
    """2-D max pooling of ``x`` ``(N, C, H, W)``.

    ``stride`` defaults to ``kernel_size`` (as in PyTorch). Padding counts as -inf and may
    be at most half the kernel. NaN propagates; each output's gradient goes to its maximum.
    """
    return _core.max_pool2d(x, kernel_size, stride, padding)


def gelu(x: ArrayLike) -> Tensor:
    """The exact GELU ``0.5·x·(1 + erf(x/√2))`` (PyTorch's default, not the tanh form)."""
    return _core.gelu(x)


def layer_norm(
    x: ArrayLike,
    normalized_shape: int | Sequence[int],
    weight: ArrayLike | None = None,
    bias: ArrayLike | None = None,
    eps: float = 1e-5,
) -> Tensor:
    """Normalises ``x`` over its trailing ``normalized_shape`` axes, as PyTorch's.

    Each row is centred by its mean and divided by ``sqrt(var + eps)`` (the biased variance),
    then multiplied by ``weight`` and shifted by ``bias`` when given (each of shape
    ``normalized_shape``). One fused op: the backward reuses each row's saved mean and
    reciprocal standard deviation. A shape that does not fit raises ValueError.
    """
    return _core.layer_norm(x, normalized_shape, weight, bias, eps)


def dropout(x: ArrayLike, p: float = 0.5, training: bool = True) -> Tensor:
    """Zeroes each element with probability ``p``, scaling the rest by ``1/(1-p)``.

    The mask comes from the generator ``fg.manual_seed`` seeds. With ``training=False`` or
    ``p=0`` it returns ``x`` unchanged; ``p=1`` gives zeros; ``p`` outside [0, 1] raises
    ValueError.
    """
    return _core.dropout(x, p, training)


def cross_entropy(
    logits: ArrayLike,
    target: Targets | int,
    reduction: str = "mean",
    label_smoothing: float = 0.0,
) -> Tensor:
    """Cross-entropy of ``logits`` ``(N, C)`` against ``N`` class indices, fused and stable.

    Computes log-softmax by a max-shifted log-sum-exp and the NLL in one pass; the gradient
    is ``softmax - target distribution``. ``label_smoothing`` ε in [0, 1] uses the target
    distribution ``(1-ε)·onehot + ε/C``. ``(C,)`` logits take one class. ``reduction`` is
    ``"mean"`` (0-d), ``"sum"`` (0-d) or ``"none"`` (one loss per sample).
    """
    return _core.cross_entropy(logits, target, reduction, label_smoothing)


def nll_loss(log_probs: ArrayLike, target: Targets | int, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood ``-log_probs[i, target[i]]`` of ``(N, C)`` log-probabilities.

    ``reduction`` is ``"mean"``, ``"sum"`` or ``"none"``, as in ``cross_entropy``.
    """
    return _core.nll_loss(log_probs, target, reduction)


def clamp(x: ArrayLike, min: float | None = None, max: float | None = None) -> Tensor:
    """Limits ``x`` to ``[min, max]`` (either bound may be None, not both).

    NaN stays NaN. The gradient is 1 where ``min <= x <= max`` and 0 where clamped.
    """
    return _core.clamp(x, min, max)


def maximum(a: ArrayLike, b: ArrayLike) -> Tensor:
    """The elementwise larger of ``a`` and ``b``, broadcasting; NaN propagates.

    On a tie each side gets half the gradient, as in PyTorch.
    """
    return _core.maximum(a, b)


def minimum(a: ArrayLike, b: ArrayLike) -> Tensor:
    """The elementwise smaller of ``a`` and ``b``, broadcasting; NaN propagates.

    On a tie each side gets half the gradient, as in PyTorch.
    """
    return _core.minimum(a, b)


def scaled_dot_product_attention(
    query: ArrayLike,
    key: ArrayLike,
    value: ArrayLike,
    attn_mask: ArrayLike | None = None,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    scale: float | None = None,
) -> Tensor:
    """Attention ``softmax(scale · query @ keyᵀ + mask) @ value``, as PyTorch's.

    ``query`` is ``(..., L, E)``, ``key`` ``(..., S, E)``, ``value`` ``(..., S, Ev)``; the
    result is ``(..., L, Ev)``. The leading (batch, head) axes broadcast. ``scale`` defaults to
    ``1/sqrt(E)``.

    ``attn_mask`` broadcasts to ``(..., L, S)``: a bool mask marks the positions that take
    part (True = attend), a float mask is added to the scores (it gets no gradient).
    ``is_causal=True`` lets query ``i`` see keys ``j <= i`` (top-left aligned when L != S,
    PyTorch's ``tril(ones(L, S))``); giving it together with ``attn_mask`` raises ValueError.
    A row whose every position is masked attends to nothing: its output and gradients are 0,
    as in PyTorch (since 2.5; earlier versions gave NaN). A NaN score still gives NaN.

    ``dropout_p > 0`` drops attention weights (from the generator ``fg.manual_seed`` seeds)
    and scales the rest by ``1/(1-p)`` whenever it is set, as PyTorch does: pass 0.0 in
    evaluation.

    One fused op: the softmax is stable (row maximum subtracted), the causal mask is never
    materialised, and the backward recomputes the weights from per-row statistics instead of
    storing them. float32 and float64 operands promote.
    """
    return _core.scaled_dot_product_attention(
        query, key, value, attn_mask, dropout_p, is_causal, scale
    )


def packed_attention(
    qkv: Tensor,
    n_head: int,
    dropout_p: float = 0.0,
    is_causal: bool = False,
    *,
    scale: float | None = None,
) -> Tensor:
    """Multi-head self-attention over one packed projection, as a GPT's ``c_attn`` makes it.

    ``qkv`` is ``(..., T, 3 * C)``: the query, key and value side by side along the last axis,
    each cut into ``n_head`` heads of ``C // n_head`` features. The result is ``(..., T, C)``,
    the heads' outputs side by side: exactly (to the bit, gradient included) ::

        q, k, v = (z.view(*lead, T, n_head, D).transpose(-3, -2) for z in qkv.split(C, -1))
        y = scaled_dot_product_attention(q, k, v, None, dropout_p, is_causal, scale=scale)
        y.transpose(-3, -2).reshape(*lead, T, C)

    with ``dropout_p``, ``is_causal`` and ``scale`` as in :func:`scaled_dot_product_attention`.
    Tensors here are never strided views, so that chain copies every piece at each step and
    again in its backward (the split's gradient as three zero-filled full-width arrays); this
    op gathers the heads once, scatters the output once, and writes the gradient of ``qkv`` in
    one pass. While an export records (``ferrograd.onnx``), the chain itself runs, so the
    exported graph uses standard operators.
    """
    if not _core._is_recording():
        return _core.packed_attention(qkv, n_head, dropout_p, is_causal, scale)
    *lead, t, c3 = qkv.shape
    if c3 % 3 != 0 or n_head <= 0 or (c3 // 3) % n_head != 0:
        # The fused op's own checks give the message.
        return _core.packed_attention(qkv, n_head, dropout_p, is_causal, scale)
    c = c3 // 3
    q, k, v = (z.view(*lead, t, n_head, c // n_head).transpose(-3, -2) for z in qkv.split(c, -1))
    y = _core.scaled_dot_product_attention(q, k, v, None, dropout_p, is_causal, scale)
    return y.transpose(-3, -2).reshape(*lead, t, c)
