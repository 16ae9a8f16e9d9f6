//! Creation functions: zeros, ones, full, arange, eye, randn, rand.

use super::Tensor;
use crate::dynarray::{DType, DynArray};
use crate::shape::checked_size;
use crate::{random, Error, Result};

impl Tensor {
    /// A tensor of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: f64, dtype: DType, requires_grad: bool) -> Result<Tensor> {
        Ok(Tensor::new(
            DynArray::full(shape, value, dtype)?,
            requires_grad,
        ))
    }

    /// Zeros.
    pub fn zeros(shape: &[usize], dtype: DType, requires_grad: bool) -> Result<Tensor> {
        Self::full(shape, 0.0, dtype, requires_grad)
    }

    /// Ones.
    pub fn ones(shape: &[usize], dtype: DType, requires_grad: bool) -> Result<Tensor> {
        Self::full(shape, 1.0, dtype, requires_grad)
    }

    /// `start, start + step, …` up to but excluding `stop`.
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
        Ok(Tensor::new(
            DynArray::from_f64(values, &[n], dtype)?,
            requires_grad,
        ))
    }

    /// An `n × m` matrix with ones on the diagonal.
    pub fn eye(n: usize, m: usize, dtype: DType, requires_grad: bool) -> Result<Tensor> {
        checked_size(&[n, m])?;
        let mut a = DynArray::full(&[n, m], 0.0, dtype)?;
        let ones: Vec<usize> = (0..n.min(m)).map(|i| i * m + i).collect();
        let diag = DynArray::full(&[ones.len()], 1.0, dtype)?;
        a.add_assign(&diag.scatter_add(&[n, m], &ones)?)?;
        Ok(Tensor::new(a, requires_grad))
    }

    /// Standard normal samples from the global generator.
    pub fn randn(shape: &[usize], dtype: DType, requires_grad: bool) -> Result<Tensor> {
        let n = checked_size(shape)?;
        Ok(Tensor::new(
            DynArray::from_f64(random::normal(n)?, shape, dtype)?,
            requires_grad,
        ))
    }

    /// Uniform samples in `[0, 1)` from the global generator.
    pub fn rand(shape: &[usize], dtype: DType, requires_grad: bool) -> Result<Tensor> {
        let n = checked_size(shape)?;
        Ok(Tensor::new(
            DynArray::from_f64(random::uniform(n)?, shape, dtype)?,
            requires_grad,
        ))
    }
}
