//! Elementwise ops and matmul on `Tensor`, each with its backward rule beside its forward.
//! Gradients may come back broadcast; the engine sums them to each parent's shape.

use std::borrow::Cow;

use super::record::{self, kv};
use super::{read_pair, Tensor};
use crate::dynarray::fns::*;
use crate::dynarray::{Arith, BinaryFn, DynArray, Scalar, UnaryFn};
use crate::ndarray::GEMM_PARALLEL_WORK;
use crate::parallel::join_split;
use crate::Result;

/// Declares a unary op whose backward multiplies the upstream gradient by a factor computed
/// from the saved `input` or the saved `output` (whichever the rule names, and only it is
/// kept), or from `nothing` saved.
macro_rules! unary_op {
    ($(#[$doc:meta])* $name:ident, $op:literal, $fwd:expr, input |$g:ident, $x:ident| $grad:expr) => {
        $(#[$doc])*
        pub fn $name(&self) -> Result<Tensor> {
            let out = $fwd(&*self.array())?;
            Ok(Tensor::from_op(out, $op, &[self], |$g, ctx| {
                let $x = &*ctx.input(0)?;
                Ok(vec![Some($grad)])
            }))
        }
    };
    ($(#[$doc:meta])* $name:ident, $op:literal, $fwd:expr, output |$g:ident, $y:ident| $grad:expr) => {
        $(#[$doc])*
        pub fn $name(&self) -> Result<Tensor> {
            let out = $fwd(&*self.array())?;
            // The rule owns the gradient: `$grad` may write it in place.
            Ok(Tensor::from_op_owned(out, $op, &[self], |$g, ctx| {
                let $y = &*ctx.output()?;
                Ok(vec![Some($grad)])
            }))
        }
    };
    ($(#[$doc:meta])* $name:ident, $op:literal, $fwd:expr, nothing |$g:ident| $grad:expr) => {
        $(#[$doc])*
        pub fn $name(&self) -> Result<Tensor> {
            let out = $fwd(&*self.array())?;
            Ok(Tensor::from_op(out, $op, &[self], |$g, _| Ok(vec![Some($grad)])))
        }
    };
}

impl Tensor {
    /// `self + other`, broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.arith(Arith::Add, b))?;
        // The gradient passes through to both sides: one copy at most, the other side (or
        // the only one) takes the incoming buffer.
        Ok(Tensor::from_op_owned(out, "+", &[self, other], |g, ctx| {
            Ok(match (ctx.needs_grad(0), ctx.needs_grad(1)) {
                (true, true) => vec![Some(g.clone()), Some(g)],
                (true, false) => vec![Some(g), None],
                (false, true) => vec![None, Some(g)],
                (false, false) => vec![None, None],
            })
        }))
    }

    /// `self - other`, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.arith(Arith::Sub, b))?;
        Ok(Tensor::from_op(out, "-", &[self, other], |g, ctx| {
            let gb = ctx.needs_grad(1).then(|| g.map(Neg)).transpose()?;
            Ok(vec![ctx.needs_grad(0).then(|| g.clone()), gb])
        }))
    }

    /// `self * other`, broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.arith(Arith::Mul, b))?;
        Ok(Tensor::from_op(out, "*", &[self, other], |g, ctx| {
            // Each side's gradient reads only the other side (PyTorch saves `other` only when
            // `self` needs a gradient, and the other way round).
            let ga = match ctx.needs_grad(0) {
                true => Some(g.zip("mul", &*ctx.input(1)?, Mul)?),
                false => None,
            };
            let gb = match ctx.needs_grad(1) {
                true => Some(g.zip("mul", &*ctx.input(0)?, Mul)?),
                false => None,
            };
            Ok(vec![ga, gb])
        }))
    }

    /// `self / other`, broadcasting; division by zero follows IEEE.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.arith(Arith::Div, b))?;
        Ok(Tensor::from_op(out, "/", &[self, other], |g, ctx| {
            let ga = match ctx.needs_grad(0) {
                true => Some(g.zip("div", &*ctx.input(1)?, Div)?),
                false => None,
            };
            let gb = match ctx.needs_grad(1) {
                // d(a/b)/db = -(a/b)/b = -y/b
                true => {
                    let gy = g.zip("mul", &*ctx.output()?, Mul)?;
                    Some(gy.zip("div", &*ctx.input(1)?, Div)?.map(Neg)?)
                }
                false => None,
            };
            Ok(vec![ga, gb])
        }))
    }

    /// `self ** other`, broadcasting, differentiable in both; a negative base to a
    /// fractional power is NaN.
    pub fn pow(&self, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.arith(Arith::Pow, b))?;
        Ok(Tensor::from_op(out, "**", &[self, other], |g, ctx| {
            let need = [ctx.needs_grad(0), ctx.needs_grad(1)];
            ctx.with_inputs(&[0, 1], |ab| {
                let (a, b) = (ab[0], ab[1]);
                // d/da = b * a^(b-1) (0 where b is 0); d/db = y * ln(a) (0 where a is 0 and
                // b >= 0), the limits PyTorch takes so that `0 ** 0` has no NaN or inf gradient.
                let ga = match need[0] {
                    true => Some(g.zip("pow", &a.zip("pow", b, PowBaseGrad)?, Mul)?),
                    false => None,
                };
                let gb = match need[1] {
                    true => Some(g.zip("pow", &a.zip("pow", b, PowExponentGrad)?, Mul)?),
                    false => None,
                };
                Ok(vec![ga, gb])
            })
        }))
    }

    /// `self + s` for a scalar `s` (it lifts an integer tensor to float but never widens).
    pub fn add_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let s: Scalar = s.into();
        let attrs = record::attrs(|| vec![kv("scalar", s), kv("reflected", false)]);
        let out = self.array().arith_scalar(Arith::Add, s, false)?;
        Ok(
            Tensor::from_op(out, "+", &[self], |g, _| Ok(vec![Some(g.clone())]))
                .recorded_with(attrs),
        )
    }

    /// `self * s` for a scalar `s`.
    pub fn mul_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let s: Scalar = s.into();
        let attrs = record::attrs(|| vec![kv("scalar", s), kv("reflected", false)]);
        let out = self.array().arith_scalar(Arith::Mul, s, false)?;
        let s = s.to_f64();
        Ok(Tensor::from_op(out, "*", &[self], move |g, _| {
            Ok(vec![Some(g.zip_scalar(s, Mul)?)])
        })
        .recorded_with(attrs))
    }

    /// `self - s`.
    pub fn sub_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let s: Scalar = s.into();
        let attrs = record::attrs(|| vec![kv("scalar", s), kv("reflected", false)]);
        let out = self.array().arith_scalar(Arith::Sub, s, false)?;
        Ok(
            Tensor::from_op(out, "-", &[self], |g, _| Ok(vec![Some(g.clone())]))
                .recorded_with(attrs),
        )
    }

    /// `s - self`.
    pub fn rsub_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let s: Scalar = s.into();
        let attrs = record::attrs(|| vec![kv("scalar", s), kv("reflected", true)]);
        let out = self.array().arith_scalar(Arith::Sub, s, true)?;
        Ok(
            Tensor::from_op(out, "-", &[self], |g, _| Ok(vec![Some(g.map(Neg)?)]))
                .recorded_with(attrs),
        )
    }

    /// `self / s`.
    pub fn div_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let s: Scalar = s.into();
        let attrs = record::attrs(|| vec![kv("scalar", s), kv("reflected", false)]);
        let out = self.array().arith_scalar(Arith::Div, s, false)?;
        let s = s.to_f64();
        Ok(Tensor::from_op(out, "/", &[self], move |g, _| {
            Ok(vec![Some(g.zip_scalar(s, Div)?)])
        })
        .recorded_with(attrs))
    }

    /// `s / self`.
    pub fn rdiv_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let s: Scalar = s.into();
        let attrs = record::attrs(|| vec![kv("scalar", s), kv("reflected", true)]);
        let out = self.array().arith_scalar(Arith::Div, s, true)?;
        Ok(Tensor::from_op(out, "/", &[self], |g, ctx| {
            // d(s/a)/da = -y/a
            let gy = g.zip("div", &*ctx.output()?, Mul)?;
            Ok(vec![Some(gy.zip("div", &*ctx.input(0)?, Div)?.map(Neg)?)])
        })
        .recorded_with(attrs))
    }

    /// `self ** s`.
    pub fn pow_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let s: Scalar = s.into();
        let attrs = record::attrs(|| vec![kv("scalar", s), kv("reflected", false)]);
        let out = self.array().arith_scalar(Arith::Pow, s, false)?;
        let s = s.to_f64();
        Ok(Tensor::from_op(out, "**", &[self], move |g, ctx| {
            let factor = ctx.input(0)?.zip_scalar(s, PowBaseGrad)?;
            Ok(vec![Some(g.zip("pow", &factor, Mul)?)])
        })
        .recorded_with(attrs))
    }

    /// `s ** self`.
    pub fn rpow_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let s: Scalar = s.into();
        let attrs = record::attrs(|| vec![kv("scalar", s), kv("reflected", true)]);
        let out = self.array().arith_scalar(Arith::Pow, s, true)?;
        let s = s.to_f64();
        Ok(Tensor::from_op(out, "**", &[self], move |g, ctx| {
            // d(s^a)/da = s^a ln(s)
            let y = ctx.output()?;
            let factor = if s == 0.0 {
                y.zip_scalar(0.0, Mul)?
            } else {
                y.zip_scalar(s.ln(), Mul)?
            };
            Ok(vec![Some(g.zip("pow", &factor, Mul)?)])
        })
        .recorded_with(attrs))
    }

    unary_op!(/// `-self` (integers wrap).
        neg, "neg", DynArray::neg, nothing |g| g.map(Neg)?);
    unary_op!(/// `e ** self`.
        exp, "exp", float_fn("exp", Exp), output |g, y| g.zip_into("exp", y, Mul)?);
    unary_op!(/// Natural log (NaN below 0, -inf at 0).
        log, "log", float_fn("log", Log), input |g, x| g.zip("log", x, Div)?);
    unary_op!(/// Square root.
        sqrt, "sqrt", float_fn("sqrt", Sqrt), output |g, y| g.zip_into("sqrt", &y.zip_scalar(2.0, Mul)?, Div)?);
    unary_op!(/// Absolute value (gradient 0 at 0).
        abs, "abs", DynArray::abs, input |g, x| g.zip("abs", &x.map(Sign)?, Mul)?);
    unary_op!(/// `max(self, 0)`.
        relu, "relu", DynArray::relu, output |g, y| g.zip_into("relu", y, ReluBackward)?);
    unary_op!(/// The logistic function, stable for large inputs.
        sigmoid, "sigmoid", float_fn("sigmoid", Sigmoid), output |g, y| g.zip_into("sigmoid", y, SigmoidBackward)?);
    unary_op!(/// Hyperbolic tangent.
        tanh, "tanh", float_fn("tanh", Tanh), output |g, y| g.zip_into("tanh", y, TanhBackward)?);

    /// Matrix product with NumPy `@` semantics (1-D, 2-D, batched with broadcast batch dims).
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.matmul(b))?;
        let ndims = read_pair(self, other, |a, b| [a.ndim(), b.ndim()]);
        Ok(Tensor::from_op(out, "@", &[self, other], move |g, ctx| {
            // dA reads only B and dB only A: read just the operands the wanted sides need.
            match [ctx.needs_grad(0), ctx.needs_grad(1)] {
                [true, true] => ctx.with_inputs(&[0, 1], |ab| {
                    matmul_backward(g, Some(ab[0]), Some(ab[1]), ndims)
                }),
                [true, false] => matmul_backward(g, None, Some(&*ctx.input(1)?), ndims),
                [false, true] => matmul_backward(g, Some(&*ctx.input(0)?), None, ndims),
                [false, false] => Ok(vec![None, None]),
            }
        }))
    }
}

/// The forward of a float-only elementwise op: a TypeError naming `op` on other dtypes.
fn float_fn(op: &'static str, f: impl UnaryFn + Copy) -> impl Fn(&DynArray) -> Result<DynArray> {
    move |x| {
        x.require_float(op)?;
        x.map(f)
    }
}

/// `b * a^(b-1)`, 0 where `b` is 0: the derivative of `a ** b` in `a` (`x ** 0` is constant,
/// so its gradient at `x = 0` is 0, not `0 * inf = NaN`).
#[derive(Clone, Copy)]
struct PowBaseGrad;
impl BinaryFn for PowBaseGrad {
    fn apply<T: crate::ndarray::Float>(&self, a: T, b: T) -> T {
        if b == T::zero() {
            T::zero()
        } else {
            b * a.powf(b - T::one())
        }
    }
}

/// `a^b * ln(a)`, 0 where `a` is 0 and `b >= 0`: the derivative of `a ** b` in `b`
/// (PyTorch's limit, so `0 ** b` has no NaN or inf gradient, `0 ** 0` included).
#[derive(Clone, Copy)]
struct PowExponentGrad;
impl BinaryFn for PowExponentGrad {
    fn apply<T: crate::ndarray::Float>(&self, a: T, b: T) -> T {
        if a == T::zero() && b >= T::zero() {
            T::zero()
        } else {
            a.powf(b) * a.ln()
        }
    }
}

// The backward rules of the activations, each one pass over the upstream gradient `g`
// and the saved output `y`.

/// `g` where `y > 0`, else 0: relu's backward (PyTorch's `threshold_backward`).
#[derive(Clone, Copy)]
struct ReluBackward;
impl BinaryFn for ReluBackward {
    fn apply<T: crate::ndarray::Float>(&self, g: T, y: T) -> T {
        if y > T::zero() {
            g
        } else {
            T::zero()
        }
    }
}

/// `g · y(1 - y)`: sigmoid's backward from its output.
#[derive(Clone, Copy)]
struct SigmoidBackward;
impl BinaryFn for SigmoidBackward {
    fn apply<T: crate::ndarray::Float>(&self, g: T, y: T) -> T {
        g * (y * (T::one() - y))
    }
}

/// `g · (1 - y²)`: tanh's backward from its output.
#[derive(Clone, Copy)]
struct TanhBackward;
impl BinaryFn for TanhBackward {
    fn apply<T: crate::ndarray::Float>(&self, g: T, y: T) -> T {
        g * (T::one() - y * y)
    }
}

/// dA = G @ Bᵀ and dB = Aᵀ @ G (1-D operands lifted to matrices and back). dA is computed
/// when `b` is given, dB when `a` is; `ndims` are the operands' dimensions at the forward.
fn matmul_backward(
    g: &DynArray,
    a: Option<&DynArray>,
    b: Option<&DynArray>,
    ndims: [usize; 2],
) -> Result<Vec<Option<DynArray>>> {
    if a.is_some_and(|a| a.ndim() != ndims[0]) || b.is_some_and(|b| b.ndim() != ndims[1]) {
        return Err(super::ops_nn::changed("matmul"));
    }
    fn lift(x: &DynArray, row: bool) -> Result<Cow<'_, DynArray>> {
        match (x.ndim(), row) {
            (1, true) => Ok(Cow::Owned(x.reshape(&[1, -1])?)),
            (1, false) => Ok(Cow::Owned(x.reshape(&[-1, 1])?)),
            _ => Ok(Cow::Borrowed(x)),
        }
    }
    let a2 = a.map(|a| lift(a, true)).transpose()?;
    let b2 = b.map(|b| lift(b, false)).transpose()?;
    // Put back the axes the forward removed for 1-D operands.
    let mut gshape: Vec<usize> = g.shape().to_vec();
    if ndims[0] == 1 {
        gshape.insert(gshape.len() - usize::from(ndims[1] != 1), 1);
    }
    if ndims[1] == 1 {
        gshape.push(1);
    }
    let g2 = match gshape == g.shape() {
        true => Cow::Borrowed(g),
        false => Cow::Owned(g.clone().into_shape(&gshape)?),
    };
    let ga = || match &b2 {
        Some(b2) => g2.matmul_t(b2, false, true).map(Some),
        None => Ok(None),
    };
    let gb = || -> Result<Option<DynArray>> {
        let Some(a2) = &a2 else { return Ok(None) };
        let gb = a2.matmul_t(&g2, true, false)?;
        if ndims[1] != 1 {
            return Ok(Some(gb));
        }
        // (..., k, 1) -> (..., k): drop the lifted column before the engine sums batches.
        let s = gb.shape()[..gb.ndim() - 1].to_vec();
        Ok(Some(gb.into_shape(&s)?))
    };
    // dA and dB are GEMMs of equal work: run them side by side when they are big.
    let (ga, gb) = match a {
        Some(a) if b.is_some() => {
            let work = g
                .size()
                .saturating_mul(a.shape().last().copied().unwrap_or(1));
            if work >= GEMM_PARALLEL_WORK {
                join_split(ga, gb)
            } else {
                (ga(), gb())
            }
        }
        _ => (ga(), gb()),
    };
    Ok(vec![ga?, gb?])
}
