//! The one thread knob: how many threads the kernels (GEMM, large elementwise work) use.

use std::sync::atomic::{AtomicUsize, Ordering};

static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Below this many elements an elementwise kernel stays on one thread: the cost of
/// waking rayon's workers dominates.
pub const PARALLEL_THRESHOLD: usize = 1 << 15;

/// The number of threads kernels use (defaults to the number of cores).
pub fn num_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        // `available_parallelism` reads cgroup files (~10 µs): ask once.
        0 => {
            static CORES: std::sync::OnceLock<usize> = std::sync::OnceLock::new();
            *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
        }
        n => n,
    }
}

/// Sets the number of threads kernels use; `0` restores the default (all cores).
pub fn set_num_threads(n: usize) {
    NUM_THREADS.store(n, Ordering::Relaxed);
}
