//! The one thread knob: how many threads the kernels (GEMM, large elementwise work,
//! reductions, optimizer steps, convolution) use.
//!
//! All parallel work runs inside a crate-owned rayon pool sized by the knob (see
//! [`install`]), never on rayon's global pool, so `set_num_threads(n)` governs every
//! kernel, GEMM included (its per-thread stripes are tasks on this pool). The pool is built on first use and rebuilt when the knob changes.

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::{Error, Result};

static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Below this many elements an elementwise kernel stays on one thread: the cost of
/// handing work to the pool (waking and joining the workers, a few context switches
/// that cost more in a VM) dominates. Measured on 2 cores of an AVX-512 Xeon VM, one
/// thread against two (µs): f32 add 5.4/12.5 at 32K, 10.4/14.5 at 64K, 19.3/23.2 at
/// 128K, 137/36 at 256K; exp 79/59 at 128K. In a 784-512-512-10 training step this
/// threshold (against 32K) also cut the context switches per step from ~76 to ~50.
pub const PARALLEL_THRESHOLD: usize = 1 << 17;

/// The number of cores (`available_parallelism` reads cgroup files, ~10 µs: ask once).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

thread_local! {
    /// A cap on [`num_threads`] for work started on this thread (see [`join_split`]).
    static LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// The knob: the size of the pool (defaults to the number of cores).
fn configured_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => cores(),
        n => n,
    }
}

/// The number of threads a kernel started on this thread may use: the knob, or fewer
/// inside one half of a [`join_split`].
pub fn num_threads() -> usize {
    configured_threads().min(LIMIT.with(Cell::get))
}

/// Runs two independent pieces of work at once, each on its share of the threads
/// (`a` gets half, rounded down, `b` the rest), and returns both results. With one
/// thread they run one after the other. Two equal GEMMs run this way (each on one
/// core) finish sooner than one after the other split across the cores, since each
/// GEMM then packs its operands once instead of per thread.
pub fn join_split<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    let n = num_threads();
    if n < 2 {
        return (a(), b());
    }
    let (na, nb) = (n / 2, n - n / 2);
    install(|| rayon::join(|| with_limit(na, a), || with_limit(nb, b)))
}

/// Runs `f` with [`num_threads`] capped at `n` on this thread.
fn with_limit<R>(n: usize, f: impl FnOnce() -> R) -> R {
    struct Restore(usize);
    impl Drop for Restore {
        fn drop(&mut self) {
            LIMIT.with(|l| l.set(self.0));
        }
    }
    let _restore = Restore(LIMIT.with(|l| l.replace(n.max(1))));
    f()
}

/// The most threads [`set_num_threads`] accepts: far past any useful count, low enough
/// that a typo (`10**9`) is an error rather than an attempt to start that many threads.
pub const MAX_THREADS: usize = 1024;

/// Sets the number of threads kernels use; `0` restores the default (all cores).
/// The pool is rebuilt lazily, at the next parallel kernel.
pub fn set_num_threads(n: usize) -> Result<()> {
    if n > MAX_THREADS {
        return Err(Error::Value(format!(
            "set_num_threads: at most {MAX_THREADS} threads, got {n}"
        )));
    }
    NUM_THREADS.store(n, Ordering::Relaxed);
    Ok(())
}

/// The crate's pool and the thread count it was built with.
static POOL: Mutex<Option<(usize, Arc<rayon::ThreadPool>)>> = Mutex::new(None);

/// The pool for the current knob, built or rebuilt as needed; `None` if the
/// operating system refuses to start threads (the caller then runs serially).
fn pool(n: usize) -> Option<Arc<rayon::ThreadPool>> {
    // A panic elsewhere while holding the lock leaves a valid `Option`: keep going.
    let mut guard = POOL.lock().unwrap_or_else(|e| e.into_inner());
    if let Some((built, pool)) = guard.as_ref() {
        if *built == n {
            return Some(Arc::clone(pool));
        }
    }
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(n)
        .thread_name(|i| format!("ferrograd-{i}"))
        .build()
        .ok()
        .map(Arc::new)?;
    // The old pool's threads exit once the last kernel using it returns.
    *guard = Some((n, Arc::clone(&pool)));
    Some(pool)
}

/// Runs `op` inside the crate's pool (sized by the knob), so that rayon work it spawns
/// (`par_iter`, the GEMM's stripes) runs on the crate's threads. With one thread allowed,
/// or when already on one of the pool's workers, `op` runs right here.
pub fn install<R: Send>(op: impl FnOnce() -> R + Send) -> R {
    if num_threads() <= 1 {
        return op();
    }
    let n = configured_threads();
    if current_pool_size() == Some(n) {
        return op(); // nested: already on a worker of the right pool
    }
    match pool(n) {
        Some(p) => p.install(op),
        None => op(),
    }
}

/// The size of the ferrograd pool the current thread works for, if it is a worker of one.
fn current_pool_size() -> Option<usize> {
    rayon::current_thread_index()?;
    std::thread::current()
        .name()
        .is_some_and(|name| name.starts_with("ferrograd-"))
        .then(rayon::current_num_threads)
}

/// Whether `n` elements of elementwise work should be split over the pool.
pub fn should_split(n: usize) -> bool {
    n >= PARALLEL_THRESHOLD && num_threads() > 1
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_knob_sizes_the_pool_that_parallel_work_runs_on() {
        // Other tests may change the knob concurrently; only check what holds regardless.
        let seen = install(rayon::current_num_threads);
        assert!(seen >= 1);
        let p = pool(3).expect("pool");
        assert_eq!(p.install(rayon::current_num_threads), 3);
        let p = pool(2).expect("pool");
        assert_eq!(p.install(rayon::current_num_threads), 2);
    }

    #[test]
    fn join_split_gives_each_half_its_share_of_the_threads_and_restores_the_cap() {
        // No unit test in this crate changes the knob, so it is the number of cores.
        let n = configured_threads().min(5);
        let want = if n < 2 { (1, 1) } else { (n / 2, n - n / 2) };
        assert_eq!(with_limit(5, || join_split(num_threads, num_threads)), want);
        assert_eq!(
            with_limit(1, || join_split(num_threads, num_threads)),
            (1, 1)
        );
        assert_eq!(num_threads(), configured_threads());
    }

    #[test]
    fn an_absurd_thread_count_is_an_error_naming_the_limit() {
        let err = set_num_threads(1_000_000_000).unwrap_err().to_string();
        assert!(err.contains("1024") && err.contains("1000000000"), "{err}");
    }
}
