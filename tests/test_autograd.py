"""Autodiff machinery of fg.Tensor: backward, grads, graph freeing, no_grad,
gradcheck, to_dot, threads and deep graphs."""

import threading

import numpy as np
import pytest
from conftest import assert_close

import ferrograd as fg


def leaf(x, dtype="float64"):
    return fg.Tensor(x, requires_grad=True, dtype=dtype)


# ---------------------------------------------------------------- requires_grad


def test_requires_grad_defaults_to_false():
    t = fg.Tensor([1.0, 2.0])
    assert t.requires_grad is False
    assert t.grad is None


def test_requires_grad_flag_is_kept_and_propagates_to_results():
    a = fg.Tensor([1.0, 2.0], requires_grad=True)
    b = fg.Tensor([3.0, 4.0])
    assert a.requires_grad is True
    assert (a * b).requires_grad is True
    assert (b * 2.0).requires_grad is False
    assert (b + b).requires_grad is False


def test_data_is_an_ndarray_with_the_values():
    t = fg.Tensor([[1.0, 2.0]], requires_grad=True)
    assert isinstance(t.data, fg.NdArray)
    assert t.data.shape == (1, 2)
    assert_close(t.data, [[1.0, 2.0]])


# ---------------------------------------------------------------- backward


@pytest.mark.parametrize("shape", [(), (1,), (1, 1), (1, 1, 1)], ids=["0d", "1", "1x1", "1x1x1"])
def test_backward_without_grad_works_on_any_one_element_tensor(shape):
    x = leaf(np.full(shape, 3.0))
    (x * x).backward()
    assert isinstance(x.grad, fg.NdArray)
    assert x.grad.shape == shape
    assert_close(x.grad, np.full(shape, 6.0))


def test_backward_without_grad_on_non_scalar_raises_runtime_error():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    with pytest.raises(RuntimeError):
        y.backward()
    assert x.grad is None


GRAD_FORMS = {
    "tensor": lambda g: fg.Tensor(g, dtype="float64"),
    "tensor-float32": lambda g: fg.Tensor(g),
    "ndarray": lambda g: fg.NdArray(g, dtype="float64"),
    "numpy": lambda g: np.array(g),
    "numpy-float32": lambda g: np.array(g, dtype=np.float32),
    "list": lambda g: list(g),
}


@pytest.mark.parametrize("form", GRAD_FORMS.keys())
def test_backward_accepts_grad_in_every_form(form):
    x = leaf([1.0, 2.0, 3.0])
    y = x * fg.Tensor([1.0, 2.0, 3.0], dtype="float64")
    y.backward(GRAD_FORMS[form]([1.0, 10.0, 100.0]))
    assert_close(x.grad, [1.0, 20.0, 300.0])


def test_backward_with_grad_of_matrix_output():
    x = leaf(np.ones((2, 2)))
    y = x * 3.0
    y.backward(np.array([[1.0, 2.0], [3.0, 4.0]]))
    assert_close(x.grad, [[3.0, 6.0], [9.0, 12.0]])


def test_backward_with_wrong_shape_grad_raises_value_error():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    with pytest.raises(ValueError):
        y.backward(np.ones(3))
    with pytest.raises(ValueError):
        y.backward([[1.0, 1.0]])
    y.backward(np.ones(2))
    assert_close(x.grad, [2.0, 2.0])


def test_leaf_grads_accumulate_across_backward_calls():
    x = leaf([1.0, -2.0])
    (x * x).sum().backward()
    assert_close(x.grad, [2.0, -4.0])
    (x * x).sum().backward()
    assert_close(x.grad, [4.0, -8.0])
    (x * 3.0).sum().backward()
    assert_close(x.grad, [7.0, -5.0])


def test_intermediate_grad_is_none_after_backward():
    x = leaf([1.0, 2.0])
    y = x * 2.0
    z = y.exp()
    z.sum().backward()
    assert y.grad is None
    assert z.grad is None
    assert x.grad is not None


def test_constant_inputs_get_no_grad():
    x = leaf([1.0, 2.0])
    c = fg.Tensor([3.0, 4.0], dtype="float64")
    (x * c).sum().backward()
    assert c.grad is None
    assert_close(x.grad, [3.0, 4.0])


def test_second_backward_without_retain_graph_raises_runtime_error():
    x = leaf([1.0, 2.0])
    y = (x * x).sum()
    y.backward()
    with pytest.raises(RuntimeError, match="retain_graph"):
        y.backward()
    assert_close(x.grad, [2.0, 4.0])


def test_retain_graph_allows_second_backward_and_accumulates():
    x = leaf([1.0, 2.0])
    y = (x * x).exp().sum()
    y.backward(retain_graph=True)
    first = np.asarray(x.grad).copy()
    y.backward()
    assert_close(x.grad, 2 * first)
    expected = 2 * x.numpy() * np.exp(x.numpy() ** 2)
    assert_close(first, expected)


def test_backward_on_tensor_not_requiring_grad_raises_runtime_error():
    t = fg.Tensor([1.0])
    with pytest.raises(RuntimeError):
        t.backward()
    with pytest.raises(RuntimeError):
        (t * 2.0).sum().backward()


@pytest.mark.parametrize(
    "leaf_dtype, other_dtype",
    [
        ("float32", "float64"),
        ("float64", "float32"),
        ("float32", "float32"),
    ],
)
def test_grad_has_the_leafs_dtype(leaf_dtype, other_dtype):
    x = leaf([1.0, 2.0], dtype=leaf_dtype)
    other = fg.Tensor([3.0, 4.0], dtype=other_dtype)
    y = (x * other).sum()
    assert y.dtype == ("float64" if "float64" in (leaf_dtype, other_dtype) else "float32")
    y.backward()
    assert x.grad.dtype == leaf_dtype
    assert_close(x.grad, [3.0, 4.0])


# ---------------------------------------------------------------- detach / no_grad


def test_detach_cuts_the_graph_and_keeps_values():
    x = leaf([1.0, 2.0])
    y = x * 3.0
    d = y.detach()
    assert d.requires_grad is False
    assert_close(d, [3.0, 6.0])
    (d * x).sum().backward()
    assert_close(x.grad, [3.0, 6.0])  # only the direct path through x


def test_no_grad_results_do_not_require_grad():
    x = leaf([1.0, 2.0])
    with fg.no_grad():
        y = x * 2.0 + 1.0
        z = y.exp().sum()
    assert y.requires_grad is False
    assert z.requires_grad is False
    assert_close(y, [3.0, 5.0])
    with pytest.raises(RuntimeError):
        z.backward()


def test_grad_tracking_resumes_after_no_grad_even_after_an_exception():
    x = leaf([1.0, 2.0])
    with pytest.raises(KeyError), fg.no_grad():
        raise KeyError("boom")
    y = x * 2.0
    assert y.requires_grad is True
    with fg.no_grad():
        pass
    assert (x + 1.0).requires_grad is True


def test_nested_no_grad_restores_tracking_at_the_outer_exit():
    x = leaf([1.0])
    with fg.no_grad():
        with fg.no_grad():
            pass
        assert (x * 2.0).requires_grad is False
    assert (x * 2.0).requires_grad is True


# ---------------------------------------------------------------- _op / _prev


def test_leaf_has_no_op_and_no_parents():
    x = leaf([1.0])
    assert not x._op
    assert len(x._prev) == 0


def test_op_and_prev_describe_the_node():
    a = leaf([1.0, 2.0])
    b = leaf([3.0, 4.0])
    c = a * b
    d = a + b
    assert isinstance(c._op, str) and c._op
    assert isinstance(d._op, str) and d._op
    assert c._op != d._op
    parents = sorted(np.asarray(p).tolist() for p in c._prev)
    assert parents == [[1.0, 2.0], [3.0, 4.0]]
    assert "exp" in a.exp()._op.lower()
    e = a.exp()
    assert len(e._prev) == 1
    assert_close(next(iter(e._prev)), [1.0, 2.0])


# ---------------------------------------------------------------- gradcheck


def test_gradcheck_returns_true_on_a_correct_function():
    a = leaf(np.array([[0.3, -1.2], [0.7, 2.0]]))
    b = leaf(np.array([1.5, -0.4]))
    assert fg.gradcheck(lambda x, y: (x * y).sum(), (a, b)) is True
    assert fg.gradcheck(lambda x, y: ((x @ y).tanh() ** 2).sum(), (a, b)) is True


def test_gradcheck_works_on_float32_inputs_by_computing_in_float64():
    a = fg.Tensor([0.5, -1.0, 2.0], requires_grad=True)
    assert fg.gradcheck(lambda x: (x.sigmoid() * x).sum(), (a,)) is True


def test_gradcheck_error_is_a_runtime_error():
    assert issubclass(fg.GradcheckError, RuntimeError)


def test_gradcheck_raises_on_a_function_whose_autodiff_misses_a_path():
    a = leaf([0.5, -1.5, 2.0])
    # d/da (a * a) is 2a, but detach() hides one factor from autodiff: it sees a.
    with pytest.raises(fg.GradcheckError, match="(?i)input"):
        fg.gradcheck(lambda x: (x * x.detach()).sum(), (a,))


def test_gradcheck_raises_when_only_the_second_input_is_wrong():
    a = leaf([0.5, -1.5])
    b = leaf([2.0, 3.0])
    with pytest.raises(RuntimeError):
        fg.gradcheck(lambda x, y: (x * y * y.detach()).sum(), (a, b))


def test_gradcheck_leaves_inputs_usable():
    a = leaf([0.5, -1.5])
    fg.gradcheck(lambda x: (x * x).sum(), (a,))
    assert_close(a, [0.5, -1.5])
    (a * 2.0).sum().backward()
    assert a.grad is not None


# ---------------------------------------------------------------- to_dot


def _collect_ops(root):
    """The op names of every node reachable through ``_prev`` (a small tree here).

    ``_prev`` may hand out fresh wrapper objects, so nodes are not de-duplicated
    by ``id()`` (a freed wrapper's id can be reused); a depth bound keeps it finite.
    """
    ops, stack = set(), [(root, 0)]
    while stack:
        node, depth = stack.pop()
        if node._op:
            ops.add(node._op)
        if depth < 50:
            stack.extend((p, depth + 1) for p in node._prev)
    return ops


def test_to_dot_of_a_value_graph_mentions_its_ops():
    a = fg.Value(2.0)
    b = fg.Value(-3.0)
    c = (a * b + a).relu()
    dot = fg.to_dot(c)
    assert isinstance(dot, str)
    assert dot.lstrip().startswith("digraph")
    for op in ("*", "+", "relu"):
        assert op in dot
    assert "}" in dot


def test_to_dot_of_a_tensor_graph_mentions_its_ops():
    x = leaf([[1.0, 2.0]])
    w = leaf([[0.5], [-0.5]])
    b = leaf([0.1])
    root = (x @ w + b).tanh().sum()
    dot = fg.to_dot(root)
    assert isinstance(dot, str)
    assert dot.lstrip().startswith("digraph")
    ops = _collect_ops(root)
    assert len(ops) >= 4
    for op in ops:
        assert op in dot
    assert "tanh" in dot


# ---------------------------------------------------------------- threads / depth


def test_two_threads_backpropagating_into_one_leaf_add_up_exactly():
    w = leaf([1.0, 2.0, 3.0])
    c = np.array([1.0, 2.0, 4.0])
    rounds = 200
    barrier = threading.Barrier(2)
    errors = []

    def work():
        try:
            barrier.wait()
            for _ in range(rounds):
                (w * fg.Tensor(c, dtype="float64")).sum().backward()
        except Exception as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    np.testing.assert_array_equal(np.asarray(w.grad), 2 * rounds * c)


def test_deep_chain_of_ten_thousand_ops_backprops_without_recursion_error():
    x = leaf([0.5])
    y = x
    for _ in range(10_000):
        y = y + x
    y.sum().backward()
    np.testing.assert_array_equal(np.asarray(x.grad), [10_001.0])
    assert_close(y, [0.5 * 10_001])
    del y  # dropping the chain must not recurse either


def test_deep_multiplicative_chain_has_the_right_gradient():
    x = leaf([1.0])
    y = x
    for _ in range(10_000):
        y = y * 1.0001
    y.backward()
    assert_close(x.grad, [1.0001**10_000], rtol=1e-9)
