"""Adversarial inputs: a table of bad calls across the whole Python API, each in its own child.

Every case runs in a fresh Python process (two at a time) with a small shared prelude, so a
crash — a signal, an abort, a Rust panic surfacing as ``pyo3_runtime.PanicException`` — is
attributed to its case and told apart from a wrong exception. A case passes when

* the call raises the documented exception class (checked with ``isinstance`` against the
  class named in the table: ``fg.AxisError`` counts as ValueError and as IndexError),
* the message names the problem (a fragment from the table, compared case-insensitively),
* and the objects involved still work afterwards: the prelude's objects, plus a per-case
  follow-up, are exercised in the same child after the error.

``CASES`` lists them; ``len(CASES)`` is the number of bad inputs tried.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from concurrent.futures import ThreadPoolExecutor

import pytest

PRELUDE = """
import gc, json, os, sys, tempfile, threading
import numpy as np
import ferrograd as fg
fg.manual_seed(0)
t = fg.Tensor([[1., 2., 3.], [4., 5., 6.]], requires_grad=True)
a = fg.NdArray([[1., 2.], [3., 4.]])
v = fg.Value(2.0)
model = fg.layers.Sequential(fg.layers.Linear(3, 4), fg.layers.ReLU(), fg.layers.Linear(4, 2))
opt = fg.optim.SGD(model.parameters(), lr=0.1)
logits = fg.Tensor([[1., 2., 3.], [1., 0., -1.]], requires_grad=True)
X = np.arange(20, dtype=np.float32).reshape(10, 2)
y = np.arange(10) % 3
tmp = tempfile.mkdtemp()
ckpt = os.path.join(tmp, "model.safetensors")
fg.save(model.state_dict(), ckpt)
"""

# Runs after the bad call, whatever it raised: everything the prelude made must still work.
AFTER = """
(t * 2).sum().backward()
assert t.grad is not None and t.grad.shape == (2, 3)
assert np.allclose(t.numpy(), [[1, 2, 3], [4, 5, 6]])
assert float((a @ a).sum()) == 54.0
out = model(fg.randn(5, 3))
assert out.shape == (5, 2)
loss = fg.loss.cross_entropy(out, [0, 1, 0, 1, 1])
opt.zero_grad(); loss.backward(); opt.step()
assert (v * 3 + 1).data == 7.0
assert np.isfinite(fg.loss.cross_entropy(logits, [0, 2]).item())
"""

CHILD = """
{prelude}
{setup}
try:
{call}
except BaseException as exc:
    cls = type(exc)
    result = {{"raised": cls.__module__ + "." + cls.__qualname__,
              "mro": [c.__module__ + "." + c.__qualname__ for c in cls.__mro__],
              "message": str(exc)}}
else:
    result = {{"raised": None}}
print("RESULT " + json.dumps(result), flush=True)
{follow}
{after}
print("AFTER OK", flush=True)
"""


def case(name, call, exc, fragment, setup="", follow=""):
    return pytest.param(call, exc, fragment, setup, follow, id=name)


BUILTIN = (
    "ValueError",
    "TypeError",
    "IndexError",
    "KeyError",
    "RuntimeError",
    "MemoryError",
    "FileNotFoundError",
)

CASES = [
    # --- creation, conversion, dtypes ---
    case(
        "a ragged nested list is refused", "fg.Tensor([[1, 2], [3]])", "ValueError", "inhomogeneous"
    ),
    case("a string is not data", "fg.Tensor('abc')", "TypeError", "str"),
    case("a list holding a string is not data", "fg.Tensor([1.0, 'a'])", "TypeError", "numbers"),
    case(
        "a numpy string array is not data", "fg.Tensor(np.array(['a', 'b']))", "TypeError", "dtype"
    ),
    case("a complex array is not data", "fg.Tensor(np.array([1 + 2j]))", "TypeError", "complex"),
    case("an object array is not data", "fg.Tensor(np.array([object()]))", "TypeError", "object"),
    case(
        "an unknown dtype name is refused",
        "fg.Tensor([1.0], dtype='complex64')",
        "TypeError",
        "complex64",
    ),
    case("a non-dtype object as dtype is refused", "fg.zeros(2, dtype=3.5)", "TypeError", "dtype"),
    case("a trillion zeros raise memory error", "fg.zeros(10**12)", "MemoryError", "10000000"),
    case(
        "a square trillion randn raises memory error", "fg.randn(10**6, 10**6)", "MemoryError", ""
    ),
    case(
        "a shape whose size overflows raises memory error",
        "fg.ones(2**40, 2**40)",
        "MemoryError",
        "too large",
    ),
    case(
        "a zero-size shape with a dimension past numpy's limit is refused",
        "fg.zeros(0, 2**62)",
        "MemoryError",
        "too large",
    ),
    case(
        "reshaping an empty tensor to an unaddressable shape is refused",
        "fg.zeros(0).reshape(0, 2**62)",
        "MemoryError",
        "too large",
    ),
    case(
        "an axis past 64 bits raises axis error",
        "t.sum(axis=2**70)",
        "AxisError",
        "1180591620717411303424",
    ),
    case(
        "a softmax axis past 64 bits raises axis error",
        "t.softmax(2**70)",
        "AxisError",
        "out of bounds",
    ),
    case(
        "a cat axis past 64 bits raises axis error",
        "fg.cat([t, t], axis=2**70)",
        "AxisError",
        "out of bounds",
    ),
    case(
        "a reshape dimension past 64 bits is refused",
        "t.reshape(2**70)",
        "ValueError",
        "out of range",
    ),
    case("a seed past 128 bits is refused", "fg.manual_seed(2**200)", "ValueError", "128 bits"),
    case(
        "a dimension past 2**64 raises memory error",
        "fg.zeros(2**70)",
        "MemoryError",
        "1180591620717411303424",
    ),
    case("a negative dimension is refused", "fg.zeros(-1)", "ValueError", "negative"),
    case(
        "a negative dimension in a tuple is refused", "fg.ones((2, -3))", "ValueError", "negative"
    ),
    case("a float dimension is refused", "fg.zeros(2.5)", "TypeError", "integers"),
    case("a None dimension is refused", "fg.zeros((2, None))", "TypeError", "None"),
    case("a negative eye size is refused", "fg.eye(-2)", "ValueError", "negative"),
    case("full with a string value is refused", "fg.full((2, 2), 'x')", "TypeError", "str"),
    case("arange with zero step is refused", "fg.arange(0, 10, 0)", "ValueError", "step"),
    case(
        "arange to infinity raises memory error", "fg.arange(0, float('inf'))", "MemoryError", "inf"
    ),
    case("arange with a NaN bound is refused", "fg.arange(float('nan'))", "ValueError", "nan"),
    case("arange of 1e15 elements raises memory error", "fg.arange(0, 1e15)", "MemoryError", ""),
    case("from_numpy of a list is refused", "fg.from_numpy([[1, 2], [3]])", "TypeError", "ndarray"),
    case("a float seed is refused", "fg.manual_seed(1.5)", "TypeError", "float"),
    case(
        "a negative thread count is refused",
        "fg.set_num_threads(-1)",
        "ValueError",
        "-1",
        follow="fg.set_num_threads(0)",
    ),
    case(
        "an absurd thread count is refused",
        "fg.set_num_threads(10**9)",
        "ValueError",
        "1024",
        follow="fg.set_num_threads(0)",
    ),
    case(
        "a thread count past 64 bits is refused",
        "fg.set_num_threads(10**40)",
        "ValueError",
        "1024",
        follow="fg.set_num_threads(0)",
    ),
    case(
        "requires_grad must be a bool", "fg.Tensor([1.0], requires_grad='yes')", "TypeError", "bool"
    ),
    # --- values and reductions ---
    case("item of six elements is refused", "t.item()", "ValueError", "(2, 3)"),
    case("item of an empty tensor is refused", "fg.zeros(0).item()", "ValueError", "0"),
    case("max of a zero-size tensor is refused", "fg.zeros(0, 3).max()", "ValueError", "zero-size"),
    case(
        "argmax along an empty axis is refused",
        "fg.zeros(3, 0).argmax(axis=1)",
        "ValueError",
        "empty",
    ),
    case("len of a 0-d tensor is refused", "len(fg.Tensor(3.0))", "TypeError", "0-d"),
    case("float of a vector is refused", "float(t)", "ValueError", "(2, 3)"),
    case("sum over axis 2 of a matrix raises axis error", "t.sum(axis=2)", "AxisError", "axis 2"),
    case("sum over a repeated axis is refused", "t.sum(axis=(0, 0))", "ValueError", "repeated"),
    case("a float axis is refused", "t.sum(axis=1.5)", "TypeError", "integer"),
    case("softmax over axis 5 raises axis error", "t.softmax(axis=5)", "AxisError", "axis 5"),
    case("argmax over axis -3 raises axis error", "t.argmax(axis=-3)", "AxisError", "-3"),
    case("transpose of a missing axis raises axis error", "t.transpose(0, 3)", "AxisError", "3"),
    case("permute that repeats an axis is refused", "t.permute(0, 0)", "ValueError", "permut"),
    # --- arithmetic and shapes ---
    case("adding unbroadcastable shapes names both", "t + fg.ones(4)", "ValueError", "(4,)"),
    case(
        "an unbroadcastable numpy operand is refused", "t * np.ones((3, 2))", "ValueError", "(3, 2)"
    ),
    case("matmul with misaligned inner dims names them", "t @ t", "ValueError", "3 != 2"),
    case("matmul of a 0-d tensor is refused", "t @ fg.Tensor(2.0)", "ValueError", "0-d"),
    case(
        "matmul of ndarrays with misaligned dims is refused",
        "a @ fg.NdArray(np.ones((3, 3)))",
        "ValueError",
        "2 != 3",
    ),
    case("adding a string is refused", "t + 'x'", "TypeError", "str"),
    case("adding None is refused", "t + None", "TypeError", "None"),
    case("a string power is refused", "t ** 'x'", "TypeError", "str"),
    case(
        "in-place add of a wrong shape is refused", "a += np.ones((3, 3))", "ValueError", "(3, 3)"
    ),
    case(
        "in-place op on a leaf that requires grad is refused",
        "t += 1",
        "RuntimeError",
        "requires grad",
    ),
    case("reshape to a wrong size names the shape", "t.reshape(4, 2)", "ValueError", "(2, 3)"),
    case("reshape with two -1 is refused", "t.reshape(-1, -1)", "ValueError", "-1"),
    case("reshape with -2 is refused", "t.reshape(-2, 3)", "ValueError", "negative"),
    case("reshape to a string is refused", "t.reshape('a')", "TypeError", "integers"),
    case("an index past the end raises index error", "t[5]", "IndexError", "out of bounds"),
    case("too many indices raise index error", "t[0, 0, 0]", "IndexError", "too many"),
    case("a float index raises type error", "t[1.5]", "TypeError", "float"),
    case("a string index raises type error", "t['a']", "TypeError", "str"),
    case("a zero slice step is refused", "t[::0]", "ValueError", "zero"),
    case("an integer list past the end raises index error", "t[[0, 7]]", "IndexError", "7"),
    case("two ellipses raise index error", "t[..., ...]", "IndexError", "ellipsis"),
    case("a huge index raises index error", "t[10**30]", "IndexError", ""),
    case("a float list index raises type error", "t[[0.5, 1.0]]", "TypeError", "float"),
    case(
        "index arrays that do not broadcast are refused",
        "t[[0, 1], [0, 1, 2]]",
        "IndexError",
        "broadcast",
    ),
    case("cat of nothing is refused", "fg.cat([])", "ValueError", "empty"),
    case("cat of mismatched shapes names them", "fg.cat([t, fg.ones(3)])", "ValueError", "(3,)"),
    case("cat of a string is refused", "fg.cat([t, 'x'])", "TypeError", "str"),
    case("cat along axis 9 raises axis error", "fg.cat([t, t], axis=9)", "AxisError", "9"),
    case("stack of different shapes is refused", "fg.stack([t, t.T])", "ValueError", "(3, 2)"),
    case(
        "a scalar that is not a number is refused",
        "fg.Tensor([1.0]) * object()",
        "TypeError",
        "object",
    ),
    # --- autograd misuse ---
    case(
        "backward of a non-scalar without grad is refused",
        "(t * 2).backward()",
        "RuntimeError",
        "grad",
    ),
    case(
        "backward without requires_grad is refused",
        "fg.Tensor([1.0]).backward()",
        "RuntimeError",
        "does not require grad",
    ),
    case(
        "a second backward through a freed graph says retain_graph",
        "y2.backward()",
        "RuntimeError",
        "retain_graph",
        setup="y2 = (t * 3).sum(); y2.backward()",
    ),
    case(
        "a grad of the wrong shape is refused",
        "(t * 2).backward(np.ones((3, 2)))",
        "ValueError",
        "(3, 2)",
    ),
    case("a string grad is refused", "(t * 2).backward('x')", "TypeError", "str"),
    case(
        "setting a grad of the wrong shape is refused", "t.grad = np.ones(5)", "ValueError", "(5,)"
    ),
    case(
        "gradcheck of a function returning a float is refused",
        "fg.gradcheck(lambda x: 3.0, [np.ones(2)])",
        "TypeError",
        "Tensor",
    ),
    case(
        "gradcheck of a wrong gradient names the input",
        "fg.gradcheck(lambda x: fg.functional.clamp(x, -1e9, 1e9) * 0 + x.detach(), [np.ones(2)])",
        "GradcheckError",
        "input 0",
    ),
    case(
        "a Value from another thread is refused",
        "run_in_thread(lambda: v + 1)",
        "RuntimeError",
        "thread",
        setup="""
def run_in_thread(fn):
    box = []
    def body():
        try:
            fn()
        except BaseException as e:
            box.append(e)
    th = threading.Thread(target=body); th.start(); th.join(10)
    if box:
        raise box[0]
""",
    ),
    case("a Value of a string is refused", "fg.Value('x')", "TypeError", "str"),
    case("a Value plus a string is refused", "v + 'x'", "TypeError", "str"),
    case("a Value plus a tensor is refused", "v + fg.ones(3)", "TypeError", "Tensor"),
    # --- layers and state dicts ---
    case("a linear layer fed the wrong width names it", "model(fg.ones(2, 5))", "ValueError", "5"),
    case(
        "a linear layer of negative size is refused",
        "fg.layers.Linear(-1, 2)",
        "ValueError",
        ">= 0",
    ),
    case(
        "a conv layer fed the wrong channels is refused",
        "fg.layers.Conv2d(3, 4, 3)(fg.ones(1, 2, 5, 5))",
        "ValueError",
        "(N, 3, H, W)",
    ),
    case(
        "a conv kernel larger than the input is refused",
        "fg.layers.Conv2d(1, 1, 5)(fg.ones(1, 1, 3, 3))",
        "ValueError",
        "kernel",
    ),
    case(
        "a conv fed a 2-d input is refused",
        "fg.layers.Conv2d(1, 1, 3)(fg.ones(5, 5))",
        "ValueError",
        "(5, 5)",
    ),
    case(
        "a conv with stride 0 is refused",
        "fg.functional.conv2d(fg.ones(1, 1, 4, 4), fg.ones(1, 1, 2, 2), stride=0)",
        "ValueError",
        "stride",
    ),
    case(
        "max pooling with padding past half the kernel is refused",
        "fg.functional.max_pool2d(fg.ones(1, 1, 4, 4), 2, padding=2)",
        "ValueError",
        "padding",
    ),
    case(
        "an embedding index out of range is refused",
        "fg.layers.Embedding(10, 3)(fg.tensor([11]))",
        "IndexError",
        "11",
    ),
    case(
        "a float embedding index is refused",
        "fg.layers.Embedding(10, 3)(fg.Tensor([1.0]))",
        "TypeError",
        "float32",
    ),
    case(
        "batch norm fed the wrong features is refused",
        "fg.layers.BatchNorm1d(3)(fg.ones(2, 4))",
        "ValueError",
        "4",
    ),
    case("dropout above one is refused", "fg.layers.Dropout(1.5)", "ValueError", "1.5"),
    case(
        "functional dropout below zero is refused",
        "fg.functional.dropout(t, p=-0.1)",
        "ValueError",
        "-0.1",
    ),
    case(
        "max pooling with kernel zero is refused", "fg.layers.MaxPool2d(0)", "ValueError", "kernel"
    ),
    case(
        "load_state_dict with missing keys raises key error",
        "model.load_state_dict({})",
        "KeyError",
        "missing",
    ),
    case(
        "load_state_dict with an unexpected key raises key error",
        "model.load_state_dict({**model.state_dict(), 'extra.weight': fg.ones(2)})",
        "KeyError",
        "extra.weight",
    ),
    case(
        "load_state_dict with a mis-shaped tensor is refused and changes nothing",
        "model.load_state_dict(bad)",
        "ValueError",
        "0.weight",
        setup="before = {k: x.numpy() for k, x in model.state_dict().items()}\n"
        "bad = {**model.state_dict(), '0.weight': fg.ones(3, 3)}\n"
        "bad['2.bias'] = fg.zeros(2)",
        follow="assert all(np.array_equal(before[k], x.numpy())"
        " for k, x in model.state_dict().items())",
    ),
    case(
        "load_state_dict with a string value is refused",
        "model.load_state_dict({**model.state_dict(), '0.bias': 'x'})",
        "TypeError",
        "0.bias",
    ),
    case(
        "load_state_dict of a list is refused", "model.load_state_dict([1, 2])", "TypeError", "dict"
    ),
    # --- losses ---
    case(
        "a class index past the classes is refused",
        "fg.loss.cross_entropy(logits, [0, 3])",
        "ValueError",
        "3",
    ),
    case(
        "a negative class index is refused",
        "fg.loss.cross_entropy(logits, [-1, 0])",
        "ValueError",
        "-1",
    ),
    case(
        "a fractional class is refused",
        "fg.loss.cross_entropy(logits, [0.5, 1])",
        "ValueError",
        "0.5",
    ),
    case(
        "a NaN class is refused",
        "fg.loss.cross_entropy(logits, np.array([np.nan, 1.0]))",
        "ValueError",
        "nan",
    ),
    case(
        "too few class targets are refused", "fg.loss.cross_entropy(logits, [0])", "ValueError", "1"
    ),
    case(
        "nll with a class past the end is refused", "fg.loss.nll(logits, [5, 0])", "ValueError", "5"
    ),
    case(
        "mse of (3, 1) against (3,) is refused",
        "fg.loss.mse(fg.ones(3, 1), fg.ones(3))",
        "ValueError",
        "(3, 1)",
    ),
    case(
        "binary cross entropy of p above one is refused",
        "fg.loss.binary_cross_entropy(fg.Tensor([1.5]), fg.Tensor([1.0]))",
        "ValueError",
        "[0, 1]",
    ),
    case(
        "an unknown reduction is refused", "fg.loss.mse(t, t, reduction='avg')", "ValueError", "avg"
    ),
    case(
        "a loss of a list input is refused", "fg.loss.mse([1.0], fg.ones(1))", "TypeError", "Tensor"
    ),
    case(
        "label smoothing above one is refused",
        "fg.loss.cross_entropy(logits, [0, 1], label_smoothing=2.0)",
        "ValueError",
        "[0, 1]",
    ),
    # --- optimizers and schedulers ---
    case(
        "a negative learning rate is refused",
        "fg.optim.SGD(model.parameters(), lr=-1)",
        "ValueError",
        "lr",
    ),
    case(
        "a NaN learning rate is refused",
        "fg.optim.Adam(model.parameters(), lr=float('nan'))",
        "ValueError",
        "lr",
    ),
    case(
        "a beta of 1.5 is refused",
        "fg.optim.Adam(model.parameters(), betas=(1.5, 0.9))",
        "ValueError",
        "1.5",
    ),
    case(
        "a negative eps is refused",
        "fg.optim.Adam(model.parameters(), eps=-1.0)",
        "ValueError",
        "eps",
    ),
    case(
        "negative momentum is refused",
        "fg.optim.SGD(model.parameters(), lr=0.1, momentum=-0.5)",
        "ValueError",
        "momentum",
    ),
    case(
        "nesterov without momentum is refused",
        "fg.optim.SGD(model.parameters(), lr=0.1, nesterov=True)",
        "ValueError",
        "nesterov",
    ),
    case(
        "negative weight decay is refused",
        "fg.optim.AdamW(model.parameters(), weight_decay=-1.0)",
        "ValueError",
        "weight_decay",
    ),
    case(
        "an rmsprop alpha of -1 is refused",
        "fg.optim.RMSprop(model.parameters(), lr=0.1, alpha=-1.0)",
        "ValueError",
        "alpha",
    ),
    case("an empty parameter list is refused", "fg.optim.SGD([], lr=0.1)", "ValueError", "empty"),
    case("a string as parameters is refused", "fg.optim.SGD('abc', lr=0.1)", "TypeError", "str"),
    case(
        "a string learning rate is refused",
        "fg.optim.SGD(model.parameters(), lr='big')",
        "TypeError",
        "lr",
    ),
    case(
        "an optimizer state dict with the wrong groups is refused",
        "opt.load_state_dict({'state': {}, 'param_groups': []})",
        "ValueError",
        "group",
    ),
    case(
        "a step_size of zero is refused",
        "fg.optim.StepLR(opt, step_size=0)",
        "ValueError",
        "step_size",
    ),
    case(
        "a scheduler of a non-optimizer is refused",
        "fg.optim.StepLR(model, step_size=1)",
        "TypeError",
        "Optimizer",
    ),
    case(
        "a fused sgd step with a mis-shaped momentum buffer is refused",
        "fg._core.sgd_step(p0, fg.zeros(5), 0.1, momentum=0.9)",
        "ValueError",
        "(5,)",
        setup="p0 = fg.Tensor(np.ones((2, 2)), requires_grad=True)\np0.grad = np.ones((2, 2))",
        follow="fg._core.sgd_step(p0, fg.zeros(2, 2, dtype='float64'), 0.1, momentum=0.9)",
    ),
    case(
        "a fused adam step with mis-shaped moments is refused",
        "fg._core.adam_step(p0, fg.zeros(3), fg.zeros(2, 2, dtype='float64'), 1, 0.1)",
        "ValueError",
        "(3,)",
        setup="p0 = fg.Tensor(np.ones((2, 2)), requires_grad=True)\np0.grad = np.ones((2, 2))",
        follow="fg._core.adam_step(p0, fg.zeros(2, 2, dtype='float64'),"
        " fg.zeros(2, 2, dtype='float64'), 1, 0.1)",
    ),
    # --- data ---
    case(
        "X and y of different lengths are refused",
        "fg.data.DataLoader(X, np.arange(9), batch_size=2)",
        "ValueError",
        "9",
    ),
    case(
        "a batch size of zero is refused",
        "fg.data.DataLoader(X, y, batch_size=0)",
        "ValueError",
        "batch_size",
    ),
    case(
        "a float batch size is refused",
        "fg.data.DataLoader(X, y, batch_size=2.5)",
        "TypeError",
        "batch_size",
    ),
    case(
        "string data is refused",
        "fg.data.DataLoader(np.array(['a', 'b']), None, 1)",
        "TypeError",
        "numeric",
    ),
    case(
        "a scalar dataset is refused",
        "fg.data.DataLoader(np.float32(3.0), None, 1)",
        "TypeError",
        "float32",
    ),
    # --- checkpoints ---
    case(
        "loading a missing file raises file not found",
        "fg.load(os.path.join(tmp, 'nope'))",
        "FileNotFoundError",
        "nope",
    ),
    case(
        "loading random bytes is refused",
        "fg.load(junk)",
        "ValueError",
        "",
        setup="junk = os.path.join(tmp, 'junk')\nopen(junk, 'wb').write(os.urandom(1000))",
    ),
    case(
        "loading an empty file is refused",
        "fg.load(empty)",
        "ValueError",
        "",
        setup="empty = os.path.join(tmp, 'empty')\nopen(empty, 'wb').close()",
    ),
    case(
        "loading a truncated checkpoint is refused",
        "fg.load(cut)",
        "ValueError",
        "",
        setup="cut = os.path.join(tmp, 'cut')\nopen(cut, 'wb').write(open(ckpt, 'rb').read()[:-7])",
    ),
    case(
        "loading a checkpoint with a huge header length is refused",
        "fg.load(huge)",
        "ValueError",
        "",
        setup="huge = os.path.join(tmp, 'huge')\n"
        "open(huge, 'wb').write((2**62).to_bytes(8, 'little') + b'{}')",
    ),
    case(
        "loading a header with out-of-range offsets is refused",
        "fg.load(lie)",
        "ValueError",
        "",
        setup="lie = os.path.join(tmp, 'lie')\n"
        "h = json.dumps({'w': {'dtype': 'F32', 'shape': [1000, 1000],"
        " 'data_offsets': [0, 4000000]}}).encode()\n"
        "open(lie, 'wb').write(len(h).to_bytes(8, 'little') + h + b'\\0' * 16)",
    ),
    case(
        "loading a header with an overflowing shape is refused",
        "fg.load(ovf)",
        "ValueError",
        "",
        setup="ovf = os.path.join(tmp, 'ovf')\n"
        "h = json.dumps({'w': {'dtype': 'F32', 'shape': [2**62, 2**62],"
        " 'data_offsets': [0, 16]}}).encode()\n"
        "open(ovf, 'wb').write(len(h).to_bytes(8, 'little') + h + b'\\0' * 16)",
    ),
    case(
        "loading an unknown dtype checkpoint is refused",
        "fg.load(ints)",
        "ValueError",
        "",
        setup="ints = os.path.join(tmp, 'ints')\n"
        "h = json.dumps({'w': {'dtype': 'Q64', 'shape': [2],"
        " 'data_offsets': [0, 16]}}).encode()\n"
        "open(ints, 'wb').write(len(h).to_bytes(8, 'little') + h + b'\\0' * 16)",
    ),
    case(
        "saving an arbitrary object is refused",
        "fg.save({'w': object()}, os.path.join(tmp, 's'))",
        "TypeError",
        "object",
    ),
    case(
        "saving into a missing directory raises file not found",
        "fg.save(model.state_dict(), os.path.join(tmp, 'no', 'dir', 'x'))",
        "FileNotFoundError",
        "no",
    ),
    case(
        "saving with a tensor as a key is refused",
        "fg.save({t: 1}, os.path.join(tmp, 'k'))",
        "TypeError",
        "key",
    ),
    case(
        "saving to a path of the wrong type is refused",
        "fg.save(model.state_dict(), 3.5)",
        "TypeError",
        "path",
    ),
]

RESERVED = {"AxisError": ("ValueError", "IndexError"), "GradcheckError": ("RuntimeError",)}


def _run(params):
    call, _exc, _frag, setup, follow = params
    body = textwrap.indent(call, "    ")
    script = CHILD.format(prelude=PRELUDE, setup=setup, call=body, after=AFTER, follow=follow)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script],
            check=False,
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "RUST_BACKTRACE": "0", "OMP_NUM_THREADS": "1"},
        )
    except subprocess.TimeoutExpired as exc:
        return {"returncode": None, "stdout": exc.stdout or "", "stderr": "timed out"}
    return {"returncode": proc.returncode, "stdout": proc.stdout, "stderr": proc.stderr}


@pytest.fixture(scope="module")
def outcomes():
    """Runs every case in its own child, two at a time; maps case id to its outcome."""
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = list(pool.map(_run, [p.values for p in CASES]))
    return {p.id: r for p, r in zip(CASES, results)}


def _describe(out):
    return f"exit {out['returncode']}\nstdout: {out['stdout'][-2000:]}\nstderr: {out['stderr'][-3000:]}"


@pytest.mark.parametrize(("call", "exc", "fragment", "setup", "follow"), CASES)
def test_every_bad_call_raises_its_documented_error_and_leaves_objects_working(
    outcomes, request, call, exc, fragment, setup, follow
):
    out = outcomes[request.node.callspec.id]
    rc = out["returncode"]
    assert rc is not None, f"the child hung: {_describe(out)}"
    assert rc >= 0, f"the child died of signal {-rc} (a crash): {_describe(out)}"
    lines = [ln for ln in out["stdout"].splitlines() if ln.startswith("RESULT ")]
    assert lines, f"the child crashed before the call returned: {_describe(out)}"
    result = json.loads(lines[0][len("RESULT ") :])
    raised = result["raised"]
    assert raised is not None, f"{call!r} raised nothing; expected {exc}"
    assert "PanicException" not in raised, f"{call!r} panicked in Rust: {result['message']}"
    names = {m.rsplit(".", 1)[-1] for m in result["mro"]}
    assert exc in names, f"{call!r} raised {raised}: {result['message']!r}; expected {exc}"
    for base in RESERVED.get(exc, ()):
        assert base in names
    assert any(n in BUILTIN for n in names), raised
    assert fragment.lower() in result["message"].lower(), (
        f"{call!r} raised {raised} with message {result['message']!r}, "
        f"which does not name {fragment!r}"
    )
    assert rc == 0 and "AFTER OK" in out["stdout"], (
        f"objects stopped working after the error: {_describe(out)}"
    )


def test_the_table_holds_at_least_fifty_bad_calls():
    assert len(CASES) >= 50
    assert len({p.id for p in CASES}) == len(CASES)
