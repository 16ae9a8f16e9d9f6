"""Losses against their NumPy formulas, every reduction, gradients and input checks."""

import numpy as np
import pytest
from conftest import assert_close

import ferrograd as fg
from ferrograd import loss

rng = np.random.default_rng(99)
REDUCE = {"mean": np.mean, "sum": np.sum, "none": lambda a: a}


def t64(a, requires_grad=False):
    return fg.Tensor(np.asarray(a, dtype=np.float64), requires_grad=requires_grad)


def np_log_softmax(x):
    z = x - x.max(axis=-1, keepdims=True)
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def np_sigmoid(x):
    return 1 / (1 + np.exp(-x))


PAIRWISE = {
    "mse": (loss.mse, lambda p, y: (p - y) ** 2),
    "l1": (loss.l1, lambda p, y: np.abs(p - y)),
    "bce": (loss.binary_cross_entropy, lambda p, y: -(y * np.log(p) + (1 - y) * np.log(1 - p))),
    "bce_with_logits": (
        loss.binary_cross_entropy_with_logits,
        lambda x, y: -(y * np.log(np_sigmoid(x)) + (1 - y) * np.log(1 - np_sigmoid(x))),
    ),
}


def pairwise_inputs(name, shape=(4, 3)):
    if name == "bce":
        return rng.uniform(0.05, 0.95, shape), rng.uniform(0, 1, shape)
    return rng.standard_normal(shape) + 0.01, rng.standard_normal(shape)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
@pytest.mark.parametrize("name", list(PAIRWISE))
def test_elementwise_loss_matches_its_numpy_formula(name, reduction):
    fn, formula = PAIRWISE[name]
    p, y = pairwise_inputs(name)
    out = fn(t64(p), y, reduction=reduction)
    assert_close(out, REDUCE[reduction](formula(p, y)), rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("name", list(PAIRWISE))
def test_elementwise_loss_gradients_pass_gradcheck(name):
    fn, _ = PAIRWISE[name]
    p, y = pairwise_inputs(name, (5,))
    assert fg.gradcheck(lambda p: fn(p, y, reduction="sum"), [p])
    assert fg.gradcheck(lambda p, y: fn(p, y), [p, y])


@pytest.mark.parametrize("name", list(PAIRWISE))
def test_elementwise_loss_refuses_to_broadcast_n_by_1_against_n(name):
    fn, _ = PAIRWISE[name]
    with pytest.raises(ValueError, match="shape"):
        fn(fg.full((4, 1), 0.5), np.full(4, 0.5))


@pytest.mark.parametrize("target_kind", ["list", "numpy", "ndarray", "tensor"])
def test_targets_may_be_lists_numpy_arrays_ndarrays_or_tensors(target_kind):
    y = [0.5, -1.0, 2.0]
    target = {"list": y, "numpy": np.array(y), "ndarray": fg.NdArray(y), "tensor": fg.Tensor(y)}[
        target_kind
    ]
    out = loss.mse(fg.Tensor([1.0, 1.0, 1.0]), target)
    assert out.dtype == "float32"
    assert_close(out, np.mean((1 - np.array(y)) ** 2))


@pytest.mark.parametrize("fn", [loss.mse, loss.l1, loss.binary_cross_entropy])
def test_an_unknown_reduction_raises_value_error(fn):
    with pytest.raises(ValueError, match="reduction"):
        fn(fg.full(3, 0.5), [0.5, 0.5, 0.5], reduction="avg")


def test_losses_reduce_to_zero_dimensional_tensors():
    assert loss.mse(fg.ones(2, 2), np.zeros((2, 2))).shape == ()
    assert loss.l1(fg.ones(2, 2), np.zeros((2, 2)), reduction="sum").shape == ()


def test_bce_at_probabilities_zero_and_one_stays_finite_with_log_clamped_at_minus_100():
    p = fg.Tensor([0.0, 1.0, 0.0, 1.0], requires_grad=True)
    out = loss.binary_cross_entropy(p, [1.0, 0.0, 0.0, 1.0], reduction="none")
    assert_close(out, [100.0, 100.0, 0.0, 0.0])
    out.sum().backward()
    assert np.all(np.isfinite(p.grad.numpy()))


def test_bce_rejects_probabilities_outside_zero_to_one():
    with pytest.raises(ValueError):
        loss.binary_cross_entropy(fg.Tensor([1.5]), [1.0])


def test_bce_with_logits_is_stable_for_huge_logits_and_exact_at_zero():
    x = fg.Tensor([1000.0, -1000.0, 0.0], dtype="float64", requires_grad=True)
    y = np.array([0.0, 1.0, 1.0])
    out = loss.binary_cross_entropy_with_logits(x, y, reduction="none")
    assert_close(out, [1000.0, 1000.0, np.log(2.0)])
    out.sum().backward()
    assert_close(x.grad, np.array([1.0, 0.0, 0.5]) - y)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_cross_entropy_matches_log_softmax_and_nll_in_numpy(reduction):
    logits = rng.standard_normal((5, 4))
    classes = np.array([0, 3, 1, 1, 2])
    expected = -np_log_softmax(logits)[np.arange(5), classes]
    out = loss.cross_entropy(t64(logits), classes, reduction=reduction)
    assert_close(out, REDUCE[reduction](expected), rtol=1e-10, atol=1e-12)


def test_cross_entropy_with_label_smoothing_mixes_in_the_uniform_distribution():
    logits = rng.standard_normal((3, 4))
    classes = [2, 0, 3]
    q = np.full((3, 4), 0.2 / 4)
    q[np.arange(3), classes] += 0.8
    expected = -(q * np_log_softmax(logits)).sum(axis=1).mean()
    assert_close(
        loss.cross_entropy(t64(logits), classes, label_smoothing=0.2),
        expected,
        rtol=1e-10,
        atol=1e-12,
    )


def test_cross_entropy_gradients_pass_gradcheck():
    classes = [1, 0, 2]
    logits = rng.standard_normal((3, 3))
    assert fg.gradcheck(lambda z: loss.cross_entropy(z, classes), [logits])
    assert fg.gradcheck(lambda z: loss.cross_entropy(z, classes, label_smoothing=0.1), [logits])


@pytest.mark.parametrize(
    "classes",
    [
        [0, 2, 1],
        np.array([0, 2, 1]),
        np.array([0.0, 2.0, 1.0], dtype=np.float32),
        fg.Tensor([0.0, 2.0, 1.0]),
    ],
    ids=["list", "int array", "whole floats", "tensor"],
)
def test_cross_entropy_accepts_every_form_of_class_target(classes):
    logits = rng.standard_normal((3, 3))
    expected = -np_log_softmax(logits)[np.arange(3), [0, 2, 1]].mean()
    assert_close(loss.cross_entropy(t64(logits), classes), expected, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize(
    "classes", [[0, 3], [-1, 0], [0.5, 1.0]], ids=["too large", "negative", "fractional"]
)
def test_cross_entropy_rejects_bad_class_targets(classes):
    with pytest.raises(ValueError):
        loss.cross_entropy(fg.randn(2, 3), classes)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_picks_the_negative_log_probability_of_each_class(reduction):
    log_probs = np_log_softmax(rng.standard_normal((4, 3)))
    classes = np.array([2, 2, 0, 1])
    out = loss.nll(t64(log_probs), classes, reduction=reduction)
    assert_close(out, REDUCE[reduction](-log_probs[np.arange(4), classes]), rtol=1e-10, atol=1e-12)
    assert fg.gradcheck(lambda lp: loss.nll(lp, classes, reduction=reduction), [log_probs])


@pytest.mark.parametrize(
    "cls, fn, args",
    [
        (loss.MSELoss, loss.mse, ()),
        (loss.L1Loss, loss.l1, ()),
        (loss.BCELoss, loss.binary_cross_entropy, ()),
        (loss.BCEWithLogitsLoss, loss.binary_cross_entropy_with_logits, ()),
    ],
    ids=["MSELoss", "L1Loss", "BCELoss", "BCEWithLogitsLoss"],
)
def test_class_forms_call_their_functions(cls, fn, args):
    p = fg.Tensor(rng.uniform(0.1, 0.9, (3, 2)))
    y = rng.uniform(0, 1, (3, 2))
    assert_close(cls(reduction="sum")(p, y), fn(p, y, reduction="sum"))


def test_cross_entropy_and_nll_class_forms_match_the_functions():
    z = fg.Tensor(rng.standard_normal((3, 4)))
    classes = [3, 0, 1]
    assert_close(
        loss.CrossEntropyLoss(label_smoothing=0.1)(z, classes),
        loss.cross_entropy(z, classes, label_smoothing=0.1),
    )
    assert_close(
        loss.NLLLoss(reduction="none")(z.log_softmax(), classes),
        loss.nll(z.log_softmax(), classes, reduction="none"),
    )
    assert "label_smoothing=0.1" in repr(loss.CrossEntropyLoss(label_smoothing=0.1))
    with pytest.raises(ValueError):
        loss.MSELoss(reduction="mean please")
