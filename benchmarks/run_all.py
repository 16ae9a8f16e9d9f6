"""Runs the benchmarks: every library in its own process, alternating round by round, and
prints (and optionally writes) the Markdown report with the machine, versions and command.

    PYTHONPATH=python python benchmarks/run_all.py            # full sizes (~15 min, 2 cores)
    PYTHONPATH=python python benchmarks/run_all.py --quick    # tiny sizes: a smoke run
    PYTHONPATH=python python benchmarks/run_all.py --only matmul,digits_cnn --rounds 7

See ``harness.py`` for how it measures and ``workloads/`` for what. With full sizes it also
runs the Rust criterion bench (the article's ``NdArray<Value>`` against ``Tensor``) through
``cargo bench`` when cargo and the source tree are at hand (``--no-rust`` skips it).
Every number printed is measured by this run.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import subprocess
import sys
import time
import traceback
from pathlib import Path

import harness
import report
import workloads
from harness import Figure, LoadGate, Run, Settings, core_to_core_round_trip

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CRITERION_GROUP = "mlp_4-16-16-1_batch32_step"


def installed(impl: str) -> bool:
    """Whether ``impl``'s library can be imported (found without importing it)."""
    top = workloads.LIBRARIES[impl].split(".")[0]
    return importlib.util.find_spec(top) is not None


def rust_bench() -> list[Figure]:
    """``cargo bench`` of the article's NdArray<Value> MLP step against Tensor's."""
    cargo = shutil.which("cargo")
    if cargo is None or not (REPO / "rust/ferrograd/benches/value_vs_tensor.rs").exists():
        print("# skipped the Rust bench: needs cargo and the ferrograd source tree")
        return []
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    out_dir = target / "criterion" / CRITERION_GROUP
    shutil.rmtree(out_dir, ignore_errors=True)  # read only what this run measures
    cmd = [
        cargo,
        "bench",
        "-p",
        "ferrograd",
        "--bench",
        "value_vs_tensor",
        "--",
        "--warm-up-time",
        "2",
        "--measurement-time",
        "5",
    ]
    print("# running:", " ".join(cmd[1:]), flush=True)
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:])
        raise RuntimeError(f"cargo bench failed with exit code {done.returncode}")
    figures = []
    for bench_id, impl in (("ndarray_of_value", "NdArray<Value>"), ("tensor", "ferrograd")):
        est = json.loads((out_dir / bench_id / "new" / "estimates.json").read_text())
        median, ci = est["median"]["point_estimate"], est["median"]["confidence_interval"]
        # criterion reports a confidence interval of the median, not a min–max over rounds
        figures.append(
            Figure(
                "rust",
                "Rust MLP 4-16-16-1 step (criterion)",
                "batch 32, f64",
                harness.cpu_count(),
                impl,
                "µs",
                [median / 1e3],
                note="range: criterion's 95% interval of the median",
                lo_hi=(ci["lower_bound"] / 1e3, ci["upper_bound"] / 1e3),
            )
        )
    harness.add_ratios(figures)
    return figures


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument(
        "--quick",
        action="store_true",
        help="tiny sizes, 2 rounds, no waiting (the smoke test uses this)",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=None,
        help="processes per library and figure, alternating (default 5; 2 with --quick)",
    )
    parser.add_argument(
        "--repeats",
        type=int,
        default=None,
        help="samples inside each process (default 3; 2 with --quick)",
    )
    parser.add_argument(
        "--min-time",
        type=float,
        default=None,
        help="seconds per kernel sample (default 0.1; 0.002 with --quick)",
    )
    parser.add_argument(
        "--warmup-time",
        type=float,
        default=None,
        help="seconds each function runs before it is timed (default 0.3; 0 with --quick)",
    )
    parser.add_argument(
        "--only", default=None, help="comma-separated workloads, e.g. matmul,digits_cnn"
    )
    parser.add_argument(
        "--impls", default=None, help="comma-separated libraries (default: every installed one)"
    )
    parser.add_argument(
        "--threads",
        default=None,
        help="comma-separated thread counts for every workload (default: each workload's own)",
    )
    parser.add_argument(
        "--max-busy",
        type=float,
        default=0.5,
        help="wait while other processes use more cores than this",
    )
    parser.add_argument(
        "--max-wait",
        type=float,
        default=None,
        help="seconds to wait for a quiet machine before each process (default 10; 0 with --quick)",
    )
    parser.add_argument(
        "--wait-budget",
        type=float,
        default=300,
        help="seconds of waiting in all; past it, the load is only recorded",
    )
    parser.add_argument(
        "--markdown", type=Path, default=None, help="also write the Markdown report to this file"
    )
    parser.add_argument(
        "--json",
        type=Path,
        default=None,
        help="write every process's raw result and load to this file",
    )
    parser.add_argument("--no-rust", action="store_true", help="skip the cargo bench")
    parser.add_argument(
        "--worker-timeout",
        type=float,
        default=900,
        help="seconds before a worker process is killed",
    )
    parser.add_argument(
        "--list", action="store_true", help="list the workloads and their libraries, and exit"
    )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    ns = parse_args(argv)
    registry = workloads.load_all()
    if ns.list:
        for w in registry.values():
            threads = ", ".join("all" if t == workloads.ALL_CORES else str(t) for t in w.threads)
            print(f"{w.name:<12} {w.title} [threads {threads}; {', '.join(w.impls)}]")
        return 0
    quick = ns.quick
    settings = Settings(
        quick=quick,
        rounds=ns.rounds or (2 if quick else 5),
        repeats=ns.repeats or (2 if quick else 3),
        min_time=ns.min_time if ns.min_time is not None else (0.002 if quick else 0.1),
        warmup_time=ns.warmup_time if ns.warmup_time is not None else (0.0 if quick else 0.3),
        timeout=ns.worker_timeout,
    )
    max_wait = ns.max_wait if ns.max_wait is not None else (0.0 if quick else 10.0)
    gate = LoadGate(
        ns.max_busy,
        max_wait,
        sample_s=0.05 if quick else 0.3,
        wait_budget=ns.wait_budget,
        probe=core_to_core_round_trip,
    )
    names = ns.only.split(",") if ns.only else list(registry)
    unknown = [n for n in names if n not in registry]
    wanted = set(ns.impls.split(",")) if ns.impls else set(workloads.LIBRARIES)
    bad_impls = wanted - set(workloads.LIBRARIES)
    if unknown or bad_impls:
        print(
            f"unknown workload(s) {unknown} or library(ies) {sorted(bad_impls)}; "
            f"workloads: {', '.join(registry)}; libraries: {', '.join(workloads.LIBRARIES)}",
            file=sys.stderr,
        )
        return 2
    available = {i for i in wanted if installed(i)}
    for missing in sorted(wanted - available):
        print(f"# skipped {missing}: not installed (pip install {missing})")
    cores = harness.cpu_count()
    command = report.command_line()
    print(f"# {command}\n# machine: {report.machine()}", flush=True)

    load_before, started = os.getloadavg(), time.time()
    runs: list[Run] = []
    for name in names:
        w = registry[name]
        impls = harness.peer_order(i for i in w.impls if i in available)
        if workloads.FERROGRAD not in impls:
            print(f"# skipped {name}: ferrograd is not among the libraries to run")
            continue
        thread_counts = [int(t) for t in ns.threads.split(",")] if ns.threads else w.threads
        counts = []
        for threads in harness.resolve_threads(thread_counts, cores):
            if threads > cores:
                print(f"# skipped {name} at {threads} threads: only {cores} cores")
            else:
                counts.append(threads)
        runs += harness.run_group(
            name, impls, counts, settings, gate, log=lambda s: print(s, flush=True)
        )
    figures = harness.figures_from_runs(runs)
    failed = sorted({f"{r.workload}/{r.impl}/{r.threads}" for r in runs if r.error})
    if not (quick or ns.no_rust or ns.only or ns.impls):
        try:
            figures += rust_bench()
        except Exception:  # noqa: BLE001 -- report the failure, print the rest
            traceback.print_exc()
            failed.append("rust value_vs_tensor")
    load_after = os.getloadavg()

    for fig in figures:
        print(json.dumps(fig.as_dict(), ensure_ascii=False))
    settings_line = (
        f"{settings.rounds} rounds (one process per library per round, "
        f"alternating), {settings.repeats} samples per process, "
        f"{settings.min_time} s per kernel sample, {settings.warmup_time} s "
        f"warm-up; wait while others use > {ns.max_busy} cores, at most "
        f"{max_wait:.0f} s each, {ns.wait_budget:.0f} s in all"
    )
    load_line = (
        f"1-min load average {load_before[0]:.2f} before the run, "
        f"{load_after[0]:.2f} after; {time.time() - started:.0f} s in all"
    )
    text = report.document(
        figures,
        runs,
        command=command,
        settings_line=settings_line,
        load_line=load_line,
        quick=quick,
    )
    print("\n" + text)
    if ns.markdown is not None:
        ns.markdown.write_text(text)
        print(f"# wrote {ns.markdown}")
    if ns.json is not None:
        ns.json.write_text(
            json.dumps(
                {
                    "command": command,
                    "settings": settings.__dict__,
                    "runs": [r.as_dict() for r in runs],
                    "figures": [f.as_dict() for f in figures],
                },
                ensure_ascii=False,
                indent=1,
            )
        )
        print(f"# wrote {ns.json}")
    if failed:
        print(f"# FAILED: {', '.join(failed)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
