//! The exact GELU on `Tensor`, forward and backward each one vectorised pass: float32 uses a
//! branch-free `erf` (below) that the elementwise loops compile to SIMD, where libm's `erff`
//! is a scalar call per element.

use std::mem::MaybeUninit;

use super::ops_nn::{changed, mismatch};
use super::{is_grad_enabled, Tensor};
use crate::dtype::float_only_error;
use crate::dynarray::{DynArray, Element};
use crate::ndarray::elementwise::simd::{self, Kernel};
use crate::ndarray::{try_with_capacity, Float, NdArray};
use crate::parallel::{for_each_item, should_split_work};
use crate::Result;

impl Tensor {
    /// The exact GELU, `0.5·x·(1 + erf(x/√2))` (PyTorch's default, not the tanh form).
    pub fn gelu(&self) -> Result<Tensor> {
        // With a backward to come, the forward keeps Φ(x) = ½(1 + erf(x/√2)): the backward
        // then needs one exponential per element instead of a second erf.
        let keep = is_grad_enabled() && self.requires_grad();
        let (out, cdf) = match &*self.array() {
            DynArray::F32(a) => wrap_pair(gelu_forward::<f32>(a, keep)?),
            DynArray::F64(a) => wrap_pair(gelu_forward::<f64>(a, keep)?),
            other => return Err(float_only_error("gelu", other.dtype())),
        };
        Ok(Tensor::from_op(out, "gelu", &[self], move |g, ctx| {
            let x = ctx.input(0)?;
            let g = g.as_dtype(x.dtype());
            // g · d/dx, with d/dx = Φ(x) + x·φ(x), in one pass.
            let dx = match (&*x, g.as_ref(), &cdf) {
                (DynArray::F32(x), DynArray::F32(g), DynArray::F32(c)) => {
                    DynArray::F32(gelu_backward::<f32>(x, g, c)?)
                }
                (DynArray::F64(x), DynArray::F64(g), DynArray::F64(c)) => {
                    DynArray::F64(gelu_backward::<f64>(x, g, c)?)
                }
                _ => return Err(mismatch()),
            };
            Ok(vec![Some(dx)])
        }))
    }
}

fn wrap_pair<T: Element>((a, b): (NdArray<T>, NdArray<T>)) -> (DynArray, DynArray) {
    (T::wrap(a), T::wrap(b))
}

/// Elements per task of the parallel passes.
const CHUNK: usize = 1 << 14;

/// What a [`GeluChunk`] computes.
const FORWARD: u8 = 0;
/// The forward, also writing Φ(x).
const FORWARD_KEEP: u8 = 1;
/// `g · (Φ(x) + x·φ(x))` from the kept Φ(x).
const BACKWARD: u8 = 2;

/// A GELU element costs about this many additions (erf or exp and a few products; f32 on
/// 2 cores: 30 µs per 32K elements against 3.9 µs for an addition), for the split rule.
const GELU_COST: usize = 4;

/// `gelu(x)`, and Φ(x) when `keep` (else an empty array).
fn gelu_forward<T: Erf + Element>(x: &NdArray<T>, keep: bool) -> Result<(NdArray<T>, NdArray<T>)> {
    let (out, cdf) = match keep {
        true => gelu_pass::<T, FORWARD_KEEP>(x.data(), &[], &[])?,
        false => gelu_pass::<T, FORWARD>(x.data(), &[], &[])?,
    };
    let cdf_shape: &[usize] = if keep { x.shape() } else { &[0] };
    Ok((
        NdArray::from_vec(out, x.shape())?,
        NdArray::from_vec(cdf, cdf_shape)?,
    ))
}

fn gelu_backward<T: Erf>(x: &NdArray<T>, g: &NdArray<T>, cdf: &NdArray<T>) -> Result<NdArray<T>> {
    if g.shape() != x.shape() || cdf.shape() != x.shape() {
        return Err(changed("gelu"));
    }
    let (dx, _) = gelu_pass::<T, BACKWARD>(x.data(), g.data(), cdf.data())?;
    NdArray::from_vec(dx, x.shape())
}

/// A chunk of the output and of Φ(x) (empty unless `FORWARD_KEEP`).
type OutChunks<'a, T> = (&'a mut [MaybeUninit<T>], &'a mut [MaybeUninit<T>]);

/// One pass of `MODE` over `x` (with `g` and `cdf` in the backward), in parallel chunks
/// when large: the output, and Φ(x) in `FORWARD_KEEP` (else empty).
fn gelu_pass<T: Erf, const MODE: u8>(xs: &[T], gs: &[T], cs: &[T]) -> Result<(Vec<T>, Vec<T>)> {
    let n = xs.len();
    let mut out = try_with_capacity(n)?;
    let mut cdf = try_with_capacity(if MODE == FORWARD_KEEP { n } else { 0 })?;
    let dst = &mut out.spare_capacity_mut()[..n];
    let cdf_dst = &mut cdf.spare_capacity_mut()[..];
    let chunk = |(i, (out, cdf_out)): (usize, OutChunks<'_, T>)| {
        let at = i * CHUNK..i * CHUNK + out.len();
        let (g, cdf) = match MODE == BACKWARD {
            true => (&gs[at.clone()], &cs[at.clone()]),
            false => (&[][..], &[][..]),
        };
        simd::run(GeluChunk::<T, MODE> {
            out,
            cdf_out,
            x: &xs[at],
            g,
            cdf,
        });
    };
    // Φ(x) is written only in FORWARD_KEEP; elsewhere each chunk gets an empty slice of it.
    if MODE == FORWARD_KEEP {
        if should_split_work(n, GELU_COST) {
            for_each_item(
                dst.chunks_mut(CHUNK)
                    .zip(cdf_dst.chunks_mut(CHUNK))
                    .enumerate(),
                chunk,
            );
        } else {
            dst.chunks_mut(CHUNK)
                .zip(cdf_dst.chunks_mut(CHUNK))
                .enumerate()
                .for_each(chunk);
        }
    } else if should_split_work(n, GELU_COST) {
        for_each_item(
            dst.chunks_mut(CHUNK).map(|d| (d, &mut [][..])).enumerate(),
            chunk,
        );
    } else {
        dst.chunks_mut(CHUNK)
            .map(|d| (d, &mut [][..]))
            .enumerate()
            .for_each(chunk);
    }
    // SAFETY: the chunks cover all `n` elements of each spare capacity written (`cdf` only in
    // FORWARD_KEEP, sized `n` there), and each kernel writes every element of its chunk.
    unsafe {
        out.set_len(n);
        if MODE == FORWARD_KEEP {
            cdf.set_len(n);
        }
    }
    Ok((out, cdf))
}

/// One chunk of a GELU pass, a loop compiled per instruction set (the `erf` and `exp` inline
/// into it: as a closure they would be called out of line).
struct GeluChunk<'a, T, const MODE: u8> {
    out: &'a mut [MaybeUninit<T>],
    cdf_out: &'a mut [MaybeUninit<T>],
    x: &'a [T],
    g: &'a [T],
    cdf: &'a [T],
}

impl<T: Erf, const MODE: u8> Kernel for GeluChunk<'_, T, MODE> {
    fn work(&self) -> usize {
        self.out.len()
    }

    #[inline(always)]
    fn run(self) {
        match MODE {
            FORWARD => {
                for (o, &x) in self.out.iter_mut().zip(self.x) {
                    o.write(x * cdf(x));
                }
            }
            FORWARD_KEEP => {
                for ((o, c), &x) in self.out.iter_mut().zip(self.cdf_out.iter_mut()).zip(self.x) {
                    let p = cdf(x);
                    c.write(p);
                    o.write(x * p);
                }
            }
            _ => {
                let half = T::from_f64_lossy(0.5);
                let inv_sqrt_2pi = T::from_f64_lossy(INV_SQRT_2PI);
                let zipped = self.out.iter_mut().zip(self.x).zip(self.g);
                for (((o, &x), &g), &p) in zipped.zip(self.cdf) {
                    o.write(g * (p + x * inv_sqrt_2pi * (-half * x * x).vexp()));
                }
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

/// Φ(x) = ½(1 + erf(x/√2)), the standard normal CDF.
#[inline(always)]
fn cdf<T: Erf>(x: T) -> T {
    let half = T::from_f64_lossy(0.5);
    half * (T::one() + (x * T::from_f64_lossy(std::f64::consts::FRAC_1_SQRT_2)).erf())
}

/// GELU's derivative Φ(x) + x·φ(x) (the tests' reference for the fused backward).
#[cfg(test)]
fn gelu_grad<T: Erf>(x: T) -> T {
    let half = T::from_f64_lossy(0.5);
    cdf(x) + x * T::from_f64_lossy(INV_SQRT_2PI) * (-half * x * x).vexp()
}

/// GELU, x·Φ(x).
#[cfg(test)]
fn gelu<T: Erf>(x: T) -> T {
    x * cdf(x)
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
