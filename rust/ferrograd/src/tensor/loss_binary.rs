//! The binary losses — `binary_cross_entropy` on probabilities and
//! `binary_cross_entropy_with_logits` — fused elementwise, each with its backward rule.

use super::{read_pair, Reduction, Tensor};
use crate::dtype::float_only_error;
use crate::dynarray::fns::Mul;
use crate::dynarray::{BinaryFn, DynArray};
use crate::ndarray::Float;
use crate::shape::fmt_shape;
use crate::{shape_err, value_err, Result};

/// PyTorch's floor on each log of `binary_cross_entropy`, so p = 0 or 1 gives a finite loss.
const LOG_FLOOR: f64 = -100.0;
/// PyTorch's floor on `p·(1-p)` in the gradient, so p = 0 or 1 gives a finite gradient.
const GRAD_EPS: f64 = 1e-12;

impl Tensor {
    /// `-(y·log p + (1-y)·log(1-p))` per element of probabilities `self` against targets `y`
    /// of the same shape, each log clamped to ≥ -100 (PyTorch), then reduced. `p` must lie
    /// in [0, 1]; an integer or bool target counts as floats of `p`'s dtype.
    pub fn binary_cross_entropy(&self, target: &Tensor, reduction: Reduction) -> Result<Tensor> {
        const OP: &str = "binary_cross_entropy";
        let out = read_pair(self, target, |p, y| {
            check_pair(OP, p, y)?;
            if p.to_f64_vec().iter().any(|&x| !(0.0..=1.0).contains(&x)) {
                return Err(value_err!(
                    "{OP}: input probabilities must lie in [0, 1] (apply sigmoid first, or use \
                     binary_cross_entropy_with_logits)"
                ));
            }
            p.zip(OP, &as_float_of(y, p), BceValue)
        })?;
        let loss = Tensor::from_op(out, OP, &[self, target], |g, ctx| {
            let need = [ctx.needs_grad(0), ctx.needs_grad(1)];
            ctx.with_inputs(&[0, 1], |py| {
                let (p, y) = (py[0], as_float_of(py[1], py[0]));
                let y = y.as_ref();
                let side = |i: usize, f: &dyn Fn() -> Result<DynArray>| match need[i] {
                    true => Ok(Some(g.zip(OP, &f()?, Mul)?)),
                    false => Ok(None),
                };
                Ok(vec![
                    side(0, &|| p.zip(OP, y, BceGradInput))?,
                    side(1, &|| p.zip(OP, y, BceGradTarget))?,
                ])
            })
        });
        loss.reduce_loss(reduction)
    }

    /// Binary cross-entropy of logits `self` against targets `y` of the same shape, stable
    /// for any logit: `max(x, 0) - x·y + log(1 + exp(-|x|))`. The gradient is `σ(x) - y` for
    /// the logits and `-x` for the targets.
    pub fn binary_cross_entropy_with_logits(
        &self,
        target: &Tensor,
        reduction: Reduction,
    ) -> Result<Tensor> {
        const OP: &str = "binary_cross_entropy_with_logits";
        let out = read_pair(self, target, |x, y| {
            check_pair(OP, x, y)?;
            x.zip(OP, &as_float_of(y, x), LogitsValue)
        })?;
        let loss = Tensor::from_op(out, OP, &[self, target], |g, ctx| {
            let need = [ctx.needs_grad(0), ctx.needs_grad(1)];
            ctx.with_inputs(&[0, 1], |xy| {
                let (x, y) = (xy[0], as_float_of(xy[1], xy[0]));
                let y = y.as_ref();
                let gx = match need[0] {
                    true => Some(g.zip(OP, &x.zip(OP, y, LogitsGradInput)?, Mul)?),
                    false => None,
                };
                // d/dy = -x
                let gy = match need[1] {
                    true => Some(g.zip(OP, x, NegMul)?),
                    false => None,
                };
                Ok(vec![gx, gy])
            })
        });
        loss.reduce_loss(reduction)
    }
}

/// The input must be a float array and the target a numeric one of exactly its shape: (N, 1)
/// against (N,) would broadcast silently into an (N, N) loss.
fn check_pair(op: &str, input: &DynArray, target: &DynArray) -> Result<()> {
    if !input.dtype().is_float() {
        return Err(float_only_error(op, input.dtype()));
    }
    if input.shape() != target.shape() {
        return Err(shape_err!(
            "{op}: input shape {} and target shape {} differ; they must be equal (reshape one \
             of them, e.g. (N, 1) -> (N,))",
            fmt_shape(input.shape()),
            fmt_shape(target.shape())
        ));
    }
    Ok(())
}

/// An integer or bool target as floats of the input's dtype; a float target as it is (mixed
/// float dtypes promote in `zip`).
fn as_float_of<'a>(target: &'a DynArray, input: &DynArray) -> std::borrow::Cow<'a, DynArray> {
    if target.dtype().is_float() {
        std::borrow::Cow::Borrowed(target)
    } else {
        std::borrow::Cow::Owned(target.to_dtype(input.dtype()))
    }
}

/// `log p` and `log(1-p)`, each clamped to ≥ -100.
fn clamped_logs<T: Float>(p: T) -> (T, T) {
    let floor = T::from_f64_lossy(LOG_FLOOR);
    (p.ln().max(floor), (-p).ln_1p().max(floor))
}

/// The loss of one probability `p` against its target `y`.
#[derive(Clone, Copy)]
struct BceValue;

impl BinaryFn for BceValue {
    fn apply<T: Float>(&self, p: T, y: T) -> T {
        let (log_p, log_1mp) = clamped_logs(p);
        -(y * log_p + (T::one() - y) * log_1mp)
    }
}

/// d loss / dp = (p - y) / max(p(1-p), 1e-12), PyTorch's form.
#[derive(Clone, Copy)]
struct BceGradInput;

impl BinaryFn for BceGradInput {
    fn apply<T: Float>(&self, p: T, y: T) -> T {
        (p - y) / (p * (T::one() - p)).max(T::from_f64_lossy(GRAD_EPS))
    }
}

/// d loss / dy = log(1-p) - log p, with the forward's clamped logs.
#[derive(Clone, Copy)]
struct BceGradTarget;

impl BinaryFn for BceGradTarget {
    fn apply<T: Float>(&self, p: T, _y: T) -> T {
        let (log_p, log_1mp) = clamped_logs(p);
        log_1mp - log_p
    }
}

/// `max(x, 0) - x·y + log(1 + exp(-|x|))`: never overflows, exact for large |x|.
#[derive(Clone, Copy)]
struct LogitsValue;

impl BinaryFn for LogitsValue {
    fn apply<T: Float>(&self, x: T, y: T) -> T {
        x.max(T::zero()) - x * y + (-x.abs()).exp().ln_1p()
    }
}

/// σ(x) - y, with σ computed on the side that cannot overflow.
#[derive(Clone, Copy)]
struct LogitsGradInput;

impl BinaryFn for LogitsGradInput {
    fn apply<T: Float>(&self, x: T, y: T) -> T {
        let sigmoid = if x >= T::zero() {
            T::one() / (T::one() + (-x).exp())
        } else {
            let e = x.exp();
            e / (T::one() + e)
        };
        sigmoid - y
    }
}

/// `-g·x` (the target's gradient of the logits loss, times the incoming gradient).
#[derive(Clone, Copy)]
struct NegMul;

impl BinaryFn for NegMul {
    fn apply<T: Float>(&self, g: T, x: T) -> T {
        -(g * x)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{DType, Error};

    fn t(values: &[f64], dtype: DType, requires_grad: bool) -> Tensor {
        let a = DynArray::from_f64(values.to_vec(), &[values.len()], dtype).unwrap();
        Tensor::new(a, requires_grad)
    }

    #[test]
    fn bce_matches_the_formula_and_clamps_logs_at_minus_100() {
        let p = t(&[0.25, 0.0, 1.0], DType::F64, false);
        let y = t(&[1.0, 1.0, 1.0], DType::F64, false);
        let l = p.binary_cross_entropy(&y, Reduction::None).unwrap();
        let v = l.array().to_f64_vec();
        assert!((v[0] - -(0.25f64.ln())).abs() < 1e-12);
        assert_eq!(v[1], 100.0);
        assert_eq!(v[2], 0.0);
    }

    #[test]
    fn bce_gradients_are_pytorchs() {
        let p = t(&[0.25, 0.5], DType::F64, true);
        let y = t(&[1.0, 0.0], DType::F64, true);
        let l = p.binary_cross_entropy(&y, Reduction::Sum).unwrap();
        l.backward(None, false).unwrap();
        let gp = p.grad().unwrap().read().to_f64_vec();
        assert!((gp[0] - (0.25 - 1.0) / (0.25 * 0.75)).abs() < 1e-12);
        assert!((gp[1] - 0.5 / 0.25).abs() < 1e-12);
        let gy = y.grad().unwrap().read().to_f64_vec();
        assert!((gy[0] - (0.75f64.ln() - 0.25f64.ln())).abs() < 1e-12);
    }

    #[test]
    fn bce_refuses_unequal_shapes_and_probabilities_outside_zero_one() {
        let p = t(&[0.5, 0.5], DType::F32, false);
        let y = t(&[1.0], DType::F32, false);
        let err = p.binary_cross_entropy(&y, Reduction::Mean).unwrap_err();
        assert!(matches!(err, Error::Shape(ref m) if m.contains("(2,)") && m.contains("(1,)")));
        let bad = t(&[1.5, 0.5], DType::F32, false);
        let y2 = t(&[1.0, 0.0], DType::F32, false);
        let err = bad.binary_cross_entropy(&y2, Reduction::Mean).unwrap_err();
        assert!(matches!(err, Error::Value(_)));
    }

    #[test]
    fn bce_takes_an_integer_target_as_floats_of_the_input_dtype() {
        let p = t(&[0.5], DType::F32, false);
        let y = Tensor::new(
            DynArray::from_i64(vec![1], &[1], DType::I64).unwrap(),
            false,
        );
        let l = p.binary_cross_entropy(&y, Reduction::Mean).unwrap();
        assert_eq!(l.dtype(), DType::F32);
        assert!((l.array().item().unwrap() - 2f64.ln()).abs() < 1e-6);
    }

    #[test]
    fn bce_with_logits_is_stable_for_huge_logits_and_has_gradient_sigmoid_minus_y() {
        let x = t(&[1000.0, -1000.0, 0.0], DType::F32, true);
        let y = t(&[1.0, 0.0, 1.0], DType::F32, false);
        let l = x
            .binary_cross_entropy_with_logits(&y, Reduction::None)
            .unwrap();
        let v = l.array().to_f64_vec();
        assert_eq!(&v[..2], &[0.0, 0.0]);
        assert!((v[2] - 2f64.ln()).abs() < 1e-6);
        l.sum(None, false).unwrap().backward(None, false).unwrap();
        let g = x.grad().unwrap().read().to_f64_vec();
        assert_eq!(g, vec![0.0, 0.0, -0.5]);
    }

    #[test]
    fn bce_refuses_an_integer_input() {
        let p = Tensor::new(
            DynArray::from_i64(vec![1], &[1], DType::I64).unwrap(),
            false,
        );
        let err = p
            .binary_cross_entropy_with_logits(&p, Reduction::Mean)
            .unwrap_err();
        assert!(matches!(err, Error::Type(ref m) if m.contains("int64")));
    }
}
