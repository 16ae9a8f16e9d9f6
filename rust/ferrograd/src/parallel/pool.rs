//! The pool's machinery: `threads - 1` persistent workers and the calling thread share the
//! tasks of a region; between regions the workers spin briefly on one atomic word, then park.
//!
//! Every region goes through one atomic `state` word: the region's number, a `CLOSED` bit and
//! the count of workers that joined it. The caller that owns the pool (see [`Pool::try_lock`])
//! writes the job, opens a new region (a new number, count 0), takes tasks itself, closes the
//! region and waits until the count is back to 0. A worker joins only an open region (a
//! compare-and-swap that checks the number and the bit), so a worker that wakes late either
//! helps or stays out: the caller never waits for a worker that has not started, and nothing
//! touches a job after its region has ended. The tasks are dealt into one block per
//! participant, each claimed from its own cursor (see [`Shared::claim`]).

use std::any::Any;
use std::cell::{Cell, UnsafeCell};
use std::panic::{catch_unwind, resume_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// How long a worker spins on the state word after a region before it parks. Waking a
/// parked worker costs the caller ~8 µs (a futex wake, an IPI in this nested VM) and the
/// worker 10-40 µs before it helps; a spinning one joins within a microsecond (two tasks
/// of 10 µs: 10.2 µs median with gaps up to 100 µs between regions, 27-30 µs after gaps of
/// 300 µs or 1 ms, 20 µs serially). Kernels of one training step are usually a few to a few
/// hundred µs apart, so 200 µs keeps the worker awake through a step's run of kernels while
/// an idle process stops burning a core within a fraction of a millisecond (libgomp's
/// default `GOMP_SPINCOUNT` spins for a similar time). Digits-CNN steps at 2 threads with
/// 100 µs or 500 µs were within this machine's noise of 200 µs.
pub(super) const SPIN: Duration = Duration::from_micros(200);

/// Spins between yields of a spinning worker (a few µs; see `wait_for_region`).
const YIELD_EVERY: u32 = 256;

/// Bits of the state word: the count of joined workers (bits 0..20), `CLOSED`, and the
/// region's number above them.
const COUNT_MASK: u64 = (1 << 20) - 1;
const CLOSED: u64 = 1 << 20;
const REGION_UNIT: u64 = 1 << 21;

fn region(state: u64) -> u64 {
    state & !(COUNT_MASK | CLOSED)
}

/// A participant's body: it calls the claim function for task indices until it gets `None`.
pub(super) type Body<'a> = dyn Fn(&dyn Fn() -> Option<usize>) + Sync + 'a;

/// The current region's work: the body every participant runs and the task count.
#[derive(Clone, Copy)]
struct Job {
    /// Lifetime-erased borrow of the caller's body (see the SAFETY notes in [`Pool::run`]).
    body: *const Body<'static>,
    tasks: usize,
    /// The caller and the workers: the region's tasks are dealt into this many blocks.
    participants: usize,
}

/// Participant `p`'s block of a region's `tasks` tasks, when they are dealt into
/// `participants` consecutive blocks of nearly equal length.
fn block(p: usize, tasks: usize, participants: usize) -> std::ops::Range<usize> {
    p * tasks / participants..(p + 1) * tasks / participants
}

/// The next unclaimed task of one participant's block, alone on its cache line(s) so that
/// claiming from one's own block moves no line between cores. (128 bytes: the adjacent-line
/// prefetcher pulls lines in pairs.)
#[repr(align(128))]
struct Cursor(AtomicUsize);

struct Shared {
    /// Region number | `CLOSED` | count of joined workers.
    state: AtomicU64,
    /// Written only by the pool's owner while no worker is joined (see [`Pool::run`]).
    job: UnsafeCell<Job>,
    /// Per participant (the caller is 0, worker `i` is `i`): the next unclaimed task of its
    /// block of the current region (see [`Shared::claim`]).
    cursors: Box<[Cursor]>,
    /// Set when a task panicked: the remaining tasks are skipped.
    panicked: AtomicBool,
    /// The first panic's payload, re-raised on the caller.
    payload: Mutex<Option<Box<dyn Any + Send>>>,
    /// Held by the one caller whose region the pool runs (others run serially).
    busy: AtomicBool,
    /// Workers parked (or about to park) on `wake`.
    sleepers: AtomicUsize,
    lock: Mutex<()>,
    wake: Condvar,
    /// Set when the pool is dropped: workers exit at the next region change.
    shutdown: AtomicBool,
    /// More threads than cores: spinning would take the cores from threads with work.
    oversubscribed: bool,
}

// SAFETY: `job` is the only field that is not `Sync` by itself (an `UnsafeCell` holding a raw
// pointer). It is written only by the thread holding `busy` while no worker is joined to a
// region, and read only by that thread or by a worker joined to the open region whose job it
// is (the protocol in `Pool::run` and `Worker::run` below); the pointer it holds is to a
// `Sync` body, valid for as long as any worker is joined. So sharing `Shared` between threads
// (`Sync`) and moving the `Arc` to the workers (`Send`) introduces no data race.
unsafe impl Sync for Shared {}
// SAFETY: as for `Sync` above: the raw pointer is only dereferenced under that protocol.
unsafe impl Send for Shared {}

pub(super) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // Every lock of the pool guards data a panicking holder leaves valid (an `Option`, `()`).
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    /// Claims a task of the current region for a participant, if any is left and none
    /// panicked. The tasks are dealt into one block per participant; each takes its own
    /// block in order, then the rest of the others' blocks (`*at` is the block it claims
    /// from now, `*tried` how many it has exhausted). So when every participant keeps up,
    /// participant `p` runs the same part of each region — consecutive elementwise ops, the
    /// optimizer's step, find their data in its core's cache — and claims touch no cache line
    /// another core writes; a participant that joins late or runs slow has its tasks taken.
    fn claim(&self, job: &Job, at: &Cell<usize>, tried: &Cell<usize>) -> Option<usize> {
        while tried.get() < job.participants {
            if self.panicked.load(Ordering::Relaxed) {
                return None;
            }
            let q = at.get();
            let i = self.cursors[q].0.fetch_add(1, Ordering::Relaxed);
            if i < block(q, job.tasks, job.participants).end {
                return Some(i);
            }
            at.set((q + 1) % job.participants);
            tried.set(tried.get() + 1);
        }
        None
    }

    /// Runs `job`'s body as participant `me` of the region, recording a panic instead of
    /// unwinding.
    fn participate(&self, job: &Job, body: &Body<'_>, me: usize) {
        let (at, tried) = (Cell::new(me), Cell::new(0));
        let claim = || self.claim(job, &at, &tried);
        if let Err(p) = catch_unwind(AssertUnwindSafe(|| body(&claim))) {
            self.panicked.store(true, Ordering::Relaxed);
            lock(&self.payload).get_or_insert(p);
        }
    }
}

/// The job before the first region (never run: it has no tasks).
fn idle(_: &dyn Fn() -> Option<usize>) {}

/// A pool of `workers` threads plus the caller.
pub(super) struct Pool {
    shared: Arc<Shared>,
    workers: usize,
}

impl Pool {
    /// Starts a pool for `threads` threads (the caller among them). If the operating system
    /// refuses a thread, the pool keeps the workers it got (none: regions run serially).
    pub(super) fn new(threads: usize, cores: usize) -> Pool {
        let shared = Arc::new(Shared {
            state: AtomicU64::new(CLOSED),
            job: UnsafeCell::new(Job {
                body: &idle,
                tasks: 0,
                participants: 1,
            }),
            cursors: (0..threads.max(1))
                .map(|_| Cursor(AtomicUsize::new(0)))
                .collect(),
            panicked: AtomicBool::new(false),
            payload: Mutex::new(None),
            busy: AtomicBool::new(false),
            sleepers: AtomicUsize::new(0),
            lock: Mutex::new(()),
            wake: Condvar::new(),
            shutdown: AtomicBool::new(false),
            oversubscribed: threads > cores,
        });
        let mut workers = 0;
        for i in 1..threads {
            let s = Arc::clone(&shared);
            let started = std::thread::Builder::new()
                .name(format!("ferrograd-{i}"))
                .spawn(move || worker(&s, i));
            match started {
                Ok(_) => workers += 1,
                Err(_) => break,
            }
        }
        Pool { shared, workers }
    }

    /// Takes the pool for one region, or `None` while another caller holds it (then the
    /// caller runs its work serially: nested regions, other Python threads).
    pub(super) fn try_lock(&self) -> Option<Owner<'_>> {
        if self.workers == 0 {
            return None;
        }
        self.shared
            .busy
            .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| Owner(self))
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        // No caller holds the pool (it is dropped with its last `Arc`), so no region is open:
        // a new region number makes every worker look, see `shutdown` and exit.
        let sh = &self.shared;
        sh.shutdown.store(true, Ordering::SeqCst);
        sh.state.fetch_add(REGION_UNIT, Ordering::SeqCst);
        let _g = lock(&sh.lock);
        sh.wake.notify_all();
    }
}

/// The right to run one region on the pool (released on drop).
pub(super) struct Owner<'p>(&'p Pool);

impl Drop for Owner<'_> {
    fn drop(&mut self) {
        self.0.shared.busy.store(false, Ordering::Release);
    }
}

impl Owner<'_> {
    /// Runs `body` on the caller and on every worker that joins in time; each participant
    /// claims task indices `0..tasks` (each index goes to exactly one participant). Returns
    /// when every participant is done; a panic in any of them is re-raised here then.
    pub(super) fn run(&self, tasks: usize, body: &Body<'_>) {
        let sh = &*self.0.shared;
        // SAFETY (lifetime erasure): the pointer is read only by workers joined to the region
        // opened below, and this function does not return or unwind before the region is
        // closed (no later joins) and the joined count is back to 0 (all joined workers are
        // done with it). The body outlives this call, so every use of the pointer is in its
        // lifetime.
        let body_ptr: *const Body<'static> = unsafe {
            std::mem::transmute::<*const Body<'_>, *const Body<'static>>(body as *const _)
        };
        // SAFETY (the write): we hold `busy`, so no other caller writes or opens a region;
        // the previous region ended closed with count 0 and a closed region cannot be joined,
        // so no worker reads `job` now. The `SeqCst` store that opens the region below
        // publishes this write (and the cursors, `panicked`) to every worker whose join (an
        // `Acquire` compare-and-swap) reads the open state.
        let job = Job {
            body: body_ptr,
            tasks,
            participants: self.0.workers + 1,
        };
        unsafe { *sh.job.get() = job };
        for (p, cursor) in sh.cursors[..job.participants].iter().enumerate() {
            cursor
                .0
                .store(block(p, tasks, job.participants).start, Ordering::Relaxed);
        }
        sh.panicked.store(false, Ordering::Relaxed);
        let number = region(sh.state.load(Ordering::Relaxed)).wrapping_add(REGION_UNIT);
        sh.state.store(number, Ordering::SeqCst);
        // Pairs with the worker's `SeqCst` increment of `sleepers` and load of `state`: either
        // it sees the new region, or we see it asleep and wake it (under its lock, so the
        // notification cannot fall between its check and its wait).
        if sh.sleepers.load(Ordering::SeqCst) > 0 {
            let _g = lock(&sh.lock);
            sh.wake.notify_all();
        }
        sh.participate(&job, body, 0);
        sh.state.fetch_or(CLOSED, Ordering::AcqRel);
        // `Acquire` pairs with each worker's `Release` leave: its writes are visible after.
        let mut spins = 0u32;
        while sh.state.load(Ordering::Acquire) & COUNT_MASK != 0 {
            spins = spins.wrapping_add(1);
            if sh.oversubscribed && spins % 64 == 0 {
                std::thread::yield_now();
            } else {
                std::hint::spin_loop();
            }
        }
        if let Some(p) = lock(&sh.payload).take() {
            resume_unwind(p);
        }
    }
}

/// A worker's life: wait for a region, join it if still open, run its share, repeat. `me`
/// is its participant number (1 and up; the caller is 0).
fn worker(sh: &Shared, me: usize) {
    super::mark_worker();
    let mut seen = region(sh.state.load(Ordering::Acquire));
    loop {
        let mut state = wait_for_region(sh, seen);
        seen = region(state);
        if sh.shutdown.load(Ordering::SeqCst) {
            return;
        }
        // Join only the region just seen, and only while it is open.
        let joined = loop {
            if region(state) != seen || state & CLOSED != 0 {
                break false;
            }
            match sh.state.compare_exchange_weak(
                state,
                state + 1,
                Ordering::Acquire,
                Ordering::Relaxed,
            ) {
                Ok(_) => break true,
                Err(now) => state = now,
            }
        };
        if !joined {
            continue;
        }
        // SAFETY: joined to the open region, so `job` was written before the region opened
        // (published by the store our `Acquire` join read) and is not written again, nor its
        // body freed, until we leave below (see `Owner::run`).
        let job = unsafe { *sh.job.get() };
        // SAFETY: as above: the body is alive until the caller sees our leave.
        let body = unsafe { &*job.body };
        sh.participate(&job, body, me);
        sh.state.fetch_sub(1, Ordering::Release);
    }
}

/// Waits until the state's region number differs from `seen`: spins for [`SPIN`], then parks.
fn wait_for_region(sh: &Shared, seen: u64) -> u64 {
    let start = Instant::now();
    let mut spins = 0u32;
    loop {
        let state = sh.state.load(Ordering::Acquire);
        if region(state) != seen {
            return state;
        }
        spins = spins.wrapping_add(1);
        if spins % 64 == 0 && start.elapsed() > SPIN {
            break;
        }
        if spins % YIELD_EVERY == 0 || (sh.oversubscribed && spins % 64 == 0) {
            // The scheduler may have put this worker on the caller's core (a woken thread
            // often lands next to its waker): let the caller run there.
            std::thread::yield_now();
        }
        std::hint::spin_loop();
    }
    let mut guard = lock(&sh.lock);
    sh.sleepers.fetch_add(1, Ordering::SeqCst);
    loop {
        let state = sh.state.load(Ordering::SeqCst);
        if region(state) != seen {
            sh.sleepers.fetch_sub(1, Ordering::SeqCst);
            return state;
        }
        guard = sh.wake.wait(guard).unwrap_or_else(|e| e.into_inner());
    }
}
