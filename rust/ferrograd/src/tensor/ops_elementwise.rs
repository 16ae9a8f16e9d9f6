//! Elementwise ops and matmul on `Tensor`, each with its backward rule beside its forward.
//! Gradients may come back broadcast; the engine sums them to each parent's shape.

use std::borrow::Cow;

use super::{read_pair, Tensor};
use crate::dynarray::fns::*;
use crate::dynarray::{Arith, BinaryFn, DynArray, Scalar, UnaryFn};
use crate::ndarray::GEMM_PARALLEL_WORK;
use crate::parallel::join_split;
use crate::Result;

/// Declares a unary op whose backward multiplies the upstream gradient by a factor
/// computed from the input `x` and the output `y`.
macro_rules! unary_op {
    ($(#[$doc:meta])* $name:ident, $op:literal, $fwd:expr, |$g:ident, $x:ident, $y:ident| $grad:expr) => {
        $(#[$doc])*
        pub fn $name(&self) -> Result<Tensor> {
            let out = $fwd(&*self.array())?;
            Ok(Tensor::from_op(out, $op, &[self], |$g, parents, $y| {
                let $x = &*parents[0].array();
                Ok(vec![Some($grad)])
            }))
        }
    };
}

impl Tensor {
    /// `self + other`, broadcasting.
    pub fn add(&self, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.arith(Arith::Add, b))?;
        Ok(Tensor::from_op(out, "+", &[self, other], |g, _, _| {
            Ok(vec![Some(g.clone()), Some(g.clone())])
        }))
    }

    /// `self - other`, broadcasting.
    pub fn sub(&self, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.arith(Arith::Sub, b))?;
        Ok(Tensor::from_op(out, "-", &[self, other], |g, _, _| {
            Ok(vec![Some(g.clone()), Some(g.map(Neg)?)])
        }))
    }

    /// `self * other`, broadcasting.
    pub fn mul(&self, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.arith(Arith::Mul, b))?;
        Ok(Tensor::from_op(out, "*", &[self, other], |g, p, _| {
            read_pair(&p[0], &p[1], |a, b| {
                Ok(vec![
                    Some(g.zip("mul", b, Mul)?),
                    Some(g.zip("mul", a, Mul)?),
                ])
            })
        }))
    }

    /// `self / other`, broadcasting; division by zero follows IEEE.
    pub fn div(&self, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.arith(Arith::Div, b))?;
        Ok(Tensor::from_op(out, "/", &[self, other], |g, p, y| {
            let b = p[1].array();
            let ga = g.zip("div", &b, Div)?;
            // d(a/b)/db = -(a/b)/b = -y/b
            let gb = g.zip("mul", y, Mul)?.zip("div", &b, Div)?.map(Neg)?;
            Ok(vec![Some(ga), Some(gb)])
        }))
    }

    /// `self ** other`, broadcasting, differentiable in both; a negative base to a
    /// fractional power is NaN.
    pub fn pow(&self, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.arith(Arith::Pow, b))?;
        Ok(Tensor::from_op(out, "**", &[self, other], |g, p, _| {
            read_pair(&p[0], &p[1], |a, b| {
                // d/da = b * a^(b-1) (0 where b is 0); d/db = y * ln(a) (0 where a is 0 and
                // b >= 0), the limits PyTorch takes so that `0 ** 0` has no NaN or inf gradient.
                let ga = g.zip("pow", &a.zip("pow", b, PowBaseGrad)?, Mul)?;
                let gb = g.zip("pow", &a.zip("pow", b, PowExponentGrad)?, Mul)?;
                Ok(vec![Some(ga), Some(gb)])
            })
        }))
    }

    /// `self + s` for a scalar `s` (it lifts an integer tensor to float but never widens).
    pub fn add_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let out = self.array().arith_scalar(Arith::Add, s.into(), false)?;
        Ok(Tensor::from_op(out, "+", &[self], |g, _, _| {
            Ok(vec![Some(g.clone())])
        }))
    }

    /// `self * s` for a scalar `s`.
    pub fn mul_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let s = s.into();
        let out = self.array().arith_scalar(Arith::Mul, s, false)?;
        let s = s.to_f64();
        Ok(Tensor::from_op(out, "*", &[self], move |g, _, _| {
            Ok(vec![Some(g.zip_scalar(s, Mul)?)])
        }))
    }

    /// `self - s`.
    pub fn sub_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let out = self.array().arith_scalar(Arith::Sub, s.into(), false)?;
        Ok(Tensor::from_op(out, "-", &[self], |g, _, _| {
            Ok(vec![Some(g.clone())])
        }))
    }

    /// `s - self`.
    pub fn rsub_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let out = self.array().arith_scalar(Arith::Sub, s.into(), true)?;
        Ok(Tensor::from_op(out, "-", &[self], |g, _, _| {
            Ok(vec![Some(g.map(Neg)?)])
        }))
    }

    /// `self / s`.
    pub fn div_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let s = s.into();
        let out = self.array().arith_scalar(Arith::Div, s, false)?;
        let s = s.to_f64();
        Ok(Tensor::from_op(out, "/", &[self], move |g, _, _| {
            Ok(vec![Some(g.zip_scalar(s, Div)?)])
        }))
    }

    /// `s / self`.
    pub fn rdiv_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let out = self.array().arith_scalar(Arith::Div, s.into(), true)?;
        Ok(Tensor::from_op(out, "/", &[self], |g, p, y| {
            // d(s/a)/da = -y/a
            let a = p[0].array();
            Ok(vec![Some(
                g.zip("div", y, Mul)?.zip("div", &a, Div)?.map(Neg)?,
            )])
        }))
    }

    /// `self ** s`.
    pub fn pow_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let s = s.into();
        let out = self.array().arith_scalar(Arith::Pow, s, false)?;
        let s = s.to_f64();
        Ok(Tensor::from_op(out, "**", &[self], move |g, p, _| {
            let a = p[0].array();
            Ok(vec![Some(g.zip(
                "pow",
                &a.zip_scalar(s, PowBaseGrad)?,
                Mul,
            )?)])
        }))
    }

    /// `s ** self`.
    pub fn rpow_scalar(&self, s: impl Into<Scalar>) -> Result<Tensor> {
        let s = s.into();
        let out = self.array().arith_scalar(Arith::Pow, s, true)?;
        let s = s.to_f64();
        Ok(Tensor::from_op(out, "**", &[self], move |g, _, y| {
            // d(s^a)/da = s^a ln(s)
            let factor = if s == 0.0 {
                y.zip_scalar(0.0, Mul)?
            } else {
                y.zip_scalar(s.ln(), Mul)?
            };
            Ok(vec![Some(g.zip("pow", &factor, Mul)?)])
        }))
    }

    unary_op!(/// `-self` (integers wrap).
        neg, "neg", DynArray::neg, |g, _x, _y| g.map(Neg)?);
    unary_op!(/// `e ** self`.
        exp, "exp", float_fn("exp", Exp), |g, _x, y| g.zip("exp", y, Mul)?);
    unary_op!(/// Natural log (NaN below 0, -inf at 0).
        log, "log", float_fn("log", Log), |g, x, _y| g.zip("log", x, Div)?);
    unary_op!(/// Square root.
        sqrt, "sqrt", float_fn("sqrt", Sqrt), |g, _x, y| g.zip("sqrt", &y.zip_scalar(2.0, Mul)?, Div)?);
    unary_op!(/// Absolute value (gradient 0 at 0).
        abs, "abs", DynArray::abs, |g, x, _y| g.zip("abs", &x.map(Sign)?, Mul)?);
    unary_op!(/// `max(self, 0)`.
        relu, "relu", DynArray::relu, |g, _x, y| g.zip("relu", y, ReluBackward)?);
    unary_op!(/// The logistic function, stable for large inputs.
        sigmoid, "sigmoid", float_fn("sigmoid", Sigmoid), |g, _x, y| g.zip("sigmoid", y, SigmoidBackward)?);
    unary_op!(/// Hyperbolic tangent.
        tanh, "tanh", float_fn("tanh", Tanh), |g, _x, y| g.zip("tanh", y, TanhBackward)?);

    /// Matrix product with NumPy `@` semantics (1-D, 2-D, batched with broadcast batch dims).
    pub fn matmul(&self, other: &Tensor) -> Result<Tensor> {
        let out = read_pair(self, other, |a, b| a.matmul(b))?;
        Ok(Tensor::from_op(out, "@", &[self, other], |g, p, _| {
            let need = [p[0].requires_grad(), p[1].requires_grad()];
            read_pair(&p[0], &p[1], |a, b| matmul_backward(g, a, b, need))
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

/// dA = G @ Bᵀ and dB = Aᵀ @ G (1-D operands lifted to matrices and back); `need` says
/// which are wanted.
fn matmul_backward(
    g: &DynArray,
    a: &DynArray,
    b: &DynArray,
    need: [bool; 2],
) -> Result<Vec<Option<DynArray>>> {
    fn lift(x: &DynArray, row: bool) -> Result<Cow<'_, DynArray>> {
        match (x.ndim(), row) {
            (1, true) => Ok(Cow::Owned(x.reshape(&[1, -1])?)),
            (1, false) => Ok(Cow::Owned(x.reshape(&[-1, 1])?)),
            _ => Ok(Cow::Borrowed(x)),
        }
    }
    let (a2, b2) = (lift(a, true)?, lift(b, false)?);
    // Put back the axes the forward removed for 1-D operands.
    let mut gshape: Vec<usize> = g.shape().to_vec();
    if a.ndim() == 1 {
        gshape.insert(gshape.len() - usize::from(b.ndim() != 1), 1);
    }
    if b.ndim() == 1 {
        gshape.push(1);
    }
    let g2 = match gshape == g.shape() {
        true => Cow::Borrowed(g),
        false => Cow::Owned(g.clone().into_shape(&gshape)?),
    };
    let ga = || match need[0] {
        true => g2.matmul_t(&b2, false, true).map(Some),
        false => Ok(None),
    };
    let gb = || -> Result<Option<DynArray>> {
        if !need[1] {
            return Ok(None);
        }
        let gb = a2.matmul_t(&g2, true, false)?;
        if b.ndim() != 1 {
            return Ok(Some(gb));
        }
        // (..., k, 1) -> (..., k): drop the lifted column before the engine sums batches.
        let s = gb.shape()[..gb.ndim() - 1].to_vec();
        Ok(Some(gb.into_shape(&s)?))
    };
    // dA and dB are GEMMs of equal work: run them side by side when they are big.
    let work = g
        .size()
        .saturating_mul(a.shape().last().copied().unwrap_or(1));
    let (ga, gb) = if need[0] && need[1] && work >= GEMM_PARALLEL_WORK {
        join_split(ga, gb)
    } else {
        (ga(), gb())
    };
    Ok(vec![ga?, gb?])
}
