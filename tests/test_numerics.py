"""Numerical edge cases: huge logits, saturated activations, negative bases, zero division."""

import numpy as np
import pytest

import ferrograd as fg

DTYPES = ["float32", "float64"]


@pytest.mark.parametrize("dtype", DTYPES)
def test_log_softmax_and_cross_entropy_stay_finite_for_logits_of_plus_minus_1e4(dtype):
    logits = fg.Tensor(
        [[1e4, -1e4, 0.0], [-1e4, -1e4, -1e4], [1e4, 1e4, -1e4]], requires_grad=True, dtype=dtype
    )
    lsm = logits.log_softmax(axis=1).numpy()
    assert np.all(np.isfinite(lsm))
    np.testing.assert_allclose(lsm[0], [0.0, -2e4, -1e4], rtol=1e-6)
    np.testing.assert_allclose(lsm[1], [-np.log(3)] * 3, rtol=1e-6)
    np.testing.assert_allclose(logits.softmax(axis=1).numpy()[2], [0.5, 0.5, 0.0], atol=1e-7)
    loss = fg.loss.cross_entropy(logits, [1, 0, 2])
    assert np.isfinite(loss.item())
    np.testing.assert_allclose(loss.item(), (2e4 + np.log(3) + (2e4 + np.log(2))) / 3, rtol=1e-6)
    loss.backward()
    grad = logits.grad.numpy()
    assert np.all(np.isfinite(grad))
    np.testing.assert_allclose(grad.sum(axis=1), 0.0, atol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_sigmoid_and_tanh_of_plus_minus_1e4_are_exact_with_finite_zero_gradients(dtype):
    x = fg.Tensor([1e4, -1e4, 800.0, -800.0], requires_grad=True, dtype=dtype)
    s = x.sigmoid()
    assert s.numpy().tolist() == [1.0, 0.0, 1.0, 0.0]
    s.sum().backward()
    g = x.grad.numpy()
    assert np.all(np.isfinite(g)) and np.all(g == 0.0)
    x.grad = None
    t = x.tanh()
    assert t.numpy().tolist() == [1.0, -1.0, 1.0, -1.0]
    t.sum().backward()
    g = x.grad.numpy()
    assert np.all(np.isfinite(g)) and np.all(g == 0.0)


def test_value_sigmoid_and_tanh_of_plus_minus_1e4_are_exact_with_finite_gradients():
    for v, want in [(1e4, 1.0), (-1e4, 0.0)]:
        x = fg.Value(v)
        y = x.sigmoid()
        y.backward()
        assert y.data == want and x.grad == 0.0
    for v, want in [(1e4, 1.0), (-1e4, -1.0)]:
        x = fg.Value(v)
        y = x.tanh()
        y.backward()
        assert y.data == want and x.grad == 0.0


def test_binary_cross_entropy_with_logits_is_finite_for_logits_of_plus_minus_1e4():
    x = fg.Tensor([1e4, -1e4, 1e4, -1e4], requires_grad=True)
    y = fg.Tensor([1.0, 0.0, 0.0, 1.0])
    loss = fg.loss.binary_cross_entropy_with_logits(x, y, reduction="none")
    np.testing.assert_allclose(loss.numpy(), [0.0, 0.0, 1e4, 1e4], rtol=1e-6)
    loss.sum().backward()
    np.testing.assert_allclose(x.grad.numpy(), [0.0, 0.0, 1.0, -1.0], atol=1e-7)


@pytest.mark.parametrize("dtype", DTYPES)
def test_binary_cross_entropy_at_p_zero_and_one_is_finite_and_clamped_like_pytorch(dtype):
    p = fg.Tensor([0.0, 1.0, 0.0, 1.0], requires_grad=True, dtype=dtype)
    y = fg.Tensor([0.0, 1.0, 1.0, 0.0], dtype=dtype)
    loss = fg.loss.binary_cross_entropy(p, y, reduction="none")
    # Right answers cost nothing; wrong ones cost the clamped -log(0) = 100.
    np.testing.assert_array_equal(loss.numpy(), [0.0, 0.0, 100.0, 100.0])
    loss.sum().backward()
    assert np.all(np.isfinite(p.grad.numpy()))


def test_pow_of_negative_bases_follows_pytorch():
    # Integer exponents are fine: (-2)**3 = -8 with gradient 3 * (-2)**2 = 12.
    x = fg.Tensor([-2.0], requires_grad=True, dtype="float64")
    y = x**3
    y.backward()
    assert y.item() == -8.0 and x.grad.item() == 12.0
    x.grad = None
    y = x**2
    y.backward()
    assert y.item() == 4.0 and x.grad.item() == -4.0
    x.grad = None
    y = x**-1
    y.backward()
    assert y.item() == -0.5 and x.grad.item() == -0.25
    # A fractional exponent of a negative base is NaN, forward and backward.
    x.grad = None
    y = x**0.5
    y.backward()
    assert np.isnan(y.item()) and np.isnan(x.grad.item())
    # A Tensor exponent too: (-2) ** [2, 3, 0.5].
    base = fg.Tensor([-2.0, -2.0, -2.0], dtype="float64")
    got = (base ** fg.Tensor([2.0, 3.0, 0.5], dtype="float64")).numpy()
    assert got[0] == 4.0 and got[1] == -8.0 and np.isnan(got[2])


def test_value_pow_of_negative_bases_follows_pytorch():
    x = fg.Value(-2.0)
    y = x**3
    y.backward()
    assert y.data == -8.0 and x.grad == 12.0
    z = fg.Value(-2.0) ** 0.5
    assert np.isnan(z.data)


def test_pow_of_zero_base_is_finite_where_pytorch_is():
    x = fg.Tensor([0.0], requires_grad=True, dtype="float64")
    y = x**2
    y.backward()
    assert y.item() == 0.0 and x.grad.item() == 0.0
    x.grad = None
    (x**0).backward()
    assert x.grad.item() == 0.0


@pytest.mark.parametrize("dtype", DTYPES)
def test_division_by_zero_gives_inf_and_nan_as_numpy_does(dtype):
    a = np.array([1.0, -1.0, 0.0, np.inf], dtype=dtype)
    b = np.zeros(4, dtype=dtype)
    with np.errstate(all="ignore"):
        want = a / b
        want_scalar = a / 0.0
        want_r = 1.0 / a
    got = (fg.Tensor(a) / fg.Tensor(b)).numpy()
    np.testing.assert_array_equal(got, want)
    np.testing.assert_array_equal((fg.Tensor(a) / 0.0).numpy(), want_scalar)
    np.testing.assert_array_equal(
        (1.0 / fg.Tensor(np.array([0.0, -0.0], dtype=dtype))).numpy(), [np.inf, -np.inf]
    )
    with np.errstate(all="ignore"):
        np.testing.assert_array_equal((1.0 / fg.Tensor(a)).numpy(), want_r)
    # Backward through the division stays IEEE too, never an exception.
    x = fg.Tensor([1.0, 0.0], requires_grad=True, dtype=dtype)
    (fg.Tensor([1.0, 1.0], dtype=dtype) / x).sum().backward()
    g = x.grad.numpy()
    assert g[0] == -1.0 and np.isinf(g[1])
    v = fg.Value(1.0) / fg.Value(0.0)
    assert np.isinf(v.data)


def test_log_and_sqrt_at_zero_give_minus_inf_and_zero_with_ieee_gradients():
    x = fg.Tensor([0.0, -1.0], requires_grad=True, dtype="float64")
    y = x.log()
    assert y.numpy()[0] == -np.inf and np.isnan(y.numpy()[1])
    x2 = fg.Tensor([0.0], requires_grad=True, dtype="float64")
    s = x2.sqrt()
    s.backward()
    assert s.item() == 0.0 and x2.grad.item() == np.inf


def test_softmax_of_all_minus_inf_row_is_nan_like_pytorch_and_inf_logits_do_not_crash():
    x = fg.Tensor([[-np.inf, -np.inf], [np.inf, 0.0]], dtype="float64")
    sm = x.softmax(axis=1).numpy()
    assert np.all(np.isnan(sm[0]))
    assert np.isnan(sm[1, 0]) or sm[1, 0] == 1.0


def test_mean_and_sum_of_float32_stay_accurate_over_a_million_elements():
    x = fg.full((1_000_000,), 0.1)
    assert abs(x.sum().item() - 100_000.0) / 100_000.0 < 1e-5
    assert abs(x.mean().item() - 0.1) < 1e-6
