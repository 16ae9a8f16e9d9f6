"""Loss functions and their PyTorch-style class forms.

Every loss takes ``reduction="mean"`` (a 0-d Tensor, the default), ``"sum"`` (0-d) or
``"none"`` (one value per element, or per sample for the class losses). Targets may be
Tensors, NdArrays, numpy arrays or lists.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferrograd import _core
from ferrograd._core import NdArray, Tensor
from ferrograd.layers.module import Module

_REDUCTIONS = ("mean", "sum", "none")

__all__ = [
    "BCELoss",
    "BCEWithLogitsLoss",
    "CrossEntropyLoss",
    "L1Loss",
    "MSELoss",
    "NLLLoss",
    "binary_cross_entropy",
    "binary_cross_entropy_with_logits",
    "cross_entropy",
    "l1",
    "mse",
    "nll",
]


def _check_reduction(reduction: str) -> str:
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be 'mean', 'sum' or 'none', got {reduction!r}")
    return reduction


def _reduce(loss: Tensor, reduction: str) -> Tensor:
    if reduction == "mean":
        return loss.mean()
    if reduction == "sum":
        return loss.sum()
    return loss


def _check_input(name: str, x: Any) -> Tensor:
    if not isinstance(x, Tensor):
        raise TypeError(f"{name}: the input must be a Tensor, got {type(x).__name__}")
    return x


def _target_tensor(name: str, target: Any, like: Tensor) -> Tensor:
    """Tensors stay as they are (and stay differentiable); anything else becomes a constant
    Tensor of the input's dtype, so a float64 numpy target does not promote a float32 loss."""
    if isinstance(target, Tensor):
        return target
    if isinstance(target, NdArray):
        target = target.numpy()
    arr = np.asarray(target)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"{name}: the target must be numeric, got {type(target).__name__}")
    return Tensor(np.asarray(arr, dtype=like.dtype))


def _as_target(name: str, target: Any, like: Tensor) -> Tensor:
    """The target as a Tensor (see ``_target_tensor``) of exactly the input's shape."""
    t = _target_tensor(name, target, like)
    if tuple(t.shape) != tuple(like.shape):
        raise ValueError(
            f"{name}: input shape {tuple(like.shape)} and target shape {tuple(t.shape)} differ; "
            f"they must be equal (reshape one of them, e.g. (N, 1) -> (N,))"
        )
    return t


def mse(pred: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean squared error ``(pred - target)**2``."""
    _check_reduction(reduction)
    pred = _check_input("mse", pred)
    diff = pred - _as_target("mse", target, pred)
    return _reduce(diff * diff, reduction)


def l1(pred: Tensor, target: Any, reduction: str = "mean") -> Tensor:
    """Mean absolute error ``|pred - target|``."""
    _check_reduction(reduction)
    pred = _check_input("l1", pred)
    return _reduce((pred - _as_target("l1", target, pred)).abs(), reduction)


def cross_entropy(
    logits: Tensor, classes: Any, reduction: str = "mean", label_smoothing: float = 0.0
) -> Tensor:
    """Cross-entropy of raw ``logits`` (N, C) against class indices (N,): a stable
    log-softmax + NLL, fused in Rust. ``label_smoothing`` mixes the one-hot target with the
    uniform distribution, as in PyTorch."""
    _check_reduction(reduction)
    logits = _check_input("cross_entropy", logits)
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"cross_entropy: label_smoothing must be in [0, 1], got {label_smoothing}")
    return _core.cross_entropy(
        logits, classes, reduction=reduction, label_smoothing=label_smoothing
    )


def nll(log_probs: Tensor, classes: Any, reduction: str = "mean") -> Tensor:
    """Negative log-likelihood of ``log_probs`` (N, C) (e.g. from ``log_softmax``) at the
    class indices (N,)."""
    _check_reduction(reduction)
    log_probs = _check_input("nll", log_probs)
    return _core.nll_loss(log_probs, classes, reduction=reduction)


def binary_cross_entropy(p: Tensor, y: Any, reduction: str = "mean") -> Tensor:
    """``-(y·log p + (1-y)·log(1-p))`` for probabilities ``p`` in [0, 1] and targets ``y`` of
    the same shape; each log is clamped to ≥ -100 and the gradient is PyTorch's
    ``(p - y) / max(p(1-p), 1e-12)``, so p = 0 or 1 gives finite values and gradients.
    One fused op in Rust (differentiable in ``p`` and in a float ``y``)."""
    _check_reduction(reduction)
    p = _check_input("binary_cross_entropy", p)
    target = _target_tensor("binary_cross_entropy", y, p)
    return _core.binary_cross_entropy(p, target, reduction=reduction)


def binary_cross_entropy_with_logits(x: Tensor, y: Any, reduction: str = "mean") -> Tensor:
    """BCE on logits, stable for any ``x``: ``max(x, 0) - x·y + log(1 + exp(-|x|))``, with
    the exact gradient ``σ(x) - y`` everywhere (also at x = 0). One fused op in Rust."""
    _check_reduction(reduction)
    x = _check_input("binary_cross_entropy_with_logits", x)
    target = _target_tensor("binary_cross_entropy_with_logits", y, x)
    return _core.binary_cross_entropy_with_logits(x, target, reduction=reduction)


class _Loss(Module):
    def __init__(self, reduction: str = "mean") -> None:
        super().__init__()
        self.reduction = _check_reduction(reduction)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"


class MSELoss(_Loss):
    """``mse`` as a module: ``MSELoss(reduction="mean")(pred, target)``."""

    def forward(self, pred: Tensor, target: Any) -> Tensor:
        return mse(pred, target, self.reduction)


class L1Loss(_Loss):
    """``l1`` as a module: ``L1Loss(reduction="mean")(pred, target)``."""

    def forward(self, pred: Tensor, target: Any) -> Tensor:
        return l1(pred, target, self.reduction)


class CrossEntropyLoss(_Loss):
    """``cross_entropy`` as a module: ``CrossEntropyLoss()(logits, classes)``."""

    def __init__(self, reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__(reduction)
        if not 0.0 <= label_smoothing <= 1.0:
            raise ValueError(f"label_smoothing must be in [0, 1], got {label_smoothing}")
        self.label_smoothing = float(label_smoothing)

    def forward(self, logits: Tensor, classes: Any) -> Tensor:
        return cross_entropy(logits, classes, self.reduction, self.label_smoothing)

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}, label_smoothing={self.label_smoothing}"


class NLLLoss(_Loss):
    """``nll`` as a module: ``NLLLoss()(log_probs, classes)``."""

    def forward(self, log_probs: Tensor, classes: Any) -> Tensor:
        return nll(log_probs, classes, self.reduction)


class BCELoss(_Loss):
    """``binary_cross_entropy`` as a module: ``BCELoss()(p, y)``."""

    def forward(self, p: Tensor, y: Any) -> Tensor:
        return binary_cross_entropy(p, y, self.reduction)


class BCEWithLogitsLoss(_Loss):
    """``binary_cross_entropy_with_logits`` as a module: ``BCEWithLogitsLoss()(x, y)``."""

    def forward(self, x: Tensor, y: Any) -> Tensor:
        return binary_cross_entropy_with_logits(x, y, self.reduction)
