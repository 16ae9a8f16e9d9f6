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

import os
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import ferrograd as fg
from ferrograd import _core
from ferrograd._core import Tensor
from ferrograd.onnx import _ops, _ops_nn
from ferrograd.onnx._graph import DynamicAxes, UnsupportedOperatorError, _GraphBuilder

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["UnsupportedOperatorError", "export"]


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

    def __enter__(self) -> Self:
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
    converters = {**_ops.CONVERTERS, **_ops_nn.CONVERTERS}
    builder = _GraphBuilder(onnx, rec.records, model, inputs, outputs, converters, _ops.RANDOM)
    proto = builder.build(input_names, output_names, dynamic_axes)
    onnx.checker.check_model(proto, full_check=True)
    onnx.save(proto, os.fspath(path))


def _example_inputs(example_inputs: Any) -> list[Tensor]:
    items = list(example_inputs) if isinstance(example_inputs, (tuple, list)) else [example_inputs]
    for i, t in enumerate(items):
        if not isinstance(t, Tensor):
            raise TypeError(f"export: example input {i} must be a Tensor, got {type(t).__name__}")
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
