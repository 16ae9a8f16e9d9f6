"""Moving arrays between ferrograd and other libraries through DLPack.

Export is on the classes: ``Tensor.__dlpack__`` / ``__dlpack_device__`` (and ``NdArray``'s)
hand out a capsule that owns a private copy of the values, so ``np.from_dlpack(t)`` and
``torch.from_dlpack(t)`` work. Import is :func:`from_dlpack`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from ferrograd._core import NdArray, Tensor, tensor

__all__ = ["from_dlpack"]


class _Capsule:
    """Presents a bare DLPack capsule (``torch.utils.dlpack.to_dlpack(x)``) as a producer."""

    def __init__(self, capsule: object) -> None:
        self._capsule = capsule

    def __dlpack__(self, **kwargs: Any) -> object:
        if kwargs.get("max_version") is not None or kwargs.get("copy") is not None:
            # A capsule is what it is; let the consumer fall back to plain arguments.
            raise TypeError("a bare capsule takes no DLPack options")
        return self._capsule

    def __dlpack_device__(self) -> tuple[int, int]:
        return (1, 0)


def from_dlpack(obj: Any, *, requires_grad: bool = False, dtype: Any = None) -> Tensor:
    """A new Tensor holding the values of ``obj``: anything with ``__dlpack__`` on the CPU
    (a NumPy array, a PyTorch tensor, a JAX array, a ferrograd Tensor) or a bare DLPack
    capsule.

    The values are copied once at memory speed (C-contiguous, any input strides), so the
    Tensor never aliases memory another library may change or free. Dtypes follow
    ``fg.tensor``: float32, float64, int64, int32 and bool are kept, float16 becomes float32
    and other integer kinds int64; ``dtype=`` overrides. A PyTorch tensor that requires grad must be ``.detach()``-ed first
    (PyTorch refuses to export it).
    """
    if isinstance(obj, (Tensor, NdArray)):
        return tensor(obj, requires_grad=requires_grad, dtype=dtype)
    if isinstance(obj, np.ndarray):
        # Read directly: NumPy < 2.1 refuses to DLPack-export a read-only array (such as
        # np.from_dlpack(t) of a Tensor), and the one copy below is the same either way.
        return tensor(obj, requires_grad=requires_grad, dtype=dtype)
    if not hasattr(obj, "__dlpack__"):
        if type(obj).__name__ == "PyCapsule":
            obj = _Capsule(obj)
        else:
            raise TypeError(
                f"from_dlpack expects an object with __dlpack__ (a NumPy array, a PyTorch "
                f"tensor, ...) or a DLPack capsule, got {type(obj).__name__}"
            )
    device = obj.__dlpack_device__() if hasattr(obj, "__dlpack_device__") else (1, 0)
    if int(device[0]) != 1:
        raise BufferError(
            f"from_dlpack: ferrograd lives on the CPU, but the array is on DLPack device "
            f"{tuple(int(d) for d in device)}; move it to the CPU first (e.g. x.cpu())"
        )
    # NumPy's importer wraps the producer's memory without copying; Tensor() then makes the
    # one copy ferrograd keeps.
    view = np.from_dlpack(obj)
    return tensor(view, requires_grad=requires_grad, dtype=dtype)
