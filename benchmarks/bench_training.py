"""Training loops: steps/s against PyTorch (and a hand-written NumPy loop on digits).

* ``digits MLP``: 64-128-64-10 with ReLU, batch 64, Adam(lr=1e-3), cross-entropy, on
  ``fg.datasets.load_digits()`` split 80/20 with a fixed seed. Every implementation trains
  for the same epochs on the same batches in the same order (one epoch per timed sample,
  implementations alternating epoch by epoch; the first epoch is the warm-up), then reports
  its test accuracy, so speed never hides a wrong answer. The NumPy peer is the same network
  written out by hand (forward, backward, Adam): the floor on per-step overhead.
* ``large MLP``: 784-512-512-10 with ReLU, batch 128, SGD(lr=0.01, momentum=0.9) on random
  data (8 fixed batches, cycled), where the matmuls dominate.

A step is everything a training loop does per batch: NumPy batch to tensor, forward, loss,
``zero_grad``, ``backward``, ``step``. The garbage collector stays on, as in a real loop."""

from __future__ import annotations

import itertools

import numpy as np
from common import (
    Figure,
    Options,
    Report,
    cpu_count,
    figures_from_stats,
    measure,
    optional_peer,
    script_main,
    set_threads,
    warm_up,
)

import ferrograd as fg

DIGITS_SIZES = [64, 128, 64, 10]
DIGITS_BATCH = 64
DIGITS_EPOCHS, QUICK_DIGITS_EPOCHS = 30, 3
QUICK_DIGITS_TRAIN = 4 * DIGITS_BATCH
LARGE_SIZES, QUICK_LARGE_SIZES = [784, 512, 512, 10], [784, 32, 32, 10]
LARGE_BATCH, QUICK_LARGE_BATCH = 128, 16


# ----- the three implementations of an MLP training step ----------------------------------


class FerrogradMLP:
    def __init__(self, sizes: list[int], optimizer: str, **opt_args) -> None:
        layers: list = []
        for n_in, n_out in zip(sizes, sizes[1:]):
            layers += [fg.layers.Linear(n_in, n_out), fg.layers.ReLU()]
        self.model = fg.layers.Sequential(*layers[:-1])
        opt_cls = {"adam": fg.optim.Adam, "sgd": fg.optim.SGD}[optimizer]
        self.opt = opt_cls(self.model.parameters(), **opt_args)

    def step(self, xb: np.ndarray, yb: np.ndarray) -> None:
        loss = fg.loss.cross_entropy(self.model(fg.from_numpy(xb)), yb)
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def predict(self, X: np.ndarray) -> np.ndarray:
        with fg.no_grad():
            return np.asarray(self.model(fg.from_numpy(X)).argmax(axis=1)).astype(np.int64)


class TorchMLP:
    def __init__(self, torch, sizes: list[int], optimizer: str, **opt_args) -> None:
        self.torch = torch
        layers: list = []
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
            self.params += [rng.uniform(-bound, bound, (n_out, n_in)).astype(np.float32),
                            rng.uniform(-bound, bound, n_out).astype(np.float32)]
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
        grads: list[np.ndarray] = [None] * len(self.params)  # type: ignore[list-item]
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


# ----- workloads ---------------------------------------------------------------------------


def _epoch_runner(model, X: np.ndarray, y: np.ndarray, batch: int, seed: int):
    """A function that trains ``model`` for one epoch per call; every runner made with the
    same seed visits the same batches in the same order."""
    rng = np.random.default_rng(seed)
    n_steps = len(X) // batch  # drop the last partial batch: every step is a full batch

    def epoch() -> None:
        order = rng.permutation(len(X))
        for s in range(n_steps):
            idx = order[s * batch:(s + 1) * batch]
            model.step(X[idx], y[idx])

    return epoch, n_steps


def digits_models(torch) -> dict:
    fg.manual_seed(0)
    models = {"ferrograd": FerrogradMLP(DIGITS_SIZES, "adam", lr=1e-3),
              "numpy": NumpyMLP(DIGITS_SIZES, lr=1e-3)}
    if torch is not None:
        torch.manual_seed(0)
        models["torch"] = TorchMLP(torch, DIGITS_SIZES, "adam", lr=1e-3)
    return models


def digits(opts: Options, report: Report, torch) -> None:
    X, y = fg.datasets.load_digits()
    perm = np.random.default_rng(0).permutation(len(X))
    n_train = int(0.8 * len(X))
    Xtr, ytr = np.ascontiguousarray(X[perm[:n_train]]), y[perm[:n_train]]
    Xte, yte = np.ascontiguousarray(X[perm[n_train:]]), y[perm[n_train:]]
    if opts.quick:
        Xtr, ytr = Xtr[:QUICK_DIGITS_TRAIN], ytr[:QUICK_DIGITS_TRAIN]
    threads = (opts.threads or [cpu_count()])[0]
    set_threads(threads)
    # Warm each library up on a throwaway model, so that the measured models all train for
    # exactly the same epochs.
    for model in digits_models(torch).values():
        warm_up(_epoch_runner(model, Xtr, ytr, DIGITS_BATCH, seed=2)[0])
    models = digits_models(torch)
    runners = {}
    for name, model in models.items():
        runners[name], n_steps = _epoch_runner(model, Xtr, ytr, DIGITS_BATCH, seed=1)
    epochs = QUICK_DIGITS_EPOCHS if opts.quick else DIGITS_EPOCHS
    stats = measure(runners, repeats=epochs - 1, warmup=1, number=1, min_time=0,
                    keep_gc=True)
    size = f"64-128-64-10, batch {DIGITS_BATCH}, {epochs} epochs of {n_steps} steps"
    report.add(figures_from_stats("digits MLP train (Adam)", size, threads, stats, "steps/s",
                                  n_steps))
    report.add(
        Figure("digits MLP test accuracy", size, threads, name,
               100 * float(np.mean(m.predict(Xte) == yte)), "acc %")
        for name, m in models.items()
    )


def large_mlp(opts: Options, report: Report, torch) -> None:
    sizes = QUICK_LARGE_SIZES if opts.quick else LARGE_SIZES
    batch = QUICK_LARGE_BATCH if opts.quick else LARGE_BATCH
    rng = np.random.default_rng(0)
    batches = [(rng.standard_normal((batch, sizes[0]), dtype=np.float32),
                rng.integers(0, sizes[-1], batch)) for _ in range(8)]
    fg.manual_seed(0)
    models = {"ferrograd": FerrogradMLP(sizes, "sgd", lr=0.01, momentum=0.9)}
    if torch is not None:
        torch.manual_seed(0)
        models["torch"] = TorchMLP(torch, sizes, "sgd", lr=0.01, momentum=0.9)

    def stepper(model):
        cycle = itertools.cycle(batches)
        return lambda: model.step(*next(cycle))

    size = f"{'-'.join(map(str, sizes))}, batch {batch}"
    for t in opts.threads or [cpu_count()]:
        set_threads(t)
        fns = {name: stepper(m) for name, m in models.items()}
        stats = measure(fns, repeats=opts.repeats, min_time=opts.min_time, keep_gc=True)
        report.add(figures_from_stats("large MLP train (SGD momentum)", size, t, stats,
                                      "steps/s"))


def run(opts: Options, report: Report) -> None:
    torch = optional_peer("torch")
    digits(opts, report, torch)
    large_mlp(opts, report, torch)
    set_threads(None)


if __name__ == "__main__":
    script_main("training: steps/s", run)
