"""``layers.utils.clip_grad_norm_`` against a NumPy version of PyTorch's definition."""

import math

import numpy as np
import pytest

import ferrograd as fg
from ferrograd import layers as nn
from ferrograd.layers.utils import clip_grad_norm_

SHAPES = [(3, 4), (4,), (2, 2, 3)]


def _params(dtype="float32", scale=1.0, seed=0, shapes=SHAPES):
    rng = np.random.default_rng(seed)
    ps = []
    for s in shapes:
        p = fg.Tensor(rng.standard_normal(s).astype(dtype), requires_grad=True)
        p.grad = (scale * rng.standard_normal(s)).astype(dtype)
        ps.append(p)
    return ps


def _reference(grads, max_norm, norm_type):
    """PyTorch's clip_grad_norm_, in float64: the norm of the per-tensor norms, then
    grads * clamp(max_norm / (total + 1e-6), max=1)."""
    flat = np.concatenate([g.astype(np.float64).ravel() for g in grads])
    if norm_type == math.inf:
        total = np.abs(flat).max()
    elif norm_type == -math.inf:
        total = np.abs(flat).min()
    else:
        total = np.sum(np.abs(flat) ** norm_type) ** (1.0 / norm_type)
    coef = min(max_norm / (total + 1e-6), 1.0)
    return total, [g.astype(np.float64) * coef for g in grads]


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("norm_type", [2.0, 1.0, 3.0, 0.5, math.inf, -math.inf, "inf"])
@pytest.mark.parametrize("max_norm", [0.1, 1.0, 1e6])
def test_clipping_matches_pytorchs_definition(dtype, norm_type, max_norm):
    params = _params(dtype, scale=2.0)
    before = [p.grad.numpy() for p in params]
    total = clip_grad_norm_(params, max_norm, norm_type=norm_type)
    want_total, want_grads = _reference(before, max_norm, float(norm_type))
    assert isinstance(total, float)
    rtol = 1e-5 if dtype == "float32" else 1e-12
    assert total == pytest.approx(want_total, rel=rtol)
    for p, want in zip(params, want_grads):
        assert p.grad.dtype == dtype
        np.testing.assert_allclose(p.grad.numpy(), want, rtol=rtol, atol=1e-7)


def test_after_clipping_the_norm_is_max_norm_and_small_gradients_are_untouched():
    params = _params(scale=10.0)
    total = clip_grad_norm_(params, 1.0)
    assert total > 1.0
    after = math.sqrt(sum(float(np.sum(p.grad.numpy().astype(np.float64) ** 2)) for p in params))
    assert after == pytest.approx(1.0, rel=1e-5)
    small = _params(scale=1e-3, seed=1)
    before = [p.grad.numpy() for p in small]
    clip_grad_norm_(small, 1.0)
    for p, b in zip(small, before):
        np.testing.assert_array_equal(p.grad.numpy(), b)


def test_the_gradients_are_scaled_in_place_and_the_parameters_are_not():
    (p,) = _params(shapes=[(5,)])
    grad_view = p.grad
    data = p.numpy()
    clip_grad_norm_(p, 1e-3)  # a single Tensor is accepted
    np.testing.assert_array_equal(grad_view.numpy(), p.grad.numpy())
    np.testing.assert_array_equal(p.numpy(), data)
    assert float(np.linalg.norm(p.grad.numpy())) == pytest.approx(1e-3, rel=1e-4)


def test_parameters_without_a_gradient_are_skipped_and_none_at_all_gives_zero():
    params = _params()
    params[1].grad = None
    grads = [params[0].grad.numpy(), params[2].grad.numpy()]
    total = clip_grad_norm_(iter(params), 0.5)  # a one-shot iterator works too
    want, _ = _reference(grads, 0.5, 2.0)
    assert total == pytest.approx(want, rel=1e-6)
    assert params[1].grad is None
    bare = fg.Tensor([1.0, 2.0], requires_grad=True)
    assert clip_grad_norm_([bare], 1.0) == 0.0
    assert clip_grad_norm_([], 1.0) == 0.0


def test_a_module_s_parameters_are_clipped_after_backward():
    fg.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    loss = (model(fg.randn(16, 3) * 100.0) ** 2).mean()
    loss.backward()
    grads = [p.grad.numpy() for p in model.parameters()]
    total = clip_grad_norm_(model.parameters(), 1.0)
    want_total, want = _reference(grads, 1.0, 2.0)
    assert total == pytest.approx(want_total, rel=1e-5)
    for p, w in zip(model.parameters(), want):
        np.testing.assert_allclose(p.grad.numpy(), w, rtol=1e-5, atol=1e-8)


@pytest.mark.parametrize("bad", [math.inf, math.nan])
def test_a_non_finite_total_norm_raises_only_when_asked(bad):
    params = _params()
    params[0].grad = np.full((3, 4), bad, dtype=np.float32)
    before = [p.grad.numpy() for p in params]
    with pytest.raises(RuntimeError, match="non-finite"):
        clip_grad_norm_(params, 1.0, error_if_nonfinite=True)
    for p, b in zip(params, before):  # nothing was scaled
        np.testing.assert_array_equal(p.grad.numpy(), b)
    total = clip_grad_norm_(params, 1.0)
    assert math.isinf(total) if bad == math.inf else math.isnan(total)
    # PyTorch scales by max_norm / (total + 1e-6) anyway: 0 for inf, NaN for NaN.
    if bad == math.inf:
        np.testing.assert_array_equal(params[1].grad.numpy(), np.zeros(4, dtype=np.float32))
        assert np.isnan(params[0].grad.numpy()).all()  # inf * 0
    else:
        assert all(np.isnan(p.grad.numpy()).all() for p in params)


def test_a_nan_wins_the_infinity_norm_wherever_it_is():
    for where in (0, 2):
        params = _params()
        g = params[where].grad.numpy()
        g.flat[0] = np.nan
        params[where].grad = g
        assert math.isnan(clip_grad_norm_(params, 1.0, norm_type=math.inf))


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda ps: clip_grad_norm_(ps, -1.0), ValueError, "max_norm"),
        (lambda ps: clip_grad_norm_(ps, math.nan), ValueError, "max_norm"),
        (lambda ps: clip_grad_norm_(ps, 1.0, norm_type=0), ValueError, "norm_type"),
        (lambda ps: clip_grad_norm_(ps, 1.0, norm_type=-2.0), ValueError, "norm_type"),
        (lambda ps: clip_grad_norm_(ps, 1.0, norm_type="two"), TypeError, "norm_type"),
        (lambda ps: clip_grad_norm_([*ps, np.ones(3)], 1.0), TypeError, "item 3"),
    ],
    ids=["negative", "nan", "zero-norm", "negative-norm", "str-norm", "not-a-tensor"],
)
def test_bad_arguments_raise_clear_errors(call, error, match):
    with pytest.raises(error, match=match):
        call(_params())


def test_clip_grad_norm_is_reachable_as_in_torch_nn_utils():
    assert fg.layers.utils.clip_grad_norm_ is clip_grad_norm_
