"""Elementwise add, mul, exp and relu on float32 vectors of 1K, 1M and 16M elements: GB/s
against NumPy and PyTorch.

Bytes count what the operation must move: every input read plus the output written
(add/mul: 3 × 4 bytes per element, exp/relu: 2 × 4). Each implementation allocates a fresh
output, as ``a + b`` does. NumPy's ufuncs run on one thread whatever the thread count;
ferrograd and PyTorch use the threads given (default: all cores)."""

from __future__ import annotations

import numpy as np
from common import (
    Options,
    Report,
    cpu_count,
    figures_from_stats,
    measure,
    optional_peer,
    script_main,
    set_threads,
)

import ferrograd as fg

SIZES = {"1K": 1 << 10, "1M": 1 << 20, "16M": 1 << 24}
QUICK_SIZES = {"1K": 1 << 10, "64K": 1 << 16}
ITEMSIZE = 4  # float32


def cases(x: np.ndarray, y: np.ndarray, torch) -> dict:
    """op name -> (arrays read, {impl: function}) on the inputs ``x``, ``y``."""
    fx, fy = fg.Tensor(x), fg.Tensor(y)
    ops = {
        "add": (2, {"ferrograd": lambda: fx + fy, "numpy": lambda: np.add(x, y)}),
        "mul": (2, {"ferrograd": lambda: fx * fy, "numpy": lambda: np.multiply(x, y)}),
        "exp": (1, {"ferrograd": lambda: fx.exp(), "numpy": lambda: np.exp(x)}),
        "relu": (1, {"ferrograd": lambda: fx.relu(), "numpy": lambda: np.maximum(x, 0)}),
    }
    if torch is not None:
        tx, ty = torch.from_numpy(x), torch.from_numpy(y)
        ops["add"][1]["torch"] = lambda: torch.add(tx, ty)
        ops["mul"][1]["torch"] = lambda: torch.mul(tx, ty)
        ops["exp"][1]["torch"] = lambda: torch.exp(tx)
        ops["relu"][1]["torch"] = lambda: torch.relu(tx)
    return ops


def run(opts: Options, report: Report) -> None:
    torch = optional_peer("torch")
    sizes = QUICK_SIZES if opts.quick else SIZES
    threads = opts.threads or [cpu_count()]
    rng = np.random.default_rng(0)
    for t in threads:
        set_threads(t)
        for label, n in sizes.items():
            x = rng.standard_normal(n).astype(np.float32)
            y = rng.standard_normal(n).astype(np.float32)
            for name, (reads, fns) in cases(x, y, torch).items():
                np.testing.assert_allclose(fns["ferrograd"]().numpy(), fns["numpy"](),
                                           rtol=1e-5, atol=1e-6)
                gigabytes = (reads + 1) * ITEMSIZE * n / 1e9
                stats = measure(fns, repeats=opts.repeats, min_time=opts.min_time)
                report.add(figures_from_stats(f"elementwise {name}", label, t, stats,
                                              "GB/s", gigabytes))
    set_threads(None)


if __name__ == "__main__":
    script_main("elementwise: GB/s (bytes read + written)", run)
