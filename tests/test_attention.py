"""fg.functional.scaled_dot_product_attention: forward against a NumPy reference, gradients
by finite differences, masks, dropout, errors, and (when torch is installed) PyTorch's SDPA."""

import numpy as np
import pytest

import ferrograd as fg
from ferrograd.functional import scaled_dot_product_attention as sdpa

RTOL = {"float32": 2e-5, "float64": 1e-12}


def reference(q, k, v, mask=None, is_causal=False, scale=None):
    """Attention in float64 NumPy, with every mask materialised."""
    q, k, v = (np.asarray(x, dtype=np.float64) for x in (q, k, v))
    scale = 1.0 / np.sqrt(q.shape[-1]) if scale is None else scale
    scores = np.matmul(q, np.swapaxes(k, -1, -2)) * scale
    L, S = scores.shape[-2:]
    if is_causal:
        scores = np.where(np.tril(np.ones((L, S), dtype=bool)), scores, -np.inf)
    if mask is not None:
        mask = np.asarray(mask)
        scores = np.where(mask, scores, -np.inf) if mask.dtype == bool else scores + mask
    # A row masked everywhere attends to nothing: 0, as PyTorch's "safe" softmax gives.
    dead = np.all(scores == -np.inf, axis=-1, keepdims=True)
    scores = np.where(dead, 0.0, scores)
    e = np.exp(scores - scores.max(axis=-1, keepdims=True))
    return np.matmul(np.where(dead, 0.0, e / e.sum(axis=-1, keepdims=True)), v)


def rand(rng, *shape):
    return rng.standard_normal(shape)


def keep_mask(rng, shape):
    """About 70% True, and the first column always, so no row is fully masked."""
    m = rng.random(shape) < 0.7
    m[..., 0] = True
    return m


# (name, query shape, key shape, value shape, mask maker or "causal")
CASES = [
    ("one head", (2, 1, 5, 4), (2, 1, 6, 4), (2, 1, 6, 3), None),
    ("two heads", (2, 2, 5, 4), (2, 2, 6, 4), (2, 2, 6, 3), None),
    ("four heads, no batch", (4, 7, 8), (4, 7, 8), (4, 7, 8), None),
    ("causal", (2, 4, 7, 4), (2, 4, 7, 4), (2, 4, 7, 5), "causal"),
    ("causal L < S", (3, 4, 2), (3, 9, 2), (3, 9, 3), "causal"),
    ("causal L > S", (3, 9, 2), (3, 4, 2), (3, 4, 3), "causal"),
    ("causal, long", (1, 2, 150, 8), (1, 2, 150, 8), (1, 2, 150, 8), "causal"),
    ("causal, nanoGPT's shapes", (12, 4, 64, 32), (12, 4, 64, 32), (12, 4, 64, 32), "causal"),
    ("bool mask (L, S)", (2, 3, 5, 4), (2, 3, 6, 4), (2, 3, 6, 3), lambda r: keep_mask(r, (5, 6))),
    (
        "bool mask (B, 1, L, S)",
        (2, 3, 5, 4),
        (2, 3, 6, 4),
        (2, 3, 6, 3),
        lambda r: keep_mask(r, (2, 1, 5, 6)),
    ),
    (
        "float mask (B, H, 1, S) with -inf",
        (2, 3, 5, 4),
        (2, 3, 6, 4),
        (2, 3, 6, 3),
        lambda r: np.where(keep_mask(r, (2, 3, 1, 6)), rand(r, 2, 3, 1, 6), -np.inf),
    ),
    (
        "bool mask, one row masked everywhere",
        (2, 5, 4),
        (2, 6, 4),
        (2, 6, 3),
        lambda r: np.where(np.arange(5)[:, None] == 2, False, keep_mask(r, (5, 6))),
    ),
    ("leading axes broadcast", (2, 3, 5, 4), (3, 6, 4), (1, 1, 6, 2), None),
    ("2-D operands", (5, 4), (6, 4), (6, 3), None),
]


def make(case, dtype, seed=0):
    _, qs, ks, vs, masker = case
    rng = np.random.default_rng(seed)
    q, k, v = (rand(rng, *s).astype(dtype) for s in (qs, ks, vs))
    mask = masker(rng) if callable(masker) else None
    return q, k, v, mask, masker == "causal"


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_the_forward_matches_a_numpy_reference(case, dtype):
    q, k, v, mask, causal = make(case, dtype)
    attn_mask = None if mask is None else (mask if mask.dtype == bool else mask.astype(dtype))
    got = sdpa(fg.Tensor(q), fg.Tensor(k), fg.Tensor(v), attn_mask=attn_mask, is_causal=causal)
    assert got.dtype == dtype
    want = reference(q, k, v, mask, causal)
    np.testing.assert_allclose(got.numpy(), want, rtol=RTOL[dtype], atol=RTOL[dtype])


@pytest.mark.parametrize("case", CASES, ids=[c[0] for c in CASES])
def test_gradients_of_query_key_and_value_match_finite_differences(case):
    q, k, v, mask, causal = make(case, "float64", seed=1)
    if q.size > 1000:
        pytest.skip("finite differences of the long case are covered in Rust")
    attn_mask = None if mask is None else mask

    def f(q, k, v):
        return sdpa(q, k, v, attn_mask=attn_mask, is_causal=causal)

    assert fg.gradcheck(f, [fg.Tensor(q), fg.Tensor(k), fg.Tensor(v)])


def test_a_custom_scale_replaces_one_over_sqrt_e():
    rng = np.random.default_rng(2)
    q, k, v = rand(rng, 2, 5, 4), rand(rng, 2, 6, 4), rand(rng, 2, 6, 3)
    got = sdpa(fg.Tensor(q), fg.Tensor(k), fg.Tensor(v), scale=0.3)
    np.testing.assert_allclose(got.numpy(), reference(q, k, v, scale=0.3), rtol=1e-12)
    assert fg.gradcheck(lambda q, k, v: sdpa(q, k, v, scale=0.3, is_causal=True), [q, k, v])


def test_masks_may_be_lists_numpy_arrays_or_tensors():
    rng = np.random.default_rng(3)
    q, k, v = rand(rng, 3, 4), rand(rng, 5, 4), rand(rng, 5, 2)
    keep = keep_mask(rng, (3, 5))
    want = reference(q, k, v, keep)
    for m in (keep, keep.tolist()):
        got = sdpa(q, k, v, attn_mask=m)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-12)
    add = np.where(keep, 0.0, -np.inf)
    for m in (add, fg.Tensor(add), fg.NdArray(add), add.tolist()):
        got = sdpa(q, k, v, attn_mask=m)
        np.testing.assert_allclose(got.numpy(), want, rtol=1e-6)


def test_a_row_with_every_position_masked_is_zero_with_zero_gradient_as_in_pytorch():
    rng = np.random.default_rng(4)
    q, k, v = rand(rng, 3, 2), rand(rng, 4, 2), rand(rng, 4, 2)
    keep = np.array([[1, 0, 1, 1], [0, 0, 0, 0], [0, 1, 1, 0]], dtype=bool)
    for mask in (keep, np.where(keep, 0.0, -np.inf)):
        tq = fg.Tensor(q, requires_grad=True)
        out = sdpa(tq, k, v, attn_mask=mask)
        np.testing.assert_array_equal(out.numpy()[1], [0.0, 0.0])
        np.testing.assert_allclose(out.numpy(), reference(q, k, v, keep), rtol=1e-12)
        out.sum().backward()
        np.testing.assert_array_equal(tq.grad.numpy()[1], [0.0, 0.0])
    assert fg.gradcheck(lambda q, k, v: sdpa(q, k, v, attn_mask=keep), [q, k, v])


def test_a_nan_score_makes_its_row_nan():
    rng = np.random.default_rng(4)
    q, k, v = rand(rng, 3, 2), rand(rng, 4, 2), rand(rng, 4, 2)
    q[0, 0] = np.nan
    out = sdpa(q, k, v).numpy()
    assert np.isnan(out[0]).all() and np.isfinite(out[1:]).all()


def test_operands_of_float32_and_float64_promote_to_float64():
    rng = np.random.default_rng(5)
    q = fg.Tensor(rand(rng, 2, 3, 4).astype("float32"), requires_grad=True)
    k = fg.Tensor(rand(rng, 2, 3, 4), requires_grad=True)
    v = fg.Tensor(rand(rng, 2, 3, 4).astype("float32"), requires_grad=True)
    out = sdpa(q, k, v, is_causal=True)
    assert out.dtype == "float64"
    out.sum().backward()
    assert (q.grad.dtype, k.grad.dtype, v.grad.dtype) == ("float32", "float64", "float32")


def test_self_attention_with_one_tensor_as_query_key_and_value_sums_its_three_gradients():
    rng = np.random.default_rng(6)
    x = rand(rng, 2, 5, 4)
    assert fg.gradcheck(lambda x: sdpa(x, x, x, is_causal=True), [x])


def test_gradients_of_broadcast_operands_are_summed_to_their_shapes():
    rng = np.random.default_rng(7)
    q = fg.Tensor(rand(rng, 2, 3, 5, 4), requires_grad=True)
    k = fg.Tensor(rand(rng, 3, 6, 4), requires_grad=True)
    v = fg.Tensor(rand(rng, 1, 1, 6, 2), requires_grad=True)
    sdpa(q, k, v).sum().backward()
    assert (q.grad.shape, k.grad.shape, v.grad.shape) == ((2, 3, 5, 4), (3, 6, 4), (1, 1, 6, 2))


def test_a_retained_graph_gives_the_same_gradients_twice():
    rng = np.random.default_rng(10)
    q, k, v = (fg.Tensor(rand(rng, 2, 3, 6, 4), requires_grad=True) for _ in range(3))
    out = sdpa(q, k, v, is_causal=True)
    g = rand(rng, 2, 3, 6, 4)
    out.backward(g, retain_graph=True)
    first = [t.grad.numpy().copy() for t in (q, k, v)]
    out.backward(g)
    for t, once in zip((q, k, v), first):
        np.testing.assert_allclose(t.grad.numpy(), 2 * once, rtol=1e-6, atol=1e-7)


def test_the_op_records_a_graph_only_when_an_operand_requires_grad():
    x = fg.Tensor(np.ones((2, 3, 4)))
    assert not sdpa(x, x, x).requires_grad
    y = fg.Tensor(np.ones((2, 3, 4)), requires_grad=True)
    out = sdpa(x, y, x)
    assert out.requires_grad and out._op == "scaled_dot_product_attention"
    with fg.no_grad():
        assert not sdpa(y, y, y).requires_grad


@pytest.mark.parametrize("threads", [2, 3, 5])
@pytest.mark.parametrize(
    "shape", [(6, 4, 40, 16), (1, 1, 300, 16)], ids=["many slices", "one long slice"]
)
def test_results_do_not_depend_on_the_thread_count(threads, shape):
    # Sizes above the parallel threshold: row blocks and slices (and, for one slice, parts of
    # its row blocks with their own dK/dV sums) spread over the threads.
    rng = np.random.default_rng(14)
    arrays = [rand(rng, *shape) for _ in range(3)]
    g = rand(rng, *shape)

    def run():
        q, k, v = (fg.Tensor(a, requires_grad=True) for a in arrays)
        out = sdpa(q, k, v, is_causal=True)
        out.backward(g)
        return [out.numpy()] + [t.grad.numpy() for t in (q, k, v)]

    fg.set_num_threads(1)
    try:
        want = run()
        fg.set_num_threads(threads)
        got = run()
    finally:
        fg.set_num_threads(0)
    np.testing.assert_allclose(want[0], reference(*arrays, is_causal=True), rtol=1e-12, atol=1e-12)
    for x, y in zip(got, want):
        np.testing.assert_allclose(x, y, rtol=1e-12, atol=1e-12)


class TestDropout:
    def setup_method(self):
        rng = np.random.default_rng(8)
        self.qkv = [fg.Tensor(rand(rng, 2, 4, 16, 8)) for _ in range(3)]

    def run(self, seed, p=0.3):
        fg.manual_seed(seed)
        return sdpa(*self.qkv, dropout_p=p).numpy()

    def test_dropout_is_reproducible_under_manual_seed(self):
        np.testing.assert_array_equal(self.run(0), self.run(0))
        assert not np.array_equal(self.run(0), self.run(1))

    def test_dropout_applies_whenever_p_is_positive_and_p_one_gives_zeros(self):
        plain = sdpa(*self.qkv).numpy()
        assert not np.allclose(self.run(0), plain)
        np.testing.assert_array_equal(self.run(0, p=1.0), np.zeros_like(plain))
        np.testing.assert_array_equal(sdpa(*self.qkv, dropout_p=0.0).numpy(), plain)

    def test_dropout_keeps_the_expected_output_on_average(self):
        # E[dropout(P) / (1 - p)] = P: the mean over many seeds approaches the plain output.
        plain = sdpa(*self.qkv).numpy()
        mean = np.mean([self.run(s, p=0.5) for s in range(200)], axis=0)
        assert np.abs(mean - plain).mean() < 0.05 * np.abs(plain).mean() + 0.01

    def test_gradients_with_dropout_match_finite_differences_under_a_fixed_seed(self):
        rng = np.random.default_rng(9)
        q, k, v = rand(rng, 2, 5, 3), rand(rng, 2, 6, 3), rand(rng, 2, 6, 2)

        def f(q, k, v):
            fg.manual_seed(11)
            return sdpa(q, k, v, dropout_p=0.4, is_causal=True)

        assert fg.gradcheck(f, [q, k, v])

    @pytest.mark.parametrize("p", [-0.1, 1.5, float("nan")])
    def test_a_probability_outside_zero_to_one_is_a_value_error(self, p):
        with pytest.raises(ValueError, match="dropout_p"):
            sdpa(*self.qkv, dropout_p=p)


class TestErrors:
    def test_query_and_key_of_different_embedding_sizes_are_a_value_error_naming_both(self):
        with pytest.raises(ValueError, match=r"\(2, 5, 4\).*\(2, 6, 3\)"):
            sdpa(np.ones((2, 5, 4)), np.ones((2, 6, 3)), np.ones((2, 6, 3)))

    def test_key_and_value_of_different_lengths_are_a_value_error(self):
        with pytest.raises(ValueError, match="sequence length"):
            sdpa(np.ones((2, 5, 4)), np.ones((2, 6, 4)), np.ones((2, 7, 3)))

    def test_batch_axes_that_do_not_broadcast_are_a_value_error(self):
        with pytest.raises(ValueError, match="broadcast"):
            sdpa(np.ones((2, 5, 4)), np.ones((3, 6, 4)), np.ones((3, 6, 4)))

    def test_a_one_dimensional_operand_is_a_value_error(self):
        with pytest.raises(ValueError, match="query"):
            sdpa(np.ones(4), np.ones((6, 4)), np.ones((6, 4)))

    @pytest.mark.parametrize("shape", [(5, 7), (6, 5), (3, 5, 6), (1, 2, 5, 6)])
    @pytest.mark.parametrize("kind", [bool, np.float64])
    def test_a_mask_of_the_wrong_shape_is_a_value_error_naming_it(self, shape, kind):
        mask = np.ones(shape, dtype=kind)
        with pytest.raises(ValueError, match=r"attn_mask of shape \(" + str(shape[0])):
            sdpa(np.ones((2, 5, 4)), np.ones((2, 6, 4)), np.ones((2, 6, 3)), attn_mask=mask)

    def test_is_causal_with_a_mask_is_a_value_error(self):
        x = np.ones((2, 3, 4))
        with pytest.raises(ValueError, match="is_causal"):
            sdpa(x, x, x, attn_mask=np.ones((3, 3), dtype=bool), is_causal=True)

    @pytest.mark.parametrize("dtype", [np.int64, np.int32, bool])
    def test_a_non_float_query_is_a_type_error(self, dtype):
        x = np.ones((2, 3, 4))
        with pytest.raises(TypeError, match="query"):
            sdpa(np.ones((2, 3, 4), dtype=dtype), x, x)

    def test_an_integer_mask_is_a_type_error(self):
        x = np.ones((2, 3, 4))
        with pytest.raises(TypeError, match="attn_mask"):
            sdpa(x, x, x, attn_mask=np.ones((3, 3), dtype=np.int64))


TORCH_CASES = [c for c in CASES if c[4] is not None]


@pytest.mark.parametrize("case", TORCH_CASES, ids=[c[0] for c in TORCH_CASES])
def test_forward_and_backward_match_pytorch_when_it_is_installed(case):
    torch = pytest.importorskip("torch")
    q, k, v, mask, causal = make(case, "float64", seed=12)
    tq, tk, tv = (torch.tensor(x, requires_grad=True) for x in (q, k, v))
    tmask = None if mask is None else torch.tensor(mask)
    want = torch.nn.functional.scaled_dot_product_attention(
        tq, tk, tv, attn_mask=tmask, is_causal=causal
    )
    g = np.random.default_rng(13).standard_normal(want.shape)
    want.backward(torch.tensor(g))
    fq, fk, fv = (fg.Tensor(x, requires_grad=True) for x in (q, k, v))
    got = sdpa(fq, fk, fv, attn_mask=mask, is_causal=causal)
    got.backward(g)
    np.testing.assert_allclose(got.numpy(), want.detach().numpy(), rtol=1e-10, atol=1e-12)
    for mine, theirs in ((fq, tq), (fk, tk), (fv, tv)):
        np.testing.assert_allclose(mine.grad.numpy(), theirs.grad.numpy(), atol=1e-10)
