"""Data for the training workloads, and the worker's resident memory.

The digits are read from the file ferrograd ships, *without importing ferrograd*: a
PyTorch or NumPy worker that imported it would carry its memory and threads into that
library's figures. (``tests/test_benchmarks_smoke.py`` checks the arrays equal
``fg.datasets.load_digits()``.)
"""

from __future__ import annotations

import gzip
import importlib.util
import io
import resource
import sys
from pathlib import Path

import numpy as np


def digits_file() -> Path:
    """The path of ferrograd's ``datasets/digits.csv.gz`` (found, not imported)."""
    spec = importlib.util.find_spec("ferrograd")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("the digits workloads need ferrograd installed (or on PYTHONPATH)")
    return Path(next(iter(spec.submodule_search_locations))) / "datasets" / "digits.csv.gz"


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """``X`` float32 (1797, 64) in [0, 1] and ``y`` int64 (1797,), as ferrograd loads them."""
    table = np.loadtxt(
        io.BytesIO(gzip.decompress(digits_file().read_bytes())), delimiter=",", dtype=np.int64
    )
    return (table[:, :64] / 16.0).astype(np.float32), table[:, 64].copy()


def digits_split(seed: int = 0) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """A fixed 80/20 train/test split: ``X_train, y_train, X_test, y_test`` (contiguous)."""
    X, y = load_digits()
    perm = np.random.default_rng(seed).permutation(len(X))
    n_train = int(0.8 * len(X))
    train, test = perm[:n_train], perm[n_train:]
    return (np.ascontiguousarray(X[train]), y[train], np.ascontiguousarray(X[test]), y[test])


def batch_orders(n: int, batch: int, epochs: int, seed: int) -> list[list[np.ndarray]]:
    """For each epoch, the index arrays of its full batches (the last partial batch is
    dropped, so every step has the same size). Every library gets the same batches."""
    rng = np.random.default_rng(seed)
    steps = n // batch
    orders = []
    for _ in range(epochs):
        order = rng.permutation(n)
        orders.append([order[s * batch : (s + 1) * batch] for s in range(steps)])
    return orders


def rss_mib() -> float:
    """This process's resident memory now (VmRSS), in MiB; NaN where /proc is missing."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return float("nan")


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (``ru_maxrss``), in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    # Linux reports KiB, macOS bytes
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024
