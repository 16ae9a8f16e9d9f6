"""Matrix multiply, float32 and float64: GFLOP/s (2·n³ per n×n product) against NumPy and
PyTorch, with 1 and 2 threads. Every implementation multiplies the same random matrices
and allocates its result, as ``a @ b`` does in each library."""

from __future__ import annotations

import numpy as np
from common import (
    Options,
    Report,
    default_first,
    figures_from_stats,
    measure,
    numpy_runs_with,
    optional_peer,
    script_main,
    set_threads,
)

import ferrograd as fg

SIZES = (64, 256, 1024, 2048)
QUICK_SIZES = (32,)
DEFAULT_THREADS = (1, 2)


def products(a: np.ndarray, b: np.ndarray, torch) -> dict:
    """``a @ b`` in each library, on its own copy of the operands."""
    fa, fb = fg.Tensor(a), fg.Tensor(b)
    fns = {"ferrograd": lambda: fa @ fb, "numpy": lambda: a @ b}
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        fns["torch"] = lambda: ta @ tb
    return fns


def run(opts: Options, report: Report) -> None:
    torch = optional_peer("torch")
    sizes = QUICK_SIZES if opts.quick else SIZES
    threads = opts.threads or default_first(DEFAULT_THREADS)
    rng = np.random.default_rng(0)
    for t in threads:
        set_threads(t)
        for dtype in ("float32", "float64"):
            for n in sizes:
                a = rng.standard_normal((n, n)).astype(dtype)
                b = rng.standard_normal((n, n)).astype(dtype)
                fns = products(a, b, torch)
                expected = a.astype(np.float64) @ b.astype(np.float64)
                tol = 1e-3 if dtype == "float32" else 1e-9
                np.testing.assert_allclose(fns["ferrograd"]().numpy(), expected,
                                           rtol=tol, atol=tol * n)
                if not numpy_runs_with(t):
                    print(f"# numpy left out at {t} threads: install threadpoolctl to set "
                          "its BLAS threads at run time")
                    del fns["numpy"]
                # Big products need fewer repeats: their samples are long and steady.
                repeats = opts.repeats if n <= 256 else max(3, opts.repeats - 2)
                stats = measure(fns, repeats=repeats, min_time=opts.min_time)
                report.add(figures_from_stats(f"matmul f{dtype[5:]}", str(n), t, stats,
                                              "GFLOP/s", 2 * n**3 / 1e9))
    set_threads(None)


if __name__ == "__main__":
    script_main("matmul: GFLOP/s", run)
