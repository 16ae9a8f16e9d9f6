//! Math ops on `Tensor` a transformer needs — `sin cos rsqrt var std logsumexp cumsum`, and
//! `clamp`/`maximum`/`minimum` on integers — each with its backward rule beside its forward
//! (or composed of differentiable primitives where that is as fast).

use super::record::{self, kv};
use super::Tensor;
use crate::dtype::{Category, DType, Scalar};
use crate::dynarray::fns::{Exp, Log, Mul, Sub};
use crate::dynarray::{BinaryFn, DynArray, UnaryFn};
use crate::ndarray::{Float, NdArray, ReduceOp};
use crate::shape::{normalize_axes, normalize_axis, reduced_shape};
use crate::{Error, Result};

#[derive(Clone, Copy)]
struct Sin;
impl UnaryFn for Sin {
    fn apply<T: Float>(&self, x: T) -> T {
        x.sin()
    }
}

#[derive(Clone, Copy)]
struct Cos;
impl UnaryFn for Cos {
    fn apply<T: Float>(&self, x: T) -> T {
        x.cos()
    }
}

#[derive(Clone, Copy)]
struct Rsqrt;
impl UnaryFn for Rsqrt {
    fn apply<T: Float>(&self, x: T) -> T {
        T::one() / x.sqrt()
    }
}

/// `g · cos(x)`: sin's backward.
#[derive(Clone, Copy)]
struct SinBackward;
impl BinaryFn for SinBackward {
    fn apply<T: Float>(&self, g: T, x: T) -> T {
        g * x.cos()
    }
}

/// `-g · sin(x)`: cos's backward.
#[derive(Clone, Copy)]
struct CosBackward;
impl BinaryFn for CosBackward {
    fn apply<T: Float>(&self, g: T, x: T) -> T {
        -(g * x.sin())
    }
}

/// `-g · y³ / 2`: rsqrt's backward from its output `y = x^(-1/2)`.
#[derive(Clone, Copy)]
struct RsqrtBackward;
impl BinaryFn for RsqrtBackward {
    fn apply<T: Float>(&self, g: T, y: T) -> T {
        g * (y * y * y) * T::from_f64_lossy(-0.5)
    }
}

/// The shift of a log-sum-exp: the max, or 0 where it is ±inf (an all -inf lane then gives
/// -inf, not NaN).
#[derive(Clone, Copy)]
struct FiniteOrZero;
impl UnaryFn for FiniteOrZero {
    fn apply<T: Float>(&self, x: T) -> T {
        if x.is_finite() || x.is_nan() {
            x
        } else {
            T::zero()
        }
    }
}

/// `g · e^(x - y)`: logsumexp's backward (`y` broadcast back over the reduced axes).
#[derive(Clone, Copy)]
struct ExpDiff;
impl BinaryFn for ExpDiff {
    fn apply<T: Float>(&self, x: T, y: T) -> T {
        let d = x - y;
        // exp(-inf - -inf) would be NaN: an all -inf lane has no gradient to give.
        if d.is_nan() && x.is_infinite() {
            T::zero()
        } else {
            d.vexp()
        }
    }
}

/// Running sums along `axis` (reversed: from the end), on a typed array.
fn cumsum_typed<T: Copy + std::ops::Add<Output = T>>(
    x: &NdArray<T>,
    axis: usize,
    reverse: bool,
) -> Result<NdArray<T>> {
    let shape = x.shape();
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let mut out = x.data().to_vec();
    if len > 1 && inner > 0 {
        for lane in out.chunks_mut(len * inner) {
            if reverse {
                for j in (0..len - 1).rev() {
                    let (head, tail) = lane.split_at_mut((j + 1) * inner);
                    for (a, &b) in head[j * inner..].iter_mut().zip(&tail[..inner]) {
                        *a = *a + b;
                    }
                }
            } else {
                for j in 1..len {
                    let (head, tail) = lane.split_at_mut(j * inner);
                    for (a, &b) in tail[..inner].iter_mut().zip(&head[(j - 1) * inner..]) {
                        *a = *a + b;
                    }
                }
            }
        }
    }
    NdArray::from_vec(out, shape)
}

/// Cumulative sum (the forward, and reversed on a float gradient, the backward of cumsum);
/// integers and bools sum in int64.
fn cumsum_any(x: &DynArray, axis: usize, reverse: bool) -> Result<DynArray> {
    Ok(match x {
        DynArray::F32(a) => DynArray::F32(cumsum_typed(a, axis, reverse)?),
        DynArray::F64(a) => DynArray::F64(cumsum_typed(a, axis, reverse)?),
        other => {
            let a = other.to_dtype(DType::I64);
            match a {
                DynArray::I64(a) => DynArray::I64(cumsum_wrapping(&a, axis)?),
                _ => return Err(Error::Graph("internal error: cumsum dtype".into())),
            }
        }
    })
}

/// Integer running sums wrap on overflow, as the rest of integer arithmetic does.
fn cumsum_wrapping(x: &NdArray<i64>, axis: usize) -> Result<NdArray<i64>> {
    #[derive(Clone, Copy)]
    struct W(i64);
    impl std::ops::Add for W {
        type Output = W;
        fn add(self, o: W) -> W {
            W(self.0.wrapping_add(o.0))
        }
    }
    let w = x.map(|&v| W(v));
    Ok(cumsum_typed(&w, axis, false)?.map(|v| v.0))
}

/// `min(max(x, lo), hi)` on integers (either bound optional; `lo > hi` gives `hi`).
fn clamp_int<T: crate::ndarray::element::Elem + Ord>(
    x: &NdArray<T>,
    lo: Option<i64>,
    hi: Option<i64>,
) -> NdArray<T> {
    let (lo, hi) = (lo.map(T::from_i64), hi.map(T::from_i64));
    x.map(|&v| {
        let v = lo.map_or(v, |l| v.max(l));
        hi.map_or(v, |h| v.min(h))
    })
}

/// The elementwise larger (or smaller) of two integer or bool arrays, promoted.
pub(super) fn pick_exact(a: &DynArray, b: &DynArray, largest: bool) -> Result<DynArray> {
    let name = if largest { "maximum" } else { "minimum" };
    let dtype = a.dtype().promote(b.dtype());
    let (x, y) = (a.as_dtype(dtype), b.as_dtype(dtype));
    fn pick<T: PartialOrd + Copy>(
        name: &str,
        x: &NdArray<T>,
        y: &NdArray<T>,
        largest: bool,
    ) -> Result<NdArray<T>> {
        x.zip_with(name, y, |&p, &q| if (p >= q) == largest { p } else { q })
    }
    Ok(match (x.as_ref(), y.as_ref()) {
        (DynArray::I64(p), DynArray::I64(q)) => DynArray::I64(pick(name, p, q, largest)?),
        (DynArray::I32(p), DynArray::I32(q)) => DynArray::I32(pick(name, p, q, largest)?),
        (DynArray::Bool(p), DynArray::Bool(q)) => DynArray::Bool(pick(name, p, q, largest)?),
        _ => return Err(Error::Graph(format!("internal error: {name} on floats"))),
    })
}

impl Tensor {
    /// Sine, elementwise (floats only).
    pub fn sin(&self) -> Result<Tensor> {
        let out = float_map(&self.array(), "sin", Sin)?;
        Ok(Tensor::from_op(out, "sin", &[self], |g, ctx| {
            Ok(vec![Some(g.zip("sin", &*ctx.input(0)?, SinBackward)?)])
        }))
    }

    /// Cosine, elementwise (floats only).
    pub fn cos(&self) -> Result<Tensor> {
        let out = float_map(&self.array(), "cos", Cos)?;
        Ok(Tensor::from_op(out, "cos", &[self], |g, ctx| {
            Ok(vec![Some(g.zip("cos", &*ctx.input(0)?, CosBackward)?)])
        }))
    }

    /// `1 / sqrt(x)`, elementwise (floats only; inf at 0, NaN below).
    pub fn rsqrt(&self) -> Result<Tensor> {
        let out = float_map(&self.array(), "rsqrt", Rsqrt)?;
        Ok(Tensor::from_op(out, "rsqrt", &[self], |g, ctx| {
            Ok(vec![Some(g.zip(
                "rsqrt",
                &*ctx.output()?,
                RsqrtBackward,
            )?)])
        }))
    }

    /// Variance over `axes` (`None` = all) with Bessel's `correction` (PyTorch's default 1):
    /// `sum((x - mean)²) / max(N - correction, 0)`. Composed of differentiable ops.
    pub fn var(&self, axes: Option<&[isize]>, correction: f64, keepdims: bool) -> Result<Tensor> {
        let (ax, count) = {
            let x = self.array();
            x.require_float("var")?;
            let ax = normalize_axes("var", axes, x.ndim())?;
            let count: usize = ax.iter().map(|&a| x.shape()[a]).product();
            (ax, count)
        };
        let ax: Vec<isize> = ax.iter().map(|&a| a as isize).collect();
        let mean = self.mean(Some(&ax), true)?;
        let d = self.sub(&mean)?;
        let ss = d.mul(&d)?.sum(Some(&ax), keepdims)?;
        ss.div_scalar((count as f64 - correction).max(0.0))
    }

    /// Standard deviation: the square root of [`Tensor::var`].
    pub fn std(&self, axes: Option<&[isize]>, correction: f64, keepdims: bool) -> Result<Tensor> {
        self.array().require_float("std")?;
        self.var(axes, correction, keepdims)?.sqrt()
    }

    /// `log(sum(exp(x)))` over `axes`, shifted by the max so large inputs stay finite; an
    /// all -inf lane gives -inf. The gradient is the softmax over the axes.
    pub fn logsumexp(&self, axes: &[isize], keepdims: bool) -> Result<Tensor> {
        let (out, input_shape, ax) = {
            let x = self.array();
            x.require_float("logsumexp")?;
            let ax = normalize_axes("logsumexp", Some(axes), x.ndim())?;
            let axi: Vec<isize> = ax.iter().map(|&a| a as isize).collect();
            let out = if x.ndim() == 0 {
                x.clone()
            } else {
                let m = x
                    .reduce(ReduceOp::Max, Some(&axi), true)?
                    .map(FiniteOrZero)?;
                let s = x.zip("logsumexp", &m, Sub)?.map(Exp)?;
                let s = s.reduce(ReduceOp::Sum, Some(&axi), true)?.map(Log)?;
                let y = s.zip("logsumexp", &m, crate::dynarray::fns::Add)?;
                y.into_shape(&reduced_shape(x.shape(), &ax, keepdims))?
            };
            (out, x.shape().to_vec(), ax)
        };
        let attrs = record::attrs(|| vec![kv("axes", &ax[..]), kv("keepdims", keepdims)]);
        Ok(Tensor::from_op(out, "logsumexp", &[self], move |g, ctx| {
            let keep = reduced_shape(&input_shape, &ax, true);
            let y = ctx.output()?.clone().into_shape(&keep)?;
            let g = g.clone().into_shape(&keep)?;
            let soft = ctx.input(0)?.zip("logsumexp", &y, ExpDiff)?;
            Ok(vec![Some(soft.zip("logsumexp", &g, Mul)?)])
        })
        .recorded_with(attrs))
    }

    /// Running sums along `axis`; integers and bools sum in int64 (PyTorch), floats keep
    /// their dtype. The gradient is the reversed running sum of the upstream gradient.
    pub fn cumsum(&self, axis: isize) -> Result<Tensor> {
        let (out, ax, lifted) = {
            let x = self.array();
            let nd = x.ndim();
            let ax = normalize_axis("cumsum", axis, nd.max(1))?;
            if nd == 0 {
                (
                    cumsum_any(&x.reshape(&[1])?, 0, false)?.into_shape(&[])?,
                    ax,
                    true,
                )
            } else {
                (cumsum_any(&x, ax, false)?, ax, false)
            }
        };
        let attrs = record::attrs(|| vec![kv("axis", ax)]);
        Ok(Tensor::from_op(out, "cumsum", &[self], move |g, _| {
            if lifted {
                return Ok(vec![Some(g.clone())]);
            }
            Ok(vec![Some(cumsum_any(g, ax, true)?)])
        })
        .recorded_with(attrs))
    }

    /// `clamp` for any dtype and bound kind, PyTorch-style: float tensors clamp as floats
    /// (differentiable); integer tensors with integer bounds stay integers, and a float
    /// bound lifts them to float32. Bool tensors are a TypeError.
    pub fn clamp_scalar(&self, min: Option<Scalar>, max: Option<Scalar>) -> Result<Tensor> {
        let dtype = self.dtype();
        if dtype == DType::Bool {
            return Err(Error::Type(
                "clamp: not supported on bool tensors; cast first, e.g. t.long()".into(),
            ));
        }
        let any_float = [min, max]
            .iter()
            .flatten()
            .any(|s| s.category() == Category::Float);
        if dtype.is_float() || any_float {
            let src = match dtype.is_float() {
                true => self.clone(),
                false => self.astype(DType::F32)?,
            };
            return src.clamp(min.map(Scalar::to_f64), max.map(Scalar::to_f64));
        }
        if min.is_none() && max.is_none() {
            return Err(Error::Value(
                "clamp: at least one of min and max must be given".into(),
            ));
        }
        let (lo, hi) = (min.map(Scalar::to_i64), max.map(Scalar::to_i64));
        let out = match &*self.array() {
            DynArray::I64(a) => DynArray::I64(clamp_int(a, lo, hi)),
            DynArray::I32(a) => {
                // Bounds outside int32 saturate rather than wrap.
                let sat = |v: i64| v.clamp(i64::from(i32::MIN), i64::from(i32::MAX));
                DynArray::I32(clamp_int(a, lo.map(sat), hi.map(sat)))
            }
            _ => return Err(Error::Graph("internal error: clamp dtype".into())),
        };
        let attrs = record::attrs(|| vec![kv("min", min), kv("max", max)]);
        Ok(Tensor::untracked_op(out, "clamp", &[self]).recorded_with(attrs))
    }
}

/// The forward of a float-only elementwise op: a TypeError naming `op` on other dtypes.
fn float_map(x: &DynArray, op: &str, f: impl UnaryFn) -> Result<DynArray> {
    x.require_float(op)?;
    x.map(f)
}

#[cfg(test)]
#[path = "ops_math_tests.rs"]
mod tests;
