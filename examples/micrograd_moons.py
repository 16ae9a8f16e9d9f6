"""micrograd's demo on ferrograd's scalar ``Value``: a 2-16-16-1 MLP separating two moons.

As in micrograd's ``demo.ipynb``: 100 points, a max-margin (SVM) loss with L2
regularisation, and plain SGD with a decaying learning rate. Every number is a ``Value`` —
one graph node per scalar, the article's design — so this shows the scalar engine, not speed.
Reaches 100% training accuracy.

Run: python examples/micrograd_moons.py [--steps N]
"""

from __future__ import annotations

import argparse
import random
import time

import numpy as np

import ferrograd as fg
from ferrograd import Value


def make_moons(n: int = 100, noise: float = 0.1, seed: int = 1) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles (like sklearn's make_moons), labels -1 and +1."""
    rng = np.random.default_rng(seed)
    half = n // 2
    angle_out, angle_in = np.linspace(0, np.pi, half), np.linspace(0, np.pi, n - half)
    outer = np.stack([np.cos(angle_out), np.sin(angle_out)], axis=1)
    inner = np.stack([1 - np.cos(angle_in), 1 - np.sin(angle_in) - 0.5], axis=1)
    x = np.concatenate([outer, inner]) + rng.normal(scale=noise, size=(n, 2))
    y = np.concatenate([-np.ones(half), np.ones(n - half)])
    return x, y


class Neuron:
    def __init__(self, n_in: int, nonlinear: bool = True) -> None:
        self.w = [Value(random.uniform(-1, 1)) for _ in range(n_in)]
        self.b = Value(0.0)
        self.nonlinear = nonlinear

    def __call__(self, x: list[Value]) -> Value:
        act = sum((wi * xi for wi, xi in zip(self.w, x)), self.b)
        return act.relu() if self.nonlinear else act

    def parameters(self) -> list[Value]:
        return [*self.w, self.b]


class Layer:
    def __init__(self, n_in: int, n_out: int, nonlinear: bool = True) -> None:
        self.neurons = [Neuron(n_in, nonlinear) for _ in range(n_out)]

    def __call__(self, x: list[Value]) -> list[Value]:
        return [n(x) for n in self.neurons]

    def parameters(self) -> list[Value]:
        return [p for n in self.neurons for p in n.parameters()]


class MLP:
    def __init__(self, n_in: int, sizes: list[int]) -> None:
        dims = [n_in, *sizes]
        self.layers = [
            Layer(dims[i], dims[i + 1], nonlinear=i != len(sizes) - 1) for i in range(len(sizes))
        ]

    def __call__(self, x: list[Value]) -> Value:
        for layer in self.layers:
            x = layer(x)
        return x[0]

    def parameters(self) -> list[Value]:
        return [p for layer in self.layers for p in layer.parameters()]


def loss_and_accuracy(model: MLP, x: np.ndarray, y: np.ndarray) -> tuple[Value, float]:
    scores = [model([Value(float(a)), Value(float(b))]) for a, b in x]
    # SVM max-margin loss, plus L2 regularisation as in micrograd's demo
    margins = [(1 + -float(yi) * s).relu() for yi, s in zip(y, scores)]
    data_loss = sum(margins, Value(0.0)) * (1.0 / len(margins))
    reg_loss = 1e-4 * sum((p * p for p in model.parameters()), Value(0.0))
    accuracy = float(np.mean([(s.data > 0) == (yi > 0) for yi, s in zip(y, scores)]))
    return data_loss + reg_loss, accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description="micrograd's moons demo on fg.Value")
    parser.add_argument("--steps", type=int, default=100)
    args = parser.parse_args()

    random.seed(1337)
    x, y = make_moons()
    model = MLP(2, [16, 16, 1])
    print(f"{len(model.parameters())} parameters")
    start = time.perf_counter()
    accuracy = 0.0
    for step in range(args.steps):
        loss, accuracy = loss_and_accuracy(model, x, y)
        for p in model.parameters():
            p.grad = 0.0
        loss.backward()
        lr = 1.0 - 0.9 * step / args.steps
        for p in model.parameters():
            p.data -= lr * p.grad
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step:3d}  loss {loss.data:.4f}  accuracy {accuracy:.0%}")
    print(
        f"training accuracy {accuracy:.0%} after {args.steps} steps "
        f"in {time.perf_counter() - start:.1f} s"
    )
    print(f"the last graph, drawn by fg.to_dot, has {fg.to_dot(loss).count('->')} edges")


if __name__ == "__main__":
    main()
