"""Shared settings and helpers for the ferrograd test suite.

Hypothesis runs under the ``ci`` profile unless ``HYPOTHESIS_PROFILE`` names
another one, so the whole suite stays fast and free of flaky deadlines.

Test modules import the helpers below with ``from conftest import ...``
(pytest puts this folder on ``sys.path``).
"""

import os

import numpy as np
from hypothesis import settings

settings.register_profile("ci", deadline=None, max_examples=40, derandomize=True)
settings.register_profile("dev", deadline=None, max_examples=200)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "ci"))

# Tolerances for comparing ferrograd against NumPy, by result dtype.
RTOL = {"float32": 1e-5, "float64": 1e-12}
ATOL = {"float32": 1e-6, "float64": 1e-12}


def as_numpy(obj):
    """``np.asarray`` of a ferrograd object (or anything array-like)."""
    return np.asarray(obj)


def assert_close(actual, expected, rtol=None, atol=None, dtype=None):
    """Compare ``np.asarray(actual)`` with ``expected`` elementwise.

    Unlike ``np.testing.assert_allclose`` this insists on equal shapes (a 0-d
    result must not pass for a (1,) expectation). Tolerances default to the
    dtype of ``actual``: 1e-5 for float32, 1e-12 for float64. ``dtype``, when
    given, must equal ``actual.dtype`` (a string such as ``"float32"``).
    NaNs must appear in the same places.
    """
    got = np.asarray(actual)
    want = np.asarray(expected)
    assert got.shape == want.shape, f"shape {got.shape} != expected {want.shape}"
    key = "float64" if got.dtype == np.float64 else "float32"
    if rtol is None:
        rtol = RTOL[key]
    if atol is None:
        atol = ATOL[key]
    if dtype is not None:
        assert actual.dtype == dtype, f"dtype {actual.dtype!r} != expected {dtype!r}"
    np.testing.assert_allclose(
        got.astype(np.float64), want.astype(np.float64), rtol=rtol, atol=atol, equal_nan=True
    )


def reduce_to_shape(arr, shape):
    """Sum a broadcast gradient back down to ``shape`` (NumPy reference)."""
    arr = np.asarray(arr)
    shape = tuple(shape)
    while arr.ndim > len(shape):
        arr = arr.sum(axis=0)
    for axis, size in enumerate(shape):
        if size == 1 and arr.shape[axis] != 1:
            arr = arr.sum(axis=axis, keepdims=True)
    return arr.reshape(shape)


def shape_id(shape):
    """A readable id for a shape: ``()``, ``(3,)``, ``(2, 3)`` -> ``0d``, ``3``, ``2x3``."""
    if shape == ():
        return "0d"
    return "x".join(str(s) for s in shape)
