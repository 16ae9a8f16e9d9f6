"""Training utilities on parameters, as in ``torch.nn.utils``: ``clip_grad_norm_``."""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Union

from ferrograd._core import NdArray, Tensor
from ferrograd.autograd import no_grad

__all__ = ["clip_grad_norm_"]

Parameters = Union[Tensor, Iterable[Tensor]]


def _grads(parameters: Parameters) -> list[NdArray]:
    params = [parameters] if isinstance(parameters, Tensor) else list(parameters)
    grads = []
    for i, p in enumerate(params):
        if not isinstance(p, Tensor):
            raise TypeError(
                f"clip_grad_norm_: parameters must be Tensors, item {i} is a {type(p).__name__}"
            )
        if p.grad is not None:
            grads.append(p.grad)
    return grads


def _norm_type(norm_type: float | str) -> float:
    try:
        p = float(norm_type)
    except (TypeError, ValueError):
        raise TypeError(f"clip_grad_norm_: norm_type must be a number, got {norm_type!r}") from None
    if not (p > 0.0 or p == -math.inf):
        raise ValueError(f"clip_grad_norm_: norm_type must be positive or inf/-inf, got {p}")
    return p


def clip_grad_norm_(
    parameters: Parameters,
    max_norm: float,
    norm_type: float | str = 2.0,
    error_if_nonfinite: bool = False,
) -> float:
    """Scales the gradients of ``parameters`` in place so that their total norm — the norm
    of all gradients concatenated into one vector — is at most ``max_norm``; returns the
    total norm measured before clipping, as a float.

    As in PyTorch: ``parameters`` is one Tensor or an iterable of them, and those whose
    ``grad`` is None are skipped; ``norm_type`` is a positive number or ``inf`` (largest
    absolute value; ``-inf``, the smallest); every gradient is multiplied by
    ``min(1, max_norm / (total_norm + 1e-6))``. A NaN or infinite total norm raises
    RuntimeError when ``error_if_nonfinite``, else the gradients are scaled by it anyway
    (and become NaN), as PyTorch does. No gradients gives 0.0.
    """
    max_norm = float(max_norm)
    if not max_norm >= 0.0:
        raise ValueError(f"clip_grad_norm_: max_norm must be >= 0, got {max_norm}")
    p = _norm_type(norm_type)
    grads = _grads(parameters)
    if not grads:
        return 0.0
    with no_grad():
        # One reduction per tensor in Rust; only the per-tensor scalars meet in Python.
        if math.isinf(p):
            present = [g for g in grads if g.size > 0]
            if not present:
                return 0.0
            ends = [float((g.abs().max() if p > 0 else g.abs().min()).item()) for g in present]
            # Python's max/min would drop a NaN depending on its position; it must win.
            total = math.nan if any(map(math.isnan, ends)) else (max if p > 0 else min)(ends)
        elif p == 2.0:
            total = math.sqrt(math.fsum(float((g * g).sum().item()) for g in grads))
        elif p == 1.0:
            total = math.fsum(float(g.abs().sum().item()) for g in grads)
        else:
            total = math.fsum(float((g.abs() ** p).sum().item()) for g in grads) ** (1.0 / p)
        if error_if_nonfinite and not math.isfinite(total):
            raise RuntimeError(
                f"clip_grad_norm_: the total norm of order {p} of the gradients is non-finite "
                f"({total}), so it cannot be clipped; pass error_if_nonfinite=False to scale "
                "the gradients by it anyway"
            )
        coef = min(max_norm / (total + 1e-6), 1.0) if not math.isnan(total) else math.nan
        if coef != 1.0:  # a NaN coefficient scales too (NaN != 1), as in PyTorch
            for g in grads:
                g *= coef  # in place: ``p.grad`` is the gradient's storage, not a copy
    return total
