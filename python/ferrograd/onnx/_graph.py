"""The graph builder of ``fg.onnx.export``: names values, turns parameters into
initializers and constant tensors into constants, checks the record, and calls one converter
(``_ops.py``) per needed op."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Union

import numpy as np

import ferrograd as fg
from ferrograd._core import Tensor

OPSET = 17

DynamicAxes = Mapping[str, Union[Mapping[int, str], Sequence[int]]]


class UnsupportedOperatorError(RuntimeError):
    """An op the forward performed has no ONNX mapping (or not in the form it was used);
    the message names the op. Nothing is written when it is raised."""


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
    pairs = (
        spec.items()
        if isinstance(spec, Mapping)
        else ((a, f"{name}_dynamic_axes_{i + 1}") for i, a in enumerate(spec))
    )
    out: dict[int, str] = {}
    for axis, label in pairs:
        a = int(axis)
        if not -ndim <= a < ndim:
            raise ValueError(f"export: dynamic axis {axis} of {name!r} is out of range")
        out[a % ndim] = str(label)
    return out


def _reshape_target(
    in_shape: tuple[int, ...], in_dyn: frozenset[int], out_shape: tuple[int, ...]
) -> tuple[list[int], frozenset[int]]:
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


# A converter: ONNX nodes for one record, returning the value names of its outputs.
Converter = Callable[["_GraphBuilder", dict[str, Any]], list[str]]

_NP_TO_ONNX = {
    "float32": 1,  # FLOAT
    "float64": 11,  # DOUBLE
    "int64": 7,
    "int32": 6,
    "bool": 9,
}


class _GraphBuilder:
    """Builds the ModelProto of one recorded forward."""

    def __init__(
        self,
        onnx: Any,
        records: list[dict[str, Any]],
        model: Any,
        inputs: list[Tensor],
        outputs: list[Tensor],
        converters: Mapping[str, Converter],
        random_ops: set[str],
    ) -> None:
        self.converters = converters
        self.random_ops = random_ops
        self.onnx = onnx
        self.h = onnx.helper
        self.records = records
        self.model = model
        self.inputs = inputs
        self.outputs = outputs
        self.nodes: list[Any] = []
        self.initializers: list[Any] = []
        self.value_names: dict[int, str] = {}  # node id -> ONNX value name
        self.dyn: dict[int, frozenset[int]] = {}  # node id -> its dynamic axes
        self.used_names: set[str] = set()
        self.live: set[int] = set()  # node ids of tensors computed from inputs or parameters
        self.roots: set[int] = set()  # storage ids of the inputs and parameters
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

    def node(self, op_type: str, inputs: Sequence[str], n_out: int = 1, **attrs: Any) -> list[str]:
        outs = [self.fresh(op_type.lower()) for _ in range(n_out)]
        self.nodes.append(self.h.make_node(op_type, list(inputs), outs, **attrs))
        return outs

    def one(self, op_type: str, inputs: Sequence[str], **attrs: Any) -> str:
        return self.node(op_type, inputs, 1, **attrs)[0]

    def depends_on_inputs(self, t: Tensor) -> bool:
        """Whether ``t`` is an input or parameter or is computed from one (not a constant)."""
        return t._id in self.live or _storage_id(t) in self.roots

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

    def build(
        self,
        input_names: Sequence[str] | None,
        output_names: Sequence[str] | None,
        dynamic_axes: DynamicAxes | None,
    ) -> Any:
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
        self.live = live
        self.roots = set(input_storages) | set(params)
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
            converter = self.converters.get(r["op"])
            if converter is None:
                raise UnsupportedOperatorError(
                    f"export: the op {r['op']!r} has no ONNX mapping (opset {OPSET})"
                )
            produced = converter(self, r)
            for (t, _), name in zip(r["outputs"], produced):
                self.value_names[t._id] = name

        graph_outputs = []
        for t, name in zip(self.outputs, out_names):
            if t._id not in self.value_names:
                self._source(t, input_storages, params, emitted_params, live)
            self.nodes.append(h.make_node("Identity", [self.value_names[t._id]], [name]))
            spec = _dyn_spec(dynamic_axes, name, t.ndim)
            auto = self.dyn.get(t._id, frozenset())
            dims = [
                spec.get(i, f"{name}_dim{i}" if i in auto else n) for i, n in enumerate(t.shape)
            ]
            graph_outputs.append(h.make_tensor_value_info(name, _NP_TO_ONNX[t.dtype], dims))

        graph = h.make_graph(
            self.nodes, "ferrograd", graph_inputs, graph_outputs, initializer=self.initializers
        )
        proto = h.make_model(
            graph,
            opset_imports=[h.make_opsetid("", OPSET)],
            producer_name="ferrograd",
            producer_version=fg.__version__,
        )
        proto.ir_version = 8  # what opset 17 came with; runtimes of that era read it
        return proto

    def _live_tensors(self, input_storages: dict[int, str], params: dict[int, str]) -> set[int]:
        """Node ids of the tensors that depend on an input or a parameter (the rest are
        constants: their recorded values go into the file)."""
        live: set[int] = set()
        for r in self.records:
            if any(
                t._id in live or _storage_id(t) in input_storages or _storage_id(t) in params
                for t, _ in r["inputs"]
            ) or (not r["inputs"] and r["op"] in self.random_ops):
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

    def _source(
        self,
        t: Tensor,
        input_storages: dict[int, str],
        params: dict[int, str],
        emitted: set[str],
        live: set[int],
    ) -> None:
        """Names a tensor no needed record produced: a graph input (an alias of one), a
        parameter or buffer (an initializer under its state_dict name), or a constant."""
        sid = _storage_id(t)
        if sid in input_storages:
            self.value_names[t._id] = input_storages[sid]
            self.dyn[t._id] = self.dyn.get(
                next(i._id for i in self.inputs if _storage_id(i) == sid), frozenset()
            )
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
