"""Hypothesis property tests: broadcasting, reductions, broadcast gradients and
shape round-trips, all against NumPy."""

import hypothesis.extra.numpy as hnp
import hypothesis.strategies as st
import numpy as np
from conftest import assert_close, reduce_to_shape
from hypothesis import given

import ferrograd as fg

finite = st.floats(-10.0, 10.0, allow_nan=False, allow_infinity=False)
away_from_zero = st.one_of(st.floats(0.25, 10.0), st.floats(-10.0, -0.25))

OPS = {
    "add": lambda x, y: x + y,
    "sub": lambda x, y: x - y,
    "mul": lambda x, y: x * y,
    "div": lambda x, y: x / y,
}


@st.composite
def broadcast_pair(draw, op_names=tuple(OPS)):
    shapes = draw(
        hnp.mutually_broadcastable_shapes(
            num_shapes=2, min_dims=0, max_dims=4, min_side=1, max_side=4
        )
    )
    op = draw(st.sampled_from(op_names))
    sa, sb = shapes.input_shapes
    x = draw(hnp.arrays(np.float64, sa, elements=finite))
    y = draw(hnp.arrays(np.float64, sb, elements=away_from_zero if op == "div" else finite))
    return op, x, y, shapes.result_shape


@given(broadcast_pair())
def test_broadcasting_binary_ops_match_numpy_in_float64(case):
    op, x, y, result_shape = case
    got = OPS[op](fg.Tensor(x, dtype="float64"), fg.Tensor(y, dtype="float64"))
    assert got.shape == result_shape
    assert got.dtype == "float64"
    assert_close(got, OPS[op](x, y), rtol=1e-12, atol=0)


@given(broadcast_pair())
def test_broadcasting_binary_ops_on_ndarray_match_numpy_in_float32(case):
    op, x, y = case[0], case[1].astype(np.float32), case[2].astype(np.float32)
    got = OPS[op](fg.NdArray(x), fg.NdArray(y))
    assert got.dtype == "float32"
    assert_close(got, OPS[op](x, y), rtol=1e-6, atol=0)


@given(broadcast_pair(), st.floats(-5.0, 5.0).filter(lambda v: abs(v) > 0.1), st.booleans())
def test_python_scalar_operands_match_numpy(case, scalar, scalar_on_left):
    op, x = case[0], case[1]
    if op == "div" and scalar_on_left:
        x = np.where(np.abs(x) < 0.25, 0.25, x)
    t = fg.Tensor(x, dtype="float64")
    fn = OPS[op]
    got = fn(scalar, t) if scalar_on_left else fn(t, scalar)
    expected = fn(scalar, x) if scalar_on_left else fn(x, scalar)
    assert_close(got, expected, rtol=1e-12, atol=0)


@st.composite
def array_and_axis(draw, min_side=1):
    x = draw(
        hnp.arrays(
            np.float64,
            hnp.array_shapes(min_dims=0, max_dims=4, min_side=min_side, max_side=4),
            elements=finite,
        )
    )
    ndim = x.ndim
    kind = draw(st.sampled_from(["none", "int", "tuple"]) if ndim else st.just("none"))
    if kind == "none":
        axis = None
    elif kind == "int":
        axis = draw(st.integers(-ndim, ndim - 1))
    else:
        chosen = draw(st.lists(st.integers(0, ndim - 1), min_size=1, max_size=ndim, unique=True))
        negate = draw(st.lists(st.booleans(), min_size=len(chosen), max_size=len(chosen)))
        axis = tuple(a - ndim if neg else a for a, neg in zip(chosen, negate))
    return x, axis, draw(st.booleans())


@given(array_and_axis(), st.sampled_from(["sum", "mean", "max", "min"]))
def test_reductions_match_numpy(case, name):
    x, axis, keepdims = case
    got = getattr(fg.Tensor(x, dtype="float64"), name)(axis=axis, keepdims=keepdims)
    expected = getattr(np, name)(x, axis=axis, keepdims=keepdims)
    assert got.shape == np.shape(expected)
    assert_close(got, expected, rtol=1e-10, atol=1e-10)


@given(array_and_axis())
def test_argmax_matches_numpy(case):
    x, axis, keepdims = case
    if isinstance(axis, tuple):
        axis = axis[0]
    got = fg.NdArray(x).argmax(axis=axis, keepdims=keepdims)
    expected = np.argmax(x, axis=axis, keepdims=keepdims)
    assert got.shape == np.shape(expected)
    np.testing.assert_array_equal(np.asarray(got), expected)


@given(array_and_axis(), st.sampled_from(["sum", "mean"]))
def test_reduction_gradient_is_spread_evenly(case, name):
    x, axis, keepdims = case
    t = fg.Tensor(x, dtype="float64", requires_grad=True)
    getattr(t, name)(axis=axis, keepdims=keepdims).sum().backward()
    if name == "sum":
        expected = np.ones_like(x)
    else:
        count = x.size / max(np.mean(x, axis=axis, keepdims=keepdims).size, 1)
        expected = np.full_like(x, 1.0 / count)
    assert_close(t.grad, expected, rtol=1e-12)


@given(broadcast_pair(op_names=("mul",)))
def test_gradient_of_sum_of_broadcast_product_is_numpy_reduction(case):
    _, x, y, result_shape = case
    a = fg.Tensor(x, dtype="float64", requires_grad=True)
    b = fg.Tensor(y, dtype="float64", requires_grad=True)
    (a * b).sum().backward()
    assert a.grad.shape == x.shape
    assert b.grad.shape == y.shape
    expected_a = reduce_to_shape(np.broadcast_to(y, result_shape), x.shape)
    expected_b = reduce_to_shape(np.broadcast_to(x, result_shape), y.shape)
    assert_close(a.grad, expected_a, rtol=1e-10, atol=1e-10)
    assert_close(b.grad, expected_b, rtol=1e-10, atol=1e-10)


@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=0, max_dims=4, max_side=4), elements=finite),
    st.data(),
)
def test_reshape_round_trips(x, data):
    t = fg.Tensor(x, dtype="float64")
    flat = t.reshape(-1)
    assert flat.shape == (x.size,)
    assert_close(flat, x.reshape(-1), rtol=0, atol=0)
    back = flat.reshape(*x.shape) if x.ndim else flat.reshape(())
    assert back.shape == x.shape
    assert_close(back, x, rtol=0, atol=0)
    if x.ndim >= 2:
        new_shape = (x.shape[0], -1)
        assert_close(t.reshape(*new_shape), x.reshape(new_shape), rtol=0, atol=0)
    assert_close(t.flatten(), x.flatten(), rtol=0, atol=0)


@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=4, max_side=4), elements=finite),
    st.data(),
)
def test_transpose_round_trips_and_matches_numpy(x, data):
    t = fg.Tensor(x, dtype="float64")
    a = data.draw(st.integers(-x.ndim, x.ndim - 1))
    b = data.draw(st.integers(-x.ndim, x.ndim - 1))
    swapped = t.transpose(a, b)
    assert_close(swapped, np.swapaxes(x, a, b), rtol=0, atol=0)
    assert_close(swapped.transpose(a, b), x, rtol=0, atol=0)
    assert_close(t.T, x.T, rtol=0, atol=0)
    assert_close(t.T.T, x, rtol=0, atol=0)


@given(
    hnp.arrays(np.float64, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=finite),
    st.data(),
)
def test_slicing_matches_numpy(x, data):
    index = []
    for size in x.shape:
        start = data.draw(st.one_of(st.none(), st.integers(-size - 1, size + 1)))
        stop = data.draw(st.one_of(st.none(), st.integers(-size - 1, size + 1)))
        step = data.draw(st.one_of(st.none(), st.integers(-3, 3).filter(bool)))
        index.append(slice(start, stop, step))
    index = tuple(index)
    got = fg.NdArray(x, dtype="float64")[index]
    assert got.shape == x[index].shape
    assert_close(got, x[index], rtol=0, atol=0)
