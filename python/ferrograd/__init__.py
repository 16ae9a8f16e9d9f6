"""ferrograd: a neural-network library whose numbers live in Rust.

Three types carry it, as in the article "Building a neural network library in Rust":
``NdArray`` (an n-d array), ``Value`` (a scalar with autodiff) and ``Tensor`` (an array with
autodiff baked in).
"""

import importlib
from typing import TYPE_CHECKING, Any

from ferrograd._core import (
    AxisError,
    NdArray,
    Tensor,
    Value,
    __version__,
    arange,
    cat,
    eye,
    from_numpy,
    full,
    get_num_threads,
    is_grad_enabled,
    manual_seed,
    maximum,
    minimum,
    multinomial,
    one_hot,
    ones,
    rand,
    randint,
    randn,
    randperm,
    set_grad_enabled,
    set_num_threads,
    stack,
    tensor,
    tril,
    triu,
    where,
    zeros,
)
from ferrograd.autograd import GradcheckError, gradcheck, no_grad
from ferrograd.graph import draw_graph, to_dot
from ferrograd.interop import from_dlpack

# The dtypes, named as `t.dtype` names them (any of these names, or a NumPy dtype, works as
# `dtype=`).
float32 = "float32"
float64 = "float64"
int64 = "int64"
int32 = "int32"
bool = "bool"
long = int64
double = float64

# Submodules load on first use (`fg.layers`, `fg.optim`, …), keeping `import ferrograd` fast.
_SUBMODULES = {"data", "datasets", "distributed", "functional", "layers", "loss", "onnx", "optim"}
_LAZY_NAMES = {"save": "serialization", "load": "serialization"}


if TYPE_CHECKING:  # what the lazy names are, for type checkers and editors
    from ferrograd import data as data
    from ferrograd import datasets as datasets
    from ferrograd import distributed as distributed
    from ferrograd import functional as functional
    from ferrograd import layers as layers
    from ferrograd import loss as loss
    from ferrograd import onnx as onnx
    from ferrograd import optim as optim
    from ferrograd.serialization import load as load
    from ferrograd.serialization import save as save


def __getattr__(name: str) -> Any:
    if name in _SUBMODULES:
        return importlib.import_module(f"ferrograd.{name}")
    if name in _LAZY_NAMES:
        return getattr(importlib.import_module(f"ferrograd.{_LAZY_NAMES[name]}"), name)
    raise AttributeError(f"module 'ferrograd' has no attribute {name!r}")


__all__ = [
    "AxisError",
    "GradcheckError",
    "NdArray",
    "Tensor",
    "Value",
    "__version__",
    "arange",
    "bool",
    "cat",
    "double",
    "draw_graph",
    "eye",
    "float32",
    "float64",
    "from_dlpack",
    "from_numpy",
    "full",
    "get_num_threads",
    "gradcheck",
    "int32",
    "int64",
    "is_grad_enabled",
    "long",
    "manual_seed",
    "maximum",
    "minimum",
    "multinomial",
    "no_grad",
    "one_hot",
    "ones",
    "rand",
    "randint",
    "randn",
    "randperm",
    "set_grad_enabled",
    "set_num_threads",
    "stack",
    "tensor",
    "to_dot",
    "tril",
    "triu",
    "where",
    "zeros",
]
