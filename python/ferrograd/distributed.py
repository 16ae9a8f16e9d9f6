"""Training on several processes or machines over MPI, with ``torch.distributed``'s names.

Install the optional extra (``pip install 'ferrograd[distributed]'``: mpi4py and the MPICH
wheel; mpi4py built against a system MPI works as well) and start one process per rank with
``mpiexec -n 4 python train.py``. Each process calls :func:`init_process_group`, wraps its model
in :class:`DistributedDataParallel` and reads its own shard of the data through
:class:`DistributedSampler`. Run without ``mpiexec``, a script is a world of one.

The collectives (:func:`all_reduce`, :func:`broadcast`) read and write the tensor's own memory:
MPI works on it directly, with no copy and no Python loop over elements.

:class:`DistributedSampler` needs no MPI when given ``num_replicas`` and ``rank``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from types import TracebackType
from typing import Any, Callable
from weakref import ref

import numpy as np

from ferrograd import _core
from ferrograd._core import NdArray, Tensor
from ferrograd.layers.module import Module

__all__ = [
    "DistributedDataParallel",
    "DistributedSampler",
    "ReduceOp",
    "all_reduce",
    "barrier",
    "broadcast",
    "destroy_process_group",
    "get_rank",
    "get_world_size",
    "init_process_group",
    "is_available",
    "is_initialized",
]

_EXTRA = (
    "ferrograd.distributed needs mpi4py and an MPI library: pip install 'ferrograd[distributed]' "
    "(or mpi4py built against your system MPI)"
)


def _mpi() -> Any:
    """The ``mpi4py.MPI`` module (importing it initialises MPI), or ImportError naming the extra."""
    try:
        from mpi4py import MPI
    except (ImportError, RuntimeError) as e:  # RuntimeError: mpi4py found no MPI library
        raise ImportError(f"{_EXTRA} ({e})") from e
    return MPI


def is_available() -> bool:
    """Whether mpi4py can be imported (``torch.distributed.is_available``)."""
    try:
        _mpi()
    except ImportError:
        return False
    return True


# ----- the process group ------------------------------------------------------------------------


class _Group:
    """The default process group: a private duplicate of MPI's world communicator, so user MPI
    code on COMM_WORLD never matches our messages."""

    comm: Any = None
    previous_excepthook: Callable[..., Any] | None = None


_group = _Group()


def _abort_on_uncaught_exception(
    exc_type: type[BaseException], exc: BaseException, tb: TracebackType | None
) -> None:
    """sys.excepthook while a group is up: print the traceback as usual, then abort every rank,
    so the others do not wait forever in a collective this rank will never join."""
    previous = _group.previous_excepthook or sys.__excepthook__
    try:
        previous(exc_type, exc, tb)
    finally:
        MPI = _mpi()
        world = MPI.COMM_WORLD
        if world.Get_size() > 1:
            print(
                f"ferrograd.distributed: rank {world.Get_rank()} raised {exc_type.__name__}; "
                f"aborting all {world.Get_size()} ranks",
                file=sys.stderr,
            )
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            # The launcher forwards output asynchronously and Abort tears it down at once:
            # give it a moment, or the traceback just printed can be lost (seen in CI).
            time.sleep(0.5)
            world.Abort(1)


def init_process_group(backend: str = "mpi") -> None:
    """Joins the group of processes started by ``mpiexec`` (rank and world size come from MPI;
    without ``mpiexec`` the world is this one process).

    Also installs a ``sys.excepthook`` that aborts the whole job when any rank dies of an
    uncaught exception, instead of leaving the others blocked in a collective.
    """
    if not isinstance(backend, str) or backend.lower() != "mpi":
        raise ValueError(
            f"init_process_group: backend must be 'mpi' (the only one), got {backend!r}"
        )
    if _group.comm is not None:
        raise RuntimeError(
            "init_process_group: trying to initialize the default process group twice"
        )
    MPI = _mpi()
    _group.comm = MPI.COMM_WORLD.Dup()
    _group.previous_excepthook = sys.excepthook
    sys.excepthook = _abort_on_uncaught_exception


def is_initialized() -> bool:
    """Whether :func:`init_process_group` was called (and not undone)."""
    return _group.comm is not None


def _comm(what: str) -> Any:
    if _group.comm is None:
        raise RuntimeError(
            f"{what}: the default process group has not been initialized; "
            "call ferrograd.distributed.init_process_group() first"
        )
    return _group.comm


def destroy_process_group() -> None:
    """Leaves the group and restores ``sys.excepthook``. MPI itself stays up until the process
    exits (it cannot be restarted), so :func:`init_process_group` may be called again."""
    comm = _comm("destroy_process_group")
    _group.comm = None
    if sys.excepthook is _abort_on_uncaught_exception:
        sys.excepthook = _group.previous_excepthook or sys.__excepthook__
    _group.previous_excepthook = None
    comm.Free()


def get_rank() -> int:
    """This process's rank, 0 … world size - 1."""
    return int(_comm("get_rank").Get_rank())


def get_world_size() -> int:
    """The number of processes in the group."""
    return int(_comm("get_world_size").Get_size())


def barrier() -> None:
    """Waits until every rank has called ``barrier``."""
    _comm("barrier").Barrier()


# ----- collectives ------------------------------------------------------------------------------


class ReduceOp:
    """The reductions :func:`all_reduce` takes (``torch.distributed.ReduceOp``'s names); plain
    strings work too: ``"sum"``, ``"mean"`` (``"avg"``), ``"max"``, ``"min"``, ``"product"``."""

    SUM = "sum"
    AVG = "mean"
    MAX = "max"
    MIN = "min"
    PRODUCT = "product"


_OPS = {
    "sum": "sum",
    "mean": "mean",
    "avg": "mean",
    "max": "max",
    "min": "min",
    "product": "product",
    "prod": "product",
}
_OP_CODES = {"sum": 1, "mean": 2, "max": 3, "min": 4, "product": 5}
_DTYPE_CODES = {"float32": 1, "float64": 2, "int64": 3, "int32": 4, "bool": 5}
_FLOATS = ("float32", "float64")
# A code per collective in the consistency check, so two ranks calling different ones differ.
_ALL_REDUCE, _BROADCAST = 1, 2


def _mpi_datatype(MPI: Any, dtype: str) -> Any:
    return {
        "float32": MPI.FLOAT,
        "float64": MPI.DOUBLE,
        "int64": MPI.INT64_T,
        "int32": MPI.INT32_T,
        "bool": MPI.C_BOOL,
    }[dtype]


def _mpi_op(MPI: Any, op: str, dtype: str) -> Any:
    if dtype == "bool":  # MPI reduces booleans with logical ops only; sum/max is "any", min "all"
        return {"sum": MPI.LOR, "max": MPI.LOR, "min": MPI.LAND, "product": MPI.LAND}[op]
    return {"sum": MPI.SUM, "mean": MPI.SUM, "max": MPI.MAX, "min": MPI.MIN, "product": MPI.PROD}[
        op
    ]


def _tensor_arg(what: str, tensor: Any) -> str:
    """Checks ``tensor`` is a Tensor or NdArray of a dtype MPI can carry; returns the dtype."""
    if not isinstance(tensor, (Tensor, NdArray)):
        raise TypeError(f"{what}: expected a Tensor, got {type(tensor).__name__}")
    dtype = str(tensor.dtype)
    if dtype not in _DTYPE_CODES:
        raise TypeError(f"{what}: unsupported dtype {dtype}")
    return dtype


def _shape_code(shape: tuple[int, ...]) -> int:
    """A polynomial hash of a shape, so equal element counts with different shapes differ."""
    h = 0
    for d in shape:
        h = (h * 1_000_003 + int(d) + 1) % (2**61 - 1)
    return h


def _check_same_on_every_rank(comm: Any, what: str, tensor: Any, dtype: str, extra: int) -> None:
    """Raises ValueError on every rank when the ranks' tensors (shape, dtype) or calls (which
    collective, op, root) differ, instead of MPI hanging or corrupting memory.

    One fixed-size Allreduce (64 bytes) per call. A per-tensor "first call only" cache would be
    cheaper, but ranks could disagree on whether a call is the first, and then the check itself
    would be a mismatched collective.
    """
    MPI = _mpi()
    shape = tuple(tensor.shape)
    sig = np.array(
        [len(shape), math.prod(shape), _DTYPE_CODES[dtype], extra, _shape_code(shape)],
        dtype=np.int64,
    )
    both = np.concatenate([sig, -sig])
    agreed = np.empty_like(both)
    comm.Allreduce(both, agreed, op=MPI.MAX)
    if np.array_equal(agreed, both):  # max == mine and min == mine: everyone sent the same
        return
    seen = comm.allgather((shape, dtype, extra))
    listed = ", ".join(f"rank {r} has shape {s} {d}" for r, (s, d, _) in enumerate(seen))
    if all((s, d) == (shape, dtype) for s, d, _ in seen):
        raise ValueError(f"{what}: the ranks called it with different arguments (op or src)")
    raise ValueError(
        f"{what}: the tensors differ between ranks: {listed}; every rank must pass a tensor "
        "of the same shape and dtype"
    )


def all_reduce(tensor: Tensor | NdArray, op: str = "sum") -> None:
    """Reduces ``tensor`` over all ranks, in place: afterwards every rank holds the sum (or
    ``"mean"``, ``"max"``, ``"min"``, ``"product"``). float32, float64 and integer tensors;
    ``"mean"`` needs floats (TypeError otherwise). Every rank must pass a tensor of the same
    shape and dtype (ValueError on all ranks otherwise)."""
    comm = _comm("all_reduce")
    dtype = _tensor_arg("all_reduce", tensor)
    key = _OPS.get(op.lower()) if isinstance(op, str) else None
    if key is None:
        raise ValueError(
            f"all_reduce: op must be one of 'sum', 'mean', 'max', 'min', 'product', got {op!r}"
        )
    if key == "mean" and dtype not in _FLOATS:
        raise TypeError(
            f"all_reduce: op='mean' needs a float tensor, got {dtype}; cast first (t.float())"
        )
    _check_same_on_every_rank(comm, "all_reduce", tensor, dtype, _ALL_REDUCE * 16 + _OP_CODES[key])
    MPI = _mpi()
    datatype, mpi_op, world = _mpi_datatype(MPI, dtype), _mpi_op(MPI, key, dtype), comm.Get_size()

    def reduce(view: np.ndarray) -> None:
        comm.Allreduce(MPI.IN_PLACE, [view, datatype], op=mpi_op)
        if key == "mean":
            np.divide(view, world, out=view)

    _core._with_buffer(tensor, reduce)


def broadcast(tensor: Tensor | NdArray, src: int = 0) -> None:
    """Copies rank ``src``'s ``tensor`` into ``tensor`` on every other rank, in place. Every
    rank must pass a tensor of the same shape and dtype."""
    comm = _comm("broadcast")
    dtype = _tensor_arg("broadcast", tensor)
    world = comm.Get_size()
    if isinstance(src, bool) or not isinstance(src, (int, np.integer)) or not 0 <= src < world:
        raise ValueError(f"broadcast: src must be a rank in 0..{world - 1}, got {src!r}")
    _check_same_on_every_rank(comm, "broadcast", tensor, dtype, _BROADCAST * 1_000_000 + int(src))
    _broadcast(comm, tensor, dtype, int(src))


def _broadcast(comm: Any, tensor: Tensor | NdArray, dtype: str, src: int) -> None:
    datatype = _mpi_datatype(_mpi(), dtype)
    _core._with_buffer(tensor, lambda view: comm.Bcast([view, datatype], root=src))


# ----- DistributedDataParallel ------------------------------------------------------------------


class _Bucket:
    """Gradients of a few parameters, flattened into one buffer and all-reduced in one call."""

    def __init__(self, params: list[Tensor], dtype: str) -> None:
        self.params = params
        self.dtype = dtype
        self.sizes = [int(p.size) for p in params]
        self.offsets = [0, *np.cumsum(self.sizes)[:-1].tolist()]
        self.flat = np.zeros(sum(self.sizes), dtype=dtype)
        self.arrived = [False] * len(params)  # whose grad is in `flat` this reduction
        self.waiting = len(params)
        self.request: Any = None


class DistributedDataParallel(Module):
    """Wraps a model for data-parallel training, with ``torch.nn.parallel.
    DistributedDataParallel``'s contract.

    - Wrapping broadcasts rank 0's parameters and buffers, so every rank starts equal (and
      checks every rank wraps the same architecture: ValueError otherwise).
    - After ``loss.backward()`` returns, each parameter's ``.grad`` is the mean over the ranks
      of their gradients. The gradients travel in buckets of about ``bucket_cap_mb`` MB, each
      flattened and all-reduced (non-blocking) as soon as its last gradient is ready, while
      backward goes on with the rest.
    - ``with ddp.no_sync():`` backward passes only accumulate locally (gradient accumulation);
      the first backward outside syncs the accumulated sum.
    - ``state_dict()``, ``parameters()`` and the other Module methods see the wrapped module's
      own names (no ``module.`` prefix), so a checkpoint loads into the bare model.
    - Calling it calls the wrapped module; with ``broadcast_buffers`` it first copies rank 0's
      buffers (BatchNorm statistics) to every rank.

    Every parameter that requires grad must receive a gradient in each synced backward (as
    PyTorch's default, ``find_unused_parameters=False``); otherwise the next forward raises
    RuntimeError naming the ones that did not.
    """

    module: Module
    broadcast_buffers: bool
    _comm: Any
    _world: int
    _sync: bool
    _buckets: list[_Bucket]
    _slot: dict[int, tuple[_Bucket, int]]
    _waiting: int
    _next_to_start: int
    _handles: list[Any]

    def __init__(
        self, module: Module, bucket_cap_mb: float = 25.0, broadcast_buffers: bool = True
    ) -> None:
        super().__init__()
        if not isinstance(module, Module):
            raise TypeError(
                f"DistributedDataParallel: expected a Module, got {type(module).__name__}"
            )
        if not bucket_cap_mb > 0:
            raise ValueError(
                f"DistributedDataParallel: bucket_cap_mb must be > 0, got {bucket_cap_mb}"
            )
        comm = _comm("DistributedDataParallel")
        d = self.__dict__
        # Kept outside the registries: the Module methods reach the module's tensors through
        # named_modules() below, under their bare names.
        d["module"] = module
        d["broadcast_buffers"] = bool(broadcast_buffers)
        d["_comm"] = comm
        d["_world"] = int(comm.Get_size())
        d["_sync"] = True
        self._check_same_model(comm, module)
        # Rank 0's values everywhere (the layout was just checked, so no per-tensor check).
        for _, t in [*module.named_parameters(), *module.named_buffers()]:
            _broadcast(comm, t, str(t.dtype), 0)
        params = [p for p in module.parameters() if p.requires_grad]
        d["_buckets"] = self._make_buckets(params, bucket_cap_mb * 1024 * 1024)
        d["_slot"] = {p._id: (b, i) for b in self._buckets for i, p in enumerate(b.params)}
        d["_waiting"] = len(params)
        d["_next_to_start"] = 0
        # Hooks hold the wrapper weakly: the parameters (which own the hooks) must not keep it
        # alive; when it goes, its hooks are removed.
        me = ref(self)

        def on_grad_ready(p: Tensor) -> None:
            ddp = me()
            if ddp is not None:
                ddp._on_grad_ready(p)

        # In a world of one each gradient already is the mean: no hooks, no cost.
        d["_handles"] = (
            [p.register_post_accumulate_grad_hook(on_grad_ready) for p in params]
            if self._world > 1
            else []
        )

    def __del__(self) -> None:
        for handle in self.__dict__.get("_handles", ()):
            handle.remove()

    @staticmethod
    def _check_same_model(comm: Any, module: Module) -> None:
        layout = [
            (name, tuple(t.shape), str(t.dtype), bool(t.requires_grad))
            for name, t in [*module.named_parameters(), *module.named_buffers()]
        ]
        layouts = comm.allgather(layout)
        for rank, other in enumerate(layouts):
            if other != layout:
                first = next(
                    (
                        f"{a} on rank {comm.Get_rank()} but {b} on rank {rank}"
                        for a, b in zip(layout, other)
                        if a != b
                    ),
                    f"{len(layout)} tensors on rank {comm.Get_rank()} but {len(other)} on "
                    f"rank {rank}",
                )
                raise ValueError(
                    "DistributedDataParallel: the model differs between ranks (name, shape, "
                    f"dtype, requires_grad): {first}"
                )

    @staticmethod
    def _make_buckets(params: list[Tensor], cap_bytes: float) -> list[_Bucket]:
        # Reverse order: backward produces the last layers' gradients first, so the first
        # bucket fills (and starts its all-reduce) early.
        buckets: list[_Bucket] = []
        current: list[Tensor] = []
        size = 0
        for p in reversed(params):
            nbytes = int(p.size) * np.dtype(str(p.dtype)).itemsize
            if current and (size + nbytes > cap_bytes or str(current[0].dtype) != str(p.dtype)):
                buckets.append(_Bucket(current, str(current[0].dtype)))
                current, size = [], 0
            current.append(p)
            size += nbytes
        if current:
            buckets.append(_Bucket(current, str(current[0].dtype)))
        return buckets

    # ----- the reducer --------------------------------------------------------------------------
    def _on_grad_ready(self, p: Tensor) -> None:
        """The post-accumulate-grad hook of every parameter: copy its grad into its bucket;
        start the bucket's all-reduce when it is full; finish all when the last grad came."""
        if not self._sync:
            return
        bucket, i = self._slot[p._id]
        if bucket.arrived[i]:
            raise RuntimeError(
                "DistributedDataParallel: a parameter's gradient arrived twice in one reduction: "
                "the previous backward left parameters without gradients: "
                + ", ".join(self._missing())
            )
        start, n = bucket.offsets[i], bucket.sizes[i]
        grad = p.grad
        if grad is None:  # the engine runs the hook only after accumulating a grad
            raise RuntimeError("DistributedDataParallel: a gradient hook ran without a gradient")
        _core._with_buffer(grad, lambda g: np.copyto(bucket.flat[start : start + n], g.reshape(-1)))
        bucket.arrived[i] = True
        bucket.waiting -= 1
        self.__dict__["_waiting"] = self._waiting - 1
        self._start_ready_buckets()
        if self._waiting == 0:
            self._finish()

    def _start_ready_buckets(self) -> None:
        """Starts the all-reduce of full buckets in bucket order: every rank must issue its
        collectives in the same order, whatever order backward produced the gradients in."""
        MPI = _mpi()
        buckets = self._buckets
        k = self._next_to_start
        while k < len(buckets) and buckets[k].waiting == 0:
            b = buckets[k]
            b.request = self._comm.Iallreduce(
                MPI.IN_PLACE, [b.flat, _mpi_datatype(MPI, b.dtype)], op=MPI.SUM
            )
            k += 1
        self.__dict__["_next_to_start"] = k
        # MPI moves non-blocking collectives on only inside MPI calls: give the started ones a
        # turn while backward still has gradients to compute.
        if 0 < k < len(buckets):
            MPI.Request.Testall([b.request for b in buckets[:k]])

    def _finish(self) -> None:
        """Waits for every bucket, then writes the mean gradients back into the ``.grad``s."""
        MPI = _mpi()
        MPI.Request.Waitall([b.request for b in self._buckets])
        world = self._world
        for b in self._buckets:
            for p, start, n in zip(b.params, b.offsets, b.sizes):
                src = b.flat[start : start + n]

                def write_mean(g: np.ndarray, src: np.ndarray = src) -> None:
                    np.divide(src.reshape(g.shape), world, out=g)

                grad = p.grad
                if grad is not None:
                    _core._with_buffer(grad, write_mean)
        self._reset()

    def _reset(self) -> None:
        for b in self._buckets:
            b.arrived = [False] * len(b.params)
            b.waiting = len(b.params)
            b.request = None
        self.__dict__["_waiting"] = sum(len(b.params) for b in self._buckets)
        self.__dict__["_next_to_start"] = 0

    def _missing(self) -> list[str]:
        """The names of the parameters whose gradient has not arrived in this reduction."""
        names = {p._id: name for name, p in self.module.named_parameters()}
        return [
            names.get(p._id, "?")
            for b in self._buckets
            for p, arrived in zip(b.params, b.arrived)
            if not arrived
        ]

    # ----- Module interface ---------------------------------------------------------------------
    def named_modules(
        self, prefix: str = "", _memo: set[int] | None = None, remove_duplicate: bool = True
    ) -> Iterator[tuple[str, Module]]:
        """The wrapped module's modules, under its own names (no ``module.`` prefix)."""
        return self.module.named_modules(prefix, _memo, remove_duplicate)

    def train(self, mode: bool = True) -> DistributedDataParallel:
        """Sets training mode on the wrapped module (and on this wrapper); returns self."""
        self.module.train(mode)
        self.__dict__["training"] = bool(mode)
        return self

    @contextmanager
    def no_sync(self) -> Iterator[None]:
        """Inside, backward accumulates gradients locally without communicating; the first
        backward after it averages the accumulated sum over the ranks."""
        previous = self._sync
        self.__dict__["_sync"] = False
        try:
            yield
        finally:
            self.__dict__["_sync"] = previous

    def forward(self, *args: Any, **kwargs: Any) -> Any:
        if self._waiting != sum(len(b.params) for b in self._buckets):
            missing = self._missing()
            # Every rank started the same buckets (same model, same graph): finish them so no
            # request is left dangling, then start the next reduction afresh.
            _mpi().Request.Waitall([b.request for b in self._buckets if b.request is not None])
            self._reset()
            raise RuntimeError(
                "DistributedDataParallel: the previous backward did not produce gradients for "
                f"every parameter (missing: {', '.join(missing) or 'unknown'}); each parameter "
                "that requires grad must take part in the loss of every synced backward"
            )
        if self.broadcast_buffers and self._world > 1:
            for _, b in self.module.named_buffers():
                _broadcast(self._comm, b, str(b.dtype), 0)
        return self.module(*args, **kwargs)

    def __repr__(self) -> str:
        inner = repr(self.module).replace("\n", "\n  ")
        return f"DistributedDataParallel(\n  (module): {inner}\n)"


# ----- DistributedSampler -----------------------------------------------------------------------


class DistributedSampler:
    """The indices of this rank's shard of a dataset of ``n`` samples
    (``torch.utils.data.DistributedSampler``, with ``n`` or any object with ``len()``).

    Every rank gets ``ceil(n / num_replicas)`` indices: without ``drop_last`` the shuffled list
    is padded by repeating its start until it divides evenly; with ``drop_last`` the tail is
    dropped instead (``floor`` then). Rank ``r`` takes every ``num_replicas``-th index from
    position ``r``, so the shards are disjoint. With ``shuffle`` the order is a permutation
    seeded by ``seed + epoch``: the same on every rank, different each epoch — call
    :meth:`set_epoch` at the start of each epoch. ``num_replicas`` and ``rank`` default to the
    process group's.

    Iterating yields ints; ``len()`` is the shard size. Index your arrays with them, or pass
    the sampler to a ``DataLoader``.
    """

    def __init__(
        self,
        n: Any,
        num_replicas: int | None = None,
        rank: int | None = None,
        shuffle: bool = True,
        seed: int = 0,
        drop_last: bool = False,
    ) -> None:
        if isinstance(n, bool):
            raise TypeError("DistributedSampler: n must be an int or have len(), got a bool")
        if isinstance(n, (int, np.integer)):
            size = int(n)
        elif hasattr(n, "__len__"):
            size = len(n)
        else:
            raise TypeError(
                f"DistributedSampler: n must be an int or have len(), got {type(n).__name__}"
            )
        if size < 0:
            raise ValueError(f"DistributedSampler: n must be >= 0, got {size}")
        if num_replicas is None or rank is None:
            if not is_initialized():
                raise RuntimeError(
                    "DistributedSampler: pass num_replicas and rank, or call "
                    "ferrograd.distributed.init_process_group() first"
                )
            num_replicas = get_world_size() if num_replicas is None else num_replicas
            rank = get_rank() if rank is None else rank
        for name, v in (("num_replicas", num_replicas), ("rank", rank), ("seed", seed)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
                raise TypeError(f"DistributedSampler: {name} must be an int, got {v!r}")
        if num_replicas < 1:
            raise ValueError(f"DistributedSampler: num_replicas must be >= 1, got {num_replicas}")
        if not 0 <= rank < num_replicas:
            raise ValueError(
                f"DistributedSampler: invalid rank {rank}, rank should be in the interval "
                f"[0, {num_replicas - 1}]"
            )
        self.n = size
        self.num_replicas = int(num_replicas)
        self.rank = int(rank)
        self.shuffle = bool(shuffle)
        self.seed = int(seed)
        self.drop_last = bool(drop_last)
        self.epoch = 0
        if self.drop_last and size % self.num_replicas != 0:
            self.num_samples = math.ceil((size - self.num_replicas) / self.num_replicas)
        else:
            self.num_samples = math.ceil(size / self.num_replicas)
        self.total_size = self.num_samples * self.num_replicas

    def set_epoch(self, epoch: int) -> None:
        """Sets the epoch, which seeds the shuffle: call it before each epoch's iteration."""
        if isinstance(epoch, bool) or not isinstance(epoch, (int, np.integer)):
            raise TypeError(f"DistributedSampler.set_epoch: epoch must be an int, got {epoch!r}")
        self.epoch = int(epoch)

    def indices(self) -> np.ndarray:
        """This rank's indices for the current epoch, as an int64 array."""
        if self.shuffle:
            order = np.random.default_rng(self.seed + self.epoch).permutation(self.n)
        else:
            order = np.arange(self.n)
        if self.drop_last:
            order = order[: self.total_size]
        elif self.total_size > self.n and self.n > 0:
            order = np.resize(order, self.total_size)  # repeats from the start, as PyTorch pads
        return order[self.rank : self.total_size : self.num_replicas].astype(np.int64)

    def __iter__(self) -> Iterator[int]:
        return iter(self.indices().tolist())

    def __len__(self) -> int:
        return self.num_samples

    def __repr__(self) -> str:
        return (
            f"DistributedSampler(n={self.n}, num_replicas={self.num_replicas}, "
            f"rank={self.rank}, shuffle={self.shuffle}, seed={self.seed}, "
            f"drop_last={self.drop_last})"
        )
