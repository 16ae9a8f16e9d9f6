"""A hypothesis fuzzer that strings random API calls together on random inputs.

A ``RuleBasedStateMachine`` keeps a pool of Tensors, NdArrays and Values and applies random
calls to them: creation functions with random (sometimes absurd) arguments, elementwise and
broadcasting ops, reductions over random axes, reshapes, random index expressions, cat and
stack, matmul, the functional ops and losses with random targets, backward (with and without
``retain_graph``, twice, with random grads), in-place updates under ``no_grad``, optimizer
steps, ``state_dict`` round trips and checkpoint files. Any exception outside the documented
classes (ValueError, TypeError, IndexError, RuntimeError, MemoryError, KeyError,
FileNotFoundError) fails the run, and so does a crash.

The machine runs in a child process, so a segfault or abort fails this test instead of
killing pytest; the child logs every call it is about to make, and the last ones are shown
when it dies. It runs for ``FERROGRAD_FUZZ_SECONDS`` seconds (default 10), in rounds of
fresh random programs, e.g. a long run::

    FERROGRAD_FUZZ_SECONDS=600 python -m pytest tests/test_fuzz.py -s

which prints how many programs and calls ran. ``FERROGRAD_FUZZ_SEED`` fixes the first
round's seed (the CI run is derandomized from seed 0).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap

CHILD = textwrap.dedent(
    r'''
    import collections, faulthandler, math, os, sys, tempfile, time, warnings
    import numpy as np
    import hypothesis.strategies as st
    from hypothesis import HealthCheck, settings, seed as hseed
    from hypothesis.stateful import (Bundle, RuleBasedStateMachine, consumes, multiple,
                                     initialize, invariant, rule, run_state_machine_as_test)
    import ferrograd as fg

    faulthandler.enable()
    import resource
    # A safety net: an allocation past 8 GiB fails (MemoryError) instead of waking the OOM
    # killer; creation calls below also skip sizes that would fit but fill the machine.
    resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
    HUGE = 10**7  # elements: beyond this a call either fails (MemoryError) or is skipped

    def fits_or_absurd(count):
        """Counts under 1e7 are cheap, counts past 1e11 must raise MemoryError; skip between."""
        return count < HUGE or count > 10**11
    warnings.simplefilter("ignore")
    ALLOWED = (ValueError, TypeError, IndexError, RuntimeError, MemoryError, KeyError,
               FileNotFoundError)
    LOG = open(sys.argv[1], "w", buffering=1)
    TMP = tempfile.mkdtemp()
    STEPS = [0]

    def attempt(label, fn, *args, **kw):
        """Runs one call; documented errors are fine, anything else propagates."""
        STEPS[0] += 1
        LOG.write(f"{label} {args!r:.300} {kw!r:.200}\n")
        try:
            return fn(*args, **kw)
        except ALLOWED as exc:
            if type(exc).__name__ == "PanicException":
                raise AssertionError(f"Rust panic in {label}: {exc}")
            return None

    floats = st.one_of(
        st.floats(-5, 5, allow_nan=False, width=32),
        st.sampled_from([0.0, -0.0, 1e4, -1e4, 1e30, float("nan"), float("inf"), -float("inf")]),
    )
    shapes = st.lists(st.integers(0, 4), min_size=0, max_size=4).map(tuple)
    dims = st.one_of(st.integers(-3, 6), st.sampled_from([10**12, 2**63, -(2**63), 2**70]))
    axes = st.one_of(st.none(), st.integers(-4, 4), st.lists(st.integers(-4, 4), max_size=3).map(tuple))
    scalars = st.one_of(st.integers(-3, 3), floats, st.sampled_from([True, "x", None, 2**70]))
    index_item = st.one_of(
        st.integers(-5, 5), st.none(), st.just(Ellipsis),
        st.builds(slice, st.one_of(st.none(), st.integers(-6, 6)),
                  st.one_of(st.none(), st.integers(-6, 6)),
                  st.one_of(st.none(), st.integers(-3, 3))),
        st.lists(st.integers(-5, 5), max_size=4),
        st.sampled_from([1.5, "a", 10**20, [0.5], [[0, 1], [1, 0]]]),
    )
    keys = st.one_of(index_item, st.lists(index_item, max_size=5).map(tuple))
    dtypes = st.sampled_from(["float32", "float64", None, "float16", "int8", np.float64])
    UNARY = ["exp", "log", "sqrt", "abs", "relu", "sigmoid", "tanh", "flatten", "detach",
             "numpy", "tolist", "item", "__neg__", "__repr__", "__len__", "__float__",
             "__bool__", "softmax", "log_softmax", "T"]
    BINARY = ["__add__", "__sub__", "__mul__", "__truediv__", "__pow__", "__matmul__",
              "__radd__", "__rsub__", "__rtruediv__", "__rpow__", "__rmatmul__"]
    REDUCE = ["sum", "mean", "max", "min", "argmax", "argmin"]

    class Program(RuleBasedStateMachine):
        tensors = Bundle("tensors")

        @initialize(target=tensors)
        def start(self):
            fg.manual_seed(0)  # each program replays exactly (hypothesis re-runs to shrink)
            return fg.Tensor([[1.0, -2.0], [3.0, 0.5]], requires_grad=True)

        @rule(target=tensors, shape=shapes, dtype=st.sampled_from(["float32", "float64"]),
              grad=st.booleans(), data=st.data(), layout=st.sampled_from(["c", "T", "rev"]))
        def from_numpy(self, shape, dtype, grad, data, layout):
            n = int(np.prod(shape))
            vals = np.array(data.draw(st.lists(floats, min_size=n, max_size=n)),
                            dtype=dtype).reshape(shape)
            if layout == "T":
                vals = vals.T
            elif layout == "rev" and vals.ndim:
                vals = vals[::-1]
            t = attempt("Tensor", fg.Tensor, vals, requires_grad=grad)
            return t if t is not None else multiple()

        @rule(target=tensors, fn=st.sampled_from(["zeros", "ones", "randn", "rand", "full",
                                                  "arange", "eye"]),
              args=st.lists(dims, max_size=3), dtype=dtypes, grad=st.booleans())
        def create(self, fn, args, dtype, grad):
            kw = {"dtype": dtype, "requires_grad": grad}
            positive = [a for a in args if a > 0]
            if fn == "arange":
                a = [x / 2 for x in args[:3]]
                start, stop, step = (0, a[0], 1) if len(a) == 1 else (a + [1])[:3] if a else (0, 0, 1)
                if step and not fits_or_absurd(abs((stop - start) / step)):
                    return multiple()
            elif fn == "eye":
                if not fits_or_absurd(math.prod(positive[:2])):
                    return multiple()
            elif not fits_or_absurd(math.prod(positive)):
                return multiple()
            if fn == "full":
                t = attempt(fn, fg.full, tuple(args), 1.5, **kw)
            elif fn == "arange":
                t = attempt(fn, fg.arange, *[a / 2 for a in args[:3]], **kw)
            elif fn == "eye":
                t = attempt(fn, fg.eye, *args[:2], **kw)
            else:
                t = attempt(fn, getattr(fg, fn), *args, **kw)
            return t if isinstance(t, fg.Tensor) else multiple()

        @rule(target=tensors, t=tensors, name=st.sampled_from(UNARY))
        def unary(self, t, name):
            out = attempt(name, lambda: getattr(t, name)() if name != "T" else t.T)
            return out if isinstance(out, fg.Tensor) else multiple()

        @rule(target=tensors, t=tensors, u=st.one_of(tensors, scalars), name=st.sampled_from(BINARY))
        def binary(self, t, u, name):
            if u is None or isinstance(u, str):
                try:
                    getattr(t, name)(u)
                except TypeError:
                    pass
                return multiple()
            out = attempt(name, getattr(t, name), u)
            if out is NotImplemented:
                return multiple()
            return out if isinstance(out, fg.Tensor) else multiple()

        @rule(target=tensors, t=tensors, name=st.sampled_from(REDUCE), axis=axes,
              keepdims=st.booleans())
        def reduce(self, t, name, axis, keepdims):
            out = attempt(name, getattr(t, name), axis=axis, keepdims=keepdims)
            return out if isinstance(out, fg.Tensor) else multiple()

        @rule(target=tensors, t=tensors, shape=st.lists(st.integers(-2, 6), max_size=4))
        def reshape(self, t, shape):
            out = attempt("reshape", t.reshape, *shape) if shape else attempt(
                "reshape", t.reshape, ())
            return out if isinstance(out, fg.Tensor) else multiple()

        @rule(target=tensors, t=tensors, a=st.integers(-4, 4), b=st.integers(-4, 4),
              perm=st.permutations(range(3)))
        def transpose(self, t, a, b, perm):
            out = attempt("transpose", t.transpose, a, b)
            attempt("permute", t.permute, *perm[: t.ndim])
            return out if isinstance(out, fg.Tensor) else multiple()

        @rule(target=tensors, t=tensors, key=keys)
        def index(self, t, key):
            out = attempt("getitem", t.__getitem__, key)
            return out if isinstance(out, fg.Tensor) else multiple()

        @rule(target=tensors, ts=st.lists(tensors, min_size=0, max_size=3), axis=st.integers(-3, 3),
              stack=st.booleans())
        def join(self, ts, axis, stack):
            out = attempt("stack" if stack else "cat", fg.stack if stack else fg.cat, ts, axis=axis)
            return out if isinstance(out, fg.Tensor) else multiple()

        @rule(target=tensors, t=tensors, u=tensors, which=st.sampled_from(
            ["linear", "conv2d", "max_pool2d", "gelu", "clamp", "maximum", "minimum",
             "dropout"]), k=st.integers(-1, 3))
        def functional(self, t, u, which, k):
            F = fg.functional
            calls = {
                "linear": lambda: F.linear(t, u),
                "conv2d": lambda: F.conv2d(t, u, stride=k, padding=abs(k)),
                "max_pool2d": lambda: F.max_pool2d(t, k, padding=max(k - 2, 0)),
                "gelu": lambda: F.gelu(t),
                "clamp": lambda: F.clamp(t, -k, k),
                "maximum": lambda: F.maximum(t, u),
                "minimum": lambda: F.minimum(t, u),
                "dropout": lambda: F.dropout(t, p=k / 3),
            }
            out = attempt(which, calls[which])
            return out if isinstance(out, fg.Tensor) else multiple()

        @rule(target=tensors, t=tensors, u=tensors,
              classes=st.lists(st.integers(-1, 4), max_size=5),
              which=st.sampled_from(["cross_entropy", "nll", "mse", "l1",
                                     "binary_cross_entropy",
                                     "binary_cross_entropy_with_logits"]),
              reduction=st.sampled_from(["mean", "sum", "none", "bad"]))
        def loss(self, t, u, classes, which, reduction):
            fn = getattr(fg.loss, which)
            second = classes if which in ("cross_entropy", "nll") else u
            out = attempt(which, fn, t, second, reduction=reduction)
            return out if isinstance(out, fg.Tensor) else multiple()

        @rule(t=tensors, retain=st.booleans(), twice=st.booleans(), with_grad=st.booleans())
        def backward(self, t, retain, twice, with_grad):
            grad = np.ones(t.shape) if with_grad else None
            attempt("backward", t.backward, grad, retain_graph=retain)
            if twice:
                attempt("backward again", t.backward, grad)

        @rule(t=tensors, u=st.one_of(tensors, scalars), op=st.sampled_from(
            ["__iadd__", "__isub__", "__imul__", "__itruediv__"]))
        def inplace(self, t, u, op):
            if u is None or isinstance(u, str):
                return
            with fg.no_grad():
                attempt(op, getattr(t, op), u)

        @rule(t=tensors, value=st.one_of(st.none(), shapes))
        def set_grad(self, t, value):
            attempt("set grad", setattr, t, "grad", None if value is None else np.ones(value))
            attempt("set requires_grad", t.requires_grad_, True)

        @rule(ts=st.lists(tensors, min_size=1, max_size=3),
              opt=st.sampled_from(["SGD", "Adam", "AdamW", "RMSprop"]),
              lr=st.sampled_from([0.1, 1e-3, 0.0, -1.0, float("nan")]))
        def optimizer_step(self, ts, opt, lr):
            o = attempt(opt, getattr(fg.optim, opt), ts, lr=lr)
            if o is not None:
                attempt("step", o.step)
                attempt("zero_grad", o.zero_grad)
                attempt("opt load_state_dict", o.load_state_dict, o.state_dict())

        @rule(ts=st.lists(tensors, max_size=3), cut=st.integers(0, 64))
        def checkpoint(self, ts, cut):
            path = os.path.join(TMP, "c.safetensors")
            if attempt("save", fg.save, {f"t{i}": t for i, t in enumerate(ts)}, path) is None \
                    and os.path.exists(path):
                attempt("load", fg.load, path)
                data = open(path, "rb").read()
                open(path, "wb").write(data[: max(0, len(data) - cut)])
                attempt("load truncated", fg.load, path)

        @rule(x=st.one_of(floats, st.integers(-3, 3)), y=st.one_of(floats, st.integers(-3, 3)),
              op=st.sampled_from(["+", "*", "/", "**", "-"]))
        def value(self, x, y, op):
            a, b = fg.Value(x), fg.Value(y)
            out = attempt("Value" + op, eval, f"a {op} b", {"a": a, "b": b})
            if out is not None:
                out = attempt("tanh", out.tanh)
                if out is not None:
                    attempt("Value.backward", out.backward)

        @rule(t=tensors)
        def module_roundtrip(self, t):
            if t.ndim != 2 or t.shape[1] == 0 or t.shape[1] > 8:
                return
            m = fg.layers.Sequential(fg.layers.Linear(t.shape[1], 3), fg.layers.Tanh())
            out = attempt("module", m, t)
            if out is not None:
                attempt("module backward", out.sum().backward)
                sd = m.state_dict()
                attempt("load_state_dict", m.load_state_dict, sd)

        @invariant()
        def tensors_stay_readable(self):
            pass

    seconds = float(sys.argv[2])
    first_seed = int(sys.argv[3])
    deadline = time.monotonic() + seconds
    rounds = 0
    while time.monotonic() < deadline:
        s = settings(max_examples=20, stateful_step_count=25, deadline=None, database=None,
                     suppress_health_check=list(HealthCheck))
        run_state_machine_as_test(hseed(first_seed + rounds)(Program), settings=s)
        rounds += 1
    print(f"FUZZ rounds={rounds} programs={rounds * 20} calls={STEPS[0]}", flush=True)
    '''
)


def test_random_programs_of_api_calls_never_crash_or_raise_undocumented_errors():
    seconds = float(os.environ.get("FERROGRAD_FUZZ_SECONDS", "10"))
    first_seed = int(os.environ.get("FERROGRAD_FUZZ_SEED", "0"))
    with tempfile.TemporaryDirectory() as tmp:
        log = os.path.join(tmp, "calls.log")
        try:
            proc = subprocess.run(
                [sys.executable, "-c", CHILD, log, str(seconds), str(first_seed)],
                check=False,
                capture_output=True,
                text=True,
                timeout=seconds + 300,
            )
        except subprocess.TimeoutExpired:
            with open(log) as f:
                tail = "".join(f.readlines()[-25:])
            raise AssertionError(f"the fuzzer's child hung; its last calls:\n{tail}") from None
        with open(log) as f:
            last_calls = f.readlines()[-25:]
    tail = "".join(last_calls)
    assert proc.returncode >= 0, (
        f"the fuzzer's child died of signal {-proc.returncode}; its last calls:\n{tail}\n"
        f"stderr:\n{proc.stderr[-4000:]}"
    )
    assert proc.returncode == 0, f"the fuzzer found a failure:\n{proc.stderr[-8000:]}"
    summary = [ln for ln in proc.stdout.splitlines() if ln.startswith("FUZZ ")]
    assert summary, proc.stdout
    print(summary[0])
    calls = int(summary[0].rsplit("calls=", 1)[1])
    assert calls > 100
