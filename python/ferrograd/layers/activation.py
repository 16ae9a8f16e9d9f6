"""Activations and ``Dropout``."""

from __future__ import annotations

import math

from ferrograd import _core
from ferrograd._core import Tensor
from ferrograd.layers.module import Module


class ReLU(Module):
    """``max(x, 0)``, elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return x.relu()


class Sigmoid(Module):
    """The logistic function ``1 / (1 + exp(-x))``, elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return x.sigmoid()


class Tanh(Module):
    """Hyperbolic tangent, elementwise."""

    def forward(self, x: Tensor) -> Tensor:
        return x.tanh()


class GELU(Module):
    """GELU: exact (erf, the default) or ``approximate="tanh"``, as in PyTorch."""

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def forward(self, x: Tensor) -> Tensor:
        if self.approximate == "tanh":
            inner = (x + x * x * x * 0.044715) * math.sqrt(2.0 / math.pi)
            return x * 0.5 * (inner.tanh() + 1.0)
        return _core.gelu(x)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


class Softmax(Module):
    """Softmax along ``dim`` (PyTorch's name for the axis; default the last)."""

    def __init__(self, dim: int = -1) -> None:
        super().__init__()
        self.dim = dim

    def forward(self, x: Tensor) -> Tensor:
        return x.softmax(axis=self.dim)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class LogSoftmax(Softmax):
    """Log-softmax along ``dim``, computed stably (max-shifted log-sum-exp)."""

    def forward(self, x: Tensor) -> Tensor:
        return x.log_softmax(axis=self.dim)


class Dropout(Module):
    """In training zeroes elements with probability ``p`` and scales kept ones by 1/(1-p);
    in eval mode passes the input through."""

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout: p must be in [0, 1], got {p}")
        self.p = float(p)

    def forward(self, x: Tensor) -> Tensor:
        return _core.dropout(x, self.p, self.training)

    def extra_repr(self) -> str:
        return f"p={self.p}"
