//! Creation functions: zeros, ones, full, arange, eye, randn, rand.

use super::record;
use super::Tensor;
use crate::dtype::{DType, Scalar};
use crate::dynarray::DynArray;
use crate::shape::checked_size;
use crate::{random, Error, Result};

impl Tensor {
    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: f64, dtype: DType, requires_grad: bool) -> Result<Tensor> {
        Self::full_scalar(shape, Scalar::Float(value), dtype, requires_grad)
    }

    /// A tensor of `shape` filled with a scalar (integers stay exact in integer dtypes).
    pub fn full_scalar(
        shape: &[usize],
        value: Scalar,
        dtype: DType,
        requires_grad: bool,
    ) -> Result<Tensor> {
        Tensor::leaf(DynArray::full_scalar(shape, value, dtype)?, requires_grad)
    }

    /// Zeros.
    pub fn zeros(shape: &[usize], dtype: DType, requires_grad: bool) -> Result<Tensor> {
        Self::full(shape, 0.0, dtype, requires_grad)
    }

    /// Ones.
    pub fn ones(shape: &[usize], dtype: DType, requires_grad: bool) -> Result<Tensor> {
        Self::full(shape, 1.0, dtype, requires_grad)
    }

    /// `start, start + step, …` up to but excluding `stop`, counted in f64.
    pub fn arange(
        start: f64,
        stop: f64,
        step: f64,
        dtype: DType,
        requires_grad: bool,
    ) -> Result<Tensor> {
        if step == 0.0 || !step.is_finite() {
            return Err(Error::Value(format!(
                "arange: step must be finite and non-zero, got {step}"
            )));
        }
        let n = ((stop - start) / step).ceil();
        if n.is_nan() {
            return Err(Error::Value(format!(
                "arange: cannot count from {start} to {stop}"
            )));
        }
        let n = n.max(0.0);
        if n > usize::MAX as f64 / 16.0 {
            return Err(Error::Memory(format!(
                "arange: {n} elements cannot be allocated"
            )));
        }
        let n = n as usize;
        let mut values = crate::ndarray::try_with_capacity::<f64>(n)?;
        values.extend((0..n).map(|i| start + i as f64 * step));
        Tensor::leaf(DynArray::from_f64(values, &[n], dtype)?, requires_grad)
    }

    /// `start, start + step, …` up to but excluding `stop`, counted exactly in i64 (then cast
    /// to `dtype`): what `arange` with integer arguments gives.
    pub fn arange_int(
        start: i64,
        stop: i64,
        step: i64,
        dtype: DType,
        requires_grad: bool,
    ) -> Result<Tensor> {
        if step == 0 {
            return Err(Error::Value("arange: step must be non-zero, got 0".into()));
        }
        let span = i128::from(stop) - i128::from(start);
        let step128 = i128::from(step);
        let n = if (span > 0) == (step > 0) && span != 0 {
            (span + step128 - step128.signum()) / step128
        } else {
            0
        };
        let n = usize::try_from(n)
            .map_err(|_| Error::Memory(format!("arange: {n} elements cannot be allocated")))?;
        let mut values = crate::ndarray::try_with_capacity::<i64>(n)?;
        values.extend((0..n).map(|i| (i128::from(start) + i as i128 * step128) as i64));
        Tensor::leaf(DynArray::from_i64(values, &[n], dtype)?, requires_grad)
    }

    /// An `n × m` matrix with ones on the diagonal.
    pub fn eye(n: usize, m: usize, dtype: DType, requires_grad: bool) -> Result<Tensor> {
        let size = checked_size(&[n, m])?;
        let mut values = crate::ndarray::try_with_capacity::<i64>(size)?;
        values.resize(size, 0);
        for i in 0..n.min(m) {
            values[i * m + i] = 1;
        }
        Tensor::leaf(DynArray::from_i64(values, &[n, m], dtype)?, requires_grad)
    }

    /// Standard normal samples from the global generator.
    pub fn randn(shape: &[usize], dtype: DType, requires_grad: bool) -> Result<Tensor> {
        if !dtype.is_float() {
            return Err(crate::dtype::float_only_error("randn", dtype));
        }
        let n = checked_size(shape)?;
        let out = Tensor::leaf(
            DynArray::from_f64(random::normal(n)?, shape, dtype)?,
            requires_grad,
        )?;
        // Recorded so that an export refuses random draws instead of freezing them.
        record::push("randn", &[], &[&out]);
        Ok(out)
    }

    /// Uniform samples in `[0, 1)` from the global generator.
    pub fn rand(shape: &[usize], dtype: DType, requires_grad: bool) -> Result<Tensor> {
        if !dtype.is_float() {
            return Err(crate::dtype::float_only_error("rand", dtype));
        }
        let n = checked_size(shape)?;
        let out = Tensor::leaf(
            DynArray::from_f64(random::uniform(n)?, shape, dtype)?,
            requires_grad,
        )?;
        // Recorded so that an export refuses random draws instead of freezing them.
        record::push("rand", &[], &[&out]);
        Ok(out)
    }
}
