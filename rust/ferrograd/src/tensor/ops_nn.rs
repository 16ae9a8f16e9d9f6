//! Neural-network ops on `Tensor` — dropout, clamp, maximum/minimum and the fused
//! cross-entropy and NLL losses — each with its backward rule beside its forward (linear is
//! in `ops_linear`, GELU in `ops_activation`, layer_norm in `ops_norm`).

use super::cross_entropy_rows as ce_rows;
use super::record::{self, kv};
use super::{read_pair, Tensor};
use crate::dtype::float_only_error;
use crate::dynarray::fns::{Mul, Neg};
use crate::dynarray::{BinaryFn, DynArray, Element, UnaryFn};
use crate::ndarray::elementwise::simd;
use crate::ndarray::{Float, NdArray};
use crate::parallel::should_split_work;
use crate::shape::fmt_shape;
use crate::{random, shape_err, value_err, Error, Result};

/// Runs `f` on the arrays of several tensors under read locks, locking a storage that two
/// of them share only once (a second read of one lock can deadlock behind a waiting writer).
pub(super) fn with_arrays<R>(ts: &[&Tensor], f: impl FnOnce(&[&DynArray]) -> R) -> R {
    let mut guards = Vec::with_capacity(ts.len());
    let mut slot = Vec::with_capacity(ts.len());
    for (i, t) in ts.iter().enumerate() {
        match ts[..i].iter().position(|u| u.shares_storage(t)) {
            Some(j) => slot.push(slot[j]),
            None => {
                slot.push(guards.len());
                guards.push(t.array());
            }
        }
    }
    let arrays: Vec<&DynArray> = slot.iter().map(|&k| &*guards[k]).collect();
    f(&arrays)
}

/// The typed array inside `a`, which the caller has already cast to `T`'s dtype.
pub(super) fn typed<T: Element>(a: &DynArray) -> Result<&NdArray<T>> {
    T::view(a).ok_or_else(mismatch)
}

impl Tensor {
    /// Zeroes each element with probability `p` (drawn from the generator `manual_seed`
    /// sets) and scales the kept ones by `1/(1-p)`; the identity when `!training` or `p == 0`.
    pub fn dropout(&self, p: f64, training: bool) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&p) {
            return Err(value_err!(
                "dropout: probability p must be between 0 and 1, got {p}"
            ));
        }
        if !training || p == 0.0 {
            return Ok(self.clone());
        }
        let x = self.array();
        let n = x.size();
        let mask = if p == 1.0 {
            vec![0.0; n]
        } else {
            let (keep, scale) = (1.0 - p, 1.0 / (1.0 - p));
            random::uniform(n)?
                .into_iter()
                .map(|u| if u < keep { scale } else { 0.0 })
                .collect()
        };
        let mask = DynArray::from_f64(mask, x.shape(), x.dtype())?;
        let out = if p == 1.0 {
            mask.clone()
        } else {
            x.zip("dropout", &mask, Mul)?
        };
        drop(x);
        Ok(Tensor::from_op(out, "dropout", &[self], move |g, _| {
            Ok(vec![Some(g.zip("dropout", &mask, Mul)?)])
        }))
    }

    /// Limits every element to `[min, max]` (either bound optional; when `min > max` every
    /// element becomes `max`, as in PyTorch). NaN stays NaN. The gradient is 1 where
    /// `min <= x <= max` (the bounds themselves included) and 0 where clamped.
    pub fn clamp(&self, min: Option<f64>, max: Option<f64>) -> Result<Tensor> {
        if min.is_none() && max.is_none() {
            return Err(value_err!(
                "clamp: at least one of min and max must be given"
            ));
        }
        let bounds = Clamp::new(min, max);
        let out = self.array().map(bounds)?;
        let attrs = record::attrs(|| vec![kv("min", min), kv("max", max)]);
        Ok(Tensor::from_op(out, "clamp", &[self], move |g, ctx| {
            let inside = ctx.input(0)?.map(ClampInside(bounds))?;
            Ok(vec![Some(g.zip("clamp", &inside, Mul)?)])
        })
        .recorded_with(attrs))
    }

    /// The elementwise larger of two tensors, broadcasting; NaN propagates; a tie sends half
    /// the gradient to each side (PyTorch).
    pub fn maximum(&self, other: &Tensor) -> Result<Tensor> {
        self.pick(other, true)
    }

    /// The elementwise smaller of two tensors, like [`Tensor::maximum`].
    pub fn minimum(&self, other: &Tensor) -> Result<Tensor> {
        self.pick(other, false)
    }

    fn pick(&self, other: &Tensor, largest: bool) -> Result<Tensor> {
        let name = if largest { "maximum" } else { "minimum" };
        let exact = !self.dtype().promote(other.dtype()).is_float();
        if exact {
            // Integers and bools keep their dtype (and take no gradient).
            let out = read_pair(self, other, |a, b| {
                super::ops_math::pick_exact(a, b, largest)
            })?;
            return Ok(Tensor::untracked_op(out, name, &[self, other]));
        }
        let out = read_pair(self, other, |a, b| a.zip(name, b, Pick { largest }))?;
        Ok(Tensor::from_op(out, name, &[self, other], move |g, ctx| {
            let need = [ctx.needs_grad(0), ctx.needs_grad(1)];
            ctx.with_inputs(&[0, 1], |ab| {
                let share = |first| ab[0].zip(name, ab[1], PickGrad { largest, first });
                let side = |i: usize| match need[i] {
                    true => Ok(Some(g.zip(name, &share(i == 0)?, Mul)?)),
                    false => Ok(None),
                };
                Ok(vec![side(0)?, side(1)?])
            })
        }))
    }

    /// Per-sample cross-entropy of `logits` `(N, C)` against class indices (`N` of them), or
    /// of `(C,)` logits against one class (a 0-d result). Fused and stable: one max-shifted
    /// log-sum-exp per row. `label_smoothing` ε in `[0, 1]` mixes the one-hot target with the
    /// uniform distribution: `(1-ε)·onehot + ε/C`, as PyTorch defines it.
    pub fn cross_entropy(&self, targets: &[usize], label_smoothing: f64) -> Result<Tensor> {
        if !(0.0..=1.0).contains(&label_smoothing) {
            return Err(value_err!(
                "cross_entropy: label_smoothing must be between 0 and 1, got {label_smoothing}"
            ));
        }
        let x = self.array();
        let (n, c, out_shape) = class_dims("cross_entropy", x.shape(), targets)?;
        let (loss, lse) = match &*x {
            DynArray::F32(a) => ce_forward(a.data(), n, c, targets, label_smoothing, &out_shape)?,
            DynArray::F64(a) => ce_forward(a.data(), n, c, targets, label_smoothing, &out_shape)?,
            other => return Err(float_only_error("cross_entropy", other.dtype())),
        };
        drop(x);
        let attrs = record::attrs(|| {
            vec![
                kv("targets", targets),
                kv("label_smoothing", label_smoothing),
            ]
        });
        let targets = targets.to_vec();
        Ok(
            Tensor::from_op(loss, "cross_entropy", &[self], move |g, ctx| {
                let x = ctx.input(0)?;
                let g = g.as_dtype(x.dtype());
                let grad = match (&*x, g.as_ref(), &lse) {
                    (DynArray::F32(a), DynArray::F32(g), DynArray::F32(s)) => DynArray::F32(
                        ce_backward(a, g.data(), s.data(), &targets, label_smoothing)?,
                    ),
                    (DynArray::F64(a), DynArray::F64(g), DynArray::F64(s)) => DynArray::F64(
                        ce_backward(a, g.data(), s.data(), &targets, label_smoothing)?,
                    ),
                    _ => return Err(mismatch()),
                };
                Ok(vec![Some(grad)])
            })
            .recorded_with(attrs),
        )
    }

    /// Per-sample negative log-likelihood `-log_probs[i, t_i]` of `(N, C)` log-probabilities
    /// (or `(C,)` with one target, giving a 0-d result).
    pub fn nll_loss(&self, targets: &[usize]) -> Result<Tensor> {
        let x = self.array();
        let (_, c, out_shape) = class_dims("nll_loss", x.shape(), targets)?;
        let offsets: Vec<usize> = targets
            .iter()
            .enumerate()
            .map(|(i, &t)| i * c + t)
            .collect();
        let out = x.gather(&offsets, &out_shape).map(Neg)?;
        let input_shape = x.shape().to_vec();
        drop(x);
        let attrs = record::attrs(|| vec![kv("targets", targets)]);
        Ok(Tensor::from_op(out, "nll_loss", &[self], move |g, _| {
            Ok(vec![Some(g.map(Neg)?.scatter_add(&input_shape, &offsets)?)])
        })
        .recorded_with(attrs))
    }
}

/// The error of a backward whose saved inputs were reshaped in place after the forward.
pub(super) fn changed(op: &str) -> Error {
    Error::Graph(format!(
        "{op} backward: an input was modified in place after the forward; \
         its shape no longer matches the graph"
    ))
}

pub(super) fn mismatch() -> Error {
    Error::Graph("internal error: dtype mismatch after promotion".into())
}

// ---------------------------------------------------------------------------------------
// elementwise helpers

/// `min(max(x, lo), hi)`, NaN kept (a NaN bound gives NaN, as in PyTorch).
#[derive(Clone, Copy)]
pub(super) struct Clamp {
    lo: f64,
    hi: f64,
}

impl Clamp {
    /// The bounds, a missing one unbounded.
    pub(super) fn new(min: Option<f64>, max: Option<f64>) -> Self {
        Clamp {
            lo: min.unwrap_or(f64::NEG_INFINITY),
            hi: max.unwrap_or(f64::INFINITY),
        }
    }
}

impl UnaryFn for Clamp {
    fn apply<T: Float>(&self, x: T) -> T {
        let (lo, hi) = (T::from_f64_lossy(self.lo), T::from_f64_lossy(self.hi));
        if x.is_nan() {
            return x;
        }
        let y = if x < lo || lo.is_nan() { lo } else { x };
        if y > hi || hi.is_nan() {
            hi
        } else {
            y
        }
    }
}

/// 1 where `lo <= x <= hi`, else 0: clamp's derivative.
#[derive(Clone, Copy)]
struct ClampInside(Clamp);

impl UnaryFn for ClampInside {
    fn apply<T: Float>(&self, x: T) -> T {
        let (lo, hi) = (T::from_f64_lossy(self.0.lo), T::from_f64_lossy(self.0.hi));
        if x >= lo && x <= hi {
            T::one()
        } else {
            T::zero()
        }
    }
}

/// The larger (or smaller) of two values; NaN if either is NaN.
#[derive(Clone, Copy)]
struct Pick {
    largest: bool,
}

impl BinaryFn for Pick {
    fn apply<T: Float>(&self, x: T, y: T) -> T {
        if x.is_nan() || y.is_nan() {
            x + y
        } else if (x >= y) == self.largest {
            x
        } else {
            y
        }
    }
}

/// The share of the gradient of maximum/minimum that goes to the `first` (or second)
/// operand: 1 if it wins, 0 if it loses, ½ on a tie (and 1 to both sides next to a NaN,
/// as PyTorch's `where(a == b, g/2, g).masked_fill_(loses, 0)`).
#[derive(Clone, Copy)]
struct PickGrad {
    largest: bool,
    first: bool,
}

impl BinaryFn for PickGrad {
    fn apply<T: Float>(&self, x: T, y: T) -> T {
        let loses = if self.largest == self.first {
            x < y
        } else {
            x > y
        };
        if x == y {
            T::from_f64_lossy(0.5)
        } else if loses {
            T::zero()
        } else {
            T::one()
        }
    }
}

// ---------------------------------------------------------------------------------------
// cross-entropy and NLL

/// `(N, C, output shape)` of class scores `(N, C)` or `(C,)` against `targets`, which must
/// number N (or 1) and each lie in `0..C`.
fn class_dims(op: &str, shape: &[usize], targets: &[usize]) -> Result<(usize, usize, Vec<usize>)> {
    let (n, c, out_shape) = match *shape {
        [n, c] => (n, c, vec![n]),
        [c] => (1, c, vec![]),
        _ => {
            return Err(shape_err!(
                "{op}: expected input of shape (N, C) or (C,), got {}",
                fmt_shape(shape)
            ))
        }
    };
    if targets.len() != n {
        return Err(shape_err!(
            "{op}: input of shape {} needs {n} target{}, got {}",
            fmt_shape(shape),
            if n == 1 { "" } else { "s" },
            targets.len()
        ));
    }
    if let Some(&t) = targets.iter().find(|&&t| t >= c) {
        return Err(value_err!(
            "{op}: target class {t} is out of range for {c} classes (expected 0 <= class < {c})"
        ));
    }
    Ok((n, c, out_shape))
}

/// A loss row costs about this many additions per element (an `exp` each, forward and
/// backward), for the split rule.
const ROW_COST: usize = 4;

/// Whether a per-row loss kernel over `n` rows of `c` runs on several threads.
fn rows_in_parallel(n: usize, c: usize) -> bool {
    n > 1 && should_split_work(n.saturating_mul(c), ROW_COST)
}

/// Rows of `c` elements per task of a parallel per-row kernel: about 16K elements, so that
/// handing out a task costs little next to running it.
fn rows_per_task(c: usize) -> usize {
    ((1 << 14) / c.max(1)).max(1)
}

fn ce_forward<T: Element>(
    x: &[T],
    n: usize,
    c: usize,
    targets: &[usize],
    eps: f64,
    out_shape: &[usize],
) -> Result<(DynArray, DynArray)> {
    let eps = T::from_f64_lossy(eps);
    let mut pairs = vec![(T::zero(), T::zero()); n];
    let rows = |x: &[T], targets: &[usize], out: &mut [(T, T)]| {
        simd::run(ce_rows::ForwardRows {
            x,
            c,
            targets,
            eps,
            out,
        })
    };
    if n > 0 && c > 0 {
        if rows_in_parallel(n, c) {
            let per = rows_per_task(c);
            crate::parallel::for_each_chunk_mut(&mut pairs, per, |i, out| {
                let (lo, hi) = (i * per, i * per + out.len());
                rows(&x[lo * c..hi * c], &targets[lo..hi], out)
            });
        } else {
            rows(x, targets, &mut pairs);
        }
    }
    let (loss, lse): (Vec<T>, Vec<T>) = pairs.into_iter().unzip();
    Ok((
        T::wrap(NdArray::from_vec(loss, out_shape)?),
        T::wrap(NdArray::from_vec(lse, &[n])?),
    ))
}

/// `dx = (softmax(x) - q) · g[:, None]` with softmax recomputed as `exp((x - max) - ln_s)`
/// from the saved `ln_s = ln Σ exp(x - max)` of each row (the max is recomputed).
fn ce_backward<T: Float>(
    x: &NdArray<T>,
    g: &[T],
    lse: &[T],
    targets: &[usize],
    eps: f64,
) -> Result<NdArray<T>> {
    let c = *x.shape().last().unwrap_or(&1);
    if x.size() != lse.len() * c || g.len() != lse.len() || targets.len() != lse.len() {
        return Err(changed("cross_entropy"));
    }
    let mut dx = crate::ndarray::try_filled(x.size(), T::zero())?;
    if c > 0 && !dx.is_empty() {
        let off = T::from_f64_lossy(eps / c as f64);
        let on = (T::one() - T::from_f64_lossy(eps)) + off;
        let xs = x.data();
        let rows = |lo: usize, dx: &mut [T]| {
            let hi = lo + dx.len() / c;
            simd::run(ce_rows::BackwardRows {
                x: &xs[lo * c..hi * c],
                c,
                g: &g[lo..hi],
                ln_s: &lse[lo..hi],
                targets: &targets[lo..hi],
                on,
                off,
                dx,
            })
        };
        if rows_in_parallel(dx.len() / c, c) {
            let per = rows_per_task(c);
            crate::parallel::for_each_chunk_mut(&mut dx, per * c, |i, d| rows(i * per, d));
        } else {
            rows(0, &mut dx);
        }
    }
    NdArray::from_vec(dx, x.shape())
}
