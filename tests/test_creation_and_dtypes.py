"""Creation functions, dtypes and promotion, conversion and repr of fg.Tensor."""

import numpy as np
import pytest
from conftest import assert_close
from op_tables import BINARY_OPS

import ferrograd as fg

# ---------------------------------------------------------------- zeros / ones / full


@pytest.mark.parametrize("name", ["zeros", "ones"])
def test_shape_given_as_varargs_or_tuple(name):
    make = getattr(fg, name)
    fill = 0.0 if name == "zeros" else 1.0
    for t in (make(2, 3), make((2, 3))):
        assert isinstance(t, fg.Tensor)
        assert t.shape == (2, 3)
        assert t.dtype == "float32"
        assert t.requires_grad is False
        assert_close(t, np.full((2, 3), fill))
    assert make(4).shape == (4,)
    assert make(()).shape == ()


@pytest.mark.parametrize("name", ["zeros", "ones"])
def test_zeros_and_ones_take_dtype_and_requires_grad(name):
    make = getattr(fg, name)
    t = make(2, 2, dtype="float64", requires_grad=True)
    assert t.dtype == "float64"
    assert t.requires_grad is True
    t.sum().backward()
    assert_close(t.grad, np.ones((2, 2)))
    assert make((3,), dtype=fg.float64).dtype == "float64"


def test_zero_size_shape_is_allowed():
    t = fg.zeros(0, 3)
    assert t.shape == (0, 3)
    assert t.size == 0


def test_full_fills_with_the_value():
    t = fg.full((2, 3), 7.5)
    assert t.shape == (2, 3)
    assert t.dtype == "float32"
    assert_close(t, np.full((2, 3), 7.5))
    t64 = fg.full((2,), -0.1, dtype="float64", requires_grad=True)
    assert t64.dtype == "float64"
    assert t64.requires_grad is True
    assert np.asarray(t64)[0] == -0.1


# ---------------------------------------------------------------- random


def test_randn_shape_forms_and_rough_distribution():
    fg.manual_seed(0)
    assert fg.randn(2, 3).shape == (2, 3)
    assert fg.randn((2, 3)).shape == (2, 3)
    sample = np.asarray(fg.randn(20_000), dtype=np.float64)
    assert abs(sample.mean()) < 0.05
    assert abs(sample.std() - 1.0) < 0.05
    assert fg.randn(3).dtype == "float32"


def test_rand_values_lie_in_zero_one():
    fg.manual_seed(1)
    assert fg.rand(2, 3).shape == (2, 3)
    assert fg.rand((2, 3)).shape == (2, 3)
    sample = np.asarray(fg.rand(20_000), dtype=np.float64)
    assert sample.min() >= 0.0
    assert sample.max() < 1.0
    assert abs(sample.mean() - 0.5) < 0.02
    assert fg.rand(3).dtype == "float32"


@pytest.mark.parametrize("name", ["randn", "rand"])
def test_random_creation_takes_dtype_and_requires_grad(name):
    make = getattr(fg, name)
    t = make(2, 3, dtype="float64", requires_grad=True)
    assert t.dtype == "float64"
    assert t.requires_grad is True
    (t * 2.0).sum().backward()
    assert_close(t.grad, np.full((2, 3), 2.0))


def test_manual_seed_makes_randn_and_rand_reproducible():
    fg.manual_seed(42)
    a1, r1 = fg.randn(5), fg.rand(2, 2)
    fg.manual_seed(42)
    a2, r2 = fg.randn(5), fg.rand(2, 2)
    np.testing.assert_array_equal(np.asarray(a1), np.asarray(a2))
    np.testing.assert_array_equal(np.asarray(r1), np.asarray(r2))
    fg.manual_seed(43)
    a3 = fg.randn(5)
    assert not np.array_equal(np.asarray(a1), np.asarray(a3))


def test_successive_draws_differ():
    fg.manual_seed(7)
    assert not np.array_equal(np.asarray(fg.randn(8)), np.asarray(fg.randn(8)))


# ---------------------------------------------------------------- arange / eye


@pytest.mark.parametrize(
    "args, expected, dtype",
    [
        ((5,), np.arange(5), "int64"),
        ((2, 5), np.arange(2, 5), "int64"),
        ((0, 1, 0.25), np.arange(0.0, 1.0, 0.25), "float32"),
        ((5, 0, -2), np.arange(5, 0, -2), "int64"),
        ((-1.5, 1.5, 0.5), np.arange(-1.5, 1.5, 0.5), "float32"),
        ((3, 3), np.arange(3, 3), "int64"),
        ((0, 3.0), np.arange(0, 3.0), "float32"),
    ],
    ids=[
        "n",
        "start-stop",
        "fractional-step",
        "negative-step",
        "negative-start",
        "empty",
        "one-float-makes-float",
    ],
)
def test_arange_is_int64_for_integer_arguments_and_float32_otherwise(args, expected, dtype):
    t = fg.arange(*args)
    assert t.dtype == dtype
    assert t.shape == expected.shape
    assert_close(t, expected)


def test_arange_counts_exactly_past_float_precision():
    start = 2**60
    t = fg.arange(start, start + 3)
    assert t.tolist() == [start, start + 1, start + 2]


def test_arange_takes_dtype_and_requires_grad():
    t = fg.arange(0, 3, 1, dtype="float64", requires_grad=True)
    assert t.dtype == "float64"
    assert t.requires_grad is True
    assert_close(t, [0.0, 1.0, 2.0])


@pytest.mark.parametrize(
    "args, expected",
    [
        ((3,), np.eye(3)),
        ((2, 3), np.eye(2, 3)),
        ((3, 2), np.eye(3, 2)),
        ((1,), np.eye(1)),
    ],
    ids=["square", "wide", "tall", "one"],
)
def test_eye_matches_numpy(args, expected):
    t = fg.eye(*args)
    assert t.dtype == "float32"
    assert_close(t, expected)


def test_eye_takes_m_keyword_dtype_and_requires_grad():
    t = fg.eye(2, m=4, dtype="float64", requires_grad=True)
    assert t.shape == (2, 4)
    assert t.dtype == "float64"
    assert t.requires_grad is True
    assert_close(t, np.eye(2, 4))


# ---------------------------------------------------------------- from_numpy / Tensor(...)


@pytest.mark.parametrize(
    "src, dtype",
    [
        (np.array([[1.0, 2.0]]), "float64"),
        (np.array([[1.0, 2.0]], dtype=np.float32), "float32"),
        (np.array([[1, 2]], dtype=np.int64), "int64"),
        (np.array([[1, 2]], dtype=np.int32), "int32"),
        (np.array([[1, 2]], dtype=np.uint8), "int64"),
        (np.array([[True, False]]), "bool"),
        (np.array([[1.0, 2.0]], dtype=np.float16), "float32"),
    ],
    ids=["float64", "float32", "int64", "int32", "uint8", "bool", "float16"],
)
def test_from_numpy_follows_dtype_rules(src, dtype):
    t = fg.from_numpy(src)
    assert isinstance(t, fg.Tensor)
    assert t.dtype == dtype
    assert_close(t, src.astype(np.float64))


def test_from_numpy_takes_dtype_and_requires_grad_and_copies():
    src = np.array([1.0, 2.0, 3.0])
    t = fg.from_numpy(src, dtype="float32", requires_grad=True)
    assert t.dtype == "float32"
    assert t.requires_grad is True
    src[0] = 100.0
    assert_close(t, [1.0, 2.0, 3.0])


def test_from_numpy_of_non_contiguous_array():
    src = np.arange(12.0).reshape(3, 4)[::-1, ::2]
    assert_close(fg.from_numpy(src), src)


def test_tensor_from_tensor_copies_without_graph():
    x = fg.Tensor([1.0, 2.0], requires_grad=True)
    y = x * 3.0
    z = fg.Tensor(y)
    assert z.requires_grad is False
    assert not z._op
    assert len(z._prev) == 0
    assert_close(z, [3.0, 6.0])
    w = fg.Tensor(y, requires_grad=True)
    (w * 2.0).sum().backward()
    assert x.grad is None
    assert_close(w.grad, [2.0, 2.0])


def test_tensor_from_ndarray_and_dtype_override():
    t = fg.Tensor(fg.NdArray([1.0, 2.0]), dtype="float64")
    assert t.dtype == "float64"
    assert_close(t, [1.0, 2.0])


# ---------------------------------------------------------------- dtypes and promotion


def test_default_dtype_is_float32():
    assert fg.Tensor([1.0, 2.0]).dtype == "float32"
    assert fg.Tensor(3).dtype == "float32"
    assert fg.Tensor([[1, 2]]).dtype == "float32"


def test_dtype_constants_give_their_dtype():
    assert fg.Tensor([1.0], dtype=fg.float32).dtype == "float32"
    assert fg.Tensor([1.0], dtype=fg.float64).dtype == "float64"
    assert fg.Tensor([1.0], dtype=np.float64).dtype == "float64"


MIXED_OPS = BINARY_OPS


@pytest.mark.parametrize("op", MIXED_OPS.keys())
def test_float32_with_float64_gives_float64(op):
    f32 = fg.Tensor([[1.5, 2.0]])
    f64 = fg.Tensor([[0.5, 2.0]], dtype="float64")
    fn = MIXED_OPS[op]
    assert fn(f32, f64).dtype == "float64"
    assert fn(f64, f32).dtype == "float64"
    assert_close(fn(f32, f64), fn(np.array([[1.5, 2.0]]), np.array([[0.5, 2.0]])), rtol=1e-12)


def test_float32_matmul_float64_gives_float64():
    f32 = fg.Tensor([[1.5, 2.0]])
    f64 = fg.Tensor([[0.5], [2.0]], dtype="float64")
    assert (f32 @ f64).dtype == "float64"
    assert (f64 @ f32).dtype == "float64"


def test_float32_cat_float64_gives_float64():
    assert fg.cat([fg.Tensor([1.0]), fg.Tensor([2.0], dtype="float64")]).dtype == "float64"


@pytest.mark.parametrize(
    "expr",
    [
        lambda t: t * 2.5,
        lambda t: 2.5 * t,
        lambda t: t + 0.1,
        lambda t: 1.0 / t,
        lambda t: t**2.5,
        lambda t: 2.5**t,
        lambda t: t - 3,
    ],
    ids=["t*s", "s*t", "t+s", "s/t", "t**s", "s**t", "t-int"],
)
def test_python_scalar_never_promotes_float32(expr):
    t = fg.Tensor([1.0, 2.0])
    out = expr(t)
    assert out.dtype == "float32"


def test_ops_on_float64_stay_float64():
    t = fg.Tensor([0.1, 0.2], dtype="float64")
    assert (t * 2.5).exp().sum().dtype == "float64"
    assert np.asarray(t * 3.0)[0] == 0.1 * 3.0


def test_numpy_array_on_the_left_gives_a_tensor():
    t = fg.Tensor([1.0, 2.0], requires_grad=True)
    out = np.array([10.0, 20.0]) + t
    assert isinstance(out, fg.Tensor)
    assert_close(out, [11.0, 22.0])
    out = np.float64(2.0) * t
    assert isinstance(out, fg.Tensor)
    assert_close(out, [2.0, 4.0])
    out = np.array([[1.0, 1.0]]) @ fg.Tensor([[1.0], [2.0]])
    assert isinstance(out, fg.Tensor)
    assert_close(out, [[3.0]])


def test_numpy_on_the_left_stays_differentiable():
    t = fg.Tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    (np.array([3.0, 5.0]) * t).sum().backward()
    assert_close(t.grad, [3.0, 5.0])


# ---------------------------------------------------------------- conversion


def test_numpy_method_returns_a_writable_copy():
    t = fg.Tensor([[1.0, 2.0]], requires_grad=True)
    arr = t.numpy()
    assert isinstance(arr, np.ndarray)
    assert arr.dtype == np.float32
    assert arr.flags.writeable
    arr[0, 0] = -5.0
    assert_close(t, [[1.0, 2.0]])


def test_np_asarray_gives_the_values():
    t = fg.Tensor([[1.0, 2.0], [3.0, 4.0]], dtype="float64")
    arr = np.asarray(t)
    assert arr.dtype == np.float64
    np.testing.assert_array_equal(arr, [[1.0, 2.0], [3.0, 4.0]])


def test_tolist_and_item():
    t = fg.Tensor([[1.0, 2.0], [3.0, 4.5]])
    assert t.tolist() == [[1.0, 2.0], [3.0, 4.5]]
    assert t.sum().item() == 10.5
    assert isinstance(t.sum().item(), float)
    assert fg.Tensor([[2.0]]).item() == 2.0
    assert fg.Tensor(2.0).tolist() == 2.0


# ---------------------------------------------------------------- repr


def test_repr_of_a_grad_requiring_row_follows_pytorch():
    assert (
        repr(fg.Tensor([[1.0, 2.0]], requires_grad=True))
        == "Tensor([[1., 2.]], requires_grad=True)"
    )


def test_repr_without_grad_starts_with_tensor_and_shows_values():
    r = repr(fg.Tensor([1.5, -2.0, 3.0]))
    assert r.startswith("Tensor(")
    assert "requires_grad=True" not in r
    for text in ("1.5", "-2.", "3."):
        assert text in r


def test_repr_of_small_tensor_has_no_ellipsis():
    assert "..." not in repr(fg.arange(1000))


def test_repr_is_summarised_past_one_thousand_elements():
    r = repr(fg.arange(1001.0))
    assert "..." in r
    assert "1000." in r
    assert "1000], dtype=int64)" in repr(fg.arange(1001))
    big = repr(fg.zeros(200, 200))
    assert "..." in big
    assert len(big) < 5_000
