"""Layers: forward passes against NumPy, gradients by finite differences, registration,
state dicts, train/eval behaviour and repr."""

import math
from collections import OrderedDict

import numpy as np
import pytest
from conftest import assert_close

import ferrograd as fg
from ferrograd import _core
from ferrograd.functional import linear
from ferrograd.layers import (
    GELU,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Embedding,
    Flatten,
    LayerNorm,
    Linear,
    LogSoftmax,
    MaxPool2d,
    Module,
    ReLU,
    Sequential,
    Sigmoid,
    Softmax,
    Tanh,
)

rng = np.random.default_rng(1234)


def t64(a, requires_grad=False):
    return fg.Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


class TwoLayer(Module):
    def __init__(self):
        super().__init__()
        self.fc1 = Linear(3, 4)
        self.act = ReLU()
        self.fc2 = Linear(4, 2)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


# ----- Module: registration and traversal ---------------------------------------------------


def test_attributes_register_parameters_and_submodules_with_pytorch_names():
    model = TwoLayer()
    names = [n for n, _ in model.named_parameters()]
    assert names == ["fc1.weight", "fc1.bias", "fc2.weight", "fc2.bias"]
    assert isinstance(model.parameters(), list)
    assert [type(c).__name__ for c in model.children()] == ["Linear", "ReLU", "Linear"]
    assert len(list(model.modules())) == 4


def test_a_tensor_assigned_to_a_module_becomes_a_parameter():
    class Scale(Module):
        def __init__(self):
            self.scale = fg.ones(3, requires_grad=True)

        def forward(self, x):
            return x * self.scale

    m = Scale()
    assert [n for n, _ in m.named_parameters()] == ["scale"]
    assert m.training


def test_sequential_names_children_by_position_and_supports_indexing():
    seq = Sequential(Linear(2, 3), ReLU(), Linear(3, 1))
    assert [n for n, _ in seq.named_parameters()] == ["0.weight", "0.bias", "2.weight", "2.bias"]
    assert len(seq) == 3
    assert isinstance(seq[1], ReLU)
    assert seq[-1] is seq[2]
    assert [type(m).__name__ for m in seq] == ["Linear", "ReLU", "Linear"]
    assert len(seq[:2]) == 2
    with pytest.raises(IndexError):
        seq[3]


def test_sequential_from_an_ordered_dict_keeps_the_given_names():
    seq = Sequential(OrderedDict(hidden=Linear(2, 2), out=Linear(2, 1)))
    assert next(n for n, _ in seq.named_parameters()) == "hidden.weight"


def test_a_shared_layer_appears_once_in_parameters():
    shared = Linear(2, 2)
    seq = Sequential(shared, ReLU(), shared)
    assert len(seq.parameters()) == 2


def test_registered_buffers_are_saved_but_are_not_parameters():
    class Counter(Module):
        def __init__(self):
            self.lin = Linear(2, 2)
            self.register_buffer("steps", fg.zeros(1))

    m = Counter()
    assert [n for n, _ in m.named_buffers()] == ["steps"]
    assert "steps" not in [n for n, _ in m.named_parameters()]
    assert list(m.state_dict()) == ["steps", "lin.weight", "lin.bias"]
    m.steps = fg.ones(1)
    assert [n for n, _ in m.named_buffers()] == ["steps"]


def test_assigning_none_to_a_parameter_removes_it_from_parameters():
    lin = Linear(2, 2, bias=False)
    assert lin.bias is None
    assert [n for n, _ in lin.named_parameters()] == ["weight"]


def test_zero_grad_sets_every_grad_to_none():
    model = TwoLayer()
    model(fg.randn(5, 3)).sum().backward()
    assert all(p.grad is not None for p in model.parameters())
    model.zero_grad()
    assert all(p.grad is None for p in model.parameters())


def test_train_and_eval_set_the_flag_recursively():
    model = Sequential(TwoLayer(), Dropout())
    assert model.eval() is model
    assert not any(m.training for m in model.modules())
    model.train()
    assert all(m.training for m in model.modules())


def test_repr_is_nested_like_pytorch():
    model = Sequential(Linear(2, 3), Sequential(ReLU(), Dropout(0.25)))
    assert repr(model) == (
        "Sequential(\n"
        "  (0): Linear(in_features=2, out_features=3, bias=True)\n"
        "  (1): Sequential(\n"
        "    (0): ReLU()\n"
        "    (1): Dropout(p=0.25)\n"
        "  )\n"
        ")"
    )


# ----- Module: state dicts ------------------------------------------------------------------


def model_with_batchnorm():
    return Sequential(Linear(3, 4), BatchNorm1d(4), ReLU(), Linear(4, 2))


def test_state_dict_holds_detached_copies_of_parameters_and_buffers():
    model = model_with_batchnorm()
    state = model.state_dict()
    assert list(state) == [
        "0.weight",
        "0.bias",
        "1.weight",
        "1.bias",
        "1.running_mean",
        "1.running_var",
        "1.num_batches_tracked",
        "3.weight",
        "3.bias",
    ]
    assert not state["0.weight"].requires_grad
    before = state["0.weight"].numpy().copy()
    with fg.no_grad():
        model[0].weight -= 1.0
    assert_close(state["0.weight"], before)


def test_state_dict_round_trip_gives_identical_predictions():
    fg.manual_seed(0)
    source = model_with_batchnorm()
    source(fg.randn(8, 3))  # moves the running statistics
    source.eval()
    x = fg.randn(5, 3)
    fg.manual_seed(1)
    target = model_with_batchnorm().eval()
    target.load_state_dict(source.state_dict())
    np.testing.assert_array_equal(target(x).numpy(), source(x).numpy())


def test_load_state_dict_accepts_numpy_and_ndarray_values_and_keeps_parameter_identity():
    model = Linear(2, 2)
    weight = model.weight
    model.load_state_dict({"weight": np.eye(2), "bias": fg.NdArray([1.0, 2.0])})
    assert model.weight is weight
    assert model.weight.dtype == "float32"
    assert_close(model.weight, np.eye(2))
    assert_close(model.bias, [1.0, 2.0])


@pytest.mark.parametrize(
    "change, error",
    [
        (lambda s: s.pop("3.bias"), KeyError),
        (lambda s: s.__setitem__("extra.weight", np.zeros(2)), KeyError),
        (lambda s: s.__setitem__("3.bias", np.zeros(3)), ValueError),
        (lambda s: s.__setitem__("3.weight", "not an array"), TypeError),
    ],
    ids=["missing key", "unexpected key", "wrong shape", "wrong type"],
)
def test_a_failed_load_raises_and_leaves_the_model_unchanged(change, error):
    model = model_with_batchnorm()
    before = {k: v.numpy().copy() for k, v in model.state_dict().items()}
    state = {k: v.numpy() + 1.0 for k, v in model.state_dict().items()}
    change(state)
    with pytest.raises(error):
        model.load_state_dict(state)
    for name, value in model.state_dict().items():
        np.testing.assert_array_equal(value.numpy(), before[name])


def test_non_strict_load_reports_missing_and_unexpected_keys():
    model = Linear(2, 2)
    result = model.load_state_dict({"weight": np.ones((2, 2)), "other": np.ones(1)}, strict=False)
    assert result.missing_keys == ["bias"]
    assert result.unexpected_keys == ["other"]
    assert_close(model.weight, np.ones((2, 2)))


# ----- Linear -------------------------------------------------------------------------------


def test_linear_forward_matches_numpy():
    lin = Linear(5, 3)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    expected = x @ lin.weight.numpy().T + lin.bias.numpy()
    assert_close(lin(fg.Tensor(x)), expected, rtol=1e-5, atol=1e-5)
    assert lin.weight.shape == (3, 5)


def test_linear_init_is_uniform_within_one_over_sqrt_fan_in_and_seeded():
    fg.manual_seed(7)
    a = Linear(16, 64)
    fg.manual_seed(7)
    b = Linear(16, 64)
    np.testing.assert_array_equal(a.weight.numpy(), b.weight.numpy())
    bound = 1 / math.sqrt(16)
    w = a.weight.numpy()
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.9 * bound
    assert np.abs(a.bias.numpy()).max() <= bound
    assert a.weight.requires_grad and a.weight.is_leaf


def test_linear_gradients_pass_gradcheck():
    x, w, b = rng.standard_normal((3, 4)), rng.standard_normal((2, 4)), rng.standard_normal(2)
    assert fg.gradcheck(lambda x, w, b: linear(x, w, b), [x, w, b])


def test_linear_parameter_grads_match_the_closed_form():
    lin = Linear(4, 3, dtype="float64")
    x = rng.standard_normal((5, 4))
    lin(t64(x)).sum().backward()
    assert_close(lin.weight.grad, np.ones((5, 3)).T @ x)
    assert_close(lin.bias.grad, np.full(3, 5.0))


def test_linear_rejects_an_input_with_the_wrong_feature_count():
    with pytest.raises(ValueError):
        Linear(4, 2)(fg.zeros(3, 5))


# ----- activations, dropout, flatten --------------------------------------------------------


def np_softmax(x, axis=-1):
    e = np.exp(x - x.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


@pytest.mark.parametrize(
    "layer, reference",
    [
        (ReLU(), lambda x: np.maximum(x, 0)),
        (Sigmoid(), lambda x: 1 / (1 + np.exp(-x))),
        (Tanh(), np.tanh),
        (Softmax(dim=-1), np_softmax),
        (Softmax(dim=0), lambda x: np_softmax(x, 0)),
        (LogSoftmax(), lambda x: np.log(np_softmax(x))),
        (
            GELU(approximate="tanh"),
            lambda x: 0.5 * x * (1 + np.tanh(np.sqrt(2 / np.pi) * (x + 0.044715 * x**3))),
        ),
    ],
    ids=["relu", "sigmoid", "tanh", "softmax", "softmax dim 0", "log_softmax", "gelu tanh"],
)
def test_activation_matches_numpy_and_passes_gradcheck(layer, reference):
    x = rng.standard_normal((3, 4)) + 0.05  # keeps relu's kink away from the grid
    assert_close(layer(t64(x)), reference(x))
    assert fg.gradcheck(layer, [x])


def test_gelu_is_the_exact_erf_form():
    x = np.linspace(-4, 4, 17)
    erf = np.vectorize(math.erf)
    assert_close(GELU()(t64(x)), 0.5 * x * (1 + erf(x / math.sqrt(2))))
    assert fg.gradcheck(GELU(), [x])


def test_dropout_in_training_zeroes_about_p_and_scales_the_rest():
    fg.manual_seed(3)
    out = Dropout(0.25)(fg.ones(200, 100)).numpy()
    kept = out != 0
    assert abs(kept.mean() - 0.75) < 0.02
    assert_close(out[kept], np.full(kept.sum(), 1 / 0.75, dtype=np.float32))


def test_dropout_in_eval_mode_returns_the_input_unchanged():
    x = fg.randn(4, 5)
    np.testing.assert_array_equal(Dropout(0.9).eval()(x).numpy(), x.numpy())


def test_dropout_rejects_p_outside_zero_to_one():
    with pytest.raises(ValueError):
        Dropout(1.5)


def test_flatten_keeps_the_batch_axis():
    x = fg.randn(2, 3, 4, 5)
    assert Flatten()(x).shape == (2, 60)
    assert Flatten(0)(x).shape == (120,)
    assert Flatten(1, 2)(x).shape == (2, 12, 5)


# ----- Conv2d and MaxPool2d -----------------------------------------------------------------


def np_conv2d(x, w, b, stride, padding):
    n, _, h, wd = x.shape
    o, _, kh, kw = w.shape
    xp = np.pad(x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    ho = (h + 2 * padding - kh) // stride + 1
    wo = (wd + 2 * padding - kw) // stride + 1
    out = np.zeros((n, o, ho, wo))
    for i in range(ho):
        for j in range(wo):
            patch = xp[:, :, i * stride : i * stride + kh, j * stride : j * stride + kw]
            out[:, :, i, j] = np.tensordot(patch, w, axes=([1, 2, 3], [1, 2, 3]))
    return out + (b.reshape(1, -1, 1, 1) if b is not None else 0)


@pytest.mark.parametrize("stride, padding", [(1, 0), (2, 1), (1, 2)])
def test_conv2d_matches_a_numpy_convolution(stride, padding):
    conv = Conv2d(2, 3, 3, stride=stride, padding=padding, dtype="float64")
    x = rng.standard_normal((2, 2, 6, 5))
    expected = np_conv2d(x, conv.weight.numpy(), conv.bias.numpy(), stride, padding)
    assert_close(conv(t64(x)), expected, rtol=1e-10, atol=1e-10)


def test_conv2d_gradients_pass_gradcheck():
    x = rng.standard_normal((1, 2, 5, 4))
    w = rng.standard_normal((3, 2, 3, 3))
    b = rng.standard_normal(3)
    assert fg.gradcheck(lambda x, w, b: _core.conv2d(x, w, b, stride=2, padding=1), [x, w, b])


def test_conv2d_init_uses_fan_in_of_channels_times_kernel_area():
    conv = Conv2d(4, 8, (3, 2))
    assert conv.weight.shape == (8, 4, 3, 2)
    assert np.abs(conv.weight.numpy()).max() <= 1 / math.sqrt(4 * 3 * 2)
    assert repr(conv) == "Conv2d(4, 8, kernel_size=(3, 2), stride=(1, 1))"


def test_conv2d_rejects_the_wrong_channel_count():
    with pytest.raises(ValueError):
        Conv2d(3, 4, 3)(fg.zeros(1, 2, 5, 5))


def np_max_pool(x, k, s):
    n, channels, h, w = x.shape
    ho, wo = (h - k) // s + 1, (w - k) // s + 1
    out = np.empty((n, channels, ho, wo))
    for i in range(ho):
        for j in range(wo):
            out[:, :, i, j] = x[:, :, i * s : i * s + k, j * s : j * s + k].max(axis=(2, 3))
    return out


def test_max_pool_matches_numpy_and_defaults_stride_to_kernel_size():
    x = rng.standard_normal((2, 3, 6, 7))
    assert_close(MaxPool2d(2)(t64(x)), np_max_pool(x, 2, 2))
    assert_close(MaxPool2d(3, stride=1)(t64(x)), np_max_pool(x, 3, 1))
    assert fg.gradcheck(MaxPool2d(2), [x])


# ----- BatchNorm ----------------------------------------------------------------------------


def np_batchnorm_train(x, axes, eps=1e-5):
    mean = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mean) / np.sqrt(var + eps)


@pytest.mark.parametrize(
    "layer_cls, shape, axes",
    [
        (BatchNorm1d, (8, 3), (0,)),
        (BatchNorm1d, (4, 3, 5), (0, 2)),
        (BatchNorm2d, (4, 3, 2, 3), (0, 2, 3)),
    ],
    ids=["1d (N, C)", "1d (N, C, L)", "2d"],
)
def test_batchnorm_normalises_with_batch_statistics_and_tracks_running_ones(layer_cls, shape, axes):
    bn = layer_cls(3, momentum=0.1, dtype="float64")
    batches = [rng.standard_normal(shape) * 2 + 1, rng.standard_normal(shape) - 3]
    running_mean, running_var = np.zeros(3), np.ones(3)
    for x in batches:
        assert_close(bn(t64(x)), np_batchnorm_train(x, axes))
        n = x.size // 3
        running_mean = 0.9 * running_mean + 0.1 * x.mean(axis=axes)
        running_var = 0.9 * running_var + 0.1 * x.var(axis=axes) * n / (n - 1)
    assert_close(bn.running_mean, running_mean)
    assert_close(bn.running_var, running_var)
    assert bn.num_batches_tracked.item() == 2
    assert bn.num_batches_tracked.dtype == "int64"  # as PyTorch's
    bn.eval()
    x = batches[0]
    bshape = (1, 3) + (1,) * (len(shape) - 2)
    expected = (x - running_mean.reshape(bshape)) / np.sqrt(running_var.reshape(bshape) + 1e-5)
    assert_close(bn(t64(x)), expected)


def test_batchnorm_gradients_pass_gradcheck_for_input_weight_and_bias():
    bn = BatchNorm2d(2, dtype="float64")

    def f(x, w, b):
        bn.weight, bn.bias = w, b
        return bn(x)

    x = rng.standard_normal((3, 2, 2, 2))
    assert fg.gradcheck(f, [x, rng.standard_normal(2), rng.standard_normal(2)])


def test_batchnorm_momentum_none_keeps_a_cumulative_average():
    bn = BatchNorm1d(2, momentum=None, dtype="float64")
    xs = [rng.standard_normal((5, 2)) for _ in range(3)]
    for x in xs:
        bn(t64(x))
    assert_close(bn.running_mean, np.mean([x.mean(axis=0) for x in xs], axis=0))


def test_batchnorm_rejects_wrong_shapes_and_single_value_batches():
    with pytest.raises(ValueError):
        BatchNorm1d(3)(fg.zeros(4, 2))
    with pytest.raises(ValueError):
        BatchNorm2d(3)(fg.zeros(4, 3))
    with pytest.raises(ValueError):
        BatchNorm1d(3)(fg.zeros(1, 3))


# ----- LayerNorm and Embedding --------------------------------------------------------------


def test_layer_norm_normalises_the_trailing_axes_and_passes_gradcheck():
    ln = LayerNorm((3, 4), dtype="float64")
    x = rng.standard_normal((2, 3, 4))
    mean = x.mean(axis=(1, 2), keepdims=True)
    var = x.var(axis=(1, 2), keepdims=True)
    assert_close(ln(t64(x)), (x - mean) / np.sqrt(var + 1e-5))

    def f(x, w, b):
        ln.weight, ln.bias = w, b
        return ln(x)

    assert fg.gradcheck(f, [x, rng.standard_normal((3, 4)), rng.standard_normal((3, 4))])


def test_embedding_looks_up_rows_and_accumulates_grads_of_repeated_indices():
    emb = Embedding(5, 3)
    idx = np.array([[1, 4], [1, 0]])
    out = emb(idx)
    assert out.shape == (2, 2, 3)
    assert_close(out, emb.weight.numpy()[idx])
    out.sum().backward()
    assert_close(emb.weight.grad[:, 0], [1.0, 2.0, 0.0, 0.0, 1.0])


def test_embedding_init_is_standard_normal():
    fg.manual_seed(0)
    w = Embedding(200, 50).weight.numpy()
    assert abs(w.mean()) < 0.03 and abs(w.std() - 1) < 0.03


@pytest.mark.parametrize("bad", [[5], [-1]])
def test_embedding_rejects_out_of_range_indices(bad):
    with pytest.raises(IndexError):
        Embedding(5, 2)(bad)


def test_a_small_network_of_every_kind_of_layer_trains_end_to_end():
    fg.manual_seed(0)
    model = Sequential(
        Conv2d(1, 4, 3, padding=1),
        BatchNorm2d(4),
        ReLU(),
        MaxPool2d(2),
        Flatten(),
        Dropout(0.1),
        Linear(16, 8),
        LayerNorm(8),
        GELU(),
        Linear(8, 2),
    )
    x = fg.randn(6, 1, 4, 4)
    out = model(x)
    assert out.shape == (6, 2)
    out.sum().backward()
    assert all(p.grad is not None for p in model.parameters())


def test_loading_a_state_dict_keeps_zero_dim_buffers_zero_dim_and_their_dtype():
    bn = BatchNorm1d(3)
    state = bn.state_dict()
    state["num_batches_tracked"] = fg.Tensor(np.array(5.0))  # an older float64 checkpoint
    bn.load_state_dict(state)
    assert bn.num_batches_tracked.shape == ()
    assert bn.num_batches_tracked.dtype == "int64"
    assert bn.num_batches_tracked.item() == 5
