"""Per-call overhead on tiny float32 tensors of shape (4,): µs per call against PyTorch.

* ``add``: one ``a + b`` (no autodiff), the cost of a single op;
* ``fwd``: ``(a*b + c).relu().sum()`` with every input requiring grad (4 ops, graph built);
* ``fwd+bwd``: the same, then ``.backward()`` (leaf grads accumulate, as in both libraries).

At this size the arithmetic is nothing: the figures are the cost of crossing from Python into
the library, allocating the result and recording the graph. NumPy's ``a + b`` is shown for
scale on ``add`` (it has no autodiff)."""

from __future__ import annotations

import numpy as np
from common import (
    Options,
    Report,
    cpu_count,
    figures_from_stats,
    measure,
    optional_peer,
    script_main,
    set_threads,
)

import ferrograd as fg

SHAPE = (4,)


def run(opts: Options, report: Report) -> None:
    torch = optional_peer("torch")
    threads = opts.threads or [cpu_count()]
    rng = np.random.default_rng(0)
    a, b, c = (rng.standard_normal(SHAPE).astype(np.float32) for _ in range(3))
    fa, fb = fg.Tensor(a), fg.Tensor(b)
    ga, gb, gc = (fg.Tensor(v, requires_grad=True) for v in (a, b, c))
    cases = {
        "add": {"ferrograd": lambda: fa + fb, "numpy": lambda: a + b},
        "fwd": {"ferrograd": lambda: (ga * gb + gc).relu().sum()},
        "fwd+bwd": {"ferrograd": lambda: (ga * gb + gc).relu().sum().backward()},
    }
    if torch is not None:
        ta, tb = torch.from_numpy(a), torch.from_numpy(b)
        sa, sb, sc = (torch.tensor(v, requires_grad=True) for v in (a, b, c))
        cases["add"]["torch"] = lambda: ta + tb
        cases["fwd"]["torch"] = lambda: (sa * sb + sc).relu().sum()
        cases["fwd+bwd"]["torch"] = lambda: (sa * sb + sc).relu().sum().backward()
    expected = np.maximum(a * b + c, 0).sum()
    assert abs(float(cases["fwd"]["ferrograd"]().item()) - expected) < 1e-5
    for t in threads:
        set_threads(t)
        for name, fns in cases.items():
            stats = measure(fns, repeats=opts.repeats, min_time=opts.min_time)
            report.add(figures_from_stats(f"tiny {name}", "(4,)", t, stats, "µs", scale=1e6))
    set_threads(None)


if __name__ == "__main__":
    script_main("per-call overhead: µs per call on shape (4,)", run)
