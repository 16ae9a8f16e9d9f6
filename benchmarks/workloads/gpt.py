"""The GPT training step of ``examples/train_shakespeare.py`` against PyTorch running the same
model, at 1 and 2 threads (issue 11's benchmark).

nanoGPT's CPU recipe: 4 layers, 4 heads, n_embd 128, block 64, batch 12, vocabulary 65
(Tiny Shakespeare's characters), AdamW with nanoGPT's parameter groups (weight decay 0.1 on
the matrices), warmup + cosine learning rate, gradient clipping at 1.0, dropout 0. ferrograd
trains the example's own ``GPT`` class (imported from the example file, so the benchmark
cannot drift from it); the PyTorch model is nanoGPT's, written out below. Both see the same
batches (offsets from one seeded generator). One step is what the example times: set the lr,
slice the batch, forward, backward, clip, step, zero the grads.

Reported: ms per iteration (each timed iteration a sample; the harness takes the median) and
the worker's peak RSS. ``benchmarks/bench_gpt.py`` reuses these definitions for its loss
curve check.
"""

from __future__ import annotations

import gzip
import importlib.util
import math
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from workloads import Context, declare, implementation

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"

# nanoGPT's CPU recipe (its README) and the example's schedule.
RECIPE = {
    "batch_size": 12,
    "block_size": 64,
    "n_layer": 4,
    "n_head": 4,
    "n_embd": 128,
    "lr": 1e-3,
    "min_lr": 1e-4,
    "warmup_iters": 100,
    "lr_decay_iters": 2000,
    "seed": 1337,
}
QUICK = {"batch_size": 4, "block_size": 16, "n_layer": 1, "n_head": 2, "n_embd": 16}
WARMUP_ITERS, ITERS = 10, 60
QUICK_WARMUP_ITERS, QUICK_ITERS = 1, 5

declare("gpt", "GPT training step (nanoGPT's CPU recipe, AdamW)", threads=(1, 2), training=True)

# A step function: (iteration, x, y) -> the loss as a float.
Step = Callable[[int, np.ndarray, np.ndarray], float]


def shakespeare_ids() -> tuple[np.ndarray, np.ndarray, int]:
    """The text as int64 ids (sorted characters), split 90/10 in order, read from the file
    the package ships without importing ferrograd (the PyTorch process must not load it)."""
    spec = importlib.util.find_spec("ferrograd")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("gpt: ferrograd is not installed (its package holds the text)")
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


def batches(data: np.ndarray, cfg: dict[str, Any], seed: int) -> Callable[[], tuple[Any, Any]]:
    """A function returning the next (x, y) batch of random offsets into ``data``."""
    rng = np.random.default_rng(seed)
    b, t = cfg["batch_size"], cfg["block_size"]

    def batch() -> tuple[np.ndarray, np.ndarray]:
        rows = rng.integers(0, len(data) - t, b)[:, None] + np.arange(t)
        return data[rows], data[rows + 1]

    return batch


def ferrograd_step(cfg: dict[str, Any], vocab: int) -> tuple[Step, Callable[..., float]]:
    """The example's GPT with its optimizer: (step, eval_loss)."""
    import ferrograd as fg

    spec = importlib.util.spec_from_file_location(
        "train_shakespeare_example", EXAMPLES / "train_shakespeare.py"
    )
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the example's GPT from {EXAMPLES}")
    example = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = example
    spec.loader.exec_module(example)
    fg.manual_seed(cfg["seed"])
    model = example.GPT(vocab, cfg["block_size"], cfg["n_layer"], cfg["n_head"], cfg["n_embd"], 0.0)
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
        return float(loss.item())

    def eval_loss(x: np.ndarray, y: np.ndarray) -> float:
        model.eval()
        with fg.no_grad():
            out = float(model.loss(fg.tensor(x), fg.tensor(y)).item())
        model.train()
        return out

    return step, eval_loss


def torch_step(cfg: dict[str, Any], vocab: int) -> tuple[Step, Callable[..., float]]:
    """nanoGPT's GPT (dropout 0, no flash-attention switch: SDPA as nanoGPT calls it) with
    nanoGPT's AdamW groups: (step, eval_loss)."""
    import torch
    from torch import nn
    from torch.nn import functional as F

    torch.manual_seed(cfg["seed"])
    C, nh, n_layer, T = cfg["n_embd"], cfg["n_head"], cfg["n_layer"], cfg["block_size"]

    class Attention(nn.Module):  # type: ignore[misc]
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

    class Block(nn.Module):  # type: ignore[misc]
        def __init__(self) -> None:
            super().__init__()
            self.ln_1, self.attn, self.ln_2 = nn.LayerNorm(C), Attention(), nn.LayerNorm(C)
            self.mlp = nn.Sequential(nn.Linear(C, 4 * C), nn.GELU(), nn.Linear(4 * C, C))

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            x = x + self.attn(self.ln_1(x))
            return x + self.mlp(self.ln_2(x))

    class GPT(nn.Module):  # type: ignore[misc]
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
        return float(loss.item())

    def eval_loss(x: np.ndarray, y: np.ndarray) -> float:
        with torch.no_grad():
            return float(model(torch.from_numpy(x), torch.from_numpy(y)).item())

    return step, eval_loss


def config(quick: bool) -> dict[str, Any]:
    return {**RECIPE, **(QUICK if quick else {})}


def _measure(ctx: Context, make: Callable[[dict[str, Any], int], tuple[Step, Any]]) -> None:
    cfg = config(ctx.quick)
    train, _, vocab = shakespeare_ids()
    step, _ = make(cfg, vocab)
    batch = batches(train, cfg, cfg["seed"])
    warmup, iters = (QUICK_WARMUP_ITERS, QUICK_ITERS) if ctx.quick else (WARMUP_ITERS, ITERS)
    times = []
    for it in range(warmup + iters):
        t0 = time.perf_counter()
        step(it, *batch())
        if it >= warmup:
            times.append((time.perf_counter() - t0) * 1e3)
    size = (
        f"{cfg['n_layer']} layers, {cfg['n_head']} heads, d {cfg['n_embd']}, "
        f"block {cfg['block_size']}, batch {cfg['batch_size']}"
    )
    ctx.record("GPT train step (AdamW)", size, "ms", times, note=f"{iters} iterations")


@implementation("gpt", "ferrograd")
def gpt_ferrograd(ctx: Context) -> None:
    _measure(ctx, ferrograd_step)


@implementation("gpt", "torch")
def gpt_torch(ctx: Context) -> None:
    _measure(ctx, torch_step)
