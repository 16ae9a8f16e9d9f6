"""Train the digits MLP of train_digits.py data-parallel over MPI.

Run: mpiexec -n 2 python examples/train_digits_ddp.py [--epochs N] [--out DIR]
(needs the extra: pip install 'ferrograd[distributed]'; plain `python` runs a world of one).

Every rank builds the same model and the DistributedDataParallel wrapper copies rank 0's
weights to the others. Each epoch, a DistributedSampler hands each rank its own shard of the
training set; each rank computes the loss of its part of every batch, backward averages the
gradients over the ranks, and every rank takes the same optimizer step, so the models stay
identical. The global batch is 32 whatever the number of ranks, so a run on any number of
ranks follows the same schedule as `python examples/train_digits.py`. Only rank 0 prints and
writes the checkpoint.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

import ferrograd as fg
import ferrograd.distributed as dist

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from train_digits import accuracy, mlp, split, standardize

GLOBAL_BATCH = 32


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=60)
    parser.add_argument("--out", type=Path, default=Path("."))
    args = parser.parse_args()

    dist.init_process_group("mpi")
    rank, world = dist.get_rank(), dist.get_world_size()
    if GLOBAL_BATCH % world:
        raise SystemExit(f"run on a number of ranks that divides {GLOBAL_BATCH}")
    # Ranks already share the machine's cores: split them rather than oversubscribe.
    fg.set_num_threads(max(1, (os.cpu_count() or 1) // world))

    (x_train, y_train), (x_test, y_test) = standardize(split(), per_pixel=True)
    fg.manual_seed(rank)  # differs on purpose: the wrapper copies rank 0's initial weights
    model = dist.DistributedDataParallel(mlp())
    opt = fg.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-4)
    sched = fg.optim.CosineAnnealingLR(opt, T_max=args.epochs)
    sampler = dist.DistributedSampler(len(x_train), shuffle=True, seed=1)
    per_rank = GLOBAL_BATCH // world
    fg.manual_seed(1000 + rank)  # each rank its own dropout masks
    if rank == 0:
        print(
            f"digits: {len(y_train)} training and {len(y_test)} test images, {world} ranks, "
            f"{len(sampler)} training images and batches of {per_rank} per rank"
        )

    start = time.perf_counter()
    for epoch in range(1, args.epochs + 1):
        sampler.set_epoch(epoch)  # a new shuffle each epoch, the same on every rank
        shard = sampler.indices()
        model.train()
        total = fg.zeros(2, dtype="float64")  # (sum of losses, sample count) on this rank
        for i in range(0, len(shard), per_rank):
            idx = shard[i : i + per_rank]
            loss = fg.loss.cross_entropy(model(fg.Tensor(x_train[idx])), y_train[idx])
            opt.zero_grad()
            loss.backward()  # returns with each grad averaged over the ranks
            opt.step()
            with fg.no_grad():
                total += fg.Tensor([loss.item() * len(idx), len(idx)], dtype="float64")
        sched.step()
        dist.all_reduce(total)  # the epoch's mean loss over every rank's samples
        if rank == 0 and (epoch % 10 == 0 or epoch == args.epochs):
            loss_sum, count = total.tolist()
            print(
                f"epoch {epoch:2d}  loss {loss_sum / count:.4f}  "
                f"test accuracy {accuracy(model.module, x_test, y_test):.2%}"
            )

    # Every rank holds the same weights: check it, then let rank 0 alone evaluate and save.
    weights = np.concatenate([p.numpy().ravel() for p in model.parameters()])
    first = fg.Tensor(weights)
    dist.broadcast(first, src=0)
    if not np.array_equal(first.numpy(), weights):
        # An exception (not SystemExit, which skips the excepthook) aborts every rank.
        raise RuntimeError(f"rank {rank}: the weights differ from rank 0's")
    if rank == 0:
        acc = accuracy(model.module, x_test, y_test)
        args.out.mkdir(parents=True, exist_ok=True)
        path = args.out / "digits_mlp_ddp.safetensors"
        fg.save(model.state_dict(), path)  # the bare model's names: loads into mlp() directly
        reloaded = mlp()
        reloaded.load_state_dict(fg.load(path))
        print(
            f"{world} ranks: {acc:.2%} test accuracy in {time.perf_counter() - start:.1f} s; "
            f"saved {path} (reloaded: {accuracy(reloaded, x_test, y_test):.2%})"
        )
    dist.barrier()
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
