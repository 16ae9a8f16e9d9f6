"""Layers with a PyTorch-like API: ``Module``, containers, and the usual building blocks."""

from ferrograd.layers import utils
from ferrograd.layers.activation import GELU, Dropout, LogSoftmax, ReLU, Sigmoid, Softmax, Tanh
from ferrograd.layers.attention import MultiheadAttention
from ferrograd.layers.conv import Conv2d, MaxPool2d
from ferrograd.layers.linear import Flatten, Identity, Linear
from ferrograd.layers.module import IncompatibleKeys, Module, ModuleDict, ModuleList, Sequential
from ferrograd.layers.norm import BatchNorm1d, BatchNorm2d, LayerNorm
from ferrograd.layers.sparse import Embedding

__all__ = [
    "GELU",
    "BatchNorm1d",
    "BatchNorm2d",
    "Conv2d",
    "Dropout",
    "Embedding",
    "Flatten",
    "Identity",
    "IncompatibleKeys",
    "LayerNorm",
    "Linear",
    "LogSoftmax",
    "MaxPool2d",
    "Module",
    "ModuleDict",
    "ModuleList",
    "MultiheadAttention",
    "ReLU",
    "Sequential",
    "Sigmoid",
    "Softmax",
    "Tanh",
    "utils",
]
