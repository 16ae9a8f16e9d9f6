"""ferrograd.distributed: collectives, DistributedDataParallel, DistributedSampler and fault
handling, run as real MPI jobs (``mpiexec -n 2 python tests/distributed_worker.py CASE``).

Needs the optional extra (``pip install '.[distributed]'``). Without mpi4py these tests are
skipped locally, but fail under CI (``CI=true``), so a CI that lost the extra cannot pass
silently. DistributedSampler's arithmetic and the errors that need no MPI are tested in-process.
"""

from __future__ import annotations

import importlib.util
import math
import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

import ferrograd as fg
import ferrograd.distributed as dist

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).with_name("distributed_worker.py")
HAVE_MPI4PY = importlib.util.find_spec("mpi4py") is not None


def _mpiexec() -> str:
    """The mpiexec beside this Python (the mpich wheel puts it there), else the one on PATH."""
    beside = shutil.which("mpiexec", path=os.path.dirname(sys.executable))
    found = beside or shutil.which("mpiexec")
    if found is None:
        pytest.fail("mpi4py is installed but no mpiexec was found (pip install mpich)")
    return found


@pytest.fixture(scope="module", autouse=True)
def _needs_mpi() -> None:
    if HAVE_MPI4PY:
        return
    message = "mpi4py is not installed: pip install '.[distributed]'"
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the distributed tests: {message}")
    pytest.skip(message)


def _launch(
    script: Path, *args: str, ranks: int | None = 2, timeout: float = 120, cwd: Path | None = None
) -> tuple[subprocess.CompletedProcess[str], float]:
    command = [sys.executable, str(script), *args]
    if ranks is not None:
        command = [_mpiexec(), "-n", str(ranks), *command]
    start = time.monotonic()
    proc = subprocess.run(
        command, check=False, capture_output=True, text=True, timeout=timeout, cwd=cwd
    )
    return proc, time.monotonic() - start


def _run(
    case: str, ranks: int | None = 2, timeout: float = 120
) -> tuple[subprocess.CompletedProcess[str], float]:
    return _launch(WORKER, case, ranks=ranks, timeout=timeout)


def _report(proc: subprocess.CompletedProcess[str]) -> str:
    return f"exit {proc.returncode}\n--- stdout\n{proc.stdout}\n--- stderr\n{proc.stderr}"


def _run_ok(case: str, ranks: int | None = 2) -> None:
    proc, _ = _run(case, ranks)
    report = _report(proc)
    assert proc.returncode == 0, report
    for rank in range(ranks or 1):
        assert f"OK {case} rank {rank}" in proc.stdout, report


def test_all_reduce_and_broadcast_give_each_op_and_dtype_its_answer_and_reject_mismatches():
    _run_ok("collectives")


def test_all_reduce_and_broadcast_work_on_int64_int32_and_bool_tensors():
    _run_ok("collectives_int64")


def test_data_parallel_training_matches_one_process_on_the_global_batch():
    _run_ok("ddp")


def test_data_parallel_wrapper_copies_rank_zeros_buffers_at_wrap_and_before_each_forward():
    _run_ok("ddp_buffers")


def test_sampler_shards_from_the_group_are_disjoint_covering_equal_and_reshuffled():
    _run_ok("sampler")


def test_a_rank_that_raises_ends_the_whole_job_nonzero_within_seconds():
    proc, seconds = _run("fault", timeout=60)
    assert proc.returncode != 0, proc.stdout + proc.stderr
    assert "rank 1 fails on purpose" in proc.stderr
    assert "aborting all 2 ranks" in proc.stderr
    assert "OK fault" not in proc.stdout
    assert seconds < 20, f"took {seconds:.1f} s"


def test_a_world_of_one_works_without_mpiexec():
    _run_ok("world_of_one", ranks=None)


def test_the_ddp_example_trains_on_two_ranks_and_only_rank_zero_prints_and_saves(tmp_path):
    proc, _ = _launch(
        ROOT / "examples" / "train_digits_ddp.py",
        "--epochs",
        "3",
        "--out",
        str(tmp_path),
        cwd=tmp_path,
    )
    assert proc.returncode == 0, _report(proc)
    assert proc.stdout.count("2 ranks:") == 1, proc.stdout  # rank 0 alone reports
    assert [p.name for p in tmp_path.iterdir()] == ["digits_mlp_ddp.safetensors"]
    accuracy = float(re.search(r"2 ranks: ([\d.]+)% test accuracy", proc.stdout).group(1))
    assert accuracy > 90.0, proc.stdout  # 3 epochs; the full 60 reach about 97.8 %


def _docs_scripts() -> list[str]:
    text = (ROOT / "docs" / "distributed.md").read_text(encoding="utf-8")
    blocks = re.findall(r"^```python\n(.*?)^```", text, re.DOTALL | re.MULTILINE)
    return [b for b in blocks if b.startswith("# mpiexec -n 2 python ")]


def test_the_docs_scripts_for_mpiexec_run_on_two_ranks(tmp_path):
    scripts = _docs_scripts()
    assert len(scripts) >= 3
    out = {}
    for code in scripts:
        name = code.split("\n", 1)[0].rsplit(" ", 1)[1]
        (tmp_path / name).write_text(code, encoding="utf-8")
        proc, _ = _launch(tmp_path / name, cwd=tmp_path)
        assert proc.returncode == 0, f"{name}: {_report(proc)}"
        out[name] = proc.stdout
    assert out["train.py"].count("2 ranks: training accuracy") == 1, out["train.py"]
    assert (tmp_path / "model.safetensors").exists()


def test_the_allreduce_benchmark_runs(tmp_path):
    proc, _ = _launch(ROOT / "benchmarks" / "mpi_allreduce.py", "--quick", cwd=tmp_path)
    assert proc.returncode == 0, _report(proc)
    assert "the speed of mpi4py's Allreduce" in proc.stdout


# ----- in-process: no MPI job needed -----------------------------------------------------------


def test_collectives_before_init_process_group_raise_runtime_error():
    assert not dist.is_initialized()
    for call in (
        lambda: dist.all_reduce(fg.zeros(2)),
        dist.get_rank,
        dist.get_world_size,
        dist.barrier,
        lambda: dist.DistributedDataParallel(fg.layers.Linear(2, 2)),
    ):
        with pytest.raises(RuntimeError, match="init_process_group"):
            call()


def test_init_process_group_rejects_other_backends():
    with pytest.raises(ValueError, match="backend must be 'mpi'"):
        dist.init_process_group("nccl")


def test_a_missing_mpi4py_is_an_import_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "mpi4py", None)  # makes `import mpi4py` fail
    with pytest.raises(ImportError, match=r"pip install 'ferrograd\[distributed\]'"):
        dist.init_process_group()
    assert not dist.is_available()
    assert not dist.is_initialized()


def _pytorch_shards(n, replicas, shuffle_order, drop_last):
    """PyTorch's DistributedSampler.__iter__, written out, for a given epoch order."""
    if drop_last and n % replicas:
        per = math.ceil((n - replicas) / replicas)
    else:
        per = math.ceil(n / replicas)
    total = per * replicas
    indices = list(shuffle_order)
    if not drop_last:
        pad = total - len(indices)
        if pad <= len(indices):
            indices += indices[:pad]
        else:
            indices += (indices * math.ceil(pad / len(indices)))[:pad]
    else:
        indices = indices[:total]
    return [indices[r:total:replicas] for r in range(replicas)]


@pytest.mark.parametrize("n", [0, 1, 2, 7, 10, 23])
@pytest.mark.parametrize("replicas", [1, 2, 3, 4, 8])
@pytest.mark.parametrize("drop_last", [False, True])
def test_sampler_shards_follow_pytorchs_padding_rule(n, replicas, drop_last):
    samplers = [
        dist.DistributedSampler(n, replicas, r, shuffle=False, drop_last=drop_last)
        for r in range(replicas)
    ]
    want = _pytorch_shards(n, replicas, range(n), drop_last)
    assert [list(s) for s in samplers] == want
    assert all(len(s) == len(want[0]) for s in samplers)
    if not drop_last and n:
        assert {i for shard in want for i in shard} == set(range(n))  # covering
    if n >= replicas or drop_last:
        flat = [i for shard in want for i in shard]
        assert len(flat) == len(set(flat)) or not drop_last  # drop_last shards are disjoint


def test_sampler_shuffles_alike_on_every_rank_and_differently_each_epoch():
    n, replicas = 50, 3
    samplers = [dist.DistributedSampler(n, replicas, r, seed=7) for r in range(replicas)]
    orders = []
    for epoch in range(3):
        for s in samplers:
            s.set_epoch(epoch)
        shards = [list(s) for s in samplers]
        flat = [i for shard in shards for i in shard]
        assert set(flat) == set(range(n))
        assert len(flat) == replicas * math.ceil(n / replicas)
        assert len(set(shards[0]) & set(shards[1])) == 0
        # Every rank used the same permutation: interleaving the shards rebuilds it.
        order = np.random.default_rng(7 + epoch).permutation(n).tolist()
        assert shards == _pytorch_shards(n, replicas, order, drop_last=False)
        orders.append(flat)
    assert orders[0] != orders[1] and orders[1] != orders[2]
    again = dist.DistributedSampler(n, replicas, 0, seed=7)
    again.set_epoch(1)
    samplers[0].set_epoch(1)
    assert list(again) == list(samplers[0])


def test_sampler_takes_a_dataset_and_indexes_arrays():
    X = np.arange(20.0).reshape(10, 2)
    s = dist.DistributedSampler(X, num_replicas=2, rank=1, shuffle=False)
    np.testing.assert_array_equal(X[list(s)], X[1::2])
    np.testing.assert_array_equal(s.indices(), np.arange(1, 10, 2))


def test_sampler_rejects_bad_arguments():
    with pytest.raises(ValueError, match="invalid rank 2"):
        dist.DistributedSampler(10, num_replicas=2, rank=2)
    with pytest.raises(ValueError, match="num_replicas must be >= 1"):
        dist.DistributedSampler(10, num_replicas=0, rank=0)
    with pytest.raises(ValueError, match="n must be >= 0"):
        dist.DistributedSampler(-1, num_replicas=1, rank=0)
    with pytest.raises(TypeError, match="n must be an int"):
        dist.DistributedSampler(2.5, num_replicas=1, rank=0)
    with pytest.raises(RuntimeError, match="pass num_replicas and rank"):
        dist.DistributedSampler(10)
    with pytest.raises(TypeError, match="epoch must be an int"):
        dist.DistributedSampler(10, 1, 0).set_epoch(1.5)
