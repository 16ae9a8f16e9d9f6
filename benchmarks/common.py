"""Timing harness shared by the benchmark scripts.

Every script measures ferrograd and its peers (NumPy, and PyTorch / micrograd when they are
installed) in the same process, alternating between them: each *round* times every
implementation once, in an order that rotates from round to round, so a slow spell of the
machine (another process, frequency scaling) lands on all of them instead of on one.

Per implementation the harness

1. calls the function once (lazy initialisation, page faults, JIT-like caches),
2. calibrates how many calls make one sample (about ``min_time`` seconds),
3. runs ``warmup`` untimed rounds, then ``repeats`` timed rounds,

and keeps the time per call of every sample. The figure is the median; the spread is the
interquartile range (IQR) of the samples. The garbage collector collects once before the
rounds; while a sample runs it is off (as in ``timeit``) for kernel and overhead figures,
and on for the Value graphs and training loops, where collecting is part of what a user
pays.

Figures print as a table and as one JSON line each::

    {"workload": "matmul f32", "size": "1024", "threads": 2, "impl": "ferrograd",
     "value": 301.2, "unit": "GFLOP/s", "iqr": 3.1, "better": "higher",
     "ratio_vs_numpy": 1.07, "ratio_vs_torch": 0.95}

A ratio is always ``ferrograd's value / the peer's value`` in the figure's unit, so for
throughputs (GFLOP/s, GB/s, steps/s) above 1 means ferrograd is faster, and for times (µs)
below 1 means ferrograd is faster; ``better`` says which.
"""

from __future__ import annotations

import argparse
import gc
import importlib
import json
import math
import os
import statistics
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Callable

# Some hosts export these to pin OpenBLAS to an older kernel set or cache size; with a current
# NumPy they slow it down. The suite removes them *for its own process only* (by re-executing
# itself without them) so that NumPy is measured at its best; the test suite never changes them.
OPENBLAS_OVERRIDES = ("OPENBLAS_CORETYPE", "OPENBLAS_L2_SIZE")
_UNSET_MARK = "FERROGRAD_BENCH_UNSET_OPENBLAS"

FERROGRAD = "ferrograd"
PEER_ORDER = ("numpy", "torch", "micrograd")

# Units where a larger number is better; every other unit is a time.
_THROUGHPUT_UNITS = {"GFLOP/s", "GB/s", "steps/s", "ops/s", "acc %"}


# ----- environment -----------------------------------------------------------------------


def reexec_without_openblas_overrides() -> None:
    """Re-executes this process without ``OPENBLAS_CORETYPE``/``OPENBLAS_L2_SIZE``.

    Returns normally when neither is set (and after the re-exec, in the new process)."""
    present = [k for k in OPENBLAS_OVERRIDES if k in os.environ]
    if not present:
        return
    env = {k: v for k, v in os.environ.items() if k not in OPENBLAS_OVERRIDES}
    env[_UNSET_MARK] = ",".join(f"{k}={os.environ[k]}" for k in present)
    sys.stdout.flush()
    sys.stderr.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def environment_note() -> str:
    """One line on what the suite changed in its own environment, if anything."""
    unset = os.environ.get(_UNSET_MARK)
    if unset:
        return f"# unset for this benchmark process only (slows current NumPy): {unset}"
    return "# OPENBLAS_CORETYPE / OPENBLAS_L2_SIZE: not set"


_PEERS: dict[str, Any] = {}


def optional_peer(name: str) -> Any:
    """The module ``name`` (``torch``, ``micrograd``) or None, printing one line when absent."""
    if name not in _PEERS:
        try:
            _PEERS[name] = importlib.import_module(name)
        except ImportError:
            _PEERS[name] = None
            print(f"# skipped peer {name}: not installed (pip install {name})", flush=True)
    return _PEERS[name]


def numpy_blas_info() -> str:
    """NumPy's BLAS, as threadpoolctl (preferred) or ``numpy.show_config()`` reports it."""
    import numpy as np

    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        threadpool_info = None
    if threadpool_info is not None:
        blas = [
            f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')}, "
            f"{i.get('num_threads')} threads)"
            for i in threadpool_info()
            if i.get("user_api") == "blas" and "numpy" in i.get("filepath", "")
        ]
        if blas:
            return f"numpy {np.__version__}, BLAS: " + "; ".join(blas)
    try:
        cfg = np.show_config(mode="dicts")
        blas = cfg["Build Dependencies"]["blas"]
        return f"numpy {np.__version__}, BLAS: {blas.get('name')} {blas.get('version')}"
    except (TypeError, KeyError, AttributeError):  # older NumPy: no dict mode
        return f"numpy {np.__version__}, BLAS: see numpy.show_config()"


# ----- threads ---------------------------------------------------------------------------


def cpu_count() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


_NUMPY_LIMITER: list[Any] = []


def numpy_threads_controllable() -> bool:
    """Whether NumPy's BLAS threads can be set at run time (needs threadpoolctl)."""
    try:
        import threadpoolctl  # noqa: F401
    except ImportError:
        return False
    return True


def set_threads(n: int | None) -> None:
    """Sets every implementation's thread count to ``n`` (None: back to the default).

    ferrograd: ``fg.set_num_threads``; NumPy's BLAS: threadpoolctl. Without threadpoolctl
    NumPy's BLAS keeps the count it started with (``OPENBLAS_NUM_THREADS`` /
    ``OMP_NUM_THREADS`` / ``MKL_NUM_THREADS``, else all cores), and the scripts leave NumPy
    out of any figure whose thread count differs from that.

    PyTorch: ``torch.set_num_threads``, but only when ``n`` differs from its current count.
    Calling it at all — even with the count PyTorch already uses — puts this PyTorch build
    into a state where small ops (a 1K-element ``exp``) enter an OpenMP parallel region and
    take from tens of µs to milliseconds on a busy machine instead of ~1 µs. So the scripts
    run the default thread count (all cores) first and never call it for that count; a
    script that must raise PyTorch's count again prints a warning."""
    import ferrograd as fg

    fg.set_num_threads(n or 0)
    torch = _PEERS.get("torch")
    if torch is not None:
        want = n or cpu_count()
        have = torch.get_num_threads()
        if want != have:
            if want > have:
                print(f"# warning: raising PyTorch's threads from {have} to {want} in-process; "
                      "its small ops may run slower from here (see common.set_threads)")
            torch.set_num_threads(want)
    for limiter in _NUMPY_LIMITER:
        limiter.restore_original_limits()
    _NUMPY_LIMITER.clear()
    if n and numpy_threads_controllable():
        from threadpoolctl import threadpool_limits

        _NUMPY_LIMITER.append(threadpool_limits(limits=n, user_api="blas"))


def default_first(threads: Sequence[int]) -> list[int]:
    """The thread counts with the default (all cores) first: see ``set_threads``."""
    return sorted(threads, key=lambda t: (t != cpu_count(), -t))


def numpy_runs_with(n: int) -> bool:
    """Whether NumPy's BLAS can be measured with ``n`` threads in this process."""
    if numpy_threads_controllable():
        return True
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
        if var in os.environ:
            return os.environ[var] == str(n)
    return n == cpu_count()


# ----- timing ----------------------------------------------------------------------------


@dataclass
class Stats:
    """Seconds per call of each timed sample."""

    samples: list[float]

    @property
    def median(self) -> float:
        return statistics.median(self.samples)

    @property
    def quartiles(self) -> tuple[float, float]:
        if len(self.samples) < 2:
            return self.samples[0], self.samples[0]
        q1, _, q3 = statistics.quantiles(self.samples, n=4, method="inclusive")
        return q1, q3


def _time_calls(fn: Callable[[], object], number: int, keep_gc: bool = False) -> float:
    gc_was_enabled = gc.isenabled()
    if not keep_gc:
        gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - t0
    finally:
        if gc_was_enabled:
            gc.enable()


def _calibrate(fn: Callable[[], object], min_time: float, keep_gc: bool) -> int:
    """How many calls of ``fn`` take about ``min_time`` seconds (at least 1)."""
    number = 1
    while True:
        t = _time_calls(fn, number, keep_gc)
        if t >= min_time / 5 or number >= 10**7:
            return max(1, round(number * min_time / max(t, 1e-9)))
        number *= 10


# Seconds each function runs before it is timed (scripts lower it with --quick).
WARMUP_TIME = 0.5


def warm_up(fn: Callable[[], object], seconds: float | None = None) -> None:
    """Calls ``fn`` at least once and until ``seconds`` (default ``WARMUP_TIME``) passed."""
    if seconds is None:
        seconds = WARMUP_TIME
    t0 = time.perf_counter()
    fn()
    while time.perf_counter() - t0 < seconds:
        fn()


def measure(
    fns: dict[str, Callable[[], object]],
    *,
    repeats: int,
    min_time: float,
    warmup: int = 1,
    number: int | None = None,
    keep_gc: bool = False,
    warmup_time: float | None = None,
) -> dict[str, Stats]:
    """Times each function in interleaved rounds; returns seconds per call per name.

    ``keep_gc`` leaves the garbage collector on while timing: right where collecting is part
    of the real cost (micrograd's graph is full of reference cycles, which only the collector
    frees; a training loop runs with it on).

    Before anything is timed each function runs for ``warmup_time`` seconds (at least once;
    default ``WARMUP_TIME``): some libraries need hundreds of calls before their allocator
    and caches settle (PyTorch's first few hundred small training steps here ran many times
    slower than the rest). ``number`` fixes the calls per sample and skips the calibration and the
    timed warm-up, so that each function runs exactly ``number * (warmup + repeats)`` times,
    which a training run needs so every implementation sees the same number of steps."""
    names = list(fns)
    if warmup_time is None:
        warmup_time = WARMUP_TIME
    if number is None:
        for fn in fns.values():
            warm_up(fn, warmup_time)
        numbers = {name: _calibrate(fns[name], min_time, keep_gc) for name in names}
    else:
        numbers = dict.fromkeys(names, number)
    samples: dict[str, list[float]] = {name: [] for name in names}
    gc.collect()
    for r in range(warmup + repeats):
        k = r % len(names)
        for name in names[k:] + names[:k]:  # rotate who goes first
            t = _time_calls(fns[name], numbers[name], keep_gc) / numbers[name]
            if r >= warmup:
                samples[name].append(t)
    return {name: Stats(s) for name, s in samples.items()}


# ----- figures and reports ---------------------------------------------------------------


@dataclass
class Figure:
    workload: str
    size: str
    threads: int
    impl: str
    value: float
    unit: str
    iqr: float = 0.0
    ratios: dict[str, float] = field(default_factory=dict)
    note: str = ""

    @property
    def better(self) -> str:
        return "higher" if self.unit in _THROUGHPUT_UNITS else "lower"

    def key(self) -> tuple[str, str, int]:
        return self.workload, self.size, self.threads

    def as_json(self) -> str:
        row: dict[str, Any] = {
            "workload": self.workload,
            "size": self.size,
            "threads": self.threads,
            "impl": self.impl,
            "value": _round(self.value),
            "unit": self.unit,
            "iqr": _round(self.iqr),
            "better": self.better,
        }
        row.update({f"ratio_vs_{p}": _round(r) for p, r in self.ratios.items()})
        if self.note:
            row["note"] = self.note
        return json.dumps(row, ensure_ascii=False)


def figure_from_json(line: str) -> Figure:
    """The Figure of one JSON line printed by ``Figure.as_json``."""
    row = json.loads(line)
    ratios = {k[len("ratio_vs_"):]: v for k, v in row.items() if k.startswith("ratio_vs_")}
    return Figure(row["workload"], row["size"], row["threads"], row["impl"], row["value"],
                  row["unit"], row.get("iqr", 0.0), ratios, row.get("note", ""))


def _round(x: float) -> float:
    return float(f"{x:.4g}") if math.isfinite(x) else x


def figures_from_stats(
    workload: str,
    size: str,
    threads: int,
    stats: dict[str, Stats],
    unit: str,
    work: float = 1.0,
    scale: float = 1.0,
) -> list[Figure]:
    """Turns seconds per call into figures.

    Throughput units: ``value = work / seconds`` (e.g. ``work`` = FLOPs / 1e9 for GFLOP/s).
    Time units: ``value = seconds * scale`` (``scale`` = 1e6 for µs)."""
    out = []
    for impl, s in stats.items():
        q1, q3 = s.quartiles
        if unit in _THROUGHPUT_UNITS:
            value, iqr = work / s.median, work / q1 - work / q3
        else:
            value, iqr = s.median * scale, (q3 - q1) * scale
        out.append(Figure(workload, size, threads, impl, value, unit, iqr))
    return out


class Report:
    """Collects figures, adds ferrograd's ratio to each peer, prints JSON lines and tables."""

    def __init__(self) -> None:
        self.figures: list[Figure] = []

    def add(self, figures: Iterable[Figure]) -> None:
        """Adds one group of figures (same workload, size, threads) and prints its JSON."""
        group = list(figures)
        by_impl = {f.impl: f for f in group}
        fg_fig = by_impl.get(FERROGRAD)
        if fg_fig is not None:
            for impl, peer in by_impl.items():
                if impl != FERROGRAD and peer.value > 0 and peer.unit == fg_fig.unit:
                    fg_fig.ratios[impl] = fg_fig.value / peer.value
        for f in group:
            print(f.as_json(), flush=True)
        self.figures.extend(group)

    def print_table(self, title: str = "") -> None:
        print_table(self.figures, title)


def _peer_columns(figures: Sequence[Figure]) -> list[str]:
    seen = {p for f in figures for p in f.ratios}
    peers = [p for p in PEER_ORDER if p in seen]
    return peers + sorted(seen - set(peers))


def _fmt(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    if abs(x) >= 1 or x == 0:
        return f"{x:.2f}"
    return f"{x:.3g}"


def _fmt_ratio(r: float) -> str:
    return f"{r:.3g}" if r < 0.1 else f"{r:.2f}"


def print_table(figures: Sequence[Figure], title: str = "") -> None:
    """A Markdown table: one row per figure, ferrograd's ratio to each peer on its row."""
    peers = _peer_columns(figures)
    header = ["workload", "size", "thr", "impl", "value", "± IQR", "unit"]
    header += [f"fg / {p}" for p in peers]
    notes = any(f.note for f in figures)
    if notes:
        header.append("note")
    rows = []
    for f in figures:
        row = [f.workload, f.size, str(f.threads), f.impl, _fmt(f.value), _fmt(f.iqr), f.unit]
        row += [_fmt_ratio(f.ratios[p]) if p in f.ratios else "" for p in peers]
        if notes:
            row.append(f.note)
        rows.append(row)
    widths = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h)
              for i, h in enumerate(header)]
    numeric = set(range(4, 7 + len(peers))) - {6}

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(
            c.rjust(w) if i in numeric else c.ljust(w)
            for i, (c, w) in enumerate(zip(cells, widths))
        ) + " |"

    if title:
        print(f"\n## {title}\n")
    print(line(header))
    print("|" + "|".join(("-" * (w + 1) + ":") if i in numeric else ("-" * (w + 2))
                         for i, w in enumerate(widths)) + "|")
    for r in rows:
        print(line(r))
    print(flush=True)


# ----- command line ----------------------------------------------------------------------


@dataclass
class Options:
    quick: bool
    repeats: int
    min_time: float
    threads: list[int]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes and few repeats (the smoke test uses this)")
    parser.add_argument("--repeats", type=int, default=None,
                        help="timed rounds per figure (default 7, or 3 with --quick)")
    parser.add_argument("--min-time", type=float, default=None,
                        help="seconds per timed sample (default 0.1, or 0.002 with --quick)")
    parser.add_argument("--threads", default=None,
                        help="comma-separated thread counts (default: 1 and 2 where the "
                             "workload varies threads, else all cores)")


def options_from(ns: argparse.Namespace) -> Options:
    threads = default_first([int(t) for t in ns.threads.split(",")]) if ns.threads else []
    return Options(
        quick=ns.quick,
        repeats=ns.repeats or (3 if ns.quick else 7),
        min_time=ns.min_time or (0.002 if ns.quick else 0.1),
        threads=threads,
    )


def apply_options(opts: Options) -> None:
    """Process-wide settings that follow from the options (the warm-up time)."""
    global WARMUP_TIME
    WARMUP_TIME = 0.0 if opts.quick else 0.5


def script_main(description: str, run: Callable[[Options, Report], None]) -> None:
    """Entry point of one benchmark script: parse flags, run, print the table."""
    reexec_without_openblas_overrides()
    parser = argparse.ArgumentParser(description=description)
    add_arguments(parser)
    opts = options_from(parser.parse_args())
    apply_options(opts)
    print(header_lines())
    report = Report()
    run(opts, report)
    report.print_table(description)


def header_lines() -> str:
    import ferrograd as fg

    lines = [
        (f"# ferrograd {fg.__version__}, python {sys.version.split()[0]}, "
         f"{cpu_count()} cores, load {os.getloadavg()[0]:.2f}"),
        f"# {numpy_blas_info()}",
        environment_note(),
    ]
    return "\n".join(lines)
