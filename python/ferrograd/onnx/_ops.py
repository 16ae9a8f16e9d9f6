"""One converter per recorded op: ONNX nodes (opset 17) for it, and which axes of its
output are dynamic."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

import ferrograd as fg
from ferrograd._core import Tensor
from ferrograd.onnx._graph import (
    _NP_TO_ONNX,
    OPSET,
    Converter,
    UnsupportedOperatorError,
    _GraphBuilder,
    _reshape_target,
)

RANDOM = {"randn", "rand", "randint", "randperm", "multinomial"}


def _ins(r: dict[str, Any]) -> list[Tensor]:
    return [t for t, _ in r["inputs"]]


def _out(r: dict[str, Any]) -> Tensor:
    t: Tensor = r["outputs"][0][0]
    return t


def _set_dyn(b: _GraphBuilder, r: dict[str, Any], dyn: frozenset[int] | set[int]) -> None:
    b.dyn[_out(r)._id] = frozenset(dyn)


def _broadcast_dyn(b: _GraphBuilder, r: dict[str, Any]) -> None:
    """Elementwise ops: an output axis is dynamic where an input's aligned axis is and is
    not broadcast there."""
    out = _out(r)
    nd = out.ndim
    dyn = set()
    for t in _ins(r):
        off = nd - t.ndim
        for a in b.dyn.get(t._id, frozenset()):
            if t.shape[a] == out.shape[a + off]:
                dyn.add(a + off)
    _set_dyn(b, r, dyn)


def _same_dyn(b: _GraphBuilder, r: dict[str, Any], i: int = 0) -> None:
    _set_dyn(b, r, b.dyn.get(_ins(r)[i]._id, frozenset()))


_ARITH = {"+": "Add", "-": "Sub", "*": "Mul", "/": "Div", "**": "Pow"}


def _scalar_operands(b: _GraphBuilder, r: dict[str, Any], dtype: str) -> tuple[str, str]:
    x = _ins(r)[0]
    xs = b.arg(x, dtype)
    s = b.const(r["attrs"]["scalar"], dtype)
    return (s, xs) if r["attrs"]["reflected"] else (xs, s)


def _arith(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    out = _out(r)
    ins = _ins(r)
    op = r["op"]
    if len(ins) == 2:
        left, right = b.arg(ins[0], out.dtype), b.arg(ins[1], out.dtype)
    else:
        left, right = _scalar_operands(b, r, out.dtype)
    _broadcast_dyn(b, r)
    if op in _ARITH:
        return [b.one(_ARITH[op], [left, right])]
    # // and % floor like Python; ONNX's Div truncates integers and Mod(fmod=0) is only
    # for integers, so floats go through Floor.
    if out.dtype in ("float32", "float64"):
        q = b.one("Floor", [b.one("Div", [left, right])])
        return [q if op == "//" else b.one("Sub", [left, b.one("Mul", [right, q])])]
    rem = b.one("Mod", [left, right], fmod=0)
    return [rem if op == "%" else b.one("Div", [b.one("Sub", [left, rem]), right])]


_UNARY = {
    "neg": "Neg",
    "exp": "Exp",
    "log": "Log",
    "sqrt": "Sqrt",
    "abs": "Abs",
    "relu": "Relu",
    "sigmoid": "Sigmoid",
    "tanh": "Tanh",
    "sin": "Sin",
    "cos": "Cos",
}


def _unary(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    _same_dyn(b, r)
    x = b.arg(_ins(r)[0])
    if r["op"] == "rsqrt":
        return [b.one("Reciprocal", [b.one("Sqrt", [x])])]
    return [b.one(_UNARY[r["op"]], [x])]


def _matmul(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    out = _out(r)
    x, w = _ins(r)
    dyn = set()
    xd, wd = b.dyn.get(x._id, frozenset()), b.dyn.get(w._id, frozenset())
    if x.ndim >= 2:
        dyn |= {a + out.ndim - x.ndim for a in xd if a < x.ndim - 1}
    if w.ndim >= 2:
        dyn |= {a + out.ndim - w.ndim for a in wd if a != w.ndim - 2}
    _set_dyn(b, r, {a for a in dyn if 0 <= a < out.ndim})
    return [b.one("MatMul", [b.arg(x, out.dtype), b.arg(w, out.dtype)])]


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


def _clamp(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    out = _out(r)
    _same_dyn(b, r)
    x = b.arg(_ins(r)[0], out.dtype)
    lo, hi = r["attrs"]["min"], r["attrs"]["max"]
    if lo is not None and hi is not None and lo > hi:
        lo = hi  # PyTorch: every element becomes max
    bounds = ["" if v is None else b.const(v, out.dtype) for v in (lo, hi)]
    while bounds and bounds[-1] == "":
        bounds.pop()
    return [b.one("Clip", [x] + bounds)]


def _pick(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    out = _out(r)
    _broadcast_dyn(b, r)
    a, c = (b.arg(t, out.dtype) for t in _ins(r))
    return [b.one("Max" if r["op"] == "maximum" else "Min", [a, c])]


def _reduce_dyn(b: _GraphBuilder, r: dict[str, Any], axes: Sequence[int], keep: bool) -> None:
    t = _ins(r)[0]
    dyn = set()
    for a in b.dyn.get(t._id, frozenset()):
        if a in axes:
            continue
        dyn.add(a if keep else a - sum(1 for x in axes if x < a))
    _set_dyn(b, r, dyn)


def _reduce(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    out = _out(r)
    t = _ins(r)[0]
    axes = list(r["attrs"]["axes"])
    keep = int(bool(r["attrs"]["keepdims"]))
    _reduce_dyn(b, r, axes, bool(keep))
    op = r["op"]
    if t.ndim == 0:
        return [b.one("Identity", [b.arg(t, out.dtype)])]
    if op == "sum":
        return [b.one("ReduceSum", [b.arg(t, out.dtype), b.ints(axes)], keepdims=keep)]
    onnx_op = {
        "mean": "ReduceMean",
        "max": "ReduceMax",
        "min": "ReduceMin",
        "logsumexp": "ReduceLogSumExp",
    }[op]
    return [b.one(onnx_op, [b.arg(t, out.dtype)], axes=axes, keepdims=keep)]


def _arg_extreme(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    t = _ins(r)[0]
    out = _out(r)
    axis, keep = r["attrs"]["axis"], int(bool(r["attrs"]["keepdims"]))
    op = "ArgMax" if r["op"] == "argmax" else "ArgMin"
    if axis is None:
        flat = b.one("Reshape", [b.arg(t), b.ints([-1])])
        idx = b.one(op, [flat], axis=0, keepdims=0)
        _set_dyn(b, r, set())
        return [b.one("Reshape", [idx, b.ints(out.shape)])]
    axis = axis % max(t.ndim, 1)
    _reduce_dyn(b, r, [axis], bool(keep))
    return [b.one(op, [b.arg(t)], axis=axis, keepdims=keep, select_last_index=0)]


def _softmax(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    _same_dyn(b, r)
    op = "Softmax" if r["op"] == "softmax" else "LogSoftmax"
    return [b.one(op, [b.arg(_ins(r)[0])], axis=r["attrs"]["axis"])]


def _cumsum(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    out = _out(r)
    _same_dyn(b, r)
    t = _ins(r)[0]
    x = b.arg(t, out.dtype)
    if t.ndim == 0:
        return [b.one("Identity", [x])]
    return [b.one("CumSum", [x, b.const(r["attrs"]["axis"], "int64")])]


_COMPARE = {
    "Eq": "Equal",
    "Lt": "Less",
    "Le": "LessOrEqual",
    "Gt": "Greater",
    "Ge": "GreaterOrEqual",
}


def _promoted(r: dict[str, Any]) -> str:
    """The dtype two operands of a comparison or logical op meet in (fg's promotion)."""
    ins = _ins(r)
    probe = fg.zeros(1, dtype=ins[0].dtype)
    other = fg.zeros(1, dtype=ins[1].dtype) if len(ins) > 1 else r["attrs"]["scalar"]
    return str((probe + other).dtype)  # `+` of two bools is their `or`: still bool


def _compare(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    _broadcast_dyn(b, r)
    dtype = _promoted(r)
    ins = _ins(r)
    if len(ins) == 2:
        a, c = b.arg(ins[0], dtype), b.arg(ins[1], dtype)
    else:
        a, c = b.arg(ins[0], dtype), b.const(r["attrs"]["scalar"], dtype)
    op = r["attrs"]["op"]
    if op == "Ne":
        return [b.one("Not", [b.one("Equal", [a, c])])]
    return [b.one(_COMPARE[op], [a, c])]


def _bitwise(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    out = _out(r)
    if out.dtype != "bool":
        raise UnsupportedOperatorError(
            f"export: the op {r['op']!r} on {out.dtype} tensors has no ONNX mapping at opset "
            f"{OPSET} (only on bool tensors)"
        )
    _broadcast_dyn(b, r)
    ins = _ins(r)
    if r["op"] == "bitwise_not":
        return [b.one("Not", [b.arg(ins[0])])]
    a = b.arg(ins[0], "bool")
    c = b.arg(ins[1], "bool") if len(ins) == 2 else b.const(bool(r["attrs"]["scalar"]), "bool")
    return [b.one({"And": "And", "Or": "Or", "Xor": "Xor"}[r["attrs"]["op"]], [a, c])]


def _astype(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    _same_dyn(b, r)
    t, out = _ins(r)[0], _out(r)
    return [b.one("Cast", [b.arg(t)], to=_NP_TO_ONNX[out.dtype])]


def _reshape(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    t, out = _ins(r)[0], _out(r)
    target, dyn = _reshape_target(tuple(t.shape), b.dyn.get(t._id, frozenset()), tuple(out.shape))
    _set_dyn(b, r, dyn)
    return [b.one("Reshape", [b.arg(t), b.ints(target)])]


def _permute(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    t = _ins(r)[0]
    perm = [int(p) for p in r["attrs"]["perm"]]
    d = b.dyn.get(t._id, frozenset())
    _set_dyn(b, r, {i for i, p in enumerate(perm) if p in d})
    return [b.one("Transpose", [b.arg(t)], perm=perm)]


_BIG = 2**62


def _index(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    t, out = _ins(r)[0], _out(r)
    if any(k._id in b.live for k in _ins(r)[1:]):
        raise UnsupportedOperatorError(
            "export: the op 'index' with a tensor index computed from the model's inputs has "
            "no ONNX mapping here (it would freeze the index); use gather or embedding"
        )
    items = list(r["attrs"]["items"])
    kinds = [it[0] for it in items]
    if kinds.count("array") + kinds.count("mask") > 1 or (
        ("array" in kinds or "mask" in kinds) and "int" in kinds
    ):
        raise UnsupportedOperatorError(
            "export: the op 'index' with several advanced (array, mask) indices, or one mixed "
            "with integer indices, has no ONNX mapping here"
        )
    consumed = sum(1 for k in kinds if k in ("int", "slice", "array"))
    consumed += sum(len(it[1].shape) for it in items if it[0] == "mask")
    if "ellipsis" in kinds:
        at = kinds.index("ellipsis")
        items = items[:at] + [("slice", None, None, None)] * (t.ndim - consumed) + items[at + 1 :]
    x = b.arg(t)
    d_in = b.dyn.get(t._id, frozenset())
    dyn: set[int] = set()
    axis = 0  # the axis of the current tensor the next item applies to
    src = 0  # the input axis the next item consumes
    for it in items:
        kind = it[0]
        if kind == "newaxis":
            x = b.one("Unsqueeze", [x, b.ints([axis])])
            axis += 1
        elif kind == "int":
            x = b.one("Gather", [x, b.const(int(it[1]), "int64")], axis=axis)
            src += 1
        elif kind == "slice":
            start, stop, step = it[1], it[2], it[3]
            step = 1 if step is None else int(step)
            if start is None:
                start = 0 if step > 0 else _BIG
            if stop is None:
                stop = _BIG if step > 0 else -_BIG
            if (start, stop, step) != (0, _BIG, 1):
                x = b.one(
                    "Slice", [x, b.ints([start]), b.ints([stop]), b.ints([axis]), b.ints([step])]
                )
            elif src in d_in:
                dyn.add(axis)
            axis += 1
            src += 1
        elif kind in ("array", "mask"):
            idx = np.asarray(it[1])
            if kind == "mask":
                if idx.ndim != 1:
                    raise UnsupportedOperatorError(
                        "export: the op 'index' with a bool mask over several axes has no "
                        "ONNX mapping here"
                    )
                idx = np.flatnonzero(idx)
            x = b.one("Gather", [x, b.const(idx.astype(np.int64))], axis=axis)
            axis += max(idx.ndim, 0)
            src += 1
        else:  # pragma: no cover - the core sends only these kinds
            raise UnsupportedOperatorError(f"export: unknown index item {kind!r}")
    # Axes past the items are kept as they are.
    for a in d_in:
        if a >= src:
            dyn.add(axis + a - src)
    _set_dyn(b, r, {a for a in dyn if a < out.ndim})
    return [x]


def _join(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    out = _out(r)
    axis = int(r["attrs"]["axis"])
    parts = [b.arg(t, out.dtype) for t in _ins(r)]
    if r["op"] == "stack":
        parts = [b.one("Unsqueeze", [p, b.ints([axis])]) for p in parts]
        first = b.dyn.get(_ins(r)[0]._id, frozenset())
        _set_dyn(b, r, {a + (a >= axis) for a in first})
    else:
        _set_dyn(b, r, b.dyn.get(_ins(r)[0]._id, frozenset()) - {axis})
    return [b.one("Concat", parts, axis=axis)]


def _expand(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    t, out = _ins(r)[0], _out(r)
    off = out.ndim - t.ndim
    dyn = {a + off for a in b.dyn.get(t._id, frozenset())}
    # Expand broadcasts: a 1 keeps the input's (dynamic) length.
    shape = [1 if i in dyn else n for i, n in enumerate(out.shape)]
    _set_dyn(b, r, dyn)
    return [b.one("Expand", [b.arg(t), b.ints(shape)])]


def _narrow(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    _same_dyn(b, r)
    a = r["attrs"]
    start, n, axis = int(a["start"]), int(a["len"]), int(a["axis"])
    b.dyn[_out(r)._id] = b.dyn[_out(r)._id] - {axis}
    return [
        b.one("Slice", [b.arg(_ins(r)[0]), b.ints([start]), b.ints([start + n]), b.ints([axis])])
    ]


def _where(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    out = _out(r)
    _broadcast_dyn(b, r)
    c, x, y = _ins(r)
    return [b.one("Where", [b.arg(c, "bool"), b.arg(x, out.dtype), b.arg(y, out.dtype)])]


def _masked_fill(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    out = _out(r)
    _broadcast_dyn(b, r)
    x, mask = _ins(r)
    value = b.const(r["attrs"]["value"], out.dtype)
    return [b.one("Where", [b.arg(mask, "bool"), value, b.arg(x)])]


def _triangle(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    _same_dyn(b, r)
    k = b.const(int(r["attrs"]["k"]), "int64")
    return [b.one("Trilu", [b.arg(_ins(r)[0]), k], upper=int(r["op"] == "triu"))]


def _gather(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    x, idx = _ins(r)
    _set_dyn(b, r, b.dyn.get(idx._id, frozenset()))
    return [b.one("GatherElements", [b.arg(x), b.arg(idx)], axis=int(r["attrs"]["axis"]))]


def _one_hot(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    t, out = _ins(r)[0], _out(r)
    _same_dyn(b, r)
    depth = b.const(out.shape[-1], "int64")
    values = b.const([0, 1], "int64")
    return [b.one("OneHot", [b.arg(t), depth, values], axis=-1)]


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
    q, k, v = _ins(r)
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
    if len(_ins(r)) > 3 and _ins(r)[3]._id in b.live:
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
    axis = int(r["attrs"]["axis"])
    shape = x.shape[axis:]
    if len(ins) == 3:
        scale, bias = b.arg(ins[1], x.dtype), b.arg(ins[2], x.dtype)
    else:
        scale, bias = b.const(np.ones(shape), x.dtype), b.const(np.zeros(shape), x.dtype)
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
    **{op: _arith for op in ("+", "-", "*", "/", "**", "//", "%")},
    **{op: _unary for op in (*_UNARY, "rsqrt")},
    "@": _matmul,
    "linear": _linear,
    "gelu": _gelu,
    "clamp": _clamp,
    "maximum": _pick,
    "minimum": _pick,
    **{op: _reduce for op in ("sum", "mean", "max", "min", "logsumexp")},
    "argmax": _arg_extreme,
    "argmin": _arg_extreme,
    "softmax": _softmax,
    "log_softmax": _softmax,
    "cumsum": _cumsum,
    "compare": _compare,
    "bitwise": _bitwise,
    "bitwise_not": _bitwise,
    "astype": _astype,
    "reshape": _reshape,
    "permute": _permute,
    "index": _index,
    "cat": _join,
    "stack": _join,
    "expand": _expand,
    "narrow": _narrow,
    "where": _where,
    "masked_fill": _masked_fill,
    "tril": _triangle,
    "triu": _triangle,
    "gather": _gather,
    "one_hot": _one_hot,
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
