"""Rules the core owns once: the binary losses, BatchNorm's running statistics, Embedding's
id rule, and NdArray as a graph-free array over a tensor's storage."""

import numpy as np
import pytest
from conftest import assert_close

import ferrograd as fg
from ferrograd import loss
from ferrograd.layers import BatchNorm1d, BatchNorm2d, Embedding

rng = np.random.default_rng(7)


# ----- binary cross-entropy -----------------------------------------------------------------


def np_bce(p, y):
    return -(y * np.maximum(np.log(p), -100) + (1 - y) * np.maximum(np.log1p(-p), -100))


def np_bce_logits(x, y):
    return np.maximum(x, 0) - x * y + np.log1p(np.exp(-np.abs(x)))


def test_bce_is_one_fused_core_op_that_matches_numpy_in_float32():
    p = rng.uniform(0.01, 0.99, (6, 2)).astype(np.float32)
    y = (rng.uniform(size=(6, 2)) > 0.5).astype(np.float32)
    out = loss.binary_cross_entropy(fg.Tensor(p, requires_grad=True), y, reduction="none")
    assert out._op == "binary_cross_entropy" and out.dtype == "float32"
    assert_close(out, np_bce(p.astype(np.float64), y), rtol=1e-5)


def test_bce_with_logits_is_one_fused_core_op_that_matches_numpy():
    x = rng.standard_normal((5, 3)) * 30
    y = rng.uniform(size=(5, 3))
    out = loss.binary_cross_entropy_with_logits(
        fg.Tensor(x, requires_grad=True), y, reduction="none"
    )
    assert out._op == "binary_cross_entropy_with_logits"
    assert_close(out, np_bce_logits(x, y), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("fn", [loss.binary_cross_entropy, loss.binary_cross_entropy_with_logits])
def test_binary_losses_pass_gradcheck_in_the_input_and_the_target(fn):
    p = rng.uniform(0.1, 0.9, (4, 2))
    y = rng.uniform(0.0, 1.0, (4, 2))
    for reduction in ("mean", "sum", "none"):
        assert fg.gradcheck(lambda p, y, r=reduction: fn(p, y, reduction=r), [p, y])


def test_bce_gradient_at_zero_and_one_is_pytorchs_finite_form():
    p = fg.Tensor([0.0, 1.0, 0.0, 1.0], dtype="float64", requires_grad=True)
    y = np.array([1.0, 0.0, 0.0, 1.0])
    loss.binary_cross_entropy(p, y, reduction="sum").backward()
    expected = (p.numpy() - y) / np.maximum(p.numpy() * (1 - p.numpy()), 1e-12)
    assert_close(p.grad, expected)


def test_bce_takes_an_integer_target_tensor_as_floats():
    p = fg.Tensor([0.25, 0.75])
    out = loss.binary_cross_entropy(p, fg.tensor([1, 0]), reduction="none")
    assert out.dtype == "float32"
    assert_close(out, [-np.log(0.25), -np.log(0.25)], rtol=1e-6)


def test_bce_on_an_integer_input_is_a_type_error_naming_the_dtype():
    with pytest.raises(TypeError, match="int64"):
        fg._core.binary_cross_entropy(fg.tensor([1, 0]), [1.0, 0.0])


# ----- BatchNorm running statistics ---------------------------------------------------------


def test_running_statistics_are_updated_in_place_and_bump_the_buffers_versions():
    bn = BatchNorm2d(3)
    mean_buf, var_buf = bn.running_mean, bn.running_var
    v_mean, v_var = mean_buf._version, var_buf._version
    x = rng.standard_normal((4, 3, 2, 2)).astype(np.float32)
    bn(fg.Tensor(x))
    assert bn.running_mean is mean_buf and bn.running_var is var_buf
    assert (mean_buf._version, var_buf._version) == (v_mean + 1, v_var + 1)
    assert mean_buf.dtype == "float32" and mean_buf.shape == (3,)
    n = x.size // 3
    assert_close(mean_buf, 0.1 * x.mean(axis=(0, 2, 3)), rtol=1e-5, atol=1e-6)
    assert_close(var_buf, 0.9 + 0.1 * x.var(axis=(0, 2, 3)) * n / (n - 1), rtol=1e-5)
    assert bn.num_batches_tracked.item() == 1


def test_a_graph_that_saved_a_running_statistic_notices_the_training_update():
    bn = BatchNorm1d(2)
    x = fg.Tensor([[1.0, 2.0]], requires_grad=True)
    y = (x * bn.running_mean).sum()  # mul saves running_mean for x's gradient
    bn(fg.randn(3, 2))
    with pytest.raises(RuntimeError, match="modified by an in-place operation"):
        y.backward()


def test_eval_mode_normalises_with_the_running_statistics_in_the_core():
    bn = BatchNorm1d(2, dtype="float64")
    bn.running_mean.copy_([1.0, -2.0])
    bn.running_var.copy_([4.0, 0.25])
    bn.eval()
    x = rng.standard_normal((3, 2))
    out = bn(fg.Tensor(x))
    assert_close(out, (x - [1.0, -2.0]) / np.sqrt(np.array([4.0, 0.25]) + 1e-5))


def test_the_core_running_stats_update_refuses_mismatched_buffers():
    with pytest.raises(ValueError, match="batch_mean"):
        fg._core.update_running_stats(fg.zeros(2), fg.ones(2), fg.zeros(3), fg.ones(3), 4, 0.1)
    with pytest.raises(ValueError, match="more than 1"):
        fg._core.update_running_stats(fg.zeros(2), fg.ones(2), fg.zeros(2), fg.ones(2), 1, 0.1)


# ----- Embedding: the core's indexing rule --------------------------------------------------


@pytest.mark.parametrize(
    "ids",
    [
        fg.tensor([[3, 0], [1, 3]]),
        np.array([[3, 0], [1, 3]]),
        [[3, 0], [1, 3]],
        fg.tensor([[3, 0], [1, 3]]).int(),
    ],
)
def test_embedding_takes_int64_and_int32_ids_of_any_form(ids):
    emb = Embedding(4, 2)
    out = emb(ids)
    assert out.shape == (2, 2, 2) and out._op == "index"
    assert_close(out, emb.weight.numpy()[np.array([[3, 0], [1, 3]])])


@pytest.mark.parametrize(
    "bad,error,text",
    [
        (fg.tensor([4]), IndexError, "4"),
        (fg.tensor([0, 9]), IndexError, "9"),
        (fg.tensor([-1]), IndexError, "-1"),
        ([2, 7], IndexError, "7"),
        (fg.Tensor([1.0]), TypeError, "float32"),
        (np.array([1.0]), TypeError, "float64"),
        (fg.tensor([True, False]), TypeError, "bool"),
    ],
)
def test_embedding_refuses_bad_ids_by_the_core_rule_and_stays_usable(bad, error, text):
    emb = Embedding(4, 2)
    with pytest.raises(error, match=text):
        emb(bad)
    assert emb(fg.tensor([1])).shape == (1, 2)


def test_a_float_tensor_index_is_a_type_error_wherever_it_indexes():
    w = fg.ones(4, 2)
    with pytest.raises(TypeError, match="float32"):
        w[fg.Tensor([1.0])]
    with pytest.raises(TypeError, match="float32"):
        w[fg.Tensor([1.0])] = 0.0


# ----- NdArray: graph-free by type ----------------------------------------------------------


def test_data_and_grad_are_ndarrays_that_share_the_tensors_storage():
    t = fg.Tensor([1.0, 2.0], requires_grad=True)
    (t * 3).sum().backward()
    assert type(t.data) is fg.NdArray and type(t.grad) is fg.NdArray
    d = t.data
    d += 1.0
    assert_close(t, [2.0, 3.0])
    assert t._version == d._version == 1
    g = t.grad
    g *= 2.0
    assert_close(t.grad, [6.0, 6.0])
    assert t.grad._version == 1


def test_an_ndarray_has_no_graph_and_its_ops_give_ndarrays():
    a = fg.NdArray([1.0, 2.0])
    assert not hasattr(a, "requires_grad") and not hasattr(a, "backward")
    out = (a * 2.0).exp().sum()
    assert type(out) is fg.NdArray
    assert not hasattr(out, "_op")


def test_ndarray_math_on_a_parameters_data_records_nothing():
    w = fg.Tensor([1.0, -1.0], requires_grad=True)
    y = (w.data * 5.0).relu()
    assert type(y) is fg.NdArray
    # Mixing with a Tensor gives a Tensor whose graph reaches w only through w itself.
    z = (w * w.data).sum()
    z.backward()
    assert_close(w.grad, [1.0, -1.0])


def test_an_ndarrays_id_is_stable_and_shared_by_aliases():
    t = fg.Tensor([1.0])
    a = t.data
    assert a._id == a._id == t.data._id
    assert fg.NdArray([1.0])._id != a._id
