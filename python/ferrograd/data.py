"""``DataLoader``: shuffled mini-batches of ``(Tensor, Tensor)`` from arrays or a dataset."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import numpy as np

from ferrograd import _core
from ferrograd._core import NdArray, Tensor

__all__ = ["DataLoader"]


def _as_array(name: str, data: Any, from_python: bool | None = None) -> np.ndarray:
    """One array holding every sample, with the dtype its batches will have (DESIGN's rules:
    numpy floats keep their precision, float16 → float32, ints/bools/lists → float32)."""
    if isinstance(data, (Tensor, NdArray)):
        return data.numpy()
    from_list = not isinstance(data, np.ndarray) if from_python is None else from_python
    arr = np.asarray(data)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number)
                                   or arr.dtype == np.bool_):
        raise TypeError(f"DataLoader: {name} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"DataLoader: {name} must be real, got dtype {arr.dtype}")
    if from_list or not np.issubdtype(arr.dtype, np.floating) or arr.dtype == np.float16:
        arr = arr.astype(np.float32)
    if arr.ndim == 0:
        raise ValueError(f"DataLoader: {name} must have a sample axis, got a scalar")
    return arr


def _stack(values: Any) -> Tensor:
    numpy_like = isinstance(values[0], (np.ndarray, np.generic, Tensor, NdArray))
    stacked = np.stack([np.asarray(v) for v in values])
    return Tensor(_as_array("a dataset sample", stacked, from_python=not numpy_like))


def _is_array_like(data: Any) -> bool:
    return isinstance(data, (np.ndarray, Tensor, NdArray))


class DataLoader:
    """Iterates over mini-batches.

    ``DataLoader(X, y)`` over arrays (numpy, lists, Tensors): yields ``(X_batch, y_batch)``
    Tensors, labels as float Tensors (class indices stay whole numbers, usable by
    ``cross_entropy``). With ``y=None`` it yields ``X_batch`` alone.

    ``DataLoader(dataset)`` over any object with ``__len__`` and ``__getitem__`` returning
    ``(x, y)`` pairs (or single samples): the samples of a batch are stacked.

    Every epoch (each ``iter()``) reshuffles when ``shuffle``: with ``seed`` from a private
    generator, so two loaders built alike give the same sequence of epochs; with
    ``seed=None`` from the global generator set by ``fg.manual_seed``. The last partial batch
    is kept unless ``drop_last``. ``len()`` is the number of batches per epoch.
    """

    def __init__(self, X: Any, y: Any = None, batch_size: int = 1, shuffle: bool = True,
                 seed: int | None = None, drop_last: bool = False) -> None:
        if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)):
            raise TypeError(f"DataLoader: batch_size must be an int, got {batch_size!r}")
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        self.batch_size = int(batch_size)
        self.shuffle = bool(shuffle)
        self.seed = seed
        self.drop_last = bool(drop_last)
        self._rng = np.random.default_rng(seed) if seed is not None else None

        self.dataset: Any = None
        self._X: np.ndarray | None = None
        self._y: np.ndarray | None = None
        is_pairs = (y is None and isinstance(X, (list, tuple)) and len(X) > 0
                    and isinstance(X[0], tuple))
        if (y is None and not _is_array_like(X) and not isinstance(X, (list, tuple))) or is_pairs:
            if not (hasattr(X, "__len__") and hasattr(X, "__getitem__")):
                raise TypeError(
                    "DataLoader: X must be an array, a list, a Tensor, or a dataset with "
                    f"__len__ and __getitem__; got {type(X).__name__}"
                )
            self.dataset = X
            self._n = len(X)
        else:
            self._X = _as_array("X", X)
            self._n = len(self._X)
            if y is not None:
                self._y = _as_array("y", y)
                if len(self._y) != self._n:
                    raise ValueError(
                        f"DataLoader: X has {self._n} samples but y has {len(self._y)}"
                    )

    def __len__(self) -> int:
        if self.drop_last:
            return self._n // self.batch_size
        return (self._n + self.batch_size - 1) // self.batch_size

    def _order(self) -> np.ndarray:
        if not self.shuffle:
            return np.arange(self._n)
        if self._rng is not None:
            return self._rng.permutation(self._n)
        return np.asarray(_core._randperm(self._n), dtype=np.int64)

    def __iter__(self) -> Iterator[Any]:
        order = self._order()
        stop = len(self) * self.batch_size
        for start in range(0, min(stop, self._n), self.batch_size):
            idx = order[start:start + self.batch_size]
            if self.dataset is not None:
                yield self._collate([self.dataset[int(i)] for i in idx])
                continue
            assert self._X is not None  # arrays were given, not a dataset
            if self._y is None:
                yield Tensor(self._X[idx])
            else:
                yield Tensor(self._X[idx]), Tensor(self._y[idx])

    @staticmethod
    def _collate(samples: list[Any]) -> Any:
        """Stacks samples (or each field of ``(x, y)`` tuples) into one Tensor per field."""
        if isinstance(samples[0], tuple):
            return tuple(_stack(field) for field in zip(*samples))
        return _stack(samples)

    def __repr__(self) -> str:
        source = type(self.dataset).__name__ if self.dataset is not None else "arrays"
        return (f"DataLoader({source}, samples={self._n}, batch_size={self.batch_size}, "
                f"shuffle={self.shuffle}, drop_last={self.drop_last})")
