//! Ops that integer and bool tensors live by: comparisons and bitwise ops (never
//! differentiable), floor division and remainder (Python's semantics), and dtype casts.

use super::record::{self, kv};
use super::{read_pair, Tensor};
use crate::dtype::{DType, Scalar};
use crate::dynarray::fns::{FloorDiv, Mul, Neg};
use crate::dynarray::{Arith, Bitwise, Compare, DynArray};
use crate::Result;

impl Tensor {
    /// Elementwise comparison: a bool tensor, outside the graph.
    pub fn compare(&self, op: Compare, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.compare(op, b))?;
        let attrs = record::attrs(|| vec![kv("op", format!("{op:?}"))]);
        Ok(Tensor::untracked_op(out, "compare", &[self, other]).recorded_with(attrs))
    }

    /// Compares with a scalar: a bool tensor, outside the graph.
    pub fn compare_scalar(&self, op: Compare, s: impl Into<Scalar>) -> Result<Tensor> {
        let s: Scalar = s.into();
        let out = self.array().compare_scalar(op, s)?;
        let attrs = record::attrs(|| vec![kv("op", format!("{op:?}")), kv("scalar", s)]);
        Ok(Tensor::untracked_op(out, "compare", &[self]).recorded_with(attrs))
    }

    /// `&`, `|`, `^` of integer or bool tensors.
    pub fn bitwise(&self, op: Bitwise, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.bitwise(op, b))?;
        let attrs = record::attrs(|| vec![kv("op", format!("{op:?}"))]);
        Ok(Tensor::untracked_op(out, "bitwise", &[self, other]).recorded_with(attrs))
    }

    /// `&`, `|`, `^` with a Python bool or int.
    pub fn bitwise_scalar(&self, op: Bitwise, s: impl Into<Scalar>) -> Result<Tensor> {
        let s: Scalar = s.into();
        let out = self.array().bitwise_scalar(op, s)?;
        let attrs = record::attrs(|| vec![kv("op", format!("{op:?}")), kv("scalar", s)]);
        Ok(Tensor::untracked_op(out, "bitwise", &[self]).recorded_with(attrs))
    }

    /// `~`: logical not of a bool tensor, bitwise not of an integer one.
    pub fn bitwise_not(&self) -> Result<Tensor> {
        let out = self.array().bitwise_not()?;
        Ok(Tensor::untracked_op(out, "bitwise_not", &[self]))
    }

    /// `self // other`, flooring like Python. Its gradient is zero wherever it exists (the
    /// result is piecewise constant), as in PyTorch.
    pub fn floor_divide(&self, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.arith(Arith::FloorDiv, b))?;
        Ok(Tensor::from_op(out, "//", &[self, other], |g, ctx| {
            let zero = g.zip_scalar(0.0, Mul)?;
            Ok(vec![
                ctx.needs_grad(0).then(|| zero.clone()),
                ctx.needs_grad(1).then_some(zero),
            ])
        }))
    }

    /// `self // s` (or `s // self` when `reflected`).
    pub fn floor_divide_scalar(&self, s: impl Into<Scalar>, reflected: bool) -> Result<Tensor> {
        let s: Scalar = s.into();
        let attrs = record::attrs(|| vec![kv("scalar", s), kv("reflected", reflected)]);
        let out = self.array().arith_scalar(Arith::FloorDiv, s, reflected)?;
        Ok(Tensor::from_op(out, "//", &[self], |g, _| {
            Ok(vec![Some(g.zip_scalar(0.0, Mul)?)])
        })
        .recorded_with(attrs))
    }

    /// `self % other` with the divisor's sign (Python's `%`). d/dself = 1 and
    /// d/dother = -(self // other), as in PyTorch.
    pub fn remainder(&self, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.arith(Arith::Rem, b))?;
        Ok(Tensor::from_op(out, "%", &[self, other], |g, ctx| {
            let gb = match ctx.needs_grad(1) {
                true => {
                    let quotient =
                        ctx.with_inputs(&[0, 1], |ab| ab[0].zip("remainder", ab[1], FloorDiv))?;
                    Some(g.zip("remainder", &quotient, Mul)?.map(Neg)?)
                }
                false => None,
            };
            Ok(vec![ctx.needs_grad(0).then(|| g.clone()), gb])
        }))
    }

    /// `self % s` (or `s % self` when `reflected`).
    pub fn remainder_scalar(&self, s: impl Into<Scalar>, reflected: bool) -> Result<Tensor> {
        let s: Scalar = s.into();
        let attrs = record::attrs(|| vec![kv("scalar", s), kv("reflected", reflected)]);
        let out = self.array().arith_scalar(Arith::Rem, s, reflected)?;
        let s = s.to_f64();
        Ok(Tensor::from_op(out, "%", &[self], move |g, ctx| {
            if !reflected {
                return Ok(vec![Some(g.clone())]);
            }
            // d(s % x)/dx = -(s // x)
            let x = ctx.input(0)?;
            let s_arr = DynArray::full(&[], s, x.dtype().to_float())?;
            let q = s_arr.zip("remainder", &x, FloorDiv)?;
            Ok(vec![Some(g.zip("remainder", &q, Mul)?.map(Neg)?)])
        })
        .recorded_with(attrs))
    }

    /// This tensor in another dtype. Float → float is differentiable; casts to or from
    /// integers and bool are not (their result is a plain tensor, like PyTorch's `.long()`).
    pub fn astype(&self, dtype: DType) -> Result<Tensor> {
        let out = self.array().to_dtype(dtype);
        if !(dtype.is_float() && self.dtype().is_float()) {
            return Ok(Tensor::untracked_op(out, "astype", &[self]));
        }
        Ok(Tensor::from_op(out, "astype", &[self], |g, _| {
            Ok(vec![Some(g.clone())])
        }))
    }
}
