"""NumPy in and out: a 100 MB float32 array across the boundary, GB/s against ``np.copy``.

GB/s here is the array's size (100 MB) divided by the time, for every implementation, so the
figures compare directly with ``np.copy`` of the same array (which reads 100 MB and writes
100 MB, as a one-copy conversion must).

* in: ``fg.from_numpy(a)`` and ``fg.Tensor(a)`` (each one copy into Rust);
* out: ``np.asarray(t)`` (may share the tensor's memory, read-only) and ``t.numpy()``
  (a writable copy).
PyTorch's ``torch.from_numpy`` shares memory and copies nothing, so it is not a peer here."""

from __future__ import annotations

import numpy as np
from common import Options, Report, cpu_count, figures_from_stats, measure, script_main, set_threads

import ferrograd as fg

MB = 100
QUICK_MB = 1


def run(opts: Options, report: Report) -> None:
    mb = QUICK_MB if opts.quick else MB
    a = np.random.default_rng(0).standard_normal(mb * 10**6 // 4, dtype=np.float32)
    t = fg.from_numpy(a)
    gigabytes = a.nbytes / 1e9
    cases = {
        "numpy in: fg.from_numpy(a)": lambda: fg.from_numpy(a),
        "numpy in: fg.Tensor(a)": lambda: fg.Tensor(a),
        "numpy out: np.asarray(t)": lambda: np.asarray(t),
        "numpy out: t.numpy()": lambda: t.numpy(),
    }
    for threads in opts.threads or [cpu_count()]:
        set_threads(threads)
        for name, fn in cases.items():
            back = fn()
            np.testing.assert_array_equal(np.asarray(back), a)
            stats = measure({"ferrograd": fn, "numpy": lambda: np.copy(a)},
                            repeats=opts.repeats, min_time=opts.min_time)
            figures = figures_from_stats(name, f"{mb} MB f32", threads, stats, "GB/s",
                                         gigabytes)
            if np.shares_memory(np.asarray(back), np.asarray(fn())):
                figures[0].note = "no copy: shares the tensor's memory"
            report.add(figures)
    set_threads(None)


if __name__ == "__main__":
    script_main("NumPy in/out: GB/s (array bytes / time)", run)
