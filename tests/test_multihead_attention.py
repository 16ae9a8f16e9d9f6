"""``layers.MultiheadAttention`` against a NumPy transcription of PyTorch's
``F.multi_head_attention_forward``: outputs, weights, masks (bool = blocked, float = added,
key padding, causal), layouts, PyTorch-named state dicts, gradients and bad input."""

import math

import numpy as np
import pytest

import ferrograd as fg
from ferrograd import layers as nn
from ferrograd.layers import MultiheadAttention

TOL = {"float32": {"rtol": 2e-5, "atol": 2e-6}, "float64": {"rtol": 1e-10, "atol": 1e-12}}


def reference(query, key, value, sd, num_heads, mask=None):
    """PyTorch's algorithm in float64 for batch-first (N, L, E) inputs; ``mask`` is additive,
    broadcastable to (N, H, L, S). Returns (output, per-head weights (N, H, L, S))."""
    W = sd["in_proj_weight"].astype(np.float64)
    b = sd.get("in_proj_bias")
    b = np.zeros(W.shape[0]) if b is None else b.astype(np.float64)
    Wo = sd["out_proj.weight"].astype(np.float64)
    bo = sd.get("out_proj.bias")
    bo = np.zeros(Wo.shape[0]) if bo is None else bo.astype(np.float64)
    n, length, e = query.shape
    source = key.shape[1]
    d = e // num_heads

    def heads(x, i, seq):
        y = x.astype(np.float64) @ W[i * e : (i + 1) * e].T + b[i * e : (i + 1) * e]
        return y.reshape(n, seq, num_heads, d).transpose(0, 2, 1, 3)

    q, k, v = heads(query, 0, length), heads(key, 1, source), heads(value, 2, source)
    scores = (q / math.sqrt(d)) @ k.transpose(0, 1, 3, 2)
    if mask is not None:
        scores = scores + mask
    scores = scores - scores.max(axis=-1, keepdims=True)
    p = np.exp(scores)
    p /= p.sum(axis=-1, keepdims=True)
    out = (p @ v).transpose(0, 2, 1, 3).reshape(n, length, e)
    return out @ Wo.T + bo, p


def _weights(mha):
    return {k: v.numpy() for k, v in mha.state_dict().items()}


def _inputs(n=2, length=5, source=5, e=8, dtype="float32", seed=0):
    rng = np.random.default_rng(seed)
    q = rng.standard_normal((n, length, e)).astype(dtype)
    k = rng.standard_normal((n, source, e)).astype(dtype)
    v = rng.standard_normal((n, source, e)).astype(dtype)
    return q, k, v


def _randomise_biases(mha, seed=1):
    # PyTorch initialises the biases to zero; random ones make the comparison meaningful.
    rng = np.random.default_rng(seed)
    sd = {
        k: (rng.standard_normal(v.shape) * 0.5 if "bias" in k else v)
        for k, v in _weights(mha).items()
    }
    mha.load_state_dict(sd)
    return _weights(mha)


# -- parameters ------------------------------------------------------------------------------


def test_parameters_have_pytorchs_names_shapes_and_initialisation():
    fg.manual_seed(0)
    mha = MultiheadAttention(64, 4)
    sd = mha.state_dict()
    assert list(sd) == ["in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias"]
    assert [sd[k].shape for k in sd] == [(192, 64), (192,), (64, 64), (64,)]
    assert isinstance(mha.out_proj, fg.layers.Linear)
    w = sd["in_proj_weight"].numpy()
    bound = math.sqrt(6.0 / (64 + 192))  # xavier_uniform_
    assert np.abs(w).max() <= bound and np.abs(w).max() > 0.95 * bound
    assert w.std() == pytest.approx(bound / math.sqrt(3), rel=0.05)
    assert not sd["in_proj_bias"].numpy().any() and not sd["out_proj.bias"].numpy().any()
    assert np.abs(sd["out_proj.weight"].numpy()).max() <= 1 / 8  # Linear's 1/sqrt(fan_in)
    assert (mha.embed_dim, mha.num_heads, mha.head_dim) == (64, 4, 16)
    assert len(mha.parameters()) == 4


def test_without_bias_there_are_no_bias_parameters():
    mha = MultiheadAttention(8, 2, bias=False)
    assert list(mha.state_dict()) == ["in_proj_weight", "out_proj.weight"]
    assert mha.in_proj_bias is None and mha.out_proj.bias is None
    q, k, v = _inputs()
    out, _ = mha(fg.Tensor(q), fg.Tensor(k), fg.Tensor(v))
    want, _ = reference(q, k, v, _weights(mha), 2)
    np.testing.assert_allclose(out.numpy(), want, **TOL["float32"])


# -- forward against the reference ----------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float32", "float64"])
@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_self_attention_equals_the_reference(num_heads, dtype):
    fg.manual_seed(num_heads)
    mha = MultiheadAttention(8, num_heads, dtype=dtype)
    sd = _randomise_biases(mha)
    x, _, _ = _inputs(dtype=dtype)
    t = fg.Tensor(x)
    out, weights = mha(t, t, t)
    want, p = reference(x, x, x, sd, num_heads)
    assert out.dtype == dtype and out.shape == (2, 5, 8)
    np.testing.assert_allclose(out.numpy(), want, **TOL[dtype])
    np.testing.assert_allclose(weights.numpy(), p.mean(axis=1), **TOL[dtype])
    _, per_head = mha(t, t, t, average_attn_weights=False)
    np.testing.assert_allclose(per_head.numpy(), p, **TOL[dtype])


@pytest.mark.parametrize("num_heads", [1, 2, 4])
def test_cross_attention_to_a_longer_source_equals_the_reference(num_heads):
    mha = MultiheadAttention(8, num_heads, dtype="float64")
    sd = _randomise_biases(mha)
    q, k, v = _inputs(n=3, length=4, source=7, dtype="float64")
    out, weights = mha(fg.Tensor(q), fg.Tensor(k), fg.Tensor(v))
    want, p = reference(q, k, v, sd, num_heads)
    assert out.shape == (3, 4, 8) and weights.shape == (3, 4, 7)
    np.testing.assert_allclose(out.numpy(), want, **TOL["float64"])
    np.testing.assert_allclose(weights.numpy(), p.mean(axis=1), **TOL["float64"])


def test_need_weights_false_returns_none_and_the_same_output():
    mha = MultiheadAttention(8, 2)
    x = fg.Tensor(_inputs()[0])
    out, weights = mha(x, x, x, need_weights=False)
    assert weights is None
    # The fused kernel runs without weights: equal up to rounding.
    np.testing.assert_allclose(out.numpy(), mha(x, x, x)[0].numpy(), **TOL["float32"])


@pytest.mark.parametrize(
    "masks",
    [{"is_causal": True}, {"attn_mask": "causal"}, {"key_padding_mask": "pad", "is_causal": True}],
    ids=["is_causal", "bool-attn-mask", "padding-and-causal"],
)
def test_the_fused_path_without_weights_matches_the_reference_and_its_gradients(masks):
    mha = MultiheadAttention(8, 2, dtype="float64")
    sd = _randomise_biases(mha)
    x = _inputs(n=2, length=5, dtype="float64")[0]
    padding = np.array([[False] * 5, [False, False, False, True, True]])
    kwargs = dict(masks)
    additive = np.zeros((2, 1, 5, 5))
    if masks.get("is_causal") or masks.get("attn_mask") == "causal":
        additive = additive + np.where(_causal(5, 5), -np.inf, 0.0)
    if kwargs.get("attn_mask") == "causal":
        kwargs["attn_mask"] = _causal(5, 5)
    if kwargs.get("key_padding_mask") == "pad":
        kwargs["key_padding_mask"] = padding
        additive = additive + np.where(padding, -np.inf, 0.0)[:, None, None, :]
    want, _ = reference(x, x, x, sd, 2, mask=additive)
    grads = []
    for need_weights in (False, True):
        t = fg.Tensor(x, requires_grad=True)
        out, w = mha(t, t, t, need_weights=need_weights, **kwargs)
        assert (w is None) == (not need_weights)
        np.testing.assert_allclose(out.numpy(), want, **TOL["float64"])
        mha.zero_grad()
        (out * fg.Tensor(np.linspace(-1, 1, out.size).reshape(out.shape))).sum().backward()
        grads.append([t.grad.numpy()] + [p.grad.numpy() for p in mha.parameters()])
    for fused, composite in zip(*grads):
        np.testing.assert_allclose(fused, composite, rtol=1e-9, atol=1e-12)


def test_without_weights_a_fully_blocked_row_gives_zeros_as_pytorchs_fast_path():
    mha = MultiheadAttention(4, 1)
    x = fg.randn(1, 2, 4)
    blocked = np.array([[True, True], [False, False]])
    out, _ = mha(x, x, x, attn_mask=blocked, need_weights=False)
    bias = mha.out_proj.bias.numpy()
    np.testing.assert_array_equal(out.numpy()[0, 0], bias)  # out_proj of a zero attention
    with_weights, _ = mha(x, x, x, attn_mask=blocked)
    np.testing.assert_allclose(out.numpy()[0, 1], with_weights.numpy()[0, 1], **TOL["float32"])


def test_batch_second_and_unbatched_layouts_agree_with_batch_first():
    fg.manual_seed(3)
    first = MultiheadAttention(8, 2, dtype="float64")
    second = MultiheadAttention(8, 2, batch_first=False, dtype="float64")
    second.load_state_dict(first.state_dict())
    q, k, v = _inputs(n=2, length=3, source=6, dtype="float64")
    out, w = first(fg.Tensor(q), fg.Tensor(k), fg.Tensor(v))
    t = [fg.Tensor(a.transpose(1, 0, 2)) for a in (q, k, v)]
    out2, w2 = second(*t)
    assert out2.shape == (3, 2, 8) and w2.shape == (2, 3, 6)  # weights stay (N, L, S)
    np.testing.assert_allclose(out2.numpy().transpose(1, 0, 2), out.numpy(), rtol=1e-12)
    np.testing.assert_allclose(w2.numpy(), w.numpy(), rtol=1e-12)
    for i in range(2):
        o1, w1 = first(fg.Tensor(q[i]), fg.Tensor(k[i]), fg.Tensor(v[i]))
        assert o1.shape == (3, 8) and w1.shape == (3, 6)
        np.testing.assert_allclose(o1.numpy(), out.numpy()[i], rtol=1e-12)
        np.testing.assert_allclose(w1.numpy(), w.numpy()[i], rtol=1e-12)
    # Self-attention on one tensor in the (L, N, E) layout uses the packed projection.
    x = fg.Tensor(q.transpose(1, 0, 2))
    np.testing.assert_allclose(
        second(x, x, x)[0].numpy().transpose(1, 0, 2),
        first(fg.Tensor(q), fg.Tensor(q), fg.Tensor(q))[0].numpy(),
        rtol=1e-12,
    )


# -- masks -----------------------------------------------------------------------------------


def _causal(length, source):
    return np.triu(np.ones((length, source), dtype=bool), k=1)


def test_a_bool_mask_blocks_where_true_and_equals_an_additive_minus_inf_mask():
    mha = MultiheadAttention(8, 2, dtype="float64")
    sd = _randomise_biases(mha)
    q, k, v = _inputs(length=4, source=6, dtype="float64")
    rng = np.random.default_rng(5)
    blocked = rng.random((4, 6)) < 0.4
    blocked[:, 0] = False  # every query keeps one position
    out, w = mha(fg.Tensor(q), fg.Tensor(k), fg.Tensor(v), attn_mask=blocked)
    additive = np.where(blocked, -np.inf, 0.0)
    want, _ = reference(q, k, v, sd, 2, mask=additive)
    np.testing.assert_allclose(out.numpy(), want, **TOL["float64"])
    assert (w.numpy()[:, blocked] == 0).all()
    out_f, _ = mha(fg.Tensor(q), fg.Tensor(k), fg.Tensor(v), attn_mask=fg.Tensor(additive))
    np.testing.assert_allclose(out_f.numpy(), out.numpy(), rtol=1e-12)


def test_a_float_mask_is_added_to_the_scores_per_head_when_3d():
    mha = MultiheadAttention(8, 2, dtype="float64")
    sd = _randomise_biases(mha)
    q, k, v = _inputs(n=2, length=3, source=4, dtype="float64")
    bias = np.random.default_rng(6).standard_normal((2 * 2, 3, 4))  # (N·H, L, S)
    out, w = mha(
        fg.Tensor(q), fg.Tensor(k), fg.Tensor(v), attn_mask=bias, average_attn_weights=False
    )
    want, p = reference(q, k, v, sd, 2, mask=bias.reshape(2, 2, 3, 4))
    np.testing.assert_allclose(out.numpy(), want, **TOL["float64"])
    np.testing.assert_allclose(w.numpy(), p, **TOL["float64"])


def test_is_causal_equals_the_explicit_causal_mask_and_needs_no_mask():
    mha = MultiheadAttention(8, 4, dtype="float64")
    sd = _randomise_biases(mha)
    x = _inputs(length=6, dtype="float64")[0]
    t = fg.Tensor(x)
    out, w = mha(t, t, t, is_causal=True)
    want, _ = reference(x, x, x, sd, 4, mask=np.where(_causal(6, 6), -np.inf, 0.0))
    np.testing.assert_allclose(out.numpy(), want, **TOL["float64"])
    assert (np.triu(w.numpy()[0], k=1) == 0).all()
    explicit, _ = mha(t, t, t, attn_mask=_causal(6, 6))
    np.testing.assert_allclose(explicit.numpy(), out.numpy(), rtol=1e-12)
    # The first position sees only itself: changing later tokens leaves it unchanged.
    x2 = x.copy()
    x2[:, 1:] += 1.0
    t2 = fg.Tensor(x2)
    np.testing.assert_allclose(
        mha(t2, t2, t2, is_causal=True)[0].numpy()[:, 0], out.numpy()[:, 0], rtol=1e-12
    )


def test_a_key_padding_mask_hides_padded_keys_of_each_sequence():
    mha = MultiheadAttention(8, 2, dtype="float64")
    sd = _randomise_biases(mha)
    q, k, v = _inputs(n=2, length=3, source=5, dtype="float64")
    padding = np.array([[False] * 5, [False, False, False, True, True]])
    out, w = mha(
        fg.Tensor(q), fg.Tensor(k), fg.Tensor(v), key_padding_mask=padding, attn_mask=_causal(3, 5)
    )
    mask = np.where(padding, -np.inf, 0.0)[:, None, None, :] + np.where(_causal(3, 5), -np.inf, 0.0)
    want, _ = reference(q, k, v, sd, 2, mask=mask)
    np.testing.assert_allclose(out.numpy(), want, **TOL["float64"])
    assert (w.numpy()[1, :, 3:] == 0).all()
    # What a padded key holds does not matter.
    k2, v2 = k.copy(), v.copy()
    k2[1, 3:] = 100.0
    v2[1, 3:] = -100.0
    out2, _ = mha(
        fg.Tensor(q),
        fg.Tensor(k2),
        fg.Tensor(v2),
        key_padding_mask=padding,
        attn_mask=_causal(3, 5),
    )
    np.testing.assert_allclose(out2.numpy(), out.numpy(), rtol=1e-12)


def test_a_fully_blocked_row_gives_nan_as_in_pytorch():
    mha = MultiheadAttention(4, 1)
    x = fg.randn(1, 2, 4)
    blocked = np.array([[True, True], [False, False]])
    out, _ = mha(x, x, x, attn_mask=blocked)
    assert np.isnan(out.numpy()[0, 0]).all() and not np.isnan(out.numpy()[0, 1]).any()


# -- dropout ---------------------------------------------------------------------------------


def test_dropout_drops_attention_weights_in_training_only():
    fg.manual_seed(7)
    mha = MultiheadAttention(8, 2, dropout=0.5, dtype="float64")
    sd = _randomise_biases(mha)
    x = _inputs(n=4, length=6, dtype="float64")[0]
    t = fg.Tensor(x)
    _, p = reference(x, x, x, sd, 2)
    _, w = mha(t, t, t, average_attn_weights=False)
    w = w.numpy()
    kept = w != 0
    assert 0.3 < kept.mean() < 0.7
    np.testing.assert_allclose(w[kept], 2.0 * p[kept], rtol=1e-12)  # kept ones scale by 2
    mha.eval()
    out_eval, w_eval = mha(t, t, t, average_attn_weights=False)
    want, _ = reference(x, x, x, sd, 2)
    np.testing.assert_allclose(out_eval.numpy(), want, **TOL["float64"])
    np.testing.assert_allclose(w_eval.numpy(), p, **TOL["float64"])


# -- weights from PyTorch --------------------------------------------------------------------


def test_weights_load_from_a_pytorch_named_safetensors_file(tmp_path):
    safetensors_numpy = pytest.importorskip("safetensors.numpy")
    rng = np.random.default_rng(8)
    # What safetensors.torch.save_file(torch_mha.state_dict(), path) writes for E=8.
    torch_names = {
        "in_proj_weight": rng.standard_normal((24, 8)).astype(np.float32),
        "in_proj_bias": rng.standard_normal(24).astype(np.float32),
        "out_proj.weight": rng.standard_normal((8, 8)).astype(np.float32),
        "out_proj.bias": rng.standard_normal(8).astype(np.float32),
    }
    path = tmp_path / "mha.safetensors"
    safetensors_numpy.save_file(torch_names, str(path))
    mha = MultiheadAttention(8, 2)
    mha.load_state_dict(fg.load(path))
    q, k, v = _inputs()
    out, w = mha(fg.Tensor(q), fg.Tensor(k), fg.Tensor(v))
    want, p = reference(q, k, v, torch_names, 2)
    np.testing.assert_allclose(out.numpy(), want, **TOL["float32"])
    np.testing.assert_allclose(w.numpy(), p.mean(axis=1), **TOL["float32"])
    with pytest.raises(ValueError, match="in_proj_weight"):
        MultiheadAttention(16, 2).load_state_dict(fg.load(path))


def test_equals_torch_nn_multiheadattention_with_copied_weights():
    torch = pytest.importorskip("torch")
    torch.manual_seed(0)
    ref = torch.nn.MultiheadAttention(8, 2, batch_first=True)
    mha = MultiheadAttention(8, 2)
    mha.load_state_dict({k: v.detach().numpy() for k, v in ref.state_dict().items()})
    q, k, v = _inputs(length=4, source=6)
    blocked = _causal(4, 6)
    want, want_w = ref(
        torch.tensor(q), torch.tensor(k), torch.tensor(v), attn_mask=torch.tensor(blocked)
    )
    out, w = mha(fg.Tensor(q), fg.Tensor(k), fg.Tensor(v), attn_mask=blocked)
    np.testing.assert_allclose(out.numpy(), want.detach().numpy(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(w.numpy(), want_w.detach().numpy(), rtol=1e-5, atol=1e-6)


# -- gradients -------------------------------------------------------------------------------


@pytest.mark.parametrize("mask", ["none", "causal", "bool", "float"])
def test_gradients_with_respect_to_query_key_and_value_pass_gradcheck(mask):
    fg.manual_seed(11)
    mha = MultiheadAttention(4, 2, dtype="float64")
    _randomise_biases(mha)
    rng = np.random.default_rng(12)
    q, k, v = (rng.standard_normal((2, s, 4)) for s in (3, 4, 4))
    kwargs = {
        "none": {},
        "causal": {"is_causal": True},
        "bool": {"attn_mask": np.array([[0, 1, 0, 0], [0, 0, 1, 1], [1, 0, 0, 0]], bool)},
        "float": {"attn_mask": rng.standard_normal((3, 4))},
    }[mask]
    assert fg.gradcheck(lambda a, b, c: mha(a, b, c, **kwargs)[0], [q, k, v])
    assert fg.gradcheck(lambda a, b, c: mha(a, b, c, **kwargs)[1], [q, k, v])


def test_gradients_with_respect_to_the_parameters_pass_gradcheck():
    fg.manual_seed(13)
    mha = MultiheadAttention(4, 2, dtype="float64")
    sd = _randomise_biases(mha)
    x = fg.Tensor(np.random.default_rng(14).standard_normal((2, 3, 4)))

    def run(w, b, wo, bo):
        mha.in_proj_weight, mha.in_proj_bias = w, b
        mha.out_proj.weight, mha.out_proj.bias = wo, bo
        return mha(x, x, x, is_causal=True)[0]

    assert fg.gradcheck(
        run, [sd[k] for k in ("in_proj_weight", "in_proj_bias", "out_proj.weight", "out_proj.bias")]
    )


def test_a_float_mask_tensor_that_requires_grad_receives_a_gradient():
    mha = MultiheadAttention(4, 1, dtype="float64")
    x = fg.Tensor(np.random.default_rng(15).standard_normal((1, 3, 4)))
    bias = np.random.default_rng(16).standard_normal((3, 3))
    assert fg.gradcheck(lambda m: mha(x, x, x, attn_mask=m)[0], [bias])


# -- bad input -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "make, error, match",
    [
        (lambda: MultiheadAttention(10, 3), ValueError, "divisible"),
        (lambda: MultiheadAttention(0, 1), ValueError, "positive"),
        (lambda: MultiheadAttention(8, 0), ValueError, "positive"),
        (lambda: MultiheadAttention(8.0, 2), TypeError, "int"),
        (lambda: MultiheadAttention(8, 2, dropout=1.0), ValueError, "dropout"),
        (lambda: MultiheadAttention(8, 2, dtype="int64"), ValueError, "dtype"),
    ],
    ids=["indivisible", "zero-dim", "zero-heads", "float-dim", "dropout-1", "int-dtype"],
)
def test_bad_constructor_arguments_raise(make, error, match):
    with pytest.raises(error, match=match):
        make()


def _call(**kw):
    mha = MultiheadAttention(8, 2)
    q, k, v = (fg.Tensor(a) for a in _inputs(n=2, length=3, source=4))
    args = {"query": q, "key": k, "value": v, **kw}
    return mha(args.pop("query"), args.pop("key"), args.pop("value"), **args)


@pytest.mark.parametrize(
    "kwargs, error, match",
    [
        ({"attn_mask": np.zeros((4, 3), bool)}, ValueError, r"attn_mask of shape \(4, 3\)"),
        ({"attn_mask": np.zeros((2, 3, 4))}, ValueError, "attn_mask"),
        ({"attn_mask": np.zeros((3, 4), np.int64)}, TypeError, "bool or float"),
        ({"key_padding_mask": np.zeros((2, 3), bool)}, ValueError, "key_padding_mask"),
        ({"query": fg.randn(2, 3, 6)}, ValueError, "embed_dim=8"),
        ({"value": fg.randn(2, 5, 8)}, ValueError, "same sequence length"),
        ({"key": fg.randn(3, 4, 8), "value": fg.randn(3, 4, 8)}, ValueError, "batch size"),
        ({"query": fg.randn(1, 2, 3, 8)}, ValueError, "query must be"),
        ({"key": fg.randn(4, 8)}, ValueError, "same number of axes"),
        ({"query": np.zeros((2, 3, 8))}, TypeError, "query must be a Tensor"),
    ],
    ids=[
        "mask-shape",
        "mask-3d-shape",
        "int-mask",
        "padding-shape",
        "embed-dim",
        "value-length",
        "batch",
        "4d",
        "axes",
        "numpy-query",
    ],
)
def test_bad_forward_input_raises_a_clear_error(kwargs, error, match):
    with pytest.raises(error, match=match):
        _call(**kwargs)


def test_bool_and_integer_tensor_masks_follow_the_dtype_rules():
    mha = MultiheadAttention(8, 2, dtype="float64")
    q, k, v = (fg.Tensor(a) for a in _inputs(length=4, source=4, dtype="float64"))
    blocked = _causal(4, 4)
    as_tensor, _ = mha(q, k, v, attn_mask=fg.tensor(blocked))
    assert fg.tensor(blocked).dtype == "bool"
    np.testing.assert_array_equal(as_tensor.numpy(), mha(q, k, v, attn_mask=blocked)[0].numpy())
    with pytest.raises(TypeError, match="bool or float"):
        mha(q, k, v, attn_mask=fg.tensor(blocked.astype(np.int64)))


# -- the tools together ----------------------------------------------------------------------


class _TinyCausalLM(nn.Module):
    """nanoGPT's shape in miniature: token + position embeddings, one pre-LayerNorm causal
    attention block, a final LayerNorm and a head tied to the token embedding."""

    def __init__(self, vocab, block, n_embd=16, n_head=2):
        super().__init__()
        self.transformer = nn.ModuleDict(
            {
                "wte": nn.Embedding(vocab, n_embd),
                "wpe": nn.Embedding(block, n_embd),
                "ln": nn.LayerNorm(n_embd),
                "attn": MultiheadAttention(n_embd, n_head),
                "ln_f": nn.LayerNorm(n_embd),
            }
        )
        self.lm_head = nn.Linear(n_embd, vocab, bias=False)
        self.transformer.wte.weight = self.lm_head.weight

    def forward(self, idx):
        t = self.transformer
        x = t.wte(idx) + t.wpe(np.arange(idx.shape[1]))
        h = t.ln(x)
        x = x + t.attn(h, h, h, need_weights=False, is_causal=True)[0]
        return self.lm_head(t.ln_f(x))


def test_a_tiny_causal_lm_with_tied_weights_groups_and_clipping_overfits_a_short_text():
    fg.manual_seed(0)
    text = "to be or not to be, that is the question. " * 3
    chars = sorted(set(text))
    data = np.array([chars.index(c) for c in text])
    block = 16
    model = _TinyCausalLM(len(chars), block)
    named = dict(model.named_parameters())
    assert "lm_head.weight" not in named  # tied: listed once, as the embedding
    opt = fg.optim.AdamW(
        [
            {"params": [p for p in named.values() if p.ndim >= 2], "weight_decay": 0.1},
            {"params": [p for p in named.values() if p.ndim < 2], "weight_decay": 0.0},
        ],
        lr=1e-2,
        betas=(0.9, 0.99),
    )
    rng = np.random.default_rng(0)
    losses = []
    for _ in range(400):
        ix = rng.integers(0, len(data) - block - 1, size=8)
        x = np.stack([data[i : i + block] for i in ix])
        y = np.stack([data[i + 1 : i + block + 1] for i in ix])
        loss = fg.loss.cross_entropy(model(x).reshape(-1, len(chars)), y.reshape(-1).tolist())
        opt.zero_grad()
        loss.backward()
        norm = fg.layers.utils.clip_grad_norm_(model.parameters(), 1.0)
        assert math.isfinite(norm)
        opt.step()
        losses.append(loss.item())
    assert np.mean(losses[:10]) > 2.5
    assert np.mean(losses[-20:]) < 0.8
