"""All-reduce of a ferrograd Tensor against mpi4py's own Allreduce on a NumPy array of the same
bytes: the cost of going through ferrograd.distributed (lock, zero-copy view, shape check).

Run: mpiexec -n 2 python benchmarks/mpi_allreduce.py [--mb 64] [--repeats 15] [--quick]

Both run in the same processes, alternating, each sample timed between barriers as the slowest
rank's time; the figure is the median. Rank 0 prints one JSON line per implementation (the
suite's fields) and the ratio: speed of ferrograd / speed of mpi4py (1.0 = no overhead).
"""

from __future__ import annotations

import argparse
import json
import statistics
import time

import numpy as np

import ferrograd as fg
import ferrograd.distributed as dist


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--mb", type=float, default=64.0, help="message size in MB (float32)")
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--quick", action="store_true", help="1 MB, 3 repeats: a smoke run")
    args = parser.parse_args()
    if args.quick:
        args.mb, args.repeats = 1.0, 3

    from mpi4py import MPI

    dist.init_process_group("mpi")
    comm = MPI.COMM_WORLD
    rank, world = comm.Get_rank(), comm.Get_size()
    n = int(args.mb * 1024 * 1024) // 4
    # Values that stay finite however often they are summed: max keeps them, sum would
    # overflow, and both cost the same per byte.
    array = np.ones(n, dtype=np.float32)
    tensor = fg.Tensor(array)

    def mpi4py_allreduce() -> None:
        comm.Allreduce(MPI.IN_PLACE, array, op=MPI.MAX)

    def ferrograd_allreduce() -> None:
        dist.all_reduce(tensor, op="max")

    impls = {"mpi4py": mpi4py_allreduce, "ferrograd": ferrograd_allreduce}
    samples: dict[str, list[float]] = {name: [] for name in impls}
    for fn in impls.values():  # warm-up: first-touch of pages, MPI's shared-memory setup
        fn()
    for _ in range(args.repeats):
        for name, fn in impls.items():
            comm.Barrier()
            start = time.perf_counter()
            fn()
            elapsed = comm.allreduce(time.perf_counter() - start, op=MPI.MAX)
            samples[name].append(elapsed)
    if rank == 0:
        medians = {name: statistics.median(s) for name, s in samples.items()}
        for name, s in samples.items():
            print(
                json.dumps(
                    {
                        "workload": f"all_reduce {world} ranks",
                        "size": f"{args.mb:g} MB",
                        "threads": 1,
                        "impl": name,
                        "value": round(args.mb / 1024 / medians[name], 3),
                        "unit": "GB/s",
                        "median_ms": round(1e3 * medians[name], 2),
                        "spread_ms": [round(1e3 * min(s), 2), round(1e3 * max(s), 2)],
                    }
                )
            )
        ratio = medians["mpi4py"] / medians["ferrograd"]
        print(
            f"ferrograd all_reduce at {ratio:.2f}x the speed of mpi4py's Allreduce "
            f"({args.mb:g} MB float32, {world} ranks, median of {args.repeats})"
        )
    dist.destroy_process_group()


if __name__ == "__main__":
    main()
