"""The scalar autodiff ``Value`` from Python: forward vs ``math``, gradients vs finite
differences, operators with numbers on either side, graph introspection, type errors,
the thread guard and a million-op chain."""

import math
import threading

import numpy as np
import pytest

from ferrograd import Value

H = 1e-6


def finite_difference(f, xs, i):
    """Central difference of ``f`` (a function of floats via Values) in argument ``i``."""

    def at(delta):
        args = [Value(x + delta if j == i else x) for j, x in enumerate(xs)]
        return f(*args).data

    return (at(H) - at(-H)) / (2 * H)


def assert_gradients_match_finite_differences(f, xs):
    leaves = [Value(x) for x in xs]
    f(*leaves).backward()
    for i, leaf in enumerate(leaves):
        numeric = finite_difference(f, xs, i)
        assert leaf.grad == pytest.approx(numeric, rel=1e-6, abs=1e-6), (i, xs)


UNARY = [
    ("neg", lambda v: -v, lambda x: -x, 0.7),
    ("relu of a positive", lambda v: v.relu(), lambda x: max(x, 0.0), 0.7),
    ("relu of a negative", lambda v: v.relu(), lambda x: max(x, 0.0), -0.7),
    ("tanh", lambda v: v.tanh(), math.tanh, 0.7),
    ("exp", lambda v: v.exp(), math.exp, 0.7),
    ("log", lambda v: v.log(), math.log, 0.7),
    ("sigmoid", lambda v: v.sigmoid(), lambda x: 1 / (1 + math.exp(-x)), -0.7),
    ("square", lambda v: v**2, lambda x: x**2, -0.7),
    ("fractional power", lambda v: v**1.5, lambda x: x**1.5, 0.7),
    ("negative power", lambda v: v**-2, lambda x: x**-2, -0.7),
]

BINARY = [
    ("add", lambda a, b: a + b, lambda x, y: x + y),
    ("sub", lambda a, b: a - b, lambda x, y: x - y),
    ("mul", lambda a, b: a * b, lambda x, y: x * y),
    ("div", lambda a, b: a / b, lambda x, y: x / y),
    ("pow", lambda a, b: a**b, lambda x, y: x**y),
]


@pytest.mark.parametrize("name, op, ref, x", UNARY, ids=[u[0] for u in UNARY])
def test_every_unary_op_matches_python_math_forward(name, op, ref, x):
    assert op(Value(x)).data == pytest.approx(ref(x), rel=1e-15, abs=1e-15)


@pytest.mark.parametrize("name, op, ref, x", UNARY, ids=[u[0] for u in UNARY])
def test_every_unary_op_gradient_matches_finite_differences(name, op, ref, x):
    assert_gradients_match_finite_differences(op, [x])


@pytest.mark.parametrize("name, op, ref", BINARY, ids=[b[0] for b in BINARY])
def test_every_binary_op_matches_python_math_forward(name, op, ref):
    assert op(Value(1.3), Value(0.6)).data == pytest.approx(ref(1.3, 0.6), rel=1e-15)


@pytest.mark.parametrize("name, op, ref", BINARY, ids=[b[0] for b in BINARY])
def test_every_binary_op_gradient_matches_finite_differences(name, op, ref):
    assert_gradients_match_finite_differences(op, [1.3, 0.6])


def test_exact_small_cases_give_exact_results():
    assert (Value(2.0) + Value(3.0)).data == 5.0
    assert (Value(2.0) * 3).data == 6.0
    assert (Value(3.0) / 2).data == 1.5
    assert (Value(2.0) ** 3).data == 8.0
    assert Value(0.0).sigmoid().data == 0.5
    assert Value(1.0).log().data == 0.0


@pytest.mark.parametrize(
    "expr, value, grad",
    [
        (lambda v: 2.0 - v, -1.0, -1.0),
        (lambda v: 2**v, 8.0, 8.0 * math.log(2)),
        (lambda v: 1 / v, 1 / 3, -1 / 9),
        (lambda v: 3 * v, 9.0, 3.0),
        (lambda v: 1 + v, 4.0, 1.0),
        (lambda v: np.float64(2.0) * v, 6.0, 2.0),
        (lambda v: np.float32(2.0) - v, -1.0, -1.0),
        (lambda v: np.int64(2) / v, 2 / 3, -2 / 9),
    ],
    ids=["rsub", "rpow", "rtruediv", "rmul", "radd", "numpy float64", "numpy float32", "numpy int"],
)
def test_numbers_on_the_left_use_the_reflected_operators(expr, value, grad):
    v = Value(3.0)
    out = expr(v)
    assert isinstance(out, Value)
    assert out.data == pytest.approx(value, rel=1e-15)
    out.backward()
    assert v.grad == pytest.approx(grad, rel=1e-12)


def test_pow_with_value_exponent_differentiates_both_sides():
    x, y = Value(2.0), Value(3.0)
    out = x**y
    assert out._op == "**"
    out.backward()
    assert x.grad == pytest.approx(3.0 * 2.0**2)
    assert y.grad == pytest.approx(math.log(2.0) * 8.0)
    assert_gradients_match_finite_differences(lambda a, b: a**b, [0.8, -1.7])


def test_ieee_edge_cases_give_inf_and_nan_not_exceptions():
    assert math.isnan(Value(-1.0).log().data)
    assert Value(0.0).log().data == -math.inf
    assert (1 / Value(0.0)).data == math.inf
    assert math.isnan((Value(-8.0) ** (1 / 3)).data)
    x, y = Value(-2.0), Value(2.0)
    (x**y).backward()
    assert x.grad == -4.0
    assert math.isnan(y.grad)


def test_a_value_used_twice_accumulates_both_gradients():
    a = Value(3.0)
    (a + a).backward()
    assert a.grad == 2.0
    b = Value(3.0)
    (b * b).backward()
    assert b.grad == 6.0


def test_calling_backward_twice_adds_to_the_leaves_only():
    x = Value(2.0)
    y = x * x
    z = y + x
    z.backward()
    assert (x.grad, y.grad, z.grad) == (5.0, 1.0, 1.0)
    z.backward()
    assert (x.grad, y.grad, z.grad) == (10.0, 1.0, 1.0)


def test_micrograds_readme_example_gives_its_published_numbers():
    a = Value(-4.0)
    b = Value(2.0)
    c = a + b
    d = a * b + b**3
    c += c + 1
    c += 1 + c + (-a)
    d += d * 2 + (b + a).relu()
    d += 3 * d + (b - a).relu()
    e = c - d
    f = e**2
    g = f / 2.0
    g += 10.0 / f
    assert f"{g.data:.4f}" == "24.7041"
    g.backward()
    assert f"{a.grad:.4f}" == "138.8338"
    assert f"{b.grad:.4f}" == "645.5773"


def test_prev_is_a_tuple_of_the_inputs_and_op_a_short_name():
    a, b = Value(1.0), Value(2.0)
    c = a * b
    assert c._op == "*"
    assert isinstance(c._prev, tuple)
    assert c._prev == (a, b)
    assert a._op is None and a._prev == ()
    k = c + 1.0
    assert k._op == "+" and k._prev[0] == c and k._prev[1].data == 1.0
    names = {
        "-": a - b,
        "/": a / b,
        "**": a**b,
        "neg": -a,
        "relu": a.relu(),
        "tanh": a.tanh(),
        "exp": a.exp(),
        "log": a.log(),
        "sigmoid": a.sigmoid(),
    }
    for name, v in names.items():
        assert v._op == name


def test_wrappers_of_one_node_compare_equal_and_hash_alike():
    a = Value(1.0)
    c = a + a
    first, second = c._prev
    assert first == a and second == a and first._id == a._id
    assert len({a, first, second}) == 1
    assert Value(1.0) != Value(1.0)
    assert (a == 1.0) is False


def test_data_and_grad_are_settable():
    v = Value(1.0)
    v.data = 3
    v.grad = np.float32(0.5)
    assert (v.data, v.grad) == (3.0, 0.5)
    with pytest.raises(TypeError):
        v.data = "x"
    with pytest.raises(TypeError):
        v.grad = None


def test_repr_looks_like_micrograd():
    assert repr(Value(2.0)) == "Value(data=2.0, grad=0.0)"
    assert repr(Value(1e-5)) == "Value(data=1e-05, grad=0.0)"


def test_the_constructor_accepts_ints_floats_and_numpy_scalars():
    assert Value(2).data == 2.0
    assert Value(np.float32(1.5)).data == 1.5
    assert Value(np.int64(-3)).data == -3.0


@pytest.mark.parametrize(
    "bad",
    ["x", None, [1.0], 1j, np.array([1.0, 2.0])],
    ids=["str", "None", "list", "complex", "ndarray"],
)
def test_the_constructor_rejects_non_numbers_with_type_error(bad):
    with pytest.raises(TypeError):
        Value(bad)


@pytest.mark.parametrize(
    "expr",
    [
        lambda v: v + "x",
        lambda v: "x" + v,
        lambda v: v * None,
        lambda v: v ** "x",
        lambda v: "x" ** v,
        lambda v: v / [1.0],
        lambda v: pow(v, 2, 3),
    ],
    ids=["add", "radd", "mul", "pow", "rpow", "truediv", "pow with modulo"],
)
def test_unsupported_operands_raise_type_error(expr):
    with pytest.raises(TypeError):
        expr(Value(2.0))


def test_numpy_arrays_defer_to_value_and_then_raise_type_error():
    with pytest.raises(TypeError):
        np.array([1.0, 2.0]) + Value(1.0)
    with pytest.raises(TypeError):
        Value(1.0) * np.array([1.0, 2.0])


def run_in_thread(fn):
    """Runs ``fn`` on a fresh thread; returns the exception it raised, or None."""
    caught = []

    def target():
        try:
            fn()
        except BaseException as e:  # noqa: BLE001 - a panic would be a BaseException
            caught.append(e)

    t = threading.Thread(target=target)
    t.start()
    t.join()
    return caught[0] if caught else None


@pytest.mark.parametrize(
    "touch",
    [
        lambda v: v.data,
        lambda v: v.grad,
        lambda v: v + 1.0,
        lambda v: 1.0 + v,
        lambda v: Value(1.0) * v,
        lambda v: v.backward(),
        lambda v: v._prev,
        lambda v: repr(v),
        lambda v: v.tanh(),
        lambda v: setattr(v, "data", 1.0),
    ],
    ids=[
        "data",
        "grad",
        "add",
        "radd",
        "other operand",
        "backward",
        "prev",
        "repr",
        "tanh",
        "set data",
    ],
)
def test_a_value_touched_from_another_thread_raises_runtime_error(touch):
    v = Value(2.0) * 3.0
    err = run_in_thread(lambda: touch(v))
    assert isinstance(err, RuntimeError), repr(err)
    assert "another thread" in str(err)
    # The owner thread still uses it normally.
    v.backward()
    assert v.data == 6.0 and v.grad == 1.0


def test_a_value_dropped_on_another_thread_does_not_disturb_its_graph():
    x = Value(2.0)
    holder = [x * 3.0]
    assert run_in_thread(holder.pop) is None
    y = x * 4.0
    y.backward()
    assert x.grad == 4.0


def test_a_value_made_on_a_worker_thread_works_there():
    result = []
    assert run_in_thread(lambda: result.append(((Value(2.0) * 3.0) + 1.0).data)) is None
    assert result == [7.0]


def test_a_million_op_chain_builds_backpropagates_and_drops_without_recursion():
    x = Value(1.0)
    v = x
    for _ in range(10**6):
        v = v * 1.0000001
    v.backward()
    expected = 1.0000001**10**6
    assert v.data == pytest.approx(expected, rel=1e-9)
    assert x.grad == pytest.approx(expected, rel=1e-9)
    del v
    assert x.data == 1.0
