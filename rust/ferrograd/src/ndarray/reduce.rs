//! Reductions over axes: sum, mean, max, min (NaN-propagating) and argmax/argmin.

use super::{for_each_offset2, Float, NdArray};
use crate::shape::{fmt_shape, reduced_shape, strides_of};
use crate::{Error, Result};

/// Which reduction to run.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ReduceOp {
    Sum,
    Mean,
    Max,
    Min,
}

impl ReduceOp {
    /// The op's name in error messages.
    pub fn name(self) -> &'static str {
        match self {
            ReduceOp::Sum => "sum",
            ReduceOp::Mean => "mean",
            ReduceOp::Max => "max",
            ReduceOp::Min => "min",
        }
    }
}

/// Keeps the larger value, and NaN once seen (NumPy's `max` propagates NaN).
fn keep_max<T: Float>(acc: T, x: T) -> T {
    if x > acc || x.is_nan() || acc.is_nan() {
        if acc.is_nan() {
            acc
        } else {
            x
        }
    } else {
        acc
    }
}

fn keep_min<T: Float>(acc: T, x: T) -> T {
    -keep_max(-acc, -x)
}

/// Independent accumulators in [`lane_sum`]: enough for the compiler to keep one
/// AVX-512 (or two AVX2) registers of partial sums and vectorise the loop.
const LANES: usize = 16;

/// Sums a block with [`LANES`] interleaved accumulators (pairwise-like error growth, and a
/// loop the compiler vectorises, which a single running sum never is).
#[inline(always)]
pub(crate) fn lane_sum<T: Float>(xs: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let mut it = xs.chunks_exact(LANES);
    for c in &mut it {
        for (a, &x) in acc.iter_mut().zip(c) {
            *a = *a + x;
        }
    }
    let tail: T = it.remainder().iter().copied().sum();
    // Fold the lanes pairwise.
    let mut w = LANES;
    while w > 1 {
        w /= 2;
        for i in 0..w {
            acc[i] = acc[i] + acc[i + w];
        }
    }
    acc[0] + tail
}

/// Elements per block of [`blocked_sum`] (and per task when it runs in parallel).
const BLOCK: usize = 4096;

/// Sums a slice in blocks, so f32 error grows with the block count rather than the length;
/// large slices sum their blocks on the crate's pool.
fn blocked_sum<T: Float>(xs: &[T]) -> T {
    if crate::parallel::should_split(xs.len()) {
        let parts = crate::parallel::map_items(xs.chunks(BLOCK * 16), |c| {
            c.chunks(BLOCK).map(lane_sum).sum::<T>()
        });
        return parts.into_iter().sum();
    }
    xs.chunks(BLOCK).map(lane_sum).sum()
}

impl<T: Float> NdArray<T> {
    /// Reduces the given (normalised, sorted, distinct) axes.
    pub fn reduce(&self, op: ReduceOp, axes: &[usize], keepdims: bool) -> Result<Self> {
        let out_shape = reduced_shape(&self.shape, axes, keepdims);
        let count: usize = axes.iter().map(|&a| self.shape[a]).product();
        if count == 0 && matches!(op, ReduceOp::Max | ReduceOp::Min) {
            return Err(Error::Value(format!(
                "{}: zero-size array of shape {} has no {} along axes {axes:?}",
                op.name(),
                fmt_shape(&self.shape),
                op.name()
            )));
        }
        let init = match op {
            ReduceOp::Sum | ReduceOp::Mean => T::zero(),
            ReduceOp::Max => T::neg_infinity(),
            ReduceOp::Min => T::infinity(),
        };
        let combine = |acc: T, x: T| match op {
            ReduceOp::Sum | ReduceOp::Mean => acc + x,
            ReduceOp::Max => keep_max(acc, x),
            ReduceOp::Min => keep_min(acc, x),
        };
        let out_size: usize = out_shape.iter().product();
        let inner: usize = self.shape[axes.iter().min().map_or(self.ndim(), |&a| a)..]
            .iter()
            .product();
        let tail_reduced = axes
            .iter()
            .enumerate()
            .all(|(i, &a)| a == self.ndim() - axes.len() + i);
        let mut out = super::try_filled(out_size, init)?;
        let lead_reduced = axes.iter().enumerate().all(|(i, &a)| a == i);
        if tail_reduced && inner == count {
            // The reduced axes are the trailing ones: each output is one contiguous run.
            for (o, run) in out.iter_mut().zip(self.data.chunks(count.max(1))) {
                *o = match op {
                    ReduceOp::Sum | ReduceOp::Mean => blocked_sum(run),
                    _ => run.iter().fold(init, |a, &x| combine(a, x)),
                };
            }
        } else if lead_reduced && out_size > 0 && matches!(op, ReduceOp::Sum | ReduceOp::Mean) {
            // The reduced axes are the leading ones (a bias gradient: sum over the batch):
            // add whole rows into the output, a loop the compiler vectorises.
            for row in self.data.chunks_exact(out_size) {
                super::elementwise::add_into(&mut out, row);
            }
        } else {
            // Walk the input once; reduced axes map to output stride 0.
            let kept = reduced_shape(&self.shape, axes, true);
            let kept_strides = strides_of(&kept);
            let out_strides: Vec<usize> = (0..self.ndim())
                .map(|d| {
                    if axes.contains(&d) {
                        0
                    } else {
                        kept_strides[d]
                    }
                })
                .collect();
            let in_strides = strides_of(&self.shape);
            for_each_offset2(&self.shape, &in_strides, &out_strides, |i, o| {
                out[o] = combine(out[o], self.data[i]);
            });
        }
        if op == ReduceOp::Mean {
            let n = T::from_usize(count).unwrap_or_else(T::nan);
            out.iter_mut().for_each(|x| *x = *x / n);
        }
        Ok(Self {
            shape: out_shape,
            data: out,
        })
    }

    /// The index of the largest (`largest`) or smallest element along `axis`, or over the
    /// flattened array when `axis` is `None`; the first one on ties, the first NaN if any.
    pub fn arg_extreme(
        &self,
        axis: Option<usize>,
        keepdims: bool,
        largest: bool,
    ) -> Result<NdArray<usize>> {
        let name = if largest { "argmax" } else { "argmin" };
        self.arg_best(name, axis, keepdims, |x: T, best: T| {
            !best.is_nan() && (x.is_nan() || if largest { x > best } else { x < best })
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(data: &[f64], shape: &[usize]) -> NdArray<f64> {
        NdArray::from_vec(data.to_vec(), shape).unwrap()
    }

    #[test]
    fn sum_over_each_axis_matches_hand_computation() {
        let a = arr(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        assert_eq!(
            a.reduce(ReduceOp::Sum, &[0], false).unwrap().data(),
            &[5., 7., 9.]
        );
        assert_eq!(
            a.reduce(ReduceOp::Sum, &[1], true).unwrap().shape(),
            &[2, 1]
        );
        assert_eq!(
            a.reduce(ReduceOp::Sum, &[0, 1], false).unwrap().data(),
            &[21.]
        );
        assert_eq!(
            a.reduce(ReduceOp::Mean, &[1], false).unwrap().data(),
            &[2., 5.]
        );
    }

    #[test]
    fn max_and_min_propagate_nan() {
        let a = arr(&[1., f64::NAN, 3.], &[3]);
        assert!(a.reduce(ReduceOp::Max, &[0], false).unwrap().data()[0].is_nan());
        assert!(a.reduce(ReduceOp::Min, &[0], false).unwrap().data()[0].is_nan());
    }

    #[test]
    fn max_of_an_empty_array_is_an_error_but_mean_is_nan() {
        let a = arr(&[], &[0]);
        assert!(matches!(
            a.reduce(ReduceOp::Max, &[0], false),
            Err(Error::Value(_))
        ));
        assert!(a.reduce(ReduceOp::Mean, &[0], false).unwrap().data()[0].is_nan());
    }

    #[test]
    fn argmax_takes_the_first_of_ties_along_an_axis() {
        let a = arr(&[1., 5., 5., 7., 0., 7.], &[2, 3]);
        assert_eq!(a.arg_extreme(Some(1), false, true).unwrap().data(), &[1, 0]);
        assert_eq!(
            a.arg_extreme(Some(0), false, true).unwrap().data(),
            &[1, 0, 1]
        );
        assert_eq!(a.arg_extreme(None, false, true).unwrap().data(), &[3]);
        assert_eq!(a.arg_extreme(None, false, false).unwrap().data(), &[4]);
    }
}
