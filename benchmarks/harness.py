"""The harness: every library in its own process, alternating, and figures over rounds.

For each workload and thread count the harness runs *rounds*; in each round it starts one
worker process per library, one after another in a fixed order (ferrograd, then the peers),
so the processes alternate A B A B … through the run. A slow spell of the machine then
lands on every library instead of on one, and no library's thread pool (PyTorch's OpenMP
threads and OpenBLAS's spin while they wait for work) can stall another's, as they did when
all ran in one process.

Before each process starts, the harness checks the machine: the 1-minute load average, and
the CPU time other processes used in a short sample (``/proc/stat``; the load average is
inflated by the harness's own previous worker for a minute, the sample is not). While the
others use more than ``max_busy`` cores it waits, up to ``max_wait`` seconds, then goes on
anyway; either way it records what it saw, and the report prints it.

Each worker reports per-sample values; a round's figure is the median of its samples, a
figure is the **median over rounds** with the **min–max over rounds** as its spread. Ratios
(ferrograd / peer) come from the same run: the ratio of the medians, and the min–max of the
per-round ratios (round r of ferrograd against round r of the peer, started moments apart).
"""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from workloads import ALL_CORES, FERROGRAD, PEERS, THROUGHPUT_UNITS

HERE = Path(__file__).resolve().parent
WORKER = HERE / "worker.py"


# ----- the machine's load ----------------------------------------------------------------


def cpu_count() -> int:
    """The cores this process may use."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        return os.cpu_count() or 1


def _cpu_times() -> tuple[int, int] | None:
    """(busy, total) jiffies over all CPUs from ``/proc/stat``; None where it is missing."""
    try:
        with open("/proc/stat") as f:
            fields = [int(x) for x in f.readline().split()[1:]]
    except (OSError, ValueError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # guest time is already inside user
    return total - idle, total


def cpu_busy(seconds: float) -> float | None:
    """Cores' worth of CPU that *other* processes used during ``seconds`` (this one sleeps
    meanwhile); None where ``/proc/stat`` is not available."""
    before = _cpu_times()
    if before is None:
        return None
    time.sleep(seconds)
    after = _cpu_times()
    if after is None or after[1] <= before[1]:
        return None
    return (after[0] - before[0]) / (after[1] - before[1]) * (os.cpu_count() or 1)


@dataclass
class LoadCheck:
    """What the machine looked like just before a worker started."""

    load1: float  # 1-minute load average
    busy: float | None  # cores used by other processes in the last sample (None: unknown)
    waited: float  # seconds spent waiting for the machine to calm down
    # A cache line's round trip between two cores (ns; None: not measured). On a VM it
    # says where the host put the virtual cores: 2-thread figures follow it.
    round_trip_ns: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "load1": self.load1,
            "busy": self.busy,
            "waited": self.waited,
            "round_trip_ns": self.round_trip_ns,
        }


def core_to_core_round_trip() -> float | None:
    """ferrograd's probe of the core-to-core round trip (ns), or None where ferrograd does
    not import or the machine has one core. It runs in the harness's own process, between
    workers, so it measures the machine, not a library."""
    try:
        import ferrograd
    except ImportError:
        return None
    return ferrograd._core._core_to_core_round_trip_ns()


class LoadGate:
    """Checks the load before each worker; waits while other processes are busy.

    Each check waits at most ``max_wait`` seconds, and all checks together at most
    ``wait_budget``: on a machine that stays busy, waiting longer buys nothing, so once the
    budget is spent the gate only records. ``sampler(seconds)`` returns the other processes'
    CPU use in cores (``cpu_busy``), ``loadavg()`` the 1-minute load average, ``probe()``
    the core-to-core round trip (``core_to_core_round_trip``; none by default); all are
    injectable for tests, as is the clock."""

    def __init__(
        self,
        max_busy: float,
        max_wait: float,
        sample_s: float,
        wait_budget: float = math.inf,
        sampler: Callable[[float], float | None] = cpu_busy,
        loadavg: Callable[[], float] = lambda: os.getloadavg()[0],
        clock: Callable[[], float] = time.monotonic,
        probe: Callable[[], float | None] = lambda: None,
    ) -> None:
        self.max_busy, self.max_wait, self.sample_s = max_busy, max_wait, sample_s
        self.budget = wait_budget
        self.sampler, self.loadavg, self.clock = sampler, loadavg, clock
        self.probe = probe

    def check(self) -> LoadCheck:
        start = self.clock()
        limit = min(self.max_wait, self.budget)
        while True:
            busy = self.sampler(self.sample_s)
            waited = self.clock() - start
            if busy is None or busy <= self.max_busy or waited >= limit:
                self.budget = max(0.0, self.budget - waited)
                return LoadCheck(self.loadavg(), busy, waited, self.probe())


# ----- running workers -------------------------------------------------------------------


@dataclass
class Settings:
    """The run's settings, passed on to every worker."""

    quick: bool
    rounds: int
    repeats: int
    min_time: float
    warmup_time: float
    timeout: float

    def worker_flags(self) -> list[str]:
        flags = [
            "--repeats",
            str(self.repeats),
            "--min-time",
            str(self.min_time),
            "--warmup-time",
            str(self.warmup_time),
        ]
        return flags + (["--quick"] if self.quick else [])


@dataclass
class Run:
    """One worker process: what it measured (or how it failed) and the load before it."""

    workload: str
    impl: str
    threads: int
    round: int
    load: LoadCheck
    seconds: float
    result: dict[str, Any] | None = None
    error: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {
            "workload": self.workload,
            "impl": self.impl,
            "threads": self.threads,
            "round": self.round,
            "load": self.load.as_dict(),
            "seconds": self.seconds,
            "result": self.result,
            "error": self.error,
        }


def worker_env(threads: int) -> dict[str, str]:
    """The environment of a worker (it sets its thread variables again itself)."""
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    for var in ("OMP_NUM_THREADS", "MKL_NUM_THREADS", "OPENBLAS_NUM_THREADS"):
        env[var] = str(threads)
    return env


def run_worker(
    workload: str, impl: str, threads: int, settings: Settings
) -> tuple[dict[str, Any] | None, str]:
    """Runs one worker process; returns (its JSON result, "") or (None, what went wrong)."""
    cmd = [
        sys.executable,
        str(WORKER),
        workload,
        impl,
        "--threads",
        str(threads),
        *settings.worker_flags(),
    ]
    try:
        done = subprocess.run(
            cmd,
            capture_output=True,
            text=True,
            timeout=settings.timeout,
            env=worker_env(threads),
            check=False,
        )
    except subprocess.TimeoutExpired:
        return None, f"timed out after {settings.timeout:.0f} s"
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith("{")]
    if done.returncode != 0 or not lines:
        tail = (done.stdout[-1500:] + "\n" + done.stderr[-1500:]).strip()
        return None, f"exit code {done.returncode}:\n{tail}"
    return json.loads(lines[-1]), ""


def resolve_threads(threads: Iterable[int], cores: int) -> list[int]:
    """Thread counts with ``ALL_CORES`` replaced by ``cores``, in order, without repeats."""
    out: list[int] = []
    for t in threads:
        n = cores if t == ALL_CORES else t
        if n not in out:
            out.append(n)
    return out


def run_group(
    workload: str,
    impls: Sequence[str],
    thread_counts: Sequence[int],
    settings: Settings,
    gate: LoadGate,
    log: Callable[[str], None] = print,
    runner: Callable[..., tuple[dict[str, Any] | None, str]] = run_worker,
) -> list[Run]:
    """``settings.rounds`` rounds; each starts one worker per thread count and library, in
    a fixed order, so the libraries alternate A B A B … (and a workload measured at 1 and 2
    threads interleaves both counts too, which keeps their comparison fair).

    A library whose worker fails is left out of the remaining rounds at that count."""
    runs: list[Run] = []
    failed: set[tuple[str, int]] = set()
    for r in range(settings.rounds):
        for threads in thread_counts:
            for impl in impls:
                if (impl, threads) in failed:
                    continue
                load = gate.check()
                t0 = time.perf_counter()
                result, error = runner(workload, impl, threads, settings)
                run = Run(workload, impl, threads, r, load, time.perf_counter() - t0, result, error)
                runs.append(run)
                busy = "?" if load.busy is None else f"{load.busy:.2f}"
                waited = f", waited {load.waited:.0f} s" if load.waited >= 1 else ""
                if load.round_trip_ns is not None:
                    waited += f", core round trip {load.round_trip_ns:.0f} ns"
                status = "ok" if not error else "FAILED"
                log(
                    f"# {workload} round {r + 1}/{settings.rounds}, {threads} thr: {impl:<9} "
                    f"{run.seconds:5.1f} s {status} (load {load.load1:.2f}, others {busy} "
                    f"cores{waited})"
                )
                if error:
                    log("#   " + error.replace("\n", "\n#   "))
                    failed.add((impl, threads))
    return runs


# ----- figures ---------------------------------------------------------------------------


@dataclass
class Figure:
    """One figure: a library's median over rounds of one label/size/thread count."""

    workload: str  # the registry's workload name
    label: str
    size: str
    threads: int
    impl: str
    unit: str
    rounds: list[float]  # one value per round (the median of that round's samples)
    note: str = ""
    loads: list[LoadCheck] = field(default_factory=list)
    lo_hi: tuple[float, float] | None = None  # an explicit spread (criterion's interval)
    ratios: dict[str, tuple[float, float, float]] = field(default_factory=dict)

    @property
    def value(self) -> float:
        return statistics.median(self.rounds)

    @property
    def spread(self) -> tuple[float, float]:
        return self.lo_hi if self.lo_hi is not None else (min(self.rounds), max(self.rounds))

    @property
    def better(self) -> str:
        return "higher" if self.unit in THROUGHPUT_UNITS else "lower"

    def key(self) -> tuple[str, str, int]:
        return self.label, self.size, self.threads

    def as_dict(self) -> dict[str, Any]:
        lo, hi = self.spread
        row: dict[str, Any] = {
            "workload": self.label,
            "size": self.size,
            "threads": self.threads,
            "impl": self.impl,
            "value": _round(self.value),
            "unit": self.unit,
            "min": _round(lo),
            "max": _round(hi),
            "rounds": len(self.rounds),
            "better": self.better,
        }
        for peer, (ratio, rlo, rhi) in self.ratios.items():
            row[f"ratio_vs_{peer}"] = _round(ratio)
            row[f"ratio_vs_{peer}_range"] = [_round(rlo), _round(rhi)]
        if self.loads:
            row["load1_max"] = _round(max(c.load1 for c in self.loads))
            busy = [c.busy for c in self.loads if c.busy is not None]
            if busy:
                row["others_cores_max"] = _round(max(busy))
        if self.note:
            row["note"] = self.note
        return row


def _round(x: float) -> float:
    return float(f"{x:.4g}") if math.isfinite(x) else x


def figures_from_runs(runs: Sequence[Run]) -> list[Figure]:
    """Groups the runs' cases into figures (median of each round's samples per round) and
    adds ferrograd's ratios to each peer. Keeps the order in which figures first appear."""
    figures: dict[tuple[str, str, str, int, str], Figure] = {}
    for run in runs:
        if run.result is None:
            continue
        for case in run.result["cases"]:
            k = (run.workload, case["label"], case["size"], run.threads, run.impl)
            fig = figures.get(k)
            if fig is None:
                fig = figures[k] = Figure(
                    run.workload,
                    case["label"],
                    case["size"],
                    run.threads,
                    run.impl,
                    case["unit"],
                    [],
                    case.get("note", ""),
                )
            fig.rounds.append(statistics.median(case["values"]))
            fig.loads.append(run.load)
    out = list(figures.values())
    add_ratios(out)
    return out


def add_ratios(figures: Sequence[Figure]) -> None:
    """ferrograd / peer for every peer figure with ferrograd's label, size and threads:
    (ratio of medians, min and max of the per-round ratios)."""
    by_key: dict[tuple[str, str, int], dict[str, Figure]] = {}
    for f in figures:
        by_key.setdefault(f.key(), {})[f.impl] = f
    for group in by_key.values():
        fg_fig = group.get(FERROGRAD)
        if fg_fig is None:
            continue
        for impl, peer in group.items():
            if impl == FERROGRAD or peer.unit != fg_fig.unit or peer.value == 0:
                continue
            paired = [a / b for a, b in zip(fg_fig.rounds, peer.rounds) if b != 0]
            ratio = fg_fig.value / peer.value
            fg_fig.ratios[impl] = (ratio, min(paired, default=ratio), max(paired, default=ratio))


def peer_order(impls: Iterable[str]) -> list[str]:
    """ferrograd first, then the peers in their usual order."""
    impls = set(impls)
    known = [FERROGRAD, *PEERS]
    return [i for i in known if i in impls] + sorted(impls - set(known))
