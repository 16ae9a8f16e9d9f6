"""Memory: no leak over a long training run, and graph memory comes back when it should.

Each scenario runs in a fresh child process (so pytest's own allocations do not blur the
numbers) and reports its resident set size, read from ``/proc/self/statm``, at the points
that matter. The child sets ``MALLOC_MMAP_THRESHOLD_`` so that large buffers are mapped
and unmapped one by one: freed memory then leaves the RSS at once instead of staying in
the allocator's heap, and what the tests see is what ferrograd still holds.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytestmark = pytest.mark.skipif(
    not os.path.exists("/proc/self/statm"), reason="needs /proc/self/statm (Linux)"
)

MB = 1024 * 1024

PRELUDE = """
import gc, json, os
import numpy as np
import ferrograd as fg

PAGE = os.sysconf("SC_PAGE_SIZE")

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * PAGE

report = {}
"""


def run_child(body: str) -> dict:
    script = PRELUDE + textwrap.dedent(body) + "\nprint('REPORT ' + json.dumps(report))\n"
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "131072", "MALLOC_ARENA_MAX": "2"}
    proc = subprocess.run(
        [sys.executable, "-c", script],
        check=False,
        capture_output=True,
        text=True,
        timeout=300,
        env=env,
    )
    assert proc.returncode == 0, f"child failed ({proc.returncode}):\n{proc.stderr[-4000:]}"
    line = [ln for ln in proc.stdout.splitlines() if ln.startswith("REPORT ")][-1]
    return json.loads(line[len("REPORT ") :])


def test_five_thousand_training_steps_of_an_mlp_grow_rss_by_less_than_ten_megabytes():
    report = run_child("""
        fg.manual_seed(0)
        X, y = fg.datasets.load_digits()
        model = fg.layers.Sequential(fg.layers.Linear(64, 64), fg.layers.ReLU(),
                                     fg.layers.Linear(64, 32), fg.layers.Tanh(),
                                     fg.layers.Linear(32, 10))
        opt = fg.optim.Adam(model.parameters(), lr=1e-3)
        sched = fg.optim.StepLR(opt, step_size=1000, gamma=0.5)
        steps = 0

        def train(n):
            global steps
            target = steps + n
            while True:
                for xb, yb in fg.data.DataLoader(X, y, batch_size=32, shuffle=True):
                    loss = fg.loss.cross_entropy(model(xb), yb)
                    opt.zero_grad()
                    loss.backward()
                    opt.step()
                    sched.step()
                    steps += 1
                    if steps == target:
                        return float(loss.item())

        train(500)  # warm-up: optimizer state, allocator pools, lazy imports
        gc.collect()
        before = rss()
        last = train(5000)
        gc.collect()
        after = rss()
        report.update(before=before, after=after, steps=steps, loss=last)
    """)
    growth = report["after"] - report["before"]
    print(f"RSS growth over 5000 steps: {growth / MB:.2f} MB (loss {report['loss']:.3f})")
    assert report["steps"] == 5500
    assert report["loss"] < 1.0  # it really trained
    assert growth < 10 * MB, f"RSS grew by {growth / MB:.1f} MB over 5000 steps"


def test_the_memory_of_a_large_graph_returns_after_backward():
    report = run_child("""
        x = fg.randn(4_000_000, requires_grad=True)  # 16 MB per float32 array
        gc.collect()
        report["base"] = rss()
        h = x
        for _ in range(12):  # 12 ops, each saving a 16 MB array for backward
            h = (h * 1.0001).tanh()
        loss = h.sum()
        report["built"] = rss()
        loss.backward()
        del h
        gc.collect()
        report["after"] = rss()
        assert x.grad is not None and x.grad.shape == (4_000_000,)
    """)
    built = report["built"] - report["base"]
    kept = report["after"] - report["base"]
    print(f"graph held {built / MB:.0f} MB; {kept / MB:.0f} MB kept after backward")
    assert built > 150 * MB  # the graph really was large
    # Only the leaf's grad (16 MB) and the loss may stay.
    assert kept < 40 * MB, f"{kept / MB:.0f} MB still held after backward"


def test_a_graph_is_freed_when_its_last_python_reference_goes():
    report = run_child("""
        x = fg.randn(1500, 1500, requires_grad=True)
        gc.collect()
        report["base"] = rss()
        h = x
        for _ in range(10):
            h = h.relu() * 1.5 + x
        report["built"] = rss()
        del h
        report["after"] = rss()  # no gc: reference counting alone frees it
    """)
    built = report["built"] - report["base"]
    kept = report["after"] - report["base"]
    assert built > 150 * MB
    assert kept < 20 * MB, f"{kept / MB:.0f} MB still held after the last reference went"


def test_a_graph_held_in_a_python_reference_cycle_is_freed_by_gc_collect():
    report = run_child("""
        gc.disable()

        class Holder:
            pass

        x = fg.randn(1500, 1500, requires_grad=True)
        gc.collect()
        report["base"] = rss()
        holder = Holder()
        holder.me = holder  # a cycle through Python objects
        h = x
        for _ in range(10):
            h = (h * 0.5).exp()
        holder.out = h
        holder.parts = [holder, h, h._prev]
        model = fg.layers.Sequential(fg.layers.Linear(1500, 1500))
        model.owner = holder  # and a cycle through a Module
        holder.model = model
        del h, model
        report["built"] = rss()
        del holder
        report["before_gc"] = rss()
        gc.collect()
        report["after"] = rss()
        gc.enable()
    """)
    built = report["built"] - report["base"]
    kept_before = report["before_gc"] - report["base"]
    kept = report["after"] - report["base"]
    assert built > 150 * MB
    assert kept_before > 150 * MB  # the cycle kept it alive until the collector ran
    assert kept < 20 * MB, f"{kept / MB:.0f} MB still held after gc.collect()"


def test_repeated_backward_with_retain_graph_and_errors_does_not_leak():
    report = run_child("""
        x = fg.randn(64, 64, requires_grad=True)
        w = fg.randn(64, 64, requires_grad=True)

        def churn(n):
            for _ in range(n):
                y = (x @ w).tanh().sum()
                y.backward(retain_graph=True)
                y.backward()
                try:
                    y.backward()
                except RuntimeError:
                    pass
                try:
                    x + fg.ones(3)
                except ValueError:
                    pass
                try:
                    x[10**6]
                except IndexError:
                    pass
                x.grad = None
                w.grad = None

        churn(300)
        gc.collect()
        before = rss()
        churn(3000)
        gc.collect()
        report.update(before=before, after=rss())
    """)
    growth = report["after"] - report["before"]
    assert growth < 5 * MB, f"RSS grew by {growth / MB:.1f} MB over 3000 iterations"
