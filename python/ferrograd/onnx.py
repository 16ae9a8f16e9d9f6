"""Export a model to ONNX (opset 17), to run it with onnxruntime and other ONNX runtimes.

``export(model, example_inputs, path)`` runs the model's forward once on the example
inputs while the core records every tensor op it performs (in eval mode and under
``no_grad``, as ``torch.onnx.export`` does), then writes the recorded graph as an ONNX
model: parameters and buffers become initializers named by their ``state_dict`` names,
tensors made inside the forward that do not depend on an input (``fg.arange``, masks, …)
become constants, and each recorded op becomes one or more ONNX nodes. Because the core
records, any ``Module`` written with tensor ops exports, not only ``Sequential``.

Needs the optional extra: ``pip install 'ferrograd[onnx]'`` (the ``onnx`` package).
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import numpy as np

import ferrograd as fg
from ferrograd import _core
from ferrograd._core import Tensor

__all__ = ["UnsupportedOperatorError", "export"]

OPSET = 17

DynamicAxes = Mapping[str, Union[Mapping[int, str], Sequence[int]]]


class UnsupportedOperatorError(RuntimeError):
    """An op the forward performed has no ONNX mapping (or not in the form it was used);
    the message names the op. Nothing is written when it is raised."""


def _onnx() -> Any:
    try:
        import onnx
    except ImportError as e:  # pragma: no cover - depends on the environment
        raise ImportError(
            "fg.onnx.export needs the onnx package: pip install 'ferrograd[onnx]'"
        ) from e
    return onnx


class _Recording:
    """Records the tensor ops this thread runs; the records are in ``self.records`` after
    the block, and recording is off again however the block ends."""

    def __enter__(self) -> _Recording:
        _core._start_recording()
        self.records: list[dict[str, Any]] = []
        return self

    def __exit__(self, *exc: object) -> None:
        self.records = _core._stop_recording()


def export(
    model: Callable[..., Any],
    example_inputs: Tensor | Sequence[Tensor],
    path: str | os.PathLike[str],
    input_names: Sequence[str] | None = None,
    output_names: Sequence[str] | None = None,
    dynamic_axes: DynamicAxes | None = None,
) -> None:
    """Writes ``model`` as an ONNX model (opset 17) to ``path``.

    ``example_inputs`` is one Tensor or a tuple of them: the forward runs once on them.
    ``input_names``/``output_names`` name the graph's inputs and outputs (default
    ``input_0``…, ``output_0``…; the forward may return a Tensor or a tuple of them).
    ``dynamic_axes`` marks axes whose length may change, as in ``torch.onnx.export``:
    ``{"input_0": {0: "batch"}, "output_0": {0: "batch"}}`` or ``{"input_0": [0]}``.

    The forward runs in eval mode (Dropout passes through, BatchNorm uses its running
    statistics; each module's mode is restored afterwards) and under ``no_grad``. An op
    without an ONNX mapping raises :class:`UnsupportedOperatorError` naming it, before
    anything is written; so does an in-place write during the forward.
    """
    onnx = _onnx()
    inputs = _example_inputs(example_inputs)
    modules = list(model.modules()) if hasattr(model, "modules") else []
    modes = [(m, m.training) for m in modules]
    try:
        for m in modules:
            m.training = False
        with fg.no_grad(), _Recording() as rec:
            result = model(*inputs)
    finally:
        for m, mode in modes:
            m.training = mode
    outputs = _outputs(result)
    builder = _GraphBuilder(onnx, rec.records, model, inputs, outputs)
    proto = builder.build(input_names, output_names, dynamic_axes)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, os.fspath(path))


def _example_inputs(example_inputs: Any) -> list[Tensor]:
    items = list(example_inputs) if isinstance(example_inputs, (tuple, list)) else [
        example_inputs
    ]
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            raise TypeError(
                f"export: example input {i} must be a Tensor, got {type(t).__name__}"
            )
    return items


def _outputs(result: Any) -> list[Tensor]:
    items = list(result) if isinstance(result, (tuple, list)) else [result]
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            raise TypeError(
                f"export: the forward must return a Tensor or a tuple of Tensors; output {i} "
                f"is {type(t).__name__}"
            )
    return items


def _storage_id(t: Tensor) -> int:
    return int(t.data._id)


def _names(given: Sequence[str] | None, n: int, stem: str) -> list[str]:
    if given is None:
        return [f"{stem}_{i}" for i in range(n)]
    names = [str(s) for s in given]
    if len(names) > n:
        raise ValueError(f"export: {len(names)} {stem} names given for {n} {stem}s")
    if len(set(names)) != len(names):
        raise ValueError(f"export: {stem} names must be distinct, got {names}")
    return names + [f"{stem}_{i}" for i in range(len(names), n)]


def _dyn_spec(dynamic_axes: DynamicAxes | None, name: str, ndim: int) -> dict[int, str]:
    """The dynamic axes given for one input or output, as ``{axis: dim_param}``."""
    if not dynamic_axes or name not in dynamic_axes:
        return {}
    spec = dynamic_axes[name]
    pairs = spec.items() if isinstance(spec, Mapping) else (
        (a, f"{name}_dynamic_axes_{i + 1}") for i, a in enumerate(spec)
    )
    out: dict[int, str] = {}
    for axis, label in pairs:
        a = int(axis)
        if not -ndim <= a < ndim:
            raise ValueError(f"export: dynamic axis {axis} of {name!r} is out of range")
        out[a % ndim] = str(label)
    return out


def _reshape_target(in_shape: tuple[int, ...], in_dyn: frozenset[int],
                    out_shape: tuple[int, ...]) -> tuple[list[int], frozenset[int]]:
    """The Reshape target for a traced reshape whose input has dynamic axes ``in_dyn``.

    Rule: the leading axes the reshape leaves as they are keep their length by a 0 (copy
    the input's); the one dynamic axis beyond them (if any) goes into the first output axis
    of the group of output axes it is merged or split into, as -1. Fails (an error, never
    a wrong graph) where two dynamic axes are merged or one of length 1 is moved.
    """
    target = list(out_shape)
    k = 0
    while k < min(len(in_shape), len(out_shape)) and in_shape[k] == out_shape[k]:
        k += 1
    out_dyn = {d for d in in_dyn if d < k}
    for d in out_dyn:
        target[d] = 0
    rest = sorted(d for d in in_dyn if d >= k)
    if len(rest) > 1:
        raise UnsupportedOperatorError(
            f"reshape: {in_shape} -> {out_shape} merges several dynamic axes {rest}"
        )
    if rest:
        d = rest[0]
        if in_shape[d] <= 1:
            raise UnsupportedOperatorError(
                f"reshape: dynamic axis {d} has length {in_shape[d]} in the example, so "
                f"where it goes in {in_shape} -> {out_shape} is ambiguous; export with a "
                f"longer example axis"
            )
        before = math.prod(in_shape[:d])
        cum = 1
        for i, n in enumerate(out_shape):
            cum *= n
            if cum > before:
                target[i] = -1
                out_dyn.add(i)
                break
    return target, frozenset(out_dyn)


_NP_TO_ONNX = {
    "float32": 1,  # FLOAT
    "float64": 11,  # DOUBLE
    "int64": 7,
    "int32": 6,
    "bool": 9,
}


class _GraphBuilder:
    def __init__(self, onnx: Any, records: list[dict[str, Any]], model: Any,
                 inputs: list[Tensor], outputs: list[Tensor]) -> None:
        self.onnx = onnx
        self.h = onnx.helper
        self.records = records
        self.model = model
        self.inputs = inputs
        self.outputs = outputs
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.value_names: dict[int, str] = {}  # node id -> ONNX value name
        self.tensors: dict[int, Tensor] = {}  # node id -> tensor
        self.dyn: dict[int, frozenset[int]] = {}  # node id -> its dynamic axes
        self.used_names: set[str] = set()
        self.counter = 0

    # ---------------------------------------------------------------- names and values

    def fresh(self, stem: str) -> str:
        while True:
            self.counter += 1
            name = f"{stem}_{self.counter}"
            if name not in self.used_names:
                self.used_names.add(name)
                return name

    def const(self, value: Any, dtype: str | None = None, stem: str = "const") -> str:
        arr = np.asarray(value) if dtype is None else np.asarray(value, dtype=dtype)
        name = self.fresh(stem)
        self.initializers.append(self.onnx.numpy_helper.from_array(arr, name))
        return name

    def ints(self, values: Sequence[int]) -> str:
        return self.const(np.asarray(list(values), dtype=np.int64), stem="ints")

    def node(self, op_type: str, inputs: Sequence[str], n_out: int = 1,
             **attrs: Any) -> list[str]:
        outs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.h.make_node(op_type, list(inputs), outs, **attrs))
        return outs

    def one(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        return self.node(op_type, inputs, 1, **attrs)[0]

    def name_of(self, t: Tensor) -> str:
        return self.value_names[t._id]

    def cast(self, name: str, src: str, dst: str) -> str:
        if src == dst:
            return name
        return self.one("Cast", [name], to=_NP_TO_ONNX[dst])

    def arg(self, t: Tensor, dtype: str | None = None) -> str:
        """The value name of ``t``, cast to ``dtype`` when given."""
        name = self.name_of(t)
        return name if dtype is None else self.cast(name, t.dtype, dtype)

    # ---------------------------------------------------------------- the graph

    def build(self, input_names: Sequence[str] | None, output_names: Sequence[str] | None,
              dynamic_axes: DynamicAxes | None) -> Any:
        h = self.h
        in_names = _names(input_names, len(self.inputs), "input")
        out_names = _names(output_names, len(self.outputs), "output")
        known = set(in_names) | set(out_names)
        if dynamic_axes:
            unknown = [k for k in dynamic_axes if k not in known]
            if unknown:
                raise ValueError(
                    f"export: dynamic_axes names {unknown} are neither input nor output names "
                    f"({sorted(known)})"
                )
        self.used_names |= known

        graph_inputs = []
        input_storages: dict[int, str] = {}
        for t, name in zip(self.inputs, in_names):
            if _storage_id(t) in input_storages:
                raise ValueError(f"export: input {name!r} is the same tensor as another input")
            spec = _dyn_spec(dynamic_axes, name, t.ndim)
            input_storages[_storage_id(t)] = name
            self.value_names[t._id] = name
            self.tensors[t._id] = t
            self.dyn[t._id] = frozenset(spec)
            dims = [spec.get(i, n) for i, n in enumerate(t.shape)]
            graph_inputs.append(h.make_tensor_value_info(name, _NP_TO_ONNX[t.dtype], dims))

        params: dict[int, str] = {}
        if hasattr(self.model, "named_parameters"):
            for pname, p in self.model.named_parameters():
                params.setdefault(_storage_id(p), pname)
            for bname, b in self.model.named_buffers():
                params.setdefault(_storage_id(b), bname)
        self.used_names |= set(params.values())

        live = self._live_tensors(input_storages, params)
        self._check_versions()
        needed = self._needed_records(live)
        emitted_params: set[str] = set()
        for r in self.records:
            if id(r) not in needed:
                continue
            for t, _ in r["inputs"]:
                if t._id in self.value_names:
                    continue
                self._source(t, input_storages, params, emitted_params, live)
            converter = _CONVERTERS.get(r["op"])
            if converter is None:
                raise UnsupportedOperatorError(
                    f"export: the op {r['op']!r} has no ONNX mapping (opset {OPSET})"
                )
            produced = converter(self, r)
            for (t, _), name in zip(r["outputs"], produced):
                self.value_names[t._id] = name
                self.tensors[t._id] = t

        graph_outputs = []
        for t, name in zip(self.outputs, out_names):
            if t._id not in self.value_names:
                self._source(t, input_storages, params, emitted_params, live)
            self.nodes.append(h.make_node("Identity", [self.value_names[t._id]], [name]))
            spec = _dyn_spec(dynamic_axes, name, t.ndim)
            auto = self.dyn.get(t._id, frozenset())
            dims = [
                spec.get(i, f"{name}_dim{i}" if i in auto else n)
                for i, n in enumerate(t.shape)
            ]
            graph_outputs.append(h.make_tensor_value_info(name, _NP_TO_ONNX[t.dtype], dims))

        graph = h.make_graph(self.nodes, "ferrograd", graph_inputs, graph_outputs,
                             initializer=self.initializers)
        proto = h.make_model(graph, opset_imports=[h.make_opsetid("", OPSET)],
                             producer_name="ferrograd", producer_version=fg.__version__)
        proto.ir_version = 8  # what opset 17 came with; runtimes of that era read it
        return proto

    def _live_tensors(self, input_storages: dict[int, str], params: dict[int, str]) -> set[int]:
        """Node ids of the tensors that depend on an input or a parameter (the rest are
        constants: their recorded values go into the file)."""
        live: set[int] = set()
        for r in self.records:
            if any(t._id in live or _storage_id(t) in input_storages or _storage_id(t) in params
                   for t, _ in r["inputs"]) or (not r["inputs"] and r["op"] in _RANDOM):
                live.update(t._id for t, _ in r["outputs"])
        return live

    def _needed_records(self, live: set[int]) -> set[int]:
        producer = {t._id: r for r in self.records for t, _ in r["outputs"]}
        needed: set[int] = set()
        stack = [t for t in self.outputs]
        seen: set[int] = set()
        while stack:
            t = stack.pop()
            if t._id in seen or t._id not in live:
                continue
            seen.add(t._id)
            r = producer.get(t._id)
            if r is None:
                continue
            needed.add(id(r))
            stack.extend(u for u, _ in r["inputs"])
        return needed

    def _check_versions(self) -> None:
        seen: dict[int, int] = {}
        for r in self.records:
            for t, version in list(r["outputs"]) + list(r["inputs"]):
                if seen.setdefault(t._id, version) != version:
                    raise UnsupportedOperatorError(
                        f"export: a tensor of shape {tuple(t.shape)} was modified in place "
                        f"during the forward (before or after the op {r['op']!r}); in-place "
                        f"ops cannot be exported"
                    )

    def _source(self, t: Tensor, input_storages: dict[int, str], params: dict[int, str],
                emitted: set[str], live: set[int]) -> None:
        """Names a tensor no needed record produced: a graph input (an alias of one), a
        parameter or buffer (an initializer under its state_dict name), or a constant."""
        sid = _storage_id(t)
        if sid in input_storages:
            self.value_names[t._id] = input_storages[sid]
            self.dyn[t._id] = self.dyn.get(
                next(i._id for i in self.inputs if _storage_id(i) == sid), frozenset())
            return
        if sid in params:
            name = params[sid]
            if name not in emitted:
                self.initializers.append(self.onnx.numpy_helper.from_array(t.numpy(), name))
                emitted.add(name)
            self.value_names[t._id] = name
            self.dyn[t._id] = frozenset()
            return
        if t._id in live:  # produced by a record that was not needed: cannot happen
            raise RuntimeError("export: internal error, a live tensor has no producer")
        self.value_names[t._id] = self.const(t.numpy(), stem="constant")
        self.dyn[t._id] = frozenset()


# -------------------------------------------------------------------- converters

_RANDOM = {"randn", "rand", "randint", "randperm", "multinomial"}


def _ins(r: dict[str, Any]) -> list[Tensor]:
    return [t for t, _ in r["inputs"]]


def _out(r: dict[str, Any]) -> Tensor:
    return r["outputs"][0][0]


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


_UNARY = {"neg": "Neg", "exp": "Exp", "log": "Log", "sqrt": "Sqrt", "abs": "Abs",
          "relu": "Relu", "sigmoid": "Sigmoid", "tanh": "Tanh", "sin": "Sin", "cos": "Cos"}


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
    onnx_op = {"mean": "ReduceMean", "max": "ReduceMax", "min": "ReduceMin",
               "logsumexp": "ReduceLogSumExp"}[op]
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


_COMPARE = {"Eq": "Equal", "Lt": "Less", "Le": "LessOrEqual", "Gt": "Greater",
            "Ge": "GreaterOrEqual"}


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
    target, dyn = _reshape_target(tuple(t.shape), b.dyn.get(t._id, frozenset()),
                                  tuple(out.shape))
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
        items = items[:at] + [("slice", None, None, None)] * (t.ndim - consumed) + items[at + 1:]
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
                x = b.one("Slice", [x, b.ints([start]), b.ints([stop]), b.ints([axis]),
                                    b.ints([step])])
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
    return [b.one("Slice", [b.arg(_ins(r)[0]), b.ints([start]), b.ints([start + n]),
                            b.ints([axis])])]


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
    return [b.one("Conv", args, strides=[sh, sw], pads=[ph, pw, ph, pw],
                  kernel_shape=[kh, kw])]


def _max_pool(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    _set_dyn(b, r, b.dyn.get(_ins(r)[0]._id, frozenset()) & {0, 1})
    (kh, kw), (sh, sw), (ph, pw) = (r["attrs"][k] for k in ("kernel", "stride", "padding"))
    return [b.one("MaxPool", [b.arg(_ins(r)[0])], kernel_shape=[kh, kw], strides=[sh, sw],
                  pads=[ph, pw, ph, pw])]


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
    return [b.one("Add", [b.one("Mul", [nll, b.const(1.0 - eps, x.dtype)]),
                          b.one("Mul", [smooth, b.const(eps, x.dtype)])])]


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
        s = b.one("Add", [b.one("Mul", [y, logp]),
                          b.one("Mul", [b.one("Sub", [one, y]), log1p])])
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
    return [b.one("LayerNormalization", [b.arg(x), scale, bias], axis=axis,
                  epsilon=float(r["attrs"]["eps"]))]


def _batch_norm(b: _GraphBuilder, r: dict[str, Any]) -> list[str]:
    ins = _ins(r)
    x, mean, var = ins[:3]
    _same_dyn(b, r)
    c = x.shape[1]
    if len(ins) == 5:
        scale, bias = b.arg(ins[3], x.dtype), b.arg(ins[4], x.dtype)
    else:
        scale, bias = b.const(np.ones(c), x.dtype), b.const(np.zeros(c), x.dtype)
    return [b.one("BatchNormalization",
                  [b.arg(x), scale, bias, b.arg(mean, x.dtype), b.arg(var, x.dtype)],
                  epsilon=float(r["attrs"]["eps"]))]


_CONVERTERS: dict[str, Callable[[_GraphBuilder, dict[str, Any]], list[str]]] = {
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
