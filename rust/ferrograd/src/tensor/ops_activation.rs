//! The exact GELU on `Tensor`, forward and backward each one vectorised pass: float32 uses a
//! branch-free `erf` (below) that the elementwise loops compile to SIMD, where libm's `erff`
//! is a scalar call per element.

use std::mem::MaybeUninit;

use rayon::prelude::*;

use super::ops_nn::{changed, mismatch};
use super::Tensor;
use crate::dtype::float_only_error;
use crate::dynarray::DynArray;
use crate::ndarray::elementwise::simd::{self, Kernel};
use crate::ndarray::{try_with_capacity, Float, NdArray};
use crate::parallel::{install, should_split};
use crate::Result;

impl Tensor {
    /// The exact GELU, `0.5·x·(1 + erf(x/√2))` (PyTorch's default, not the tanh form).
    pub fn gelu(&self) -> Result<Tensor> {
        let out = match &*self.array() {
            DynArray::F32(a) => DynArray::F32(gelu_array::<f32, false>(a, a)?),
            DynArray::F64(a) => DynArray::F64(gelu_array::<f64, false>(a, a)?),
            other => return Err(float_only_error("gelu", other.dtype())),
        };
        Ok(Tensor::from_op(out, "gelu", &[self], |g, ctx| {
            let x = ctx.input(0)?;
            let g = g.as_dtype(x.dtype());
            // g · d/dx, with d/dx = Φ(x) + x·φ(x), in one pass.
            let dx = match (&*x, g.as_ref()) {
                (DynArray::F32(x), DynArray::F32(g)) => {
                    DynArray::F32(gelu_array::<f32, true>(x, g)?)
                }
                (DynArray::F64(x), DynArray::F64(g)) => {
                    DynArray::F64(gelu_array::<f64, true>(x, g)?)
                }
                _ => return Err(mismatch()),
            };
            Ok(vec![Some(dx)])
        }))
    }
}

/// Elements per task of the parallel passes.
const CHUNK: usize = 1 << 14;

/// `gelu(x)`, or with `BACKWARD` the gradient `g · gelu'(x)` (`g` of `x`'s shape; ignored
/// in the forward), in parallel chunks when large.
fn gelu_array<T: Erf, const BACKWARD: bool>(x: &NdArray<T>, g: &NdArray<T>) -> Result<NdArray<T>> {
    if BACKWARD && g.shape() != x.shape() {
        return Err(changed("gelu"));
    }
    let (xs, gs, n) = (x.data(), g.data(), x.size());
    let mut out = try_with_capacity(n)?;
    let dst = &mut out.spare_capacity_mut()[..n];
    let chunk = |(i, out): (usize, &mut [MaybeUninit<T>])| {
        let at = i * CHUNK..i * CHUNK + out.len();
        let g = if BACKWARD { &gs[at.clone()] } else { &[][..] };
        simd::run(GeluChunk::<T, BACKWARD> { out, x: &xs[at], g });
    };
    if should_split(n) {
        install(|| dst.par_chunks_mut(CHUNK).enumerate().for_each(chunk));
    } else {
        dst.chunks_mut(CHUNK).enumerate().for_each(chunk);
    }
    // SAFETY: the chunks cover all `n` elements of the spare capacity and each kernel writes
    // every element of its chunk.
    unsafe { out.set_len(n) };
    NdArray::from_vec(out, x.shape())
}

/// One chunk of the GELU forward or backward, a loop compiled per instruction set (the
/// `erf` and `exp` inline into it: as a closure they would be called out of line).
struct GeluChunk<'a, T, const BACKWARD: bool> {
    out: &'a mut [MaybeUninit<T>],
    x: &'a [T],
    g: &'a [T],
}

impl<T: Erf, const BACKWARD: bool> Kernel for GeluChunk<'_, T, BACKWARD> {
    fn work(&self) -> usize {
        self.out.len()
    }

    #[inline(always)]
    fn run(self) {
        if BACKWARD {
            for ((o, &x), &g) in self.out.iter_mut().zip(self.x).zip(self.g) {
                o.write(g * gelu_grad(x));
            }
        } else {
            for (o, &x) in self.out.iter_mut().zip(self.x) {
                o.write(gelu(x));
            }
        }
    }
}

/// A float with an error function the GELU kernels can inline.
trait Erf: Float + Copy {
    fn erf(self) -> Self;
}

impl Erf for f32 {
    #[inline(always)]
    fn erf(self) -> f32 {
        erf_f32(self)
    }
}

impl Erf for f64 {
    #[inline(always)]
    fn erf(self) -> f64 {
        libm::erf(self)
    }
}

/// 1/√(2π), the standard normal density at 0.
const INV_SQRT_2PI: f64 = 0.398_942_280_401_432_7;

#[inline(always)]
fn gelu<T: Erf>(x: T) -> T {
    let half = T::from_f64_lossy(0.5);
    let inv_sqrt2 = T::from_f64_lossy(std::f64::consts::FRAC_1_SQRT_2);
    half * x * (T::one() + (x * inv_sqrt2).erf())
}

#[inline(always)]
fn gelu_grad<T: Erf>(x: T) -> T {
    let half = T::from_f64_lossy(0.5);
    let inv_sqrt2 = T::from_f64_lossy(std::f64::consts::FRAC_1_SQRT_2);
    let cdf = half * (T::one() + (x * inv_sqrt2).erf());
    cdf + x * T::from_f64_lossy(INV_SQRT_2PI) * (-half * x * x).vexp()
}

/// `erf(a)` for f32 within about 1 ulp (2 at most through the exponential), branch-free so
/// that a loop over it vectorises: both halves are computed and one is picked. The minimax
/// polynomials are N. Juffa's (public domain): `|a| ≤ 0.9277` an odd polynomial in `a`,
/// beyond `1 - e^{p(|a|)}` with the sign of `a`. NaN stays NaN; ±inf gives ±1.
#[inline(always)]
#[allow(clippy::excessive_precision)]
pub(crate) fn erf_f32(a: f32) -> f32 {
    let t = a.abs();
    let s = a * a;
    let r = (-1.728_534_70e-5_f32).mul_add(t, 3.831_971_26e-4);
    let u = (-3.883_964_38e-3_f32).mul_add(t, 2.425_462_19e-2);
    let r = r.mul_add(s, u);
    let r = r.mul_add(t, -1.067_778_77e-1);
    let r = r.mul_add(t, -6.348_466_87e-1);
    let r = r.mul_add(t, -1.287_175_12e-1);
    let r = r.mul_add(t, -t);
    let outer = (1.0 - r.vexp()).copysign(a);
    let p = (-5.967_617_03e-4_f32).mul_add(s, 4.991_194_23e-3);
    let p = p.mul_add(s, -2.676_813_49e-2);
    let p = p.mul_add(s, 1.128_199_25e-1);
    let p = p.mul_add(s, -3.761_253_36e-1);
    let p = p.mul_add(s, 1.283_791_66e-1);
    let inner = p.mul_add(a, a);
    if t > 0.927_734_375 {
        outer
    } else {
        inner
    }
}

#[cfg(test)]
mod tests {
    use super::{erf_f32, gelu, gelu_grad};

    #[test]
    fn erf_f32_is_within_two_ulp_of_the_f64_erf_everywhere_it_is_not_one() {
        let mut worst = 0.0_f64;
        for i in -600_000..=600_000 {
            let x = i as f32 * 1e-5;
            let want = libm::erf(x as f64);
            let got = erf_f32(x) as f64;
            let ulp = (want.abs() as f32).max(f32::MIN_POSITIVE);
            let ulp = (f32::from_bits(ulp.to_bits() + 1) - ulp) as f64;
            worst = worst.max((got - want).abs() / ulp);
        }
        assert!(worst <= 2.0, "worst error {worst} ulp");
    }

    #[test]
    fn erf_f32_keeps_nan_and_saturates_at_the_infinities() {
        assert!(erf_f32(f32::NAN).is_nan());
        assert_eq!(erf_f32(f32::INFINITY), 1.0);
        assert_eq!(erf_f32(f32::NEG_INFINITY), -1.0);
        assert_eq!(erf_f32(0.0), 0.0);
        assert_eq!(erf_f32(-20.0), -1.0);
    }

    #[test]
    fn gelu_gradient_matches_a_central_difference_in_f64() {
        for i in -80..=80 {
            let x = i as f64 * 0.1;
            let h = 1e-6;
            let numeric = (gelu(x + h) - gelu(x - h)) / (2.0 * h);
            assert!((gelu_grad(x) - numeric).abs() < 1e-8, "x = {x}");
            // float32 agrees with float64 to float32 precision.
            let x32 = x as f32;
            assert!((gelu(x32) as f64 - gelu(x32 as f64)).abs() < 1e-6 * (1.0 + x.abs()));
            assert!((gelu_grad(x32) as f64 - gelu_grad(x32 as f64)).abs() < 1e-6);
        }
    }
}
