"""The article's walk-through ("Building a neural network library in Rust, part 0"), in ferrograd.

1. z = 2x + 3y and its partial derivatives, first with scalar ``Value``s, then with ``Tensor``s.
2. A one-neuron model y = sigmoid(m·x + b) fitted by gradient descent on the mean squared
   error — once with Values (one graph node per number, as the article did) and once with
   Tensors (autodiff baked into the array) — printing the loss going down.

Run: python examples/autodiff_tour.py
"""

import time

import numpy as np

import ferrograd as fg


def partial_derivatives() -> None:
    print("== z = 2x + 3y ==")
    x, y = fg.Value(1.0), fg.Value(2.0)
    z = 2 * x + 3 * y
    z.backward()
    print(f"Value : z = {z.data}, dz/dx = {x.grad}, dz/dy = {y.grad}")

    xt = fg.Tensor([1.0, -1.0, 0.5], requires_grad=True)
    yt = fg.Tensor([2.0, 0.0, 4.0], requires_grad=True)
    zt = 2 * xt + 3 * yt
    zt.sum().backward()
    assert xt.grad is not None and yt.grad is not None  # leaves that took part in backward
    print(f"Tensor: z = {zt.tolist()}, dz/dx = {xt.grad.tolist()}, dz/dy = {yt.grad.tolist()}")


def make_data(n: int = 32) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    x = rng.uniform(-3, 3, size=n)
    y = 1 / (1 + np.exp(-(1.5 * x - 0.5)))  # the curve to recover: m = 1.5, b = -0.5
    return x, y


def fit_with_values(x: np.ndarray, y: np.ndarray, steps: int, lr: float) -> None:
    print("== sigmoid(m*x + b) with Values ==")
    m, b = fg.Value(0.0), fg.Value(0.0)
    start = time.perf_counter()
    for step in range(steps):
        loss = fg.Value(0.0)
        for xi, yi in zip(x, y):
            pred = (m * float(xi) + b).sigmoid()
            loss = loss + (pred - float(yi)) ** 2
        loss = loss / len(x)
        m.grad, b.grad = 0.0, 0.0
        loss.backward()
        m.data -= lr * m.grad
        b.data -= lr * b.grad
        if step % (steps // 5) == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.data:.6f}  m {m.data:+.3f}  b {b.data:+.3f}")
    print(f"({time.perf_counter() - start:.2f} s)")


def fit_with_tensors(x: np.ndarray, y: np.ndarray, steps: int, lr: float) -> None:
    print("== sigmoid(m*x + b) with Tensors ==")
    xs, ys = fg.Tensor(x), fg.Tensor(y)
    m = fg.zeros(1, requires_grad=True)
    b = fg.zeros(1, requires_grad=True)
    start = time.perf_counter()
    for step in range(steps):
        pred = (xs * m + b).sigmoid()
        loss = ((pred - ys) ** 2).mean()
        m.grad, b.grad = None, None
        loss.backward()
        assert m.grad is not None and b.grad is not None
        with fg.no_grad():
            m -= lr * m.grad
            b -= lr * b.grad
        if step % (steps // 5) == 0 or step == steps - 1:
            print(f"step {step:4d}  loss {loss.item():.6f}  m {m.item():+.3f}  b {b.item():+.3f}")
    print(f"({time.perf_counter() - start:.2f} s)")


def main() -> None:
    partial_derivatives()
    x, y = make_data()
    fit_with_values(x, y, steps=200, lr=2.0)
    fit_with_tensors(x, y, steps=200, lr=2.0)
    print("== the graph of one Value expression, as Graphviz text ==")
    a, c = fg.Value(2.0), fg.Value(-3.0)
    print(fg.to_dot((a * c + a).relu()))


if __name__ == "__main__":
    main()
