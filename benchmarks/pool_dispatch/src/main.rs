//! One thread starts a region of two tasks of `w` µs each (busy work), again and again with
//! an idle gap between regions (as Python code runs between kernels): rayon's `install` +
//! `join` on a 2-thread pool, chili's `Scope::join`, ferrograd's `parallel::for_each`.
//! Prints the mean, median and 90th percentile time per region; with two threads the ideal
//! is `w`, one thread alone takes `2w`.

use std::hint::black_box;
use std::time::{Duration, Instant};

/// Busy-waits `us` microseconds (the gap, or a task's work).
fn busy(us: u64) {
    let t = Instant::now();
    while t.elapsed() < Duration::from_micros(us) {
        std::hint::spin_loop();
    }
}

fn measure(name: &str, gap_us: u64, mut f: impl FnMut()) {
    let reps = if gap_us >= 500 { 2000 } else { 20000 };
    for _ in 0..200 {
        f();
        busy(gap_us);
    }
    let mut times = Vec::with_capacity(reps);
    for _ in 0..reps {
        let t = Instant::now();
        f();
        times.push(t.elapsed().as_secs_f64() * 1e6);
        busy(gap_us);
    }
    let mean = times.iter().sum::<f64>() / reps as f64;
    times.sort_by(f64::total_cmp);
    println!(
        "{name:10} gap {gap_us:4} µs: mean {mean:7.2} µs  median {:7.2}  p90 {:7.2}",
        times[reps / 2],
        times[reps * 9 / 10]
    );
}

fn main() {
    let which = std::env::args().nth(1).unwrap_or_default();
    let w: u64 = std::env::args()
        .nth(2)
        .and_then(|s| s.parse().ok())
        .unwrap_or(10);
    let pool = rayon::ThreadPoolBuilder::new()
        .num_threads(2)
        .build()
        .expect("a rayon pool");
    let mut scope = chili::Scope::global();
    ferrograd::parallel::set_num_threads(2).expect("2 threads");
    println!("two tasks of {w} µs each (one thread: {} µs)", 2 * w);
    for gap in [0u64, 20, 100, 300, 1000] {
        if which.is_empty() || which == "rayon" {
            measure("rayon", gap, || {
                pool.install(|| rayon::join(|| busy(w), || busy(w)));
            });
        }
        if which.is_empty() || which == "chili" {
            measure("chili", gap, || {
                scope.join(|_| busy(w), |_| busy(w));
            });
        }
        if which.is_empty() || which == "fg" {
            measure("ferrograd", gap, || {
                ferrograd::parallel::for_each(2, |i| {
                    black_box(i);
                    busy(w)
                })
            });
        }
    }
}
