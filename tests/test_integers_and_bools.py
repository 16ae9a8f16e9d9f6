"""int64, int32 and bool tensors: creation, promotion, comparisons, bitwise ops, floor division,
casts, reductions, indexing and the float-only rules (docs/design.md, "Dtypes")."""

import itertools

import numpy as np
import pytest

import ferrograd as fg

DTYPES = ["float32", "float64", "int64", "int32", "bool"]
CATEGORY = {"bool": 0, "int32": 1, "int64": 1, "float32": 2, "float64": 2}
WIDTH = {"bool": 1, "int32": 4, "int64": 8, "float32": 4, "float64": 8}


def promoted(a: str, b: str) -> str:
    """The documented rule: the higher category wins, then the wider type."""
    if CATEGORY[a] != CATEGORY[b]:
        return a if CATEGORY[a] > CATEGORY[b] else b
    return a if WIDTH[a] >= WIDTH[b] else b


def with_scalar(dtype: str, scalar: object) -> str:
    kind = 0 if isinstance(scalar, bool) else 1 if isinstance(scalar, int) else 2
    if kind <= CATEGORY[dtype]:
        return dtype
    return ["bool", "int64", "float32"][kind]


def sample(dtype: str) -> np.ndarray:
    values = {"bool": [True, False, True], "float32": [1.5, -2.0, 3.25]}
    raw = values.get(dtype, [7, -3, 2] if dtype.startswith("int") else [1.5, -2.0, 3.25])
    return np.array(raw, dtype=dtype)


# ------------------------------------------------------------------------------- creation


def test_tensor_infers_like_torch_tensor():
    assert fg.tensor([1, 2]).dtype == "int64"
    assert fg.tensor([True, False]).dtype == "bool"
    assert fg.tensor([1.5, 2]).dtype == "float32"
    assert fg.tensor(3).dtype == "int64" and fg.tensor(3).shape == ()
    assert fg.tensor(np.array([1, 2], dtype=np.int32)).dtype == "int32"
    assert fg.tensor(np.array([1, 2], dtype=np.uint16)).dtype == "int64"
    assert fg.tensor(np.array([1.0], dtype=np.float16)).dtype == "float32"
    assert fg.tensor(np.array([1.0])).dtype == "float64"
    assert fg.tensor([1, 2], dtype=fg.float64).dtype == "float64"


def test_the_tensor_constructor_makes_floats_unless_told_otherwise():
    assert fg.Tensor([1, 2]).dtype == "float32"
    assert fg.Tensor(np.array([1, 2])).dtype == "float32"
    assert fg.Tensor(np.array([True])).dtype == "float32"
    assert fg.Tensor([1, 2], dtype="int64").dtype == "int64"
    ints = fg.tensor([1, 2])
    copy = fg.Tensor(ints)
    assert copy.dtype == "int64" and copy.tolist() == [1, 2]


def test_creation_functions_take_every_dtype():
    for dtype in DTYPES:
        assert fg.zeros(2, 3, dtype=dtype).dtype == dtype
        assert fg.ones((2,), dtype=dtype).numpy().tolist() == np.ones(2, dtype=dtype).tolist()
        assert fg.eye(2, dtype=dtype).numpy().tolist() == np.eye(2, dtype=dtype).tolist()
    assert fg.full((2,), 3).dtype == "int64"
    assert fg.full((2,), True).dtype == "bool"
    assert fg.full((2,), 2.5).dtype == "float32"
    assert fg.full((1,), 2**62 + 1).item() == 2**62 + 1


def test_random_floats_refuse_integer_dtypes():
    with pytest.raises(TypeError, match="int64"):
        fg.randn(3, dtype="int64")


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
def test_only_float_tensors_can_require_grad(dtype):
    with pytest.raises(RuntimeError, match=dtype):
        fg.tensor([1], dtype=dtype, requires_grad=True)
    with pytest.raises(RuntimeError, match=dtype):
        fg.zeros(2, dtype=dtype, requires_grad=True)
    t = fg.zeros(2, dtype=dtype)
    with pytest.raises(RuntimeError, match=dtype):
        t.requires_grad = True
    assert t.requires_grad is False and t.tolist() == np.zeros(2, dtype).tolist()


@pytest.mark.parametrize("dtype", DTYPES)
def test_numpy_round_trips_keep_the_dtype(dtype):
    src = sample(dtype).reshape(3, 1)
    t = fg.from_numpy(src)
    assert t.dtype == dtype
    out = t.numpy()
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, src)
    np.testing.assert_array_equal(np.asarray(t), src)


def test_a_zero_d_array_stays_zero_d_when_its_dtype_converts():
    assert fg.Tensor(np.array(1.5), dtype="float32").shape == ()
    assert fg.Tensor(np.float64(2.0)).shape == ()
    assert fg.tensor(np.array(3), dtype="float32").shape == ()
    t = fg.Tensor(np.array(1.5), dtype="float32")
    assert (t * 2).shape == ()


def test_repr_names_every_dtype_but_float32():
    assert repr(fg.tensor([1, 2])) == "Tensor([1, 2], dtype=int64)"
    assert repr(fg.tensor([True])) == "Tensor([ True], dtype=bool)"
    assert "dtype" not in repr(fg.Tensor([1.0]))


def test_item_gives_the_python_type_of_the_dtype():
    assert fg.tensor(3).item() == 3 and isinstance(fg.tensor(3).item(), int)
    assert fg.tensor(True).item() is True
    assert isinstance(fg.tensor(2.5).item(), float)
    assert [10, 20, 30][fg.tensor(1)] == 20  # __index__


# ------------------------------------------------------------------------------- promotion


BINARY = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
    "//": lambda a, b: a // b,
    "%": lambda a, b: a % b,
}


@pytest.mark.parametrize("a, b", list(itertools.product(DTYPES, DTYPES)))
@pytest.mark.parametrize("op", list(BINARY))
def test_every_dtype_pair_promotes_as_documented_and_matches_numpy(a, b, op):
    x, y = sample(a), sample(b)
    if op in ("/", "//", "%") and b == "bool":
        y = np.ones(3, dtype=bool)  # no division by a False (zero)
    want = promoted(a, b)
    if op == "/":
        want = want if CATEGORY[want] == 2 else "float32"
    if want == "bool" and op in ("-", "//", "%"):
        with pytest.raises(TypeError, match="bool"):
            BINARY[op](fg.tensor(x), fg.tensor(y))
        return
    out = BINARY[op](fg.tensor(x), fg.tensor(y))
    assert out.dtype == want, f"{a} {op} {b}"
    if want == "bool":
        ref = {"+": np.logical_or, "*": np.logical_and}[op](x, y)
    else:
        ref = BINARY[op](x.astype(want), y.astype(want))
    np.testing.assert_allclose(out.numpy().astype(np.float64), ref.astype(np.float64), rtol=1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("scalar", [True, 3, 0.5], ids=["bool", "int", "float"])
@pytest.mark.parametrize("op", ["+", "*"])
def test_python_scalars_lift_the_category_but_never_widen(dtype, scalar, op):
    t = fg.tensor(sample(dtype))
    for out in (BINARY[op](t, scalar), BINARY[op](scalar, t)):
        assert out.dtype == with_scalar(dtype, scalar), f"{dtype} {op} {scalar!r}"


def test_integer_arithmetic_is_exact_and_wraps_like_int64():
    big = fg.tensor([2**62 + 1])
    assert (big + 1).item() == 2**62 + 2
    assert (fg.tensor([2**63 - 1]) + 1).item() == -(2**63)
    assert (fg.tensor([3], dtype="int32") * 2).dtype == "int32"


def test_floor_division_and_remainder_follow_python():
    a = np.array([7, -7, 7, -7])
    b = np.array([2, 2, -2, -2])
    np.testing.assert_array_equal((fg.tensor(a) // fg.tensor(b)).numpy(), a // b)
    np.testing.assert_array_equal((fg.tensor(a) % fg.tensor(b)).numpy(), a % b)
    f = np.array([7.0, -7.0, 7.0, 0.5])
    g = np.array([0.1, 2.0, -2.0, 0.1])
    np.testing.assert_array_equal(
        (fg.tensor(f, dtype="float64") // fg.tensor(g, dtype="float64")).numpy(), f // g
    )
    np.testing.assert_allclose(
        (fg.tensor(f, dtype="float64") % fg.tensor(g, dtype="float64")).numpy(), f % g
    )
    assert (7 // fg.tensor([2])).tolist() == [3]
    assert (-7 % fg.tensor([3])).tolist() == [2]


def test_integer_division_by_zero_is_an_error_but_float_division_is_ieee():
    with pytest.raises(ValueError, match="division by zero"):
        fg.tensor([1, 2]) // fg.tensor([1, 0])
    with pytest.raises(ValueError, match="division by zero"):
        fg.tensor([1, 2]) % 0
    assert np.isinf((fg.tensor([1.0]) // 0.0).item())
    assert (fg.tensor([1, 2]) / 0).numpy().tolist() == [np.inf, np.inf]


def test_integer_powers_stay_integers_and_refuse_negative_exponents():
    assert (fg.tensor([2, 3]) ** 2).tolist() == [4, 9]
    assert (fg.tensor([2, 3]) ** 0.5).dtype == "float32"
    with pytest.raises(ValueError, match="negative"):
        fg.tensor([2]) ** -1


# ------------------------------------------------------------------------------- comparisons


@pytest.mark.parametrize("a, b", list(itertools.product(DTYPES, DTYPES)))
def test_comparisons_give_bool_for_every_dtype_pair(a, b):
    x, y = sample(a), sample(b)
    tx, ty = fg.tensor(x), fg.tensor(y)
    for ours, ref in [
        (tx == ty, x == y),
        (tx != ty, x != y),
        (tx < ty, x < y),
        (tx <= ty, x <= y),
        (tx > ty, x > y),
        (tx >= ty, x >= y),
    ]:
        assert ours.dtype == "bool"
        np.testing.assert_array_equal(ours.numpy(), ref)


def test_comparisons_with_scalars_and_reflected_forms():
    t = fg.tensor([1, 2, 3])
    assert (t > 1.5).tolist() == [False, True, True]
    assert (1.5 < t).tolist() == [False, True, True]
    assert (2 == t).tolist() == [False, True, False]
    assert t.eq(2).tolist() == [False, True, False]
    assert t.ge(fg.tensor([3, 2, 1])).tolist() == [False, True, True]


def test_comparisons_are_never_differentiable():
    x = fg.Tensor([1.0, 2.0], requires_grad=True)
    mask = x > 1.0
    assert mask.requires_grad is False and mask._op is None


def test_tensors_stay_hashable_by_identity():
    a, b = fg.tensor([1]), fg.tensor([1])
    assert len({a, b, a}) == 2


# ------------------------------------------------------------------------------- bitwise


def test_bitwise_ops_work_on_bools_and_integers():
    p, q = fg.tensor([True, True, False]), fg.tensor([True, False, False])
    assert (p & q).tolist() == [True, False, False]
    assert (p | q).tolist() == [True, True, False]
    assert (p ^ q).tolist() == [False, True, False]
    assert (~p).tolist() == [False, False, True]
    assert (p & True).tolist() == [True, True, False]
    i = fg.tensor([6, 5])
    assert (i & 3).tolist() == [2, 1] and (i | 1).tolist() == [7, 5]
    assert (i ^ fg.tensor([1, 1])).tolist() == [7, 4] and (~i).tolist() == [-7, -6]


@pytest.mark.parametrize("expr", ["f & f", "f | b", "~f", "b & 1.5"])
def test_bitwise_ops_on_floats_raise_type_error(expr):
    f, b = fg.Tensor([1.0]), fg.tensor([True])
    with pytest.raises(TypeError):
        eval(expr)
    assert f.tolist() == [1.0] and b.tolist() == [True]


# ------------------------------------------------------------------------------- float-only


FLOAT_ONLY = ["exp", "log", "sqrt", "sigmoid", "tanh", "softmax", "log_softmax", "mean"]


@pytest.mark.parametrize("dtype", ["int64", "int32", "bool"])
@pytest.mark.parametrize("method", FLOAT_ONLY)
def test_float_only_math_names_the_dtype(dtype, method):
    t = fg.tensor(sample(dtype))
    with pytest.raises(TypeError, match=dtype):
        getattr(t, method)()
    assert t.numpy().tolist() == sample(dtype).tolist()


@pytest.mark.parametrize("dtype", ["int64", "bool"])
def test_matmul_of_integers_is_a_type_error(dtype):
    t = fg.tensor(np.ones((2, 2), dtype=dtype))
    with pytest.raises(TypeError, match=dtype):
        t @ t


def test_integer_friendly_ops_work_on_integers():
    t = fg.tensor([[3, -1], [2, 5]])
    assert t.sum().dtype == "int64" and t.sum().item() == 9
    assert t.sum(axis=0).tolist() == [5, 4]
    assert t.max().item() == 5 and t.min(axis=1).tolist() == [-1, 2]
    assert abs(t).tolist() == [[3, 1], [2, 5]] and (-t).tolist() == [[-3, 1], [-2, -5]]
    assert t.relu().tolist() == [[3, 0], [2, 5]]
    assert t.reshape(4).tolist() == [3, -1, 2, 5] and t.T.tolist() == [[3, 2], [-1, 5]]
    assert fg.cat([t, t]).dtype == "int64" and fg.stack([t, t]).shape == (2, 2, 2)
    assert fg.tensor([True, True, False]).sum().dtype == "int64"
    assert fg.tensor([True, False]).sum().item() == 1
    assert fg.cat([fg.tensor([1]), fg.Tensor([0.5])]).dtype == "float32"


def test_argmax_and_argmin_give_int64():
    x = fg.Tensor([[1.0, 5.0, 2.0], [7.0, 0.0, 3.0]])
    assert x.argmax().dtype == "int64" and x.argmax().item() == 3
    assert x.argmax(axis=1).tolist() == [1, 0]
    assert x.argmin(axis=0).tolist() == [0, 1, 0]
    assert fg.tensor([3, 9, 1]).argmax().item() == 1


# ------------------------------------------------------------------------------- casts


@pytest.mark.parametrize("src, dst", list(itertools.product(DTYPES, DTYPES)))
def test_casts_match_numpy(src, dst):
    x = np.array([1.7, -2.5, 0.0], dtype=src) if CATEGORY[src] == 2 else sample(src)
    out = fg.tensor(x).to(dst)
    assert out.dtype == dst
    np.testing.assert_array_equal(out.numpy(), x.astype(dst))


def test_cast_methods_name_their_dtypes():
    t = fg.Tensor([1.9, -1.9])
    assert t.long().tolist() == [1, -1] and t.long().dtype == "int64"
    assert t.int().dtype == "int32" and t.double().dtype == "float64"
    assert t.bool().tolist() == [True, True] and t.long().float().dtype == "float32"
    assert t.astype(fg.int64).dtype == "int64" and t.to(np.int32).dtype == "int32"


def test_float_casts_are_differentiable_and_integer_casts_are_not():
    x = fg.Tensor([1.5, 2.5], requires_grad=True)
    (x.double() * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 2.0])
    assert x.grad.dtype == "float32"
    assert x.long().requires_grad is False


# ------------------------------------------------------------------------------- indexing


def test_int64_tensor_indices_gather_and_differentiate():
    x = fg.Tensor([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], requires_grad=True)
    idx = fg.tensor([2, 0, 2])
    picked = x[idx]
    np.testing.assert_array_equal(picked.numpy(), [[5, 6], [1, 2], [5, 6]])
    picked.sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [[1, 1], [0, 0], [2, 2]])
    assert x[fg.tensor([1], dtype="int32"), 1].tolist() == [4.0]


def test_bool_masks_select_like_numpy():
    a = np.arange(12.0).reshape(3, 4)
    t = fg.Tensor(a)
    mask = a > 4
    np.testing.assert_array_equal(t[fg.tensor(mask)].numpy(), a[mask])
    np.testing.assert_array_equal(t[t > 4].numpy(), a[mask])
    rows = np.array([True, False, True])
    np.testing.assert_array_equal(t[fg.tensor(rows)].numpy(), a[rows])
    np.testing.assert_array_equal(t[rows, 1:3].numpy(), a[rows, 1:3])
    np.testing.assert_array_equal(
        t[:, np.array([False, True, True, False])].numpy(), a[:, [False, True, True, False]]
    )


def test_a_bool_mask_is_differentiable_through_the_selected_elements():
    x = fg.Tensor([1.0, -2.0, 3.0], requires_grad=True)
    (x[x > 0] * 2).sum().backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 0.0, 2.0])


def test_bad_indices_raise_and_leave_the_tensor_usable():
    t = fg.Tensor(np.arange(6.0).reshape(2, 3))
    with pytest.raises(IndexError, match="boolean index did not match"):
        t[fg.tensor([True, False, True])]
    with pytest.raises(IndexError):
        t[fg.tensor([5])]
    with pytest.raises(TypeError, match="float32"):
        t[fg.Tensor([0.0])]
    with pytest.raises(TypeError):
        t[1.0]
    with pytest.raises(TypeError):
        t["a"]
    assert t.sum().item() == 15.0


def test_cat_refuses_non_tensors_with_a_type_error():
    a = fg.Tensor([1.0])
    with pytest.raises(TypeError, match="element 1"):
        fg.cat([a, 3.0])
    with pytest.raises(TypeError):
        fg.stack([a, [1.0]])
    assert fg.cat([a, a]).tolist() == [1.0, 1.0]


# ------------------------------------------------------------------------------- autodiff


def test_gradients_flow_through_mixed_float_and_integer_ops():
    w = fg.Tensor([0.5, -1.0, 2.0], dtype="float64", requires_grad=True)
    counts = fg.tensor([1, 2, 3])
    assert fg.gradcheck(lambda w: (w * counts + counts / 2).sum(), (w,))
    assert fg.gradcheck(lambda w: (w**counts).sum(), (w,))


def test_remainder_has_pytorchs_gradient():
    # Away from the jumps (whole quotients), where finite differences hold.
    a = fg.Tensor([5.3, -2.2, 7.9], dtype="float64", requires_grad=True)
    b = fg.Tensor([2.3, 1.7, -3.1], dtype="float64", requires_grad=True)
    assert fg.gradcheck(lambda a, b: a % b, (a, b))
    assert fg.gradcheck(lambda a: 10.0 % a, (b,))
    assert fg.gradcheck(lambda a: a % 1.5, (a,))


def test_floor_division_has_zero_gradient():
    a = fg.Tensor([5.3, -2.2], requires_grad=True)
    (a // 2.0).sum().backward()
    np.testing.assert_array_equal(a.grad.numpy(), [0.0, 0.0])


# ------------------------------------------------------------------------------- files


def test_every_dtype_round_trips_through_safetensors(tmp_path):
    tensors = {d: fg.tensor(sample(d)) for d in DTYPES}
    fg.save(tensors, tmp_path / "all.safetensors")
    back = fg.load(tmp_path / "all.safetensors")
    for d, t in tensors.items():
        assert back[d].dtype == d
        np.testing.assert_array_equal(back[d].numpy(), t.numpy())


def test_integer_tensors_round_trip_inside_nested_state_dicts(tmp_path):
    state = {
        "step": 3,
        "ids": fg.tensor([1, 2]),
        "mask": fg.tensor([True, False]),
        "inner": {"w": fg.Tensor([0.5])},
    }
    fg.save(state, tmp_path / "nested.safetensors")
    back = fg.load(tmp_path / "nested.safetensors")
    assert back["step"] == 3
    assert back["ids"].dtype == "int64" and back["ids"].tolist() == [1, 2]
    assert back["mask"].dtype == "bool" and back["mask"].tolist() == [True, False]


@pytest.mark.parametrize("dtype", DTYPES)
def test_dlpack_exports_keep_the_dtype(dtype):
    t = fg.tensor(sample(dtype))
    out = np.from_dlpack(t)
    assert out.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(out, sample(dtype))
    back = fg.from_dlpack(out)
    assert back.dtype == dtype


# ---------------------------------------------------------------- all / any


@pytest.mark.parametrize("dtype", ["float32", "float64", "int64", "int32", "bool"])
@pytest.mark.parametrize("axis", [None, 0, 1, -1, (0, 1)])
@pytest.mark.parametrize("keepdims", [False, True])
def test_all_and_any_match_numpy_on_every_dtype(dtype: str, axis, keepdims: bool) -> None:
    a = np.array([[0, 1, 2], [3, 4, 5], [0, 0, 0], [1, 1, 1]]).astype(dtype)
    t = fg.tensor(a)
    for name in ("all", "any"):
        got = getattr(t, name)(axis=axis, keepdims=keepdims)
        want = getattr(np, name)(a, axis=axis, keepdims=keepdims)
        assert got.dtype == "bool"
        np.testing.assert_array_equal(got.numpy(), want)


def test_all_of_nothing_is_true_and_any_of_nothing_is_false() -> None:
    empty = fg.zeros((0, 3))
    assert empty.all().item() is True
    assert empty.any().item() is False
    np.testing.assert_array_equal(empty.all(axis=0).numpy(), [True, True, True])


def test_nan_counts_as_true_in_all_and_any_as_in_numpy() -> None:
    t = fg.tensor([float("nan"), 1.0])
    assert t.all().item() is True


def test_all_and_any_work_on_ndarray_and_reject_a_bad_axis() -> None:
    a = fg.NdArray([[True, False], [True, True]])
    np.testing.assert_array_equal(a.all(axis=1).numpy(), [False, True])
    np.testing.assert_array_equal(a.any(axis=0).numpy(), [True, True])
    with pytest.raises(IndexError, match="all"):
        a.all(axis=2)


def test_comparing_predictions_reads_as_in_pytorch() -> None:
    logits = fg.tensor([[0.1, 2.0], [3.0, 0.5]])
    labels = fg.tensor([1, 0])
    assert (logits.argmax(1) == labels).all().item() is True
    assert not (logits.argmax(1) != labels).any().item()
