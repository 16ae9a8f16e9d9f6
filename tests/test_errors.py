"""Every error path: the exception class, a message naming the problem, and
the objects involved still usable afterwards. IEEE cases that must *not*
raise live here too."""

import numpy as np
import pytest
from conftest import assert_close
from op_tables import BINARY_OPS

import ferrograd as fg


def assert_still_works(*objs):
    """An op on each object after an error still gives the right values."""
    for obj in objs:
        before = np.array(np.asarray(obj), dtype=np.float64)
        assert_close((obj * 2.0 + 1.0), before * 2.0 + 1.0, rtol=1e-5)
        assert obj.sum().item() == pytest.approx(before.sum(), rel=1e-5)


def t(shape, dtype="float32"):
    return fg.Tensor(np.arange(float(np.prod(shape, dtype=int))).reshape(shape), dtype=dtype)


# ---------------------------------------------------------------- broadcasting / shapes


@pytest.mark.parametrize("cls", ["Tensor", "NdArray"])
@pytest.mark.parametrize("op", ["add", "sub", "mul", "div", "pow"])
def test_mismatched_broadcast_shapes_raise_value_error_naming_both_shapes(op, cls):
    make = getattr(fg, cls)
    a = make(np.ones((2, 3)))
    b = make(np.ones((4, 3)))
    fn = BINARY_OPS[op]
    with pytest.raises(ValueError, match=r"\(2, 3\)") as info:
        fn(a, b)
    assert "(4, 3)" in str(info.value)
    assert_still_works(a, b)


def test_mismatched_broadcast_with_numpy_operand_raises_value_error():
    a = fg.Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError):
        a + np.ones((2, 2))
    with pytest.raises(ValueError):
        np.ones((2, 2)) * a
    assert_still_works(a)


def test_matmul_rejects_mismatched_inner_dims_naming_both_shapes():
    a = fg.Tensor(np.ones((3, 4)))
    b = fg.Tensor(np.ones((5, 2)))
    with pytest.raises(ValueError, match="matmul") as info:
        a @ b
    assert "(3, 4)" in str(info.value)
    assert "(5, 2)" in str(info.value)
    assert_still_works(a, b)


@pytest.mark.parametrize(
    "sa, sb",
    [
        ((3,), (4,)),
        ((2, 3), (4,)),
        ((2, 3, 4), (3, 4, 5)),
        ((), (3,)),
        ((3,), ()),
    ],
    ids=["1d-1d", "2d-1d", "batch-dims", "0d-left", "0d-right"],
)
def test_matmul_rejects_incompatible_shapes(sa, sb):
    a = fg.NdArray(np.ones(sa))
    b = fg.NdArray(np.ones(sb))
    with pytest.raises(ValueError):
        a @ b
    with pytest.raises(ValueError):
        fg.Tensor(a) @ fg.Tensor(b)


# ---------------------------------------------------------------- axes


def test_axis_error_is_both_value_error_and_index_error():
    assert issubclass(fg.AxisError, ValueError)
    assert issubclass(fg.AxisError, IndexError)


AXIS_CALLS = {
    "sum-axis2": lambda x: x.sum(axis=2),
    "sum-axis-3": lambda x: x.sum(axis=-3),
    "mean-tuple": lambda x: x.mean(axis=(0, 5)),
    "max-axis2": lambda x: x.max(axis=2),
    "min-axis-3": lambda x: x.min(axis=-3, keepdims=True),
    "argmax-axis2": lambda x: x.argmax(axis=2),
    "softmax-axis2": lambda x: x.softmax(axis=2),
    "log-softmax-axis-3": lambda x: x.log_softmax(axis=-3),
    "transpose-axis2": lambda x: x.transpose(0, 2),
    "cat-axis2": lambda x: fg.cat([x, x], axis=2),
    "stack-axis3": lambda x: fg.stack([x, x], axis=3),
}


@pytest.mark.parametrize("cls", ["Tensor", "NdArray"])
@pytest.mark.parametrize("name", AXIS_CALLS.keys())
def test_bad_axis_raises_axis_error(name, cls):
    x = getattr(fg, cls)(np.ones((2, 3)))
    with pytest.raises(fg.AxisError, match="(?i)axis"):
        AXIS_CALLS[name](x)
    assert_still_works(x)


def test_bad_axis_is_catchable_as_value_error_and_as_index_error():
    x = fg.Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError):
        x.sum(axis=7)
    with pytest.raises(IndexError):
        x.sum(axis=7)


def test_duplicate_axis_raises_value_error():
    x = fg.Tensor(np.ones((2, 3)))
    with pytest.raises(ValueError, match="(?i)axis|duplicate|repeat"):
        x.sum(axis=(0, 0))
    with pytest.raises(ValueError):
        x.sum(axis=(1, -1))
    assert_still_works(x)


# ---------------------------------------------------------------- indexing

INDEX_ERRORS = {
    "int-past-end": lambda x: x[2],
    "negative-past-start": lambda x: x[-3],
    "second-axis-past-end": lambda x: x[0, 3],
    "too-many-indices": lambda x: x[0, 0, 0],
    "list-past-end": lambda x: x[[0, 5]],
    "negative-list-past-start": lambda x: x[:, [-4]],
    "numpy-array-past-end": lambda x: x[np.array([2])],
}


@pytest.mark.parametrize("cls", ["Tensor", "NdArray"])
@pytest.mark.parametrize("name", INDEX_ERRORS.keys())
def test_index_out_of_range_raises_index_error(name, cls):
    x = getattr(fg, cls)(np.ones((2, 3)))
    with pytest.raises(IndexError, match="(?i)ind|bound|range"):
        INDEX_ERRORS[name](x)
    assert_still_works(x)


def test_indexing_a_0d_tensor_raises_index_error():
    x = fg.Tensor(1.0)
    with pytest.raises(IndexError):
        x[0]
    assert_still_works(x)


@pytest.mark.parametrize("cls", ["Tensor", "NdArray"])
@pytest.mark.parametrize(
    "index",
    [1.5, "a", (0, 1.0), [0.5, 1.0], (slice(None), "b"), slice(0.5, 2)],
    ids=["float", "str", "float-in-tuple", "float-list", "str-in-tuple", "float-slice-bound"],
)
def test_float_or_str_index_raises_type_error(index, cls):
    x = getattr(fg, cls)(np.ones((2, 3)))
    with pytest.raises(TypeError, match="(?i)ind"):
        x[index]
    assert_still_works(x)


@pytest.mark.parametrize("cls", ["Tensor", "NdArray"])
def test_zero_slice_step_raises_value_error(cls):
    x = getattr(fg, cls)(np.ones((2, 3)))
    with pytest.raises(ValueError, match="(?i)step"):
        x[::0]
    with pytest.raises(ValueError, match="(?i)step"):
        x[:, 1:2:0]
    assert_still_works(x)


# ---------------------------------------------------------------- reshape


@pytest.mark.parametrize("cls", ["Tensor", "NdArray"])
def test_reshape_with_two_minus_ones_raises_value_error(cls):
    x = getattr(fg, cls)(np.ones((2, 3)))
    with pytest.raises(ValueError, match="(?i)-1|infer|unknown"):
        x.reshape(-1, -1)
    assert_still_works(x)


@pytest.mark.parametrize("shape", [(4, 2), (7,), (-1, 4), (0, 6)], ids=["4x2", "7", "-1x4", "0x6"])
@pytest.mark.parametrize("cls", ["Tensor", "NdArray"])
def test_reshape_to_wrong_size_raises_value_error(cls, shape):
    x = getattr(fg, cls)(np.ones((2, 3)))
    with pytest.raises(ValueError, match="(?i)reshape"):
        x.reshape(*shape)
    assert_still_works(x)


def test_reshape_with_negative_dimension_other_than_minus_one_raises_value_error():
    x = fg.Tensor(np.ones(6))
    with pytest.raises(ValueError):
        x.reshape(-2, -3)
    assert_still_works(x)


# ---------------------------------------------------------------- construction

RAGGED = {
    "short-row": [[1.0, 2.0], [3.0]],
    "long-row": [[1.0], [2.0, 3.0]],
    "list-and-number": [[1.0, 2.0], 3.0],
    "deep-ragged": [[[1.0], [2.0]], [[3.0]]],
}


@pytest.mark.parametrize("cls", ["Tensor", "NdArray"])
@pytest.mark.parametrize("name", RAGGED.keys())
def test_ragged_nested_list_raises_value_error(name, cls):
    with pytest.raises(ValueError, match="(?i)ragged|inhomogeneous|shape|length|dimension"):
        getattr(fg, cls)(RAGGED[name])


NON_NUMERIC = {
    "str": "abc",
    "str-in-list": [1, "a"],
    "str-in-nested-list": [[1.0], ["x"]],
    "none": None,
    "none-in-list": [1.0, None],
    "object": object(),
    "dict": {"a": 1},
}


@pytest.mark.parametrize("cls", ["Tensor", "NdArray"])
@pytest.mark.parametrize("name", NON_NUMERIC.keys())
def test_non_numeric_input_raises_type_error(name, cls):
    with pytest.raises(TypeError):
        getattr(fg, cls)(NON_NUMERIC[name])


def test_numpy_string_array_raises_type_error():
    with pytest.raises(TypeError):
        fg.Tensor(np.array(["a", "b"]))
    with pytest.raises(TypeError):
        fg.from_numpy(np.array([object(), object()]))


@pytest.mark.parametrize("dtype", ["banana", "complex64", 42], ids=["banana", "complex64", "int"])
def test_unknown_dtype_raises(dtype):
    with pytest.raises((TypeError, ValueError), match="(?i)dtype|banana|complex64|42"):
        fg.Tensor([1.0], dtype=dtype)
    with pytest.raises((TypeError, ValueError)):
        fg.zeros(2, dtype=dtype)
    with pytest.raises((TypeError, ValueError)):
        fg.NdArray([1.0], dtype=dtype)


# ---------------------------------------------------------------- values


@pytest.mark.parametrize("cls", ["Tensor", "NdArray"])
def test_item_on_many_elements_raises_value_error(cls):
    x = getattr(fg, cls)([1.0, 2.0])
    with pytest.raises(ValueError, match="(?i)item|one element|1 element|size|elements"):
        x.item()
    assert_still_works(x)


def test_item_on_empty_raises_value_error():
    with pytest.raises(ValueError):
        fg.zeros(0).item()


@pytest.mark.parametrize("name", ["max", "min", "argmax"])
def test_max_min_argmax_of_empty_raise_value_error(name):
    x = fg.Tensor(np.zeros((0,)))
    with pytest.raises(ValueError, match="(?i)empty|zero-size|size 0|no elements"):
        getattr(x, name)()
    with pytest.raises(ValueError):
        getattr(fg.NdArray(np.zeros((2, 0))), name)(axis=1)


def test_max_along_a_zero_length_axis_raises_value_error():
    x = fg.NdArray(np.zeros((0, 3)))
    with pytest.raises(ValueError):
        x.max(axis=0)
    assert x.sum(axis=0).shape == (3,)


def test_mean_of_empty_is_nan_not_an_error():
    assert np.isnan(fg.Tensor(np.zeros((0,))).mean().item())
    assert np.isnan(fg.zeros(0).mean().item())
    assert fg.zeros(0).sum().item() == 0.0


def test_division_by_zero_gives_inf_not_an_error():
    x = fg.Tensor([1.0, -1.0, 0.0])
    out = np.asarray(x / 0.0)
    assert out[0] == np.inf and out[1] == -np.inf and np.isnan(out[2])
    out = np.asarray(x / fg.zeros(3))
    assert out[0] == np.inf and out[1] == -np.inf and np.isnan(out[2])
    out = np.asarray(1.0 / fg.zeros(1))
    assert out[0] == np.inf


def test_log_and_sqrt_of_negatives_give_nan_not_an_error():
    x = fg.Tensor([-1.0, 0.0, 1.0])
    log = np.asarray(x.log())
    assert np.isnan(log[0]) and log[1] == -np.inf and log[2] == 0.0
    sq = np.asarray(x.sqrt())
    assert np.isnan(sq[0]) and sq[2] == 1.0


def test_huge_allocation_raises_memory_error():
    with pytest.raises(MemoryError):
        fg.zeros(10**12)
    with pytest.raises(MemoryError):
        fg.ones((10**6, 10**6))
    assert_still_works(fg.zeros(3))


@pytest.mark.parametrize(
    "make",
    [
        lambda: fg.zeros(-1),
        lambda: fg.ones((2, -3)),
        lambda: fg.randn(-1),
        lambda: fg.rand(2, -1),
        lambda: fg.full((-1,), 1.0),
        lambda: fg.eye(-2),
    ],
    ids=["zeros", "ones", "randn", "rand", "full", "eye"],
)
def test_negative_dimension_raises_value_error(make):
    with pytest.raises(ValueError, match="(?i)negative|-1|-2|-3|dimension"):
        make()


def test_arange_with_zero_step_raises_value_error():
    with pytest.raises(ValueError, match="(?i)step"):
        fg.arange(0, 5, 0)


# ---------------------------------------------------------------- backward misuse


def test_backward_misuse_raises_runtime_error_and_graph_stays_usable():
    x = fg.Tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    y = x * x
    with pytest.raises(RuntimeError, match="(?i)grad|scalar|element"):
        y.backward()
    y.backward(np.ones(2))
    assert_close(x.grad, [2.0, 4.0])
    assert_still_works(x, y)


def test_backward_through_freed_graph_mentions_retain_graph():
    x = fg.Tensor([1.0, 2.0], requires_grad=True, dtype="float64")
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()
    assert_close(x.grad, [2.0, 4.0])
    (x * x).sum().backward()
    assert_close(x.grad, [4.0, 8.0])


def test_backward_on_tensor_without_grad_raises_runtime_error():
    x = fg.Tensor([3.0])
    with pytest.raises(RuntimeError, match="(?i)grad"):
        x.backward()
    assert_still_works(x)


def test_backward_with_wrong_shape_grad_raises_value_error():
    x = fg.Tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    with pytest.raises(ValueError, match=r"\(3,\)|\(2,\)|shape"):
        y.backward(np.ones(3))
    with pytest.raises(ValueError):
        y.backward(fg.Tensor(np.ones((2, 1))))
    y.backward([1.0, 1.0])
    assert_close(x.grad, [2.0, 2.0])


def test_backward_with_non_numeric_grad_raises_type_error():
    x = fg.Tensor([1.0, 2.0], requires_grad=True)
    y = x * 2.0
    with pytest.raises(TypeError):
        y.backward("ones")
    assert_still_works(x, y)


# ---------------------------------------------------------------- cat / stack


@pytest.mark.parametrize("cls", ["Tensor", "NdArray"])
def test_cat_of_mismatched_shapes_raises_value_error(cls):
    make = getattr(fg, cls)
    a, b = make(np.ones((2, 3))), make(np.ones((2, 4)))
    with pytest.raises(ValueError, match="(?i)cat"):
        fg.cat([a, b], axis=0)
    with pytest.raises(ValueError):
        fg.cat([a, make(np.ones(3))], axis=0)
    assert_still_works(a, b)
    assert fg.cat([a, b], axis=1).shape == (2, 7)


def test_stack_of_mismatched_shapes_raises_value_error():
    a, b = fg.Tensor(np.ones(3)), fg.Tensor(np.ones(4))
    with pytest.raises(ValueError, match="(?i)stack"):
        fg.stack([a, b])
    assert_still_works(a, b)


@pytest.mark.parametrize("join", ["cat", "stack"])
def test_joining_an_empty_list_raises_value_error(join):
    with pytest.raises(ValueError, match="(?i)empty|at least|no tensor|no array|" + join):
        getattr(fg, join)([])


def test_cat_of_non_tensors_raises_type_error():
    with pytest.raises(TypeError):
        fg.cat([fg.Tensor([1.0]), "x"])
