"""Layers with a PyTorch-like API: ``Module``, containers, and the usual building blocks.

The loss classes (``CrossEntropyLoss``, ``MSELoss``, ...) live in ``ferrograd.loss`` and are
importable from here too, as from ``torch.nn``.
"""

import importlib
from typing import TYPE_CHECKING, Any

from ferrograd.layers import utils
from ferrograd.layers.activation import GELU, Dropout, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from ferrograd.layers.attention import MultiheadAttention
from ferrograd.layers.conv import Conv2d, MaxPool2d
from ferrograd.layers.linear import Flatten, Identity, Linear
from ferrograd.layers.module import IncompatibleKeys, Module, ModuleDict, ModuleList, Sequential
from ferrograd.layers.norm import BatchNorm1d, BatchNorm2d, LayerNorm
from ferrograd.layers.sparse import Embedding

# ferrograd.loss imports Module from this package, so its classes load on first use here
# (an eager import would be circular when ferrograd.loss is imported first).
_LOSSES = ("BCELoss", "BCEWithLogitsLoss", "CrossEntropyLoss", "L1Loss", "MSELoss", "NLLLoss")

if TYPE_CHECKING:
    from ferrograd.loss import BCELoss as BCELoss
    from ferrograd.loss import BCEWithLogitsLoss as BCEWithLogitsLoss
    from ferrograd.loss import CrossEntropyLoss as CrossEntropyLoss
    from ferrograd.loss import L1Loss as L1Loss
    from ferrograd.loss import MSELoss as MSELoss
    from ferrograd.loss import NLLLoss as NLLLoss


def __getattr__(name: str) -> Any:
    if name in _LOSSES:
        return getattr(importlib.import_module("ferrograd.loss"), name)
    raise AttributeError(f"module 'ferrograd.layers' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_LOSSES))


__all__ = [
    "GELU",
    "BCELoss",
    "BCEWithLogitsLoss",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "CrossEntropyLoss",
    "Dropout",
    "Embedding",
    "Flatten",
    "Identity",
    "IncompatibleKeys",
    "L1Loss",
    "LayerNorm",
    "Linear",
    "LogSoftmax",
    "MSELoss",
    "MaxPool2d",
    "Module",
    "ModuleDict",
    "ModuleList",
    "MultiheadAttention",
    "NLLLoss",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "utils",
]
