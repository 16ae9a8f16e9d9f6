"""The digits CNN of the demo: ``examples/train_digits.py``'s ``SmallCNN`` against the same
model in PyTorch, at 1 and 2 threads.

SmallCNN: Conv2d(1, 32, 3, padding=1), ReLU, Conv2d(32, 64, 3, padding=1), ReLU,
MaxPool2d(2), Flatten, Linear(1024, 128), ReLU, Dropout(0.25), Linear(128, 10) on (N, 1, 8, 8)
digits; batch 32, AdamW(lr=1e-3, weight_decay=1e-4) as in the demo; inputs standardised with
the training set's mean and standard deviation over all pixels (the demo's CNN scaling).

ferrograd trains the demo's own class (imported from the example file, so the benchmark
cannot drift from it); the PyTorch model has the same layers, parameter names and shapes
(``tests/test_benchmarks_smoke.py`` checks). As for the MLPs, each library warms up on a
throwaway model, then trains a fresh one on the same batches in the same order (the first
epoch untimed, each later epoch one sample), reports test accuracy and peak RSS. A step:
NumPy batch to tensor, forward, cross-entropy, ``zero_grad``, ``backward``, ``step``.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any

import numpy as np

from workloads import Context, declare, implementation
from workloads.data import digits_split
from workloads.training import train_epochs

CNN_BATCH = 32
CNN_EPOCHS, QUICK_CNN_EPOCHS = 8, 2
QUICK_CNN_TRAIN = 4 * CNN_BATCH
EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "train_digits.py"

declare(
    "digits_cnn", "digits CNN training (the demo's SmallCNN, AdamW)", threads=(1, 2), training=True
)


def demo_small_cnn() -> Any:
    """``SmallCNN`` from ``examples/train_digits.py`` (imports ferrograd)."""
    spec = importlib.util.spec_from_file_location("train_digits_example", EXAMPLE)
    if spec is None or spec.loader is None:
        raise RuntimeError(f"cannot load the demo's SmallCNN from {EXAMPLE}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.SmallCNN


def torch_small_cnn(torch: Any) -> Any:
    """The demo's SmallCNN written in PyTorch: same layers, names and shapes."""
    nn = torch.nn

    class SmallCNN(nn.Module):  # type: ignore[misc, name-defined]
        def __init__(self) -> None:
            super().__init__()
            self.features = nn.Sequential(
                nn.Conv2d(1, 32, 3, padding=1),
                nn.ReLU(),
                nn.Conv2d(32, 64, 3, padding=1),
                nn.ReLU(),
                nn.MaxPool2d(2),
            )
            self.head = nn.Sequential(
                nn.Flatten(),
                nn.Linear(64 * 4 * 4, 128),
                nn.ReLU(),
                nn.Dropout(0.25),
                nn.Linear(128, 10),
            )

        def forward(self, x: Any) -> Any:
            return self.head(self.features(x.reshape(-1, 1, 8, 8)))

    return SmallCNN


class Trainer:
    """One library's model, optimiser and step; ``lib`` is ferrograd or torch.

    ``to_target`` turns the int64 label batch into what the library's cross-entropy takes
    (ferrograd takes the NumPy array itself)."""

    def __init__(
        self,
        lib: Any,
        model: Any,
        optimizer: Any,
        to_tensor: Any,
        to_target: Any,
        cross_entropy: Any,
    ) -> None:
        self.lib, self.model, self.opt = lib, model, optimizer
        self.to_tensor, self.to_target = to_tensor, to_target
        self.cross_entropy = cross_entropy
        self.model.train()

    def step(self, xb: np.ndarray, yb: np.ndarray) -> None:
        loss = self.cross_entropy(self.model(self.to_tensor(xb)), self.to_target(yb))
        self.opt.zero_grad()
        loss.backward()
        self.opt.step()

    def predict(self, X: np.ndarray) -> np.ndarray:
        self.model.eval()
        with self.lib.no_grad():
            logits = self.model(self.to_tensor(X))
        self.model.train()
        return np.asarray(logits.numpy()).argmax(axis=1)


def _cnn(ctx: Context, make_trainer: Any) -> None:
    Xtr, ytr, Xte, yte = digits_split()
    mean, std = Xtr.mean(), Xtr.std()
    Xtr, Xte = (Xtr - mean) / std, (Xte - mean) / std
    if ctx.quick:
        Xtr, ytr = Xtr[:QUICK_CNN_TRAIN], ytr[:QUICK_CNN_TRAIN]
    epochs = QUICK_CNN_EPOCHS if ctx.quick else CNN_EPOCHS
    size = f"SmallCNN, batch {CNN_BATCH}, {epochs} epochs of {len(Xtr) // CNN_BATCH}"
    trainer = train_epochs(
        ctx, "digits CNN train (AdamW)", size, make_trainer, Xtr, ytr, CNN_BATCH, epochs
    )
    ctx.record(
        "digits CNN test accuracy",
        size,
        "acc %",
        [100 * float(np.mean(trainer.predict(Xte) == yte))],
    )


@implementation("digits_cnn", "ferrograd")
def digits_cnn_ferrograd(ctx: Context) -> None:
    import ferrograd as fg

    small_cnn = demo_small_cnn()

    def make() -> Trainer:
        # Seeded per model: the warm-up's dropout draws (as many as fit in its time) must
        # not change the timed model or its test accuracy.
        fg.manual_seed(0)
        model = small_cnn()
        opt = fg.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        return Trainer(fg, model, opt, fg.from_numpy, lambda y: y, fg.loss.cross_entropy)

    _cnn(ctx, make)


@implementation("digits_cnn", "torch")
def digits_cnn_torch(ctx: Context) -> None:
    import torch

    small_cnn = torch_small_cnn(torch)

    def make() -> Trainer:
        torch.manual_seed(0)  # per model, as for ferrograd
        model = small_cnn()
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
        return Trainer(
            torch, model, opt, torch.from_numpy, torch.from_numpy, torch.nn.functional.cross_entropy
        )

    _cnn(ctx, make)
