"""The GPT training step of examples/train_shakespeare.py against PyTorch running the same model.

Each library trains in its own process (their thread pools stall each other when they share
one), the processes alternating A B A B over ``--rounds``, with the same thread count, sizes,
batches (offsets from one seeded NumPy generator) and optimizer recipe (AdamW with nanoGPT's
param groups, warmup + cosine schedule, grad clip 1.0). One step is what the example times:
set the lr, slice the batch, forward, backward, clip, step, zero the grads.

Reported: ms per iteration (median of every timed iteration of every round, with the
quartiles and min-max), the ratio ferrograd / PyTorch, the peak RSS of the process and its
peak above the RSS after the imports, and the training loss at a few iterations (both start
from different random weights, so the curves agree in shape, not digit for digit).

    python benchmarks/bench_gpt.py                       # nanoGPT's CPU recipe sizes
    python benchmarks/bench_gpt.py --iters 300 --rounds 1 --curve   # a loss curve too
    python benchmarks/bench_gpt.py --quick               # tiny sizes, seconds
"""

from __future__ import annotations

import argparse
import gzip
import importlib.util
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

HERE = Path(__file__).resolve().parent
LIBS = ("ferrograd", "torch")

sys.path.insert(0, str(HERE))
from workloads.data import peak_rss_mib, rss_mib


def shakespeare_ids() -> tuple[np.ndarray, np.ndarray, int]:
    """The text as int64 ids (sorted characters), split 90/10 in order, read from the file
    the package ships without importing ferrograd (the PyTorch process must not load it)."""
    spec = importlib.util.find_spec("ferrograd")
    if spec is None or not spec.submodule_search_locations:
        raise SystemExit("bench_gpt: ferrograd is not installed (its package holds the text)")
    path = Path(next(iter(spec.submodule_search_locations))) / "datasets" / "tinyshakespeare.txt.gz"
    text = gzip.decompress(path.read_bytes()).decode("utf-8")
    chars = sorted(set(text))
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
    lut = np.zeros(max(map(ord, chars)) + 1, dtype=np.int64)
    lut[[ord(c) for c in chars]] = np.arange(len(chars))
    data = lut[codes]
    n = int(0.9 * len(data))
    return data[:n], data[n:], len(chars)


def lr_at(it: int, cfg: dict[str, Any]) -> float:
    """nanoGPT's schedule (the example's): linear warmup, cosine to min_lr at decay_iters."""
    lr, min_lr, warmup, decay = cfg["lr"], cfg["min_lr"], cfg["warmup_iters"], cfg["lr_decay_iters"]
    if it < warmup:
        return lr * (it + 1) / (warmup + 1)
    if it > decay:
        return min_lr
    ratio = (it - warmup) / max(1, decay - warmup)
    return min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (lr - min_lr)


# ---------------------------------------------------------------------------- workers
# Each returns (step(it, x, y) -> loss as float, eval_loss(x, y) -> float).


def ferrograd_step(cfg: dict[str, Any], vocab: int) -> tuple[Callable, Callable]:
    import ferrograd as fg

    sys.path.insert(0, str(HERE.parent / "examples"))
    from train_shakespeare import GPT  # the example's own model

    fg.set_num_threads(cfg["threads"])
    fg.manual_seed(cfg["seed"])
    model = GPT(vocab, cfg["block_size"], cfg["n_layer"], cfg["n_head"], cfg["n_embd"], 0.0)
    opt = model.configure_optimizer(0.1, cfg["lr"], (0.9, 0.99))
    params = model.parameters()

    def step(it: int, x: np.ndarray, y: np.ndarray) -> float:
        for group in opt.param_groups:
            group["lr"] = lr_at(it, cfg)
        loss = model.loss(fg.tensor(x), fg.tensor(y))
        loss.backward()
        fg.layers.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad()
        return loss.item()

    def eval_loss(x: np.ndarray, y: np.ndarray) -> float:
        model.eval()
        with fg.no_grad():
            out = model.loss(fg.tensor(x), fg.tensor(y)).item()
        model.train()
        return out

    return step, eval_loss


def torch_step(cfg: dict[str, Any], vocab: int) -> tuple[Callable, Callable]:
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.set_num_threads(cfg["threads"])
    torch.manual_seed(cfg["seed"])
    C, nh, n_layer, T = cfg["n_embd"], cfg["n_head"], cfg["n_layer"], cfg["block_size"]

    class Attention(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.c_attn = nn.Linear(C, 3 * C)
            self.c_proj = nn.Linear(C, C)

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            B, t, _ = x.shape
            q, k, v = (
                z.view(B, t, nh, C // nh).transpose(1, 2) for z in self.c_attn(x).split(C, dim=2)
            )
            y = F.scaled_dot_product_attention(q, k, v, is_causal=True)
            return self.c_proj(y.transpose(1, 2).contiguous().view(B, t, C))

    class Block(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(C), Attention(), nn.LayerNorm(C)
            self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.wte, self.wpe = nn.Embedding(vocab, C), nn.Embedding(T, C)
            self.h = nn.ModuleList([Block() for _ in range(n_layer)])
            self.ln_f = nn.LayerNorm(C)
            self.lm_head = nn.Linear(C, vocab, bias=False)
            self.wte.weight = self.lm_head.weight
            for m in self.modules():
                if isinstance(m, (nn.Linear, nn.Embedding)):
                    nn.init.normal_(m.weight, std=0.02)
                if isinstance(m, nn.Linear) and m.bias is not None:
                    nn.init.zeros_(m.bias)
            for name, p in self.named_parameters():
                if name.endswith(("c_proj.weight", "mlp.2.weight")):
                    nn.init.normal_(p, std=0.02 / math.sqrt(2 * n_layer))

        def forward(self, idx: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
            t = idx.shape[1]
            x = self.wte(idx) + self.wpe(torch.arange(t))
            for block in self.h:
                x = block(x)
            logits = self.lm_head(self.ln_f(x))
            return F.cross_entropy(logits.view(-1, vocab), targets.view(-1))

    model = GPT()
    params = list(model.parameters())
    groups = [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=cfg["lr"], betas=(0.9, 0.99))

    def step(it: int, x: np.ndarray, y: np.ndarray) -> float:
        for group in opt.param_groups:
            group["lr"] = lr_at(it, cfg)
        loss = model(torch.from_numpy(x), torch.from_numpy(y))
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        opt.zero_grad(set_to_none=True)
        return loss.item()

    def eval_loss(x: np.ndarray, y: np.ndarray) -> float:
        with torch.no_grad():
            return model(torch.from_numpy(x), torch.from_numpy(y)).item()

    return step, eval_loss


def worker(lib: str, cfg: dict[str, Any]) -> None:
    train, val, vocab = shakespeare_ids()
    make = ferrograd_step if lib == "ferrograd" else torch_step
    step, eval_loss = make(cfg, vocab)  # imports the library
    rss_after_imports = rss_mib()
    rng = np.random.default_rng(cfg["seed"])
    B, T = cfg["batch_size"], cfg["block_size"]

    def batch(data: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = rng.integers(0, len(data) - T, B)[:, None] + np.arange(T)
        return data[rows], data[rows + 1]

    times, losses = [], []
    for it in range(cfg["warmup"] + cfg["iters"]):
        t0 = time.perf_counter()
        x, y = batch(train)
        loss = step(it, x, y)
        dt = time.perf_counter() - t0
        if it >= cfg["warmup"]:
            times.append(dt * 1000)
        losses.append(loss)
    val_loss = float(np.mean([eval_loss(*batch(val)) for _ in range(cfg["eval_iters"])]))
    print(
        json.dumps(
            {
                "lib": lib,
                "ms": times,
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
        "\n| library | ms/iter median | quartiles | min-max | peak RSS MiB | above imports MiB | val loss |"
    )
    print("|---|---|---|---|---|---|---|")
    medians = {}
    for lib, runs in results.items():
        ms = [t for run in runs for t in run["ms"]]
        lo, med, hi = quartiles(ms)
        medians[lib] = med
        peak = max(run["peak_rss_mib"] for run in runs)
        above = max(run["peak_rss_mib"] - run["rss_after_imports_mib"] for run in runs)
        val = statistics.mean(run["val_loss"] for run in runs)
        print(
            f"| {lib} | {med:.2f} | {lo:.2f}-{hi:.2f} | {min(ms):.2f}-{max(ms):.2f} | "
            f"{peak:.0f} | {above:.0f} | {val:.4f} |"
        )
    if len(medians) == 2:
        print(
            f"\nferrograd / PyTorch, median ms/iter: {medians['ferrograd'] / medians['torch']:.2f}x"
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
