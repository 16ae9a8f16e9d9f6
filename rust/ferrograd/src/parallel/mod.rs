//! The one thread knob and the crate's own thread pool: how many threads the kernels (GEMM,
//! large elementwise work, reductions, optimizer steps, convolution) use, and the regions
//! they run in parallel.
//!
//! The pool is OpenMP-style (see [`pool`]): `threads - 1` persistent workers, and the calling
//! thread takes a share of every region itself, so handing work to workers that are still
//! spinning from the last region costs about a microsecond, not the tens of microseconds of
//! waking sleeping threads (what rayon's `install` cost from the Python thread here). A region
//! started inside a region, or while another thread runs one, runs serially on its caller.
//! The kernels call [`for_each`], [`for_each_chunk_mut`], [`for_each_item`], [`map_items`] and
//! [`join_split`]; none of them exposes anything unsafe.

mod pool;
#[cfg(test)]
mod tests;

use std::cell::Cell;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use crate::{Error, Result};
use pool::lock;

static NUM_THREADS: AtomicUsize = AtomicUsize::new(0);

/// Below this much work (elements, times a cost per element where an addition costs 1: see
/// [`should_split_work`]) an elementwise kernel stays on one thread. With the workers
/// spinning, a split costs about a microsecond, but the tasks are 16K elements and the
/// memory traffic is shared: measured on 2 cores of an AMD EPYC VM, one thread against two
/// (µs), f32 add 3.9/3.9 at 32K, 8.5/5.0 at 64K, 17.5/10.4 at 128K; exp 14.6/9.3 at 32K;
/// GELU 30/18 at 32K. (Under rayon, whose sleeping workers took 15-45 µs to start, this was
/// 128K: add was 19.3/23.2 µs there.)
pub const PARALLEL_THRESHOLD: usize = 1 << 16;

/// The number of cores (`available_parallelism` reads cgroup files, ~10 µs: ask once).
fn cores() -> usize {
    static CORES: OnceLock<usize> = OnceLock::new();
    *CORES.get_or_init(|| std::thread::available_parallelism().map_or(1, |n| n.get()))
}

thread_local! {
    /// A cap on [`num_threads`] for work started on this thread: 1 inside a region's tasks
    /// and on the pool's workers (a region there would run serially anyway).
    static LIMIT: Cell<usize> = const { Cell::new(usize::MAX) };
}

/// Marks the current thread as one of the pool's workers (see [`LIMIT`]).
fn mark_worker() {
    LIMIT.with(|l| l.set(1));
}

/// The knob: the size of the pool (defaults to the number of cores).
fn configured_threads() -> usize {
    match NUM_THREADS.load(Ordering::Relaxed) {
        0 => cores(),
        n => n,
    }
}

/// The number of threads a kernel started on this thread may use: the knob, or 1 inside
/// a parallel region.
pub fn num_threads() -> usize {
    configured_threads().min(LIMIT.with(Cell::get))
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
/// The pool is rebuilt lazily, at the next parallel region.
pub fn set_num_threads(n: usize) -> Result<()> {
    if n > MAX_THREADS {
        return Err(Error::Value(format!(
            "set_num_threads: at most {MAX_THREADS} threads, got {n}"
        )));
    }
    NUM_THREADS.store(n, Ordering::Relaxed);
    Ok(())
}

/// The crate's pool and the thread count it was built for.
static POOL: Mutex<Option<(usize, Arc<pool::Pool>)>> = Mutex::new(None);

/// The pool for `n` threads, built or rebuilt as needed (the old one's workers exit once
/// the last region using it returns).
fn pool(n: usize) -> Arc<pool::Pool> {
    // A panic elsewhere while holding the lock leaves a valid `Option`: keep going.
    let mut guard = lock(&POOL);
    match guard.as_ref() {
        Some((built, p)) if *built == n => Arc::clone(p),
        _ => {
            let p = Arc::new(pool::Pool::new(n, cores()));
            *guard = Some((n, Arc::clone(&p)));
            p
        }
    }
}

/// Runs `body` on every participant of a region of `tasks` tasks, or once on this thread
/// when the region runs serially (one thread allowed, one task, the pool busy or empty).
fn region(tasks: usize, body: &pool::Body<'_>) {
    let serial = || {
        body(&{
            let next = Cell::new(0);
            move || {
                let i = next.get();
                next.set(i + 1);
                (i < tasks).then_some(i)
            }
        })
    };
    let n = num_threads();
    if tasks < 2 || n < 2 {
        return serial();
    }
    let pool = pool(configured_threads());
    if let Some(owner) = pool.try_lock() {
        with_limit(1, || owner.run(tasks, body));
        return;
    }
    // Another thread holds the pool: the tasks run here, still each seeing one thread, as
    // they would on the pool (a kernel nested in them stays serial either way).
    with_limit(1, serial);
}

/// Runs `f(i)` for every `i` in `0..tasks`, on the pool's threads when there are several,
/// each index exactly once. A panic in `f` is re-raised here once every running task is done
/// (the tasks not yet started are skipped). Inside `f`, [`num_threads`] is 1.
pub fn for_each(tasks: usize, f: impl Fn(usize) + Sync) {
    region(tasks, &|claim: &dyn Fn() -> Option<usize>| {
        while let Some(i) = claim() {
            f(i);
        }
    });
}

/// As [`for_each`], with a state each thread makes with `init` once per region (when it
/// first gets a task) and reuses for every task it runs: scratch buffers.
pub fn for_each_init<S>(
    tasks: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize) + Sync,
) {
    region(tasks, &|claim: &dyn Fn() -> Option<usize>| {
        let mut state = None;
        while let Some(i) = claim() {
            f(state.get_or_insert_with(&init), i);
        }
    });
}

/// [`for_each_item`] with a state per thread, made by `init` as in [`for_each_init`].
pub fn for_each_item_init<I: Send, S>(
    items: impl IntoIterator<Item = I>,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, I) + Sync,
) {
    let mut slots: Vec<Option<I>> = items.into_iter().map(Some).collect();
    let base = ChunkBase(slots.as_mut_ptr());
    let base = &base;
    for_each_init(slots.len(), init, |state, i| {
        // SAFETY: as in `for_each_chunk_mut`: each index runs once, so each slot is
        // borrowed by one task only, while `slots` is borrowed for the whole region.
        let slot = unsafe { &mut *base.0.add(i) };
        if let Some(item) = slot.take() {
            f(state, item);
        }
    });
}

/// A pointer to the data [`for_each_chunk_mut`] splits, shared by its tasks.
struct ChunkBase<T>(*mut T);

// SAFETY: the tasks of `for_each_chunk_mut` use the pointer only to form disjoint chunks of
// a slice it borrows mutably for the whole region; sending those chunks to other threads is
// what `T: Send` allows.
unsafe impl<T: Send> Sync for ChunkBase<T> {}

/// Calls `f(i, chunk)` for the consecutive chunks of `chunk_len` elements of `data` (the last
/// may be shorter), on the pool's threads as in [`for_each`]. `chunk_len` must be positive.
pub fn for_each_chunk_mut<T: Send>(
    data: &mut [T],
    chunk_len: usize,
    f: impl Fn(usize, &mut [T]) + Sync,
) {
    assert!(chunk_len > 0, "for_each_chunk_mut: chunk length 0");
    let n = data.len();
    let base = ChunkBase(data.as_mut_ptr());
    let base = &base;
    for_each(n.div_ceil(chunk_len), |i| {
        let lo = i * chunk_len;
        let len = chunk_len.min(n - lo);
        // SAFETY: `for_each` runs each `i < ceil(n / chunk_len)` exactly once, so the ranges
        // `lo..lo + len` handed out are disjoint and inside `data`, which is borrowed
        // mutably (nothing else touches it) until `for_each` has returned.
        let chunk = unsafe { std::slice::from_raw_parts_mut(base.0.add(lo), len) };
        f(i, chunk);
    });
}

/// Calls `f(item)` for every item, on the pool's threads as in [`for_each`]: for work
/// split into pieces beforehand (e.g. chunks of several slices zipped together).
pub fn for_each_item<I: Send>(items: impl IntoIterator<Item = I>, f: impl Fn(I) + Sync) {
    let mut slots: Vec<Option<I>> = items.into_iter().map(Some).collect();
    for_each_chunk_mut(&mut slots, 1, |_, slot| {
        if let Some(item) = slot[0].take() {
            f(item);
        }
    });
}

/// `[f(item) for item in items]`, in order, computed on the pool's threads as in
/// [`for_each`].
pub fn map_items<I: Send, R: Send>(
    items: impl IntoIterator<Item = I>,
    f: impl Fn(I) -> R + Sync,
) -> Vec<R> {
    let mut slots: Vec<(Option<I>, Option<R>)> =
        items.into_iter().map(|i| (Some(i), None)).collect();
    for_each_chunk_mut(&mut slots, 1, |_, slot| {
        if let Some(item) = slot[0].0.take() {
            slot[0].1 = Some(f(item));
        }
    });
    // `for_each_chunk_mut` returned (no panic), so every task ran and filled its result.
    slots
        .into_iter()
        .map(|(_, r)| r.expect("every task of a region runs unless one panics"))
        .collect()
}

/// Runs two independent pieces of work at once, one per thread, and returns both results.
/// With one thread allowed they run one after the other, and so they do with more than two,
/// each then on all the threads (a region inside a region runs serially, so side by side
/// each would get one thread). Two equal GEMMs run this way (each on one of two cores)
/// finish sooner than one after the other split across the cores, since each GEMM then
/// packs its operands once instead of per thread.
pub fn join_split<A: Send, B: Send>(
    a: impl FnOnce() -> A + Send,
    b: impl FnOnce() -> B + Send,
) -> (A, B) {
    if num_threads() != 2 {
        return (a(), b());
    }
    let (a, b) = (Mutex::new(Some(a)), Mutex::new(Some(b)));
    let (ra, rb) = (Mutex::new(None), Mutex::new(None));
    for_each(2, |i| match i {
        0 => {
            if let Some(f) = take(&a) {
                *lock(&ra) = Some(f());
            }
        }
        _ => {
            if let Some(f) = take(&b) {
                *lock(&rb) = Some(f());
            }
        }
    });
    let done = "both halves ran: `for_each` returned without a panic";
    (take(&ra).expect(done), take(&rb).expect(done))
}

fn take<T>(m: &Mutex<Option<T>>) -> Option<T> {
    lock(m).take()
}

/// Whether `n` elements of elementwise work as cheap as an addition should be split over
/// the pool.
pub fn should_split(n: usize) -> bool {
    should_split_work(n, 1)
}

/// Whether `n` elements of elementwise work, each costing about `cost` additions, should be
/// split over the pool (the threshold counts work, not elements: an `exp` or a GELU pays for
/// the split on fewer elements than an addition).
pub fn should_split_work(n: usize, cost: usize) -> bool {
    n.saturating_mul(cost) >= PARALLEL_THRESHOLD && num_threads() > 1
}

/// The median round trip, in nanoseconds, of a cache line passed between this thread and a
/// second one it starts (`round_trips` passes; `None` on one core, where the two would take
/// turns, or when the thread cannot start). Both spin, so on an idle machine the OS runs
/// them on two cores.
///
/// A diagnostic for benchmarks: it is what every hand-off between the pool's threads pays.
/// On a VM it changes as the host moves the virtual cores: ~55 ns with both on one core
/// complex of the AMD EPYC host here, ~350 ns across complexes, and then the digits CNN at
/// 2 threads ran at 258 instead of 630 steps/s.
pub fn core_to_core_round_trip_ns(round_trips: usize) -> Option<f64> {
    use std::sync::atomic::AtomicU64;
    use std::time::Instant;

    const BATCH: u64 = 1000;
    if cores() < 2 {
        return None;
    }
    let batches = round_trips.div_ceil(BATCH as usize).max(1);
    let ball = Arc::new(AtomicU64::new(0));
    let other = Arc::clone(&ball);
    let last = 2 * BATCH * batches as u64;
    // The partner answers every odd value with the next even one, until the last.
    let partner = std::thread::Builder::new()
        .name("ferrograd-probe".into())
        .spawn(move || {
            let mut expect = 1;
            while expect < last {
                while other.load(Ordering::Acquire) != expect {
                    std::hint::spin_loop();
                }
                other.store(expect + 1, Ordering::Release);
                expect += 2;
            }
        })
        .ok()?;
    let mut times = Vec::with_capacity(batches);
    let mut value = 0;
    for _ in 0..batches {
        let start = Instant::now();
        for _ in 0..BATCH {
            ball.store(value + 1, Ordering::Release);
            while ball.load(Ordering::Acquire) != value + 2 {
                std::hint::spin_loop();
            }
            value += 2;
        }
        times.push(start.elapsed().as_secs_f64() * 1e9 / BATCH as f64);
    }
    partner.join().ok()?;
    times.sort_by(f64::total_cmp);
    Some(times[times.len() / 2])
}
