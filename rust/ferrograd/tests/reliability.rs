//! Regression tests for the bugs the reliability suites (tests/test_*.py, fuzz/) found.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ferrograd::{DType, DynArray, Error, NdArray, Tensor};

/// Backward used to take a second read lock on a parent while holding the first; with a
/// writer queued in between (an in-place update on another thread) the writer-preferring
/// lock deadlocked. Backward and writers now interleave freely.
#[test]
fn backward_and_a_concurrent_writer_on_the_same_leaf_never_deadlock() {
    let x = Tensor::full(&[4096], 1.0, DType::F32, true).unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let writer = {
        let (x, stop) = (x.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                let mut a = x.array_mut();
                let next = a.clone();
                *a = next;
            }
        })
    };
    let (tx, rx) = std::sync::mpsc::channel();
    let worker = {
        let x = x.clone();
        std::thread::spawn(move || {
            let start = Instant::now();
            while start.elapsed() < Duration::from_millis(500) {
                let y = x.mul_scalar(2.0).unwrap().sum(None, false).unwrap();
                y.backward(None, false).unwrap();
            }
            tx.send(()).unwrap();
        })
    };
    let finished = rx.recv_timeout(Duration::from_secs(30)).is_ok();
    stop.store(true, Ordering::Relaxed);
    assert!(finished, "backward deadlocked against a concurrent writer");
    worker.join().unwrap();
    writer.join().unwrap();
}

/// The cross-entropy backward recomputed softmax as `exp(x - (max + ln_s))`, which in
/// float32 at |x| ~ 1e4 rounds `ln_s` to ~3 decimals: gradients were off by ~1e-4.
#[test]
fn cross_entropy_gradient_stays_accurate_in_float32_for_logits_of_1e4() {
    let data = vec![1e4f32, 1e4, -1e4];
    let x = Tensor::new(
        DynArray::F32(NdArray::from_vec(data, &[1, 3]).unwrap()),
        true,
    );
    let loss = x.cross_entropy(&[2], 0.0).unwrap();
    loss.backward(None, false).unwrap();
    let g = x.grad().unwrap().read().to_f64_vec();
    let want = [0.5, 0.5, -1.0];
    for (got, want) in g.iter().zip(want) {
        assert!((got - want).abs() < 1e-6, "{g:?} != {want:?}");
    }
}

/// A zero-size array could take dimensions that no array can have (NumPy's limit is
/// `isize::MAX` bytes for the non-zero dimensions); such a tensor could not be printed.
#[test]
fn reshaping_an_empty_array_to_an_unaddressable_shape_is_a_memory_error() {
    let a = NdArray::<f32>::from_vec(vec![], &[0]).unwrap();
    let err = a.reshape(&[0, 1 << 62]).unwrap_err();
    assert!(matches!(err, Error::Memory(_)), "{err:?}");
    assert!(a.reshape(&[0, 1 << 20]).is_ok());
}
