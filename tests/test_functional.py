"""fg.functional: each function's forward against a NumPy reference, its gradients by
fg.gradcheck in float64, reduction modes, class-target forms, and the errors bad arguments
get."""

import math

import numpy as np
import pytest
from conftest import assert_close

import ferrograd as fg

F = fg.functional
RNG = np.random.default_rng(1234)


def randn(*shape):
    return RNG.standard_normal(shape)


# ---------------------------------------------------------------- NumPy references


def np_conv2d(x, w, b=None, stride=(1, 1), padding=(0, 0)):
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    (sh, sw), (ph, pw) = stride, padding
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    ho, wo = (h + 2 * ph - kh) // sh + 1, (wd + 2 * pw - kw) // sw + 1
    y = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw]
            y[:, :, i, j] = np.einsum("nckl,ockl->no", patch, w)
    return y if b is None else y + b[None, :, None, None]


def np_max_pool2d(x, kernel, stride, padding):
    (kh, kw), (sh, sw), (ph, pw) = kernel, stride, padding
    n, c, h, w = x.shape
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=-np.inf)
    ho, wo = (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1
    y = np.empty((n, c, ho, wo))
    for i in range(ho):
        for j in range(wo):
            y[:, :, i, j] = xp[:, :, i * sh : i * sh + kh, j * sw : j * sw + kw].max(axis=(2, 3))
    return y


def np_log_softmax(x):
    m = x.max(axis=-1, keepdims=True)
    return x - m - np.log(np.exp(x - m).sum(axis=-1, keepdims=True))


def np_cross_entropy(x, t, eps=0.0):
    c = x.shape[-1]
    q = (1 - eps) * np.eye(c)[t] + eps / c
    return -(q * np_log_softmax(x)).sum(axis=-1)


def gelu_ref(x):
    return np.vectorize(lambda v: 0.5 * v * (1 + math.erf(v / math.sqrt(2))))(x)


# ---------------------------------------------------------------- linear


@pytest.mark.parametrize("shape", [(3,), (4, 3), (2, 2, 3)], ids=["1d", "2d", "3d"])
def test_linear_matches_x_times_weight_transposed_plus_bias(shape):
    x, w, b = randn(*shape), randn(5, 3), randn(5)
    y = F.linear(fg.Tensor(x, dtype="float64"), fg.Tensor(w, dtype="float64"), fg.Tensor(b))
    assert y.shape == shape[:-1] + (5,)
    assert_close(y, x @ w.T + b)
    assert_close(F.linear(fg.Tensor(x, dtype="float64"), fg.Tensor(w, dtype="float64")), x @ w.T)


@pytest.mark.parametrize("shape", [(3,), (4, 3), (2, 2, 3)], ids=["1d", "2d", "3d"])
def test_linear_gradients_pass_gradcheck(shape):
    assert fg.gradcheck(F.linear, [randn(*shape), randn(2, 3), randn(2)])
    assert fg.gradcheck(lambda x, w: F.linear(x, w), [randn(*shape), randn(2, 3)])


def test_linear_keeps_float32_and_accepts_ndarray_inputs():
    x = fg.NdArray(np.ones((2, 3), dtype=np.float32))
    y = F.linear(x, fg.ones(4, 3), fg.zeros(4))
    assert isinstance(y, fg.Tensor) and y.dtype == "float32"
    assert_close(y, np.full((2, 4), 3.0))


def test_linear_rejects_mismatched_features_with_value_error():
    with pytest.raises(ValueError, match=r"in_features 3 != 4"):
        F.linear(fg.ones(2, 3), fg.ones(5, 4))
    with pytest.raises(TypeError, match="weight"):
        F.linear(fg.ones(2, 3), "weights")


# ---------------------------------------------------------------- conv2d


CONV_CASES = [
    # x shape, w shape, stride, padding (as passed: int or pair)
    ((2, 3, 6, 6), (4, 3, 3, 3), 1, 0),
    ((1, 2, 7, 5), (3, 2, 3, 3), 2, 1),
    ((2, 1, 5, 6), (2, 1, 2, 3), (2, 1), (1, 0)),
]


def _pair(v):
    return v if isinstance(v, tuple) else (v, v)


@pytest.mark.parametrize("xs, ws, stride, padding", CONV_CASES)
def test_conv2d_matches_a_numpy_reference(xs, ws, stride, padding):
    x, w, b = randn(*xs), randn(*ws), randn(ws[0])
    t = lambda a: fg.Tensor(a, dtype="float64")
    y = F.conv2d(t(x), t(w), t(b), stride=stride, padding=padding)
    assert_close(y, np_conv2d(x, w, b, _pair(stride), _pair(padding)))
    f32 = lambda a: fg.Tensor(a, dtype="float32")
    y32 = F.conv2d(f32(x), f32(w), stride=stride, padding=padding)
    assert y32.dtype == "float32"
    assert_close(y32, np_conv2d(x, w, None, _pair(stride), _pair(padding)), rtol=1e-4, atol=1e-4)


def test_conv2d_gradients_pass_gradcheck_with_stride_padding_and_bias():
    assert fg.gradcheck(
        lambda x, w, b: F.conv2d(x, w, b, stride=2, padding=1),
        [randn(2, 2, 5, 5), randn(3, 2, 3, 3), randn(3)],
    )
    assert fg.gradcheck(
        lambda x, w: F.conv2d(x, w, stride=(1, 2), padding=(0, 1)),
        [randn(1, 2, 4, 5), randn(2, 2, 2, 3)],
    )


def test_conv2d_backward_notices_an_input_written_in_place_after_the_forward():
    # The forward keeps the input's columns for dW; a later write must still be caught.
    x = fg.Tensor(randn(2, 2, 5, 5), requires_grad=True)
    w = fg.Tensor(randn(3, 2, 3, 3), requires_grad=True)
    y = F.conv2d(x, w, padding=1).sum()
    x.data += 1.0
    with pytest.raises(RuntimeError, match="input 0 of conv2d"):
        y.backward()


def test_conv2d_weight_gradient_does_not_depend_on_whether_the_input_wants_one():
    # With x frozen only dW (from the kept columns) is computed; with x trainable dX too.
    x, w, b = randn(3, 2, 6, 5), randn(4, 2, 3, 2), randn(4)
    grads = []
    for x_grad in (False, True):
        xt = fg.Tensor(x, dtype="float64", requires_grad=x_grad)
        wt = fg.Tensor(w, dtype="float64", requires_grad=True)
        bt = fg.Tensor(b, dtype="float64", requires_grad=True)
        (F.conv2d(xt, wt, bt, stride=(2, 1), padding=(1, 1)) ** 2).sum().backward()
        grads.append((wt.grad.numpy(), bt.grad.numpy()))
    for a, b_ in zip(*grads):
        np.testing.assert_allclose(a, b_, rtol=1e-12, atol=1e-12)


def test_conv2d_rejects_a_channel_mismatch_with_value_error():
    with pytest.raises(ValueError, match=r"3 channels but weight of shape \(4, 2, 3, 3\)"):
        F.conv2d(fg.zeros(1, 3, 5, 5), fg.zeros(4, 2, 3, 3))


def test_conv2d_rejects_bad_strides_paddings_and_kernels():
    x, w = fg.zeros(1, 1, 4, 4), fg.zeros(1, 1, 3, 3)
    with pytest.raises(ValueError, match="stride must be positive"):
        F.conv2d(x, w, stride=0)
    with pytest.raises(ValueError, match="padding must be non-negative"):
        F.conv2d(x, w, padding=-1)
    with pytest.raises(ValueError, match="pair of ints"):
        F.conv2d(x, w, stride=(1, 2, 3))
    with pytest.raises(TypeError, match="stride"):
        F.conv2d(x, w, stride=1.5)
    with pytest.raises(ValueError, match="larger than the padded input"):
        F.conv2d(x, fg.zeros(1, 1, 5, 5))


# ---------------------------------------------------------------- max_pool2d


@pytest.mark.parametrize(
    "kernel, stride, padding",
    [(2, None, 0), (3, 2, 1), ((2, 3), (1, 2), (1, 0))],
)
def test_max_pool2d_matches_numpy_and_defaults_stride_to_the_kernel(kernel, stride, padding):
    x = randn(2, 3, 6, 7)
    y = F.max_pool2d(fg.Tensor(x, dtype="float64"), kernel, stride, padding)
    k = _pair(kernel)
    assert_close(y, np_max_pool2d(x, k, _pair(stride) if stride is not None else k, _pair(padding)))


def test_max_pool2d_gradients_pass_gradcheck_with_overlap_and_padding():
    assert fg.gradcheck(lambda x: F.max_pool2d(x, 3, 2, 1), [randn(2, 2, 5, 5)])
    assert fg.gradcheck(lambda x: F.max_pool2d(x, (2, 3), stride=(1, 2)), [randn(1, 2, 4, 5)])


def test_max_pool2d_rejects_padding_over_half_the_kernel():
    with pytest.raises(ValueError, match="at most half the kernel"):
        F.max_pool2d(fg.zeros(1, 1, 4, 4), 2, padding=2)


# ---------------------------------------------------------------- gelu, dropout


def test_gelu_matches_the_erf_formula_and_its_gradient_passes_gradcheck():
    x = np.linspace(-4, 4, 17)
    assert_close(F.gelu(fg.Tensor(x)), gelu_ref(x))
    assert_close(F.gelu(fg.Tensor([1.0], dtype="float64")), [0.8413447460685429])
    assert fg.gradcheck(F.gelu, [randn(3, 4)])


def test_float32_gelu_and_its_gradient_agree_with_float64_to_float32_precision():
    # float32 takes a vectorised erf; float64 libm's. Large enough for the parallel chunks.
    x = np.concatenate([np.linspace(-12, 12, 200_001), [0.0, -0.0, np.inf, -np.inf]])
    g = RNG.standard_normal(x.shape)
    x32 = fg.Tensor(x.astype(np.float32), requires_grad=True)
    y32 = F.gelu(x32)
    y32.backward(fg.Tensor(g.astype(np.float32)))
    x64 = fg.Tensor(x.astype(np.float32).astype(np.float64), dtype="float64", requires_grad=True)
    y64 = F.gelu(x64)
    y64.backward(fg.Tensor(g.astype(np.float32).astype(np.float64), dtype="float64"))
    assert y32.dtype == "float32" and x32.grad.dtype == "float32"
    finite = np.isfinite(x)
    np.testing.assert_allclose(y32.numpy()[finite], y64.numpy()[finite], rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(
        x32.grad.numpy()[finite], x64.grad.numpy()[finite], rtol=2e-6, atol=1e-6
    )
    # The formula at ±inf: inf·1 and -inf·0 (PyTorch's float64 gives the same).
    assert y32.numpy()[-2] == np.inf and np.isnan(y32.numpy()[-1])
    assert np.isnan(F.gelu(fg.Tensor([np.nan], dtype="float32")).numpy()).all()


def test_dropout_in_eval_mode_or_at_p_zero_returns_the_input_values():
    x = fg.randn(3, 4)
    assert_close(F.dropout(x, 0.5, training=False), x.numpy())
    assert_close(F.dropout(x, 0.0), x.numpy())


def test_dropout_scales_kept_values_and_p_one_gives_zeros():
    fg.manual_seed(0)
    y = F.dropout(fg.ones(10_000), p=0.2).numpy()
    kept = y != 0
    assert 0.77 < kept.mean() < 0.83
    assert_close(y[kept], np.full(kept.sum(), 1 / 0.8, dtype=np.float32))
    assert not F.dropout(fg.ones(5), p=1.0).numpy().any()


def test_dropout_masks_repeat_under_the_same_seed_and_gradients_pass_gradcheck():
    fg.manual_seed(5)
    a = F.dropout(fg.ones(50)).numpy()
    fg.manual_seed(5)
    assert_close(F.dropout(fg.ones(50)).numpy(), a)

    def seeded(x):
        fg.manual_seed(7)
        return F.dropout(x, p=0.3)

    assert fg.gradcheck(seeded, [randn(4, 5)])


def test_dropout_rejects_p_outside_zero_to_one():
    with pytest.raises(ValueError, match="between 0 and 1, got 1.5"):
        F.dropout(fg.ones(3), p=1.5)


# ---------------------------------------------------------------- cross_entropy, nll_loss


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_numpy_for_each_reduction(reduction):
    x, t = randn(6, 4), np.array([0, 3, 1, 1, 2, 0])
    want = np_cross_entropy(x, t)
    want = {"mean": want.mean(), "sum": want.sum(), "none": want}[reduction]
    got = F.cross_entropy(fg.Tensor(x, dtype="float64"), t, reduction=reduction)
    assert got.shape == np.shape(want)
    assert_close(got, want)
    assert fg.gradcheck(lambda z: F.cross_entropy(z, t, reduction=reduction), [x])


@pytest.mark.parametrize("eps", [0.1, 0.5, 1.0])
def test_cross_entropy_label_smoothing_matches_the_smoothed_target_formula(eps):
    x, t = randn(5, 3), [2, 0, 1, 1, 0]
    got = F.cross_entropy(fg.Tensor(x, dtype="float64"), t, reduction="none", label_smoothing=eps)
    assert_close(got, np_cross_entropy(x, np.array(t), eps))
    assert fg.gradcheck(lambda z: F.cross_entropy(z, t, label_smoothing=eps), [x])


def test_cross_entropy_is_stable_for_huge_logits_and_takes_1d_logits():
    y = F.cross_entropy(fg.Tensor([[1000.0, 0.0, -1000.0]]), [0])
    assert y.item() == 0.0
    one = F.cross_entropy(fg.Tensor([1.0, 2.0, 3.0], dtype="float64"), 1)
    assert one.shape == ()
    assert_close(one, np_cross_entropy(np.array([[1.0, 2.0, 3.0]]), np.array([1]))[0])


@pytest.mark.parametrize(
    "target",
    [
        [2, 0, 1],
        np.array([2, 0, 1], dtype=np.int64),
        np.array([2, 0, 1], dtype=np.uint8),
        np.array([2.0, 0.0, 1.0]),
        fg.Tensor([2.0, 0.0, 1.0]),
    ],
    ids=["list", "int64", "uint8", "float-whole", "tensor"],
)
def test_cross_entropy_accepts_every_class_target_form(target):
    x = randn(3, 3)
    got = F.cross_entropy(fg.Tensor(x, dtype="float64"), target, reduction="none")
    assert_close(got, np_cross_entropy(x, np.array([2, 0, 1])))


@pytest.mark.parametrize(
    "target, error, message",
    [
        ([0, 4], ValueError, r"class 4 is out of range for 4 classes"),
        ([0, -1], ValueError, r"class -1 is negative"),
        (np.array([0.0, 1.5]), ValueError, r"class 1.5 is not a whole number"),
        (np.array([0.0, np.nan]), ValueError, r"class nan is not a whole number"),
        ([0, 1, 2], ValueError, r"needs 2 targets, got 3"),
        ([[0], [1]], ValueError, r"1-D"),
        (["a", "b"], TypeError, r"integer class indices"),
        ([True, False], TypeError, r"integer class indices"),
    ],
    ids=["out-of-range", "negative", "fractional", "nan", "length", "2-D", "strings", "bools"],
)
def test_cross_entropy_rejects_bad_targets_naming_the_bad_value(target, error, message):
    with pytest.raises(error, match=message):
        F.cross_entropy(fg.zeros(2, 4), target)


def test_cross_entropy_rejects_a_bad_reduction_and_smoothing():
    with pytest.raises(ValueError, match=r'reduction must be "mean", "sum" or "none", got "avg"'):
        F.cross_entropy(fg.zeros(2, 4), [0, 1], reduction="avg")
    with pytest.raises(ValueError, match="label_smoothing"):
        F.cross_entropy(fg.zeros(2, 4), [0, 1], label_smoothing=1.5)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_of_log_softmax_equals_cross_entropy(reduction):
    x, t = fg.Tensor(randn(4, 5), dtype="float64"), [4, 0, 2, 2]
    assert_close(
        F.nll_loss(x.log_softmax(), t, reduction=reduction),
        F.cross_entropy(x, t, reduction=reduction).numpy(),
    )


def test_nll_loss_picks_negated_log_probs_and_passes_gradcheck():
    lp = randn(3, 4)
    assert_close(F.nll_loss(fg.Tensor(lp), [1, 3, 0], reduction="none"), -lp[[0, 1, 2], [1, 3, 0]])
    assert fg.gradcheck(lambda z: F.nll_loss(z, [1, 3, 0]), [lp])
    with pytest.raises(ValueError, match="class 4 is out of range"):
        F.nll_loss(fg.Tensor(lp), [1, 4, 0])


# ---------------------------------------------------------------- clamp, maximum, minimum


def test_clamp_limits_values_keeps_nan_and_passes_gradient_at_the_bounds():
    x = fg.Tensor([-2.0, -1.0, 0.0, 1.0, 2.0, np.nan], requires_grad=True)
    y = F.clamp(x, -1.0, 1.0)
    assert_close(y, [-1.0, -1.0, 0.0, 1.0, 1.0, np.nan])
    y.sum().backward()
    assert_close(x.grad, [0.0, 1.0, 1.0, 1.0, 0.0, 0.0])
    assert_close(F.clamp(fg.Tensor([-3.0, 3.0]), max=0.5), [-3.0, 0.5])
    assert fg.gradcheck(lambda z: F.clamp(z, min=-0.5, max=0.7), [randn(3, 4)])
    with pytest.raises(ValueError, match="at least one of min and max"):
        F.clamp(x)


@pytest.mark.parametrize("fn, ref", [(F.maximum, np.maximum), (F.minimum, np.minimum)])
def test_maximum_and_minimum_match_numpy_with_broadcasting_and_pass_gradcheck(fn, ref):
    a, b = randn(2, 3), randn(3)
    assert_close(fn(fg.Tensor(a, dtype="float64"), fg.Tensor(b, dtype="float64")), ref(a, b))
    assert fg.gradcheck(fn, [a, b])


def test_maximum_splits_the_gradient_of_a_tie_in_half():
    a = fg.Tensor([1.0, 2.0], requires_grad=True)
    b = fg.Tensor([1.0, 3.0], requires_grad=True)
    F.maximum(a, b).sum().backward()
    assert_close(a.grad, [0.5, 0.0])
    assert_close(b.grad, [0.5, 1.0])


def test_functional_is_reachable_as_fg_functional_with_every_name():
    assert set(F.__all__) <= set(dir(F))
    assert all(callable(getattr(F, n)) for n in F.__all__)


# ---------------------------------------------------------------- layer_norm


def np_layer_norm(x, k, w=None, b=None, eps=1e-5):
    axes = tuple(range(x.ndim - k, x.ndim))
    y = (x - x.mean(axis=axes, keepdims=True)) / np.sqrt(x.var(axis=axes, keepdims=True) + eps)
    return y * (1 if w is None else w) + (0 if b is None else b)


@pytest.mark.parametrize("affine", ["both", "weight", "bias", "none"])
@pytest.mark.parametrize("normalized_shape", [(5,), (3, 5)])
def test_layer_norm_matches_numpy_and_passes_gradcheck(affine, normalized_shape):
    x = randn(2, 3, 5) * 3 + 1
    w = randn(*normalized_shape) if affine in ("both", "weight") else None
    b = randn(*normalized_shape) if affine in ("both", "bias") else None
    k = len(normalized_shape)
    t = lambda a: None if a is None else fg.Tensor(a, dtype="float64")
    out = F.layer_norm(t(x), normalized_shape, t(w), t(b), eps=1e-3)
    assert_close(out, np_layer_norm(x, k, w, b, eps=1e-3))
    args = [a for a in (x, w, b) if a is not None]

    def f(*ts):
        it = iter(ts[1:])
        tw = next(it) if w is not None else None
        tb = next(it) if b is not None else None
        return F.layer_norm(ts[0], normalized_shape, tw, tb)

    assert fg.gradcheck(f, args)


def test_layer_norm_takes_an_int_shape_and_float32_and_keeps_the_dtype():
    x = randn(4, 6).astype(np.float32)
    out = F.layer_norm(fg.Tensor(x), 6)
    assert out.dtype == "float32"
    np.testing.assert_allclose(out.numpy(), np_layer_norm(x.astype(np.float64), 1), atol=1e-5)


@pytest.mark.parametrize("threads", [2, 3])
def test_layer_norm_results_and_gradients_do_not_depend_on_the_thread_count(threads):
    # 600 rows of 256: above the parallel threshold, rows split over the threads.
    x = (randn(600, 256) * 2).astype(np.float32)
    w, b = randn(256).astype(np.float32), randn(256).astype(np.float32)
    g = randn(600, 256).astype(np.float32)

    def run():
        ts = [fg.Tensor(a, requires_grad=True) for a in (x, w, b)]
        out = F.layer_norm(ts[0], (256,), ts[1], ts[2])
        out.backward(fg.Tensor(g))
        return [out.numpy()] + [a.grad.numpy() for a in ts]

    fg.set_num_threads(1)
    try:
        one = run()
        fg.set_num_threads(threads)
        many = run()
    finally:
        fg.set_num_threads(0)
    # dW and db sum 600 float32 rows in an order that follows the split: ~sqrt(600) ulps of
    # terms up to ~10 apart, so 1e-4 absolute.
    for a, b_ in zip(one, many):
        np.testing.assert_allclose(b_, a, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda: F.layer_norm(fg.zeros(2, 3), (4,)), ValueError, "does not end in"),
        (lambda: F.layer_norm(fg.zeros(2, 3), (2, 3, 1)), ValueError, "does not end in"),
        (lambda: F.layer_norm(fg.zeros(2, 3), (3,), fg.ones(4)), ValueError, "weight of shape"),
        (lambda: F.layer_norm(fg.zeros(2, 3), (3,), None, fg.ones(2)), ValueError, "bias of shape"),
        (lambda: F.layer_norm(fg.zeros(2, 3), "3"), TypeError, "normalized_shape"),
        (lambda: F.layer_norm(fg.zeros(2, 3), (-3,)), ValueError, "non-negative"),
        (lambda: F.layer_norm(fg.tensor([[1, 2]]), (2,)), TypeError, "floating-point"),
    ],
    ids=["wrong-trailing", "too-many-axes", "weight", "bias", "str-shape", "negative", "int"],
)
def test_layer_norm_rejects_bad_arguments(call, error, match):
    with pytest.raises(error, match=match):
        call()
