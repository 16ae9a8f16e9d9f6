"""Train an MLP and a small CNN on the bundled UCI digits (8×8 images, 10 classes).

Prints per-epoch loss and test accuracy, saves a checkpoint of each model, reloads it and
checks the reloaded model scores the same, and — when matplotlib is installed — writes
``digits_curves.png`` (loss/accuracy per epoch) and ``digits_predictions.png`` (a grid of test
digits with their predicted labels). Everything it writes goes under ``--out`` (default
``runs/``, which git ignores). A progress bar uses tqdm when installed.

Run: python examples/train_digits.py [--epochs-mlp N] [--epochs-cnn N] [--out DIR]
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Callable

import numpy as np

import ferrograd as fg
from ferrograd import layers as nn

try:
    from tqdm import tqdm
except ImportError:  # a plain fallback: one line per epoch, updated in place
    tqdm = None


def progress(batches: Iterable[Any], total: int, label: str) -> Iterable[Any]:
    if tqdm is not None:
        bar: Iterable[Any] = tqdm(batches, total=total, desc=label, leave=False, file=sys.stdout)
        return bar
    if not sys.stdout.isatty():  # in a log file the per-epoch lines say enough
        return batches

    def plain() -> Iterable[Any]:
        for i, batch in enumerate(batches, 1):
            if i % max(total // 10, 1) == 0 or i == total:
                print(f"\r{label} [{'#' * (10 * i // total):<10}] {i}/{total}", end="", flush=True)
            yield batch
        print("\r" + " " * 60 + "\r", end="")

    return plain()


# ((x_train, y_train), (x_test, y_test))
Split = tuple[tuple[np.ndarray, np.ndarray], tuple[np.ndarray, np.ndarray]]


def split(seed: int = 0, test_fraction: float = 0.2) -> Split:
    """A fixed, stratified train/test split of the 1,797 digits."""
    x, y = fg.datasets.load_digits()
    rng = np.random.default_rng(seed)
    test_idx: list[int] = []
    for c in range(10):
        members = rng.permutation(np.flatnonzero(y == c))
        test_idx.extend(members[: round(len(members) * test_fraction)])
    test_mask = np.zeros(len(y), dtype=bool)
    test_mask[test_idx] = True
    return (x[~test_mask], y[~test_mask]), (x[test_mask], y[test_mask])


def standardize(data: Split, per_pixel: bool) -> Split:
    """Scales inputs to zero mean and unit variance using training statistics only: per
    pixel for the MLP (a feature vector), over all pixels for the CNN (an image)."""
    (x_train, y_train), (x_test, y_test) = data
    if per_pixel:
        mean, std = x_train.mean(axis=0), x_train.std(axis=0) + 0.1  # +0.1: blank corners
    else:
        mean, std = x_train.mean(), x_train.std()
    return ((x_train - mean) / std, y_train), ((x_test - mean) / std, y_test)


def mlp() -> nn.Module:
    return nn.Sequential(
        nn.Linear(64, 256),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(256, 128),
        nn.ReLU(),
        nn.Dropout(0.2),
        nn.Linear(128, 10),
    )


class SmallCNN(nn.Module):
    """Two 3×3 convolutions, a 2×2 max-pool and two linear layers: (N, 1, 8, 8) → (N, 10)."""

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

    def forward(self, x: fg.Tensor) -> fg.Tensor:
        out: fg.Tensor = self.head(self.features(x.reshape(-1, 1, 8, 8)))
        return out


def predict(model: nn.Module, x: np.ndarray) -> np.ndarray:
    model.eval()
    with fg.no_grad():
        logits: fg.Tensor = model(fg.Tensor(x))
    labels: np.ndarray = logits.numpy().argmax(axis=1)
    return labels


def accuracy(model: nn.Module, x: np.ndarray, y: np.ndarray) -> float:
    return float((predict(model, x) == y).mean())


def train(
    name: str, model: nn.Module, data: Split, epochs: int, lr: float
) -> dict[str, list[float]]:
    (x_train, y_train), (x_test, y_test) = data
    loader = fg.data.DataLoader(x_train, y_train, batch_size=32, shuffle=True, seed=1)
    opt = fg.optim.AdamW(model.parameters(), lr=lr, weight_decay=1e-4)
    sched = fg.optim.CosineAnnealingLR(opt, T_max=epochs)
    history: dict[str, list[float]] = {"loss": [], "accuracy": []}
    start = time.perf_counter()
    for epoch in range(1, epochs + 1):
        model.train()
        total, count = 0.0, 0
        for xb, yb in progress(loader, len(loader), f"{name} epoch {epoch}"):
            loss = fg.loss.cross_entropy(model(xb), yb)
            opt.zero_grad()
            loss.backward()
            opt.step()
            total += loss.item() * len(xb)
            count += len(xb)
        sched.step()
        acc = accuracy(model, x_test, y_test)
        history["loss"].append(total / count)
        history["accuracy"].append(acc)
        print(f"{name} epoch {epoch:2d}  loss {total / count:.4f}  test accuracy {acc:.2%}")
    print(
        f"{name}: {accuracy(model, x_test, y_test):.2%} test accuracy "
        f"in {time.perf_counter() - start:.1f} s"
    )
    return history


def checkpoint_round_trip(
    name: str, model: nn.Module, make: Callable[[], nn.Module], data: Split, out: Path
) -> float:
    """Saves the weights, loads them into a fresh model and checks it scores the same."""
    (_, _), (x_test, y_test) = data
    path = out / f"digits_{name.lower()}.safetensors"
    fg.save(model.state_dict(), path)
    fresh = make()
    fresh.load_state_dict(fg.load(path))
    before, after = accuracy(model, x_test, y_test), accuracy(fresh, x_test, y_test)
    same = np.array_equal(predict(model, x_test), predict(fresh, x_test))
    print(
        f"{name}: saved {path.name}, reloaded: {after:.2%} test accuracy "
        f"({'identical predictions' if same else 'PREDICTIONS DIFFER'})"
    )
    if not same or before != after:
        raise SystemExit(f"{name}: the reloaded checkpoint does not reproduce the model")
    return after


def plot(
    histories: dict[str, dict[str, list[float]]],
    model: nn.Module,
    data: Split,
    raw_test_images: np.ndarray,
    out: Path,
) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print(
            "(matplotlib is not installed: skipping the PNG figures; "
            "pip install 'ferrograd[examples]' to get them)"
        )
        return
    fig, (ax_loss, ax_acc) = plt.subplots(1, 2, figsize=(10, 4))
    for name, h in histories.items():
        epochs = range(1, len(h["loss"]) + 1)
        ax_loss.plot(epochs, h["loss"], label=name)
        ax_acc.plot(epochs, [100 * a for a in h["accuracy"]], label=name)
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log", title="Loss")
    ax_acc.set(xlabel="epoch", ylabel="test accuracy (%)", title="Test accuracy")
    for ax in (ax_loss, ax_acc):
        ax.legend()
        ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(out / "digits_curves.png", dpi=100)
    plt.close(fig)

    (_, _), (x_test, y_test) = data
    pred = predict(model, x_test[:32])
    fig, axes = plt.subplots(4, 8, figsize=(10, 5.5))
    for ax, image, p, t in zip(axes.ravel(), raw_test_images[:32], pred, y_test[:32]):
        ax.imshow(image.reshape(8, 8), cmap="gray_r")
        ax.set_title(f"{p}" if p == t else f"{p} (true {t})", color="black" if p == t else "red")
        ax.axis("off")
    fig.suptitle("CNN predictions on test digits")
    fig.tight_layout()
    fig.savefig(out / "digits_predictions.png", dpi=100)
    plt.close(fig)
    print(f"wrote {out / 'digits_curves.png'} and {out / 'digits_predictions.png'}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs-mlp", type=int, default=60)
    parser.add_argument("--epochs-cnn", type=int, default=30)
    parser.add_argument(
        "--out", type=Path, default=Path("runs"), help="folder for checkpoints and figures"
    )
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)

    start = time.perf_counter()
    fg.manual_seed(0)
    data = split()
    print(f"digits: {len(data[0][1])} training and {len(data[1][1])} test images")
    mlp_data, cnn_data = standardize(data, per_pixel=True), standardize(data, per_pixel=False)
    histories = {
        "MLP": train("MLP", mlp_model := mlp(), mlp_data, args.epochs_mlp, lr=1e-3),
        "CNN": train("CNN", cnn_model := SmallCNN(), cnn_data, args.epochs_cnn, lr=1e-3),
    }
    mlp_acc = checkpoint_round_trip("MLP", mlp_model, mlp, mlp_data, args.out)
    cnn_acc = checkpoint_round_trip("CNN", cnn_model, SmallCNN, cnn_data, args.out)
    plot(histories, cnn_model, cnn_data, data[1][0], args.out)
    print(f"done in {time.perf_counter() - start:.1f} s: MLP {mlp_acc:.2%}, CNN {cnn_acc:.2%}")


if __name__ == "__main__":
    main()
