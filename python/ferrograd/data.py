"""Data loading as in ``torch.utils.data``: ``DataLoader``, ``TensorDataset``, ``Dataset`` and
``default_collate``.

``DataLoader`` has two forms. ``DataLoader(X, y, batch_size, shuffle=True, ...)`` slices whole
arrays by index arrays, one copy per batch and no per-sample Python call; it shuffles by
default. ``DataLoader(dataset, batch_size, shuffle=False, sampler=None, ...)`` takes anything
with ``__len__`` and ``__getitem__``, as PyTorch's does, with PyTorch's defaults, and
collates each batch's samples with ``default_collate`` (or ``collate_fn``).
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any, Callable

import numpy as np

from ferrograd import _core
from ferrograd._core import NdArray, Tensor, stack, tensor

__all__ = ["DataLoader", "Dataset", "TensorDataset", "default_collate"]


_EXPECTED = "tensors, numpy arrays, numbers, dicts or lists"


def _normalise(
    name: str, data: Any, keep_ints: bool, from_python: bool | None = None
) -> np.ndarray:
    """One array holding ``data`` with the dtype its tensors will have.

    Floats keep their precision (float16 becomes float32; Python floats become float32).
    Integers and bools keep their kind when ``keep_ints`` (``fg.tensor``'s rule: int32/int64/
    bool stay, other integer kinds become int64); otherwise they become float32 (``fg.Tensor``'s
    rule).
    """
    if isinstance(data, (Tensor, NdArray)):
        arr: np.ndarray = data.numpy()
        from_list = False
    else:
        from_list = not isinstance(data, np.ndarray) if from_python is None else from_python
        arr = np.asarray(data)
    if arr.dtype == object or not (np.issubdtype(arr.dtype, np.number) or arr.dtype == np.bool_):
        raise TypeError(f"DataLoader: {name} must be numeric, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.complexfloating):
        raise TypeError(f"DataLoader: {name} must be real, got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating):
        if arr.dtype == np.float16 or (from_list and arr.dtype != np.float32):
            arr = arr.astype(np.float32)
    elif not keep_ints:
        arr = arr.astype(np.float32)
    elif arr.dtype not in (np.int64, np.int32, np.bool_):
        arr = arr.astype(np.int64)
    return arr


def _to_tensor(arr: np.ndarray) -> Tensor:
    """A Tensor of a normalised array, keeping its dtype."""
    if np.issubdtype(arr.dtype, np.floating):
        return Tensor(arr)
    out: Tensor = tensor(arr)
    return out


def default_collate(batch: Sequence[Any]) -> Any:
    """Merges a list of samples into a batch, as ``torch.utils.data.default_collate``.

    - Tensors are stacked along a new first axis (``fg.stack``), keeping their dtype;
      NumPy arrays and NumPy scalars likewise, into a Tensor.
    - Python numbers become a 1-D Tensor: floats float32, ints int64 and bools bool (as
      PyTorch does).
    - Strings stay a list of strings.
    - A dict collates each key; a tuple or list of fields collates field by field and
      returns a list (PyTorch's choice), a named tuple returns the same named tuple.

    Raises ValueError for an empty batch or samples of unequal shape or length, and
    TypeError for anything else.
    """
    if len(batch) == 0:
        raise ValueError("default_collate: the batch is empty")
    elem = batch[0]
    if isinstance(elem, Tensor):
        if not all(isinstance(b, Tensor) for b in batch):
            raise TypeError("default_collate: a batch mixes Tensors with other types")
        return stack(list(batch))
    if isinstance(elem, (np.ndarray, np.generic, NdArray)) and not isinstance(
        elem, (np.str_, np.bytes_)
    ):
        if isinstance(elem, np.ndarray) and elem.dtype.kind in "OSUV":
            raise TypeError(
                f"default_collate: batch must contain {_EXPECTED}; "
                f"found a numpy array of dtype {elem.dtype}"
            )
        shapes = {np.shape(b) for b in batch}
        if len(shapes) > 1:
            raise ValueError(f"default_collate: samples must have one shape, got {sorted(shapes)}")
        stacked = np.stack([np.asarray(b) for b in batch])
        return _to_tensor(_normalise("a sample", stacked, keep_ints=True, from_python=False))
    if isinstance(elem, (bool, int, float)):
        if not all(isinstance(b, (bool, int, float)) for b in batch):
            raise TypeError("default_collate: a batch mixes numbers with other types")
        return tensor(list(batch))
    if isinstance(elem, (str, bytes)):
        return list(batch)
    if isinstance(elem, Mapping):
        return {key: default_collate([d[key] for d in batch]) for key in elem}
    if isinstance(elem, tuple) and hasattr(elem, "_fields"):  # a named tuple
        return type(elem)(*(default_collate(list(f)) for f in zip(*batch)))
    if isinstance(elem, (tuple, list)):
        size = len(elem)
        if any(len(b) != size for b in batch):
            raise ValueError(
                "default_collate: each sample in the batch must have the same number of fields"
            )
        return [default_collate(list(field)) for field in zip(*batch)]
    raise TypeError(f"default_collate: batch must contain {_EXPECTED}; found {type(elem).__name__}")


class Dataset:
    """Base class for map-style datasets, as ``torch.utils.data.Dataset``: subclass it and
    define ``__len__`` and ``__getitem__(index)``. Nothing requires it: ``DataLoader``
    takes any object that has those two methods."""

    def __getitem__(self, index: Any) -> Any:
        raise NotImplementedError(f"{type(self).__name__} must define __getitem__")


class TensorDataset(Dataset):
    """Samples taken along the first axis of equally long Tensors, as
    ``torch.utils.data.TensorDataset``: ``dataset[i]`` is ``(t[i] for t in tensors)`` as a
    tuple.

    ``DataLoader`` batches it with one indexing call per tensor (no per-sample Python call),
    giving what ``default_collate`` would: a list with one Tensor per tensor, dtypes kept.
    """

    def __init__(self, *tensors: Tensor) -> None:
        if not tensors:
            raise ValueError("TensorDataset: give at least one Tensor")
        for i, t in enumerate(tensors):
            if not isinstance(t, Tensor):
                raise TypeError(
                    f"TensorDataset: argument {i} is a {type(t).__name__}, not a "
                    "Tensor (convert arrays with fg.from_numpy or fg.Tensor)"
                )
            if t.ndim == 0:
                raise ValueError(
                    f"TensorDataset: argument {i} is 0-d; each Tensor needs a sample axis"
                )
        lengths = [t.shape[0] for t in tensors]
        if len(set(lengths)) > 1:
            raise ValueError(f"TensorDataset: the Tensors' first axes differ: {lengths}")
        self.tensors: tuple[Tensor, ...] = tuple(tensors)

    def __getitem__(self, index: Any) -> tuple[Tensor, ...]:
        return tuple(t[index] for t in self.tensors)

    def __len__(self) -> int:
        n: int = self.tensors[0].shape[0]
        return n

    def __repr__(self) -> str:
        shapes = ", ".join(str(t.shape) for t in self.tensors)
        return f"TensorDataset({shapes})"


class _Arrays(Dataset):
    """The arrays of ``DataLoader(X, y)`` as a dataset: ``loader.dataset`` (``len()``,
    ``[i]``), and the batches, taken by index arrays."""

    def __init__(self, X: np.ndarray, y: np.ndarray | None) -> None:
        self.X, self.y = X, y

    def __len__(self) -> int:
        return len(self.X)

    def take(self, idx: Any) -> Any:
        if self.y is None:
            return _to_tensor(self.X[idx])
        return _to_tensor(self.X[idx]), _to_tensor(self.y[idx])

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, bool) or not isinstance(index, (int, np.integer)):
            raise TypeError(f"DataLoader.dataset: index must be an int, got {index!r}")
        if not -len(self) <= index < len(self):
            raise IndexError(
                f"DataLoader.dataset: index {index} is out of range for {len(self)} samples"
            )
        return self.take(int(index))

    def __repr__(self) -> str:
        labels = "" if self.y is None else f", y{self.y.shape}"
        return f"arrays(X{self.X.shape}{labels})"


def _is_array_like(data: Any) -> bool:
    return isinstance(data, (np.ndarray, Tensor, NdArray))


def _is_int(value: Any) -> bool:
    return isinstance(value, (int, np.integer)) and not isinstance(value, (bool, np.bool_))


def _is_sample_list(data: Any) -> bool:
    """A list of samples as PyTorch's DataLoader takes it (pairs, dicts, Tensors), rather
    than nested lists of numbers."""
    return (
        isinstance(data, (list, tuple))
        and len(data) > 0
        and isinstance(data[0], (tuple, Mapping, Tensor))
    )


class DataLoader:
    """Iterates over mini-batches.

    Two forms:

    - ``DataLoader(X, y, batch_size=1, shuffle=True, seed=None, drop_last=False)`` over
      arrays (numpy, lists, Tensors): yields ``(X_batch, y_batch)`` Tensors, taken by
      indexing the arrays (fast: no per-sample call). Features convert as ``fg.Tensor``
      does; labels as ``fg.tensor`` does, so integer labels stay integers where the integer
      dtypes exist (before that, whole-number float32, which ``cross_entropy`` accepts).
      With ``y`` left out it yields ``X_batch`` alone, and does not shuffle by default.
    - ``DataLoader(dataset, batch_size=1, shuffle=False, sampler=None, drop_last=False,
      seed=None, collate_fn=None)`` over any object with ``__len__`` and ``__getitem__``
      (a ``TensorDataset``, your own class, a list of ``(x, y)`` pairs), as PyTorch's: each
      batch is ``collate_fn(list_of_samples)``, by default ``default_collate``.
      ``DataLoader(dataset, 64)`` reads 64 as ``batch_size``; ``dataset=`` may be passed by
      keyword.

    So ``shuffle`` defaults to True only in the two-array form; elsewhere it defaults to
    False, as in PyTorch. ``sampler`` is any iterable of indices with ``__len__`` (a
    ``DistributedSampler``, a fixed list, ...): it chooses each epoch's order and cannot be
    combined with ``shuffle=True`` (ValueError). Every epoch (each ``iter()``) reshuffles
    when ``shuffle``: with ``seed`` from a private generator, so two loaders built alike give
    the same sequence of epochs; with ``seed=None`` from the global generator set by
    ``fg.manual_seed``. The last partial batch is kept unless ``drop_last``. ``len()`` is
    the number of batches per epoch.
    """

    def __init__(
        self,
        X: Any = None,
        y: Any = None,
        batch_size: int = 1,
        shuffle: bool | None = None,
        seed: int | None = None,
        drop_last: bool = False,
        *,
        dataset: Any = None,
        sampler: Any = None,
        collate_fn: Callable[[list[Any]], Any] | None = None,
    ) -> None:
        if dataset is not None:  # DataLoader(dataset=ds, ...), PyTorch's keyword
            if X is not None:
                raise TypeError("DataLoader: got both X and dataset; pass one")
            X = dataset
        if X is None:
            raise TypeError("DataLoader: missing the data: pass arrays X (and y) or a dataset")
        dataset_form = not _is_array_like(X) and (
            not isinstance(X, (list, tuple)) or _is_sample_list(X)
        )
        if _is_int(y):
            # DataLoader(dataset, 64): PyTorch's second positional argument is batch_size.
            if batch_size != 1:
                raise TypeError(
                    f"DataLoader: got batch_size twice ({y} and {batch_size}); "
                    "pass the arguments after batch_size by keyword"
                )
            batch_size, y = int(y), None
        if isinstance(batch_size, bool) or not _is_int(batch_size):
            raise TypeError(
                f"DataLoader: batch_size must be an int, got {batch_size!r}"
                + (
                    " (PyTorch's unbatched batch_size=None is not supported)"
                    if batch_size is None
                    else ""
                )
            )
        if batch_size < 1:
            raise ValueError(f"DataLoader: batch_size must be >= 1, got {batch_size}")
        if sampler is not None:
            if not (hasattr(sampler, "__iter__") and hasattr(sampler, "__len__")):
                raise TypeError(
                    "DataLoader: sampler must be an iterable of indices with "
                    f"__len__, got {type(sampler).__name__}"
                )
            if shuffle:
                raise ValueError(
                    "DataLoader: sampler and shuffle=True are mutually "
                    "exclusive (the sampler chooses the order)"
                )
        if collate_fn is not None and not callable(collate_fn):
            raise TypeError(
                f"DataLoader: collate_fn must be callable, got {type(collate_fn).__name__}"
            )

        self.batch_size = int(batch_size)
        self.seed = seed
        self.drop_last = bool(drop_last)
        self.sampler = sampler
        self._rng = np.random.default_rng(seed) if seed is not None else None

        self.dataset: Any
        self._arrays: _Arrays | None = None
        if dataset_form and y is None:
            if not (hasattr(X, "__len__") and hasattr(X, "__getitem__")):
                raise TypeError(
                    "DataLoader: X must be an array, a list, a Tensor, or a dataset with "
                    f"__len__ and __getitem__; got {type(X).__name__}"
                )
            self.dataset = X
            self.collate_fn: Callable[[list[Any]], Any] = collate_fn or default_collate
        elif dataset_form and not isinstance(X, (list, tuple)):
            raise TypeError(
                f"DataLoader: a dataset ({type(X).__name__}) carries its labels "
                "in its samples; pass y only with an array X"
            )
        else:
            if collate_fn is not None:
                raise ValueError(
                    "DataLoader: collate_fn needs the dataset form; wrap the "
                    "arrays in a TensorDataset or your own dataset"
                )
            keep_x = isinstance(X, (Tensor, NdArray))  # fg.Tensor(t) keeps t's dtype
            features = _normalise("X", X, keep_ints=keep_x)
            if features.ndim == 0:
                raise ValueError("DataLoader: X must have a sample axis, got a scalar")
            labels = None
            if y is not None:
                labels = _normalise("y", y, keep_ints=True)
                if labels.ndim == 0:
                    raise ValueError("DataLoader: y must have a sample axis, got a scalar")
                if len(labels) != len(features):
                    raise ValueError(
                        f"DataLoader: X has {len(features)} samples but y has {len(labels)}"
                    )
            self._arrays = _Arrays(features, labels)
            self.dataset = self._arrays
            self.collate_fn = default_collate
        two_arrays = self._arrays is not None and self._arrays.y is not None
        self.shuffle = bool(two_arrays and sampler is None) if shuffle is None else bool(shuffle)

    def _num_samples(self) -> int:
        n: int = len(self.sampler) if self.sampler is not None else len(self.dataset)
        return n

    def __len__(self) -> int:
        n = self._num_samples()
        if self.drop_last:
            return n // self.batch_size
        return (n + self.batch_size - 1) // self.batch_size

    def _order(self) -> Any:
        if self.sampler is not None:
            return list(self.sampler)
        n = len(self.dataset)
        if not self.shuffle:
            return np.arange(n)
        if self._rng is not None:
            return self._rng.permutation(n)
        return np.asarray(_core._randperm(n), dtype=np.int64)

    def _index_array(self, order: Any) -> np.ndarray:
        """The epoch's order as int64 indices into the arrays, checked."""
        idx = np.asarray(order)
        if idx.size == 0:
            return idx.astype(np.int64)
        if idx.ndim != 1 or not (np.issubdtype(idx.dtype, np.integer)):
            raise TypeError(f"DataLoader: the sampler must yield int indices, got {order[:3]!r}...")
        n = len(self.dataset)
        bad = idx[(idx < -n) | (idx >= n)]
        if bad.size:
            raise IndexError(
                f"DataLoader: the sampler gave index {bad[0]}, out of range for {n} samples"
            )
        return idx.astype(np.int64, copy=False)

    def _fast_tensors(self) -> tuple[Tensor, ...] | None:
        """A TensorDataset's tensors when batches may be taken by index arrays: the dataset
        is not a subclass that changes indexing, and collation is the default."""
        ds = self.dataset
        if (
            isinstance(ds, TensorDataset)
            and type(ds).__getitem__ is TensorDataset.__getitem__
            and self.collate_fn is default_collate
        ):
            return ds.tensors
        return None

    def __iter__(self) -> Iterator[Any]:
        order = self._order()
        count = len(order)
        stop = count - count % self.batch_size if self.drop_last else count
        arrays, tensors = self._arrays, self._fast_tensors()
        if self.sampler is not None and (arrays is not None or tensors is not None):
            order = self._index_array(order)  # our own orders need no checking
        for start in range(0, stop, self.batch_size):
            chunk = order[start : start + self.batch_size]
            if arrays is not None:
                yield arrays.take(chunk)
            elif tensors is not None:
                yield [t[chunk] for t in tensors]
            else:
                yield self.collate_fn([self.dataset[_plain(i)] for i in chunk])

    def __repr__(self) -> str:
        if self._arrays is not None:
            source = repr(self._arrays)
        else:
            source = type(self.dataset).__name__
        sampler = "" if self.sampler is None else f", sampler={type(self.sampler).__name__}"
        return (
            f"DataLoader({source}, samples={self._num_samples()}, "
            f"batch_size={self.batch_size}, shuffle={self.shuffle}{sampler}, "
            f"drop_last={self.drop_last})"
        )


def _plain(index: Any) -> Any:
    """NumPy integers as Python ints, for datasets that check ``isinstance(i, int)``."""
    return int(index) if isinstance(index, np.integer) else index
