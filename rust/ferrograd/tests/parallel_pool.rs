//! Stress tests of the crate's thread pool: many tiny regions, nested regions, concurrent
//! callers, panicking tasks, resizing, and results equal to a serial run.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Mutex;

use ferrograd::parallel::{
    for_each, for_each_chunk_mut, for_each_init, for_each_item, join_split, map_items, num_threads,
    set_num_threads,
};

/// The knob is global: the tests that change it take turns.
static KNOB: Mutex<()> = Mutex::new(());

fn knob() -> std::sync::MutexGuard<'static, ()> {
    KNOB.lock().unwrap_or_else(|e| e.into_inner())
}

/// Runs `for_each(tasks)` and checks that every index ran exactly once.
fn check_each_index_once(tasks: usize) {
    let hits: Vec<AtomicUsize> = (0..tasks).map(|_| AtomicUsize::new(0)).collect();
    for_each(tasks, |i| {
        hits[i].fetch_add(1, Ordering::Relaxed);
    });
    for (i, h) in hits.iter().enumerate() {
        assert_eq!(h.load(Ordering::Relaxed), 1, "task {i} of {tasks}");
    }
}

#[test]
fn thousands_of_tiny_regions_each_run_every_task_exactly_once() {
    let _k = knob();
    set_num_threads(2).unwrap();
    for r in 0..20_000 {
        check_each_index_once(r % 7);
    }
    set_num_threads(0).unwrap();
}

/// The pool participant the current thread is: a worker `ferrograd-i` is `i`, the caller 0.
fn participant() -> usize {
    let name = std::thread::current().name().unwrap_or("").to_owned();
    name.strip_prefix("ferrograd-")
        .and_then(|i| i.parse().ok())
        .unwrap_or(0)
}

#[test]
fn each_thread_starts_on_its_own_block_of_tasks_and_takes_the_others_when_done() {
    let _k = knob();
    let (threads, tasks) = (4, 40);
    set_num_threads(threads).unwrap();
    let block = |p: usize| p * tasks / threads..(p + 1) * tasks / threads;
    let ran = Mutex::new(Vec::new());
    // A pool's workers join from its second region on (the first starts them).
    for_each(threads, |_| {});
    for_each(tasks, |i| {
        std::thread::sleep(std::time::Duration::from_micros(200));
        ran.lock().unwrap().push((participant(), i));
    });
    set_num_threads(0).unwrap();
    let ran = ran.into_inner().unwrap();
    let mut all: Vec<usize> = ran.iter().map(|&(_, i)| i).collect();
    all.sort_unstable();
    assert_eq!(
        all,
        (0..tasks).collect::<Vec<_>>(),
        "every task exactly once"
    );
    for p in 0..threads {
        let mine: Vec<usize> = ran.iter().filter(|r| r.0 == p).map(|r| r.1).collect();
        let Some(&first) = mine.first() else { continue };
        // A thread starts on its own block, unless it came late and the others had taken
        // all of it; it runs its own block's tasks in order.
        let none_of_its_own = mine.iter().all(|i| !block(p).contains(i));
        assert!(
            block(p).contains(&first) || none_of_its_own,
            "{p}: {mine:?}"
        );
        let own: Vec<usize> = mine
            .iter()
            .copied()
            .filter(|i| block(p).contains(i))
            .collect();
        assert!(own.windows(2).all(|w| w[0] < w[1]), "{p}: {mine:?}");
    }
    let caller: Vec<usize> = ran.iter().filter(|r| r.0 == 0).map(|r| r.1).collect();
    assert_eq!(
        caller.first(),
        Some(&0),
        "the caller starts with task 0: {caller:?}"
    );
}

#[test]
fn regions_with_pauses_longer_than_the_spin_still_run_every_task() {
    let _k = knob();
    set_num_threads(2).unwrap();
    for _ in 0..20 {
        check_each_index_once(5);
        // Past the workers' spin: they park, and the next region wakes them.
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
    set_num_threads(0).unwrap();
}

#[test]
fn a_region_inside_a_region_runs_serially_and_completes() {
    let _k = knob();
    set_num_threads(3).unwrap();
    let total = AtomicUsize::new(0);
    for_each(4, |_| {
        assert_eq!(num_threads(), 1);
        for_each(5, |_| {
            total.fetch_add(1, Ordering::Relaxed);
        });
    });
    assert_eq!(total.into_inner(), 20);
    set_num_threads(0).unwrap();
}

#[test]
fn several_threads_may_start_regions_at_once() {
    let _k = knob();
    set_num_threads(2).unwrap();
    std::thread::scope(|s| {
        for t in 0..4 {
            s.spawn(move || {
                for r in 0..2_000 {
                    let n = 1 + (r + t) % 9;
                    let got = map_items(0..n, |i| i * i + t);
                    let want: Vec<usize> = (0..n).map(|i| i * i + t).collect();
                    assert_eq!(got, want);
                }
            });
        }
    });
    set_num_threads(0).unwrap();
}

#[test]
fn a_panicking_task_is_reraised_on_the_caller_and_the_pool_keeps_working() {
    let _k = knob();
    set_num_threads(2).unwrap();
    for round in 0..16 {
        let ran = AtomicUsize::new(0);
        let err = std::panic::catch_unwind(|| {
            for_each(16, |i| {
                ran.fetch_add(1, Ordering::Relaxed);
                if i == round % 16 {
                    panic!("task {i} failed");
                }
            })
        })
        .expect_err("the panic reaches the caller");
        let msg = err.downcast_ref::<String>().cloned().unwrap_or_default();
        assert_eq!(msg, format!("task {} failed", round % 16));
        assert!(ran.into_inner() >= 1);
        check_each_index_once(16);
    }
    set_num_threads(0).unwrap();
}

#[test]
fn resizing_between_regions_takes_effect_at_the_next_one() {
    let _k = knob();
    for n in [3, 1, 2, 5, 0, 2] {
        set_num_threads(n).unwrap();
        let threads = Mutex::new(std::collections::HashSet::new());
        for_each(64, |_| {
            threads.lock().unwrap().insert(std::thread::current().id());
            std::thread::sleep(std::time::Duration::from_micros(200));
        });
        let used = threads.into_inner().unwrap().len();
        let want = if n == 0 { num_threads() } else { n };
        assert!(
            used >= 1 && used <= want,
            "{used} threads with the knob at {n}"
        );
        if n == 1 {
            assert_eq!(used, 1);
        }
        check_each_index_once(33);
    }
    set_num_threads(0).unwrap();
}

#[test]
fn chunked_and_itemised_work_matches_a_serial_run_bit_for_bit() {
    let _k = knob();
    set_num_threads(2).unwrap();
    let xs: Vec<f32> = (0..100_003).map(|i| (i as f32 * 0.37).sin()).collect();
    let f = |x: f32| (x * 1.7).exp() - x.tanh();
    let want: Vec<f32> = xs.iter().map(|&x| f(x)).collect();
    let mut got = vec![0.0f32; xs.len()];
    for_each_chunk_mut(&mut got, 4096, |i, chunk| {
        let src = &xs[i * 4096..][..chunk.len()];
        chunk.iter_mut().zip(src).for_each(|(d, &x)| *d = f(x));
    });
    assert_eq!(bits(&got), bits(&want));
    let mut again = vec![0.0f32; xs.len()];
    for_each_item(again.chunks_mut(1000).zip(xs.chunks(1000)), |(d, s)| {
        d.iter_mut().zip(s).for_each(|(d, &x)| *d = f(x));
    });
    assert_eq!(bits(&again), bits(&want));
    let sums = map_items(xs.chunks(777), |c| c.iter().sum::<f32>());
    let serial: Vec<f32> = xs.chunks(777).map(|c| c.iter().sum::<f32>()).collect();
    assert_eq!(bits(&sums), bits(&serial));
    let inits = AtomicUsize::new(0);
    let total = AtomicUsize::new(0);
    for_each_init(
        100,
        || {
            inits.fetch_add(1, Ordering::Relaxed);
            Vec::<usize>::new()
        },
        |scratch, i| {
            scratch.push(i);
            total.fetch_add(i, Ordering::Relaxed);
        },
    );
    assert_eq!(total.into_inner(), 4950);
    assert!((1..=2).contains(&inits.into_inner()));
    let (a, b) = join_split(|| xs.len(), || want.len() * 2);
    assert_eq!((a, b), (100_003, 200_006));
    set_num_threads(0).unwrap();
}

fn bits(xs: &[f32]) -> Vec<u32> {
    xs.iter().map(|x| x.to_bits()).collect()
}
