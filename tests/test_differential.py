"""Differential tests: every op against an oracle, over hypothesis-drawn shapes and layouts.

For each entry of ``OPS`` hypothesis draws inputs (0-d, size-1, zero-size where the op
allows it, broadcasting pairs), a dtype (float32 or float64) and a memory layout for every
NumPy input (contiguous, transposed, strided, negative strides). Then

* the forward result of ferrograd (``Tensor``, and ``NdArray`` where the op is a method
  both classes share) must match NumPy computed in float64, in shape, dtype and value;
* the gradient must pass ``fg.gradcheck`` (float64 central differences), and a backward
  in the drawn dtype must give a grad of the leaf's dtype and shape that agrees with it;
* where PyTorch is importable, ``test_every_op_matches_pytorch_forward_and_backward``
  runs the same cases against ``torch`` (forward values and vector-Jacobian products);
  without PyTorch it is skipped.

Values are drawn from each op's smooth domain (positive for ``log``/``sqrt``, away from
kinks for ``abs``/``relu``, distinct for ``max``/``min``) so finite differences are valid.
``len(OPS)`` is the number of Tensor ops covered; ``VALUE_UNARY`` and ``VALUE_BINARY`` add
the scalar ``Value`` ops, checked against ``math`` and central differences.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass
from typing import Any, Callable

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings

import ferrograd as fg
import ferrograd.functional as F

EXAMPLES = settings(
    max_examples=12, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
)

# ---------------------------------------------------------------------------------------------
# Value domains: each draws a float64 array of a given shape.

GRID = 0.125  # values on a grid keep kinks and ties at a known distance


def _grid(lo: int, hi: int, offset: float = 0.0):
    return st.integers(lo, hi).map(lambda k: k * GRID + offset)


DOMAINS = {
    "any": st.floats(-3.0, 3.0, allow_nan=False, allow_infinity=False, width=32),
    "positive": st.floats(0.25, 4.0, width=32),
    "away0": st.one_of(st.floats(0.25, 3.0, width=32), st.floats(-3.0, -0.25, width=32)),
    "grid": _grid(-96, 96),  # k/8: exact in float32
    "halfgrid": _grid(-96, 96, GRID / 2),  # never equal to a "grid" value
    "unit": st.floats(0.0, 1.0, width=32),
    "prob": st.floats(0.0625, 0.9375, width=32),
    "base": st.floats(0.25, 3.0, width=32),
    "exponent": st.floats(-2.0, 2.0, width=32),
}


def arr(draw, shape, domain="any", unique=False):
    return draw(hnp.arrays(np.float64, shape, elements=DOMAINS[domain], unique=unique))


def shape_st(min_dims=0, max_dims=3, min_side=1, max_side=4):
    return hnp.array_shapes(
        min_dims=min_dims, max_dims=max_dims, min_side=min_side, max_side=max_side
    )


# ---------------------------------------------------------------------------------------------
# Memory layouts: the same values, laid out as NumPy would hand them over.

LAYOUTS = ("contiguous", "transposed", "strided", "reversed", "fortran")


def lay_out(x: np.ndarray, layout: str) -> np.ndarray:
    """``x``'s values in a (usually) non-contiguous NumPy array of the same shape."""
    if x.ndim == 0:
        return x.copy()
    if layout == "transposed":
        out = np.ascontiguousarray(x.T).T
    elif layout == "fortran":
        out = np.asfortranarray(x)
    elif layout == "strided":
        big = np.zeros(tuple(2 * s for s in x.shape), dtype=x.dtype)
        big[tuple(slice(None, None, 2) for _ in x.shape)] = x
        out = big[tuple(slice(None, None, 2) for _ in x.shape)]
    elif layout == "reversed":
        rev = tuple(slice(None, None, -1) for _ in x.shape)
        out = np.ascontiguousarray(x[rev])[rev]
    else:
        out = np.ascontiguousarray(x)
    assert out.shape == x.shape and np.array_equal(out, x, equal_nan=True)
    return out


# ---------------------------------------------------------------------------------------------
# The op table.


@dataclass(frozen=True)
class Op:
    name: str
    inputs: Callable[..., Any]  # strategy factory: st -> (list of arrays, kwargs)
    fg: Callable[..., Any]  # (*fg_inputs, **kw) -> Tensor
    np: Callable[..., Any]  # (*float64 arrays, **kw) -> array
    torch: Callable[..., Any] | None = None  # (*torch tensors, **kw) -> torch.Tensor
    grad: bool = True
    method: bool = False  # also available on NdArray with the same spelling
    frozen: tuple = ()  # indices of inputs that are not differentiated (targets)
    rtol32: float = 2e-5


@st.composite
def unary(draw, domain="any", min_side=0):
    x = arr(draw, draw(shape_st(min_side=min_side)), domain)
    return [x], {}


@st.composite
def binary(draw, da="any", db="any", min_side=1):
    shapes = draw(
        hnp.mutually_broadcastable_shapes(
            num_shapes=2, min_dims=0, max_dims=3, min_side=min_side, max_side=4
        )
    )
    sa, sb = shapes.input_shapes
    return [arr(draw, sa, da), arr(draw, sb, db)], {}


@st.composite
def same_shape_pair(draw, da="any", db="any", reduction=True):
    shape = draw(shape_st(min_dims=1))
    kw = {"reduction": draw(st.sampled_from(["mean", "sum", "none"]))} if reduction else {}
    return [arr(draw, shape, da), arr(draw, shape, db)], kw


@st.composite
def with_scalar(draw, domain, scalars):
    x = arr(draw, draw(shape_st()), domain)
    return [x], {"c": draw(st.sampled_from(scalars))}


@st.composite
def reduction(draw, domain="any", min_side=1, unique=False):
    shape = draw(shape_st(min_side=min_side))
    x = arr(draw, shape, domain, unique=unique)
    nd = x.ndim
    kind = draw(st.sampled_from(["none", "int", "tuple"]) if nd else st.just("none"))
    if kind == "none":
        axis = None
    elif kind == "int":
        axis = draw(st.integers(-nd, nd - 1))
    else:
        axes = draw(st.lists(st.integers(0, nd - 1), min_size=1, max_size=nd, unique=True))
        axis = tuple(a - nd if draw(st.booleans()) else a for a in axes)
    return [x], {"axis": axis, "keepdims": draw(st.booleans())}


@st.composite
def along_axis(draw, domain="any", unique=False, keepdims=False):
    x = arr(draw, draw(shape_st(min_dims=1)), domain, unique=unique)
    kw = {"axis": draw(st.integers(-x.ndim, x.ndim - 1))}
    if keepdims:
        kw["keepdims"] = draw(st.booleans())
    return [x], kw


@st.composite
def matmul_pair(draw):
    m, n, p = draw(st.integers(1, 4)), draw(st.integers(1, 4)), draw(st.integers(1, 4))
    kind = draw(st.sampled_from(["vv", "mv", "vm", "mm", "bmm", "bcast"]))
    b = draw(st.integers(1, 3))
    sa, sb = {
        "vv": ((n,), (n,)),
        "mv": ((m, n), (n,)),
        "vm": ((n,), (n, p)),
        "mm": ((m, n), (n, p)),
        "bmm": ((b, m, n), (b, n, p)),
        "bcast": ((b, 1, m, n), (2, n, p)),
    }[kind]
    return [arr(draw, sa), arr(draw, sb)], {}


@st.composite
def reshape_case(draw):
    x = arr(draw, draw(shape_st(min_side=0)))
    size = x.size
    divisors = [d for d in range(1, size + 1) if size % d == 0] or [1]
    a = draw(st.sampled_from(divisors))
    target = draw(
        st.sampled_from(
            [(size,), (a, size // a), (size // a, 1, a), (-1,), (a, -1), (-1, 1)]
            if size
            else [(0,), (0, 3), (2, 0, 1)]
        )
    )
    return [x], {"shape": target}


@st.composite
def permute_case(draw):
    x = arr(draw, draw(shape_st(max_dims=4)))
    return [x], {"perm": tuple(draw(st.permutations(range(x.ndim))))}


@st.composite
def swap_case(draw):
    x = arr(draw, draw(shape_st(min_dims=1)))
    return [x], {
        "a": draw(st.integers(-x.ndim, x.ndim - 1)),
        "b": draw(st.integers(-x.ndim, x.ndim - 1)),
    }


@st.composite
def index_case(draw):
    x = arr(draw, draw(shape_st(min_dims=1, max_dims=3)))
    key: list = []
    used_list = False
    for d in x.shape:
        kind = draw(st.sampled_from(["int", "slice", "slice", "full", "list"]))
        if kind == "int":
            key.append(draw(st.integers(-d, d - 1)))
        elif kind == "slice":
            start = draw(st.one_of(st.none(), st.integers(-d - 1, d + 1)))
            stop = draw(st.one_of(st.none(), st.integers(-d - 1, d + 1)))
            step = draw(st.sampled_from([None, 1, 2, 3, -1, -2]))
            key.append(slice(start, stop, step))
        elif kind == "list" and not used_list:
            used_list = True
            key.append(draw(st.lists(st.integers(-d, d - 1), min_size=1, max_size=4)))
        else:
            key.append(slice(None))
    if draw(st.booleans()):
        key.insert(draw(st.integers(0, len(key))), None)
    if draw(st.booleans()) and not used_list:
        cut = draw(st.integers(0, len(key)))
        key = key[:cut] + [Ellipsis] + key[cut + draw(st.integers(0, 1)) :]
    return [x], {"key": tuple(key)}


def _np_key(key):
    return tuple(np.array(k) if isinstance(k, list) else k for k in key)


@st.composite
def join_case(draw):
    shape = draw(shape_st(min_dims=1))
    n = draw(st.integers(1, 3))
    axis = draw(st.integers(-len(shape), len(shape) - 1))
    xs = []
    for _ in range(n):
        s = list(shape)
        s[axis] = draw(st.integers(0, 3))
        xs.append(arr(draw, tuple(s)))
    return xs, {"axis": axis}


@st.composite
def stack_case(draw):
    shape = draw(shape_st())
    n = draw(st.integers(1, 3))
    axis = draw(st.integers(-len(shape) - 1, len(shape)))
    return [arr(draw, shape) for _ in range(n)], {"axis": axis}


@st.composite
def linear_case(draw):
    lead = draw(shape_st(min_dims=0, max_dims=2))
    i, o = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    xs = [arr(draw, lead + (i,)), arr(draw, (o, i))]
    if draw(st.booleans()):
        xs.append(arr(draw, (o,)))
    return xs, {}


@st.composite
def conv_case(draw):
    n, c, o = draw(st.integers(1, 2)), draw(st.integers(1, 2)), draw(st.integers(1, 2))
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 2)), draw(st.integers(1, 2)))
    pad = (draw(st.integers(0, 1)), draw(st.integers(0, 1)))
    h = draw(st.integers(max(1, kh - 2 * pad[0]), 5))
    w = draw(st.integers(max(1, kw - 2 * pad[1]), 5))
    xs = [arr(draw, (n, c, h, w)), arr(draw, (o, c, kh, kw))]
    if draw(st.booleans()):
        xs.append(arr(draw, (o,)))
    return xs, {"stride": stride, "padding": pad}


@st.composite
def pool_case(draw):
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 2))
    k = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 2), st.integers(1, 2))))
    pad = (draw(st.integers(0, k[0] // 2)), draw(st.integers(0, k[1] // 2)))
    h = draw(st.integers(max(1, k[0] - 2 * pad[0]), 5))
    w = draw(st.integers(max(1, k[1] - 2 * pad[1]), 5))
    return [arr(draw, (n, c, h, w), "grid", unique=n * c * h * w <= 49)], {
        "kernel_size": k,
        "stride": stride,
        "padding": pad,
    }


@st.composite
def class_case(draw, log_probs=False):
    n, c = draw(st.integers(1, 5)), draw(st.integers(1, 5))
    x = arr(draw, (n, c))
    if log_probs:
        x = x - np.log(np.exp(x).sum(axis=1, keepdims=True))
    target = draw(st.lists(st.integers(0, c - 1), min_size=n, max_size=n))
    kw = {"target": target, "reduction": draw(st.sampled_from(["mean", "sum", "none"]))}
    if not log_probs:
        kw["label_smoothing"] = draw(st.sampled_from([0.0, 0.0, 0.1]))
    return [x], kw


@st.composite
def clamp_case(draw):
    x = arr(draw, draw(shape_st()), "halfgrid")
    lo = draw(st.one_of(st.none(), _grid(-12, 0)))
    hi = draw(st.one_of(st.none(), _grid(0, 12)) if lo is not None else _grid(0, 12))
    return [x], {"lo": lo, "hi": hi}


# NumPy references for the ops NumPy lacks.

_erf = np.vectorize(math.erf, otypes=[np.float64])


def np_log_softmax(x, axis=-1):
    m = x.max(axis=axis, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=axis, keepdims=True))


def np_reduce(values, reduction):
    return {"mean": np.mean, "sum": np.sum, "none": lambda v: v}[reduction](values)


def np_cross_entropy(x, target, reduction, label_smoothing=0.0):
    lp = np_log_softmax(x, axis=1)
    nll = -lp[np.arange(len(target)), target]
    loss = (1 - label_smoothing) * nll - label_smoothing * lp.mean(axis=1)
    return np_reduce(loss, reduction)


def np_conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0)):
    x = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2))
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    oh, ow = (h - kh) // stride[0] + 1, (wd - kw) // stride[1] + 1
    out = np.zeros((n, o, oh, ow))
    for i in range(oh):
        for j in range(ow):
            patch = x[:, :, i * stride[0] : i * stride[0] + kh, j * stride[1] : j * stride[1] + kw]
            out[:, :, i, j] = np.einsum("nchw,ochw->no", patch, w)
    return out if b is None else out + b[None, :, None, None]


def np_max_pool2d(x, kernel_size, stride=None, padding=(0, 0)):
    stride = stride or kernel_size
    x = np.pad(x, ((0, 0), (0, 0), (padding[0],) * 2, (padding[1],) * 2), constant_values=-np.inf)
    kh, kw = kernel_size
    oh, ow = (x.shape[2] - kh) // stride[0] + 1, (x.shape[3] - kw) // stride[1] + 1
    out = np.empty(x.shape[:2] + (oh, ow))
    for i in range(oh):
        for j in range(ow):
            out[:, :, i, j] = x[
                :, :, i * stride[0] : i * stride[0] + kh, j * stride[1] : j * stride[1] + kw
            ].max(axis=(2, 3))
    return out


def np_bce(p, y, reduction):
    loss = -(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100))
    return np_reduce(loss, reduction)


def np_bce_logits(x, y, reduction):
    loss = np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))
    return np_reduce(loss, reduction)


def _dims(x, axis):
    if axis is None:
        return tuple(range(x.ndim))
    return axis if isinstance(axis, tuple) else (axis,)


def _torch():
    import torch

    return torch


def t_reduce(name):
    def run(x, axis=None, keepdims=False):
        torch = _torch()
        fn = {"sum": torch.sum, "mean": torch.mean, "max": torch.amax, "min": torch.amin}[name]
        if x.ndim == 0:
            return fn(x)
        return fn(x, dim=_dims(x, axis), keepdim=keepdims)

    return run


def t_arg(name):
    def run(x, axis=None, keepdims=False):
        fn = getattr(_torch(), name)
        return fn(x, dim=axis, keepdim=keepdims).double()

    return run


def t_clamp(x, lo=None, hi=None):
    return _torch().clamp(x, lo, hi)


def t_ce(x, target, reduction, label_smoothing=0.0):
    torch = _torch()
    return torch.nn.functional.cross_entropy(
        x, torch.tensor(target), reduction=reduction, label_smoothing=label_smoothing
    )


def t_nll(x, target, reduction):
    torch = _torch()
    return torch.nn.functional.nll_loss(x, torch.tensor(target), reduction=reduction)


def t_index(x, key):
    # torch has no negative slice steps: gather through NumPy's index map instead.
    flat = np.arange(x.numel()).reshape(tuple(x.shape))[_np_key(key)]
    return x.reshape(-1)[_torch().tensor(flat.reshape(-1))].reshape(flat.shape)


def fg_bce(p, y, reduction):
    return fg.loss.binary_cross_entropy(p, fg.Tensor(np.asarray(y), dtype=p.dtype), reduction)


def fg_bce_logits(x, y, reduction):
    return fg.loss.binary_cross_entropy_with_logits(
        x, fg.Tensor(np.asarray(y), dtype=x.dtype), reduction
    )


def _tnn():
    return _torch().nn.functional


OPS = [
    # -- unary elementwise (also on NdArray) --
    Op("neg", unary(), lambda x: -x, lambda x: -x, lambda x: -x, method=True),
    Op("exp", unary(), lambda x: x.exp(), np.exp, lambda x: x.exp(), method=True),
    Op("log", unary("positive"), lambda x: x.log(), np.log, lambda x: x.log(), method=True),
    Op("sqrt", unary("positive"), lambda x: x.sqrt(), np.sqrt, lambda x: x.sqrt(), method=True),
    Op("abs", unary("away0"), lambda x: x.abs(), np.abs, lambda x: x.abs(), method=True),
    Op("builtin abs", unary("away0"), abs, np.abs, abs, method=True),
    Op(
        "relu",
        unary("away0"),
        lambda x: x.relu(),
        lambda x: np.maximum(x, 0),
        lambda x: x.relu(),
        method=True,
    ),
    Op(
        "sigmoid",
        unary(),
        lambda x: x.sigmoid(),
        lambda x: 1 / (1 + np.exp(-x)),
        lambda x: x.sigmoid(),
        method=True,
    ),
    Op("tanh", unary(), lambda x: x.tanh(), np.tanh, lambda x: x.tanh(), method=True),
    Op(
        "gelu",
        unary(),
        F.gelu,
        lambda x: 0.5 * x * (1 + _erf(x / math.sqrt(2))),
        lambda x: _tnn().gelu(x),
    ),
    # -- binary elementwise, broadcasting --
    Op("add", binary(), lambda x, y: x + y, np.add, lambda x, y: x + y, method=True),
    Op("sub", binary(), lambda x, y: x - y, np.subtract, lambda x, y: x - y, method=True),
    Op("mul", binary(), lambda x, y: x * y, np.multiply, lambda x, y: x * y, method=True),
    Op(
        "div",
        binary("any", "away0"),
        lambda x, y: x / y,
        np.divide,
        lambda x, y: x / y,
        method=True,
    ),
    Op(
        "pow",
        binary("base", "exponent"),
        lambda x, y: x**y,
        np.power,
        lambda x, y: x**y,
        method=True,
        rtol32=1e-4,
    ),
    Op(
        "maximum",
        binary("grid", "halfgrid"),
        F.maximum,
        np.maximum,
        lambda x, y: _torch().maximum(x, y),
    ),
    Op(
        "minimum",
        binary("grid", "halfgrid"),
        F.minimum,
        np.minimum,
        lambda x, y: _torch().minimum(x, y),
    ),
    # -- with a Python scalar on either side --
    Op(
        "add scalar",
        with_scalar("any", [-1.5, 0.0, 2.0]),
        lambda x, c: x + c,
        lambda x, c: x + c,
        lambda x, c: x + c,
        method=True,
    ),
    Op(
        "rsub scalar",
        with_scalar("any", [-1.5, 2.0]),
        lambda x, c: c - x,
        lambda x, c: c - x,
        lambda x, c: c - x,
        method=True,
    ),
    Op(
        "mul scalar",
        with_scalar("any", [-1.5, 0.5, 3.0]),
        lambda x, c: c * x,
        lambda x, c: c * x,
        lambda x, c: c * x,
        method=True,
    ),
    Op(
        "rdiv scalar",
        with_scalar("away0", [-1.5, 1.0, 4.0]),
        lambda x, c: c / x,
        lambda x, c: c / x,
        lambda x, c: c / x,
        method=True,
    ),
    Op(
        "pow int scalar",
        with_scalar("away0", [0, 1, 2, 3, -1, -2]),
        lambda x, c: x**c,
        lambda x, c: x ** float(c),
        lambda x, c: x**c,
        method=True,
        rtol32=1e-4,
    ),
    Op(
        "pow float scalar",
        with_scalar("positive", [0.5, -0.5, 1.5, 2.5]),
        lambda x, c: x**c,
        lambda x, c: x**c,
        lambda x, c: x**c,
        method=True,
        rtol32=1e-4,
    ),
    Op(
        "rpow scalar",
        with_scalar("any", [0.5, 2.0, 3.0]),
        lambda x, c: c**x,
        lambda x, c: c**x,
        lambda x, c: c**x,
        method=True,
        rtol32=1e-4,
    ),
    Op(
        "clamp",
        clamp_case(),
        lambda x, lo, hi: F.clamp(x, lo, hi),
        lambda x, lo, hi: np.clip(x, -np.inf if lo is None else lo, np.inf if hi is None else hi),
        t_clamp,
    ),
    # -- matmul and the fused layers --
    Op(
        "matmul",
        matmul_pair(),
        lambda x, y: x @ y,
        np.matmul,
        lambda x, y: x @ y,
        method=True,
        rtol32=1e-4,
    ),
    Op(
        "linear",
        linear_case(),
        F.linear,
        lambda x, w, b=None: x @ w.T + (0 if b is None else b),
        lambda *a: _tnn().linear(*a),
        rtol32=1e-4,
    ),
    Op(
        "conv2d",
        conv_case(),
        F.conv2d,
        np_conv2d,
        lambda *a, stride, padding: _tnn().conv2d(*a, stride=stride, padding=padding),
        rtol32=1e-4,
    ),
    Op(
        "max_pool2d",
        pool_case(),
        F.max_pool2d,
        np_max_pool2d,
        lambda x, kernel_size, stride, padding: _tnn().max_pool2d(x, kernel_size, stride, padding),
    ),
    # -- reductions --
    Op(
        "sum",
        reduction(min_side=0),
        lambda x, **k: x.sum(**k),
        lambda x, axis, keepdims: np.sum(x, axis=axis, keepdims=keepdims),
        t_reduce("sum"),
        method=True,
        rtol32=1e-4,
    ),
    Op(
        "mean",
        reduction(),
        lambda x, **k: x.mean(**k),
        lambda x, axis, keepdims: np.mean(x, axis=axis, keepdims=keepdims),
        t_reduce("mean"),
        method=True,
        rtol32=1e-4,
    ),
    Op(
        "max",
        reduction("grid", unique=True),
        lambda x, **k: x.max(**k),
        lambda x, axis, keepdims: np.max(x, axis=axis, keepdims=keepdims),
        t_reduce("max"),
        method=True,
    ),
    Op(
        "min",
        reduction("grid", unique=True),
        lambda x, **k: x.min(**k),
        lambda x, axis, keepdims: np.min(x, axis=axis, keepdims=keepdims),
        t_reduce("min"),
        method=True,
    ),
    Op(
        "argmax",
        along_axis("grid", unique=True, keepdims=True),
        lambda x, **k: x.argmax(**k),
        lambda x, **k: np.argmax(x, **k),
        t_arg("argmax"),
        grad=False,
        method=True,
    ),
    Op(
        "argmin",
        along_axis("grid", unique=True, keepdims=True),
        lambda x, **k: x.argmin(**k),
        lambda x, **k: np.argmin(x, **k),
        t_arg("argmin"),
        grad=False,
        method=True,
    ),
    Op(
        "softmax",
        along_axis(),
        lambda x, axis: x.softmax(axis),
        lambda x, axis: np.exp(np_log_softmax(x, axis)),
        lambda x, axis: x.softmax(axis),
        method=True,
    ),
    Op(
        "log_softmax",
        along_axis(),
        lambda x, axis: x.log_softmax(axis),
        np_log_softmax,
        lambda x, axis: x.log_softmax(axis),
        method=True,
    ),
    # -- shapes and indexing --
    Op(
        "reshape",
        reshape_case(),
        lambda x, shape: x.reshape(*shape),
        lambda x, shape: x.reshape(shape),
        lambda x, shape: x.reshape(shape),
        method=True,
    ),
    Op(
        "reshape tuple",
        reshape_case(),
        lambda x, shape: x.reshape(shape),
        lambda x, shape: x.reshape(shape),
        lambda x, shape: x.reshape(shape),
        method=True,
    ),
    Op(
        "flatten",
        unary(),
        lambda x: x.flatten(),
        lambda x: x.reshape(-1),
        lambda x: x.reshape(-1),
        method=True,
    ),
    Op(
        "T",
        unary(),
        lambda x: x.T,
        lambda x: x.T,
        lambda x: x.permute(tuple(reversed(range(x.ndim)))),
        method=True,
    ),
    Op(
        "permute",
        permute_case(),
        lambda x, perm: x.permute(*perm),
        lambda x, perm: np.transpose(x, perm),
        lambda x, perm: x.permute(perm),
        method=True,
    ),
    Op(
        "transpose",
        swap_case(),
        lambda x, a, b: x.transpose(a, b),
        lambda x, a, b: np.swapaxes(x, a, b),
        lambda x, a, b: x.transpose(a, b),
        method=True,
    ),
    Op(
        "getitem",
        index_case(),
        lambda x, key: x[key],
        lambda x, key: x[_np_key(key)],
        t_index,
        method=True,
    ),
    Op(
        "cat",
        join_case(),
        lambda *xs, axis: fg.cat(list(xs), axis=axis),
        lambda *xs, axis: np.concatenate(xs, axis=axis),
        lambda *xs, axis: _torch().cat(xs, dim=axis),
    ),
    Op(
        "stack",
        stack_case(),
        lambda *xs, axis: fg.stack(list(xs), axis=axis),
        lambda *xs, axis: np.stack(xs, axis=axis),
        lambda *xs, axis: _torch().stack(xs, dim=axis),
    ),
    # -- losses --
    Op(
        "cross_entropy",
        class_case(),
        lambda x, target, reduction, label_smoothing: fg.loss.cross_entropy(
            x, target, reduction=reduction, label_smoothing=label_smoothing
        ),
        np_cross_entropy,
        t_ce,
    ),
    Op(
        "nll",
        class_case(log_probs=True),
        lambda x, target, reduction: fg.loss.nll(x, target, reduction=reduction),
        lambda x, target, reduction: np_reduce(-x[np.arange(len(target)), target], reduction),
        t_nll,
    ),
    Op(
        "mse",
        same_shape_pair(),
        fg.loss.mse,
        lambda x, y, reduction: np_reduce((x - y) ** 2, reduction),
        lambda x, y, reduction: _tnn().mse_loss(x, y, reduction=reduction),
    ),
    Op(
        "l1",
        same_shape_pair("grid", "halfgrid"),
        fg.loss.l1,
        lambda x, y, reduction: np_reduce(np.abs(x - y), reduction),
        lambda x, y, reduction: _tnn().l1_loss(x, y, reduction=reduction),
    ),
    Op(
        "binary_cross_entropy",
        same_shape_pair("prob", "unit"),
        fg_bce,
        np_bce,
        lambda p, y, reduction: _tnn().binary_cross_entropy(p, y, reduction=reduction),
        frozen=(1,),
    ),
    Op(
        "binary_cross_entropy_with_logits",
        same_shape_pair("any", "unit"),
        fg_bce_logits,
        np_bce_logits,
        lambda x, y, reduction: _tnn().binary_cross_entropy_with_logits(x, y, reduction=reduction),
        frozen=(1,),
    ),
]

OP_IDS = [op.name for op in OPS]


# ---------------------------------------------------------------------------------------------
# The checks.


def _close(got, want, dtype, rtol32):
    got = np.asarray(got)
    want = np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"shape {got.shape} != NumPy's {want.shape}"
    if dtype == "float32":
        np.testing.assert_allclose(got, want, rtol=rtol32, atol=1e-5, equal_nan=True)
    else:
        np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12, equal_nan=True)


def _forward_case(op):
    return st.tuples(
        op.inputs,
        st.sampled_from(["float32", "float64"]),
        st.lists(st.sampled_from(LAYOUTS), min_size=4, max_size=4),
    )


def _frozen_const(op, arrays, dtype):
    """Inputs in ``op.frozen`` become plain NumPy arrays closed over by the function."""
    return [a.astype(dtype) if i in op.frozen else None for i, a in enumerate(arrays)]


def _call(op, xs, kw, make):
    return op.fg(*[make(x) for x in xs], **kw)


@pytest.mark.parametrize("op", OPS, ids=OP_IDS)
def test_every_op_forward_matches_numpy_on_any_layout_and_dtype(op):
    @EXAMPLES
    @given(_forward_case(op))
    def check(case):
        (arrays, kw), dtype, layouts = case
        cast = [a.astype(dtype) for a in arrays]
        # NumPy computes in float64 on the values the dtype can hold.
        with warnings.catch_warnings(), np.errstate(all="ignore"):
            warnings.simplefilter("ignore")
            want = op.np(*[c.astype(np.float64) for c in cast], **kw)
        laid = [lay_out(c, lay) for c, lay in zip(cast, layouts)]
        before = [c.copy() for c in laid]
        got = op.fg(*[fg.Tensor(x) for x in laid], **kw)
        assert isinstance(got, fg.Tensor)
        if op.name not in ("argmax", "argmin"):
            assert got.dtype == dtype
        _close(got, want, dtype, op.rtol32)
        for x, b in zip(laid, before):
            np.testing.assert_array_equal(x, b)  # inputs untouched
        if op.method:
            got_nd = op.fg(*[fg.NdArray(x) for x in laid], **kw)
            assert isinstance(got_nd, fg.NdArray)
            _close(got_nd, want, dtype, op.rtol32)

    check()


@pytest.mark.parametrize("op", [op for op in OPS if op.grad], ids=lambda op: op.name)
def test_every_differentiable_op_passes_gradcheck_and_backward_keeps_the_leaf_dtype(op):
    @EXAMPLES
    @given(op.inputs, st.sampled_from(["float32", "float64"]))
    def check(case, dtype):
        arrays, kw = case
        live = [i for i in range(len(arrays)) if i not in op.frozen]

        def fn(*leaves):
            full = list(arrays)
            for i, leaf in zip(live, leaves):
                full[i] = leaf
            return op.fg(*[x if isinstance(x, fg.Tensor) else np.asarray(x) for x in full], **kw)

        assert fg.gradcheck(fn, [arrays[i] for i in live], atol=1e-5, rtol=1e-3)
        # The same backward in the drawn dtype: grads of the leaf's dtype and shape.
        leaves = [fg.Tensor(arrays[i].astype(dtype), requires_grad=True) for i in live]
        out = fn(*leaves)
        weights = np.random.default_rng(1).uniform(0.5, 1.5, size=out.shape).astype(dtype)
        out.backward(weights)
        ref = [fg.Tensor(arrays[i], requires_grad=True, dtype="float64") for i in live]
        fn(*ref).backward(weights.astype(np.float64))
        for leaf, r in zip(leaves, ref):
            if r.grad is None:
                assert leaf.grad is None or not np.any(leaf.grad.numpy())
                continue
            assert leaf.grad is not None
            assert leaf.grad.dtype == dtype and leaf.grad.shape == leaf.shape
            tol = 1e-3 if dtype == "float32" else 1e-12
            np.testing.assert_allclose(leaf.grad.numpy(), r.grad.numpy(), rtol=tol, atol=tol)

    check()


def test_every_op_matches_pytorch_forward_and_backward():
    torch = pytest.importorskip("torch")
    previous = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    failures = []
    try:
        for op in OPS:
            try:
                _torch_check(op, torch)()
            except Exception as exc:  # noqa: BLE001 -- collect every op that differs, then fail naming them
                failures.append(f"{op.name}: {str(exc)[:400]}")
    finally:
        # Later tests compare against PyTorch's float32 default.
        torch.set_default_dtype(previous)
    assert not failures, "ops that differ from PyTorch:\n" + "\n".join(failures)


def _torch_check(op, torch):
    @settings(
        max_examples=8, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True
    )
    @given(op.inputs)
    def check(case):
        arrays, kw = case
        live = [i for i in range(len(arrays)) if i not in op.frozen]
        tin = [
            torch.tensor(a, dtype=torch.float64, requires_grad=(i in live and op.grad))
            for i, a in enumerate(arrays)
        ]
        want = op.torch(*tin, **kw)
        fin = [
            fg.Tensor(a, dtype="float64", requires_grad=(i in live and op.grad))
            for i, a in enumerate(arrays)
        ]
        got = op.fg(*fin, **kw)
        _close(got, want.detach().numpy(), "float64", 0)
        if not op.grad:
            return
        w = np.random.default_rng(2).uniform(0.5, 1.5, size=got.shape)
        (want * torch.tensor(w)).sum().backward()
        got.backward(w)
        for i in live:
            tg = tin[i].grad
            tg = np.zeros(arrays[i].shape) if tg is None else tg.numpy()
            fgrad = fin[i].grad
            fgrad = np.zeros(arrays[i].shape) if fgrad is None else fgrad.numpy()
            np.testing.assert_allclose(
                fgrad, tg, rtol=1e-9, atol=1e-12, err_msg=f"{op.name}: grad of input {i}"
            )

    return check


def test_the_op_table_covers_every_tensor_op():
    covered = {op.name for op in OPS}
    for name in [
        "exp",
        "log",
        "sqrt",
        "abs",
        "relu",
        "sigmoid",
        "tanh",
        "sum",
        "mean",
        "max",
        "min",
        "argmax",
        "argmin",
        "softmax",
        "log_softmax",
        "reshape",
        "transpose",
        "permute",
        "flatten",
        "T",
        "getitem",
        "cat",
        "stack",
        "matmul",
        "gelu",
        "conv2d",
        "max_pool2d",
        "linear",
        "cross_entropy",
        "nll",
        "clamp",
        "maximum",
        "minimum",
        "mse",
        "l1",
        "binary_cross_entropy",
    ]:
        assert name in covered, name
    assert len(OPS) >= 50


# ---------------------------------------------------------------------------------------------
# Value: the scalar autodiff type, against math and central differences.

VALUE_UNARY = {
    "neg": (lambda v: -v, lambda x: -x, "any"),
    "relu": (lambda v: v.relu(), lambda x: max(x, 0.0), "away0"),
    "tanh": (lambda v: v.tanh(), math.tanh, "any"),
    "exp": (lambda v: v.exp(), math.exp, "any"),
    "log": (lambda v: v.log(), math.log, "positive"),
    "sigmoid": (lambda v: v.sigmoid(), lambda x: 1 / (1 + math.exp(-x)), "any"),
    "pow scalar": (lambda v: v**3, lambda x: x**3, "any"),
    "rpow scalar": (lambda v: 2.0**v, lambda x: 2.0**x, "any"),
}
VALUE_BINARY = {
    "add": (lambda a, b: a + b, "any", "any"),
    "sub": (lambda a, b: a - b, "any", "any"),
    "mul": (lambda a, b: a * b, "any", "any"),
    "div": (lambda a, b: a / b, "any", "away0"),
    "pow": (lambda a, b: a**b, "base", "exponent"),
}


def _central(f, x, eps=1e-6):
    return (f(x + eps) - f(x - eps)) / (2 * eps)


@pytest.mark.parametrize("name", list(VALUE_UNARY))
def test_every_value_unary_op_matches_math_and_central_differences(name):
    op, ref, domain = VALUE_UNARY[name]

    @EXAMPLES
    @given(DOMAINS[domain])
    def check(x):
        v = fg.Value(x)
        out = op(v)
        out.backward()
        assert out.data == pytest.approx(ref(x), rel=1e-12, abs=1e-12)
        assert v.grad == pytest.approx(_central(ref, x), rel=1e-5, abs=1e-6)

    check()


@pytest.mark.parametrize("name", list(VALUE_BINARY))
def test_every_value_binary_op_matches_python_floats_and_central_differences(name):
    op, da, db = VALUE_BINARY[name]

    @EXAMPLES
    @given(DOMAINS[da], DOMAINS[db])
    def check(x, y):
        a, b = fg.Value(x), fg.Value(y)
        out = op(a, b)
        out.backward()
        assert out.data == pytest.approx(op(x, y), rel=1e-12, abs=1e-12)
        assert a.grad == pytest.approx(_central(lambda t: op(t, y), x), rel=1e-5, abs=1e-6)
        assert b.grad == pytest.approx(_central(lambda t: op(x, t), y), rel=1e-5, abs=1e-6)

    check()
