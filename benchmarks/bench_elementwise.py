"""Elementwise add, mul, exp and relu on float32 vectors of 1K, 1M and 16M elements: GB/s
against NumPy and PyTorch.

Bytes count what the operation must move: every input read plus the output written
(add/mul: 3 × 4 bytes per element, exp/relu: 2 × 4). Each implementation allocates a fresh
output, as ``a + b`` does. NumPy's ufuncs run on one thread whatever the thread count;
ferrograd and PyTorch use the threads given (default: all cores)."""

from __future__ import annotations

import numpy as np

import ferrograd as fg
from common import Options, Report, cpu_count, figures_from_stats, measure
from common import optional_peer, script_main, set_threads

SIZES = {"1K": 1 << 10, "1M": 1 << 20, "16M": 1 << 24}
QUICK_SIZES = {"1K": 1 << 10, "64K": 1 << 16}
ITEMSIZE = 4  # float32


def _ops(torch):
    """name -> (arrays read, ferrograd fn, numpy fn, torch fn) on (x, y)."""
    return {
        "add": (2, lambda x, y: x + y, np.add, torch and torch.add),
        "mul": (2, lambda x, y: x * y, np.multiply, torch and torch.mul),
        "exp": (1, lambda x, y: x.exp(), lambda x, y: np.exp(x), torch and
                (lambda x, y: torch.exp(x))),
        "relu": (1, lambda x, y: x.relu(), lambda x, y: np.maximum(x, 0), torch and
                 (lambda x, y: torch.relu(x))),
    }


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
            fx, fy = fg.Tensor(x), fg.Tensor(y)
            tx, ty = (torch.from_numpy(x), torch.from_numpy(y)) if torch else (None, None)
            for name, (reads, f_fg, f_np, f_torch) in _ops(torch).items():
                fns = {
                    "ferrograd": lambda f=f_fg: f(fx, fy),
                    "numpy": lambda f=f_np: f(x, y),
                }
                if torch is not None:
                    fns["torch"] = lambda f=f_torch: f(tx, ty)
                np.testing.assert_allclose(fns["ferrograd"]().numpy(), fns["numpy"](),
                                           rtol=1e-5, atol=1e-6)
                gigabytes = (reads + 1) * ITEMSIZE * n / 1e9
                stats = measure(fns, repeats=opts.repeats, min_time=opts.min_time)
                report.add(figures_from_stats(f"elementwise {name}", label, t, stats,
                                              "GB/s", gigabytes))
    set_threads(None)


if __name__ == "__main__":
    script_main("elementwise: GB/s (bytes read + written)", run)
