"""One benchmark process: one workload, one library, one thread count.

    python benchmarks/worker.py WORKLOAD IMPL --threads N [--repeats R] [--quick] ...

Prints one JSON line (after any ``#`` comment lines)::

    {"workload": "matmul", "impl": "torch", "threads": 2,
     "cases": [{"label": "matmul f32", "size": "1024", "unit": "GFLOP/s",
                "values": [251.2, 249.8, 252.0], "note": ""}, ...],
     "process": {"version": "2.15.0", "threads_seen": {...}, "rss_after_import_mib": 310.2,
                 "peak_rss_mib": 402.7, "seconds": 6.1, "unset": []}}

``values`` holds one figure per in-process sample; the harness (``run_all.py``) runs a
worker per library and round and takes medians over rounds.

The thread count is fixed *before* the library is imported: ``OMP_NUM_THREADS``,
``MKL_NUM_THREADS``, ``OPENBLAS_NUM_THREADS``, ``RAYON_NUM_THREADS`` and the like are set
in this process's environment, then ``fg.set_num_threads(n)`` after importing ferrograd
(its pool ignores ``RAYON_NUM_THREADS``). PyTorch reads ``OMP_NUM_THREADS`` at start-up;
``torch.set_num_threads`` is called only if its count still differs, because calling it at
all (even with the count it already has) makes this PyTorch build run tiny ops through an
OpenMP parallel region: a 1K-element ``exp`` measured 5 µs without the call and 214 µs
after ``torch.set_num_threads(2)`` here. The counts each library reports are printed in
``threads_seen``.

``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` are removed from the environment before
NumPy loads: some hosts set them, and they slow a current NumPy (``unset`` lists them).
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import sys
import time
from importlib import metadata
from typing import Any

THREAD_VARS = (
    "OMP_NUM_THREADS",
    "MKL_NUM_THREADS",
    "OPENBLAS_NUM_THREADS",
    "RAYON_NUM_THREADS",
    "VECLIB_MAXIMUM_THREADS",
    "NUMEXPR_NUM_THREADS",
)
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
# Libraries whose distribution name differs from the module's first part.
DISTRIBUTIONS = {"micrograd.engine": "micrograd"}


def prepare_environment(threads: int) -> list[str]:
    """Sets the thread variables and drops the OpenBLAS overrides; returns what it dropped.
    Must run before any numerical library is imported."""
    for var in THREAD_VARS:
        os.environ[var] = str(threads)
    unset = [f"{k}={os.environ.pop(k)}" for k in OPENBLAS_OVERRIDES if k in os.environ]
    return unset


def import_library(impl: str, threads: int) -> tuple[str, dict[str, Any]]:
    """Imports ``impl``'s library with ``threads`` threads; returns its version and the
    thread counts the libraries in this process report."""
    from workloads import LIBRARIES

    module_name = LIBRARIES[impl]
    module = importlib.import_module(module_name)
    seen: dict[str, Any] = {}
    if impl == "ferrograd":
        module.set_num_threads(threads)
        seen["ferrograd"] = module.get_num_threads()
    elif impl == "torch":
        if module.get_num_threads() != threads:  # see the module docstring
            module.set_num_threads(threads)
        seen["torch"] = module.get_num_threads()
        seen["torch interop"] = module.get_num_interop_threads()
    seen.update(blas_threads())
    dist = DISTRIBUTIONS.get(module_name, module_name)
    try:
        version = metadata.version(dist)
    except metadata.PackageNotFoundError:
        version = str(getattr(module, "__version__", "unknown"))
    if impl == "torch":
        version = str(module.__version__)  # says which build (+cpu, +cu132, ...)
    return version, seen


def blas_threads() -> dict[str, Any]:
    """Thread counts of the BLAS/OpenMP libraries loaded in this process (threadpoolctl)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return {}
    return {
        f"{i.get('internal_api')} ({os.path.basename(i.get('filepath', ''))})": i.get("num_threads")
        for i in threadpool_info()
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("workload")
    parser.add_argument("impl")
    parser.add_argument("--threads", type=int, required=True)
    parser.add_argument("--repeats", type=int, default=3, help="samples in this process")
    parser.add_argument(
        "--min-time", type=float, default=0.1, help="seconds per sample of a kernel"
    )
    parser.add_argument(
        "--warmup-time",
        type=float,
        default=0.3,
        help="seconds each function runs before it is timed",
    )
    parser.add_argument("--quick", action="store_true", help="tiny sizes")
    args = parser.parse_args(argv)
    if args.threads < 1:
        parser.error(f"--threads must be >= 1, got {args.threads}")
    if args.repeats < 1:
        parser.error(f"--repeats must be >= 1, got {args.repeats}")

    started = time.perf_counter()
    unset = prepare_environment(args.threads)
    import workloads  # numpy only: safe once the thread variables are set
    from workloads.data import peak_rss_mib, rss_mib

    if args.impl not in workloads.LIBRARIES:
        parser.error(f"unknown library {args.impl!r}: one of {sorted(workloads.LIBRARIES)}")
    version, threads_seen = import_library(args.impl, args.threads)
    rss_after_import = rss_mib()
    registry = workloads.load_all()
    if args.workload not in registry:
        parser.error(f"unknown workload {args.workload!r}: one of {sorted(registry)}")
    workload = registry[args.workload]
    if args.impl not in workload.impls:
        parser.error(
            f"workload {args.workload!r} has no {args.impl} implementation "
            f"(it has {sorted(workload.impls)})"
        )

    ctx = workloads.Context(
        quick=args.quick,
        repeats=args.repeats,
        min_time=args.min_time,
        warmup_time=args.warmup_time,
        threads=args.threads,
    )
    workload.impls[args.impl](ctx)
    peak = peak_rss_mib()
    if workload.training:
        timed = next((c for c in ctx.cases if c.unit in ("steps/s", "ms")), None)
        if timed is None:
            raise RuntimeError(f"training workload {args.workload!r} timed no steps/s or ms figure")
        ctx.record(
            f"{timed.label} peak RSS",
            timed.size,
            "MiB",
            [peak],
            note=f"{rss_after_import:.0f} MiB after imports",
        )
        # what the training itself added (data, model, graph, optimizer state)
        ctx.record(
            f"{timed.label} peak RSS above imports", timed.size, "MiB", [peak - rss_after_import]
        )
    result = {
        "workload": args.workload,
        "impl": args.impl,
        "threads": args.threads,
        "cases": [c.as_dict() for c in ctx.cases],
        "process": {
            "version": version,
            "threads_seen": threads_seen,
            "rss_after_import_mib": rss_after_import,
            "peak_rss_mib": peak,
            "seconds": time.perf_counter() - started,
            "unset": unset,
        },
    }
    print(json.dumps(result, ensure_ascii=False), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
