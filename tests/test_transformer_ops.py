"""The ops a transformer needs (issue 11 part 1): forward against NumPy, gradients against
finite differences in float64, bad input, and the random ones under ``fg.manual_seed``."""

from __future__ import annotations

import math

import numpy as np
import pytest

import ferrograd as fg

RNG = np.random.default_rng(0)


def randn(*shape: int) -> np.ndarray:
    return RNG.standard_normal(shape)


def t64(a: np.ndarray, grad: bool = False) -> fg.Tensor:
    return fg.Tensor(np.asarray(a, dtype=np.float64), dtype="float64", requires_grad=grad)


# ----------------------------------------------------------------------------- where, masks


@pytest.mark.parametrize(
    ("cshape", "ashape", "bshape"),
    [((3, 4), (3, 4), (3, 4)), ((3, 1), (4,), ()), ((1, 4), (2, 3, 1), (3, 4))],
)
def test_where_matches_numpy_under_broadcasting(cshape, ashape, bshape) -> None:
    c, a, b = RNG.random(cshape) > 0.5, randn(*ashape), randn(*bshape)
    out = fg.where(fg.tensor(c), t64(a), t64(b))
    np.testing.assert_array_equal(out.numpy(), np.where(c, a, b))
    assert out.dtype == "float64"


def test_where_gradients_match_finite_differences_with_broadcasting() -> None:
    c = fg.tensor(RNG.random((3, 4)) > 0.5)
    assert fg.gradcheck(lambda a, b: fg.where(c, a, b), [randn(3, 1), randn(4)])


def test_where_takes_numbers_and_keeps_integers() -> None:
    x = fg.tensor([1, -2, 3])
    out = fg.where(x > 0, x, 0)
    assert out.dtype == "int64"
    assert out.tolist() == [1, 0, 3]
    assert fg.where(x > 0, 1.5, x).dtype == "float32"


def test_where_needs_a_bool_condition() -> None:
    x = fg.randn(3)
    with pytest.raises(TypeError, match="float32"):
        fg.where(x, x, x)
    with pytest.raises(ValueError, match="broadcast"):
        fg.where(fg.ones(2, dtype="bool"), fg.randn(3), 0.0)
    assert x.shape == (3,)


@pytest.mark.parametrize("mshape", [(4, 5), (5,), (1, 5), (4, 1)])
def test_masked_fill_matches_numpy_and_broadcasts_the_mask(mshape) -> None:
    x, m = randn(4, 5), RNG.random(mshape) > 0.5
    out = t64(x).masked_fill(fg.tensor(m), -np.inf)
    np.testing.assert_array_equal(out.numpy(), np.where(np.broadcast_to(m, x.shape), -np.inf, x))
    ints = fg.tensor(np.arange(20).reshape(4, 5)).masked_fill(fg.tensor(m), 7)
    assert ints.dtype == "int64"
    np.testing.assert_array_equal(
        ints.numpy(), np.where(np.broadcast_to(m, x.shape), 7, np.arange(20).reshape(4, 5))
    )


def test_masked_fill_gradient_is_zero_where_filled() -> None:
    m = fg.tensor(RNG.random((1, 5)) > 0.5)
    assert fg.gradcheck(lambda x: x.masked_fill(m, 3.0) * x, [randn(4, 5)])


def test_masked_fill_refuses_a_float_mask_and_one_that_does_not_broadcast() -> None:
    x = fg.randn(2, 3)
    with pytest.raises(TypeError, match="bool"):
        x.masked_fill(fg.ones(2, 3), 0.0)
    with pytest.raises(ValueError, match="broadcast"):
        x.masked_fill(fg.ones(4, 2, 3, dtype="bool"), 0.0)
    with pytest.raises(TypeError, match="number"):
        x.masked_fill(x > 0, "a")
    assert x.shape == (2, 3)


def test_the_causal_attention_pattern_works_end_to_end() -> None:
    att = t64(randn(2, 4, 4), grad=True)
    causal = fg.tril(fg.ones(4, 4)) == 0
    w = att.masked_fill(causal, float("-inf")).softmax(axis=-1)
    expected = np.where(np.triu(np.ones((4, 4)), 1) == 1, -np.inf, att.numpy())
    expected = np.exp(expected - expected.max(-1, keepdims=True))
    np.testing.assert_allclose(w.numpy(), expected / expected.sum(-1, keepdims=True))
    assert fg.gradcheck(
        lambda a: a.masked_fill(causal, float("-inf")).softmax(axis=-1), [att.numpy()]
    )


# ----------------------------------------------------------------------------- tril / triu


@pytest.mark.parametrize("k", [-2, -1, 0, 1, 3])
@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (2, 5, 3)])
def test_tril_and_triu_match_numpy(shape, k) -> None:
    x = randn(*shape)
    np.testing.assert_array_equal(fg.tril(t64(x), k).numpy(), np.tril(x, k))
    np.testing.assert_array_equal(t64(x).triu(k).numpy(), np.triu(x, k))
    ints = np.arange(math.prod(shape)).reshape(shape)
    np.testing.assert_array_equal(fg.triu(fg.tensor(ints), k=k).numpy(), np.triu(ints, k))


def test_tril_gradient_and_bad_rank() -> None:
    assert fg.gradcheck(lambda x: fg.tril(x, -1) + fg.triu(x, 1) * 2, [randn(2, 3, 3)])
    with pytest.raises(ValueError, match="2 dimensions"):
        fg.tril(fg.randn(3))


# ----------------------------------------------------------------------------- shapes


def test_unsqueeze_squeeze_view_and_contiguous_match_numpy() -> None:
    x = randn(2, 1, 3)
    t = t64(x)
    assert t.unsqueeze(0).shape == (1, 2, 1, 3)
    assert t.unsqueeze(-1).shape == (2, 1, 3, 1)
    assert t.squeeze().shape == (2, 3)
    assert t.squeeze(1).shape == (2, 3)
    assert t.squeeze(0).shape == (2, 1, 3)  # not of length 1: unchanged
    assert t.squeeze((1, -1)).shape == (2, 3)
    np.testing.assert_array_equal(t.view(3, -1).numpy(), x.reshape(3, -1))
    np.testing.assert_array_equal(t.view((6,)).numpy(), x.reshape(6))
    c = t.contiguous()
    assert c.shape == t.shape and c.dtype == t.dtype
    assert fg.gradcheck(lambda a: a.unsqueeze(1).squeeze(2).view(3, 2) * 2, [x])


def test_shape_ops_refuse_bad_axes_and_sizes() -> None:
    t = fg.randn(2, 3)
    with pytest.raises(fg.AxisError):
        t.unsqueeze(3)
    with pytest.raises(fg.AxisError):
        t.squeeze(2)
    with pytest.raises(ValueError):
        t.view(4, 2)
    with pytest.raises(ValueError, match="length 3"):
        t.expand(2, 4)
    with pytest.raises(ValueError):
        t.expand(3)
    assert t.shape == (2, 3)


@pytest.mark.parametrize(
    ("shape", "target"),
    [((3, 1), (3, 4)), ((1,), (2, 3, 5)), ((2, 1, 3), (4, 2, -1, 3)), ((3,), (-1,))],
)
def test_expand_matches_numpy_broadcast_and_sums_gradients(shape, target) -> None:
    x = randn(*shape)
    full = tuple(
        s if s != -1 else x.shape[i - (len(target) - len(shape))] for i, s in enumerate(target)
    )
    np.testing.assert_array_equal(t64(x).expand(*target).numpy(), np.broadcast_to(x, full))
    assert fg.gradcheck(lambda a: a.expand(*target), [x])


@pytest.mark.parametrize(("n", "size", "axis"), [(7, 3, 0), (6, 2, -1), (5, 5, 1), (4, 9, 0)])
def test_split_matches_numpy_pieces(n, size, axis) -> None:
    shape = [n, n + 1]
    shape[axis] = n
    x = randn(*shape)
    parts = t64(x).split(size, axis)
    edges = list(range(size, n, size))
    expected = np.split(x, edges, axis=axis)
    assert len(parts) == len(expected)
    for p, e in zip(parts, expected):
        np.testing.assert_array_equal(p.numpy(), e)


def test_split_takes_section_sizes_and_checks_them() -> None:
    x = randn(2, 7)
    _, b, c = t64(x).split([2, 4, 1], axis=1)
    np.testing.assert_array_equal(b.numpy(), x[:, 2:6])
    assert c.shape == (2, 1)
    with pytest.raises(ValueError, match="add up"):
        t64(x).split([2, 2], axis=1)
    with pytest.raises(fg.AxisError):
        t64(x).split(2, axis=2)


@pytest.mark.parametrize(("n", "k"), [(10, 3), (6, 3), (5, 2), (2, 4)])
def test_chunk_makes_ceil_sized_pieces_the_last_smaller(n, k) -> None:
    x = randn(n, 2)
    parts = t64(x).chunk(k)
    step = -(-n // k)
    expected = [x[i : i + step] for i in range(0, n, step)]
    assert [p.shape for p in parts] == [e.shape for e in expected]
    for p, e in zip(parts, expected):
        np.testing.assert_array_equal(p.numpy(), e)
    with pytest.raises(ValueError):
        t64(x).chunk(0)


def test_split_and_chunk_pieces_carry_gradients_back() -> None:
    def f(x):
        q, k, v = x.split(2, axis=-1)
        a, b = x.chunk(2, axis=0)
        return (q * k - v).sum(axis=-1) + a.sum() * b.sum()

    assert fg.gradcheck(f, [randn(4, 6)])


# ----------------------------------------------------------------------------- gather, one_hot


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_gather_matches_numpy_take_along_axis(axis) -> None:
    x = randn(4, 5)
    ishape = [4, 5]
    ax = axis % 2
    ishape[ax] = 3
    idx = RNG.integers(0, x.shape[ax], size=ishape)
    out = t64(x).gather(axis, fg.tensor(idx))
    np.testing.assert_array_equal(out.numpy(), np.take_along_axis(x, idx, axis=axis))
    out32 = t64(x).gather(axis, fg.tensor(idx.astype(np.int32)))
    np.testing.assert_array_equal(out32.numpy(), out.numpy())
    assert fg.gradcheck(lambda a: a.gather(axis, fg.tensor(idx)), [x])


def test_gather_index_smaller_than_input_on_other_axes() -> None:
    x = randn(3, 4)
    idx = np.array([[0, 3], [2, 2]])
    expected = np.array([[x[0, 0], x[0, 3]], [x[1, 2], x[1, 2]]])
    np.testing.assert_array_equal(t64(x).gather(1, fg.tensor(idx)).numpy(), expected)


def test_gather_refuses_bad_indices() -> None:
    x = fg.randn(2, 3)
    with pytest.raises(TypeError, match="float32"):
        x.gather(1, fg.zeros(2, 1))
    with pytest.raises(IndexError, match="out of bounds"):
        x.gather(1, fg.tensor([[3], [0]]))
    with pytest.raises(IndexError, match="out of bounds"):
        x.gather(1, fg.tensor([[-1], [0]]))
    with pytest.raises(ValueError, match="dimensions"):
        x.gather(1, fg.tensor([0, 1]))
    with pytest.raises(fg.AxisError):
        x.gather(2, fg.tensor([[0], [0]]))
    assert x.shape == (2, 3)


def test_one_hot_gives_int64_like_numpy_eye() -> None:
    i = np.array([[0, 2], [1, 3]])
    out = fg.one_hot(fg.tensor(i), 5)
    assert out.dtype == "int64"
    np.testing.assert_array_equal(out.numpy(), np.eye(5, dtype=np.int64)[i])
    assert fg.one_hot(fg.tensor([1, 3])).shape == (2, 4)
    with pytest.raises(IndexError):
        fg.one_hot(fg.tensor([0, 5]), 5)
    with pytest.raises(IndexError):
        fg.one_hot(fg.tensor([-1]), 3)
    with pytest.raises(TypeError, match="float32"):
        fg.one_hot(fg.zeros(2), 3)


# ----------------------------------------------------------------------------- clamp, max/min


def test_clamp_method_takes_either_bound_alone_and_keeps_integers() -> None:
    x = randn(3, 4)
    np.testing.assert_array_equal(t64(x).clamp(-0.5, 0.5).numpy(), np.clip(x, -0.5, 0.5))
    np.testing.assert_array_equal(t64(x).clamp(min=0).numpy(), np.maximum(x, 0))
    np.testing.assert_array_equal(t64(x).clamp(max=0.1).numpy(), np.minimum(x, 0.1))
    i = fg.tensor([-3, 0, 5])
    assert i.clamp(-1, 2).tolist() == [-1, 0, 2] and i.clamp(-1, 2).dtype == "int64"
    assert i.clamp(max=0.5).dtype == "float32"
    lo = t64(np.zeros((1, 4)))
    np.testing.assert_array_equal(t64(x).clamp(min=lo).numpy(), np.maximum(x, 0))
    with pytest.raises(ValueError, match="at least one"):
        t64(x).clamp()
    assert fg.gradcheck(lambda a: a.clamp(-0.5, 0.5), [x])


def test_maximum_and_minimum_take_a_number_on_either_side() -> None:
    x = randn(3, 4)
    np.testing.assert_array_equal(fg.maximum(t64(x), 0.0).numpy(), np.maximum(x, 0))
    np.testing.assert_array_equal(fg.minimum(0.0, t64(x)).numpy(), np.minimum(x, 0))
    y = randn(4)
    np.testing.assert_array_equal(fg.maximum(t64(x), t64(y)).numpy(), np.maximum(x, y))
    i = fg.maximum(fg.tensor([1, 5, -2]), 0)
    assert i.dtype == "int64" and i.tolist() == [1, 5, 0]
    assert fg.gradcheck(lambda a, b: fg.maximum(a, b) + fg.minimum(a, b) * 3, [x, y])


# ----------------------------------------------------------------------------- math


def test_sin_cos_pow_rsqrt_match_numpy_with_gradients() -> None:
    x = randn(3, 4)
    pos = np.abs(x) + 0.5
    np.testing.assert_allclose(t64(x).sin().numpy(), np.sin(x), rtol=1e-14)
    np.testing.assert_allclose(t64(x).cos().numpy(), np.cos(x), rtol=1e-14)
    np.testing.assert_allclose(t64(pos).rsqrt().numpy(), 1 / np.sqrt(pos), rtol=1e-14)
    np.testing.assert_allclose(t64(pos).pow(1.5).numpy(), pos**1.5, rtol=1e-14)
    np.testing.assert_allclose(t64(pos).pow(t64(x)).numpy(), pos**x, rtol=1e-14)
    assert fg.gradcheck(lambda a: a.sin() * a.cos(), [x])
    assert fg.gradcheck(lambda a: a.rsqrt(), [pos])
    assert fg.gradcheck(lambda a, b: a.pow(b) + a.pow(2), [pos, x])
    assert fg.randn(2).sin().dtype == "float32"


@pytest.mark.parametrize("name", ["sin", "cos", "rsqrt", "var", "std"])
def test_float_only_math_names_the_integer_dtype(name) -> None:
    i = fg.tensor([1, 2, 3])
    with pytest.raises(TypeError, match="int64"):
        getattr(i, name)()
    with pytest.raises(TypeError, match="int64"):
        i.logsumexp(0)
    assert i.tolist() == [1, 2, 3]


@pytest.mark.parametrize("axis", [None, 0, -1, (0, 2)])
@pytest.mark.parametrize("correction", [0, 1, 2])
@pytest.mark.parametrize("keepdims", [False, True])
def test_var_and_std_match_numpy(axis, correction, keepdims) -> None:
    x = randn(3, 4, 5)
    v = t64(x).var(axis, correction=correction, keepdims=keepdims)
    np.testing.assert_allclose(
        v.numpy(), np.var(x, axis=axis, ddof=correction, keepdims=keepdims), rtol=1e-12
    )
    s = t64(x).std(axis, correction=correction, keepdims=keepdims)
    np.testing.assert_allclose(
        s.numpy(), np.std(x, axis=axis, ddof=correction, keepdims=keepdims), rtol=1e-12
    )


def test_var_and_std_gradients_match_finite_differences() -> None:
    assert fg.gradcheck(lambda a: a.var(-1), [randn(3, 5)])
    assert fg.gradcheck(lambda a: a.std((0, 1), correction=0, keepdims=True), [randn(3, 5)])
    assert fg.gradcheck(lambda a: a.std(), [randn(4)])
    with pytest.raises(fg.AxisError):
        fg.randn(2, 3).var(2)


@pytest.mark.parametrize("axis", [0, -1, (0, 1)])
def test_logsumexp_matches_numpy_and_stays_finite(axis) -> None:
    x = randn(3, 4)
    expected = np.log(np.exp(x).sum(axis=axis))
    np.testing.assert_allclose(t64(x).logsumexp(axis).numpy(), expected, rtol=1e-12)
    big = t64(x + 1000.0).logsumexp(axis, keepdims=True).numpy()
    np.testing.assert_allclose(big, np.log(np.exp(x).sum(axis=axis, keepdims=True)) + 1000.0)
    assert fg.gradcheck(lambda a: a.logsumexp(axis), [x])
    lane = fg.Tensor([[-np.inf, -np.inf], [0.0, -np.inf]]).logsumexp(1)
    assert lane.tolist() == [-np.inf, 0.0]


@pytest.mark.parametrize("axis", [0, 1, -1])
def test_cumsum_matches_numpy_and_lifts_integers_to_int64(axis) -> None:
    x = randn(3, 4)
    np.testing.assert_allclose(t64(x).cumsum(axis).numpy(), np.cumsum(x, axis=axis), rtol=1e-12)
    assert fg.gradcheck(lambda a: a.cumsum(axis), [x])
    i = fg.tensor(np.arange(12, dtype=np.int32).reshape(3, 4))
    out = i.cumsum(axis)
    assert out.dtype == "int64"
    np.testing.assert_array_equal(out.numpy(), np.cumsum(np.arange(12).reshape(3, 4), axis=axis))
    assert (fg.tensor([True, False, True]).cumsum(0)).tolist() == [1, 1, 2]
    with pytest.raises(fg.AxisError):
        t64(x).cumsum(2)


# ----------------------------------------------------------------------------- topk


@pytest.mark.parametrize("axis", [0, -1])
@pytest.mark.parametrize("largest", [True, False])
def test_topk_matches_numpy_sort(axis, largest) -> None:
    x = randn(5, 6)
    values, indices = t64(x).topk(3, axis=axis, largest=largest)
    assert indices.dtype == "int64"
    order = np.argsort(-x if largest else x, axis=axis, kind="stable")
    idx = np.take(order, np.arange(3), axis=axis)
    np.testing.assert_array_equal(indices.numpy(), idx)
    np.testing.assert_array_equal(values.numpy(), np.take_along_axis(x, idx, axis=axis))
    assert fg.gradcheck(lambda a: a.topk(3, axis=axis, largest=largest)[0], [x])


def test_topk_on_integers_and_bad_k() -> None:
    v, i = fg.tensor([3, 1, 4, 1, 5]).topk(2)
    assert v.tolist() == [5, 4] and i.tolist() == [4, 2] and v.dtype == "int64"
    with pytest.raises(ValueError, match="larger"):
        fg.randn(2, 3).topk(4)
    with pytest.raises(fg.AxisError):
        fg.randn(2, 3).topk(1, axis=2)


# ----------------------------------------------------------------------------- random


def test_randint_and_randperm_repeat_under_manual_seed() -> None:
    fg.manual_seed(5)
    a, p = fg.randint(0, 10, (3, 4)), fg.randperm(20)
    fg.manual_seed(5)
    b, q = fg.randint(0, 10, (3, 4)), fg.randperm(20)
    assert a.dtype == "int64" and p.dtype == "int64"
    assert a.tolist() == b.tolist() and p.tolist() == q.tolist()
    assert a.shape == (3, 4) and 0 <= a.numpy().min() and a.numpy().max() < 10
    assert sorted(p.tolist()) == list(range(20))
    assert fg.randint(5, (2,)).shape == (2,)
    with pytest.raises(ValueError, match="less than"):
        fg.randint(3, 3, (2,))


def test_multinomial_repeats_under_manual_seed_and_has_the_right_shape() -> None:
    probs = fg.Tensor([[0.1, 0.2, 0.7], [0.5, 0.5, 0.0]])
    fg.manual_seed(1)
    a = fg.multinomial(probs, 2)
    fg.manual_seed(1)
    b = probs.multinomial(2)
    assert a.dtype == "int64" and a.shape == (2, 2)
    assert a.tolist() == b.tolist()
    assert len(set(a.tolist()[0])) == 2  # without replacement: distinct
    assert set(a.tolist()[1]) == {0, 1}
    assert fg.multinomial(fg.Tensor([1.0, 3.0]), 5, replacement=True).shape == (5,)


def test_multinomial_follows_the_weights() -> None:
    fg.manual_seed(1234)
    w = np.array([1.0, 2.0, 3.0, 0.0, 4.0])
    n = 20000
    counts = np.bincount(fg.multinomial(fg.Tensor(w), n, replacement=True).numpy(), minlength=5)
    expected = n * w / w.sum()
    assert counts[3] == 0
    keep = expected > 0
    chi2 = (((counts - expected) ** 2)[keep] / expected[keep]).sum()
    assert chi2 < 20.0  # 3 degrees of freedom: p < 0.0002
    # Without replacement, the first draw follows the weights too.
    firsts = [int(fg.multinomial(fg.Tensor(w), 2).numpy()[0]) for _ in range(2000)]
    first_counts = np.bincount(firsts, minlength=5)
    exp2 = 2000 * w / w.sum()
    chi2b = (((first_counts - exp2) ** 2)[keep] / exp2[keep]).sum()
    assert chi2b < 20.0


@pytest.mark.parametrize("bad", [[1.0, -0.5], [float("nan"), 1.0], [0.0, 0.0]])
def test_multinomial_refuses_bad_rows(bad) -> None:
    with pytest.raises(ValueError):
        fg.multinomial(fg.Tensor(bad), 1, replacement=True)


def test_multinomial_refuses_too_many_samples_without_replacement() -> None:
    with pytest.raises(ValueError, match="without replacement"):
        fg.multinomial(fg.Tensor([1.0, 0.0, 1.0]), 3)
    with pytest.raises(TypeError, match="int64"):
        fg.multinomial(fg.tensor([1, 2]), 1)
