//! What every element type shares (`Elem`: f32, f64, i64, i32, bool): casts, and the
//! reductions and arg-extremes of integer and bool arrays (floats have tuned ones in reduce.rs).

use super::{NdArray, ReduceOp};
use crate::dtype::DType;
use crate::shape::{fmt_shape, reduced_shape};
use crate::{Error, Result};

/// An element type a `DynArray` can hold.
pub trait Elem: Copy + Default + PartialOrd + Send + Sync + std::fmt::Debug + 'static {
    /// The run-time tag of this type.
    const DTYPE: DType;
    /// The value as f64 (bool → 0/1; large integers round).
    fn to_f64(self) -> f64;
    /// The value as i64 (floats truncate toward zero, saturating; NaN → 0).
    fn to_i64(self) -> i64;
    /// From f64: floats round, integers truncate toward zero, bool is `x != 0` (NaN is true).
    fn from_f64(x: f64) -> Self;
    /// From i64: integers wrap (two's complement), floats round, bool is `x != 0`.
    fn from_i64(x: i64) -> Self;
}

/// `Elem` for a primitive number type: `as` casts do what the trait promises (floats round,
/// integers truncate toward zero and saturate from floats, wrap from integers).
macro_rules! number_elem {
    ($($t:ty => $d:expr),*) => {$(
        impl Elem for $t {
            const DTYPE: DType = $d;
            fn to_f64(self) -> f64 {
                self as f64
            }
            fn to_i64(self) -> i64 {
                self as i64
            }
            fn from_f64(x: f64) -> Self {
                x as $t
            }
            fn from_i64(x: i64) -> Self {
                x as $t
            }
        }
    )*};
}
number_elem!(f32 => DType::F32, f64 => DType::F64, i64 => DType::I64, i32 => DType::I32);

impl Elem for bool {
    const DTYPE: DType = DType::Bool;
    fn to_f64(self) -> f64 {
        f64::from(u8::from(self))
    }
    fn to_i64(self) -> i64 {
        i64::from(self)
    }
    fn from_f64(x: f64) -> Self {
        x != 0.0
    }
    fn from_i64(x: i64) -> Self {
        x != 0
    }
}

/// Converts one element: exact between integer types, through f64 otherwise.
#[inline]
pub fn cast_elem<T: Elem, U: Elem>(x: T) -> U {
    if T::DTYPE.is_float() {
        U::from_f64(x.to_f64())
    } else {
        U::from_i64(x.to_i64())
    }
}

impl<T: Elem> NdArray<T> {
    /// Converts every element to another element type (float → int truncates toward zero).
    pub fn cast_to<U: Elem>(&self) -> NdArray<U> {
        self.map(|&x| cast_elem(x))
    }

    /// Reduces the given (normalised, sorted, distinct) axes of an integer or bool array
    /// with `combine`, starting each output from `init`; `to` converts each element first.
    pub fn fold_axes<A: Elem>(
        &self,
        op: ReduceOp,
        axes: &[usize],
        keepdims: bool,
        to: impl Fn(T) -> A,
        init: Option<A>,
        combine: impl Fn(A, A) -> A,
    ) -> Result<NdArray<A>> {
        let out_shape = reduced_shape(&self.shape, axes, keepdims);
        let count: usize = axes.iter().map(|&a| self.shape[a]).product();
        if count == 0 && init.is_none() {
            return Err(Error::Value(format!(
                "{}: zero-size array of shape {} has no {} along axes {axes:?}",
                op.name(),
                fmt_shape(&self.shape),
                op.name()
            )));
        }
        // Kept axes first, reduced axes last: each output is then one contiguous run.
        let kept: Vec<usize> = (0..self.ndim()).filter(|a| !axes.contains(a)).collect();
        let perm: Vec<usize> = kept.iter().chain(axes).copied().collect();
        let moved = self.permute(&perm)?;
        let out_size: usize = kept.iter().map(|&a| self.shape[a]).product();
        let mut out = super::try_with_capacity(out_size)?;
        for o in 0..out_size {
            let run = &moved.data[o * count..(o + 1) * count];
            let mut it = run.iter().map(|&x| to(x));
            let first = match init {
                Some(v) => v,
                None => it.next().unwrap_or_default(),
            };
            out.push(it.fold(first, &combine));
        }
        NdArray::from_vec(out, &out_shape)
    }

    /// Like `arg_extreme` of floats, for totally ordered elements (no NaN to consider).
    pub fn arg_extreme_ord(
        &self,
        axis: Option<usize>,
        keepdims: bool,
        largest: bool,
    ) -> Result<NdArray<usize>> {
        let name = if largest { "argmax" } else { "argmin" };
        self.arg_best(name, axis, keepdims, |x, best| {
            if largest {
                x > best
            } else {
                x < best
            }
        })
    }
}

impl<T: Copy> NdArray<T> {
    /// The index along `axis` (or over the flattened array when `None`) of the element that
    /// `better(x, best_so_far)` prefers, the first one on ties.
    pub fn arg_best(
        &self,
        name: &str,
        axis: Option<usize>,
        keepdims: bool,
        better: impl Fn(T, T) -> bool,
    ) -> Result<NdArray<usize>> {
        let (outer, n, inner, shape) = match axis {
            None => {
                let shape = if keepdims {
                    vec![1; self.ndim()]
                } else {
                    vec![]
                };
                (1, self.size(), 1, shape)
            }
            Some(ax) => (
                self.shape[..ax].iter().product(),
                self.shape[ax],
                self.shape[ax + 1..].iter().product(),
                reduced_shape(&self.shape, &[ax], keepdims),
            ),
        };
        if n == 0 {
            return Err(Error::Value(format!(
                "{name}: attempt to get {name} of an empty sequence (shape {})",
                fmt_shape(&self.shape)
            )));
        }
        let mut out = super::try_with_capacity(outer * inner)?;
        for o in 0..outer {
            for i in 0..inner {
                let at = |k: usize| self.data[(o * n + k) * inner + i];
                let mut best = 0;
                for k in 1..n {
                    if better(at(k), at(best)) {
                        best = k;
                    }
                }
                out.push(best);
            }
        }
        NdArray::from_vec(out, &shape)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn casts_truncate_floats_and_wrap_integers() {
        let a = NdArray::from_vec(vec![-1.7f64, 2.9, 0.0, f64::NAN], &[4]).unwrap();
        assert_eq!(a.cast_to::<i64>().data(), &[-1, 2, 0, 0]);
        assert_eq!(a.cast_to::<bool>().data(), &[true, true, false, true]);
        let big = NdArray::from_vec(vec![(1i64 << 40) + 5, -3], &[2]).unwrap();
        assert_eq!(big.cast_to::<i32>().data(), &[5, -3]);
        let exact = NdArray::from_vec(vec![(1i64 << 60) + 1], &[1]).unwrap();
        assert_eq!(exact.cast_to::<i64>().data(), &[(1i64 << 60) + 1]);
    }

    #[test]
    fn fold_axes_sums_any_axes() {
        let a = NdArray::from_vec((0..24).collect::<Vec<i64>>(), &[2, 3, 4]).unwrap();
        let s = a
            .fold_axes(
                ReduceOp::Sum,
                &[0, 2],
                false,
                |x| x,
                Some(0),
                i64::wrapping_add,
            )
            .unwrap();
        assert_eq!(s.shape(), &[3]);
        // Row 0 of each 3x4 slab: 0..=3 and 12..=15.
        assert_eq!(s.data(), &[60, 92, 124]);
        let m = a
            .fold_axes(ReduceOp::Max, &[1], true, |x| x, None, i64::max)
            .unwrap();
        assert_eq!(m.shape(), &[2, 1, 4]);
        assert_eq!(m.data(), &[8, 9, 10, 11, 20, 21, 22, 23]);
    }

    #[test]
    fn max_of_an_empty_integer_array_is_an_error() {
        let a = NdArray::<i32>::from_vec(vec![], &[0]).unwrap();
        assert!(a
            .fold_axes(ReduceOp::Max, &[0], false, |x| x, None, i32::max)
            .is_err());
    }
}
