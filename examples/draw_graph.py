"""Draws the autodiff graph of a small MLP's loss, after backward, with Graphviz.

Run: python examples/draw_graph.py [--out docs/images/graph.svg]
(needs Graphviz's `dot`: apt-get install graphviz / brew install graphviz / conda)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import ferrograd as fg
from ferrograd import layers as nn


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=Path("graph.svg"))
    args = parser.parse_args()

    fg.manual_seed(0)
    model = nn.Sequential(nn.Linear(2, 3), nn.Tanh(), nn.Linear(3, 1))
    x = fg.randn(4, 2)
    y = fg.Tensor([[1.0], [-1.0], [1.0], [-1.0]])
    loss = fg.loss.mse(model(x), y)
    loss.backward(retain_graph=True)
    names = {**dict(model.named_parameters()), "x": x, "y": y, "loss": loss}
    print(f"wrote {fg.draw_graph(loss, args.out, names=names)}")


if __name__ == "__main__":
    main()
