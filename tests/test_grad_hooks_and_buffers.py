"""Tensor.register_post_accumulate_grad_hook (PyTorch's hook of the same name) and
``_core._with_buffer``, the zero-copy window on a tensor's memory that the MPI collectives use."""

from __future__ import annotations

import gc
import threading
import weakref

import numpy as np
import pytest

import ferrograd as fg
from ferrograd import _core


def test_a_hook_gets_the_leaf_itself_after_its_gradient_is_accumulated():
    w = fg.Tensor([1.0, 2.0], requires_grad=True)
    seen = []
    w.register_post_accumulate_grad_hook(lambda p: seen.append((p, p.grad.numpy().copy())))
    y = (w * w + w).sum()  # w reaches the loss twice: still one call, on the summed grad
    y.backward(retain_graph=True)
    y.backward()
    assert [p is w for p, _ in seen] == [True, True]
    np.testing.assert_array_equal(seen[0][1], [3.0, 5.0])
    np.testing.assert_array_equal(seen[1][1], [6.0, 10.0])  # accumulated over both passes


def test_hooks_run_in_registration_order_and_remove_or_a_with_block_unregisters_them():
    w = fg.Tensor([1.0], requires_grad=True)
    calls = []
    first = w.register_post_accumulate_grad_hook(lambda p: calls.append("first"))
    with w.register_post_accumulate_grad_hook(lambda p: calls.append("second")):
        w.sum().backward()
    assert calls == ["first", "second"]
    w.sum().backward()  # the with block removed "second"
    first.remove()
    first.remove()  # twice is fine
    w.sum().backward()
    assert calls == ["first", "second", "first"]


def test_a_hook_may_replace_or_rewrite_the_gradient():
    w = fg.Tensor([1.0, 2.0, 3.0], requires_grad=True)

    def halve(g):
        g *= 0.5

    w.register_post_accumulate_grad_hook(lambda p: _core._with_buffer(p.grad, halve))
    (w * 4.0).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 2.0, 2.0])
    v = fg.Tensor([1.0, 1.0], requires_grad=True)

    def clip(p):
        p.grad = np.minimum(p.grad.numpy(), 1.0)

    v.register_post_accumulate_grad_hook(clip)
    (v * fg.Tensor([0.5, 3.0])).sum().backward()
    np.testing.assert_array_equal(v.grad.numpy(), [0.5, 1.0])


def test_an_exception_in_a_hook_comes_out_of_backward_as_itself():
    w = fg.Tensor([1.0, 1.0], requires_grad=True)

    class Refused(Exception):
        pass

    def refuse(p):
        raise Refused("the hook refused")

    handle = w.register_post_accumulate_grad_hook(refuse)
    with pytest.raises(Refused, match="the hook refused"):
        (w * 2.0).sum().backward()
    np.testing.assert_array_equal(w.grad.numpy(), [2.0, 2.0])  # accumulated before the hook
    handle.remove()
    (w * 2.0).sum().backward()  # the tensor and the engine are fine afterwards
    np.testing.assert_array_equal(w.grad.numpy(), [4.0, 4.0])


def test_a_hook_must_return_none():
    w = fg.Tensor([1.0], requires_grad=True)
    w.register_post_accumulate_grad_hook(lambda p: 42)
    with pytest.raises(RuntimeError, match="should return None"):
        w.sum().backward()


def test_hooks_are_only_for_callables_on_leaves_that_require_grad():
    with pytest.raises(RuntimeError, match="doesn't require gradient"):
        fg.Tensor([1.0]).register_post_accumulate_grad_hook(lambda p: None)
    inner = fg.Tensor([1.0], requires_grad=True) * 2.0
    with pytest.raises(RuntimeError, match="non-leaf"):
        inner.register_post_accumulate_grad_hook(lambda p: None)
    with pytest.raises(TypeError, match="must be callable"):
        fg.Tensor([1.0], requires_grad=True).register_post_accumulate_grad_hook(3)


def test_hooks_run_when_backward_runs_on_another_thread():
    w = fg.Tensor(np.ones(1000), requires_grad=True)
    calls = []
    w.register_post_accumulate_grad_hook(lambda p: calls.append(threading.get_ident()))
    threads = [threading.Thread(target=lambda: (w * 3.0).sum().backward()) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(calls) == 4
    np.testing.assert_array_equal(w.grad.numpy(), np.full(1000, 12.0, dtype=np.float32))


def test_a_hook_does_not_keep_its_tensor_alive():
    w = fg.Tensor([1.0], requires_grad=True)
    handle = w.register_post_accumulate_grad_hook(lambda p: None)
    gone = weakref.ref(w)
    del w
    gc.collect()
    assert gone() is None
    handle.remove()  # harmless once the tensor is gone


def test_with_buffer_lends_a_writable_view_of_the_tensors_own_memory():
    t = fg.Tensor(np.arange(6.0).reshape(2, 3), dtype="float64")

    def double(view):
        assert view.shape == (2, 3) and view.dtype == np.float64 and view.flags.writeable
        view *= 2
        return float(view.sum())

    assert _core._with_buffer(t, double) == 30.0
    np.testing.assert_array_equal(t.numpy(), np.arange(6.0).reshape(2, 3) * 2)
    alias = t.detach()  # shares the storage: sees the write
    np.testing.assert_array_equal(alias.numpy(), t.numpy())
    # The same memory each time: no copy in between.
    addresses = [_core._with_buffer(t, lambda v: v.ctypes.data) for _ in range(2)]
    assert addresses[0] == addresses[1]


def test_with_buffer_works_on_a_gradient_and_on_empty_and_zero_d_tensors():
    w = fg.Tensor([1.0, 2.0], requires_grad=True)
    (w * 3.0).sum().backward()
    _core._with_buffer(w.grad, lambda g: g.fill(7.0))
    np.testing.assert_array_equal(w.grad.numpy(), [7.0, 7.0])
    assert _core._with_buffer(fg.zeros(0, 4), lambda v: v.shape) == (0, 4)
    s = fg.Tensor(2.5)
    _core._with_buffer(s, lambda v: v.fill(4.0))
    assert s.item() == 4.0


def test_with_buffer_reports_a_view_that_escapes_the_callback():
    t = fg.Tensor([1.0, 2.0])
    kept = []
    with pytest.raises(RuntimeError, match="valid only during the call"):
        _core._with_buffer(t, kept.append)
    kept.clear()
    with pytest.raises(RuntimeError, match="valid only during the call"):
        _core._with_buffer(t, lambda v: v[:1])  # a slice of the view is the view too
    _core._with_buffer(t, lambda v: None)  # the tensor is unlocked and usable again
    assert t.tolist() == [1.0, 2.0]


def test_with_buffer_passes_the_callbacks_exception_through_and_unlocks():
    t = fg.Tensor([1.0])

    def fail(view):
        view[0] = 5.0
        raise KeyError("inside")

    with pytest.raises(KeyError, match="inside"):
        _core._with_buffer(t, fail)
    assert t.item() == 5.0


def test_with_buffer_rejects_what_is_not_a_tensor_or_not_callable():
    with pytest.raises(TypeError, match="expected a Tensor or NdArray"):
        _core._with_buffer(np.zeros(3), lambda v: None)
    with pytest.raises(TypeError, match="callback must be callable"):
        _core._with_buffer(fg.zeros(3), None)


@pytest.mark.xfail(
    not hasattr(fg.Tensor, "_version"),
    strict=True,
    reason="version counters arrive with the in-place work",
)
def test_with_buffer_counts_as_an_in_place_write():
    t = fg.zeros(3)
    before = t._version
    _core._with_buffer(t, lambda v: v.fill(1.0))
    assert t._version > before
