"""The workload registry: what the harness can measure, and how, per library.

A *workload* is declared once (name, title, thread counts, whether it trains) and gets one
function per library that measures it::

    declare("gpt", "GPT training step", threads=(1, 2), training=True)

    @implementation("gpt", "ferrograd")
    def gpt_ferrograd(ctx: Context) -> None:
        import ferrograd as fg            # libraries are imported inside the function
        ...
        ctx.time("GPT train", "6 layers, batch 8", "steps/s", step, keep_gc=True)

    @implementation("gpt", "torch")
    def gpt_torch(ctx: Context) -> None: ...

That is all a new workload needs (a module listed in ``MODULES``): the harness runs each
function in its own worker process, alternating the libraries round by round, and pairs
the figures of equal ``label``/``size``/thread count into ratios. A training workload also
reports the worker's peak resident memory (RSS).

Each function runs in a process that has already imported its library with the thread count
set (see ``worker.py``), so it must not import another peer's library: that would both
distort its peak RSS and load a second thread pool.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass, field
from typing import Any, Callable

import timing

# A thread count meaning "every core the process may use" (resolved by the harness).
ALL_CORES = 0

# Implementation name -> the module its worker imports (after setting thread counts).
LIBRARIES = {
    "ferrograd": "ferrograd",
    "numpy": "numpy",
    "torch": "torch",
    "micrograd": "micrograd.engine",
}
FERROGRAD = "ferrograd"
PEERS = ("numpy", "torch", "micrograd")

# Units where a larger number is better; every other unit (µs, MiB) is better smaller.
THROUGHPUT_UNITS = frozenset({"GFLOP/s", "GB/s", "steps/s", "ops/s", "acc %"})

# The modules that declare workloads, in the order the harness runs them.
MODULES = ("kernels", "value", "training", "cnn", "gpt")


@dataclass
class Case:
    """One measured figure of one worker process: per-sample values in ``unit``."""

    label: str
    size: str
    unit: str
    values: list[float]
    note: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "label": self.label,
            "size": self.size,
            "unit": self.unit,
            "values": self.values,
            "note": self.note,
        }


@dataclass
class Context:
    """What a workload function gets: the run's settings, and where its figures go."""

    quick: bool
    repeats: int
    min_time: float
    warmup_time: float
    threads: int
    cases: list[Case] = field(default_factory=list)

    def time(
        self,
        label: str,
        size: str,
        unit: str,
        fn: Callable[[], object],
        *,
        work: float = 1.0,
        scale: float = 1.0,
        keep_gc: bool = False,
        number: int | None = None,
        repeats: int | None = None,
        min_time: float | None = None,
        warmup_time: float | None = None,
        note: str = "",
    ) -> Case:
        """Times ``fn`` (see ``timing.sample``) and records one figure.

        Throughput units: each value is ``work / seconds per call`` (``work`` = FLOPs / 1e9
        for GFLOP/s). Time units: ``seconds per call * scale`` (``scale`` = 1e6 for µs)."""
        seconds = timing.sample(
            fn,
            repeats=repeats or self.repeats,
            min_time=self.min_time if min_time is None else min_time,
            warmup_time=self.warmup_time if warmup_time is None else warmup_time,
            keep_gc=keep_gc,
            number=number,
        )
        if unit in THROUGHPUT_UNITS:
            values = [work / s for s in seconds]
        else:
            values = [s * scale for s in seconds]
        return self.record(label, size, unit, values, note)

    def record(self, label: str, size: str, unit: str, values: list[float], note: str = "") -> Case:
        """Records a figure measured another way (an accuracy, a memory size)."""
        case = Case(label, size, unit, [float(v) for v in values], note)
        self.cases.append(case)
        return case


@dataclass
class Workload:
    name: str
    title: str
    threads: tuple[int, ...]
    training: bool
    impls: dict[str, Callable[[Context], None]] = field(default_factory=dict)


WORKLOADS: dict[str, Workload] = {}


def declare(
    name: str, title: str, *, threads: tuple[int, ...] = (ALL_CORES,), training: bool = False
) -> Workload:
    """Declares a workload; ``threads`` lists the thread counts it runs at (``ALL_CORES``
    for every core); ``training`` adds the worker's peak RSS to its figures."""
    if name in WORKLOADS:
        raise ValueError(f"workload {name!r} is declared twice")
    WORKLOADS[name] = Workload(name, title, tuple(threads), training)
    return WORKLOADS[name]


def implementation(
    workload: str, impl: str
) -> Callable[[Callable[[Context], None]], Callable[[Context], None]]:
    """Registers the decorated function as ``impl``'s way of measuring ``workload``."""
    if impl not in LIBRARIES:
        raise ValueError(f"unknown implementation {impl!r}: one of {sorted(LIBRARIES)}")

    def register(fn: Callable[[Context], None]) -> Callable[[Context], None]:
        if workload not in WORKLOADS:
            raise ValueError(f"implementation of undeclared workload {workload!r}")
        if impl in WORKLOADS[workload].impls:
            raise ValueError(f"workload {workload!r} has two {impl} implementations")
        WORKLOADS[workload].impls[impl] = fn
        return fn

    return register


def load_all() -> dict[str, Workload]:
    """Imports every workload module and returns the registry, in run order."""
    for module in MODULES:
        importlib.import_module(f"workloads.{module}")
    return WORKLOADS
