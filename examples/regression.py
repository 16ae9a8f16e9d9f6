"""Fit a noisy curve with a small MLP and the mean squared error.

The target is y = sin(2x) + 0.3·x plus Gaussian noise on [-3, 3]. A 1-64-64-1 tanh network
trained with Adam on MSE recovers the curve; the script prints the loss going down and the
error against the noise-free curve, and with matplotlib writes ``regression.png``.

Run: python examples/regression.py [--steps N] [--out DIR]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

import ferrograd as fg
from ferrograd import layers as nn


def curve(x: np.ndarray) -> np.ndarray:
    y: np.ndarray = np.sin(2 * x) + 0.3 * x
    return y


def main() -> None:
    parser = argparse.ArgumentParser(description="fit a noisy curve with MSE")
    parser.add_argument("--steps", type=int, default=1500)
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()

    fg.manual_seed(0)
    rng = np.random.default_rng(0)
    x = np.sort(rng.uniform(-3, 3, size=(256, 1)).astype(np.float32), axis=0)
    y = (curve(x) + rng.normal(scale=0.1, size=x.shape)).astype(np.float32)
    xs, ys = fg.Tensor(x), fg.Tensor(y)

    model = nn.Sequential(
        nn.Linear(1, 64), nn.Tanh(), nn.Linear(64, 64), nn.Tanh(), nn.Linear(64, 1)
    )
    opt = fg.optim.Adam(model.parameters(), lr=1e-2)
    sched = fg.optim.StepLR(opt, step_size=500, gamma=0.3)
    for step in range(args.steps):
        loss = fg.loss.mse(model(xs), ys)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        if step % (args.steps // 6) == 0 or step == args.steps - 1:
            print(f"step {step:5d}  mse {loss.item():.5f}")

    grid = np.linspace(-3, 3, 200, dtype=np.float32)[:, None]
    with fg.no_grad():
        fit = model(fg.Tensor(grid)).numpy()
    rmse = float(np.sqrt(np.mean((fit - curve(grid)) ** 2)))
    print(f"RMS error against the noise-free curve: {rmse:.4f} (noise level 0.1)")

    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    fig, ax = plt.subplots(figsize=(7, 4))
    ax.scatter(x, y, s=8, alpha=0.5, label="noisy samples")
    ax.plot(grid, curve(grid), "k--", label="true curve")
    ax.plot(grid, fit, "r", label="ferrograd MLP")
    ax.legend()
    args.out.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out / "regression.png", dpi=100)
    print(f"wrote {args.out / 'regression.png'}")


if __name__ == "__main__":
    main()
