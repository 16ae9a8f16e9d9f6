"""Kernel results do not depend on the thread count: the striped GEMM, the side-by-side
dX/dW GEMMs of linear and matmul backward, linear's backward split by output features, and
the parallel elementwise loops and reductions give NumPy's answer with 1, 2, 3 and 5
threads (sizes chosen above the thresholds where the work is split)."""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np
import pytest

import ferrograd as fg

THREAD_COUNTS = [1, 2, 3, 5]


@pytest.fixture(params=THREAD_COUNTS, ids=lambda n: f"{n}-threads")
def threads(request: pytest.FixtureRequest) -> Iterator[int]:
    fg.set_num_threads(request.param)
    try:
        yield request.param
    finally:
        fg.set_num_threads(0)


def _rng() -> np.random.Generator:
    return np.random.default_rng(7)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize(
    "shapes", [((130, 300), (300, 270)), ((300, 170), (170, 90))], ids=["wide", "tall"]
)
def test_a_large_matmul_matches_numpy_at_any_thread_count(threads, dtype, shapes):
    a = _rng().standard_normal(shapes[0]).astype(dtype)
    b = _rng().standard_normal(shapes[1]).astype(dtype)
    got = (fg.Tensor(a, dtype=dtype) @ fg.Tensor(b, dtype=dtype)).numpy()
    tol = 1e-3 if dtype == "float32" else 1e-10
    np.testing.assert_allclose(got, a.astype(np.float64) @ b, rtol=tol, atol=tol)


@pytest.mark.parametrize(
    ("rows", "out_features"),
    [(128, 300), (300, 128)],
    # A weight at least as tall as the batch is split by output features (dW and shares of
    # dX per thread); a shorter one runs dX and dW side by side.
    ids=["weight-taller-than-batch", "batch-taller-than-weight"],
)
def test_linear_forward_and_backward_match_numpy_at_any_thread_count(threads, rows, out_features):
    rng = _rng()
    x_np = rng.standard_normal((rows, 200))
    w_np = rng.standard_normal((out_features, 200))
    b_np = rng.standard_normal(out_features)
    g_np = rng.standard_normal((rows, out_features))
    x = fg.Tensor(x_np, dtype="float64", requires_grad=True)
    w = fg.Tensor(w_np, dtype="float64", requires_grad=True)
    b = fg.Tensor(b_np, dtype="float64", requires_grad=True)
    out = fg.functional.linear(x, w, b)
    np.testing.assert_allclose(out.numpy(), x_np @ w_np.T + b_np, rtol=1e-10, atol=1e-10)
    out.backward(g_np)
    np.testing.assert_allclose(x.grad.numpy(), g_np @ w_np, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(w.grad.numpy(), g_np.T @ x_np, rtol=1e-10, atol=1e-10)
    np.testing.assert_allclose(b.grad.numpy(), g_np.sum(axis=0), rtol=1e-10, atol=1e-10)


def test_matmul_backward_matches_numpy_at_any_thread_count(threads):
    rng = _rng()
    a_np = rng.standard_normal((3, 90, 120))
    b_np = rng.standard_normal((120, 150))
    g_np = rng.standard_normal((3, 90, 150))
    a = fg.Tensor(a_np, dtype="float64", requires_grad=True)
    b = fg.Tensor(b_np, dtype="float64", requires_grad=True)
    (a @ b).backward(g_np)
    np.testing.assert_allclose(a.grad.numpy(), g_np @ b_np.T, rtol=1e-10, atol=1e-10)
    want_b = np.einsum("bik,bij->kj", a_np, g_np)  # summed over the broadcast batch
    np.testing.assert_allclose(b.grad.numpy(), want_b, rtol=1e-10, atol=1e-10)


def test_large_elementwise_ops_and_sums_match_numpy_at_any_thread_count(threads):
    rng = _rng()
    a_np = rng.standard_normal(300_001).astype(np.float32)
    b_np = rng.standard_normal(300_001).astype(np.float32)
    a, b = fg.Tensor(a_np), fg.Tensor(b_np)
    np.testing.assert_array_equal((a + b).numpy(), a_np + b_np)
    np.testing.assert_array_equal((a * b).numpy(), a_np * b_np)
    np.testing.assert_array_equal(a.relu().numpy(), np.maximum(a_np, 0))
    np.testing.assert_allclose(a.exp().numpy(), np.exp(a_np), rtol=1e-6)
    np.testing.assert_allclose(a.sum().item(), a_np.astype(np.float64).sum(), rtol=1e-4)


def _max_pool_reference(x, g, kernel, stride, padding):
    """The max-pool gradient by loops: each output's gradient at its window's first maximum."""
    n, c, h, w = x.shape
    ho = (h + 2 * padding - kernel) // stride + 1
    wo = (w + 2 * padding - kernel) // stride + 1
    grad = np.zeros_like(x)
    for oy in range(ho):
        for ox in range(wo):
            y0, x0 = oy * stride - padding, ox * stride - padding
            ys = slice(max(y0, 0), min(y0 + kernel, h))
            xs = slice(max(x0, 0), min(x0 + kernel, w))
            window = x[:, :, ys, xs].reshape(n, c, -1)
            first = window.argmax(axis=2)
            wy, wx = np.divmod(first, xs.stop - xs.start)
            ni, ci = np.meshgrid(np.arange(n), np.arange(c), indexing="ij")
            np.add.at(grad, (ni, ci, ys.start + wy, xs.start + wx), g[:, :, oy, ox])
    return grad


@pytest.mark.parametrize(
    ("kernel", "stride", "padding"), [(2, 2, 0), (3, 2, 1)], ids=["2x2", "3x3-overlapping"]
)
def test_max_pool_backward_matches_numpy_at_any_thread_count(threads, kernel, stride, padding):
    # 512 planes of 8 x 8: the backward's zero-fill and scatter are split over the threads by
    # runs of planes; overlapping windows may send two gradients to one input.
    rng = _rng()
    x_np = rng.standard_normal((16, 32, 8, 8))
    x = fg.Tensor(x_np, dtype="float64", requires_grad=True)
    out = fg.layers.MaxPool2d(kernel, stride, padding)(x)
    g_np = rng.standard_normal(out.shape)
    out.backward(g_np)
    want = _max_pool_reference(x_np, g_np, kernel, stride, padding)
    np.testing.assert_allclose(x.grad.numpy(), want, rtol=1e-12, atol=1e-12)
