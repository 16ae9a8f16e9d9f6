"""MLP training loops: steps/s against PyTorch (and a hand-written NumPy trainer on digits).

* ``digits_mlp``: 64-128-64-10 with ReLU, batch 64, Adam(lr=1e-3), cross-entropy, on the
  bundled digits split 80/20 with a fixed seed, one thread. Each library warms up on a
  throwaway model, then trains a fresh one for 30 epochs on the same batches in the same
  order (the first epoch untimed; each later epoch is one sample) and reports its test
  accuracy, so speed never hides a wrong answer. The NumPy peer is the same network written
  out by hand (forward, backward, Adam): the floor on per-step overhead.
* ``large_mlp``: 784-512-512-10 with ReLU, batch 128, SGD(lr=0.01, momentum=0.9) on random
  data (8 fixed batches, cycled), two threads, where the matmuls dominate.

A step is everything a training loop does per batch: NumPy batch to tensor, forward, loss,
``zero_grad``, ``backward``, ``step``. The garbage collector stays on, as in a real loop.
Both workloads also report the worker's peak RSS.
"""

from __future__ import annotations

import itertools
from typing import Any, Callable

import numpy as np
import timing

from workloads import Context, declare, implementation
from workloads.data import batch_orders, digits_split

DIGITS_SIZES = [64, 128, 64, 10]
DIGITS_BATCH = 64
DIGITS_EPOCHS, QUICK_DIGITS_EPOCHS = 30, 3
QUICK_DIGITS_TRAIN = 4 * DIGITS_BATCH
LARGE_SIZES, QUICK_LARGE_SIZES = [784, 512, 512, 10], [784, 32, 32, 10]
LARGE_BATCH, QUICK_LARGE_BATCH = 128, 16
# Training samples are longer than kernel ones: a step of the large MLP takes milliseconds.
TRAIN_MIN_TIME = 0.25
# PyTorch's first few hundred small training steps run many times slower than the rest:
# every training workload warms up at least this long (besides its untimed first epoch).
TRAIN_WARMUP_TIME = 1.0

declare("digits_mlp", "digits MLP training (Adam, 1 thread)", threads=(1,), training=True)
declare("large_mlp", "large MLP training (SGD momentum, 2 threads)", threads=(2,), training=True)


# ----- the three implementations of an MLP training step ------------------------------------


class FerrogradMLP:
    def __init__(self, fg: Any, sizes: list[int], optimizer: str, **opt_args: Any) -> None:
        self.fg = fg
        layers: list[Any] = []
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [fg.layers.Linear(n_in, n_out), fg.layers.ReLU()]
        self.model = fg.layers.Sequential(*layers[:-1])
        opt_cls = {"adam": fg.optim.Adam, "sgd": fg.optim.SGD}[optimizer]
        self.opt = opt_cls(self.model.parameters(), **opt_args)

    def step(self, xb: np.ndarray, yb: np.ndarray) -> None:
        loss = self.fg.loss.cross_entropy(self.model(self.fg.from_numpy(xb)), yb)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def predict(self, X: np.ndarray) -> np.ndarray:
        with self.fg.no_grad():
            return self.model(self.fg.from_numpy(X)).numpy().argmax(axis=1)


class TorchMLP:
    def __init__(self, torch: Any, sizes: list[int], optimizer: str, **opt_args: Any) -> None:
        self.torch = torch
        layers: list[Any] = []
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [torch.nn.Linear(n_in, n_out), torch.nn.ReLU()]
        self.model = torch.nn.Sequential(*layers[:-1])
        opt_cls = {"adam": torch.optim.Adam, "sgd": torch.optim.SGD}[optimizer]
        self.opt = opt_cls(self.model.parameters(), **opt_args)

    def step(self, xb: np.ndarray, yb: np.ndarray) -> None:
        torch = self.torch
        logits = self.model(torch.from_numpy(xb))
        loss = torch.nn.functional.cross_entropy(logits, torch.from_numpy(yb))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def predict(self, X: np.ndarray) -> np.ndarray:
        with self.torch.no_grad():
            return self.model(self.torch.from_numpy(X)).argmax(dim=1).numpy()


class NumpyMLP:
    """The same MLP by hand: ReLU layers, softmax cross-entropy, Adam with PyTorch's defaults
    and initialisation (U(±1/sqrt(fan_in)) for weights and biases)."""

    def __init__(self, sizes: list[int], lr: float, seed: int = 0) -> None:
        rng = np.random.default_rng(seed)
        self.params = []
        for n_in, n_out in zip(sizes, sizes[1:]):
            bound = 1 / np.sqrt(n_in)
            self.params += [
                rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32),
                rng.uniform(-bound, bound, n_out).astype(np.float32),
            ]
        self.m = [np.zeros_like(p) for p in self.params]
        self.v = [np.zeros_like(p) for p in self.params]
        self.lr, self.t = lr, 0

    def _forward(self, x: np.ndarray) -> list[np.ndarray]:
        acts = [x]
        n_layers = len(self.params) // 2
        for i in range(n_layers):
            z = acts[-1] @ self.params[2 * i].T + self.params[2 * i + 1]
            acts.append(np.maximum(z, 0) if i < n_layers - 1 else z)
        return acts

    def step(self, xb: np.ndarray, yb: np.ndarray) -> None:
        acts = self._forward(xb)
        logits = acts[-1]
        p = np.exp(logits - logits.max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(yb)), yb] -= 1
        g = p / len(yb)
        grads: list[np.ndarray] = [np.empty(0)] * len(self.params)
        for i in reversed(range(len(self.params) // 2)):
            grads[2 * i] = g.T @ acts[i]
            grads[2 * i + 1] = g.sum(axis=0)
            if i > 0:
                g = (g @ self.params[2 * i]) * (acts[i] > 0)
        self.t += 1
        b1, b2, eps = 0.9, 0.999, 1e-8
        c1, c2 = 1 - b1**self.t, 1 - b2**self.t
        for p_, g_, m, v in zip(self.params, grads, self.m, self.v):
            m *= b1
            m += (1 - b1) * g_
            v *= b2
            v += (1 - b2) * g_ * g_
            p_ -= (self.lr / c1) * m / (np.sqrt(v / c2) + eps)

    def predict(self, X: np.ndarray) -> np.ndarray:
        return self._forward(X)[-1].argmax(axis=1)


# ----- the digits MLP -----------------------------------------------------------------------


def train_warmup_time(ctx: Context) -> float:
    return ctx.warmup_time if ctx.quick else max(ctx.warmup_time, TRAIN_WARMUP_TIME)


def train_epochs(
    ctx: Context,
    label: str,
    size: str,
    make_model: Callable[[], Any],
    X: np.ndarray,
    y: np.ndarray,
    batch: int,
    epochs: int,
) -> Any:
    """Warms up on a throwaway model, then trains a fresh one for ``epochs`` epochs (the
    first untimed, each later one a sample of steps/s); returns the trained model.

    Every library sees the same batches in the same order (seeded index orders)."""
    warm_model = make_model()
    warm_orders = itertools.cycle(batch_orders(len(X), batch, 1, seed=2)[0])
    timing.warm_up(
        lambda: warm_model.step(*_batch(X, y, next(warm_orders))), train_warmup_time(ctx)
    )
    model = make_model()
    orders = iter(batch_orders(len(X), batch, epochs, seed=1))
    n_steps = len(X) // batch

    def epoch() -> None:
        for idx in next(orders):
            model.step(*_batch(X, y, idx))

    epoch()  # the first epoch: untimed
    ctx.time(
        label, size, "steps/s", epoch, work=n_steps, number=1, repeats=epochs - 1, keep_gc=True
    )
    return model


def _batch(X: np.ndarray, y: np.ndarray, idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    return X[idx], y[idx]


def _digits(ctx: Context, make_model: Callable[[], Any]) -> None:
    Xtr, ytr, Xte, yte = digits_split()
    if ctx.quick:
        Xtr, ytr = Xtr[:QUICK_DIGITS_TRAIN], ytr[:QUICK_DIGITS_TRAIN]
    epochs = QUICK_DIGITS_EPOCHS if ctx.quick else DIGITS_EPOCHS
    size = f"64-128-64-10, batch {DIGITS_BATCH}, {epochs} epochs of {len(Xtr) // DIGITS_BATCH}"
    model = train_epochs(
        ctx, "digits MLP train (Adam)", size, make_model, Xtr, ytr, DIGITS_BATCH, epochs
    )
    ctx.record(
        "digits MLP test accuracy", size, "acc %", [100 * float(np.mean(model.predict(Xte) == yte))]
    )


@implementation("digits_mlp", "ferrograd")
def digits_mlp_ferrograd(ctx: Context) -> None:
    import ferrograd as fg

    fg.manual_seed(0)
    _digits(ctx, lambda: FerrogradMLP(fg, DIGITS_SIZES, "adam", lr=1e-3))


@implementation("digits_mlp", "torch")
def digits_mlp_torch(ctx: Context) -> None:
    import torch

    torch.manual_seed(0)
    _digits(ctx, lambda: TorchMLP(torch, DIGITS_SIZES, "adam", lr=1e-3))


@implementation("digits_mlp", "numpy")
def digits_mlp_numpy(ctx: Context) -> None:
    seeds = itertools.count()
    _digits(ctx, lambda: NumpyMLP(DIGITS_SIZES, lr=1e-3, seed=next(seeds)))


# ----- the large MLP ------------------------------------------------------------------------


def _large(ctx: Context, model: Any) -> None:
    sizes = QUICK_LARGE_SIZES if ctx.quick else LARGE_SIZES
    batch = QUICK_LARGE_BATCH if ctx.quick else LARGE_BATCH
    rng = np.random.default_rng(0)
    batches = itertools.cycle(
        [
            (
                rng.standard_normal((batch, sizes[0]), dtype=np.float32),
                rng.integers(0, sizes[-1], batch),
            )
            for _ in range(8)
        ]
    )
    ctx.time(
        "large MLP train (SGD momentum)",
        f"{'-'.join(map(str, sizes))}, batch {batch}",
        "steps/s",
        lambda: model.step(*next(batches)),
        keep_gc=True,
        min_time=ctx.min_time if ctx.quick else max(ctx.min_time, TRAIN_MIN_TIME),
        warmup_time=train_warmup_time(ctx),
    )


@implementation("large_mlp", "ferrograd")
def large_mlp_ferrograd(ctx: Context) -> None:
    import ferrograd as fg

    fg.manual_seed(0)
    sizes = QUICK_LARGE_SIZES if ctx.quick else LARGE_SIZES
    _large(ctx, FerrogradMLP(fg, sizes, "sgd", lr=0.01, momentum=0.9))


@implementation("large_mlp", "torch")
def large_mlp_torch(ctx: Context) -> None:
    import torch

    torch.manual_seed(0)
    sizes = QUICK_LARGE_SIZES if ctx.quick else LARGE_SIZES
    _large(ctx, TorchMLP(torch, sizes, "sgd", lr=0.01, momentum=0.9))
