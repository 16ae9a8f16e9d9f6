"""Scalar autodiff: ferrograd's ``Value`` against micrograd's, in ops/s (one thread).

* ``value graph``: build and backpropagate an expression of 100,000 ops (leaf creation
  included). micrograd's backward sorts the graph recursively and fails past about 1,000
  levels of depth, so the expression is *wide*, not a chain: ``T`` terms
  ``relu(a_i * b_i + c)`` (3 ops each) summed pairwise (``T - 1`` adds), depth about 20.
  With ``T = 25,000`` that is 99,999 ops; both libraries get the identical expression.
* ``moons MLP step``: micrograd's demo network, an MLP 2-16-16-1 (ReLU hidden layers,
  linear output) on 100 two-moons points, full batch: forward, SVM max-margin loss + L2
  regularisation, zero grads, backward, SGD update. The MLP code below is written once and
  instantiated with each library's ``Value``, so both run the same Python; ops/s counts the
  graph's non-leaf nodes (the count is part of the figure's size, so a mismatch between the
  libraries shows as two unpaired figures).

The Python recursion limit is left at its default: neither expression needs more.

Each figure is measured twice: with the garbage collector on while timing (the headline, as
a user runs), and with it off (``[gc off]``, as ``timeit`` does). The choice matters for
micrograd: each node's ``_backward`` closure refers to the node, a reference cycle that only
the collector frees, so with the collector on micrograd pays for repeated collections of its
growing graph (several times slower). ferrograd's nodes live in Rust and hold no cycles."""

from __future__ import annotations

import math
import random
from typing import Any

import numpy as np

from workloads import Context, declare, implementation

declare("value", "scalar Value autodiff", threads=(1,))

GRAPH_TERMS = 25_000
QUICK_GRAPH_TERMS = 250
MOONS_POINTS = 100
QUICK_MOONS_POINTS = 8
VALUE_MIN_TIME = 0.5
# (keep the collector on while timing, workload suffix): the headline figure runs as a user
# would, with it on; the second shows the figure with collection left out, as timeit does.
GC_MODES = ((True, ""), (False, " [gc off]"))


def pairwise_sum(xs: list):
    """Sums by halving, so the result's depth is log2(len(xs)) rather than len(xs)."""
    while len(xs) > 1:
        pairs = [xs[i] + xs[i + 1] for i in range(0, len(xs) - 1, 2)]
        xs = pairs + ([xs[-1]] if len(xs) % 2 else [])
    return xs[0]


def build_and_backward(value_cls, data: list[tuple[float, float]], c0: float):
    c = value_cls(c0)
    terms = [(value_cls(a) * value_cls(b) + c).relu() for a, b in data]
    out = pairwise_sum(terms)
    out.backward()
    return out, c


def count_ops(root) -> int:
    """Non-leaf nodes reachable from ``root`` (iterative walk over ``_prev``).

    A node is known by ``_id`` (ferrograd: ``_prev`` hands out fresh wrapper objects of the
    same node) or else by the Python object's identity (micrograd)."""

    def key(v) -> int:
        return getattr(v, "_id", None) or id(v)

    seen, stack, ops = {key(root)}, [root], 0
    while stack:
        v = stack.pop()
        if v._prev:
            ops += 1
        for p in v._prev:
            if key(p) not in seen:
                seen.add(key(p))
                stack.append(p)
    return ops


# ----- micrograd's moons MLP, written once for any Value class ----------------------------


class MLP:
    """micrograd.nn.MLP: neurons ``sum(w_i * x_i) + b``, ReLU except on the last layer."""

    def __init__(self, value_cls, sizes: list[int], seed: int) -> None:
        rnd = random.Random(seed)
        self.layers = []
        for i, (n_in, n_out) in enumerate(zip(sizes, sizes[1:])):
            neurons = [
                ([value_cls(rnd.uniform(-1, 1)) for _ in range(n_in)], value_cls(0.0))
                for _ in range(n_out)
            ]
            self.layers.append((neurons, i < len(sizes) - 2))

    def __call__(self, x: list) -> object:
        for neurons, relu in self.layers:
            outs = []
            for w, b in neurons:
                act = sum((wi * xi for wi, xi in zip(w, x)), b)
                outs.append(act.relu() if relu else act)
            x = outs
        return x[0]

    def parameters(self) -> list:
        return [p for neurons, _ in self.layers for w, b in neurons for p in (*w, b)]


def make_moons(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Two interleaving half circles with noise 0.1 (as sklearn's make_moons); y in {-1, 1}."""
    rng = np.random.default_rng(seed)
    n_out = n // 2
    t_out, t_in = np.linspace(0, math.pi, n_out), np.linspace(0, math.pi, n - n_out)
    X = np.concatenate(
        [
            np.stack([np.cos(t_out), np.sin(t_out)], 1),
            np.stack([1 - np.cos(t_in), 0.5 - np.sin(t_in)], 1),
        ]
    )
    X += rng.normal(scale=0.1, size=X.shape)
    y = np.concatenate([-np.ones(n_out), np.ones(n - n_out)])
    return X, y


def moons_step(model: MLP, X: list[list[float]], y: list[float], lr: float = 0.05):
    """One micrograd-demo training step; returns the loss Value."""
    scores = [model(x) for x in X]
    # max-margin loss relu(1 - y·score), written as score·(-y) + 1 so that both libraries
    # record the same ops (micrograd's ``1 - v`` is two ops: a negation and an add)
    losses = [(s * (-yi) + 1.0).relu() for s, yi in zip(scores, y)]
    data_loss = sum(losses) * (1.0 / len(losses))
    reg_loss = sum(p * p for p in model.parameters()) * 1e-4
    loss = data_loss + reg_loss
    for p in model.parameters():
        p.grad = 0.0
    loss.backward()
    for p in model.parameters():
        p.data -= lr * p.grad
    return loss


def _value(ctx: Context, value_cls: Any) -> None:
    # 1. a 100,000-op wide expression
    terms = QUICK_GRAPH_TERMS if ctx.quick else GRAPH_TERMS
    rnd = random.Random(0)
    data = [(rnd.uniform(-1, 1), rnd.uniform(-1, 1)) for _ in range(terms)]
    out, c = build_and_backward(value_cls, data, 0.1)
    n_ops = count_ops(out)
    assert n_ops == 4 * terms - 1, (n_ops, terms)
    # every term whose relu is open passes gradient 1 to c
    open_terms = sum(a * b + 0.1 > 0 for a, b in data)
    assert abs(c.grad - open_terms) < 1e-9, (c.grad, open_terms)
    del out, c
    # micrograd takes seconds per call here: one sample per process (the rounds add more)
    repeats = ctx.repeats if ctx.quick else 1
    # ferrograd's graph takes ~0.1 s: samples of several calls steady its figure
    min_time = ctx.min_time if ctx.quick else max(ctx.min_time, VALUE_MIN_TIME)
    for keep_gc, tag in GC_MODES:
        ctx.time(
            f"value graph build+backward{tag}",
            f"{n_ops:,} ops",
            "ops/s",
            lambda: build_and_backward(value_cls, data, 0.1),
            work=n_ops,
            keep_gc=keep_gc,
            repeats=repeats,
            min_time=min_time,
        )

    # 2. micrograd's moons MLP training step
    points = QUICK_MOONS_POINTS if ctx.quick else MOONS_POINTS
    X_arr, y_arr = make_moons(points)
    X, y = X_arr.tolist(), y_arr.tolist()
    model = MLP(value_cls, [2, 16, 16, 1], seed=1)
    n_ops = count_ops(moons_step(model, X, y))
    for keep_gc, tag in GC_MODES:
        ctx.time(
            f"moons MLP 2-16-16-1 step{tag}",
            f"batch {points}, {n_ops:,} ops",
            "ops/s",
            lambda: moons_step(model, X, y),
            work=n_ops,
            keep_gc=keep_gc,
            repeats=repeats,
            min_time=min_time,
        )


@implementation("value", "ferrograd")
def value_ferrograd(ctx: Context) -> None:
    import ferrograd as fg

    _value(ctx, fg.Value)


@implementation("value", "micrograd")
def value_micrograd(ctx: Context) -> None:
    from micrograd.engine import Value

    _value(ctx, Value)
