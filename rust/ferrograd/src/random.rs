//! The one seeded generator behind every random function, in Rust and in Python.

use std::sync::{Mutex, MutexGuard, OnceLock};

use rand::{RngExt, SeedableRng};
use rand_distr::{Distribution, StandardNormal};
use rand_xoshiro::Xoshiro256PlusPlus;

use crate::ndarray::try_with_capacity;
use crate::Result;

fn generator() -> MutexGuard<'static, Xoshiro256PlusPlus> {
    static RNG: OnceLock<Mutex<Xoshiro256PlusPlus>> = OnceLock::new();
    RNG.get_or_init(|| {
        // Unseeded runs differ from each other, like PyTorch's default generator.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64);
        Mutex::new(Xoshiro256PlusPlus::seed_from_u64(nanos))
    })
    .lock()
    .unwrap_or_else(|e| e.into_inner())
}

/// Reseeds the global generator, making every later random call reproducible.
pub fn manual_seed(seed: u64) {
    *generator() = Xoshiro256PlusPlus::seed_from_u64(seed);
}

/// `n` samples of the standard normal distribution.
pub fn normal(n: usize) -> Result<Vec<f64>> {
    let mut out = try_with_capacity(n)?;
    let mut rng = generator();
    out.extend((0..n).map(|_| -> f64 { StandardNormal.sample(&mut *rng) }));
    Ok(out)
}

/// `n` samples uniform in `[0, 1)`.
pub fn uniform(n: usize) -> Result<Vec<f64>> {
    let mut out = try_with_capacity(n)?;
    let mut rng = generator();
    out.extend((0..n).map(|_| rng.random::<f64>()));
    Ok(out)
}

/// `n` integers uniform in `[low, high)` (the caller checks `low < high`).
pub fn integers(n: usize, low: i64, high: i64) -> Result<Vec<i64>> {
    let mut out = try_with_capacity(n)?;
    let mut rng = generator();
    out.extend((0..n).map(|_| rng.random_range(low..high)));
    Ok(out)
}

/// A uniformly random permutation of `0..n` (Fisher–Yates).
pub fn permutation(n: usize) -> Vec<usize> {
    let mut rng = generator();
    let mut p: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        p.swap(i, rng.random_range(0..=i));
    }
    p
}

/// A 64-bit seed drawn from the global generator (for per-object generators such as a
/// data loader's shuffle that must still follow `manual_seed`).
pub fn next_seed() -> u64 {
    generator().random::<u64>()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn manual_seed_makes_draws_repeat() {
        manual_seed(7);
        let a = (normal(5).unwrap(), uniform(5).unwrap(), permutation(10));
        manual_seed(7);
        let b = (normal(5).unwrap(), uniform(5).unwrap(), permutation(10));
        assert_eq!(a, b);
        assert!(a.1.iter().all(|&u| (0.0..1.0).contains(&u)));
    }
}
