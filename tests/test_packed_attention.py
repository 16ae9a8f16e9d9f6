"""``functional.packed_attention``: multi-head self-attention over a packed (..., T, 3C)
projection, checked to the bit against the chain it replaces (split, view, transpose,
scaled_dot_product_attention, transpose, reshape), and its errors."""

import numpy as np
import pytest

import ferrograd as fg
from ferrograd.functional import packed_attention, scaled_dot_product_attention


def chain(qkv, n_head, dropout_p=0.0, is_causal=False, scale=None):
    *lead, t, c3 = qkv.shape
    c = c3 // 3
    q, k, v = (z.view(*lead, t, n_head, c // n_head).transpose(-3, -2) for z in qkv.split(c, -1))
    y = scaled_dot_product_attention(q, k, v, None, dropout_p, is_causal, scale=scale)
    return y.transpose(-3, -2).reshape(*lead, t, c)


def run(fn, data, grad, **kw):
    x = fg.tensor(data, requires_grad=True)
    y = fn(x, **kw)
    y.backward(fg.tensor(grad))
    return y.numpy(), x.grad.numpy()


CASES = [
    # (shape of qkv, n_head, is_causal, scale)
    ((3, 16, 3 * 24), 4, True, None),
    ((3, 16, 3 * 24), 4, False, None),
    ((2, 3, 9, 3 * 8), 2, True, 0.5),  # two leading axes
    ((7, 3 * 6), 1, False, None),  # no leading axis, one head
    ((12, 64, 3 * 128), 4, True, None),  # the GPT benchmark's shape (parallel kernel)
]


@pytest.mark.parametrize("shape, n_head, is_causal, scale", CASES)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_output_and_gradient_equal_the_split_transpose_attention_chain_bit_for_bit(
    shape, n_head, is_causal, scale, dtype
):
    rng = np.random.default_rng(0)
    data = rng.standard_normal(shape).astype(dtype)
    grad = rng.standard_normal((*shape[:-1], shape[-1] // 3)).astype(dtype)
    kw = {"n_head": n_head, "is_causal": is_causal, "scale": scale}
    out, dx = run(packed_attention, data, grad, **kw)
    want_out, want_dx = run(chain, data, grad, **kw)
    assert out.dtype == dtype and out.shape == want_out.shape
    np.testing.assert_array_equal(out, want_out)
    np.testing.assert_array_equal(dx, want_dx)


def test_dropout_draws_the_same_mask_as_the_chain_from_the_same_seed():
    rng = np.random.default_rng(1)
    data = rng.standard_normal((2, 8, 3 * 8)).astype(np.float32)
    grad = rng.standard_normal((2, 8, 8)).astype(np.float32)
    fg.manual_seed(5)
    got = run(packed_attention, data, grad, n_head=2, dropout_p=0.3, is_causal=True)
    fg.manual_seed(5)
    want = run(chain, data, grad, n_head=2, dropout_p=0.3, is_causal=True)
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)


def test_the_gradient_matches_finite_differences():
    rng = np.random.default_rng(2)
    data = rng.standard_normal((2, 5, 3 * 4))
    w = rng.standard_normal((2, 5, 4))

    def f(a):
        return float((packed_attention(fg.tensor(a), 2, is_causal=True).numpy() * w).sum())

    _, dx = run(packed_attention, data, w, n_head=2, is_causal=True)
    eps = 1e-6
    num = np.zeros_like(data)
    for i in np.ndindex(data.shape):
        d = np.zeros_like(data)
        d[i] = eps
        num[i] = (f(data + d) - f(data - d)) / (2 * eps)
    np.testing.assert_allclose(dx, num, rtol=1e-5, atol=1e-7)


def test_a_retained_graph_gives_the_same_gradient_twice():
    data = np.random.default_rng(3).standard_normal((2, 6, 3 * 4)).astype(np.float32)
    x = fg.tensor(data, requires_grad=True)
    y = packed_attention(x, 2, is_causal=True).sum()
    y.backward(retain_graph=True)
    first = x.grad.numpy().copy()
    y.backward()
    np.testing.assert_array_equal(x.grad.numpy(), 2 * first)


def test_results_do_not_depend_on_the_thread_count():
    data = np.random.default_rng(4).standard_normal((12, 64, 3 * 128)).astype(np.float32)
    grad = np.random.default_rng(5).standard_normal((12, 64, 128)).astype(np.float32)
    before = fg.get_num_threads()
    try:
        fg.set_num_threads(1)
        one = run(packed_attention, data, grad, n_head=4, is_causal=True)
        fg.set_num_threads(2)
        two = run(packed_attention, data, grad, n_head=4, is_causal=True)
    finally:
        fg.set_num_threads(before)
    for a, b in zip(one, two):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize(
    "shape, n_head, error, words",
    [
        ((4, 3 * 8 + 1), 2, ValueError, "multiple of 3"),
        ((4, 3 * 8), 3, ValueError, "n_head"),
        ((4, 3 * 8), 0, ValueError, "n_head"),
        ((3 * 8,), 2, ValueError, "at least 2 dimensions"),
    ],
)
def test_bad_shapes_and_head_counts_raise_naming_the_problem(shape, n_head, error, words):
    with pytest.raises(error, match=words):
        packed_attention(fg.zeros(*shape), n_head)


def test_integer_input_is_a_type_error():
    with pytest.raises(TypeError, match="packed_attention: qkv must be a float tensor"):
        packed_attention(fg.tensor(np.zeros((2, 6), dtype=np.int64)), 1)


def test_a_negative_head_count_is_an_error_not_a_crash():
    with pytest.raises((ValueError, OverflowError)):
        packed_attention(fg.zeros(2, 6), -1)
