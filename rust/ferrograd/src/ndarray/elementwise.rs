//! Elementwise kernels: unary maps, broadcasting binary ops, scalar ops, casts.
//!
//! Contiguous same-shape and scalar operands take a flat loop the compiler vectorises;
//! large ones split across rayon's threads. Other broadcasts walk strides.

use rayon::prelude::*;

use super::{for_each_offset2, try_with_capacity, Float, NdArray};
use crate::parallel::{num_threads, PARALLEL_THRESHOLD};
use crate::shape::{broadcast_shapes, broadcast_strides, checked_size};
use crate::Result;

/// Elements per rayon task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 14;

fn parallel(n: usize) -> bool {
    n >= PARALLEL_THRESHOLD && num_threads() > 1
}

/// `out[i] = f(a[i])`, in parallel when large.
fn map_slice<T: Float>(a: &[T], f: impl Fn(T) -> T + Sync) -> Result<Vec<T>> {
    let mut out = try_with_capacity(a.len())?;
    if parallel(a.len()) {
        out.par_extend(a.par_iter().with_min_len(CHUNK).map(|&x| f(x)));
    } else {
        out.extend(a.iter().map(|&x| f(x)));
    }
    Ok(out)
}

/// `out[i] = f(a[i], b[i])`, in parallel when large.
fn zip_slices<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Result<Vec<T>> {
    let mut out = try_with_capacity(a.len())?;
    if parallel(a.len()) {
        out.par_extend(
            a.par_iter()
                .zip(b.par_iter())
                .with_min_len(CHUNK)
                .map(|(&x, &y)| f(x, y)),
        );
    } else {
        out.extend(a.iter().zip(b).map(|(&x, &y)| f(x, y)));
    }
    Ok(out)
}

impl<T: Float> NdArray<T> {
    /// Applies a float function to every element.
    pub fn unary(&self, f: impl Fn(T) -> T + Sync) -> Result<Self> {
        Ok(Self {
            shape: self.shape.clone(),
            data: map_slice(&self.data, f)?,
        })
    }

    /// Combines two arrays elementwise under NumPy broadcasting; `op` names the op in errors.
    pub fn binary(&self, op: &str, other: &Self, f: impl Fn(T, T) -> T + Sync) -> Result<Self> {
        if self.shape == other.shape {
            let data = zip_slices(&self.data, &other.data, f)?;
            return Ok(Self {
                shape: self.shape.clone(),
                data,
            });
        }
        let shape = broadcast_shapes(op, &self.shape, &other.shape)?;
        // A one-element operand is a scalar: no broadcast walk, no materialised copy.
        if other.size() == 1 && shape == self.shape {
            let y = other.data[0];
            return Ok(Self {
                data: map_slice(&self.data, |x| f(x, y))?,
                shape,
            });
        }
        if self.size() == 1 && shape == other.shape {
            let x = self.data[0];
            return Ok(Self {
                data: map_slice(&other.data, |y| f(x, y))?,
                shape,
            });
        }
        let mut data = try_with_capacity(checked_size(&shape)?)?;
        let sa = broadcast_strides(&self.shape, &shape);
        let sb = broadcast_strides(&other.shape, &shape);
        for_each_offset2(&shape, &sa, &sb, |i, j| {
            data.push(f(self.data[i], other.data[j]))
        });
        Ok(Self { shape, data })
    }

    /// Applies `f(x, s)` with one scalar `s` (converted to `T`; a Python scalar never promotes).
    pub fn scalar_op(&self, s: f64, f: impl Fn(T, T) -> T + Sync) -> Result<Self> {
        let s = T::from_f64_lossy(s);
        self.unary(|x| f(x, s))
    }

    /// Converts every element to another float type.
    pub fn cast<U: Float>(&self) -> NdArray<U> {
        self.map(|&x| U::from_f64_lossy(x.to_f64_lossless()))
    }

    /// Adds `other` into `self` elementwise (same shape), in place.
    pub fn add_assign(&mut self, other: &Self) -> Result<()> {
        if self.shape != other.shape {
            return Err(crate::shape_err!(
                "add_: shapes {} and {} differ",
                crate::shape::fmt_shape(&self.shape),
                crate::shape::fmt_shape(&other.shape)
            ));
        }
        if parallel(self.size()) {
            self.data
                .par_iter_mut()
                .zip(other.data.par_iter())
                .for_each(|(x, &y)| *x = *x + y);
        } else {
            self.data
                .iter_mut()
                .zip(&other.data)
                .for_each(|(x, &y)| *x = *x + y);
        }
        Ok(())
    }

    /// Adds `grad[i]` into `out[offsets[i]]`: the backward of a gather.
    pub fn scatter_add(shape: &[usize], offsets: &[usize], grad: &Self) -> Result<Self> {
        let mut out = Self::full(shape, T::zero())?;
        for (&o, &g) in offsets.iter().zip(&grad.data) {
            out.data[o] = out.data[o] + g;
        }
        Ok(out)
    }
}

/// Numerically careful scalar functions shared by forward and backward rules.
pub mod scalar {
    use super::Float;

    /// The logistic function, exact 0/1 at the extremes and never NaN for finite input.
    pub fn sigmoid<T: Float>(x: T) -> T {
        if x >= T::zero() {
            T::one() / (T::one() + (-x).exp())
        } else {
            let e = x.exp();
            e / (T::one() + e)
        }
    }

    /// `max(x, 0)`, keeping NaN.
    pub fn relu<T: Float>(x: T) -> T {
        if x > T::zero() || x.is_nan() {
            x
        } else {
            T::zero()
        }
    }

    /// `x ** y` with PyTorch's conventions (a negative base to a fractional power is NaN).
    pub fn pow<T: Float>(x: T, y: T) -> T {
        x.powf(y)
    }

    /// The sign of `x`: -1, 0 or 1 (0 at zero, as the subgradient of `abs`).
    pub fn sign<T: Float>(x: T) -> T {
        if x > T::zero() {
            T::one()
        } else if x < T::zero() {
            -T::one()
        } else {
            T::zero() * x
        }
    }
}
