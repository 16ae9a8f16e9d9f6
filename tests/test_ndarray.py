"""fg.NdArray: a plain n-d array without autodiff, checked against NumPy."""

import numpy as np
import pytest
from conftest import assert_close, shape_id
from op_tables import BINARY_OPS, BROADCAST_PAIRS

import ferrograd as fg

RNG = np.random.default_rng(1234)


def rand(*shape, low=-2.0, high=2.0):
    return RNG.uniform(low, high, size=shape)


def nonzero(*shape):
    """Values bounded away from zero (safe divisors, no relu/abs kinks)."""
    mag = RNG.uniform(0.5, 2.0, size=shape)
    sign = np.where(RNG.random(size=shape) < 0.5, -1.0, 1.0)
    return mag * sign


# ---------------------------------------------------------------- construction


def test_construction_from_python_float_is_0d_float32():
    a = fg.NdArray(3.5)
    assert a.shape == ()
    assert a.ndim == 0
    assert a.size == 1
    assert a.dtype == "float32"
    assert a.item() == 3.5


def test_construction_from_python_int_becomes_float32():
    a = fg.NdArray(7)
    assert a.dtype == "float32"
    assert a.item() == 7.0


def test_construction_from_nested_list_keeps_shape_and_values():
    data = [[1, 2, 3], [4.5, 5, 6]]
    a = fg.NdArray(data)
    assert a.shape == (2, 3)
    assert a.dtype == "float32"
    assert_close(a, np.array(data, dtype=np.float32), dtype="float32")


def test_construction_from_three_level_nested_list():
    data = [[[1.0], [2.0]], [[3.0], [4.0]], [[5.0], [6.0]]]
    a = fg.NdArray(data)
    assert a.shape == (3, 2, 1)
    assert_close(a, np.array(data))


def test_construction_from_ndarray_copies_values():
    a = fg.NdArray([1.0, 2.0])
    b = fg.NdArray(a)
    assert b.shape == (2,)
    assert_close(b, [1.0, 2.0])


@pytest.mark.parametrize(
    "np_dtype, expected",
    [
        (np.int8, "float32"),
        (np.int16, "float32"),
        (np.int32, "float32"),
        (np.int64, "float32"),
        (np.uint8, "float32"),
        (np.uint64, "float32"),
        (np.bool_, "float32"),
        (np.float16, "float32"),
        (np.float32, "float32"),
        (np.float64, "float64"),
    ],
    ids=lambda v: v if isinstance(v, str) else np.dtype(v).name,
)
def test_construction_from_numpy_dtype_maps_to_float_dtype(np_dtype, expected):
    src = np.array([[0, 1, 2], [3, 4, 5]]).astype(np_dtype)
    a = fg.NdArray(src)
    assert a.dtype == expected
    assert a.shape == (2, 3)
    assert_close(a, src.astype(np.float64))


def test_construction_from_0d_numpy_array():
    a = fg.NdArray(np.array(2.5))
    assert a.shape == ()
    assert a.dtype == "float64"
    assert a.item() == 2.5


def _base(rows, cols):
    return np.arange(rows * cols, dtype=np.float64).reshape(rows, cols) * 1.5


NON_CONTIGUOUS = {
    "strided-and-reversed": lambda: _base(4, 6)[::2, ::-1],
    "transposed": lambda: _base(4, 6).T,
    "fortran-order": lambda: np.asfortranarray(_base(4, 6)),
    "column": lambda: _base(4, 6)[:, 1],
    "negative-step-3d": lambda: _base(2, 12).reshape(2, 3, 4)[:, ::-1, ::-2],
    "broadcast-zero-stride": lambda: np.broadcast_to(_base(1, 12)[0], (3, 12)),
}


@pytest.mark.parametrize("make", NON_CONTIGUOUS.values(), ids=NON_CONTIGUOUS.keys())
def test_construction_from_non_contiguous_numpy_array_reads_logical_order(make):
    src = make()
    assert not src.flags.c_contiguous or src.ndim == 1
    a = fg.NdArray(src)
    assert a.shape == src.shape
    assert_close(a, src)


def test_construction_from_non_contiguous_float32_array():
    base = np.arange(12, dtype=np.float32).reshape(3, 4)
    src = base[::-1, 1::2]
    a = fg.NdArray(src)
    assert a.dtype == "float32"
    assert_close(a, src)


DTYPE_FORMS = [
    pytest.param(lambda: "float32", "float32", id="str-float32"),
    pytest.param(lambda: "float64", "float64", id="str-float64"),
    pytest.param(lambda: fg.float32, "float32", id="fg.float32"),
    pytest.param(lambda: fg.float64, "float64", id="fg.float64"),
    pytest.param(lambda: np.float64, "float64", id="np.float64"),
    pytest.param(lambda: np.float32, "float32", id="np.float32"),
    pytest.param(lambda: np.dtype("float64"), "float64", id="np.dtype-float64"),
]


@pytest.mark.parametrize("make_dtype, expected", DTYPE_FORMS)
def test_dtype_argument_accepts_every_documented_form(make_dtype, expected):
    dtype = make_dtype()
    from_list = fg.NdArray([1.0, 2.0], dtype=dtype)
    from_f64 = fg.NdArray(np.array([1.0, 2.0]), dtype=dtype)
    from_f32 = fg.NdArray(np.array([1.0, 2.0], dtype=np.float32), dtype=dtype)
    from_int = fg.NdArray(np.array([1, 2]), dtype=dtype)
    for a in (from_list, from_f64, from_f32, from_int):
        assert a.dtype == expected
        assert_close(a, [1.0, 2.0])


def test_fg_dtype_constants_exist():
    # fg.float32 / fg.float64 are part of the contract, and distinct.
    assert fg.float32 != fg.float64
    assert fg.NdArray(1.0, dtype=fg.float64).dtype == "float64"


def test_float64_dtype_keeps_full_precision():
    a = fg.NdArray([0.1], dtype="float64")
    assert np.asarray(a)[0] == 0.1
    b = fg.NdArray([0.1])
    assert np.asarray(b)[0] == np.float32(0.1)


def test_shape_is_a_tuple_of_ints():
    a = fg.NdArray(np.zeros((2, 3, 4)))
    assert type(a.shape) is tuple
    assert all(type(s) is int for s in a.shape)
    assert a.shape == (2, 3, 4)
    assert a.ndim == 3
    assert a.size == 24


# ---------------------------------------------------------------- arithmetic

BINARY = BINARY_OPS


def _operands(op, sa, sb):
    if op == "pow":
        return rand(*sa, low=0.5, high=2.0), rand(*sb, low=-2.0, high=2.0)
    return nonzero(*sa), nonzero(*sb)


@pytest.mark.parametrize(
    "sa, sb", BROADCAST_PAIRS, ids=[f"{shape_id(a)}-with-{shape_id(b)}" for a, b in BROADCAST_PAIRS]
)
@pytest.mark.parametrize("op", BINARY.keys())
def test_binary_op_broadcasts_like_numpy(op, sa, sb):
    x, y = _operands(op, sa, sb)
    fn = BINARY[op]
    got = fn(fg.NdArray(x, dtype="float64"), fg.NdArray(y, dtype="float64"))
    assert isinstance(got, fg.NdArray)
    assert got.shape == np.broadcast_shapes(sa, sb)
    assert_close(got, fn(x, y), dtype="float64")


@pytest.mark.parametrize("op", BINARY.keys())
def test_binary_op_in_float32_matches_numpy(op):
    x, y = _operands(op, (2, 3), (3,))
    x32, y32 = x.astype(np.float32), y.astype(np.float32)
    got = BINARY[op](fg.NdArray(x32), fg.NdArray(y32))
    assert got.dtype == "float32"
    assert_close(got, BINARY[op](x32, y32), rtol=1e-5)


@pytest.mark.parametrize("scalar", [2.5, 3, -0.5], ids=["float", "int", "negative"])
@pytest.mark.parametrize("op", BINARY.keys())
def test_python_scalar_on_either_side(op, scalar):
    x = rand(2, 3, low=0.5, high=2.0)
    fn = BINARY[op]
    a = fg.NdArray(x, dtype="float64")
    right = fn(a, scalar)
    left = fn(scalar, a)
    assert isinstance(right, fg.NdArray)
    assert isinstance(left, fg.NdArray)
    with np.errstate(invalid="ignore"):  # (-0.5) ** x is NaN, in NumPy as in ferrograd
        assert_close(right, fn(x, scalar))
        assert_close(left, fn(scalar, x))


def test_negation():
    x = rand(2, 3)
    assert_close(-fg.NdArray(x, dtype="float64"), -x)


def test_ndarray_exponent_on_ndarray():
    base = rand(3, low=0.5, high=3.0)
    exp = rand(2, 1, low=-1.0, high=2.0)
    got = fg.NdArray(base, dtype="float64") ** fg.NdArray(exp, dtype="float64")
    assert_close(got, base**exp)


def test_negative_base_to_fractional_power_is_nan():
    got = np.asarray(fg.NdArray([-8.0, 4.0]) ** 0.5)
    assert np.isnan(got[0])
    assert got[1] == pytest.approx(2.0)


def test_mixed_float32_and_float64_promotes_to_float64():
    a = fg.NdArray([1.0, 2.0])
    b = fg.NdArray([0.1, 0.2], dtype="float64")
    assert (a + b).dtype == "float64"
    assert (b * a).dtype == "float64"
    assert_close(a + b, np.array([1.0, 2.0]) + np.array([0.1, 0.2]), rtol=1e-12)


def test_python_scalar_does_not_promote_float32():
    a = fg.NdArray([1.0, 2.0])
    assert (a * 2.5).dtype == "float32"
    assert (2.5 - a).dtype == "float32"
    assert (a**2).dtype == "float32"


def test_numpy_array_on_the_left_gives_ndarray():
    a = fg.NdArray([1.0, 2.0, 3.0])
    got = np.array([10.0, 20.0, 30.0]) + a
    assert isinstance(got, fg.NdArray)
    assert_close(got, [11.0, 22.0, 33.0])
    got = np.float64(2.0) * a
    assert isinstance(got, fg.NdArray)
    assert_close(got, [2.0, 4.0, 6.0])


# ---------------------------------------------------------------- matmul

MATMUL_SHAPES = [
    ((3,), (3,)),
    ((2, 3), (3,)),
    ((3,), (3, 4)),
    ((2, 3), (3, 4)),
    ((1, 3), (3, 1)),
    ((2, 2, 3), (3, 4)),
    ((2, 3), (5, 3, 4)),
    ((2, 1, 2, 3), (3, 3, 4)),
    ((4, 2, 3), (4, 3, 2)),
]


@pytest.mark.parametrize(
    "sa, sb", MATMUL_SHAPES, ids=[f"{shape_id(a)}@{shape_id(b)}" for a, b in MATMUL_SHAPES]
)
def test_matmul_matches_numpy(sa, sb):
    x, y = rand(*sa), rand(*sb)
    got = fg.NdArray(x, dtype="float64") @ fg.NdArray(y, dtype="float64")
    expected = x @ y
    assert got.shape == np.shape(expected)
    assert_close(got, expected, rtol=1e-10, atol=1e-12)


def test_matmul_in_float32():
    x, y = rand(4, 5).astype(np.float32), rand(5, 3).astype(np.float32)
    got = fg.NdArray(x) @ fg.NdArray(y)
    assert got.dtype == "float32"
    assert_close(got, x @ y, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------- unary ops

UNARY = {
    "exp": (lambda a: a.exp(), np.exp, "any"),
    "log": (lambda a: a.log(), np.log, "positive"),
    "sqrt": (lambda a: a.sqrt(), np.sqrt, "positive"),
    "abs": (lambda a: a.abs(), np.abs, "any"),
    "relu": (lambda a: a.relu(), lambda x: np.maximum(x, 0.0), "any"),
    "sigmoid": (lambda a: a.sigmoid(), lambda x: 1.0 / (1.0 + np.exp(-x)), "any"),
    "tanh": (lambda a: a.tanh(), np.tanh, "any"),
}
UNARY_SHAPES = [(), (1,), (4,), (2, 3)]


@pytest.mark.parametrize("shape", UNARY_SHAPES, ids=shape_id)
@pytest.mark.parametrize("name", UNARY.keys())
def test_unary_op_matches_numpy(name, shape):
    fg_fn, np_fn, domain = UNARY[name]
    x = rand(*shape, low=0.1, high=3.0) if domain == "positive" else nonzero(*shape)
    got = fg_fn(fg.NdArray(x, dtype="float64"))
    assert got.shape == shape
    assert_close(got, np_fn(x), rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("name", UNARY.keys())
def test_unary_op_keeps_float32(name):
    fg_fn, np_fn, _ = UNARY[name]
    x = rand(5, low=0.1, high=3.0).astype(np.float32)
    got = fg_fn(fg.NdArray(x))
    assert got.dtype == "float32"
    assert_close(got, np_fn(x.astype(np.float64)), rtol=1e-5, atol=1e-6)


def test_relu_of_negative_is_zero_and_sigmoid_saturates_without_nan():
    a = fg.NdArray([-3.0, 0.0, 2.0, -1000.0, 1000.0])
    assert_close(a.relu(), [0.0, 0.0, 2.0, 0.0, 1000.0])
    sig = np.asarray(a.sigmoid())
    assert not np.isnan(sig).any()
    assert sig[3] == pytest.approx(0.0, abs=1e-6)
    assert sig[4] == pytest.approx(1.0)


# ---------------------------------------------------------------- reductions

AXES = [None, 0, 1, -1, -3, (0, 2), (-1, 0), (0, 1, 2)]
REDUCTIONS = ["sum", "mean", "max", "min"]


def _axis_id(axis):
    if axis is None:
        return "all"
    if isinstance(axis, tuple):
        return "axes" + "_".join(str(a) for a in axis)
    return f"axis{axis}"


@pytest.mark.parametrize("keepdims", [False, True], ids=["drop", "keepdims"])
@pytest.mark.parametrize("axis", AXES, ids=_axis_id)
@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_matches_numpy(name, axis, keepdims):
    x = rand(2, 3, 4)
    got = getattr(fg.NdArray(x, dtype="float64"), name)(axis=axis, keepdims=keepdims)
    expected = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    assert got.shape == np.shape(expected)
    assert_close(got, expected, rtol=1e-12, atol=1e-13)


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_with_default_arguments_gives_0d(name):
    x = rand(3, 2)
    got = getattr(fg.NdArray(x, dtype="float64"), name)()
    assert got.shape == ()
    assert got.item() == pytest.approx(getattr(np, name)(x))


@pytest.mark.parametrize("name", REDUCTIONS)
def test_reduction_of_0d_array(name):
    got = getattr(fg.NdArray(4.0), name)()
    assert got.shape == ()
    assert got.item() == 4.0


@pytest.mark.parametrize("name", ["max", "min"])
def test_max_and_min_propagate_nan(name):
    a = fg.NdArray([[1.0, float("nan"), 3.0], [4.0, 5.0, 6.0]])
    assert np.isnan(getattr(a, name)().item())
    per_row = np.asarray(getattr(a, name)(axis=1))
    assert np.isnan(per_row[0])
    assert not np.isnan(per_row[1])


@pytest.mark.parametrize("keepdims", [False, True], ids=["drop", "keepdims"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, 2], ids=_axis_id)
def test_argmax_matches_numpy(axis, keepdims):
    x = rand(2, 3, 4)
    got = fg.NdArray(x).argmax(axis=axis, keepdims=keepdims)
    expected = np.argmax(x, axis=axis, keepdims=keepdims)
    assert got.shape == np.shape(expected)
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_argmax_picks_first_of_ties():
    a = fg.NdArray([[1.0, 3.0, 3.0], [2.0, 2.0, 0.0]])
    np.testing.assert_array_equal(np.asarray(a.argmax(axis=1)), [1, 0])
    assert a.argmax().item() == 1


# ---------------------------------------------------------------- shape ops


def test_reshape_with_varargs_and_tuple():
    x = np.arange(24.0).reshape(2, 3, 4)
    a = fg.NdArray(x, dtype="float64")
    assert_close(a.reshape(4, 6), x.reshape(4, 6))
    assert_close(a.reshape((4, 6)), x.reshape(4, 6))
    assert_close(a.reshape(24), x.reshape(24))
    assert_close(a.reshape((2, 12)), x.reshape(2, 12))


@pytest.mark.parametrize(
    "shape", [(-1,), (3, -1), (-1, 4), (2, -1, 3), (1, -1, 1)], ids=lambda s: "x".join(map(str, s))
)
def test_reshape_infers_one_minus_one(shape):
    x = np.arange(24.0)
    got = fg.NdArray(x).reshape(*shape)
    assert got.shape == x.reshape(shape).shape
    assert_close(got, x.reshape(shape))


def test_reshape_between_0d_and_one_element():
    a = fg.NdArray(5.0)
    assert a.reshape(1, 1).shape == (1, 1)
    assert fg.NdArray([5.0]).reshape(()).shape == ()


@pytest.mark.parametrize(
    "shape, a, b",
    [
        ((2, 3), 0, 1),
        ((2, 3), 1, 0),
        ((2, 3, 4), 0, 2),
        ((2, 3, 4), -1, 0),
        ((2, 3, 4), 1, 1),
    ],
    ids=["2d", "2d-reversed-args", "3d-outer", "3d-negative", "same-axis"],
)
def test_transpose_swaps_two_axes(shape, a, b):
    x = rand(*shape)
    got = fg.NdArray(x, dtype="float64").transpose(a, b)
    assert_close(got, np.swapaxes(x, a, b))


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (2, 3, 4), (2, 3, 4, 5)], ids=shape_id)
def test_T_reverses_all_axes(shape):
    x = rand(*shape)
    got = fg.NdArray(x, dtype="float64").T
    assert got.shape == x.T.shape
    assert_close(got, x.T)


@pytest.mark.parametrize("shape", [(), (3,), (2, 3), (2, 3, 4)], ids=shape_id)
def test_flatten_gives_1d_in_row_major_order(shape):
    x = rand(*shape)
    got = fg.NdArray(x, dtype="float64").flatten()
    assert got.shape == (x.size,)
    assert_close(got, x.flatten())


def test_shape_ops_after_transpose_use_logical_order():
    x = rand(2, 3, 4)
    a = fg.NdArray(x, dtype="float64")
    assert_close(a.T.reshape(4, 6), x.T.reshape(4, 6))
    assert_close(a.transpose(0, 1).flatten(), np.swapaxes(x, 0, 1).flatten())


# ---------------------------------------------------------------- indexing

INDICES = {
    "int": lambda: 1,
    "negative-int": lambda: -1,
    "two-ints": lambda: (1, 2),
    "all-negative-ints": lambda: (-2, -1, -3),
    "numpy-int": lambda: np.int64(2),
    "slice": lambda: slice(1, 3),
    "column-slice": lambda: (slice(None), slice(1, 3)),
    "step-2": lambda: slice(None, None, 2),
    "reverse": lambda: slice(None, None, -1),
    "negative-step-2": lambda: (slice(None), slice(None, None, -2)),
    "negative-step-bounds": lambda: (slice(None), slice(3, 0, -1)),
    "negative-bounds": lambda: slice(-2, None),
    "slice-past-end": lambda: slice(1, 100),
    "empty-slice": lambda: slice(2, 1),
    "none-front": lambda: None,
    "none-middle": lambda: (slice(None), None, 1),
    "ellipsis-last": lambda: (Ellipsis, 1),
    "ellipsis-middle": lambda: (0, Ellipsis, slice(None, None, 2)),
    "int-list": lambda: [0, 2],
    "int-list-repeated": lambda: [2, 0, 2],
    "int-list-negative": lambda: [-1, 0],
    "numpy-int-array": lambda: np.array([1, 1, 0]),
    "list-on-axis1": lambda: (slice(None), [3, 0]),
    "int-then-list": lambda: (1, [0, 2]),
    "ellipsis-list": lambda: (Ellipsis, [1, 1]),
    "combined": lambda: (slice(-2, None), None, slice(None, None, -1)),
}


@pytest.mark.parametrize("make_index", INDICES.values(), ids=INDICES.keys())
def test_indexing_matches_numpy(make_index):
    x = np.arange(60.0).reshape(3, 4, 5)
    index = make_index()
    got = fg.NdArray(x, dtype="float64")[index]
    expected = x[index]
    assert got.shape == expected.shape
    assert_close(got, expected)


def test_indexing_2d_with_int_gives_row():
    a = fg.NdArray([[1.0, 2.0], [3.0, 4.0]])
    assert_close(a[1], [3.0, 4.0])
    assert_close(a[:, 1], [2.0, 4.0])
    assert a[1, 0].shape == ()
    assert a[1, 0].item() == 3.0


def test_indexing_does_not_alias_the_source():
    a = fg.NdArray([1.0, 2.0, 3.0])
    row = a[1:].numpy()
    row[0] = 100.0
    assert_close(a, [1.0, 2.0, 3.0])


# ---------------------------------------------------------------- cat / stack


@pytest.mark.parametrize(
    "shapes, axis",
    [
        (((2, 3), (1, 3)), 0),
        (((2, 1), (2, 3)), 1),
        (((2, 1), (2, 3), (2, 2)), -1),
        (((3,), (2,)), 0),
        (((2, 2, 1), (2, 2, 3)), 2),
    ],
    ids=["rows", "columns", "three-negative-axis", "1d", "3d-last"],
)
def test_cat_matches_numpy(shapes, axis):
    xs = [rand(*s) for s in shapes]
    got = fg.cat([fg.NdArray(x, dtype="float64") for x in xs], axis=axis)
    assert isinstance(got, fg.NdArray)
    assert_close(got, np.concatenate(xs, axis=axis))


def test_cat_default_axis_is_zero():
    got = fg.cat([fg.NdArray([[1.0, 2.0]]), fg.NdArray([[3.0, 4.0]])])
    assert got.shape == (2, 2)


@pytest.mark.parametrize(
    "shape, axis",
    [
        ((3,), 0),
        ((3,), 1),
        ((3,), -1),
        ((2, 3), 1),
        ((), 0),
    ],
    ids=["1d-axis0", "1d-axis1", "1d-axis-1", "2d-axis1", "0d"],
)
def test_stack_matches_numpy(shape, axis):
    xs = [rand(*shape) for _ in range(3)]
    got = fg.stack([fg.NdArray(x, dtype="float64") for x in xs], axis=axis)
    assert_close(got, np.stack(xs, axis=axis))


def test_cat_accepts_a_tuple_and_promotes_mixed_dtypes():
    got = fg.cat((fg.NdArray([1.0]), fg.NdArray([2.0], dtype="float64")))
    assert got.dtype == "float64"
    assert_close(got, [1.0, 2.0])


# ---------------------------------------------------------------- softmax


@pytest.mark.parametrize("axis", [-1, 0])
def test_softmax_and_log_softmax_match_numpy(axis):
    x = rand(3, 4)
    shifted = x - x.max(axis=axis, keepdims=True)
    log_sm = shifted - np.log(np.exp(shifted).sum(axis=axis, keepdims=True))
    a = fg.NdArray(x, dtype="float64")
    assert_close(a.softmax(axis=axis), np.exp(log_sm))
    assert_close(a.log_softmax(axis=axis), log_sm)


# ---------------------------------------------------------------- conversion


def test_numpy_returns_a_writable_copy():
    a = fg.NdArray([[1.0, 2.0], [3.0, 4.0]])
    out = a.numpy()
    assert isinstance(out, np.ndarray)
    assert out.dtype == np.float32
    assert out.flags.writeable
    out[0, 0] = 99.0
    assert_close(a, [[1.0, 2.0], [3.0, 4.0]])
    again = a.numpy()
    assert again[0, 0] == 1.0


def test_numpy_keeps_float64():
    a = fg.NdArray(np.array([0.1, 0.2]))
    assert a.numpy().dtype == np.float64
    np.testing.assert_array_equal(a.numpy(), [0.1, 0.2])


def test_np_asarray_gives_values_and_dtype():
    a = fg.NdArray([[1.0, 2.0, 3.0]])
    arr = np.asarray(a)
    assert arr.shape == (1, 3)
    assert arr.dtype == np.float32
    np.testing.assert_array_equal(arr, [[1.0, 2.0, 3.0]])
    arr64 = np.asarray(fg.NdArray([1.0], dtype="float64"))
    assert arr64.dtype == np.float64


def test_np_asarray_of_0d():
    arr = np.asarray(fg.NdArray(2.0))
    assert arr.shape == ()
    assert arr == 2.0


def test_tolist_gives_nested_python_floats():
    a = fg.NdArray([[1, 2], [3, 4]])
    out = a.tolist()
    assert out == [[1.0, 2.0], [3.0, 4.0]]
    assert type(out[0][0]) is float


def test_tolist_of_0d_is_a_float():
    out = fg.NdArray(2.5).tolist()
    assert out == 2.5
    assert type(out) is float


def test_item_returns_python_float_from_one_element():
    assert fg.NdArray([[7.5]]).item() == 7.5
    assert type(fg.NdArray([[7.5]]).item()) is float
    assert fg.NdArray(np.array([0.1])).item() == 0.1


def test_repr_shows_the_values():
    r = repr(fg.NdArray([[1.0, 2.5], [-3.0, 4.0]]))
    for text in ("1.", "2.5", "-3.", "4."):
        assert text in r
    assert "[[" in r


def test_repr_of_large_array_is_summarised():
    r = repr(fg.NdArray(np.full(5000, 0.5)))
    assert "..." in r
    assert len(r) < 2000
    assert "0.5" in r
