//! Reductions and (log-)softmax on `Tensor`, with their backward rules.

use super::record::{self, kv};
use super::Tensor;
use crate::dynarray::fns::*;
use crate::dynarray::DynArray;
use crate::ndarray::ReduceOp;
use crate::shape::{normalize_axes, normalize_axis, reduced_shape};
use crate::Result;

/// Reshapes a reduced gradient so it broadcasts against the input again (keepdims form).
fn unreduce(g: &DynArray, input_shape: &[usize], axes: &[usize]) -> Result<DynArray> {
    g.clone()
        .into_shape(&reduced_shape(input_shape, axes, true))
}

impl Tensor {
    /// Sum over `axes` (`None` = all; negative allowed).
    pub fn sum(&self, axes: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Sum, axes, keepdims)
    }

    /// Mean over `axes`; the mean of an empty tensor is NaN.
    pub fn mean(&self, axes: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Mean, axes, keepdims)
    }

    /// Maximum over `axes`; NaN propagates, ties share the gradient equally.
    pub fn max(&self, axes: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Max, axes, keepdims)
    }

    /// Minimum over `axes`; NaN propagates, ties share the gradient equally.
    pub fn min(&self, axes: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
        self.reduce(ReduceOp::Min, axes, keepdims)
    }

    fn reduce(&self, op: ReduceOp, axes: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
        let x = self.array();
        let axes = normalize_axes(op.name(), axes, x.ndim())?;
        let ax: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
        let out = x.reduce(op, Some(&ax), keepdims)?;
        let input_shape = x.shape().to_vec();
        let count: usize = axes.iter().map(|&a| input_shape[a]).product();
        drop(x);
        let attrs = record::attrs(|| vec![kv("axes", &ax[..]), kv("keepdims", keepdims)]);
        Ok(Tensor::from_op(out, op.name(), &[self], move |g, ctx| {
            let g = unreduce(g, &input_shape, &axes)?;
            let grad = match op {
                ReduceOp::Sum => g.broadcast_to(&input_shape)?,
                ReduceOp::Mean => g
                    .zip_scalar(count as f64, Div)?
                    .broadcast_to(&input_shape)?,
                ReduceOp::Max | ReduceOp::Min => {
                    // Share among the elements equal to the extreme: mask / (ties per slot).
                    let y = unreduce(&*ctx.output()?, &input_shape, &axes)?;
                    let mask = ctx.input(0)?.zip("max", &y, EqMask)?;
                    let ties = mask.reduce(ReduceOp::Sum, Some(&ax), true)?;
                    mask.zip("max", &g.zip("max", &ties, Div)?, Mul)?
                }
            };
            Ok(vec![Some(grad)])
        })
        .recorded_with(attrs))
    }

    /// Whether every element over `axes` is non-zero (bool; not differentiable).
    pub fn all(&self, axes: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
        self.all_or_any(axes, keepdims, true)
    }

    /// Whether any element over `axes` is non-zero (bool; not differentiable).
    pub fn any(&self, axes: Option<&[isize]>, keepdims: bool) -> Result<Tensor> {
        self.all_or_any(axes, keepdims, false)
    }

    fn all_or_any(&self, axes: Option<&[isize]>, keepdims: bool, all: bool) -> Result<Tensor> {
        let x = self.array();
        let out = x.all_or_any(axes, keepdims, all)?;
        let op = if all { "all" } else { "any" };
        let axes = normalize_axes(op, axes, x.ndim())?;
        drop(x);
        let attrs = record::attrs(|| {
            let ax: Vec<isize> = axes.iter().map(|&a| a as isize).collect();
            vec![kv("axes", &ax[..]), kv("keepdims", keepdims)]
        });
        Ok(Tensor::untracked_op(out, op, &[self]).recorded_with(attrs))
    }

    /// Indices of the maxima along `axis` (`None` = flattened), as int64; not differentiable.
    pub fn argmax(&self, axis: Option<isize>, keepdims: bool) -> Result<Tensor> {
        self.arg_extreme(axis, keepdims, true)
    }

    /// Indices of the minima along `axis`, like [`Tensor::argmax`].
    pub fn argmin(&self, axis: Option<isize>, keepdims: bool) -> Result<Tensor> {
        self.arg_extreme(axis, keepdims, false)
    }

    fn arg_extreme(&self, axis: Option<isize>, keepdims: bool, largest: bool) -> Result<Tensor> {
        let idx = self.array().arg_extreme(axis, keepdims, largest)?;
        let op = if largest { "argmax" } else { "argmin" };
        let attrs = record::attrs(|| vec![kv("axis", axis), kv("keepdims", keepdims)]);
        Ok(Tensor::untracked_op(idx, op, &[self]).recorded_with(attrs))
    }

    /// Softmax along `axis`, computed as exp(x - max) / sum for stability.
    pub fn softmax(&self, axis: isize) -> Result<Tensor> {
        let x = self.array();
        x.require_float("softmax")?;
        let ax = normalize_axis("softmax", axis, x.ndim().max(1))? as isize;
        let out = softmax_forward(&x, ax, false)?;
        drop(x);
        let attrs = record::attrs(|| vec![kv("axis", ax)]);
        Ok(Tensor::from_op(out, "softmax", &[self], move |g, ctx| {
            let y = &*ctx.output()?;
            // dx = y * (g - sum(g * y))
            let gy = g.zip("softmax", y, Mul)?;
            // A 0-d input is its own (one-element) axis: the sum is the element itself.
            let s = if y.ndim() == 0 {
                gy
            } else {
                gy.reduce(ReduceOp::Sum, Some(&[ax]), true)?
            };
            Ok(vec![Some(y.zip(
                "softmax",
                &g.zip("softmax", &s, Sub)?,
                Mul,
            )?)])
        })
        .recorded_with(attrs))
    }

    /// Log-softmax along `axis`: x - max - log(sum(exp(x - max))), finite for huge logits.
    pub fn log_softmax(&self, axis: isize) -> Result<Tensor> {
        let x = self.array();
        x.require_float("log_softmax")?;
        let ax = normalize_axis("log_softmax", axis, x.ndim().max(1))? as isize;
        let out = softmax_forward(&x, ax, true)?;
        drop(x);
        let attrs = record::attrs(|| vec![kv("axis", ax)]);
        Ok(Tensor::from_op(out, "log_softmax", &[self], move |g, ctx| {
            let y = &*ctx.output()?;
            // dx = g - softmax * sum(g)
            let s = if g.ndim() == 0 {
                g.clone()
            } else {
                g.reduce(ReduceOp::Sum, Some(&[ax]), true)?
            };
            Ok(vec![Some(g.zip(
                "log_softmax",
                &y.map(Exp)?.zip("log_softmax", &s, Mul)?,
                Sub,
            )?)])
        })
        .recorded_with(attrs))
    }
}

/// Softmax or log-softmax of `x` along `axis`, shifted by the max for stability.
fn softmax_forward(x: &DynArray, axis: isize, log: bool) -> Result<DynArray> {
    if x.ndim() == 0 {
        // A single logit: softmax 1, log-softmax 0 (NaN stays NaN).
        let shifted = x.zip("softmax", x, Sub)?;
        return if log { Ok(shifted) } else { shifted.map(Exp) };
    }
    let m = x.reduce(ReduceOp::Max, Some(&[axis]), true)?;
    // An all -inf row would give -inf - -inf = NaN; shift by 0 there instead.
    let m = m.map(FiniteOrZero)?;
    let shifted = x.zip("softmax", &m, Sub)?;
    let e = shifted.map(Exp)?;
    let s = e.reduce(ReduceOp::Sum, Some(&[axis]), true)?;
    if log {
        shifted.zip("log_softmax", &s.map(Log)?, Sub)
    } else {
        e.zip("softmax", &s, Div)
    }
}

#[derive(Clone, Copy)]
struct FiniteOrZero;
impl crate::dynarray::UnaryFn for FiniteOrZero {
    fn apply<T: crate::ndarray::Float>(&self, x: T) -> T {
        if x.is_finite() || x.is_nan() {
            x
        } else {
            T::zero()
        }
    }
}
