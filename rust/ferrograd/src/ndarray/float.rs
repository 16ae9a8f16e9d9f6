//! The float element trait: what `f32` and `f64` share for the math kernels.

/// A float element type of the math kernels (`f32` or `f64`).
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + std::iter::Sum
    + std::fmt::Debug
    + std::fmt::Display
    + Default
    + Send
    + Sync
    + 'static
{
    /// The dtype name Python shows: `"float32"` or `"float64"`.
    const NAME: &'static str;
    /// Converts from `f64` (rounding for `f32`).
    fn from_f64_lossy(x: f64) -> Self;
    /// Widens to `f64`.
    fn to_f64_lossless(self) -> f64;
    /// `e^x` in a form the compiler vectorises (no libm call, no branches) where that
    /// matters: f32 uses [`exp_f32`] (within 2 ulp of the correctly rounded value, exact
    /// overflow to inf, gradual underflow, NaN kept); f64 uses libm's `exp`.
    fn vexp(self) -> Self;
}

/// `e^x` for f32, branch-free: `x = n·ln2 + r`, |r| ≤ ln2/2, `e^r` by Cephes' degree-7
/// polynomial, scaled by `2^n` in two steps so subnormal results round once.
#[inline(always)]
pub fn exp_f32(x: f32) -> f32 {
    // Beyond these e^x is inf or 0 in f32; the clamp keeps n in [-150, 129].
    let xc = x.clamp_to(-104.0, 89.0);
    // Adding -0.0 changes no value, so the compiler drops the correction term.
    let out = exp_f32_core(xc, -0.0);
    if x.is_nan() {
        x
    } else {
        out
    }
}

/// `e^(x + lo)` for `x` in [-104, 89] (not NaN) and `lo` a correction far below ulp(x)
/// (the low part of an argument carried in two floats), within 2 ulp: [`exp_f32`] without
/// its clamp. The polynomial uses fused multiply-adds: exactly rounded everywhere, so the
/// results are the same on every instruction set (without an FMA unit each one is a libm
/// call, slower, not different).
#[inline(always)]
pub(crate) fn exp_f32_core(x: f32, lo: f32) -> f32 {
    const LOG2E: f32 = std::f32::consts::LOG2_E;
    // ln 2 split in two (Cody-Waite): `n * LN2_HI` is exact for |n| < 2^9.
    const LN2_HI: f32 = 0.693_359_4;
    const LN2_LO: f32 = -2.121_944_4e-4;
    // 1.5·2^23: adding it rounds to an integer that sits in the low mantissa bits.
    const MAGIC: f32 = 12_582_912.0;
    let t = x.mul_add(LOG2E, MAGIC);
    let n = t - MAGIC;
    let ni = (t.to_bits() as i32).wrapping_sub(MAGIC.to_bits() as i32);
    let r = n.mul_add(-LN2_HI, x);
    let r = n.mul_add(-LN2_LO, r) + lo;
    let p = 1.987_569_1e-4_f32;
    let p = p.mul_add(r, 1.398_199_9e-3);
    let p = p.mul_add(r, 8.333_452e-3);
    let p = p.mul_add(r, 4.166_579_6e-2);
    let p = p.mul_add(r, 1.666_666_5e-1);
    let p = p.mul_add(r, 0.5);
    let y = p.mul_add(r * r, r) + 1.0;
    let n1 = ni >> 1;
    let n2 = ni - n1;
    let s1 = f32::from_bits(((n1 + 127) as u32) << 23);
    let s2 = f32::from_bits(((n2 + 127) as u32) << 23);
    (y * s1) * s2
}

/// Clamping that compiles to plain min/max instructions (NaN handled by the caller).
trait ClampTo {
    fn clamp_to(self, lo: Self, hi: Self) -> Self;
}

impl ClampTo for f32 {
    #[inline(always)]
    fn clamp_to(self, lo: f32, hi: f32) -> f32 {
        let x = if self < lo { lo } else { self };
        if x > hi {
            hi
        } else {
            x
        }
    }
}

impl Float for f32 {
    const NAME: &'static str = "float32";
    fn from_f64_lossy(x: f64) -> Self {
        x as f32
    }
    fn to_f64_lossless(self) -> f64 {
        self as f64
    }
    #[inline(always)]
    fn vexp(self) -> Self {
        exp_f32(self)
    }
}

impl Float for f64 {
    const NAME: &'static str = "float64";
    fn from_f64_lossy(x: f64) -> Self {
        x
    }
    fn to_f64_lossless(self) -> f64 {
        self
    }
    #[inline(always)]
    fn vexp(self) -> Self {
        self.exp()
    }
}

#[cfg(test)]
mod tests {
    use super::exp_f32;

    /// Units in the last place between two f32 (finite, same sign).
    fn ulps(a: f32, b: f32) -> u32 {
        (a.to_bits() as i64 - b.to_bits() as i64).unsigned_abs() as u32
    }

    #[test]
    fn exp_f32_is_within_two_ulp_of_the_correctly_rounded_value() {
        let mut worst = 0;
        let mut x = -103.9_f32;
        while x < 88.7 {
            let want = (x as f64).exp() as f32;
            let got = exp_f32(x);
            if want.is_normal() {
                worst = worst.max(ulps(got, want));
            } else {
                // Subnormal results: absolute error within one subnormal step or so.
                assert!(
                    (got - want).abs() <= 2.0 * f32::from_bits(1),
                    "{x}: {got} vs {want}"
                );
            }
            x += 0.000_731;
        }
        assert!(worst <= 2, "worst error {worst} ulp");
    }

    #[test]
    fn exp_f32_handles_the_special_values() {
        assert_eq!(exp_f32(0.0), 1.0);
        assert_eq!(exp_f32(-0.0), 1.0);
        assert_eq!(exp_f32(f32::INFINITY), f32::INFINITY);
        assert_eq!(exp_f32(89.0), f32::INFINITY);
        assert_eq!(exp_f32(88.8), f32::INFINITY);
        assert!(exp_f32(88.72).is_finite());
        assert_eq!(exp_f32(f32::NEG_INFINITY), 0.0);
        assert_eq!(exp_f32(-200.0), 0.0);
        assert!(exp_f32(f32::NAN).is_nan());
        assert_eq!(exp_f32(1.0), std::f32::consts::E);
    }
}
