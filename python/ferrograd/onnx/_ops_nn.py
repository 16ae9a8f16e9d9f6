"""Converters of the layers' ops: linear, GELU, embedding, convolution and pooling,
attention (decomposed: opset 17 has no attention op), the losses and the normalisations."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ferrograd._core import Tensor
from ferrograd.onnx._graph import Converter, UnsupportedOperatorError, _GraphBuilder
from ferrograd.onnx._ops import _broadcast_dyn, _ins, _out, _same_dyn, _set_dyn


def _linear(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    out = _out(r)
    ins = _ins(r)
    x, w = b.arg(ins[0], out.dtype), b.arg(ins[1], out.dtype)
    bias = b.arg(ins[2], out.dtype) if len(ins) > 2 else None
    _set_dyn(b, r, {a for a in b.dyn.get(ins[0]._id, frozenset()) if a < out.ndim - 1})
    if ins[0].ndim == 2:
        return [b.one("Gemm", [x, w] + ([bias] if bias else []), transB=1)]
    y = b.one("MatMul", [x, b.one("Transpose", [w], perm=[1, 0])])
    return [b.one("Add", [y, bias]) if bias else y]


def _gelu(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    # Gelu is an op only from opset 20: the erf form 0.5·x·(1 + erf(x/√2)).
    _same_dyn(b, r)
    t = _ins(r)[0]
    x = b.arg(t)
    e = b.one("Erf", [b.one("Div", [x, b.const(math.sqrt(2.0), t.dtype)])])
    half = b.one("Mul", [x, b.const(0.5, t.dtype)])
    return [b.one("Mul", [half, b.one("Add", [e, b.const(1.0, t.dtype)])])]


def _embedding(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    w, ids = _ins(r)
    _set_dyn(b, r, b.dyn.get(ids._id, frozenset()))
    return [b.one("Gather", [b.arg(w), b.arg(ids)], axis=0)]


def _conv(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    out = _out(r)
    ins = _ins(r)
    _set_dyn(b, r, b.dyn.get(ins[0]._id, frozenset()) & {0})
    (sh, sw), (ph, pw) = r["attrs"]["stride"], r["attrs"]["padding"]
    kh, kw = ins[1].shape[2], ins[1].shape[3]
    args = [b.arg(t, out.dtype) for t in ins]
    return [b.one("Conv", args, strides=[sh, sw], pads=[ph, pw, ph, pw], kernel_shape=[kh, kw])]


def _max_pool(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    _set_dyn(b, r, b.dyn.get(_ins(r)[0]._id, frozenset()) & {0, 1})
    (kh, kw), (sh, sw), (ph, pw) = (r["attrs"][k] for k in ("kernel", "stride", "padding"))
    return [
        b.one(
            "MaxPool",
            [b.arg(_ins(r)[0])],
            kernel_shape=[kh, kw],
            strides=[sh, sw],
            pads=[ph, pw, ph, pw],
        )
    ]


def _attention(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    """No attention op at opset 17: MatMul, scale, mask, Softmax, MatMul."""
    out = _out(r)
    q, k, v = _ins(r)[:3]
    a = r["attrs"]
    if a["dropout_p"]:
        raise UnsupportedOperatorError(
            "export: the op 'scaled_dot_product_attention' with dropout_p > 0 has no ONNX "
            "mapping (export in eval mode, or pass dropout_p=0)"
        )
    dt = out.dtype
    length, keys = q.shape[-2], k.shape[-2]
    scale = a["scale"] if a["scale"] is not None else 1.0 / math.sqrt(q.shape[-1])
    perm = list(range(k.ndim - 2)) + [k.ndim - 1, k.ndim - 2]
    kt = b.one("Transpose", [b.arg(k, dt)], perm=perm)
    scores = b.one("Mul", [b.one("MatMul", [b.arg(q, dt), kt]), b.const(scale, dt)])
    mask, blocked_rows = a["mask"], None
    if len(_ins(r)) > 3 and b.depends_on_inputs(_ins(r)[3]):
        return [_attention_with(b, r, scores, _ins(r)[3], v, dt)]
    if isinstance(mask, str):  # "causal": query i sees keys j <= i
        keep = np.tril(np.ones((length, keys), dtype=bool))
        mask = keep
    if mask is not None:
        mask = np.asarray(mask)
        if mask.dtype == bool:
            add = np.where(mask, 0.0, -np.inf)
            full = ~mask.any(axis=-1, keepdims=True)
            if full.any():  # a row with no key left is 0 (PyTorch), not NaN
                blocked_rows = full
        else:
            add = mask
        scores = b.one("Add", [scores, b.const(add, dt)])
    probs = b.one("Softmax", [scores], axis=-1)
    if blocked_rows is not None:
        probs = b.one("Where", [b.const(blocked_rows), b.const(0.0, dt), probs])
    _set_dyn(b, r, {x for x in b.dyn.get(q._id, frozenset()) if x < q.ndim - 2})
    return [b.one("MatMul", [probs, b.arg(v, dt)])]


def _attention_with(
    b: _GraphBuilder, r: dict[str, Any], scores: str, m: Tensor, v: Tensor, dt: str
) -> str:
    """Attention whose mask is computed in the graph (from the model's inputs)."""
    mask = b.arg(m)
    if m.dtype == "bool":
        scores = b.one("Where", [mask, scores, b.const(-np.inf, dt)])
        probs = b.one("Softmax", [scores], axis=-1)
        # A row with no key left is 0 (PyTorch), not NaN.
        any_kept = b.one("ReduceMax", [b.cast(mask, "bool", "int32")], axes=[-1], keepdims=1)
        probs = b.one("Where", [b.cast(any_kept, "int32", "bool"), probs, b.const(0.0, dt)])
    else:
        probs = b.one("Softmax", [b.one("Add", [scores, b.cast(mask, m.dtype, dt)])], axis=-1)
    q = _ins(r)[0]
    _set_dyn(b, r, {x for x in b.dyn.get(q._id, frozenset()) if x < q.ndim - 2})
    return b.one("MatMul", [probs, b.arg(v, dt)])


def _class_targets(b: _GraphBuilder, r: dict[str, Any], x: Tensor) -> tuple[str, bool]:
    targets = np.asarray(r["attrs"]["targets"], dtype=np.int64)
    one = x.ndim == 1
    return b.const(targets.reshape((1,) if one else (-1, 1))), one


def _nll(b: _GraphBuilder, r: dict[str, Any], logp: str, x: Tensor) -> str:
    t, one = _class_targets(b, r, x)
    axis = 0 if one else 1
    picked = b.one("GatherElements", [logp, t], axis=axis)
    return b.one("Neg", [b.one("Squeeze", [picked, b.ints([axis])])])


def _cross_entropy(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    x = _ins(r)[0]
    axis = 0 if x.ndim == 1 else 1
    _set_dyn(b, r, set())
    logp = b.one("LogSoftmax", [b.arg(x)], axis=axis)
    nll = _nll(b, r, logp, x)
    eps = float(r["attrs"]["label_smoothing"])
    if eps == 0.0:
        return [nll]
    smooth = b.one("Neg", [b.one("ReduceMean", [logp], axes=[axis], keepdims=0)])
    return [
        b.one(
            "Add",
            [
                b.one("Mul", [nll, b.const(1.0 - eps, x.dtype)]),
                b.one("Mul", [smooth, b.const(eps, x.dtype)]),
            ],
        )
    ]


def _nll_loss(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    x = _ins(r)[0]
    _set_dyn(b, r, set())
    return [_nll(b, r, b.arg(x), x)]


def _bce(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    _broadcast_dyn(b, r)
    x_t, y_t = _ins(r)
    dt = x_t.dtype
    x, y = b.arg(x_t), b.arg(y_t, dt)
    one = b.const(1.0, dt)
    if r["op"] == "binary_cross_entropy":
        floor = b.const(-100.0, dt)
        logp = b.one("Max", [b.one("Log", [x]), floor])
        log1p = b.one("Max", [b.one("Log", [b.one("Sub", [one, x])]), floor])
        s = b.one("Add", [b.one("Mul", [y, logp]), b.one("Mul", [b.one("Sub", [one, y]), log1p])])
        return [b.one("Neg", [s])]
    # max(x, 0) - x·y + log(1 + exp(-|x|))
    relu = b.one("Relu", [x])
    soft = b.one("Log", [b.one("Add", [one, b.one("Exp", [b.one("Neg", [b.one("Abs", [x])])])])])
    return [b.one("Add", [b.one("Sub", [relu, b.one("Mul", [x, y])]), soft])]


def _layer_norm(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    ins = _ins(r)
    x = ins[0]
    _same_dyn(b, r)
    attrs = r["attrs"]
    axis = int(attrs["axis"])
    shape = x.shape[axis:]
    given = iter(ins[1:])  # the weight, then the bias, each only when the layer has it
    scale = b.arg(next(given), x.dtype) if attrs["weight"] else b.const(np.ones(shape), x.dtype)
    bias = b.arg(next(given), x.dtype) if attrs["bias"] else b.const(np.zeros(shape), x.dtype)
    return [
        b.one(
            "LayerNormalization",
            [b.arg(x), scale, bias],
            axis=axis,
            epsilon=float(r["attrs"]["eps"]),
        )
    ]


def _batch_norm(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    ins = _ins(r)
    x, mean, var = ins[:3]
    _same_dyn(b, r)
    c = x.shape[1]
    if len(ins) == 5:
        scale, bias = b.arg(ins[3], x.dtype), b.arg(ins[4], x.dtype)
    else:
        scale, bias = b.const(np.ones(c), x.dtype), b.const(np.zeros(c), x.dtype)
    return [
        b.one(
            "BatchNormalization",
            [b.arg(x), scale, bias, b.arg(mean, x.dtype), b.arg(var, x.dtype)],
            epsilon=float(r["attrs"]["eps"]),
        )
    ]


CONVERTERS: dict[str, Converter] = {
    "linear": _linear,
    "gelu": _gelu,
    "embedding": _embedding,
    "conv2d": _conv,
    "max_pool2d": _max_pool,
    "scaled_dot_product_attention": _attention,
    "cross_entropy": _cross_entropy,
    "nll_loss": _nll_loss,
    "binary_cross_entropy": _bce,
    "binary_cross_entropy_with_logits": _bce,
    "layer_norm": _layer_norm,
    "batch_norm": _batch_norm,
}
