"""Runs every benchmark script (each in a fresh process), prints the combined table and the
summary of the Speed issue's targets.

    PYTHONPATH=python python benchmarks/run_all.py            # full sizes (several minutes)
    PYTHONPATH=python python benchmarks/run_all.py --quick    # tiny sizes (seconds)

With full sizes it also runs the Rust criterion bench (the article's ``NdArray<Value>``
against ``Tensor``) through ``cargo bench`` when cargo and the source tree are at hand
(``--no-rust`` skips it). Every number printed is measured by this run.

``OPENBLAS_CORETYPE`` and ``OPENBLAS_L2_SIZE`` are removed from this process's environment
(by re-executing it) before NumPy loads: on some hosts they are set and slow current NumPy.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
import traceback
from importlib import metadata
from pathlib import Path

import common
from common import Figure, Report

SCRIPTS = ("bench_matmul", "bench_elementwise", "bench_overhead", "bench_value",
           "bench_training", "bench_numpy_io")
HERE = Path(__file__).resolve().parent
REPO = HERE.parent
CRITERION_GROUP = "mlp_4-16-16-1_batch32_step"


# ----- the machine -----------------------------------------------------------------------


def machine_line() -> str:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name") and model in ("", platform.machine()):
                model = line.split(":", 1)[1].strip()
            elif line.startswith("flags"):
                flags = set(line.split(":", 1)[1].split())
    except OSError:  # not Linux
        pass
    simd = [f for f in ("avx2", "fma", "avx512f") if f in flags] or ["flags unknown"]
    return f"{model}, {common.cpu_count()} cores, {' '.join(simd)}"


def versions() -> str:
    """Versions of ferrograd and the peers, read from package metadata (no torch import)."""
    import numpy as np

    import ferrograd as fg

    parts = [f"ferrograd {fg.__version__}", f"numpy {np.__version__}"]
    for peer in ("torch", "micrograd", "threadpoolctl"):
        try:
            parts.append(f"{peer} {metadata.version(peer)}")
        except metadata.PackageNotFoundError:
            parts.append(f"{peer} not installed")
    return ", ".join(parts) + f", python {platform.python_version()}"


# ----- the Rust baseline -----------------------------------------------------------------


def rust_bench(report: Report) -> None:
    """``cargo bench`` of the article's NdArray<Value> MLP step against Tensor's."""
    cargo = shutil.which("cargo")
    if cargo is None or not (REPO / "rust/ferrograd/benches/value_vs_tensor.rs").exists():
        print("# skipped the Rust bench: needs cargo and the ferrograd source tree")
        return
    target = Path(os.environ.get("CARGO_TARGET_DIR", REPO / "target"))
    out_dir = target / "criterion" / CRITERION_GROUP
    shutil.rmtree(out_dir, ignore_errors=True)  # read only what this run measures
    cmd = [cargo, "bench", "-p", "ferrograd", "--bench", "value_vs_tensor", "--",
           "--warm-up-time", "2", "--measurement-time", "5"]
    print("# running:", " ".join(cmd[1:]), flush=True)
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        print(done.stdout[-2000:], done.stderr[-2000:])
        raise RuntimeError(f"cargo bench failed with exit code {done.returncode}")
    impls = {"ndarray_of_value": "NdArray<Value>", "tensor": "ferrograd"}
    figures = []
    for bench_id, impl in impls.items():
        est = json.loads((out_dir / bench_id / "new" / "estimates.json").read_text())
        median, ci = est["median"]["point_estimate"], est["median"]["confidence_interval"]
        # criterion reports a confidence interval of the median, not quartiles
        figures.append(Figure("Rust MLP 4-16-16-1 step (criterion)", "batch 32, f64",
                              common.cpu_count(), impl, median / 1e3, "µs",
                              (ci["upper_bound"] - ci["lower_bound"]) / 1e3,
                              note="iqr is the 95% confidence interval of the median"))
    report.add(figures)


# ----- the targets -----------------------------------------------------------------------


def _find(figs, workload, impl, size=None, threads=None):
    for f in figs:
        if (f.workload == workload and f.impl == impl and (size is None or f.size == size)
                and (threads is None or f.threads == threads)):
            return f
    return None


def _ratio(figs, workload, peers, size=None, threads=None):
    """ferrograd / the best of ``peers`` (largest throughput or smallest time), with names."""
    fg_fig = _find(figs, workload, "ferrograd", size, threads)
    found = [p for p in (_find(figs, workload, name, size, threads) for name in peers) if p]
    if fg_fig is None or not found:
        return None, "not measured in this run"
    if fg_fig.better == "higher":
        best = max(found, key=lambda p: p.value)
    else:
        best = min(found, key=lambda p: p.value)
    detail = (f"{common._fmt(fg_fig.value)} vs {best.impl} {common._fmt(best.value)} "
              f"{best.unit} [{fg_fig.size}]")
    return fg_fig.value / best.value, detail


def target_rows(figs: list[Figure]) -> list[tuple[str, str, float | None, str, str]]:
    """(workload, target, ratio, PASS/MISS, detail) for each row of the issue's table."""
    threads = 2 if common.cpu_count() >= 2 else 1
    rows = []

    def check(name, target, ratio_detail, ok):
        ratio, detail = ratio_detail
        verdict = "n/a" if ratio is None else ("PASS" if ok(ratio) else "MISS")
        rows.append((name, target, ratio, verdict, detail))

    check(f"matmul f32 1024², {threads} threads", "≥ 0.9 × best of NumPy, PyTorch",
          _ratio(figs, "matmul f32", ("numpy", "torch"), "1024", threads), lambda r: r >= 0.9)
    for op in ("add", "mul", "exp", "relu"):
        check(f"elementwise {op} 16M, {threads} threads", "≥ 1.0 × best of NumPy, PyTorch",
              _ratio(figs, f"elementwise {op}", ("numpy", "torch"), "16M", threads),
              lambda r: r >= 1.0)
    check("tiny fwd+bwd (a*b+c).relu().sum()", "≤ 0.25 × PyTorch's time",
          _ratio(figs, "tiny fwd+bwd", ("torch",)), lambda r: r <= 0.25)
    check("tiny add, shape (4,)", "≤ 0.5 × PyTorch's time",
          _ratio(figs, "tiny add", ("torch",)), lambda r: r <= 0.5)

    ratio, detail = _ratio(figs, "digits MLP train (Adam)", ("torch",))
    acc_fg = _find(figs, "digits MLP test accuracy", "ferrograd")
    acc_torch = _find(figs, "digits MLP test accuracy", "torch")
    same_acc = acc_fg is not None and acc_torch is not None and \
        acc_fg.value >= acc_torch.value - 1.0
    if acc_fg is not None and acc_torch is not None:
        detail += f"; test accuracy {acc_fg.value:.1f}% vs {acc_torch.value:.1f}%"
    check("digits MLP training", "≥ 3 × PyTorch's steps/s, accuracy within 1 point",
          (ratio, detail), lambda r: r >= 3.0 and same_acc)
    check("large MLP training", "≥ 1.0 × PyTorch's steps/s",
          _ratio(figs, "large MLP train (SGD momentum)", ("torch",)), lambda r: r >= 1.0)
    for tag in ("", " [gc off]"):
        check(f"Value graph build+backward{tag}", "≥ 30 × micrograd's ops/s",
              _ratio(figs, f"value graph build+backward{tag}", ("micrograd",)),
              lambda r: r >= 30)
    for name in ("numpy in: fg.from_numpy(a)", "numpy in: fg.Tensor(a)",
                 "numpy out: np.asarray(t)", "numpy out: t.numpy()"):
        check(name, "≥ 0.7 × np.copy's GB/s (100 MB)",
              _ratio(figs, name, ("numpy",)), lambda r: r >= 0.7)
    ratio, detail = _ratio(figs, "Rust MLP 4-16-16-1 step (criterion)", ("NdArray<Value>",))
    check("Tensor vs NdArray<Value> MLP step", "≥ 100 × faster",
          (None if ratio is None else 1 / ratio, detail), lambda r: r >= 100)
    return rows


def print_targets(figs: list[Figure]) -> None:
    print("\n## Targets (issue 'Speed')\n")
    print("| workload | target | measured ratio | verdict | figures |")
    print("|---|---|---:|---|---|")
    for name, target, ratio, verdict, detail in target_rows(figs):
        shown = "–" if ratio is None else f"{ratio:.2f}"
        print(f"| {name} | {target} | {shown} | {verdict} | {detail} |")
    print("\nRatios are ferrograd / peer (for times: ferrograd's time / the peer's; for the "
          "Rust row: how many times faster Tensor is). Quick runs (--quick) use tiny sizes, "
          "so their verdicts say nothing about the targets.")


# ----- running the scripts -------------------------------------------------------------


def run_script(name: str, flags: list[str], report: Report) -> int:
    """Runs one benchmark script in a fresh process (so one library's thread pools and
    settings never leak into the next script), echoes its output and collects its figures."""
    cmd = [sys.executable, str(HERE / f"{name}.py"), *flags]
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True, bufsize=1) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            print(line, end="", flush=True)
            if line.startswith("{"):
                report.figures.append(common.figure_from_json(line))
    return proc.returncode


# ----- main --------------------------------------------------------------------------------


def main() -> int:
    common.reexec_without_openblas_overrides()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    common.add_arguments(parser)
    parser.add_argument("--only", default=None,
                        help="comma-separated scripts to run, e.g. bench_matmul,bench_value")
    parser.add_argument("--no-rust", action="store_true", help="skip the cargo bench")
    ns = parser.parse_args()
    opts = common.options_from(ns)
    scripts = ns.only.split(",") if ns.only else list(SCRIPTS)
    forwarded = [flag for flag, on in (("--quick", ns.quick),) if on]
    for flag, value in (("--repeats", ns.repeats), ("--min-time", ns.min_time),
                        ("--threads", ns.threads)):
        if value is not None:
            forwarded += [flag, str(value)]

    print(f"# machine: {machine_line()}")
    print(f"# {versions()}")
    print(common.header_lines())
    load_before, started = os.getloadavg(), time.time()
    report, failed = Report(), []
    for name in scripts:
        print(f"\n# ----- {name} -----", flush=True)
        if run_script(name, forwarded, report) != 0:
            failed.append(name)
    if not (opts.quick or ns.no_rust or ns.only):
        try:
            rust_bench(report)
        except Exception:  # noqa: BLE001 -- report the failure, print the rest
            traceback.print_exc()
            failed.append("rust value_vs_tensor")

    load_after = os.getloadavg()
    common.print_table(report.figures, "All benchmarks")
    print_targets(report.figures)
    print(f"\n# machine: {machine_line()}")
    print(f"# load average (1, 5, 15 min): before {_loads(load_before)}, after "
          f"{_loads(load_after)}; {time.time() - started:.0f} s")
    if failed:
        print(f"# FAILED: {', '.join(failed)}")
        return 1
    return 0


def _loads(loads: tuple[float, float, float]) -> str:
    return " ".join(f"{x:.2f}" for x in loads)


if __name__ == "__main__":
    sys.exit(main())
