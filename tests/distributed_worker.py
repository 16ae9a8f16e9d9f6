"""What each rank runs for tests/test_distributed.py: ``mpiexec -n 2 python
tests/distributed_worker.py CASE`` (or plain ``python … world_of_one``).

Each case checks its results with plain asserts. A failed assert is an uncaught exception,
which the excepthook of ``init_process_group`` turns into an abort of the whole job, so the
test sees a non-zero exit and the traceback. On success every rank prints ``OK CASE rank R``.
"""

from __future__ import annotations

import sys
import time

import numpy as np

import ferrograd as fg
import ferrograd.distributed as dist
from ferrograd import layers as nn


def expect_error(kind: type[BaseException], fragment: str, fn, *args, **kwargs) -> str:
    try:
        fn(*args, **kwargs)
    except kind as e:
        assert fragment in str(e), f"{kind.__name__} without {fragment!r}: {e}"
        return str(e)
    raise AssertionError(f"expected {kind.__name__} containing {fragment!r}")


def int64_tensor(values) -> fg.Tensor:
    """An int64 tensor."""
    t = fg.Tensor(np.asarray(values, dtype=np.int64), dtype="int64")
    assert t.dtype == "int64", t.dtype
    return t


def collectives(rank: int, world: int) -> None:
    # Values that differ per rank, so every op has a distinct, known answer.
    per_rank = [np.array([[1.5, -2.0, 3.0], [0.25, 8.0, -1.0]]) * (r + 1) - r for r in range(world)]
    stacked = np.stack(per_rank)
    expected = {
        "sum": stacked.sum(0),
        "mean": stacked.mean(0),
        "max": stacked.max(0),
        "min": stacked.min(0),
        "product": stacked.prod(0),
    }
    for dtype in ("float32", "float64"):
        for op, want in expected.items():
            t = fg.Tensor(per_rank[rank], dtype=dtype)
            dist.all_reduce(t, op=op)
            assert t.dtype == dtype
            np.testing.assert_allclose(t.numpy(), want.astype(dtype), rtol=1e-6, err_msg=op)
        # ReduceOp constants, the default op, and a gradient (an NdArray view of .grad).
        t = fg.Tensor(per_rank[rank], dtype=dtype)
        dist.all_reduce(t, dist.ReduceOp.MAX)
        np.testing.assert_allclose(t.numpy(), expected["max"].astype(dtype), rtol=1e-6)
        w = fg.Tensor(np.zeros((2, 3)), requires_grad=True, dtype=dtype)
        (w * fg.Tensor(per_rank[rank], dtype=dtype)).sum().backward()
        dist.all_reduce(w.grad)
        np.testing.assert_allclose(w.grad.numpy(), expected["sum"].astype(dtype), rtol=1e-6)
        for src in range(world):
            b = fg.Tensor(per_rank[rank], dtype=dtype)
            dist.broadcast(b, src=src)
            np.testing.assert_array_equal(b.numpy(), per_rank[src].astype(dtype))
    # A 0-d and an empty tensor work too.
    s = fg.Tensor(float(rank + 1))
    dist.all_reduce(s)
    assert s.item() == world * (world + 1) / 2
    e = fg.zeros(0, 3)
    dist.all_reduce(e)
    assert e.shape == (0, 3)

    # Mismatched shapes: a clear ValueError on every rank, naming each rank's shape.
    odd = fg.zeros(3 + rank)
    msg = expect_error(ValueError, "differ between ranks", dist.all_reduce, odd)
    assert "rank 0 has shape (3,)" in msg and "rank 1 has shape (4,)" in msg, msg
    expect_error(ValueError, "differ between ranks", dist.broadcast, fg.zeros(2, 3 + rank))
    # Same element count, different shape, is a mismatch too.
    expect_error(
        ValueError,
        "differ between ranks",
        dist.all_reduce,
        fg.zeros((2, 3) if rank == 0 else (3, 2)),
    )
    expect_error(
        ValueError,
        "differ between ranks",
        dist.all_reduce,
        fg.zeros(3, dtype="float32" if rank == 0 else "float64"),
    )
    # Same tensors, different op: also caught.
    expect_error(
        ValueError,
        "different arguments",
        dist.all_reduce,
        fg.zeros(3),
        op="sum" if rank == 0 else "max",
    )
    # Bad arguments fail locally, before any communication.
    expect_error(ValueError, "op must be one of", dist.all_reduce, fg.zeros(3), op="median")
    expect_error(ValueError, "src must be a rank", dist.broadcast, fg.zeros(3), src=world)
    expect_error(TypeError, "expected a Tensor", dist.all_reduce, np.zeros(3))
    # The group still works after all those errors.
    ok = fg.ones(4)
    dist.all_reduce(ok)
    np.testing.assert_array_equal(ok.numpy(), np.full(4, world, dtype=np.float32))

    # DDP refuses models that differ between ranks.
    model = nn.Linear(3, 2 + rank)
    expect_error(ValueError, "the model differs between ranks", dist.DistributedDataParallel, model)


def collectives_int64(rank: int, world: int) -> None:
    """int64, int32 and bool tensors (the integer dtypes)."""
    values = [np.array([3, -7, 2**40 + 5]) * (r + 1) for r in range(world)]
    stacked = np.stack(values)
    for op, want in {"sum": stacked.sum(0), "max": stacked.max(0), "min": stacked.min(0)}.items():
        t = int64_tensor(values[rank])
        dist.all_reduce(t, op=op)
        assert t.dtype == "int64"
        np.testing.assert_array_equal(t.numpy(), want)
    expect_error(TypeError, "needs a float tensor", dist.all_reduce, int64_tensor([1]), op="mean")
    b = int64_tensor(values[rank])
    dist.broadcast(b, src=1)
    np.testing.assert_array_equal(b.numpy(), values[1])
    # int32 and bool too (bool reduces logically: sum/max is "any", min "all").
    small = fg.Tensor(np.array([1, -2], dtype=np.int32) * (rank + 1), dtype="int32")
    dist.all_reduce(small)
    assert small.dtype == "int32"
    np.testing.assert_array_equal(small.numpy(), np.array([1, -2]) * sum(range(1, world + 1)))
    for op, want in (("max", [True, True, False]), ("min", [False, True, False])):
        flags = fg.Tensor(np.array([rank == 0, True, False]), dtype="bool")
        dist.all_reduce(flags, op=op)
        assert flags.dtype == "bool"
        np.testing.assert_array_equal(flags.numpy(), want)


def make_model(seed: int) -> nn.Module:
    fg.manual_seed(seed)
    return nn.Sequential(nn.Linear(5, 16), nn.Tanh(), nn.Linear(16, 8), nn.ReLU(), nn.Linear(8, 3))


def global_batches(steps: int, batch: int) -> list[tuple[np.ndarray, np.ndarray]]:
    rng = np.random.default_rng(1234)
    return [
        (rng.normal(size=(batch, 5)).astype(np.float32), rng.integers(0, 3, size=batch))
        for _ in range(steps)
    ]


def max_diff(a: nn.Module, b: nn.Module) -> float:
    return max(
        float(np.abs(p.numpy() - q.numpy()).max()) for p, q in zip(a.parameters(), b.parameters())
    )


def ddp(rank: int, world: int) -> None:
    steps, batch = 6, 8 * world
    for cap_mb in (25.0, 0.0005):  # one bucket; then a bucket per parameter or two
        reference = make_model(0)  # one process training on the global batch
        local = make_model(0 if rank == 0 else 99)  # other ranks start elsewhere
        model = dist.DistributedDataParallel(local, bucket_cap_mb=cap_mb)
        assert max_diff(local, reference) == 0.0, "wrapping must copy rank 0's parameters"
        assert list(model.state_dict()) == list(reference.state_dict())
        assert [n for n, _ in model.named_parameters()] == [
            n for n, _ in reference.named_parameters()
        ]
        if cap_mb < 1:
            assert len(model._buckets) > 2, len(model._buckets)
        opt = fg.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
        ref_opt = fg.optim.SGD(reference.parameters(), lr=0.1, momentum=0.9)
        for x, y in global_batches(steps, batch):
            mine = slice(rank * batch // world, (rank + 1) * batch // world)
            opt.zero_grad()
            fg.loss.cross_entropy(model(fg.Tensor(x[mine])), y[mine]).backward()
            # When backward returns, every grad is already the mean over the ranks.
            ref_opt.zero_grad()
            fg.loss.cross_entropy(reference(fg.Tensor(x)), y).backward()
            for p, q in zip(model.parameters(), reference.parameters()):
                np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=1e-6)
            opt.step()
            ref_opt.step()
        assert max_diff(local, reference) <= 1e-5, max_diff(local, reference)
        # Identical, bit for bit, on every rank.
        mine_bytes = b"".join(p.numpy().tobytes() for p in local.parameters())
        assert all(other == mine_bytes for other in dist._comm("test").allgather(mine_bytes))

    # Gradient accumulation: no_sync for the first micro-batch, sync on the second.
    reference = make_model(0)
    model = dist.DistributedDataParallel(make_model(0))
    (x1, y1), (x2, y2) = global_batches(2, batch)
    mine = slice(rank * batch // world, (rank + 1) * batch // world)
    with model.no_sync():
        fg.loss.cross_entropy(model(fg.Tensor(x1[mine])), y1[mine]).backward()
    local_grad = model.parameters()[0].grad.numpy().copy()
    fg.loss.cross_entropy(model(fg.Tensor(x2[mine])), y2[mine]).backward()
    for x, y in ((x1, y1), (x2, y2)):
        fg.loss.cross_entropy(reference(fg.Tensor(x)), y).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_allclose(p.grad.numpy(), q.grad.numpy(), atol=1e-6)
    # Inside no_sync the gradient stayed local (ranks saw different halves).
    gathered = dist._comm("test").allgather(local_grad)
    assert not np.allclose(gathered[0], gathered[1])

    # A parameter left out of the loss: the next forward says which one.
    model = dist.DistributedDataParallel(make_model(0))
    out = model.module[0](fg.Tensor(x1[mine]))  # only layer 0 takes part
    out.sum().backward()
    msg = expect_error(RuntimeError, "did not produce gradients", model, fg.Tensor(x1[mine]))
    assert "4.weight" in msg and "0.weight" not in msg.split("missing:")[1], msg
    # ...and the wrapper works again afterwards.
    model.zero_grad()
    fg.loss.cross_entropy(model(fg.Tensor(x1[mine])), y1[mine]).backward()


def ddp_buffers(rank: int, world: int) -> None:
    """Buffers (BatchNorm statistics) come from rank 0 at wrap and before each forward."""
    fg.manual_seed(rank)
    net = nn.Sequential(nn.Linear(4, 6), nn.BatchNorm1d(6))
    net[1].running_mean.data = np.full(6, float(rank), dtype=np.float32)
    model = dist.DistributedDataParallel(net)
    np.testing.assert_array_equal(net[1].running_mean.numpy(), np.zeros(6, dtype=np.float32))
    x = fg.Tensor(np.random.default_rng(rank).normal(size=(8, 4)).astype(np.float32))
    comm = dist._comm("test")
    model(x)  # training mode: each rank updates the statistics from its own batch
    after_train = comm.allgather(net[1].running_mean.numpy())
    assert not np.array_equal(after_train[0], after_train[1])
    model.eval()
    model(x)  # no update in eval mode, but the forward first copies rank 0's buffers
    np.testing.assert_array_equal(net[1].running_mean.numpy(), after_train[0])
    assert not model.training and not net[1].training


def sampler(rank: int, world: int) -> None:
    n = 23
    s = dist.DistributedSampler(n, seed=5)  # rank and world size from the group
    assert (s.rank, s.num_replicas) == (rank, world)
    epochs = []
    for epoch in range(3):
        s.set_epoch(epoch)
        mine = list(s)
        assert all(isinstance(i, int) for i in mine)
        assert len(mine) == len(s) == -(-n // world)
        shards = dist._comm("test").allgather(mine)
        flat = [i for shard in shards for i in shard]
        assert set(flat) == set(range(n)), "shards must cover the data set"
        assert len(flat) == world * len(s)  # padded by repeating a few indices
        epochs.append(flat)
    assert epochs[0] != epochs[1] != epochs[2], "each epoch reshuffles"


def fault(rank: int, world: int) -> None:
    if rank == 1:
        time.sleep(0.2)
        raise RuntimeError("rank 1 fails on purpose")
    dist.barrier()  # rank 0 waits forever unless the failure aborts the job
    time.sleep(60)


def world_of_one(rank: int, world: int) -> None:
    assert (rank, world) == (0, 1)
    t = fg.Tensor([1.0, -2.0, 3.0])
    for op in ("sum", "mean", "max", "min"):
        dist.all_reduce(t, op=op)
        np.testing.assert_array_equal(t.numpy(), [1.0, -2.0, 3.0])
    dist.broadcast(t, src=0)
    dist.barrier()
    reference, local = make_model(0), make_model(0)
    model = dist.DistributedDataParallel(local)
    ((x, y),) = global_batches(1, 8)
    for net in (model, reference):
        fg.loss.cross_entropy(net(fg.Tensor(x)), y).backward()
    for p, q in zip(model.parameters(), reference.parameters()):
        np.testing.assert_array_equal(p.grad.numpy(), q.grad.numpy())
    assert sorted(dist.DistributedSampler(10, shuffle=True)) == list(range(10))


CASES = {
    f.__name__: f
    for f in (collectives, collectives_int64, ddp, ddp_buffers, sampler, fault, world_of_one)
}

if __name__ == "__main__":
    case = CASES[sys.argv[1]]
    fg.set_num_threads(1)  # one thread per rank: the ranks already share the cores
    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    case(rank, world)
    dist.barrier()
    print(f"OK {case.__name__} rank {rank}", flush=True)
    dist.destroy_process_group()
