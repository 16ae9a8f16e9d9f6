"""A character-level GPT trained on Tiny Shakespeare: nanoGPT's CPU recipe in ferrograd.

The model is written the way nanoGPT's ``model.py`` is: token and position embeddings, pre-
LayerNorm blocks of causal self-attention and a GELU MLP, a final LayerNorm, and a head tied
to the token embedding. The defaults are nanoGPT's CPU recipe (its README):

    python train.py config/train_shakespeare_char.py --device=cpu --compile=False \\
        --eval_iters=20 --log_interval=1 --block_size=64 --batch_size=12 --n_layer=4 \\
        --n_head=4 --n_embd=128 --max_iters=2000 --lr_decay_iters=2000 --dropout=0.0

so ``python examples/train_shakespeare.py`` trains the same model on the same data, and its
log lines (``iter N: loss X, time Yms`` each iteration, ``step N: train loss A, val loss B``
at each evaluation) compare line by line with nanoGPT's. At the end it saves a safetensors
checkpoint (and a JSON of the vocabulary and sizes) under ``--out`` and prints a sample.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np

import ferrograd as fg
from ferrograd import layers

# ---------------------------------------------------------------------------- the model


class CausalSelfAttention(layers.Module):
    """Multi-head self-attention where position t sees positions <= t (one fused op)."""

    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        if n_embd % n_head != 0:
            raise ValueError(f"n_embd {n_embd} is not a multiple of n_head {n_head}")
        self.c_attn = layers.Linear(n_embd, 3 * n_embd)  # q, k, v of every head at once
        self.c_proj = layers.Linear(n_embd, n_embd)
        self.resid_dropout = layers.Dropout(dropout)
        self.n_head = n_head
        self.n_embd = n_embd
        self.dropout = dropout

    def forward(self, x: fg.Tensor) -> fg.Tensor:
        # q, k, v of every head from one projection, (B, T, 3 * C). nanoGPT splits it, moves
        # the heads in front of T (q, k, v each (B, n_head, T, head_size)), attends and moves
        # them back to (B, T, C); packed_attention is that chain as one op (the same numbers,
        # without a copy at each step: tensors here are never strided views).
        y = fg.functional.packed_attention(
            self.c_attn(x),
            self.n_head,
            dropout_p=self.dropout if self.training else 0.0,
            is_causal=True,
        )
        out: fg.Tensor = self.resid_dropout(self.c_proj(y))
        return out


class MLP(layers.Module):
    def __init__(self, n_embd: int, dropout: float) -> None:
        super().__init__()
        self.c_fc = layers.Linear(n_embd, 4 * n_embd)
        self.gelu = layers.GELU()
        self.c_proj = layers.Linear(4 * n_embd, n_embd)
        self.dropout = layers.Dropout(dropout)

    def forward(self, x: fg.Tensor) -> fg.Tensor:
        out: fg.Tensor = self.dropout(self.c_proj(self.gelu(self.c_fc(x))))
        return out


class Block(layers.Module):
    def __init__(self, n_embd: int, n_head: int, dropout: float) -> None:
        super().__init__()
        self.ln_1 = layers.LayerNorm(n_embd)
        self.attn = CausalSelfAttention(n_embd, n_head, dropout)
        self.ln_2 = layers.LayerNorm(n_embd)
        self.mlp = MLP(n_embd, dropout)

    def forward(self, x: fg.Tensor) -> fg.Tensor:
        x = x + self.attn(self.ln_1(x))
        out: fg.Tensor = x + self.mlp(self.ln_2(x))
        return out


class GPT(layers.Module):
    """nanoGPT's GPT: ``forward(idx)`` maps int64 token ids (B, T), T <= block_size, to
    logits (B, T, vocab_size); with ``last_only=True`` only the last position's (B, 1, V)."""

    def __init__(
        self,
        vocab_size: int,
        block_size: int,
        n_layer: int = 4,
        n_head: int = 4,
        n_embd: int = 128,
        dropout: float = 0.0,
    ) -> None:
        super().__init__()
        self.vocab_size = vocab_size
        self.block_size = block_size
        self.transformer = layers.ModuleDict(
            {
                "wte": layers.Embedding(vocab_size, n_embd),
                "wpe": layers.Embedding(block_size, n_embd),
                "drop": layers.Dropout(dropout),
                "h": layers.ModuleList([Block(n_embd, n_head, dropout) for _ in range(n_layer)]),
                "ln_f": layers.LayerNorm(n_embd),
            }
        )
        self.lm_head = layers.Linear(n_embd, vocab_size, bias=False)
        self._init_weights(n_layer)
        # Weight tying: one Tensor in two modules is one parameter (listed once).
        self.transformer.wte.weight = self.lm_head.weight
        self.positions = fg.arange(block_size)  # int64 ids 0..block_size-1

    def _init_weights(self, n_layer: int) -> None:
        # GPT-2's init, as nanoGPT: N(0, 0.02) weights, zero biases, and the projections into
        # the residual stream scaled down by sqrt(2 * n_layer).
        with fg.no_grad():
            for module in self.modules():
                if isinstance(module, (layers.Linear, layers.Embedding)):
                    module.weight.copy_(fg.randn(*module.weight.shape) * 0.02)
                if isinstance(module, layers.Linear) and module.bias is not None:
                    module.bias.zero_()
            for name, p in self.named_parameters():
                if name.endswith("c_proj.weight"):
                    p.copy_(fg.randn(*p.shape) * (0.02 / math.sqrt(2 * n_layer)))

    def num_params(self) -> int:
        """Parameters less the position embedding (nanoGPT's count; the tied head counts)."""
        return int(sum(p.size for p in self.parameters()) - self.transformer.wpe.weight.size)

    def forward(self, idx: fg.Tensor, last_only: bool = False) -> fg.Tensor:
        _, t = idx.shape
        if t > self.block_size:
            raise ValueError(
                f"GPT: cannot forward a sequence of length {t}, the block size is only "
                f"{self.block_size}"
            )
        x = self.transformer.wte(idx) + self.transformer.wpe(self.positions[:t])
        x = self.transformer.drop(x)
        for block in self.transformer.h:
            x = block(x)
        x = self.transformer.ln_f(x)
        if last_only:
            x = x[:, -1:, :]  # generation needs only the next token's logits
        logits: fg.Tensor = self.lm_head(x)
        return logits

    def loss(self, idx: fg.Tensor, targets: fg.Tensor) -> fg.Tensor:
        logits = self(idx)
        return fg.loss.cross_entropy(logits.reshape(-1, self.vocab_size), targets.reshape(-1))

    def configure_optimizer(
        self, weight_decay: float, lr: float, betas: tuple[float, float]
    ) -> fg.optim.AdamW:
        """AdamW that decays the matrices (every parameter of >= 2 axes) and not the biases
        and LayerNorm gains, as nanoGPT's configure_optimizers."""
        params = self.parameters()
        groups = [
            {"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
            {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0},
        ]
        return fg.optim.AdamW(groups, lr=lr, betas=betas)

    def generate(
        self,
        idx: fg.Tensor,
        max_new_tokens: int,
        temperature: float = 1.0,
        top_k: int | None = None,
    ) -> fg.Tensor:
        """Extends ``idx`` (B, T) by ``max_new_tokens`` tokens, each drawn from the softmax of
        the last logits / temperature, kept to the top_k most likely when given. Draws come
        from the generator ``fg.manual_seed`` sets, so a sample is reproducible."""
        if temperature <= 0:
            raise ValueError(f"generate: temperature must be positive, got {temperature}")
        was_training = self.training
        self.eval()
        with fg.no_grad():
            for _ in range(max_new_tokens):
                cond = idx[:, -self.block_size :]  # crop the context to the block size
                logits = self(cond, last_only=True)[:, -1, :] / temperature
                if top_k is not None:
                    # Keep the k largest logits per row; the rest get probability 0.
                    kth = logits.topk(min(top_k, self.vocab_size), axis=-1)[0][:, -1:]
                    logits = logits.masked_fill(logits < kth, float("-inf"))
                probs = logits.softmax(axis=-1)
                idx = fg.cat([idx, fg.multinomial(probs, 1)], axis=1)
        self.train(was_training)
        return idx


# ---------------------------------------------------------------------------- the data


class CharData:
    """Tiny Shakespeare as int64 ids (characters sorted to ids), split 90/10 in order."""

    def __init__(self, text: str) -> None:
        self.chars = sorted(set(text))
        self.stoi = {c: i for i, c in enumerate(self.chars)}
        ids = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32)
        lut = np.zeros(max(map(ord, self.chars)) + 1, dtype=np.int64)
        lut[[ord(c) for c in self.chars]] = np.arange(len(self.chars))
        data = lut[ids]
        n = int(0.9 * len(data))
        self.train, self.val = data[:n], data[n:]

    @property
    def vocab_size(self) -> int:
        return len(self.chars)

    def encode(self, s: str) -> list[int]:
        return [self.stoi[c] for c in s]

    def decode(self, ids: list[int]) -> str:
        return "".join(self.chars[i] for i in ids)

    def batch(self, split: str, batch_size: int, block_size: int) -> tuple[fg.Tensor, fg.Tensor]:
        """Inputs and next-token targets (batch_size, block_size) at random offsets."""
        data = self.train if split == "train" else self.val
        high = len(data) - block_size
        # Offsets from the generator fg.manual_seed sets; one fancy index slices every row.
        ix = fg.randint(0, high, (batch_size,)).numpy()
        rows = ix[:, None] + np.arange(block_size)
        return fg.tensor(data[rows]), fg.tensor(data[rows + 1])


# ---------------------------------------------------------------------------- training


def lr_at(it: int, args: argparse.Namespace) -> float:
    """nanoGPT's schedule: linear warmup, then cosine down to min_lr at lr_decay_iters."""
    if it < args.warmup_iters:
        return float(args.lr * (it + 1) / (args.warmup_iters + 1))
    if it > args.lr_decay_iters:
        return float(args.min_lr)
    ratio = (it - args.warmup_iters) / max(1, args.lr_decay_iters - args.warmup_iters)
    return float(args.min_lr + 0.5 * (1.0 + math.cos(math.pi * ratio)) * (args.lr - args.min_lr))


def estimate_loss(model: GPT, data: CharData, args: argparse.Namespace) -> dict[str, float]:
    model.eval()
    out = {}
    with fg.no_grad():
        for split in ("train", "val"):
            losses = [
                model.loss(*data.batch(split, args.batch_size, args.block_size)).item()
                for _ in range(args.eval_iters)
            ]
            out[split] = float(np.mean(losses))
    model.train()
    return out


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--max-iters", type=int, default=2000)
    p.add_argument("--eval-interval", type=int, default=250)
    p.add_argument("--eval-iters", type=int, default=20)
    p.add_argument("--batch-size", type=int, default=12)
    p.add_argument("--block-size", type=int, default=64)
    p.add_argument("--n-layer", type=int, default=4)
    p.add_argument("--n-head", type=int, default=4)
    p.add_argument("--n-embd", type=int, default=128)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=1e-3)
    p.add_argument("--min-lr", type=float, default=1e-4)
    p.add_argument("--warmup-iters", type=int, default=100)
    p.add_argument("--lr-decay-iters", type=int, default=None, help="default: --max-iters")
    p.add_argument("--weight-decay", type=float, default=0.1)
    p.add_argument("--grad-clip", type=float, default=1.0)
    p.add_argument("--seed", type=int, default=1337)
    p.add_argument("--threads", type=int, default=None, help="default: ferrograd's own")
    p.add_argument("--out", type=Path, default=Path("runs/shakespeare"))
    p.add_argument("--sample-chars", type=int, default=500)
    p.add_argument("--temperature", type=float, default=0.8)
    p.add_argument("--top-k", type=int, default=200)
    args = p.parse_args(argv)
    if args.lr_decay_iters is None:
        args.lr_decay_iters = args.max_iters
    for name in ("max_iters", "eval_interval", "eval_iters", "batch_size", "block_size"):
        if getattr(args, name) <= 0:
            p.error(f"--{name.replace('_', '-')} must be positive")
    return args


def main(argv: list[str] | None = None) -> dict[str, float]:
    args = parse_args(argv)
    if args.threads is not None:
        fg.set_num_threads(args.threads)
    fg.manual_seed(args.seed)
    data = CharData(fg.datasets.load_tiny_shakespeare())
    print(
        f"vocab size {data.vocab_size}, train {len(data.train):,} and val {len(data.val):,} tokens"
    )
    print(f"tokens per iteration will be: {args.batch_size * args.block_size:,}")

    model = GPT(
        data.vocab_size, args.block_size, args.n_layer, args.n_head, args.n_embd, args.dropout
    )
    print(f"number of parameters: {model.num_params() / 1e6:.2f}M")
    opt = model.configure_optimizer(args.weight_decay, args.lr, (0.9, 0.99))

    losses = {}
    for it in range(args.max_iters + 1):
        if it % args.eval_interval == 0 or it == args.max_iters:
            losses = estimate_loss(model, data, args)
            print(f"step {it}: train loss {losses['train']:.4f}, val loss {losses['val']:.4f}")
        if it == args.max_iters:
            break
        t0 = time.perf_counter()
        lr = lr_at(it, args)
        for group in opt.param_groups:
            group["lr"] = lr
        x, y = data.batch("train", args.batch_size, args.block_size)
        loss = model.loss(x, y)
        loss.backward()
        if args.grad_clip > 0:
            layers.utils.clip_grad_norm_(model.parameters(), args.grad_clip)
        opt.step()
        opt.zero_grad()
        lossf = loss.item()
        dt = time.perf_counter() - t0
        print(f"iter {it}: loss {lossf:.4f}, time {dt * 1000:.2f}ms")

    args.out.mkdir(parents=True, exist_ok=True)
    fg.save(model.state_dict(), args.out / "ckpt.safetensors")
    meta = {
        "chars": data.chars,
        "model_args": {
            "vocab_size": data.vocab_size,
            "block_size": args.block_size,
            "n_layer": args.n_layer,
            "n_head": args.n_head,
            "n_embd": args.n_embd,
        },
        "iter_num": args.max_iters,
        "val_loss": losses["val"],
    }
    (args.out / "meta.json").write_text(json.dumps(meta, indent=1))
    print(f"saved checkpoint to {args.out}")

    start = fg.tensor([data.encode("\n")])
    sample = model.generate(start, args.sample_chars, args.temperature, args.top_k)
    print(data.decode(sample.numpy()[0, 1:].tolist()))
    return losses


if __name__ == "__main__":
    main()
