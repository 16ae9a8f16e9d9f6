"""``BatchNorm1d``, ``BatchNorm2d`` and ``LayerNorm``, composed from Tensor ops so they are
differentiable end to end."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferrograd import _core
from ferrograd._core import Tensor
from ferrograd.autograd import no_grad
from ferrograd.layers._init import _check_dtype, constant_parameter
from ferrograd.layers.module import Module


class _BatchNorm(Module):
    _ndims: tuple[int, ...] = ()
    _shape_text = ""

    def __init__(
        self,
        num_features: int,
        eps: float = 1e-5,
        momentum: float | None = 0.1,
        affine: bool = True,
        track_running_stats: bool = True,
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        if num_features <= 0:
            raise ValueError(f"{type(self).__name__}: num_features must be positive")
        dtype = _check_dtype(dtype)
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = momentum
        self.affine = affine
        self.track_running_stats = track_running_stats
        if affine:
            self.weight = constant_parameter((num_features,), 1.0, dtype)
            self.bias = constant_parameter((num_features,), 0.0, dtype)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)
        if track_running_stats:
            self.register_buffer("running_mean", Tensor(np.zeros(num_features, dtype=dtype)))
            self.register_buffer("running_var", Tensor(np.ones(num_features, dtype=dtype)))
            # int64, as PyTorch's, so state dicts carry the same dtype both ways.
            self.register_buffer("num_batches_tracked", _core.tensor(0))
        else:
            self.register_buffer("running_mean", None)
            self.register_buffer("running_var", None)
            self.register_buffer("num_batches_tracked", None)

    def forward(self, x: Tensor) -> Tensor:
        name = type(self).__name__
        if x.ndim not in self._ndims:
            raise ValueError(f"{name}: expected input {self._shape_text}, got {tuple(x.shape)}")
        if x.shape[1] != self.num_features:
            raise ValueError(
                f"{name}: input has {x.shape[1]} channels (axis 1), expected {self.num_features}"
            )
        use_batch = self.training or not self.track_running_stats
        if not use_batch and _core._is_recording():
            # An export records the eval form as one BatchNormalization, not its parts.
            inputs = [x, self.running_mean, self.running_var]
            inputs += [self.weight, self.bias] if self.affine else []
            return _core._record_fused(
                "batch_norm", inputs, {"eps": self.eps}, lambda: self._normalise(x, use_batch)
            )
        return self._normalise(x, use_batch)

    def _normalise(self, x: Tensor, use_batch: bool) -> Tensor:
        name = type(self).__name__
        axes = (0,) + tuple(range(2, x.ndim))
        bshape = (1, self.num_features) + (1,) * (x.ndim - 2)
        if use_batch:
            count = x.size // self.num_features
            if count <= 1:
                raise ValueError(
                    f"{name}: expected more than 1 value per channel when training, got input "
                    f"{tuple(x.shape)}"
                )
            mean = x.mean(axis=axes, keepdims=True)
            centred = x - mean
            var = (centred * centred).mean(axis=axes, keepdims=True)
            if self.training and self.track_running_stats:
                self._update_running(mean, var, count)
            xhat = centred / (var + self.eps).sqrt()
        else:
            mean = self.running_mean.reshape(bshape)
            std = (self.running_var.reshape(bshape) + self.eps).sqrt()
            xhat = (x - mean) / std
        if self.affine:
            xhat = xhat * self.weight.reshape(bshape) + self.bias.reshape(bshape)
        return xhat

    def _update_running(self, mean: Tensor, var: Tensor, count: int) -> None:
        # In place, in the core: the buffers keep their identity, dtype and shape, and each
        # write bumps their version.
        with no_grad():
            self.num_batches_tracked += 1
            tracked = float(self.num_batches_tracked.item())
            m = 1.0 / tracked if self.momentum is None else float(self.momentum)
            _core.update_running_stats(self.running_mean, self.running_var, mean, var, count, m)

    def extra_repr(self) -> str:
        return (
            f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
            f"affine={self.affine}, track_running_stats={self.track_running_stats}"
        )


class BatchNorm1d(_BatchNorm):
    """Batch normalisation over (N, C) or (N, C, L): batch statistics in training (biased
    variance to normalise, unbiased for the running update), running statistics in eval."""

    _ndims = (2, 3)
    _shape_text = "(N, C) or (N, C, L)"


class BatchNorm2d(_BatchNorm):
    """Batch normalisation over (N, C, H, W), per channel."""

    _ndims = (4,)
    _shape_text = "(N, C, H, W)"


class LayerNorm(Module):
    """Normalises over the trailing ``normalized_shape`` axes (biased variance), then applies
    an elementwise affine transform."""

    def __init__(
        self,
        normalized_shape: Any,
        eps: float = 1e-5,
        elementwise_affine: bool = True,
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        if isinstance(normalized_shape, (int, np.integer)):
            normalized_shape = (int(normalized_shape),)
        self.normalized_shape = tuple(int(s) for s in normalized_shape)
        if not self.normalized_shape or min(self.normalized_shape) <= 0:
            raise ValueError(f"LayerNorm: bad normalized_shape {normalized_shape!r}")
        self.eps = float(eps)
        self.elementwise_affine = elementwise_affine
        if elementwise_affine:
            self.weight = constant_parameter(self.normalized_shape, 1.0, dtype)
            self.bias = constant_parameter(self.normalized_shape, 0.0, dtype)
        else:
            self.register_parameter("weight", None)
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        k = len(self.normalized_shape)
        if tuple(x.shape[x.ndim - k :]) != self.normalized_shape or x.ndim < k:
            raise ValueError(
                f"LayerNorm: input {tuple(x.shape)} does not end in {self.normalized_shape}"
            )
        return _core.layer_norm(x, self.normalized_shape, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return (
            f"{self.normalized_shape}, eps={self.eps}, elementwise_affine={self.elementwise_affine}"
        )
