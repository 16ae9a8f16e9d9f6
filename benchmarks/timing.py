"""In-process timing, used inside one worker process (one library, one thread count).

For one function the worker

1. runs it for ``warmup_time`` seconds, at least once (lazy initialisation, page faults,
   allocator caches: PyTorch's first few hundred small training steps ran many times slower
   than the rest here),
2. calibrates how many calls make one sample (about ``min_time`` seconds),
3. takes ``repeats`` samples and returns the seconds per call of each.

The garbage collector collects once before the samples; while a sample runs it is off (as
in ``timeit``) unless ``keep_gc`` is set: for the Value graphs and training loops collecting
is part of what a user pays (micrograd's nodes are reference cycles only it frees).

Nothing here imports a numerical library: the worker must set thread counts first.
"""

from __future__ import annotations

import gc
import time
from typing import Callable


def time_calls(fn: Callable[[], object], number: int, keep_gc: bool = False) -> float:
    """Seconds that ``number`` calls of ``fn`` take."""
    gc_was_enabled = gc.isenabled()
    if not keep_gc:
        gc.disable()
    try:
        t0 = time.perf_counter()
        for _ in range(number):
            fn()
        return time.perf_counter() - t0
    finally:
        if gc_was_enabled:
            gc.enable()


def calibrate(fn: Callable[[], object], min_time: float, keep_gc: bool = False) -> int:
    """How many calls of ``fn`` take about ``min_time`` seconds (at least 1)."""
    number = 1
    while True:
        t = time_calls(fn, number, keep_gc)
        if t >= min_time / 5 or number >= 10**7:
            return max(1, round(number * min_time / max(t, 1e-9)))
        number *= 10


def warm_up(fn: Callable[[], object], seconds: float) -> float:
    """Calls ``fn`` at least once and until ``seconds`` have passed; returns the seconds
    its last call took."""
    t0 = last = time.perf_counter()
    fn()
    now = time.perf_counter()
    while now - t0 < seconds:
        last = now
        fn()
        now = time.perf_counter()
    return now - last


def sample(
    fn: Callable[[], object],
    *,
    repeats: int,
    min_time: float,
    warmup_time: float,
    keep_gc: bool = False,
    number: int | None = None,
) -> list[float]:
    """Seconds per call of ``fn`` in each of ``repeats`` samples.

    ``number`` fixes the calls per sample and skips the warm-up and calibration (a training
    epoch that must run exactly as often in every library)."""
    if repeats < 1:
        raise ValueError(f"sample: repeats must be >= 1, got {repeats}")
    if number is None:
        last = warm_up(fn, warmup_time)
        # a call slower than a sample needs no calibration (micrograd's graph: seconds)
        number = 1 if last >= min_time else calibrate(fn, min_time, keep_gc)
    gc.collect()
    return [time_calls(fn, number, keep_gc) / number for _ in range(repeats)]
