"""``Embedding``: a lookup table, ``weight[indices]`` (a differentiable gather)."""

from __future__ import annotations

from typing import Any

from ferrograd import _core
from ferrograd._core import Tensor
from ferrograd.layers._init import normal_parameter
from ferrograd.layers.module import Module


class Embedding(Module):
    """Maps integer indices of any shape to rows of ``weight`` (num_embeddings,
    embedding_dim), initialised from N(0, 1); output shape ``indices.shape + (dim,)``.

    The ids are checked by the core's indexing rule: an int64/int32 Tensor, integer array or
    list of ints; a float or bool index is a TypeError; an id outside ``0 ..
    num_embeddings - 1`` (negative ones included, as in PyTorch) is an IndexError naming it.
    """

    def __init__(self, num_embeddings: int, embedding_dim: int, dtype: Any = "float32") -> None:
        super().__init__()
        if num_embeddings <= 0 or embedding_dim <= 0:
            raise ValueError("Embedding: num_embeddings and embedding_dim must be positive")
        self.num_embeddings = int(num_embeddings)
        self.embedding_dim = int(embedding_dim)
        self.weight = normal_parameter((self.num_embeddings, self.embedding_dim), dtype)

    def forward(self, indices: Any) -> Tensor:
        return _core.embedding(indices, self.weight)

    def extra_repr(self) -> str:
        return f"{self.num_embeddings}, {self.embedding_dim}"
