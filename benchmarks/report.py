"""The report: machine, versions, the figures table, the targets and the load, as Markdown."""

from __future__ import annotations

import math
import os
import platform
import shlex
import statistics
import subprocess
import sys
from collections.abc import Sequence
from importlib import metadata
from pathlib import Path
from typing import Any, Callable

from harness import Figure, LoadCheck, Run, cpu_count, peer_order
from workloads import FERROGRAD, PEERS

REPO = Path(__file__).resolve().parent.parent


# ----- the machine and the software ------------------------------------------------------


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def machine() -> str:
    """CPU model, cores, SIMD, L3, memory and OS, in one line."""
    model, flags = "", set()
    for line in _read("/proc/cpuinfo").splitlines():
        if line.startswith("model name") and not model:
            model = line.split(":", 1)[1].strip()
        elif line.startswith("flags") and not flags:
            flags = set(line.split(":", 1)[1].split())
    model = model or platform.processor() or platform.machine()
    simd = " ".join(f for f in ("avx2", "fma", "avx512f") if f in flags) or "SIMD unknown"
    parts = [model, f"{cpu_count()} cores usable of {os.cpu_count()}", simd]
    l3 = _read("/sys/devices/system/cpu/cpu0/cache/index3/size").strip()
    if l3:
        parts.append(f"L3 {l3}")
    for line in _read("/proc/meminfo").splitlines():
        if line.startswith("MemTotal:"):
            parts.append(f"{int(line.split()[1]) / 1024**2:.0f} GiB RAM")
    parts.append(f"{platform.system()} {platform.release()}")
    return ", ".join(parts)


def git_commit() -> str:
    """The source tree's commit (short hash and subject), and whether it has local changes."""
    try:
        head = subprocess.run(
            ["git", "log", "-1", "--format=%h %s"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=REPO,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return head + (" (with uncommitted changes)" if dirty else "")


def numpy_blas() -> str:
    """NumPy's BLAS as threadpoolctl (preferred) or ``numpy.show_config()`` reports it."""
    import numpy as np

    try:
        from threadpoolctl import threadpool_info

        blas = [
            f"{i.get('internal_api')} {i.get('version')} ({i.get('architecture')})"
            for i in threadpool_info()
            if i.get("user_api") == "blas" and "numpy" in i.get("filepath", "")
        ]
        if blas:
            return "; ".join(blas)
    except ImportError:
        pass
    try:
        cfg: Any = np.show_config(mode="dicts")  # type: ignore[call-arg]
        blas_cfg = cfg["Build Dependencies"]["blas"]
        return f"{blas_cfg.get('name')} {blas_cfg.get('version')}"
    except (TypeError, KeyError, AttributeError):
        return "see numpy.show_config()"


def versions(runs: Sequence[Run]) -> str:
    """The versions the workers imported (their own report), else the installed ones."""
    seen: dict[str, str] = {}
    for run in runs:
        if run.result is not None:
            seen.setdefault(run.impl, run.result["process"]["version"])
    parts = []
    for lib in (FERROGRAD, *PEERS):
        dist = "micrograd" if lib == "micrograd" else lib
        version = seen.get(lib)
        if version is None:
            try:
                version = metadata.version(dist)
            except metadata.PackageNotFoundError:
                version = "not installed"
        if lib == "numpy":
            version += f" ({numpy_blas()})"
        parts.append(f"{lib} {version}")
    try:
        parts.append(f"threadpoolctl {metadata.version('threadpoolctl')}")
    except metadata.PackageNotFoundError:
        pass
    return ", ".join(parts) + f", Python {platform.python_version()}"


def command_line(argv: Sequence[str] | None = None) -> str:
    """The command that ran this, with ``PYTHONPATH`` when it was set."""
    argv = list(sys.argv if argv is None else argv)
    script = os.path.relpath(argv[0]) if argv else "benchmarks/run_all.py"
    prefix = ""
    if os.environ.get("PYTHONPATH"):
        paths = [
            os.path.relpath(p) if os.path.isabs(p) else p
            for p in os.environ["PYTHONPATH"].split(os.pathsep)
        ]
        prefix = f"PYTHONPATH={os.pathsep.join(paths)} "
    return prefix + shlex.join(["python", script, *argv[1:]])


# ----- number formatting -----------------------------------------------------------------


def fmt(x: float) -> str:
    if math.isnan(x):
        return "nan"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.1f}"
    if abs(x) >= 1 or x == 0:
        return f"{x:.2f}"
    return f"{x:.3g}"


def fmt_ratio(r: float) -> str:
    return f"{r:.3g}" if r < 0.1 else f"{r:.2f}"


def fmt_ratio_range(ratio: tuple[float, float, float]) -> str:
    r, lo, hi = ratio
    return f"{fmt_ratio(r)} ({fmt_ratio(lo)}–{fmt_ratio(hi)})"


def markdown_table(
    header: Sequence[str], rows: Sequence[Sequence[str]], numeric: set[int]
) -> list[str]:
    """A Markdown table, padded so it reads as text too; ``numeric`` columns align right."""
    widths = [max([len(h), *(len(r[i]) for r in rows)]) for i, h in enumerate(header)]

    def line(cells: Sequence[str]) -> str:
        return (
            "| "
            + " | ".join(
                c.rjust(w) if i in numeric else c.ljust(w)
                for i, (c, w) in enumerate(zip(cells, widths))
            )
            + " |"
        )

    rule = (
        "|"
        + "|".join(
            ("-" * (w + 1) + ":") if i in numeric else ("-" * (w + 2)) for i, w in enumerate(widths)
        )
        + "|"
    )
    return [line(header), rule, *(line(r) for r in rows)]


# ----- the tables ------------------------------------------------------------------------


def figures_table(figures: Sequence[Figure]) -> list[str]:
    """One row per figure; ferrograd's rows carry its ratio to each peer: the ratio of the
    medians, with the min–max of the per-round ratios in brackets."""
    peers = [p for p in peer_order({p for f in figures for p in f.ratios}) if p != FERROGRAD]
    header = ["workload", "size", "thr", "impl", "median", "min–max", "unit"]
    header += [f"fg / {p}" for p in peers] + ["note"]
    rows = []
    for f in sort_figures(figures):
        lo, hi = f.spread
        row = [
            f.label,
            f.size,
            str(f.threads),
            f.impl,
            fmt(f.value),
            f"{fmt(lo)}–{fmt(hi)}",
            f.unit,
        ]
        row += [fmt_ratio_range(f.ratios[p]) if p in f.ratios else "" for p in peers]
        rows.append(row + [f.note])
    return markdown_table(header, rows, {4, 5, *range(7, 7 + len(peers))})


def sort_figures(figures: Sequence[Figure]) -> list[Figure]:
    """Grouped by label/size/threads in the order they were measured, ferrograd first."""
    first_seen: dict[tuple[str, str, int], int] = {}
    for i, f in enumerate(figures):
        first_seen.setdefault(f.key(), i)
    order = peer_order({f.impl for f in figures})
    return sorted(figures, key=lambda f: (first_seen[f.key()], order.index(f.impl)))


def load_table(runs: Sequence[Run]) -> list[str]:
    """Per workload and thread count: the load before its processes, and any waiting."""
    groups: dict[tuple[str, int], list[Run]] = {}
    for run in runs:
        groups.setdefault((run.workload, run.threads), []).append(run)
    rows = []
    for (workload, threads), group in groups.items():
        loads = [r.load for r in group]
        rows.append(
            [
                workload,
                str(threads),
                str(len(group)),
                _range(c.load1 for c in loads),
                _busy(loads),
                _round_trips(loads),
                f"{sum(c.waited for c in loads):.0f} s",
                f"{sum(r.seconds for r in group):.0f} s",
            ]
        )
    header = [
        "workload",
        "thr",
        "processes",
        "load avg (1 min) before",
        "others' CPU before (cores, median / max)",
        "core round trip before (ns, min–max)",
        "waited",
        "ran",
    ]
    return markdown_table(header, rows, {2, 6, 7})


def _range(xs: Any) -> str:
    xs = list(xs)
    return f"{min(xs):.2f}–{max(xs):.2f}"


def _round_trips(loads: Sequence[LoadCheck]) -> str:
    trips = [c.round_trip_ns for c in loads if c.round_trip_ns is not None]
    if not trips:
        return "not measured"
    return f"{min(trips):.0f}–{max(trips):.0f}"


def _busy(loads: Sequence[LoadCheck]) -> str:
    busy = [c.busy for c in loads if c.busy is not None]
    if not busy:
        return "unknown"
    return f"{statistics.median(busy):.2f} / {max(busy):.2f}"


# ----- the targets -----------------------------------------------------------------------


def _find(
    figs: Sequence[Figure],
    label: str,
    impl: str,
    threads: int | None = None,
    size: str | None = None,
) -> Figure | None:
    for f in figs:
        if (
            f.label == label
            and f.impl == impl
            and (threads is None or f.threads == threads)
            and (size is None or f.size == size)
        ):
            return f
    return None


Ratio = tuple[float, float, float]  # median ratio, per-round min, per-round max


def vs_best(
    figs: Sequence[Figure],
    label: str,
    peers: Sequence[str],
    threads: int | None = None,
    size: str | None = None,
) -> tuple[Ratio | None, str]:
    """ferrograd / the best of ``peers`` (largest throughput or smallest time or memory)."""
    fg_fig = _find(figs, label, FERROGRAD, threads, size)
    found = [
        p for p in (_find(figs, label, name, threads, size) for name in peers) if p is not None
    ]
    if fg_fig is None or not found:
        return None, "not measured in this run"
    pick = max if fg_fig.better == "higher" else min
    best = pick(found, key=lambda p: p.value)
    if best.impl not in fg_fig.ratios:
        return None, "no ratio (units differ)"
    detail = f"{fmt(fg_fig.value)} vs {best.impl} {fmt(best.value)} {best.unit}"
    return fg_fig.ratios[best.impl], detail


TargetRow = tuple[str, str, "Ratio | None", str, str]


def target_rows(figs: Sequence[Figure]) -> list[TargetRow]:
    """(workload, target, ratio, PASS/MISS/n/a, figures) for each target of the issues."""
    cores = max(f.threads for f in figs) if figs else cpu_count()
    rows: list[TargetRow] = []

    def check(
        name: str, target: str, found: tuple[Ratio | None, str], ok: Callable[[Ratio], bool]
    ) -> None:
        ratio, detail = found
        verdict = "n/a" if ratio is None else ("PASS" if ok(ratio) else "MISS")
        rows.append((name, target, ratio, verdict, detail))

    for t in (1, 2):
        check(
            f"matmul f32 1024², {t} thread{'s' * (t > 1)}",
            "≥ 1.0 × best of NumPy, PyTorch",
            vs_best(figs, "matmul f32", ("numpy", "torch"), t, "1024"),
            lambda r: r[0] >= 1.0,
        )

    acc_fg = _find(figs, "digits MLP test accuracy", FERROGRAD)
    acc_torch = _find(figs, "digits MLP test accuracy", "torch")
    same_acc = acc_fg is None or acc_torch is None or acc_fg.value >= acc_torch.value - 1.0
    ratio, detail = vs_best(figs, "digits MLP train (Adam)", ("torch",), 1)
    if acc_fg is not None and acc_torch is not None:
        detail += f"; test accuracy {acc_fg.value:.1f}% vs {acc_torch.value:.1f}%"
    check(
        "digits MLP, 1 thread",
        "≥ 6 × PyTorch's steps/s, accuracy within 1 point",
        (ratio, detail),
        lambda r: r[0] >= 6.0 and same_acc,
    )
    check(
        "digits MLP, 1 thread",
        "≥ 2 × the hand-written NumPy trainer",
        vs_best(figs, "digits MLP train (Adam)", ("numpy",), 1),
        lambda r: r[0] >= 2.0,
    )
    check(
        "large MLP, 2 threads",
        "≥ 1.25 × PyTorch's steps/s in every round",
        vs_best(figs, "large MLP train (SGD momentum)", ("torch",), 2),
        lambda r: r[1] >= 1.25,
    )
    ratio, detail = vs_best(figs, "large MLP train (SGD momentum) peak RSS", ("torch",), 2)
    above, above_detail = vs_best(
        figs, "large MLP train (SGD momentum) peak RSS above imports", ("torch",), 2
    )
    if above is not None:
        detail += f"; above the imports {above_detail} ({fmt_ratio(above[0])} ×)"
    check("large MLP peak RSS", "≤ 0.3 × PyTorch's", (ratio, detail), lambda r: r[0] <= 0.3)

    for t in (1, 2):
        check(
            f"digits CNN, {t} thread{'s' * (t > 1)}",
            "≥ 1.5 × PyTorch's steps/s",
            vs_best(figs, "digits CNN train (AdamW)", ("torch",), t),
            lambda r: r[0] >= 1.5,
        )
    cnn1 = _find(figs, "digits CNN train (AdamW)", FERROGRAD, 1)
    cnn2 = _find(figs, "digits CNN train (AdamW)", FERROGRAD, 2)
    if cnn1 is not None and cnn2 is not None:
        paired = [a / b for a, b in zip(cnn2.rounds, cnn1.rounds)]
        found: tuple[Ratio | None, str] = (
            (cnn2.value / cnn1.value, min(paired), max(paired)),
            f"{fmt(cnn2.value)} vs {fmt(cnn1.value)} steps/s",
        )
    else:
        found = (None, "not measured in this run")
    check(
        "digits CNN, ferrograd 2 threads / 1 thread",
        "≥ 1.0 (2 threads never slower)",
        found,
        lambda r: r[0] >= 1.0,
    )
    for t in (1, 2):
        check(
            f"GPT train step, {t} thread{'s' * (t > 1)}",
            "≤ 0.8 × PyTorch's ms/iteration",
            vs_best(figs, "GPT train step (AdamW)", ("torch",), t),
            lambda r: r[0] <= 0.8,
        )
        check(
            f"GPT train peak RSS, {t} thread{'s' * (t > 1)}",
            "≤ 0.5 × PyTorch's",
            vs_best(figs, "GPT train step (AdamW) peak RSS", ("torch",), t),
            lambda r: r[0] <= 0.5,
        )
    check(
        "Value build+backward, gc on",
        "≥ 30 × micrograd's ops/s",
        vs_best(figs, "value graph build+backward", ("micrograd",)),
        lambda r: r[0] >= 30,
    )
    check(
        "tiny fwd+bwd (a*b+c).relu().sum()",
        "≤ 0.25 × PyTorch's time",
        vs_best(figs, "tiny fwd+bwd", ("torch",)),
        lambda r: r[0] <= 0.25,
    )
    check(
        "tiny add, shape (4,)",
        "≤ 0.5 × PyTorch's time",
        vs_best(figs, "tiny add", ("torch",)),
        lambda r: r[0] <= 0.5,
    )
    # carried over from the first speed issue
    for op in ("add", "mul", "exp", "relu"):
        check(
            f"elementwise {op} 16M, {cores} threads",
            "≥ 1.0 × best of NumPy, PyTorch",
            vs_best(figs, f"elementwise {op}", ("numpy", "torch"), size="16M"),
            lambda r: r[0] >= 1.0,
        )
    for name in (
        "numpy in: fg.from_numpy(a)",
        "numpy in: fg.Tensor(a)",
        "numpy out: np.asarray(t)",
        "numpy out: t.numpy()",
    ):
        check(
            name,
            "≥ 0.7 × np.copy's GB/s (100 MB)",
            vs_best(figs, name, ("numpy",)),
            lambda r: r[0] >= 0.7,
        )
    ratio, detail = vs_best(figs, "Rust MLP 4-16-16-1 step (criterion)", ("NdArray<Value>",))
    inverted = None if ratio is None else (1 / ratio[0], 1 / ratio[2], 1 / ratio[1])
    check(
        "Tensor vs NdArray<Value> MLP step",
        "≥ 100 × faster",
        (inverted, detail),
        lambda r: r[0] >= 100,
    )
    return rows


def targets_table(figs: Sequence[Figure]) -> list[str]:
    rows = [
        [name, target, "–" if r is None else fmt_ratio_range(r), verdict, detail]
        for name, target, r, verdict, detail in target_rows(figs)
    ]
    return markdown_table(
        ["workload", "target", "ratio (per-round min–max)", "verdict", "figures (medians)"],
        rows,
        {2},
    )


# ----- the document ----------------------------------------------------------------------


def document(
    figures: Sequence[Figure],
    runs: Sequence[Run],
    *,
    command: str,
    settings_line: str,
    load_line: str,
    quick: bool,
) -> str:
    """The whole report: what ran where, the targets, every figure and the load."""
    lines = [
        f"- command: `{command}`",
        f"- commit: {git_commit()}",
        f"- machine: {machine()}",
        f"- versions: {versions(runs)}",
        f"- settings: {settings_line}",
        f"- load: {load_line}",
        "",
        "### Targets",
        "",
        *targets_table(figures),
        "",
        (
            "Ratios are ferrograd / peer in the figure's unit (for times and memory below 1 "
            "means ferrograd is better; for the Rust row, how many times faster `Tensor` is), "
            "from the medians, with the range of the per-round ratios in brackets."
        ),
    ]
    if quick:
        lines += [
            "",
            ("This was a --quick run (tiny sizes): its verdicts say nothing about the targets."),
        ]
    lines += [
        "",
        "### All figures",
        "",
        *figures_table(figures),
        "",
        "### Load before each process",
        "",
        *load_table(runs),
        "",
    ]
    return "\n".join(lines)
