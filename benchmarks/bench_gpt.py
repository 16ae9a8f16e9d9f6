"""The GPT training step of examples/train_shakespeare.py against PyTorch running the same model,
with its loss curve: the model definitions are ``workloads/gpt.py``'s (``run_all.py --only
gpt`` gives the harness's table); this script adds the per-iteration quartiles, the
validation loss and ``--curve``.

Each library trains in its own process (their thread pools stall each other when they share
one), the processes alternating A B A B over ``--rounds``, with the same thread count, sizes,
batches (offsets from one seeded NumPy generator) and optimizer recipe (AdamW with nanoGPT's
param groups, warmup + cosine schedule, grad clip 1.0). One step is what the example times:
set the lr, slice the batch, forward, backward, clip, step, zero the grads.

Reported: ms per iteration (median of every timed iteration of every round, with the
quartiles and min-max), the process CPU time per iteration (steadier than wall time on a
loaded machine; at several threads it adds up the threads' time, spinning included), the
ratios ferrograd / PyTorch, the peak RSS of the process and its
peak above the RSS after the imports, and the training loss at a few iterations (both start
from different random weights, so the curves agree in shape, not digit for digit).

    python benchmarks/bench_gpt.py                       # nanoGPT's CPU recipe sizes
    python benchmarks/bench_gpt.py --iters 300 --rounds 1 --curve   # a loss curve too
    python benchmarks/bench_gpt.py --quick               # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
LIBS = ("ferrograd", "torch")

sys.path.insert(0, str(HERE))
from workloads.data import peak_rss_mib, rss_mib
from workloads.gpt import ferrograd_step, shakespeare_ids, torch_step


def set_threads(lib: str, threads: int) -> None:
    """Imports the library with the thread count set (the harness's worker does the same)."""
    if lib == "ferrograd":
        import ferrograd

        ferrograd.set_num_threads(threads)
    else:
        import torch

        torch.set_num_threads(threads)


def worker(lib: str, cfg: dict[str, Any]) -> None:
    train, val, vocab = shakespeare_ids()
    set_threads(lib, cfg["threads"])
    make = ferrograd_step if lib == "ferrograd" else torch_step
    step, eval_loss = make(cfg, vocab)
    rss_after_imports = rss_mib()
    rng = np.random.default_rng(cfg["seed"])
    B, T = cfg["batch_size"], cfg["block_size"]

    def batch(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = rng.integers(0, len(data) - T, B)[:, None] + np.arange(T)
        return data[rows], data[rows + 1]

    times, cpu_times, losses = [], [], []
    for it in range(cfg["warmup"] + cfg["iters"]):
        c0, t0 = time.process_time(), time.perf_counter()
        x, y = batch(train)
        loss = step(it, x, y)
        dt, dc = time.perf_counter() - t0, time.process_time() - c0
        if it >= cfg["warmup"]:
            times.append(dt * 1000)
            cpu_times.append(dc * 1000)
        losses.append(loss)
    val_loss = float(np.mean([eval_loss(*batch(val)) for _ in range(cfg["eval_iters"])]))
    print(
        json.dumps(
            {
                "lib": lib,
                "ms": times,
                "cpu_ms": cpu_times,
                "losses": losses,
                "val_loss": val_loss,
                "peak_rss_mib": peak_rss_mib(),
                "rss_after_imports_mib": rss_after_imports,
            }
        )
    )


# ---------------------------------------------------------------------------- driver


def load_note() -> str:
    try:
        return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())
    except OSError:
        return "load average unknown"


def run_worker(lib: str, cfg: dict[str, Any]) -> dict[str, Any]:
    env = dict(
        os.environ, OMP_NUM_THREADS=str(cfg["threads"]), RAYON_NUM_THREADS=str(cfg["threads"])
    )
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--worker",
        lib,
        "--config",
        json.dumps(cfg),
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bench_gpt: the {lib} worker failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def quartiles(xs: list[float]) -> tuple[float, float, float]:
    q = statistics.quantiles(xs, n=4) if len(xs) > 1 else [xs[0]] * 3
    return q[0], statistics.median(xs), q[2]


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--worker", choices=LIBS, help=argparse.SUPPRESS)
    p.add_argument("--config", help=argparse.SUPPRESS)
    p.add_argument("--libs", default=",".join(LIBS))
    p.add_argument("--threads", type=int, default=min(2, os.cpu_count() or 1))
    p.add_argument("--iters", type=int, default=100, help="timed iterations per round")
    p.add_argument("--warmup", type=int, default=10, help="untimed iterations first")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--lr-decay-iters", type=int, default=2000)
    p.add_argument("--eval-iters", type=int, default=20)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--curve", action="store_true", help="print the training loss curve too")
    p.add_argument("--quick", action="store_true", help="tiny sizes, a smoke run")
    args = p.parse_args()
    if args.worker:
        worker(args.worker, json.loads(args.config))
        return
    if args.quick:
        args.iters, args.warmup, args.rounds, args.eval_iters = 5, 1, 1, 2
        args.batch_size, args.block_size, args.n_layer, args.n_head, args.n_embd = 4, 16, 1, 2, 16
    libs = [lib for lib in args.libs.split(",") if lib]
    if "torch" in libs and importlib.util.find_spec("torch") is None:
        print("bench_gpt: PyTorch is not installed; measuring ferrograd alone")
        libs = [lib for lib in libs if lib != "torch"]
    cfg = {
        "threads": args.threads, "iters": args.iters, "warmup": args.warmup,
        "batch_size": args.batch_size, "block_size": args.block_size, "n_layer": args.n_layer,
        "n_head": args.n_head, "n_embd": args.n_embd, "lr": 1e-3, "min_lr": 1e-4,
        "warmup_iters": 100, "lr_decay_iters": args.lr_decay_iters, "eval_iters": args.eval_iters,
        "seed": args.seed,
    }  # fmt: skip
    print(
        f"GPT step: {args.n_layer} layers, {args.n_head} heads, d {args.n_embd}, block "
        f"{args.block_size}, batch {args.batch_size}, {args.threads} threads; {args.rounds} "
        f"rounds of {args.warmup} + {args.iters} iterations per library"
    )
    results: dict[str, list[dict[str, Any]]] = {lib: [] for lib in libs}
    for r in range(args.rounds):
        for lib in libs if r % 2 == 0 else libs[::-1]:
            print(f"round {r + 1}, {lib}: {load_note()}", flush=True)
            results[lib].append(run_worker(lib, cfg))

    print(
        "\n| library | ms/iter median | quartiles | min-max | CPU ms/iter median (min) "
        "| peak RSS MiB | above imports MiB | val loss |"
    )
    print("|---|---|---|---|---|---|---|---|")
    medians, cpu_medians = {}, {}
    for lib, runs in results.items():
        ms = [t for run in runs for t in run["ms"]]
        lo, med, hi = quartiles(ms)
        medians[lib] = med
        cpu = [t for run in runs for t in run["cpu_ms"]]
        cpu_medians[lib] = statistics.median(cpu)
        peak = max(run["peak_rss_mib"] for run in runs)
        above = max(run["peak_rss_mib"] - run["rss_after_imports_mib"] for run in runs)
        val = statistics.mean(run["val_loss"] for run in runs)
        print(
            f"| {lib} | {med:.2f} | {lo:.2f}-{hi:.2f} | {min(ms):.2f}-{max(ms):.2f} | "
            f"{cpu_medians[lib]:.2f} ({min(cpu):.2f}) | {peak:.0f} | {above:.0f} | {val:.4f} |"
        )
    if len(medians) == 2:
        print(
            f"\nferrograd / PyTorch, median ms/iter: {medians['ferrograd'] / medians['torch']:.2f}x"
        )
        print(
            "ferrograd / PyTorch, median CPU ms/iter: "
            f"{cpu_medians['ferrograd'] / cpu_medians['torch']:.2f}x"
        )
        peaks = {lib: max(r["peak_rss_mib"] for r in runs) for lib, runs in results.items()}
        print(f"ferrograd / PyTorch, peak RSS: {peaks['ferrograd'] / peaks['torch']:.2f}x")
    if args.curve:
        n = len(next(iter(results.values()))[0]["losses"])
        marks = sorted({0, n - 1, *range(0, n, max(1, n // 10))})
        print("\ntraining loss (round 1)\n| iter | " + " | ".join(results) + " |")
        print("|---|" + "---|" * len(results))
        for i in marks:
            print(
                f"| {i} | "
                + " | ".join(f"{runs[0]['losses'][i]:.4f}" for runs in results.values())
                + " |"
            )


if __name__ == "__main__":
    main()
