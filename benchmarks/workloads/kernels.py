"""Kernel workloads: matmul, elementwise ops, per-call overhead, NumPy in/out.

Every library computes the same thing on the same inputs (NumPy's generator, seed 0), and
its result is checked against NumPy before it is timed.

* ``matmul``: ``a @ b``, n×n, float32 (n = 64, 256, 1024) and float64 (n = 1024), at 1 and
  2 threads; GFLOP/s = 2n³ / time. Each call allocates its result, as ``a @ b`` does.
* ``elementwise``: ``a + b``, ``a * b``, ``exp(a)``, ``relu(a)`` on 1K, 1M and 16M float32
  elements, all cores; GB/s counts every input read plus the output written (add/mul
  12 B per element, exp/relu 8 B). NumPy's ufuncs run on one thread whatever the count.
* ``overhead``: shape (4,) float32: one ``a + b`` (no autodiff); ``(a*b + c).relu().sum()``
  with every input requiring grad; the same then ``.backward()``. µs per call: the cost of
  crossing into the library, allocating and recording the graph. NumPy's ``a + b`` is there
  for scale.
* ``numpy_io``: a 100 MB float32 array into ferrograd (``fg.from_numpy``, ``fg.Tensor``) and
  out (``np.asarray(t)``, ``t.numpy()``), GB/s = array bytes / time, against ``np.copy`` of
  the same array (one read, one write, as a one-copy conversion must). PyTorch's
  ``from_numpy`` shares memory and copies nothing, so it is no peer here.
"""

from __future__ import annotations

from typing import Any, Callable

import numpy as np

from workloads import Context, declare, implementation

# ----- matmul -------------------------------------------------------------------------------

declare("matmul", "matrix multiply a @ b", threads=(1, 2))
MATMUL_CASES = (("float32", 64), ("float32", 256), ("float32", 1024), ("float64", 1024))
QUICK_MATMUL_CASES = (("float32", 32), ("float64", 32))


def _matmul(
    ctx: Context,
    to_lib: Callable[[np.ndarray], Any],
    to_numpy: Callable[[Any], np.ndarray],
    matmul: Callable[[Any, Any], Any],
) -> None:
    rng = np.random.default_rng(0)
    for dtype, n in QUICK_MATMUL_CASES if ctx.quick else MATMUL_CASES:
        a = rng.standard_normal((n, n)).astype(dtype)
        b = rng.standard_normal((n, n)).astype(dtype)
        la, lb = to_lib(a), to_lib(b)
        tol = 1e-3 if dtype == "float32" else 1e-9
        np.testing.assert_allclose(
            to_numpy(matmul(la, lb)),
            a.astype(np.float64) @ b.astype(np.float64),
            rtol=tol,
            atol=tol * n,
        )
        # big products have long, steady samples: fewer of them do
        repeats = ctx.repeats if n <= 256 else max(2, ctx.repeats - 1)
        ctx.time(
            f"matmul f{dtype[5:]}",
            str(n),
            "GFLOP/s",
            lambda la=la, lb=lb: matmul(la, lb),
            work=2 * n**3 / 1e9,
            repeats=repeats,
        )


@implementation("matmul", "ferrograd")
def matmul_ferrograd(ctx: Context) -> None:
    import ferrograd as fg

    _matmul(ctx, fg.Tensor, lambda t: t.numpy(), lambda a, b: a @ b)


@implementation("matmul", "numpy")
def matmul_numpy(ctx: Context) -> None:
    _matmul(ctx, lambda a: a, lambda a: a, lambda a, b: a @ b)


@implementation("matmul", "torch")
def matmul_torch(ctx: Context) -> None:
    import torch

    _matmul(ctx, torch.from_numpy, lambda t: t.numpy(), lambda a, b: a @ b)


# ----- elementwise --------------------------------------------------------------------------

declare("elementwise", "elementwise add, mul, exp, relu")
ELEMENTWISE_SIZES = {"1K": 1 << 10, "1M": 1 << 20, "16M": 1 << 24}
QUICK_ELEMENTWISE_SIZES = {"1K": 1 << 10, "64K": 1 << 16}
ITEMSIZE = 4  # float32
# op -> (arrays read, the NumPy reference)
ELEMENTWISE_OPS: dict[str, tuple[int, Callable[[np.ndarray, np.ndarray], np.ndarray]]] = {
    "add": (2, np.add),
    "mul": (2, np.multiply),
    "exp": (1, lambda x, _y: np.exp(x)),
    "relu": (1, lambda x, _y: np.maximum(x, 0)),
}


def _elementwise(
    ctx: Context,
    to_lib: Callable[[np.ndarray], Any],
    to_numpy: Callable[[Any], np.ndarray],
    ops: dict[str, Callable[[Any, Any], Any]],
) -> None:
    rng = np.random.default_rng(0)
    for size, n in (QUICK_ELEMENTWISE_SIZES if ctx.quick else ELEMENTWISE_SIZES).items():
        x = rng.standard_normal(n).astype(np.float32)
        y = rng.standard_normal(n).astype(np.float32)
        lx, ly = to_lib(x), to_lib(y)
        for name, (reads, reference) in ELEMENTWISE_OPS.items():
            op = ops[name]
            np.testing.assert_allclose(to_numpy(op(lx, ly)), reference(x, y), rtol=1e-5, atol=1e-6)
            ctx.time(
                f"elementwise {name}",
                size,
                "GB/s",
                lambda op=op, lx=lx, ly=ly: op(lx, ly),
                work=(reads + 1) * ITEMSIZE * n / 1e9,
            )


@implementation("elementwise", "ferrograd")
def elementwise_ferrograd(ctx: Context) -> None:
    import ferrograd as fg

    _elementwise(
        ctx,
        fg.Tensor,
        lambda t: t.numpy(),
        {
            "add": lambda a, b: a + b,
            "mul": lambda a, b: a * b,
            "exp": lambda a, _b: a.exp(),
            "relu": lambda a, _b: a.relu(),
        },
    )


@implementation("elementwise", "numpy")
def elementwise_numpy(ctx: Context) -> None:
    _elementwise(
        ctx,
        lambda a: a,
        lambda a: a,
        {
            "add": np.add,
            "mul": np.multiply,
            "exp": lambda a, _b: np.exp(a),
            "relu": lambda a, _b: np.maximum(a, 0),
        },
    )


@implementation("elementwise", "torch")
def elementwise_torch(ctx: Context) -> None:
    import torch

    _elementwise(
        ctx,
        torch.from_numpy,
        lambda t: t.numpy(),
        {
            "add": torch.add,
            "mul": torch.mul,
            "exp": lambda a, _b: torch.exp(a),
            "relu": lambda a, _b: torch.relu(a),
        },
    )


# ----- per-call overhead --------------------------------------------------------------------

declare("overhead", "per-call overhead on shape (4,)")
TINY_SHAPE = (4,)


def _tiny_inputs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(TINY_SHAPE).astype(np.float32) for _ in range(3))
    return a, b, c


def _tiny_expected() -> float:
    a, b, c = _tiny_inputs()
    return float(np.maximum(a * b + c, 0).sum())


@implementation("overhead", "ferrograd")
def overhead_ferrograd(ctx: Context) -> None:
    import ferrograd as fg

    a, b, c = _tiny_inputs()
    fa, fb = fg.Tensor(a), fg.Tensor(b)
    ga, gb, gc = (fg.Tensor(v, requires_grad=True) for v in (a, b, c))
    assert abs((ga * gb + gc).relu().sum().item() - _tiny_expected()) < 1e-5
    ctx.time("tiny add", "(4,)", "µs", lambda: fa + fb, scale=1e6)
    ctx.time("tiny fwd", "(4,)", "µs", lambda: (ga * gb + gc).relu().sum(), scale=1e6)
    ctx.time(
        "tiny fwd+bwd", "(4,)", "µs", lambda: (ga * gb + gc).relu().sum().backward(), scale=1e6
    )


@implementation("overhead", "numpy")
def overhead_numpy(ctx: Context) -> None:
    a, b, _ = _tiny_inputs()
    ctx.time("tiny add", "(4,)", "µs", lambda: a + b, scale=1e6)


@implementation("overhead", "torch")
def overhead_torch(ctx: Context) -> None:
    import torch

    a, b, c = _tiny_inputs()
    ta, tb = torch.from_numpy(a), torch.from_numpy(b)
    sa, sb, sc = (torch.tensor(v, requires_grad=True) for v in (a, b, c))
    assert abs((sa * sb + sc).relu().sum().item() - _tiny_expected()) < 1e-5
    ctx.time("tiny add", "(4,)", "µs", lambda: ta + tb, scale=1e6)
    ctx.time("tiny fwd", "(4,)", "µs", lambda: (sa * sb + sc).relu().sum(), scale=1e6)
    ctx.time(
        "tiny fwd+bwd", "(4,)", "µs", lambda: (sa * sb + sc).relu().sum().backward(), scale=1e6
    )


# ----- NumPy in and out ---------------------------------------------------------------------

declare("numpy_io", "NumPy arrays in and out")
IO_MB, QUICK_IO_MB = 100, 1
IO_CASES = (
    "numpy in: fg.from_numpy(a)",
    "numpy in: fg.Tensor(a)",
    "numpy out: np.asarray(t)",
    "numpy out: t.numpy()",
)


def _io_array(ctx: Context) -> tuple[np.ndarray, str]:
    mb = QUICK_IO_MB if ctx.quick else IO_MB
    return np.random.default_rng(0).standard_normal(
        mb * 10**6 // 4, dtype=np.float32
    ), f"{mb} MB f32"


@implementation("numpy_io", "ferrograd")
def numpy_io_ferrograd(ctx: Context) -> None:
    import ferrograd as fg

    a, size = _io_array(ctx)
    t = fg.from_numpy(a)
    fns: dict[str, Callable[[], Any]] = {
        IO_CASES[0]: lambda: fg.from_numpy(a),
        IO_CASES[1]: lambda: fg.Tensor(a),
        IO_CASES[2]: lambda: np.asarray(t),
        IO_CASES[3]: lambda: t.numpy(),
    }
    for label, fn in fns.items():
        back = fn()
        np.testing.assert_array_equal(np.asarray(back), a)
        shares = np.shares_memory(np.asarray(back), np.asarray(fn()))
        ctx.time(
            label,
            size,
            "GB/s",
            fn,
            work=a.nbytes / 1e9,
            note="no copy: shares the tensor's memory" if shares else "",
        )


@implementation("numpy_io", "numpy")
def numpy_io_numpy(ctx: Context) -> None:
    a, size = _io_array(ctx)
    for label in IO_CASES:  # the same peer for each: np.copy, measured once per figure
        ctx.time(label, size, "GB/s", lambda: np.copy(a), work=a.nbytes / 1e9, note="np.copy(a)")
