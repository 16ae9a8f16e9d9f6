"""Fused attention: ``scaled_dot_product_attention`` forward, and forward + backward, against
PyTorch's eager SDPA at nanoGPT's CPU recipe (batch 12, 4 heads, L = S = 64, head dim 32,
float32, causal, 2 threads).

Each library runs in its own process (two thread pools in one process stall each other on a
small machine); the processes alternate A B A B, each reporting per-call times, and the figure
is the median over all samples of a library with its interquartile range. The load average
is printed before each process starts. Besides wall time the table shows the process's CPU
time per call (all its threads, user + system): on a shared machine wall time also counts the
waits for a core, CPU time much less so. Without torch installed, ferrograd runs alone.

    python benchmarks/bench_attention.py [--threads 2] [--rounds 4] [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

RECIPE = {"batch": 12, "heads": 4, "length": 64, "head_dim": 32}
QUICK = {"batch": 2, "heads": 2, "length": 16, "head_dim": 8}


def worker(impl: str, shape: dict, threads: int, samples: int, min_time: float) -> dict:
    """Times forward and forward+backward in this process; returns µs per call samples."""
    import numpy as np

    b, h, n, d = shape["batch"], shape["heads"], shape["length"], shape["head_dim"]
    rng = np.random.default_rng(0)
    arrays = [rng.standard_normal((b, h, n, d)).astype(np.float32) for _ in range(3)]
    grad = rng.standard_normal((b, h, n, d)).astype(np.float32)
    if impl == "ferrograd":
        import ferrograd as fg

        fg.set_num_threads(threads)
        q, k, v = (fg.Tensor(a, requires_grad=True) for a in arrays)
        g = fg.Tensor(grad)
        sdpa = fg.functional.scaled_dot_product_attention

        def forward():
            with fg.no_grad():
                sdpa(q, k, v, is_causal=True)

    else:
        import torch

        if torch.get_num_threads() != threads:
            torch.set_num_threads(threads)
        q, k, v = (torch.from_numpy(a).requires_grad_() for a in arrays)
        g = torch.from_numpy(grad)
        sdpa = torch.nn.functional.scaled_dot_product_attention

        def forward():
            with torch.no_grad():
                sdpa(q, k, v, is_causal=True)

    def forward_backward():
        for t in (q, k, v):
            t.grad = None
        sdpa(q, k, v, is_causal=True).backward(g)

    out = {}
    for name, fn in (("forward", forward), ("forward+backward", forward_backward)):
        fn()  # first call: pools, caches, page faults
        start, calls = time.perf_counter(), 0
        while time.perf_counter() - start < min_time:
            fn()
            calls += 1
        per_sample = max(1, calls)
        times, cpu = [], []
        for _ in range(samples):
            t0, c0 = time.perf_counter(), time.process_time()
            for _ in range(per_sample):
                fn()
            times.append((time.perf_counter() - t0) / per_sample * 1e6)
            cpu.append((time.process_time() - c0) / per_sample * 1e6)
        out[name] = times
        out[f"{name} (CPU time)"] = cpu
    return out


def spawn(impl: str, args: argparse.Namespace, shape: dict) -> dict | None:
    cmd = [
        sys.executable,
        os.path.abspath(__file__),
        "--worker",
        impl,
        "--threads",
        str(args.threads),
        "--samples",
        str(args.samples),
        "--min-time",
        str(args.min_time),
        "--shape",
        json.dumps(shape),
    ]
    done = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        if impl == "torch" and "No module named 'torch'" in done.stderr:
            return None
        sys.exit(f"{impl} worker failed:\n{done.stderr[-3000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--rounds", type=int, default=4, help="A B rounds, one process each")
    p.add_argument("--samples", type=int, default=7, help="timed samples per process")
    p.add_argument("--min-time", type=float, default=0.2, help="seconds per sample")
    p.add_argument("--quick", action="store_true", help="tiny shapes, one short round")
    p.add_argument("--worker", help=argparse.SUPPRESS)
    p.add_argument("--shape", help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.worker:
        result = worker(
            args.worker, json.loads(args.shape), args.threads, args.samples, args.min_time
        )
        print(json.dumps(result))
        return
    shape = QUICK if args.quick else RECIPE
    if args.quick:
        args.rounds, args.samples, args.min_time = 1, 3, 0.02
    size = "B{batch} H{heads} L=S={length} E={head_dim} f32 causal".format(**shape)
    samples: dict[str, dict[str, list[float]]] = {}
    impls = ["ferrograd", "torch"]
    for r in range(args.rounds):
        for impl in impls[r % 2 :] + impls[: r % 2]:
            if impl in samples and samples[impl] is None:
                continue
            load = os.getloadavg()[0]
            print(f"# round {r + 1}: {impl} (load average {load:.2f})", flush=True)
            got = spawn(impl, args, shape)
            if got is None:
                print("# skipped peer torch: not installed (pip install torch)")
                samples[impl] = None
                continue
            for name, times in got.items():
                samples.setdefault(impl, {}).setdefault(name, []).extend(times)
    print(f"\n| {size}, {args.threads} threads | ferrograd µs | torch µs | ratio |")
    print("|---|---|---|---|")
    names = ("forward", "forward+backward")
    for name in names + tuple(f"{n} (CPU time)" for n in names):
        figs = {}
        for impl, by_name in samples.items():
            if by_name is None:
                continue
            times = sorted(by_name[name])
            q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
            figs[impl] = (statistics.median(times), q[2] - q[0])
        fg_med, fg_iqr = figs["ferrograd"]
        peer = figs.get("torch")
        ratio = fg_med / peer[0] if peer else None
        peer_txt = f"{peer[0]:.0f} ± {peer[1]:.0f}" if peer else "—"
        ratio_txt = f"{ratio:.2f}" if ratio else "—"
        print(f"| {name} | {fg_med:.0f} ± {fg_iqr:.0f} | {peer_txt} | {ratio_txt} |")
        for impl, (med, iqr) in figs.items():
            fig = {
                "workload": f"attention {name}",
                "size": size,
                "threads": args.threads,
                "impl": impl,
                "value": round(med, 2),
                "unit": "µs",
                "iqr": round(iqr, 2),
                "better": "lower",
            }
            if impl == "ferrograd" and ratio:
                fig["ratio_vs_torch"] = round(ratio, 3)
            print(json.dumps(fig, ensure_ascii=False))


if __name__ == "__main__":
    main()
