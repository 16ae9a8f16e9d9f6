"""Depth and threads: very long graphs, and Tensors shared between Python threads.

``test_value.py`` already runs a million-op ``Value`` chain of one op and
``test_autograd.py`` 10,000-op Tensor chains; these tests extend them to mixed ops, a leaf
reused a million times, graphs dropped without backward, 100,000-op Tensor chains, and
small thread stacks (an iterative walk needs none). Each scenario runs in a child process
with a timeout, so a stack overflow or a deadlock fails its test instead of killing or
hanging pytest.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

SMALL_STACK = """
def on_small_stack(fn, size=512 * 1024):
    # A 512 KiB thread stack: any recursion over the graph would overflow it.
    threading.stack_size(size)
    box = []
    th = threading.Thread(target=lambda: box.append(fn()))
    th.start()
    th.join(300)
    threading.stack_size(0)
    assert not th.is_alive(), "timed out"
    assert box, "the thread raised"
    return box[0]
"""


def run_child(body: str, timeout: float = 120, small_stack: bool = False) -> str:
    script = "import threading, time\nimport numpy as np\nimport ferrograd as fg\n"
    if small_stack:
        script += SMALL_STACK
    script += textwrap.dedent(body)
    try:
        proc = subprocess.run(
            [sys.executable, "-c", script],
            check=False,
            capture_output=True,
            text=True,
            timeout=timeout,
            env={**os.environ},
        )
    except subprocess.TimeoutExpired as exc:
        raise AssertionError(f"the child hung (deadlock?) past {timeout}s") from exc
    assert proc.returncode >= 0, (
        f"the child died of signal {-proc.returncode} (stack overflow?):\n{proc.stderr[-3000:]}"
    )
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc.stdout


# ------------------------------------------------------------------------------- depth


def test_a_million_op_value_chain_of_mixed_ops_reusing_one_leaf_backprops_and_drops():
    run_child(
        small_stack=True,
        body="""
    def work():
        a = fg.Value(0.5)
        x = fg.Value(1.0)
        v = x
        for i in range(250_000):
            v = v * 0.999 + a     # a is a parent a quarter million times
            v = (v - a) / 1.0001
        v = v.tanh()
        v.backward()
        # Reference in plain Python floats.
        ref, dx, da = 1.0, 1.0, 0.0
        for i in range(250_000):
            ref = ((ref * 0.999 + 0.5) - 0.5) / 1.0001
            dx = dx * 0.999 / 1.0001
        t = np.tanh(ref)
        assert abs(v.data - t) < 1e-12, (v.data, t)
        assert abs(x.grad - (1 - t * t) * dx) < 1e-12
        assert abs(a.grad) < 1e-9  # + a then - a cancel
        del v  # a million nodes dropped on a 512 KiB stack
        return x.grad
    on_small_stack(work)
    """,
    )


def test_a_million_op_value_graph_dropped_without_backward_does_not_overflow():
    run_child(
        small_stack=True,
        body="""
    def work():
        v = fg.Value(1.0)
        for _ in range(1_000_000):
            v = v + 1.0
        assert v.data == 1_000_001.0
        del v
        return True
    on_small_stack(work)
    """,
    )


def test_a_hundred_thousand_op_tensor_chain_builds_backprops_and_drops_on_a_small_stack():
    out = run_child(
        small_stack=True,
        body="""
    def work():
        x = fg.Tensor(np.linspace(-1, 1, 6).reshape(2, 3), requires_grad=True, dtype="float64")
        w = fg.Tensor(np.ones((2, 3)), requires_grad=True, dtype="float64")
        h = x
        for i in range(25_000):  # 4 ops per round: 100,000 ops
            h = (h * 0.9999 + w * 1e-5).reshape(3, 2).reshape(2, 3)
        h = h.tanh()
        loss = h.sum()
        loss.backward()
        ref = np.linspace(-1, 1, 6).reshape(2, 3)
        scale = 0.9999 ** 25_000
        ref = ref * scale + 1e-5 * (1 - scale) / (1 - 0.9999)
        np.testing.assert_allclose(h.numpy(), np.tanh(ref), rtol=1e-9)
        np.testing.assert_allclose(x.grad.numpy(), (1 - np.tanh(ref) ** 2) * scale, rtol=1e-9)
        del h, loss
        return float(w.grad.numpy().sum())
    print(on_small_stack(work))
    """,
    )
    assert float(out.strip()) > 0


def test_a_hundred_thousand_op_tensor_graph_is_dropped_without_backward_on_a_small_stack():
    run_child(
        small_stack=True,
        body="""
    def work():
        x = fg.ones(4, requires_grad=True)
        h = x
        for i in range(100_000):
            h = h + x if i % 2 else h[::1] * 1.0
        assert h._op is not None
        del h
        x.grad = None
        (x * 2).sum().backward()  # the leaf still works
        return x.grad.numpy().tolist()
    assert on_small_stack(work) == [2.0] * 4
    """,
    )


# ----------------------------------------------------------------------------- threads


def test_four_threads_training_four_models_concurrently_match_sequential_runs():
    run_child(
        """
    X, y = fg.datasets.load_digits()

    def make(seed):
        fg.manual_seed(seed)
        model = fg.layers.Sequential(fg.layers.Linear(64, 256), fg.layers.ReLU(),
                                     fg.layers.Linear(256, 10))
        return model, fg.optim.Adam(model.parameters(), lr=1e-3)

    def train(model, opt, seed):
        for epoch in range(2):
            for xb, yb in fg.data.DataLoader(X, y, batch_size=128, shuffle=True,
                                             seed=seed + epoch):
                loss = fg.loss.cross_entropy(model(xb), yb)
                opt.zero_grad()
                loss.backward()
                opt.step()
        return [p.numpy() for p in model.parameters()]

    seeds = [11, 22, 33, 44]
    sequential = [train(*make(s), s) for s in seeds]
    pairs = [make(s) for s in seeds]  # same initial weights, made before the threads start
    results = [None] * 4

    def worker(i):
        results[i] = train(*pairs[i], seeds[i])

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
        assert not th.is_alive(), "a training thread hung"
    for seq, par in zip(sequential, results):
        assert par is not None, "a training thread raised"
        for a, b in zip(seq, par):
            np.testing.assert_array_equal(a, b)
    """,
        timeout=180,
    )


def test_threads_sharing_one_tensor_read_backprop_and_update_it_without_corruption():
    run_child(
        """
    n = 1_000_000  # large enough that kernels run long with the GIL released
    shared = fg.zeros(n, requires_grad=True)
    errors = []
    stop = threading.Event()

    def reader():
        try:
            while not stop.is_set():
                snap = shared.numpy()
                # Every update adds the same number to every element: a torn read shows.
                if snap.min() != snap.max():
                    errors.append(("torn read", snap.min(), snap.max()))
                s = float(shared.sum().item())
                if s != s:
                    errors.append("nan")
        except Exception as e:  # noqa: BLE001 -- reported below
            errors.append(repr(e))

    def writer(rounds):
        global shared
        try:
            for _ in range(rounds):
                with fg.no_grad():
                    shared += 1.0
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    def backprop(rounds, c):
        try:
            for _ in range(rounds):
                (shared * c).sum().backward()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    readers = [threading.Thread(target=reader) for _ in range(2)]
    workers = [threading.Thread(target=writer, args=(25,)) for _ in range(2)]
    workers += [threading.Thread(target=backprop, args=(10, c)) for c in (1.0, 2.0)]
    for th in readers + workers:
        th.start()
    for th in workers:
        th.join(120)
        assert not th.is_alive(), "a worker deadlocked"
    stop.set()
    for th in readers:
        th.join(60)
        assert not th.is_alive(), "a reader deadlocked"
    assert not errors, errors[:5]
    final = shared.numpy()
    assert final.min() == final.max() == 50.0, (final.min(), final.max())  # none lost
    grad = shared.grad.numpy()
    assert grad.min() == grad.max() == 30.0, (grad.min(), grad.max())  # adds up exactly
    """,
        timeout=180,
    )


def test_four_threads_backpropagating_different_graphs_into_shared_leaves_add_up_exactly():
    run_child(
        """
    w = fg.Tensor(np.arange(12.0).reshape(3, 4), requires_grad=True, dtype="float64")
    b = fg.Tensor(np.ones(4), requires_grad=True, dtype="float64")
    x = fg.Tensor(np.linspace(0, 1, 24).reshape(6, 4), dtype="float64")
    barrier = threading.Barrier(4)
    errors = []
    rounds = 50

    graphs = [
        lambda: (x @ w.T).sum(),
        lambda: ((x * b).tanh() @ w.T).sum(),
        lambda: fg.loss.mse(x @ w.T, fg.zeros(6, 3, dtype="float64")),
        lambda: (w.sum(axis=0) * b).sum(),
    ]

    def work(i):
        try:
            barrier.wait(30)
            for _ in range(rounds):
                graphs[i]().backward()
        except Exception as e:  # noqa: BLE001
            errors.append(repr(e))

    threads = [threading.Thread(target=work, args=(i,)) for i in range(4)]
    for th in threads:
        th.start()
    for th in threads:
        th.join(120)
        assert not th.is_alive(), "deadlock"
    assert not errors, errors
    got_w, got_b = w.grad.numpy(), b.grad.numpy()
    # The same sums, run sequentially on fresh grads.
    w.grad = None
    b.grad = None
    for i in range(4):
        for _ in range(rounds):
            graphs[i]().backward()
    np.testing.assert_allclose(got_w, w.grad.numpy(), rtol=1e-12)
    np.testing.assert_allclose(got_b, b.grad.numpy(), rtol=1e-12)
    """,
        timeout=180,
    )
