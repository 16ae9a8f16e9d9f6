"""``Embedding``: a lookup table, ``weight[indices]`` (a differentiable gather)."""

from __future__ import annotations

from typing import Any

import numpy as np

from ferrograd._core import NdArray, Tensor
from ferrograd.layers._init import normal_parameter
from ferrograd.layers.module import Module


def _indices(indices: Any) -> np.ndarray:
    if isinstance(indices, (Tensor, NdArray)):
        indices = indices.numpy()
    arr = np.asarray(indices)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.number):
        raise TypeError(f"Embedding: indices must be integers, got dtype {arr.dtype}")
    if not np.issubdtype(arr.dtype, np.integer) and (
        not np.all(np.isfinite(arr)) or np.any(arr != np.round(arr))
    ):
        raise ValueError("Embedding: indices must be whole numbers")
    return arr.astype(np.int64)


class Embedding(Module):
    """Maps integer indices of any shape to rows of ``weight`` (num_embeddings,
    embedding_dim), initialised from N(0, 1); output shape ``indices.shape + (dim,)``."""

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype: Any = "float32") -> None:
        super().__init__()
        if num_embeddings <= 0 or embedding_dim <= 0:
            raise ValueError("Embedding: num_embeddings and embedding_dim must be positive")
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.weight = normal_parameter((self.num_embeddings, self.embedding_dim), dtype)

    def forward(self, indices: Any) -> Tensor:
        idx = _indices(indices)
        if idx.size and (idx.min() < 0 or idx.max() >= self.num_embeddings):
            bad = idx.min() if idx.min() < 0 else idx.max()
            raise IndexError(
                f"Embedding: index {int(bad)} is out of range for {self.num_embeddings} "
                f"embeddings"
            )
        rows = self.weight[idx.reshape(-1)]
        return rows.reshape(idx.shape + (self.embedding_dim,))

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"
