//! The exact GELU on `Tensor`, forward and backward each one vectorised pass. The forward
//! computes Φ(x) and φ(x) from one exponential (float32: a rational approximation that the
//! elementwise loops compile to SIMD, below), and with a backward to come it keeps the
//! derivative Φ(x) + x·φ(x), so that the backward is one product.

use std::mem::MaybeUninit;

use super::ops_nn::{changed, mismatch};
use super::{is_grad_enabled, Tensor};
use crate::dtype::float_only_error;
use crate::dynarray::fns::Mul;
use crate::dynarray::{DynArray, Element};
use crate::ndarray::elementwise::simd::{self, Kernel};
use crate::ndarray::{exp_f32_core, try_with_capacity, Float, NdArray};
use crate::parallel::{for_each_item, should_split_work};
use crate::Result;

impl Tensor {
    /// The exact GELU, `0.5·x·(1 + erf(x/√2))` (PyTorch's default, not the tanh form).
    pub fn gelu(&self) -> Result<Tensor> {
        // With a backward to come, the forward keeps the derivative: it has the exponential
        // the derivative needs at hand already, and the backward is then a product.
        let keep = is_grad_enabled() && self.requires_grad();
        let (out, slope) = match &*self.array() {
            DynArray::F32(a) => wrap_pair(gelu_forward::<f32>(a, keep)?),
            DynArray::F64(a) => wrap_pair(gelu_forward::<f64>(a, keep)?),
            other => return Err(float_only_error("gelu", other.dtype())),
        };
        // The backward scales the incoming gradient in place: dX takes over its buffer.
        Ok(Tensor::from_op_owned(
            out,
            "gelu",
            &[self],
            move |g, ctx| {
                // The input is not read, but it is what PyTorch saves: writing to it in place
                // after the GELU is an error there, and here too.
                let dtype = ctx.input(0)?.dtype();
                let g = g.into_dtype(dtype);
                if g.shape() != slope.shape() {
                    return Err(changed("gelu"));
                }
                if dtype != slope.dtype() {
                    return Err(mismatch());
                }
                Ok(vec![Some(g.zip_into("gelu", &slope, Mul)?)])
            },
        ))
    }
}

fn wrap_pair<T: Element>((a, b): (NdArray<T>, NdArray<T>)) -> (DynArray, DynArray) {
    (T::wrap(a), T::wrap(b))
}

/// Elements per task of the parallel passes.
const CHUNK: usize = 1 << 14;

/// What a [`GeluChunk`] computes: the forward,
const FORWARD: u8 = 0;
/// or the forward also writing the derivative Φ(x) + x·φ(x).
const FORWARD_KEEP: u8 = 1;

/// An element costs about this many additions (an exponential, two polynomials and a
/// division), for the split rule.
const GELU_COST: usize = 4;

/// `gelu(x)`, and its derivative at `x` when `keep` (else an empty array).
fn gelu_forward<T: Gelu + Element>(x: &NdArray<T>, keep: bool) -> Result<(NdArray<T>, NdArray<T>)> {
    let (out, slope) = match keep {
        true => gelu_pass::<T, FORWARD_KEEP>(x.data())?,
        false => gelu_pass::<T, FORWARD>(x.data())?,
    };
    let slope_shape: &[usize] = if keep { x.shape() } else { &[0] };
    Ok((
        NdArray::from_vec(out, x.shape())?,
        NdArray::from_vec(slope, slope_shape)?,
    ))
}

/// A chunk of the output and of the derivative (empty unless `FORWARD_KEEP`).
type OutChunks<'a, T> = (&'a mut [MaybeUninit<T>], &'a mut [MaybeUninit<T>]);

/// One pass of `MODE` over `xs`, in parallel chunks when large: the output, and the
/// derivative in `FORWARD_KEEP` (else empty).
fn gelu_pass<T: Gelu, const MODE: u8>(xs: &[T]) -> Result<(Vec<T>, Vec<T>)> {
    let n = xs.len();
    let mut out = try_with_capacity(n)?;
    let mut slope = try_with_capacity(if MODE == FORWARD_KEEP { n } else { 0 })?;
    let dst = &mut out.spare_capacity_mut()[..n];
    let slope_dst = &mut slope.spare_capacity_mut()[..];
    let chunk = |(i, (out, slope_out)): (usize, OutChunks<'_, T>)| {
        let at = i * CHUNK..i * CHUNK + out.len();
        simd::run(GeluChunk::<T, MODE> {
            out,
            slope_out,
            x: &xs[at],
        });
    };
    // The derivative is written only in FORWARD_KEEP; elsewhere each chunk gets an empty
    // slice of it.
    let parts: Vec<(usize, OutChunks<'_, T>)> = match MODE == FORWARD_KEEP {
        true => dst
            .chunks_mut(CHUNK)
            .zip(slope_dst.chunks_mut(CHUNK))
            .enumerate()
            .collect(),
        false => dst
            .chunks_mut(CHUNK)
            .map(|d| (d, &mut [][..]))
            .enumerate()
            .collect(),
    };
    if should_split_work(n, GELU_COST) {
        for_each_item(parts, chunk);
    } else {
        parts.into_iter().for_each(chunk);
    }
    // SAFETY: the chunks cover all `n` elements of each spare capacity written (`slope`
    // only in FORWARD_KEEP, sized `n` there), and each kernel writes every element of its
    // chunk.
    unsafe {
        out.set_len(n);
        if MODE == FORWARD_KEEP {
            slope.set_len(n);
        }
    }
    Ok((out, slope))
}

/// One chunk of a GELU pass, a loop compiled per instruction set (the math inlines into
/// it: as a closure it would be called out of line).
struct GeluChunk<'a, T, const MODE: u8> {
    out: &'a mut [MaybeUninit<T>],
    slope_out: &'a mut [MaybeUninit<T>],
    x: &'a [T],
}

impl<T: Gelu, const MODE: u8> Kernel for GeluChunk<'_, T, MODE> {
    fn work(&self) -> usize {
        self.out.len()
    }

    #[inline(always)]
    fn run(self) {
        match MODE {
            FORWARD => {
                for (o, &x) in self.out.iter_mut().zip(self.x) {
                    o.write(x * x.cdf_pdf().0);
                }
            }
            _ => {
                for ((o, s), &x) in self
                    .out
                    .iter_mut()
                    .zip(self.slope_out.iter_mut())
                    .zip(self.x)
                {
                    let (cdf, pdf) = x.cdf_pdf();
                    o.write(x * cdf);
                    s.write(x.mul_add(pdf, cdf));
                }
            }
        }
    }
}

/// A float with the standard normal's CDF and density, in a form the kernels can inline.
trait Gelu: Float + Copy {
    /// (Φ(x), φ(x)); the derivative of GELU is then Φ(x) + x·φ(x).
    fn cdf_pdf(self) -> (Self, Self);
}

impl Gelu for f32 {
    #[inline(always)]
    fn cdf_pdf(self) -> (f32, f32) {
        normal_f32(self)
    }
}

impl Gelu for f64 {
    #[inline(always)]
    fn cdf_pdf(self) -> (f64, f64) {
        // erfc keeps Φ's relative precision in the lower tail, where 1 + erf would cancel.
        let cdf = 0.5 * libm::erfc(-self * std::f64::consts::FRAC_1_SQRT_2);
        (cdf, INV_SQRT_2PI * (-0.5 * self * self).exp())
    }
}

/// 1/√(2π), the standard normal density at 0.
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

/// Φ(x) and φ(x) for f32, branch-free so that a loop over it vectorises, each within a few
/// ulp (the lower tail too: Φ(-t) is computed directly, never as 1 minus something).
/// Φ(-t) = e^{-t²/2}·P(t)/Q(t) for t = |x| is Hart's rational approximation (J. F. Hart,
/// *Computer Approximations*, 1968, no. 5666; as in G. West, "Better approximations to
/// cumulative normal functions", 2005), good to 3e-9 relative below t = 7.07 and to 2e-7 up
/// to 14 (checked against erfc in f64), and t² is carried in two parts so that the
/// exponential keeps its precision at large t. NaN stays NaN.
#[inline(always)]
#[allow(clippy::excessive_precision)]
fn normal_f32(x: f32) -> (f32, f32) {
    // Beyond 14.4, Φ(-t) is below half the smallest subnormal: clamping there changes no
    // result, keeps -t²/2 within exp_f32_core's range and P/Q finite. NaN fails the
    // comparison and stays NaN.
    let t = x.abs();
    let t = if t > 14.4 { 14.4 } else { t };
    let hi = t * t;
    let lo = t.mul_add(t, -hi); // t² = hi + lo exactly
    let e = exp_f32_core(-0.5 * hi, -0.5 * lo);
    let p = 3.526_249_659_989_11e-2_f32.mul_add(t, 0.700_383_064_443_688);
    let p = p.mul_add(t, 6.373_962_203_531_65);
    let p = p.mul_add(t, 33.912_866_078_383);
    let p = p.mul_add(t, 112.079_291_497_871);
    let p = p.mul_add(t, 221.213_596_169_931);
    let p = p.mul_add(t, 220.206_867_912_376);
    let q = 8.838_834_764_831_84e-2_f32.mul_add(t, 1.755_667_163_182_64);
    let q = q.mul_add(t, 16.064_177_579_207);
    let q = q.mul_add(t, 86.780_732_202_946_1);
    let q = q.mul_add(t, 296.564_248_779_674);
    let q = q.mul_add(t, 637.333_633_378_831);
    let q = q.mul_add(t, 793.826_512_519_948);
    let q = q.mul_add(t, 440.413_735_824_752);
    let tail = e * (p / q); // Φ(-t)
    let cdf = if x < 0.0 { tail } else { 1.0 - tail };
    (cdf, e * INV_SQRT_2PI as f32)
}

/// GELU's derivative Φ(x) + x·φ(x), as the forward keeps it (the tests' check on it).
#[cfg(test)]
fn gelu_grad<T: Gelu>(x: T) -> T {
    let (cdf, pdf) = x.cdf_pdf();
    x.mul_add(pdf, cdf)
}

/// GELU, x·Φ(x).
#[cfg(test)]
fn gelu<T: Gelu>(x: T) -> T {
    x * x.cdf_pdf().0
}

#[cfg(test)]
mod tests {
    use super::{gelu, gelu_grad, INV_SQRT_2PI};

    /// The exact values at an f32 point, in f64: gelu, its derivative, and the larger of the
    /// derivative's two terms (the scale its rounding is relative to).
    fn exact(x: f32) -> (f64, f64, f64) {
        let x = x as f64;
        let cdf = 0.5 * libm::erfc(-x * std::f64::consts::FRAC_1_SQRT_2);
        let xpdf = x * INV_SQRT_2PI * (-0.5 * x * x).exp();
        (x * cdf, cdf + xpdf, cdf.max(xpdf.abs()))
    }

    /// The spacing of f32 at |v| (the smallest subnormal below the normal range).
    fn ulp(v: f64) -> f64 {
        let a = (v.abs() as f32).max(f32::MIN_POSITIVE);
        (f32::from_bits(a.to_bits() + 1) - a) as f64
    }

    /// Every 2^-12 from -16 to 16, and a geometric sweep of small magnitudes.
    fn grid() -> impl Iterator<Item = f32> {
        let small = (0..200).flat_map(|k| {
            let v = 1e-30_f32 * 1.4_f32.powi(k);
            [v, -v]
        });
        (-65_536..=65_536)
            .map(|i| i as f32 / 4096.0)
            .chain(small.filter(|v| v.abs() < 16.0))
    }

    /// The error of `got` in f32 ulp of `scale`, less an allowance of 16 of the smallest
    /// subnormal for the far lower tail, where Φ(x) and φ(x) are subnormal (below x ≈ -13).
    fn ulp_error(got: f32, want: f64, scale: f64) -> f64 {
        let tiny = f32::from_bits(1) as f64;
        ((got as f64 - want).abs() - 16.0 * tiny).max(0.0) / ulp(scale)
    }

    /// The largest [`ulp_error`] over the grid of `(got, want, scale) = f(x)`.
    fn worst_ulp_error(f: impl Fn(f32) -> (f32, f64, f64)) -> f64 {
        grid()
            .map(|x| {
                let (got, want, scale) = f(x);
                ulp_error(got, want, scale)
            })
            .fold(0.0, f64::max)
    }

    #[test]
    fn float32_gelu_is_within_seven_ulp_of_the_exact_value_tails_included() {
        // The lower tail is computed as such: 1 + erf(x/√2) would cancel to nothing there.
        let worst = worst_ulp_error(|x| {
            let (want, _, _) = exact(x);
            (gelu(x), want, want)
        });
        assert!(worst <= 7.0, "worst error {worst} ulp");
    }

    #[test]
    fn float32_gelu_derivative_is_within_four_ulp_of_its_larger_term() {
        // Φ(x) + x·φ(x) cancels near its zero at x ≈ -0.75, so the rounding there is
        // relative to the terms, as it is for any formula of the two.
        let worst = worst_ulp_error(|x| {
            let (_, want, scale) = exact(x);
            (gelu_grad(x), want, scale)
        });
        assert!(worst <= 4.0, "worst error {worst} ulp");
    }

    #[test]
    fn float32_gelu_keeps_signed_zero_and_nan_and_follows_the_formula_at_the_infinities() {
        assert_eq!(gelu(0.0_f32).to_bits(), 0.0_f32.to_bits());
        assert_eq!(gelu(-0.0_f32).to_bits(), (-0.0_f32).to_bits());
        assert_eq!(gelu_grad(0.0_f32), 0.5);
        assert_eq!(gelu_grad(-0.0_f32), 0.5);
        assert!(gelu(f32::NAN).is_nan() && gelu_grad(f32::NAN).is_nan());
        // x·Φ(x): inf·1 and -inf·0, as the float64 path and PyTorch's float64 give.
        assert_eq!(gelu(f32::INFINITY), f32::INFINITY);
        assert!(gelu(f32::NEG_INFINITY).is_nan());
        // Far out the values are the limits, exactly.
        assert_eq!(gelu(20.0_f32), 20.0);
        assert_eq!(gelu(-20.0_f32), 0.0);
        assert_eq!(gelu_grad(20.0_f32), 1.0);
        assert_eq!(gelu_grad(-20.0_f32), 0.0);
    }

    #[test]
    fn gelu_gradient_matches_a_central_difference_in_f64() {
        for i in -80..=80 {
            let x = i as f64 * 0.1;
            let h = 1e-6;
            let numeric = (gelu(x + h) - gelu(x - h)) / (2.0 * h);
            assert!((gelu_grad(x) - numeric).abs() < 1e-8, "x = {x}");
        }
    }
}
