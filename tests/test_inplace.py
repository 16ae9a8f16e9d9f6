"""In-place writes and version counters (docs/design.md, "In-place writes and versions").

Every in-place op (``+= -= *= /=``, ``t[key] = v``, ``zero_ fill_ copy_ clamp_``) is done
by the core, bumps the storage's ``_version`` through every alias, and a backward rule that
reads an array written since its forward raises instead of giving a wrong gradient.
"""

import threading

import numpy as np
import pytest

import ferrograd as fg


def versions(*ts):
    return tuple(t._version for t in ts)


# ---------------------------------------------------------------------------------------
# the silent-gradient example and its no-false-alarm twin


def test_the_issue_example_raises_naming_mul_and_both_versions():
    x = fg.Tensor([1.0, 1.0, 1.0])
    w = fg.Tensor([2.0, 2.0, 2.0], requires_grad=True)
    y = (x * w).sum()
    with fg.no_grad():
        x += 99.0
    with pytest.raises(RuntimeError) as info:
        y.backward()
    msg = str(info.value)
    assert "modified by an in-place operation" in msg
    assert "version 1, expected 0" in msg
    assert "the op was mul" in msg
    assert "input 0 of mul" in msg
    assert w.grad is None


def test_the_same_write_after_an_add_still_gives_the_right_gradient():
    x = fg.Tensor([1.0, 1.0, 1.0])
    w = fg.Tensor([2.0, 2.0, 2.0], requires_grad=True)
    y = (x + w).sum()
    with fg.no_grad():
        x += 99.0
    y.backward()
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 1.0, 1.0])


def test_mul_where_only_w_requires_grad_does_not_need_w_itself():
    # w's gradient reads x, not w: writing w after the forward is harmless (PyTorch too).
    x = fg.Tensor([1.0, 2.0, 3.0])
    w = fg.Tensor([2.0, 2.0, 2.0], requires_grad=True)
    y = (x * w).sum()
    with fg.no_grad():
        w += 5.0
    y.backward()
    np.testing.assert_array_equal(w.grad.numpy(), [1.0, 2.0, 3.0])


def test_a_scalar_multiple_reads_nothing_so_any_write_is_harmless():
    w = fg.Tensor([1.0, 2.0], requires_grad=True)
    y = (w * 3).sum()
    with fg.no_grad():
        w.fill_(7.0)
    y.backward()
    np.testing.assert_array_equal(w.grad.numpy(), [3.0, 3.0])


def test_writing_the_output_of_exp_after_the_forward_raises():
    x = fg.Tensor([0.0, 1.0], requires_grad=True)
    y = x.exp()
    loss = y.sum()
    with fg.no_grad():
        y *= 2.0
    with pytest.raises(RuntimeError, match=r"the output of exp .*version 1, expected 0"):
        loss.backward()


def test_a_retained_graph_notices_a_write_between_two_backward_passes():
    x = fg.Tensor([1.0, 2.0], requires_grad=True)
    loss = (x * x).sum()
    loss.backward(retain_graph=True)
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])
    with fg.no_grad():
        x[0] = 10.0
    with pytest.raises(RuntimeError, match="of mul was modified by an in-place operation"):
        loss.backward()
    np.testing.assert_array_equal(x.grad.numpy(), [2.0, 4.0])


def test_a_write_through_data_or_detach_is_seen_by_the_graph():
    for alias in (lambda t: t.data, lambda t: t.detach()):
        x = fg.Tensor([1.0, 2.0], requires_grad=True)
        loss = x.log().sum()
        a = alias(x)
        a += 1.0  # neither alias requires grad: no no_grad needed
        with pytest.raises(RuntimeError, match="input 0 of log"):
            loss.backward()


# ---------------------------------------------------------------------------------------
# _version through every write path


def test_every_in_place_op_bumps_the_version_once():
    t = fg.Tensor([[1.0, -2.0], [3.0, -4.0]])
    assert t._version == 0
    steps = [
        lambda: t.__iadd__(1.0),
        lambda: t.__isub__(fg.Tensor([1.0, 1.0])),
        lambda: t.__imul__(np.array([2.0, 3.0])),
        lambda: t.__itruediv__([[2.0], [4.0]]),
        lambda: t.__setitem__((0, 1), 5.0),
        lambda: t.zero_(),
        lambda: t.fill_(2.5),
        lambda: t.copy_(fg.NdArray([1.0, 9.0])),
        lambda: t.clamp_(max=5.0),
    ]
    for i, step in enumerate(steps, 1):
        step()
        assert t._version == i
    np.testing.assert_array_equal(t.numpy(), [[1.0, 5.0], [1.0, 5.0]])


def test_aliases_share_one_counter():
    t = fg.Tensor([1.0, 2.0], requires_grad=True)
    d, e = t.data, t.detach()
    d += 1.0
    e[0] = 0.0
    assert versions(t, d, e) == (2, 2, 2)
    t.data = [5.0, 6.0]  # the setter writes the same storage
    assert versions(t, d, e) == (3, 3, 3)
    np.testing.assert_array_equal(e.numpy(), [5.0, 6.0])


def test_grad_accumulation_and_writes_to_grad_bump_the_grads_version():
    w = fg.Tensor([1.0, 2.0], requires_grad=True)
    (w * 2).sum().backward()
    g = w.grad
    assert g._version == 0
    (w * 2).sum().backward()  # accumulates into the same storage
    assert g._version == 1
    np.testing.assert_array_equal(g.numpy(), [4.0, 4.0])
    w.grad.zero_()
    assert g._version == 2
    np.testing.assert_array_equal(w.grad.numpy(), [0.0, 0.0])


def test_an_optimizer_step_bumps_the_parameters_version():
    w = fg.Tensor([1.0, 2.0], requires_grad=True)
    opt = fg.optim.SGD([w], lr=0.5, momentum=0.9)
    (w * w).sum().backward()
    before = w._version
    opt.step()
    assert w._version == before + 1
    np.testing.assert_allclose(w.numpy(), [0.0, 0.0])


def test_a_failed_write_leaves_values_and_version_alone():
    t = fg.Tensor([1.0, 2.0, 3.0])
    for bad in (
        lambda: t.__iadd__(np.ones((2, 3))),
        lambda: t.__setitem__(3, 0.0),
        lambda: t.__setitem__(slice(None), [1.0, 2.0]),
        lambda: t.copy_(np.ones(4)),
    ):
        with pytest.raises((ValueError, IndexError)):
            bad()
    assert t._version == 0
    np.testing.assert_array_equal(t.numpy(), [1.0, 2.0, 3.0])


# ---------------------------------------------------------------------------------------
# values against NumPy

OPS = {
    "+=": lambda a, b: a.__iadd__(b),
    "-=": lambda a, b: a.__isub__(b),
    "*=": lambda a, b: a.__imul__(b),
    "/=": lambda a, b: a.__itruediv__(b),
}

OPERANDS = {
    "scalar": lambda rng: 1.5,
    "int": lambda rng: 3,
    "numpy scalar": lambda rng: np.float64(-0.75),
    "same shape": lambda rng: rng.standard_normal((3, 4)),
    "row": lambda rng: rng.standard_normal(4),
    "column": lambda rng: rng.standard_normal((3, 1)),
    "0-d": lambda rng: np.array(2.0),
    "list": lambda rng: [1.0, -2.0, 0.5, 4.0],
}


@pytest.mark.parametrize("op", OPS)
@pytest.mark.parametrize("operand", OPERANDS)
@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("wrap", ["numpy", "Tensor", "NdArray"])
def test_in_place_arithmetic_matches_numpy(op, operand, dtype, wrap):
    rng = np.random.default_rng(0)
    base = rng.standard_normal((3, 4)).astype(dtype)
    rhs = OPERANDS[operand](rng)
    if wrap != "numpy" and isinstance(rhs, np.ndarray):
        rhs = getattr(fg, wrap)(rhs, dtype=dtype)
    expected = base.copy()
    OPS[op](expected, np.asarray(rhs, dtype=dtype) if not np.isscalar(rhs) else rhs)
    for cls in (fg.Tensor, fg.NdArray):
        t = cls(base, dtype=dtype)
        result = OPS[op](t, rhs)
        assert result is t
        assert t.dtype == dtype
        tol = 1e-6 if dtype == "float32" else 1e-12
        np.testing.assert_allclose(t.numpy(), expected, rtol=tol, atol=tol)


def test_the_tensor_keeps_its_dtype_whatever_the_operand():
    t = fg.Tensor([1.0, 2.0], dtype="float32")
    t += np.array([0.1, 0.2], dtype=np.float64)
    assert t.dtype == "float32"
    np.testing.assert_allclose(t.numpy(), np.float32([1.1, 2.2]))
    d = fg.Tensor([1.0, 2.0], dtype="float64")
    d += [0.1, 0.2]  # a list takes the tensor's dtype: no float32 rounding
    assert d.dtype == "float64"
    np.testing.assert_array_equal(d.numpy(), [1.0 + 0.1, 2.0 + 0.2])
    d[0] = 0.1
    assert d.numpy()[0] == 0.1


def test_adding_a_tensor_to_itself_doubles_it():
    t = fg.Tensor([1.0, 2.0, 3.0])
    t += t
    np.testing.assert_array_equal(t.numpy(), [2.0, 4.0, 6.0])
    t *= t.data
    np.testing.assert_array_equal(t.numpy(), [4.0, 16.0, 36.0])


def test_division_by_zero_in_place_follows_ieee():
    t = fg.Tensor([1.0, -1.0, 0.0])
    t /= 0.0
    got = t.numpy()
    assert got[0] == np.inf and got[1] == -np.inf and np.isnan(got[2])


def test_an_operand_that_would_change_the_shape_is_a_value_error():
    t = fg.Tensor(np.zeros(3))
    for bad in (np.ones((2, 3)), np.ones((1, 3)), np.ones(2)):
        with pytest.raises(ValueError, match="add_"):
            t += bad
    with pytest.raises(TypeError):
        t += "a string"
    t += 1.0  # still usable
    np.testing.assert_array_equal(t.numpy(), [1.0, 1.0, 1.0])


@pytest.mark.parametrize("cls", [fg.Tensor, fg.NdArray])
def test_zero_fill_copy_and_clamp_match_numpy_and_return_self(cls):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((4, 3))
    t = cls(a, dtype="float64")
    assert t.clamp_(-0.5, 0.5) is t
    np.testing.assert_array_equal(t.numpy(), np.clip(a, -0.5, 0.5))
    t = cls(a, dtype="float64")
    t.clamp_(min=0.0)
    np.testing.assert_array_equal(t.numpy(), np.maximum(a, 0.0))
    t = cls(a, dtype="float64")
    t.clamp_(max=0.25)
    np.testing.assert_array_equal(t.numpy(), np.minimum(a, 0.25))
    with pytest.raises(ValueError, match="min and max"):
        t.clamp_()
    assert t.fill_(np.float32(1.5)) is t
    np.testing.assert_array_equal(t.numpy(), np.full((4, 3), 1.5))
    row = rng.standard_normal(3)
    assert t.copy_(row) is t
    np.testing.assert_array_equal(t.numpy(), np.broadcast_to(row, (4, 3)))
    t.copy_(fg.Tensor(a, dtype="float32"))
    assert t.dtype == "float64"
    np.testing.assert_array_equal(t.numpy(), a.astype(np.float32).astype(np.float64))
    t.copy_(7.0)
    np.testing.assert_array_equal(t.numpy(), np.full((4, 3), 7.0))
    assert t.zero_() is t
    np.testing.assert_array_equal(t.numpy(), np.zeros((4, 3)))


KEYS = [
    2,
    -1,
    (1, 2),
    (-2, -3),
    slice(1, 3),
    slice(None, None, 2),
    slice(None, None, -1),
    slice(-1, 0, -2),
    (slice(None), 1),
    (Ellipsis, 0),
    (None, 1),
    (1, None, slice(None, None, 3)),
    [0, 2],
    [[1], [3]],
    np.array([3, 0, -1]),
    ([0, 2], [1, 3]),
    (slice(1, None), [0, -1]),
    (Ellipsis, [4, 4, 0]),
    (slice(5, 1), 0),  # an empty selection
]


@pytest.mark.parametrize("key", KEYS, ids=repr)
@pytest.mark.parametrize("value_kind", ["scalar", "full", "broadcast", "leading-one"])
def test_setitem_matches_numpy(key, value_kind):
    rng = np.random.default_rng(2)
    a = rng.standard_normal((4, 5))
    indexed = a[key].shape
    if value_kind == "scalar":
        value = -7.5
    elif value_kind == "full":
        value = rng.standard_normal(indexed)
    elif value_kind == "broadcast":
        value = rng.standard_normal(indexed[-1:] if indexed else ())
    else:
        value = rng.standard_normal((1,) + indexed)
    expected = a.copy()
    # NumPy refuses a (1,) value for one element; PyTorch (and ferrograd) drop the 1.
    expected[key] = value if indexed or value_kind != "leading-one" else value[0]
    for cls in (fg.Tensor, fg.NdArray):
        for wrap in (lambda v: v, lambda v: fg.Tensor(v, dtype="float64")):
            t = cls(a, dtype="float64")
            t[key] = wrap(value)
            np.testing.assert_array_equal(t.numpy(), expected, err_msg=f"{cls} {key!r}")
            assert t._version == 1


def test_setitem_with_repeated_indices_keeps_the_last_write_like_numpy():
    a = np.zeros(4)
    a[[1, 3, 1]] = [10.0, 30.0, 11.0]
    t = fg.Tensor(np.zeros(4), dtype="float64")
    t[[1, 3, 1]] = [10.0, 30.0, 11.0]
    np.testing.assert_array_equal(t.numpy(), a)


def test_setitem_casts_the_value_to_the_tensors_dtype():
    t = fg.Tensor(np.zeros(3), dtype="float32")
    t[1:] = np.array([0.1, 0.2])
    assert t.dtype == "float32"
    np.testing.assert_array_equal(t.numpy(), np.float32([0.0, 0.1, 0.2]))


@pytest.mark.parametrize(
    ("key", "value", "error"),
    [
        (5, 1.0, IndexError),
        (-6, 1.0, IndexError),
        ((0, 9), 1.0, IndexError),
        ([0, 7], 1.0, IndexError),
        ((0, 0, 0), 1.0, IndexError),
        (0, [1.0, 2.0], ValueError),
        (slice(None), np.ones((2, 5)), ValueError),
        (slice(None, None, 0), 1.0, ValueError),
        (1.5, 1.0, TypeError),
        ("a", 1.0, TypeError),
        (0, "nope", TypeError),
    ],
)
def test_bad_setitem_raises_and_the_tensor_stays_usable(key, value, error):
    a = np.arange(20.0).reshape(4, 5)
    t = fg.Tensor(a, dtype="float64")
    with pytest.raises(error):
        t[key] = value
    assert t._version == 0
    np.testing.assert_array_equal(t.numpy(), a)
    t[0, 0] = -1.0
    assert t.numpy()[0, 0] == -1.0 and (t + 1).shape == (4, 5)


# ---------------------------------------------------------------------------------------
# the graph's rules


@pytest.mark.parametrize(
    "write",
    [
        lambda t: t.__iadd__(1.0),
        lambda t: t.__isub__(1.0),
        lambda t: t.__imul__(2.0),
        lambda t: t.__itruediv__(2.0),
        lambda t: t.__setitem__(0, 1.0),
        lambda t: t.zero_(),
        lambda t: t.fill_(1.0),
        lambda t: t.copy_([1.0, 2.0]),
        lambda t: t.clamp_(0.0, 1.0),
    ],
)
def test_a_tensor_that_requires_grad_is_written_only_under_no_grad(write):
    w = fg.Tensor([3.0, 4.0], requires_grad=True)
    with pytest.raises(RuntimeError, match="no_grad"):
        write(w)
    assert w._version == 0
    np.testing.assert_array_equal(w.numpy(), [3.0, 4.0])
    with fg.no_grad():
        write(w)
    assert w._version == 1
    assert w.requires_grad
    (w * w).sum().backward()  # still a working leaf
    assert w.grad is not None


def test_an_op_output_that_requires_grad_is_refused_outside_no_grad_too():
    y = fg.Tensor([1.0], requires_grad=True) * 2
    with pytest.raises(RuntimeError, match="requires grad"):
        y += 1.0


def test_an_operand_that_requires_grad_may_not_flow_into_a_tensor_that_does_not():
    x = fg.Tensor([1.0, 2.0])
    w = fg.Tensor([1.0, 1.0], requires_grad=True)
    for write in (
        lambda: x.__iadd__(w),
        lambda: x.__setitem__(slice(None), w),
        lambda: x.copy_(w),
    ):
        with pytest.raises(RuntimeError, match="operand requires grad"):
            write()
    np.testing.assert_array_equal(x.numpy(), [1.0, 2.0])
    with fg.no_grad():
        x += w
    np.testing.assert_array_equal(x.numpy(), [2.0, 3.0])


def test_the_manual_sgd_update_works_under_no_grad():
    w = fg.Tensor([1.0, -1.0], requires_grad=True)
    for _ in range(3):
        w.grad = None
        (w * w).sum().backward()
        with fg.no_grad():
            w -= 0.25 * w.grad
    np.testing.assert_allclose(w.numpy(), [0.125, -0.125])
    assert w.requires_grad and w.is_leaf


# ---------------------------------------------------------------------------------------
# threads


def test_threads_adding_into_one_tensor_concurrently_add_up_exactly():
    n, threads, rounds = 100_000, 4, 25  # large enough that the core releases the GIL
    t = fg.Tensor(np.zeros(n), dtype="float64")
    one = fg.Tensor(np.ones(n), dtype="float64")
    errors = []

    def work(i):
        try:
            for _ in range(rounds):
                # A tensor operand on odd threads, a number on even ones.
                t.__iadd__(one if i % 2 else 1.0)
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(e)

    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not errors
    assert not any(w.is_alive() for w in workers)
    np.testing.assert_array_equal(t.numpy(), np.full(n, threads * rounds))


def test_a_plus_equals_b_and_b_plus_equals_a_on_two_threads_finish():
    n = 50_000
    a = fg.Tensor(np.ones(n), dtype="float32")
    b = fg.Tensor(np.ones(n), dtype="float32")

    def work(dst, src):
        for _ in range(50):
            dst += src
            dst *= 0.5

    workers = [
        threading.Thread(target=work, args=(a, b)),
        threading.Thread(target=work, args=(b, a)),
    ]
    for w in workers:
        w.start()
    for w in workers:
        w.join(timeout=120)
    assert not any(w.is_alive() for w in workers), "a += b and b += a deadlocked"
    # The values depend on how the threads interleaved; each stays one number throughout.
    for t in (a, b):
        got = t.numpy()
        assert np.isfinite(got).all() and (got == got[0]).all()
    assert a._version == b._version == 100
