"""Parameter creation shared by the layers: PyTorch's default initialisations, drawn from the
global generator (``fg.manual_seed``) so a seeded run is reproducible."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from ferrograd._core import Tensor, rand, randn


def _check_dtype(dtype: Any) -> str:
    name = np.dtype(dtype).name if not isinstance(dtype, str) else dtype
    if name not in ("float32", "float64"):
        raise ValueError(f"dtype must be float32 or float64, got {dtype!r}")
    return name


def uniform_parameter(shape: tuple[int, ...], bound: float, dtype: Any = "float32") -> Tensor:
    """A leaf Tensor drawn from U(-bound, bound): PyTorch's kaiming_uniform(a=sqrt(5))
    gives bound = 1/sqrt(fan_in) for weights, and biases use the same bound."""
    dtype = _check_dtype(dtype)
    u = rand(*shape, dtype="float64").numpy() if shape else np.asarray(rand(1).item())
    return Tensor(((2.0 * u - 1.0) * bound).astype(dtype), requires_grad=True)


def normal_parameter(shape: tuple[int, ...], dtype: Any = "float32") -> Tensor:
    dtype = _check_dtype(dtype)
    return Tensor(randn(*shape, dtype="float64").numpy().astype(dtype), requires_grad=True)


def constant_parameter(shape: tuple[int, ...], value: float, dtype: Any = "float32") -> Tensor:
    dtype = _check_dtype(dtype)
    return Tensor(np.full(shape, value, dtype=dtype), requires_grad=True)


def fan_in_bound(fan_in: int) -> float:
    return 1.0 / math.sqrt(fan_in) if fan_in > 0 else 0.0


def pair(value: Any, name: str) -> tuple[int, int]:
    """``3`` → ``(3, 3)``; ``(2, 3)`` stays; anything else raises."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        a, b = value
    else:
        a = b = value
    for v in (a, b):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return int(a), int(b)


def single_or_pair(p: tuple[int, int]) -> int | tuple[int, int]:
    """What the kernels receive: an int when both entries agree, else the pair."""
    return p[0] if p[0] == p[1] else p
