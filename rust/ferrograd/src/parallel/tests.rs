//! Unit tests of the knob and the thread cap; the pool's stress tests (which change the
//! knob) live in `tests/parallel_pool.rs`, a process of their own.

use super::*;

#[test]
fn inside_a_region_every_task_sees_one_thread_and_the_cap_is_restored_after() {
    let seen = Mutex::new(Vec::new());
    for_each(8, |_| lock(&seen).push(num_threads()));
    assert_eq!(*lock(&seen), vec![1; 8]);
    assert_eq!(num_threads(), configured_threads());
}

#[test]
fn join_split_runs_both_halves_on_one_thread_each_and_returns_both_results() {
    let (a, b) = join_split(|| (num_threads(), "a"), || (num_threads(), "b"));
    assert_eq!((a.1, b.1), ("a", "b"));
    let want = if configured_threads() == 2 {
        (1, 1)
    } else {
        (configured_threads(), configured_threads())
    };
    assert_eq!((a.0, b.0), want);
    assert_eq!(
        with_limit(1, || join_split(num_threads, num_threads)),
        (1, 1)
    );
}

#[test]
fn an_absurd_thread_count_is_an_error_naming_the_limit() {
    let err = set_num_threads(1_000_000_000).unwrap_err().to_string();
    assert!(err.contains("1024") && err.contains("1000000000"), "{err}");
}

#[test]
fn core_to_core_round_trip_is_a_positive_time_or_none_on_one_core() {
    match core_to_core_round_trip_ns(2000) {
        Some(ns) => assert!(ns > 0.0 && ns.is_finite(), "{ns}"),
        None => assert_eq!(cores(), 1, "the probe failed on {} cores", cores()),
    }
}
