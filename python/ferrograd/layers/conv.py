"""``Conv2d`` and ``MaxPool2d`` (im2col + GEMM, or Winograd F(2×2, 3×3) tiles for 3×3
stride-1 convolutions with 8+ input channels, and pooling kernels in Rust)."""

from __future__ import annotations

from typing import Any

from ferrograd import _core
from ferrograd._core import Tensor
from ferrograd.layers._init import fan_in_bound, pair, single_or_pair, uniform_parameter
from ferrograd.layers.module import Module


class Conv2d(Module):
    """2-D convolution over (N, C_in, H, W) input. ``weight`` is
    (out_channels, in_channels, kh, kw); PyTorch's init with fan_in = in_channels·kh·kw."""

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: Any,
        stride: Any = 1,
        padding: Any = 0,
        bias: bool = True,
        dtype: Any = "float32",
    ) -> None:
        super().__init__()
        if in_channels <= 0 or out_channels <= 0:
            raise ValueError("Conv2d: in_channels and out_channels must be positive")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.padding = pair(padding, "padding")
        if min(self.kernel_size) < 1 or min(self.stride) < 1 or min(self.padding) < 0:
            raise ValueError(
                f"Conv2d: need kernel_size >= 1, stride >= 1, padding >= 0; got "
                f"{self.kernel_size}, {self.stride}, {self.padding}"
            )
        kh, kw = self.kernel_size
        bound = fan_in_bound(self.in_channels * kh * kw)
        self.weight = uniform_parameter((self.out_channels, self.in_channels, kh, kw), bound, dtype)
        if bias:
            self.bias = uniform_parameter((self.out_channels,), bound, dtype)
        else:
            self.register_parameter("bias", None)

    def forward(self, x: Tensor) -> Tensor:
        if x.ndim != 4 or x.shape[1] != self.in_channels:
            raise ValueError(
                f"Conv2d: expected input (N, {self.in_channels}, H, W), got {tuple(x.shape)}"
            )
        return _core.conv2d(
            x,
            self.weight,
            self.bias,
            stride=single_or_pair(self.stride),
            padding=single_or_pair(self.padding),
        )

    def extra_repr(self) -> str:
        text = (
            f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
            f"stride={self.stride}"
        )
        if self.padding != (0, 0):
            text += f", padding={self.padding}"
        if self.bias is None:
            text += ", bias=False"
        return text


class MaxPool2d(Module):
    """Max pooling over (N, C, H, W); ``stride`` defaults to ``kernel_size``."""

    def __init__(self, kernel_size: Any, stride: Any = None, padding: Any = 0) -> None:
        super().__init__()
        self.kernel_size = kernel_size
        self.stride = kernel_size if stride is None else stride
        self.padding = padding
        k, s, p = (
            pair(kernel_size, "kernel_size"),
            pair(self.stride, "stride"),
            pair(padding, "padding"),
        )
        if min(k) < 1 or min(s) < 1 or min(p) < 0:
            raise ValueError("MaxPool2d: need kernel_size >= 1, stride >= 1, padding >= 0")
        if p[0] * 2 > k[0] or p[1] * 2 > k[1]:
            raise ValueError("MaxPool2d: padding must be at most half the kernel size")
        self._args = (single_or_pair(k), single_or_pair(s), single_or_pair(p))

    def forward(self, x: Tensor) -> Tensor:
        k, s, p = self._args
        return _core.max_pool2d(x, k, stride=s, padding=p)

    def extra_repr(self) -> str:
        return f"kernel_size={self.kernel_size}, stride={self.stride}, padding={self.padding}"
