"""fg.onnx.export: models exported from one recorded forward pass the ONNX checker and give
onnxruntime's outputs equal to ferrograd's, at the example batch size and another one."""

import importlib.util
import math
from pathlib import Path

import numpy as np
import pytest

import ferrograd as fg
from ferrograd import _core
from ferrograd import layers as nn

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

ROOT = Path(__file__).resolve().parent.parent


def _example(name):
    spec = importlib.util.spec_from_file_location(name, ROOT / "examples" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _run_onnx(path, feeds):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in session.get_inputs()]
    return session.run(None, dict(zip(names, feeds)))


def _ours(model, *inputs):
    mode = model.training
    model.eval()
    with fg.no_grad():
        out = model(*inputs)
    model.train(mode)
    return [o.numpy() for o in (out if isinstance(out, tuple) else (out,))]


def _check(model, path, example, others=(), atol=1e-4, **kwargs):
    """Exports with `example`, then compares onnxruntime with ferrograd on `example` and on
    each tuple of inputs in `others`."""
    fg.onnx.export(model, example, path, **kwargs)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    for inputs in [example, *others]:
        inputs = inputs if isinstance(inputs, tuple) else (inputs,)
        want = _ours(model, *inputs)
        got = _run_onnx(path, [t.numpy() for t in inputs])
        assert len(got) == len(want)
        for g, w in zip(got, want):
            assert g.shape == w.shape
            np.testing.assert_allclose(g, w, atol=atol, rtol=1e-4)


BATCH = {"input_0": {0: "batch"}, "output_0": {0: "batch"}}


def test_an_mlp_exports_and_runs_at_two_batch_sizes(tmp_path):
    fg.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(64, 32), nn.ReLU(), nn.Dropout(0.2), nn.Linear(32, 10), nn.Tanh()
    )
    x = fg.randn(5, 64)
    _check(model, tmp_path / "mlp.onnx", x, [fg.randn(3, 64)], dynamic_axes=BATCH)
    proto = onnx.load(str(tmp_path / "mlp.onnx"))
    assert proto.opset_import[0].version >= 17
    names = {init.name for init in proto.graph.initializer}
    assert {"0.weight", "0.bias", "3.weight", "3.bias"} <= names
    assert {n.op_type for n in proto.graph.node} >= {"Gemm", "Relu", "Tanh"}
    assert proto.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"


class DigitsCNNWithBatchNorm(nn.Module):
    """The digits demo's SmallCNN with BatchNorm after each convolution."""

    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(1, 8, 3, padding=1),
            nn.BatchNorm2d(8),
            nn.ReLU(),
            nn.Conv2d(8, 16, 3, padding=1),
            nn.BatchNorm2d(16),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        self.head = nn.Sequential(
            nn.Flatten(),
            nn.Linear(16 * 4 * 4, 32),
            nn.BatchNorm1d(32),
            nn.ReLU(),
            nn.Dropout(0.25),
            nn.Linear(32, 10),
        )

    def forward(self, x):
        return self.head(self.features(x.reshape(-1, 1, 8, 8)))


def _trained_a_little(model, steps=3):
    """A few training steps so the BatchNorm running statistics are not 0 and 1."""
    X, y = fg.datasets.load_digits()
    opt = fg.optim.SGD(model.parameters(), lr=0.05)
    model.train()
    for i in range(steps):
        xb, yb = fg.Tensor(X[i * 32 : (i + 1) * 32]), fg.tensor(y[i * 32 : (i + 1) * 32])
        loss = fg.loss.cross_entropy(model(xb), yb)
        opt.zero_grad()
        loss.backward()
        opt.step()
    return fg.Tensor(X[:6]), fg.Tensor(X[100:111])


def test_the_digits_cnn_with_batchnorm_exports_in_eval_form(tmp_path):
    fg.manual_seed(1)
    model = DigitsCNNWithBatchNorm()
    x, other = _trained_a_little(model)
    model.train()  # export runs in eval mode and restores the mode afterwards
    _check(model, tmp_path / "cnn.onnx", x, [other], dynamic_axes=BATCH)
    assert model.training and model.features[1].training
    ops = {n.op_type for n in onnx.load(str(tmp_path / "cnn.onnx")).graph.node}
    assert {"Conv", "BatchNormalization", "MaxPool", "Gemm", "Reshape"} <= ops
    names = {i.name for i in onnx.load(str(tmp_path / "cnn.onnx")).graph.initializer}
    assert {"features.1.running_mean", "features.1.running_var", "head.2.weight"} <= names


def test_the_digits_demo_cnn_exports(tmp_path):
    ex = _example("train_digits")
    fg.manual_seed(2)
    model = ex.SmallCNN()
    _check(model, tmp_path / "small.onnx", fg.randn(4, 64), [fg.randn(9, 64)], dynamic_axes=BATCH)


def test_the_gpt_of_the_transformer_example_exports(tmp_path):
    ex = _example("train_shakespeare")
    fg.manual_seed(3)
    model = ex.GPT(13, 8, n_layer=2, n_head=2, n_embd=16)
    idx = fg.randint(0, 13, (2, 8))
    _check(
        model,
        tmp_path / "gpt.onnx",
        idx,
        [fg.randint(0, 13, (5, 8))],
        input_names=["idx"],
        output_names=["logits"],
        dynamic_axes={"idx": {0: "batch"}, "logits": {0: "batch"}},
    )
    proto = onnx.load(str(tmp_path / "gpt.onnx"))
    ops = {n.op_type for n in proto.graph.node}
    assert {"Gather", "LayerNormalization", "Softmax", "Erf", "MatMul"} <= ops
    # The tied head and token embedding are one initializer.
    names = [i.name for i in proto.graph.initializer]
    assert "transformer.wte.weight" in names and "lm_head.weight" not in names
    assert [i.name for i in proto.graph.input] == ["idx"]
    assert [o.name for o in proto.graph.output] == ["logits"]


class TensorOps(nn.Module):
    """A custom module of tensor ops: no layer does this."""

    def __init__(self):
        super().__init__()
        self.proj = nn.Linear(6, 6)
        self.scale = fg.Tensor(np.linspace(0.5, 1.5, 6).astype(np.float32))

    def forward(self, x, mask):
        b, t, c = x.shape
        h = self.proj(x) * self.scale
        a, g = h.split(3, 2)
        scores = a @ g.transpose(1, 2) / math.sqrt(3)
        causal = fg.tril(fg.ones(t, t)) == 0
        scores = scores.masked_fill(causal, float("-inf")).softmax(axis=-1)
        y = (scores @ a).unsqueeze(1).squeeze(1)
        y = fg.where(mask.unsqueeze(-1), y, -y)
        z = fg.cat([y, g.exp().clamp(max=2.0)], axis=-1).reshape(b, t * c)
        stats = fg.stack([z.mean(axis=1), z.max(axis=1), z.var(axis=1), z.sum(axis=1)], axis=1)
        first = z[:, :4] + z[:, -4:] - z[:, ::9].abs().sqrt().sum(axis=1, keepdims=True)
        picked = z.gather(1, (z[:, :4] * (z[:, :4] > 0.1).float()).argmax(axis=1, keepdims=True))
        return (
            stats.log_softmax(axis=-1),
            first**2 / 3 + fg.maximum(first, picked),
            (x.sum(axis=(1, 2)) > 0).long() * 2,
        )


def test_a_custom_module_of_tensor_ops_exports_with_several_outputs(tmp_path):
    fg.manual_seed(4)
    model = TensorOps()
    x, mask = fg.randn(3, 4, 6), fg.rand(3, 4) > 0.5
    other = (fg.randn(7, 4, 6), fg.rand(7, 4) > 0.5)
    axes = {"input_0": [0], "input_1": [0]}
    _check(model, tmp_path / "ops.onnx", (x, mask), [other], dynamic_axes=axes)
    ops = {n.op_type for n in onnx.load(str(tmp_path / "ops.onnx")).graph.node}
    assert {"Where", "Slice", "Transpose", "Softmax", "Concat", "GatherElements"} <= ops


def test_an_unsupported_op_names_itself_and_writes_nothing(tmp_path):
    class Sorts(nn.Module):
        def forward(self, x):
            return x.topk(2)[0]

    path = tmp_path / "no.onnx"
    with pytest.raises(fg.onnx.UnsupportedOperatorError, match="'topk'") as info:
        fg.onnx.export(Sorts(), fg.randn(2, 5), path)
    assert isinstance(info.value, RuntimeError)
    assert not path.exists()
    assert not _core._is_recording()


def test_random_draws_in_the_forward_are_refused_not_frozen(tmp_path):
    class Noisy(nn.Module):
        def forward(self, x):
            return x + fg.randn(*x.shape)

    with pytest.raises(fg.onnx.UnsupportedOperatorError, match="'randn'"):
        fg.onnx.export(Noisy(), fg.randn(2, 3), tmp_path / "noisy.onnx")
    assert not (tmp_path / "noisy.onnx").exists()


def test_an_in_place_write_during_the_forward_is_refused(tmp_path):
    class InPlace(nn.Module):
        def forward(self, x):
            y = x * 2
            z = y + 1
            y += 1
            return z * y

    with pytest.raises(fg.onnx.UnsupportedOperatorError, match="in place"):
        fg.onnx.export(InPlace(), fg.randn(2, 3), tmp_path / "inplace.onnx")
    assert not (tmp_path / "inplace.onnx").exists()


def test_recording_stops_even_when_the_forward_raises(tmp_path):
    class Fails(nn.Module):
        def forward(self, x):
            (x * 2).reshape(7)
            return x

    model = Fails()
    with pytest.raises(ValueError):
        fg.onnx.export(model, fg.randn(2, 3), tmp_path / "fails.onnx")
    assert not _core._is_recording()
    assert model.training
    # The next export records afresh.
    fg.onnx.export(nn.Sequential(nn.ReLU()), fg.randn(2, 3), tmp_path / "ok.onnx")
    assert (tmp_path / "ok.onnx").exists()


def test_recording_records_under_no_grad_and_leaves_no_trace():
    x = fg.randn(2, 3, requires_grad=True)
    with fg.no_grad():
        _core._start_recording()
        try:
            y = (x * 2).sum(axis=1)
        finally:
            records = _core._stop_recording()
    assert [r["op"] for r in records] == ["*", "sum"]
    assert records[0]["inputs"][0][0]._id == x._id
    assert records[1]["outputs"][0][0]._id == y._id
    assert records[1]["attrs"] == {"axes": (1,), "keepdims": False}
    (x * 3).sum()
    assert _core._stop_recording() == []


def test_inputs_and_outputs_take_the_given_names_and_bad_names_are_refused(tmp_path):
    model = nn.Sequential(nn.Linear(3, 2))
    path = tmp_path / "named.onnx"
    fg.onnx.export(
        model,
        (fg.randn(4, 3),),
        path,
        input_names=["features"],
        output_names=["scores"],
        dynamic_axes={"features": [0], "scores": [0]},
    )
    proto = onnx.load(str(path))
    assert [i.name for i in proto.graph.input] == ["features"]
    assert [o.name for o in proto.graph.output] == ["scores"]
    got = _run_onnx(path, [np.ones((6, 3), np.float32)])[0]
    np.testing.assert_allclose(got, _ours(model, fg.ones(6, 3))[0], atol=1e-5)
    with pytest.raises(ValueError, match="nope"):
        fg.onnx.export(model, fg.randn(4, 3), tmp_path / "x.onnx", dynamic_axes={"nope": [0]})
    with pytest.raises(TypeError, match="Tensor"):
        fg.onnx.export(model, np.ones((4, 3)), tmp_path / "x.onnx")
    assert not (tmp_path / "x.onnx").exists()


def test_losses_forward_parts_export(tmp_path):
    class Losses(nn.Module):
        def forward(self, logits, p, y):
            return (
                fg.loss.cross_entropy(logits, [0, 2, 1], label_smoothing=0.1),
                fg.loss.binary_cross_entropy(p.sigmoid(), y),
                fg.loss.binary_cross_entropy_with_logits(p, y, reduction="sum"),
                fg.loss.mse(p, y),
            )

    fg.manual_seed(5)
    inputs = (fg.randn(3, 4), fg.randn(3, 2), fg.rand(3, 2))
    _check(Losses(), tmp_path / "losses.onnx", inputs)


def test_importing_ferrograd_does_not_import_onnx():
    import subprocess
    import sys

    code = (
        "import sys, ferrograd; assert 'onnx' not in sys.modules; import ferrograd.onnx; "
        "assert 'onnx' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


class Attend(nn.Module):
    """Attention under a padding mask computed from an input, a fixed mask with a row that
    sees no key, and a float mask."""

    def forward(self, q, k, v, pad):
        sdpa = fg.functional.scaled_dot_product_attention
        keep = pad.unsqueeze(1).unsqueeze(1)  # (B, 1, 1, S)
        fixed = np.ones((4, 5), dtype=bool)
        fixed[0] = False
        bias = fg.Tensor(np.linspace(-1, 1, 20, dtype=np.float32).reshape(4, 5))
        return (
            sdpa(q, k, v, attn_mask=keep),
            sdpa(q, k, v, attn_mask=fg.tensor(fixed), scale=0.3),
            sdpa(q, k, v, attn_mask=bias),
        )


def test_attention_masks_export_also_one_computed_from_an_input(tmp_path):
    fg.manual_seed(6)

    def inputs(b):
        pad = fg.rand(b, 5) > 0.4
        pad[0] = fg.zeros(5, dtype=fg.bool)  # a sequence with every key padded: rows are 0
        return (fg.randn(b, 2, 4, 3), fg.randn(b, 2, 5, 3), fg.randn(b, 2, 5, 3), pad)

    axes = {f"input_{i}": [0] for i in range(4)}
    _check(Attend(), tmp_path / "attend.onnx", inputs(2), [inputs(3)], dynamic_axes=axes)


def test_indexing_by_a_tensor_made_from_the_inputs_is_refused_and_a_constant_one_exports(
    tmp_path,
):
    class Picks(nn.Module):
        def forward(self, x, i):
            return x[i]

    with pytest.raises(fg.onnx.UnsupportedOperatorError, match="'index'"):
        fg.onnx.export(Picks(), (fg.randn(4, 3), fg.tensor([2, 0])), tmp_path / "p.onnx")
    assert not (tmp_path / "p.onnx").exists()

    class Fixed(nn.Module):
        def forward(self, x):
            return x[fg.tensor([2, 0])].sum(axis=0)[1:] + x[..., None, 1:3][::-1]

    _check(Fixed(), tmp_path / "f.onnx", fg.randn(4, 3))


def test_multihead_attention_exports(tmp_path):
    fg.manual_seed(7)
    mha = nn.MultiheadAttention(8, 2)

    class SelfAttend(nn.Module):
        def __init__(self):
            super().__init__()
            self.mha = mha

        def forward(self, x):
            out, weights = self.mha(x, x, x)
            return out, weights

    axes = {"input_0": [0]}
    _check(
        SelfAttend(),
        tmp_path / "mha.onnx",
        fg.randn(2, 5, 8),
        [fg.randn(4, 5, 8)],
        dynamic_axes=axes,
    )


class _AllAny(nn.Module):
    def forward(self, x):
        return (x.all(axis=1), x.any(axis=(0, 2), keepdims=True), (x > 0.5).all(), x.any())


def test_all_and_any_export_with_fractions_counted_as_true(tmp_path):
    x = fg.tensor([[[0.0, 0.25], [1.0, 2.0]], [[0.5, 3.0], [0.0, 0.0]]])
    path = tmp_path / "all_any.onnx"
    fg.onnx.export(_AllAny(), x, path)
    onnx.checker.check_model(onnx.load(str(path)), full_check=True)
    for inputs in (x, fg.ones(2, 2, 2)):
        got = _run_onnx(path, [inputs.numpy()])
        want = _ours(_AllAny(), inputs)
        for g, w in zip(got, want):
            assert g.dtype == np.bool_
            np.testing.assert_array_equal(g, w)


class _LayerNorms(nn.Module):
    def __init__(self):
        super().__init__()
        self.gain = fg.Tensor(np.linspace(0.5, 1.5, 6, dtype=np.float32))

    def forward(self, x):
        ln = fg.functional.layer_norm
        return ln(x, 6, self.gain), ln(x, (2, 6), eps=1e-3), nn.LayerNorm(6)(x)


def test_layer_norm_exports_with_weight_only_neither_or_both(tmp_path):
    x = fg.randn(3, 2, 6)
    _check(
        _LayerNorms(),
        tmp_path / "ln.onnx",
        x,
        others=(fg.randn(5, 2, 6),),
        dynamic_axes={"input_0": [0], "output_0": [0], "output_1": [0], "output_2": [0]},
    )
