"""``Linear``, ``Flatten`` and ``Identity``."""

from __future__ import annotations

from typing import Any

from ferrograd import _core
from ferrograd._core import Tensor
from ferrograd.layers._init import fan_in_bound, uniform_parameter
from ferrograd.layers.module import Module


class Linear(Module):
    """``y = x @ weight.T + bias`` with ``weight`` of shape (out_features, in_features).

    Initialised as in PyTorch: weight and bias from U(-1/sqrt(in), 1/sqrt(in)).
    """

    def __init__(
        self, in_features: int, out_features: int, bias: bool = True, dtype: Any = "float32"
    ) -> None:
        super().__init__()
        if in_features < 0 or out_features < 0:
            raise ValueError("Linear: in_features and out_features must be >= 0")
        self.in_features = int(in_features)
        self.out_features = int(out_features)
        bound = fan_in_bound(self.in_features)
        self.weight = uniform_parameter((self.out_features, self.in_features), bound, dtype)
        if bias:
            self.bias = uniform_parameter((self.out_features,), bound, dtype)
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        # The core checks the shapes (a ValueError naming both and in_features). The
        # registry is read directly: `self.weight` would go through Module.__getattr__, a
        # Python call per parameter on every step (and `typing.cast` is a call too).
        params = self._parameters
        return _core.linear(x, params["weight"], params["bias"])  # type: ignore[arg-type]

    def extra_repr(self) -> str:
        return (
            f"in_features={self.in_features}, out_features={self.out_features}, "
            f"bias={self.bias is not None}"
        )


class Flatten(Module):
    """Flattens axes ``start_dim..end_dim`` into one; the default keeps the batch axis."""

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = start_dim
        self.end_dim = end_dim

    def forward(self, x: Tensor) -> Tensor:
        shape = tuple(x.shape)
        nd = len(shape)
        if nd == 0:
            return x.reshape(1)
        start = self.start_dim + nd if self.start_dim < 0 else self.start_dim
        end = self.end_dim + nd if self.end_dim < 0 else self.end_dim
        if not (0 <= start < nd and 0 <= end < nd) or start > end:
            raise ValueError(
                f"Flatten: start_dim={self.start_dim}, end_dim={self.end_dim} do not fit an "
                f"input with {nd} axes"
            )
        merged = 1
        for s in shape[start : end + 1]:
            merged *= s
        return x.reshape(shape[:start] + (merged,) + shape[end + 1 :])

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"


class Identity(Module):
    """Returns its input unchanged."""

    def forward(self, x: Any) -> Any:
        return x
