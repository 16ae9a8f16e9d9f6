"""Autodiff helpers: ``no_grad`` and ``gradcheck`` (finite differences against backward)."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from typing import Any, Callable, TypeVar

import numpy as np

from ferrograd._core import Tensor, set_grad_enabled

F = TypeVar("F", bound=Callable[..., Any])


class no_grad:
    """Context manager (and decorator) that stops ops from recording the graph on this thread."""

    def __enter__(self) -> None:
        self._previous = set_grad_enabled(False)

    def __exit__(self, *exc: object) -> None:
        set_grad_enabled(self._previous)

    def __call__(self, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            with no_grad():
                return fn(*args, **kwargs)

        return wrapper  # type: ignore[return-value]


class GradcheckError(RuntimeError):
    """Autodiff and finite differences disagree; the message names the worst element."""


def _as_float64_leaf(x: Any) -> Tensor:
    data = x.numpy() if isinstance(x, Tensor) else np.asarray(x, dtype=np.float64)
    return Tensor(np.asarray(data, dtype=np.float64), requires_grad=True)


def gradcheck(
    fn: Callable[..., Tensor],
    inputs: Sequence[Any] | Tensor,
    eps: float = 1e-6,
    atol: float = 1e-5,
    rtol: float = 1e-3,
) -> bool:
    """Checks the gradients of ``fn(*inputs)`` against central finite differences.

    Runs in float64. A non-scalar output is reduced with fixed random weights ``w``
    (checking ``d(sum(w * fn))/dx``, a vector–Jacobian product that involves every output).
    Returns True, or raises ``GradcheckError`` naming the input and element with the
    worst mismatch.
    """
    if isinstance(inputs, Tensor):
        inputs = (inputs,)
    leaves = [_as_float64_leaf(x) for x in inputs]
    out = fn(*leaves)
    if not isinstance(out, Tensor):
        raise TypeError(f"gradcheck: fn must return a Tensor, got {type(out).__name__}")
    weights = np.random.default_rng(0).uniform(0.5, 1.5, size=out.shape)
    if out.requires_grad:
        out.backward(weights)
    analytic = [
        leaf.grad.numpy() if leaf.grad is not None else np.zeros(leaf.shape) for leaf in leaves
    ]

    values = [leaf.numpy() for leaf in leaves]

    def objective(arrays: list[np.ndarray]) -> float:
        with no_grad():
            y = fn(*[Tensor(a, dtype="float64") for a in arrays])
        return float(np.sum(weights * y.numpy()))

    worst: tuple[float, int, tuple[int, ...], float, float] | None = None
    for i, base in enumerate(values):
        for idx in np.ndindex(base.shape):
            plus = [v.copy() for v in values]
            minus = [v.copy() for v in values]
            plus[i][idx] += eps
            minus[i][idx] -= eps
            numeric = (objective(plus) - objective(minus)) / (2 * eps)
            got = float(analytic[i][idx])
            if np.isnan(got) and np.isnan(numeric):
                continue
            # How far past the tolerance; a NaN on one side only is the worst mismatch.
            excess = abs(got - numeric) - (atol + rtol * abs(numeric))
            if np.isnan(excess):
                excess = np.inf
            if excess > 0 and (worst is None or excess > worst[0]):
                worst = (excess, i, idx, got, numeric)
    if worst is not None:
        _, i, idx, got, numeric = worst
        raise GradcheckError(
            f"gradcheck: input {i}, element {idx}: autodiff gives {got!r} but finite "
            f"differences give {numeric!r} (atol={atol}, rtol={rtol})"
        )
    return True
