"""One converter per recorded op — ONNX nodes (opset 17) for it, and which axes of its
output are dynamic: elementwise math, reductions, comparisons, shapes and indexing here,
the layers' ops in ``_ops_nn.py``."""

from __future__ import annotations

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


def _all_or_any(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    # Over 0/1 integers, `all` is the minimum and `any` the maximum (ONNX has no boolean
    # reduction); casting to bool first makes 0.5 true, as in the core.
    t = _ins(r)[0]
    axes = list(r["attrs"]["axes"])
    keep = int(bool(r["attrs"]["keepdims"]))
    _reduce_dyn(b, r, axes, bool(keep))
    ones = b.cast(b.arg(t, "bool"), "bool", "int32")
    if t.ndim == 0:
        return [b.cast(ones, "int32", "bool")]
    op = "ReduceMin" if r["op"] == "all" else "ReduceMax"
    folded = b.one(op, [ones], axes=axes, keepdims=keep)
    return [b.cast(folded, "int32", "bool")]


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
    if any(b.depends_on_inputs(k) for k in _ins(r)[1:]):
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


CONVERTERS: dict[str, Converter] = {
    **{op: _arith for op in ("+", "-", "*", "/", "**", "//", "%")},
    **{op: _unary for op in (*_UNARY, "rsqrt")},
    "@": _matmul,
    "clamp": _clamp,
    "maximum": _pick,
    "minimum": _pick,
    **{op: _reduce for op in ("sum", "mean", "max", "min", "logsumexp")},
    "all": _all_or_any,
    "any": _all_or_any,
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
}
