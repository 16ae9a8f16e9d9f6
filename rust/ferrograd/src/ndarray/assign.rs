//! In-place kernels: `x[i] = f(x[i], y[i])` with `y` broadcast to `x`'s shape, maps, fills
//! and broadcasting copies. The array keeps its shape: an operand that would widen it is an
//! error, checked before anything is written.

use super::elementwise::simd::{self, Kernel};
use super::{for_each_offset2, Float, NdArray};
use crate::parallel::{for_each_chunk_mut, should_split};
use crate::shape::{broadcast_strides, fmt_shape, strides_of};
use crate::{Error, Result};

/// Elements per task.
const CHUNK: usize = 1 << 14;

/// Checks that an operand of shape `from` broadcasts to `to` without changing it (NumPy's
/// rule for an output operand: `from` has at most `to`'s axes, each equal or 1).
pub fn check_assign(op: &str, from: &[usize], to: &[usize]) -> Result<()> {
    let fits = from.len() <= to.len()
        && from
            .iter()
            .rev()
            .zip(to.iter().rev())
            .all(|(&f, &t)| f == t || f == 1);
    if fits {
        Ok(())
    } else {
        Err(Error::Shape(format!(
            "{op}: an operand of shape {} cannot be broadcast to the shape {} of the array \
             written in place (an in-place op keeps the array's shape)",
            fmt_shape(from),
            fmt_shape(to)
        )))
    }
}

impl<T: Float> NdArray<T> {
    /// `self[i] = f(self[i], other[i])`, `other` broadcast to this array's shape.
    pub fn zip_assign(
        &mut self,
        op: &str,
        other: &Self,
        f: impl Fn(T, T) -> T + Sync + Send,
    ) -> Result<()> {
        check_assign(op, other.shape(), self.shape())?;
        if self.shape() == other.shape() {
            let (x, y) = (&mut self.data, &other.data);
            let zip = |(x, y): (&mut [T], &[T])| simd::run(ZipAssign { x, y, f: &f });
            if should_split(x.len()) {
                for_each_chunk_mut(x, CHUNK, |i, x| {
                    let y = &y[i * CHUNK..][..x.len()];
                    zip((x, y))
                });
            } else {
                zip((x, y));
            }
            return Ok(());
        }
        if other.size() == 1 {
            let y = other.data[0];
            self.map_assign(|x| f(x, y));
            return Ok(());
        }
        let shape = self.shape.clone();
        let (sx, sy) = (strides_of(&shape), broadcast_strides(other.shape(), &shape));
        let (x, y) = (&mut self.data, &other.data);
        for_each_offset2(&shape, &sx, &sy, |i, j| x[i] = f(x[i], y[j]));
        Ok(())
    }

    /// `self[i] = f(self[i])`.
    pub fn map_assign(&mut self, f: impl Fn(T) -> T + Sync + Send) {
        let one = |x: &mut [T]| x.iter_mut().for_each(|x| *x = f(*x));
        if should_split(self.data.len()) {
            for_each_chunk_mut(&mut self.data, CHUNK, |_, x| one(x));
        } else {
            one(&mut self.data);
        }
    }
}

impl<T: Clone> NdArray<T> {
    /// Sets every element to `value`.
    pub fn fill(&mut self, value: T) {
        self.data.fill(value);
    }

    /// Copies `src`, broadcast to this array's shape, into this array.
    pub fn assign(&mut self, op: &str, src: &Self) -> Result<()> {
        check_assign(op, src.shape(), self.shape())?;
        if self.shape() == src.shape() {
            self.data.clone_from_slice(&src.data);
            return Ok(());
        }
        let shape = self.shape.clone();
        let (sx, sy) = (strides_of(&shape), broadcast_strides(src.shape(), &shape));
        let (x, y) = (&mut self.data, &src.data);
        for_each_offset2(&shape, &sx, &sy, |i, j| x[i] = y[j].clone());
        Ok(())
    }
}

/// `x[i] = f(x[i], y[i])` over equal-length slices, compiled per instruction set (the
/// in-place backward rules, e.g. relu's and GELU's, run through it).
struct ZipAssign<'a, T, F> {
    x: &'a mut [T],
    y: &'a [T],
    f: &'a F,
}

impl<T: Copy, F: Fn(T, T) -> T> Kernel for ZipAssign<'_, T, F> {
    fn work(&self) -> usize {
        self.x.len()
    }

    #[inline(always)]
    fn run(self) {
        let f = self.f;
        self.x
            .iter_mut()
            .zip(self.y)
            .for_each(|(x, &y)| *x = f(*x, y));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(data: &[f64], shape: &[usize]) -> NdArray<f64> {
        NdArray::from_vec(data.to_vec(), shape).unwrap()
    }

    #[test]
    fn zip_assign_broadcasts_a_row_over_every_row() {
        let mut a = arr(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        a.zip_assign("add_", &arr(&[10., 20., 30.], &[3]), |x, y| x + y)
            .unwrap();
        assert_eq!(a.data(), &[11., 22., 33., 14., 25., 36.]);
    }

    #[test]
    fn zip_assign_broadcasts_a_column_and_a_scalar() {
        let mut a = arr(&[1., 2., 3., 4.], &[2, 2]);
        a.zip_assign("mul_", &arr(&[10., 100.], &[2, 1]), |x, y| x * y)
            .unwrap();
        assert_eq!(a.data(), &[10., 20., 300., 400.]);
        a.zip_assign("sub_", &arr(&[1.], &[]), |x, y| x - y)
            .unwrap();
        assert_eq!(a.data(), &[9., 19., 299., 399.]);
    }

    #[test]
    fn an_operand_that_would_widen_the_array_is_an_error_and_writes_nothing() {
        let mut a = arr(&[1., 2., 3.], &[3]);
        for bad in [&[2, 3][..], &[1, 3], &[2]] {
            let n = bad.iter().product();
            let err = a
                .zip_assign("add_", &arr(&vec![1.; n], bad), |x, y| x + y)
                .unwrap_err();
            assert!(
                matches!(err, Error::Shape(ref m) if m.contains("add_")),
                "{err:?}"
            );
        }
        assert_eq!(a.data(), &[1., 2., 3.]);
    }

    #[test]
    fn assign_copies_a_broadcast_source() {
        let mut a = arr(&[0.; 6], &[3, 2]);
        a.assign("copy_", &arr(&[7., 8.], &[2])).unwrap();
        assert_eq!(a.data(), &[7., 8., 7., 8., 7., 8.]);
        assert!(a.assign("copy_", &arr(&[1., 2., 3.], &[3])).is_err());
    }

    #[test]
    fn large_same_shape_updates_match_the_serial_loop() {
        let n = 300_000;
        let mut a = arr(&(0..n).map(|i| i as f64).collect::<Vec<_>>(), &[n]);
        let b = arr(&vec![0.5; n], &[n]);
        a.zip_assign("add_", &b, |x, y| x + y).unwrap();
        a.map_assign(|x| x * 2.0);
        assert!(a
            .data()
            .iter()
            .enumerate()
            .all(|(i, &v)| v == (i as f64 + 0.5) * 2.0));
    }
}
