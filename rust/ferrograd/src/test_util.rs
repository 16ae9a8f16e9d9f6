//! Helpers shared by the crate's unit tests.

use crate::ndarray::{Float, NdArray};
use crate::shape::size_of;

/// Deterministic pseudo-random values in [-1, 1) (an LCG; no global state).
pub(crate) fn filled<T: Float>(shape: &[usize], seed: u64) -> NdArray<T> {
    let mut s = seed
        .wrapping_mul(6364136223846793005)
        .wrapping_add(1442695040888963407);
    let data = (0..size_of(shape))
        .map(|_| {
            s = s
                .wrapping_mul(6364136223846793005)
                .wrapping_add(1442695040888963407);
            T::from_f64_lossy((s >> 11) as f64 / (1u64 << 53) as f64 * 2.0 - 1.0)
        })
        .collect();
    NdArray::from_vec(data, shape).unwrap()
}
