"""``fg.save`` and ``fg.load``: state dicts in the safetensors format.

A flat state dict (``{name: Tensor}``, what ``Module.state_dict()`` returns) is stored as
plain ``F32``/``F64`` tensors under those names, so other safetensors tools read it. Any
other dict — an optimizer's or a scheduler's state dict, nested, with ints, floats, tuples
and strings beside the tensors — is flattened: each tensor is stored under its path
(``state.0.exp_avg``) and the rest of the structure goes, as JSON, into the file's
metadata under one key, so ``load`` rebuilds the exact nested dict.
"""

from __future__ import annotations

import json
import os
from typing import Any, Union

import numpy as np

from ferrograd import _core
from ferrograd._core import NdArray, Tensor

PathLike = Union[str, "os.PathLike[str]"]

# Metadata keys: the JSON skeleton of a nested state dict, and a flat dict's key order.
STRUCTURE_KEY = "ferrograd.structure"
ORDER_KEY = "ferrograd.order"


def _is_array(x: Any) -> bool:
    return isinstance(x, (Tensor, NdArray, np.ndarray))


def _as_array(x: Any) -> Tensor | NdArray:
    return x if isinstance(x, (Tensor, NdArray)) else Tensor(x)


def _fspath(path: Any) -> str:
    try:
        path = os.fspath(path)
    except TypeError:
        raise TypeError(f"path must be a str or os.PathLike, got {type(path).__name__}") from None
    return os.fsdecode(path)


def save(obj: dict[Any, Any], path: PathLike) -> None:
    """Saves a state dict to a safetensors file at ``path`` (str or ``os.PathLike``).

    The file is written under a temporary name and renamed into place, so an interrupted
    save never leaves half a file behind. A missing directory raises FileNotFoundError.
    """
    path = _fspath(path)
    if not isinstance(obj, dict):
        raise TypeError(
            f"save expects a state dict (a dict), got {type(obj).__name__}; "
            "pass model.state_dict() or optimizer.state_dict()"
        )
    if all(isinstance(k, str) for k in obj) and all(_is_array(v) for v in obj.values()):
        tensors = {k: _as_array(v) for k, v in obj.items()}
        _core.save_safetensors(path, tensors, {ORDER_KEY: json.dumps(list(obj))})
        return
    tensors = {}
    skeleton = _encode(obj, [], tensors)
    _core.save_safetensors(path, tensors, {STRUCTURE_KEY: json.dumps(skeleton)})


def load(path: PathLike) -> dict[Any, Any]:
    """Loads what ``save`` wrote: a dict of name → Tensor for a flat state dict (and
    for safetensors files written by other tools), or the rebuilt nested dict.

    A missing file raises FileNotFoundError; a truncated or corrupt one, ValueError.
    """
    tensors, metadata = _core.load_safetensors(_fspath(path))
    if STRUCTURE_KEY in metadata:
        try:
            skeleton = json.loads(metadata[STRUCTURE_KEY])
            state: dict[Any, Any] = _decode(skeleton, tensors)
            return state
        except (ValueError, KeyError, TypeError, IndexError) as e:
            raise ValueError(
                f"{os.fspath(path)!s}: the file's {STRUCTURE_KEY!r} metadata is corrupt ({e})"
            ) from None
    order = metadata.get(ORDER_KEY)
    if order is not None:
        try:
            names = json.loads(order)
        except ValueError:
            names = None
        if isinstance(names, list) and sorted(names) == sorted(tensors):
            return {name: tensors[name] for name in names}
    return dict(tensors)


# Encoding: containers become one-key JSON objects ({"dict": [[key, value], ...]},
# {"list": [...]}, {"tuple": [...]}, {"tensor": name}); numbers, strings, bools and None
# stay as they are. No other JSON object appears, so decoding is unambiguous.


def _encode(obj: Any, path: list[str], tensors: dict[str, Any]) -> Any:
    if _is_array(obj):
        name = ".".join(path) or "tensor"
        if name in tensors:
            n = 1
            while f"{name}#{n}" in tensors:
                n += 1
            name = f"{name}#{n}"
        tensors[name] = _as_array(obj)
        return {"tensor": name}
    if isinstance(obj, dict):
        items = []
        for k, v in obj.items():
            if _is_array(k):
                raise TypeError(f"save: a Tensor cannot be a dict key (at {'.'.join(path)!r})")
            items.append([_encode(k, path, {}), _encode(v, [*path, str(k)], tensors)])
        return {"dict": items}
    if isinstance(obj, list):
        return {"list": [_encode(v, [*path, str(i)], tensors) for i, v in enumerate(obj)]}
    if isinstance(obj, tuple):
        return {"tuple": [_encode(v, [*path, str(i)], tensors) for i, v in enumerate(obj)]}
    if obj is None or isinstance(obj, (bool, int, float, str)):
        return obj
    if isinstance(obj, np.generic):
        return obj.item()
    where = ".".join(path) or "the top level"
    raise TypeError(f"save: cannot store a value of type {type(obj).__name__} at {where!r}")


def _decode(obj: Any, tensors: dict[str, Tensor]) -> Any:
    if isinstance(obj, dict):
        if len(obj) != 1:
            raise ValueError(f"unexpected entry {obj!r}")
        ((tag, value),) = obj.items()
        if tag == "tensor":
            return tensors[value]
        if tag == "dict":
            return {_decode(k, tensors): _decode(v, tensors) for k, v in value}
        if tag == "list":
            return [_decode(v, tensors) for v in value]
        if tag == "tuple":
            return tuple(_decode(v, tensors) for v in value)
        raise ValueError(f"unknown tag {tag!r}")
    if isinstance(obj, list):
        raise TypeError("a bare JSON list")
    return obj
