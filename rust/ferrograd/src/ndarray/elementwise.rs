//! Elementwise kernels: unary maps, broadcasting binary ops, scalar ops, casts.
//!
//! Contiguous same-shape and scalar operands take a flat loop the compiler vectorises,
//! compiled three times (x86-64 baseline, AVX2+FMA, AVX-512) and picked at run time, so
//! the shipped build needs no `target-cpu`; large ones split across the crate's pool.
//! Other broadcasts walk strides.

use std::mem::MaybeUninit;

use super::{for_each_offset2, try_with_capacity, Float, NdArray};
use crate::parallel::{for_each_chunk_mut, should_split as parallel};
use crate::shape::{broadcast_shapes, broadcast_strides, checked_size};
use crate::Result;

/// Elements per task: large enough to amortise scheduling, small enough to balance.
const CHUNK: usize = 1 << 14;

/// `x[i] += y[i]` over equal-length slices (a loop the compiler vectorises).
pub(crate) fn add_into<T: Float>(x: &mut [T], y: &[T]) {
    x.iter_mut().zip(y).for_each(|(x, &y)| *x = *x + y);
}

/// The loops, written once and compiled per instruction set (see [`simd`]).
#[inline(always)]
fn fill_map<T: Copy>(dst: &mut [MaybeUninit<T>], a: &[T], f: &impl Fn(T) -> T) {
    for (d, &x) in dst.iter_mut().zip(a) {
        d.write(f(x));
    }
}

#[inline(always)]
fn fill_zip<T: Copy>(dst: &mut [MaybeUninit<T>], a: &[T], b: &[T], f: &impl Fn(T, T) -> T) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        d.write(f(x, y));
    }
}

/// Runtime dispatch of the loops above: the same source compiled for AVX2+FMA and for
/// AVX-512 (16 f32 lanes), chosen once per process from the CPU's features. Float
/// results are identical on every path: Rust never contracts `a * b + c` into an FMA.
pub(crate) mod simd {
    use std::mem::MaybeUninit;

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Level {
        Base,
        #[cfg(target_arch = "x86_64")]
        V3,
        #[cfg(target_arch = "x86_64")]
        V4,
    }

    fn level() -> Level {
        #[cfg(target_arch = "x86_64")]
        {
            use std::sync::atomic::{AtomicU8, Ordering};
            static LEVEL: AtomicU8 = AtomicU8::new(0);
            match LEVEL.load(Ordering::Relaxed) {
                1 => return Level::Base,
                2 => return Level::V3,
                3 => return Level::V4,
                _ => {}
            }
            let l = if is_x86_feature_detected!("avx512f")
                && is_x86_feature_detected!("avx512bw")
                && is_x86_feature_detected!("avx512dq")
                && is_x86_feature_detected!("avx512vl")
                && is_x86_feature_detected!("avx2")
                && is_x86_feature_detected!("fma")
            {
                Level::V4
            } else if is_x86_feature_detected!("avx2") && is_x86_feature_detected!("fma") {
                Level::V3
            } else {
                Level::Base
            };
            let code = match l {
                Level::Base => 1,
                Level::V3 => 2,
                Level::V4 => 3,
            };
            LEVEL.store(code, Ordering::Relaxed);
            l
        }
        #[cfg(not(target_arch = "x86_64"))]
        Level::Base
    }

    /// Below this many elements the baseline loop runs (no dispatch to pay for).
    const SMALL: usize = 64;

    macro_rules! dispatched {
        ($(#[$m:meta])* fn $name:ident<$t:ident, $f:ident: $bound:path>($dst:ident: $dty:ty, $($arg:ident: $ty:ty),*) => $body:ident;) => {
            $(#[$m])*
            pub(crate) fn $name<$t: Copy, $f: $bound>($dst: $dty, $($arg: $ty),*) {
                #[cfg(target_arch = "x86_64")]
                {
                    #[target_feature(enable = "avx2,fma")]
                    unsafe fn v3<$t: Copy, $f: $bound>($dst: $dty, $($arg: $ty),*) {
                        super::$body($dst, $($arg),*)
                    }
                    #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
                    unsafe fn v4<$t: Copy, $f: $bound>($dst: $dty, $($arg: $ty),*) {
                        super::$body($dst, $($arg),*)
                    }
                    if $dst.len() >= SMALL {
                        match level() {
                            // SAFETY: `level` returned V3/V4 only after detecting every
                            // feature the function is compiled with on this CPU.
                            Level::V4 => return unsafe { v4($dst, $($arg),*) },
                            Level::V3 => return unsafe { v3($dst, $($arg),*) },
                            Level::Base => {}
                        }
                    }
                }
                super::$body($dst, $($arg),*)
            }
        };
    }

    /// A loop to compile per instruction set: implement `run` with `#[inline(always)]` so
    /// that its body is compiled inside each `#[target_feature]` wrapper of [`run`]
    /// (a closure would not reliably be inlined there).
    pub(crate) trait Kernel {
        /// The amount of work (below [`SMALL`] the baseline build runs).
        fn work(&self) -> usize;
        fn run(self);
    }

    /// Runs `k` compiled for the best instruction set this CPU has.
    pub(crate) fn run<K: Kernel>(k: K) {
        #[cfg(target_arch = "x86_64")]
        {
            #[target_feature(enable = "avx2,fma")]
            unsafe fn v3<K: Kernel>(k: K) {
                k.run()
            }
            #[target_feature(enable = "avx512f,avx512bw,avx512dq,avx512vl,avx2,fma")]
            unsafe fn v4<K: Kernel>(k: K) {
                k.run()
            }
            if k.work() >= SMALL {
                match level() {
                    // SAFETY: as in `dispatched!`: the features were detected.
                    Level::V4 => return unsafe { v4(k) },
                    Level::V3 => return unsafe { v3(k) },
                    Level::Base => {}
                }
            }
        }
        k.run()
    }

    dispatched! {
        /// `dst[i] = f(a[i])`.
        fn map<T, F: Fn(T) -> T>(dst: &mut [MaybeUninit<T>], a: &[T], f: &F) => fill_map;
    }
    dispatched! {
        /// `dst[i] = f(a[i], b[i])`.
        fn zip<T, F: Fn(T, T) -> T>(dst: &mut [MaybeUninit<T>], a: &[T], b: &[T], f: &F) => fill_zip;
    }
}

/// `out[i] = f(a[i])`, in parallel when large (each thread first-touches its own part).
fn map_slice<T: Float>(a: &[T], f: impl Fn(T) -> T + Sync) -> Result<Vec<T>> {
    let n = a.len();
    let mut out = try_with_capacity(n)?;
    let dst = &mut out.spare_capacity_mut()[..n];
    if parallel(n) {
        for_each_chunk_mut(dst, CHUNK, |i, d| {
            simd::map(d, &a[i * CHUNK..][..d.len()], &f)
        });
    } else {
        simd::map(dst, a, &f);
    }
    // SAFETY: the loops above wrote all `n` elements of the spare capacity (`dst` and `a`
    // have length `n`, and the chunks of both cover them in step).
    unsafe { out.set_len(n) };
    Ok(out)
}

/// `out[i] = f(a[i], b[i])` for equal-length slices, in parallel when large.
fn zip_slices<T: Float>(a: &[T], b: &[T], f: impl Fn(T, T) -> T + Sync) -> Result<Vec<T>> {
    let n = a.len();
    assert_eq!(n, b.len(), "zip_slices: lengths differ");
    let mut out = try_with_capacity(n)?;
    let dst = &mut out.spare_capacity_mut()[..n];
    if parallel(n) {
        for_each_chunk_mut(dst, CHUNK, |i, d| {
            let at = i * CHUNK..i * CHUNK + d.len();
            simd::zip(d, &a[at.clone()], &b[at], &f)
        });
    } else {
        simd::zip(dst, a, b, &f);
    }
    // SAFETY: as in `map_slice`: all `n` elements were written.
    unsafe { out.set_len(n) };
    Ok(out)
}

/// Whether an operand of shape `small` broadcasts to `shape` by repeating its data whole:
/// without its leading 1s, its shape is a non-empty-sized suffix of `shape`.
fn repeats_whole(small: &[usize], shape: &[usize]) -> bool {
    let lead = small.iter().take_while(|&&d| d == 1).count();
    shape.ends_with(&small[lead..]) && !small.contains(&0)
}

/// `out[i] = f(a[i], row[i % row.len()])`, row by row (`a.len()` a multiple of `row.len()`).
fn zip_rows<T: Float>(a: &[T], row: &[T], f: &(impl Fn(T, T) -> T + Sync)) -> Result<Vec<T>> {
    let n = a.len();
    assert!(
        !row.is_empty() && n % row.len() == 0,
        "zip_rows: ragged rows"
    );
    let mut out = try_with_capacity(n)?;
    let dst = &mut out.spare_capacity_mut()[..n];
    let rows = |(d, x): (&mut [MaybeUninit<T>], &[T])| {
        d.chunks_exact_mut(row.len())
            .zip(x.chunks_exact(row.len()))
            .for_each(|(d, x)| simd::zip(d, x, row, f))
    };
    if parallel(n) {
        // Tasks of whole rows, about `CHUNK` elements each.
        let per_task = row.len() * CHUNK.div_ceil(row.len());
        for_each_chunk_mut(dst, per_task, |i, d| {
            let a = &a[i * per_task..][..d.len()];
            rows((d, a))
        });
    } else {
        rows((dst, a));
    }
    // SAFETY: the rows above cover all `n` elements of `dst` (`n` is a multiple of the row
    // length, and `dst`, `a` are chunked in step), so all were written.
    unsafe { out.set_len(n) };
    Ok(out)
}

impl<T: Float> NdArray<T> {
    /// Applies a float function to every element.
    pub fn unary(&self, f: impl Fn(T) -> T + Sync) -> Result<Self> {
        Ok(Self {
            shape: self.shape.clone(),
            data: map_slice(&self.data, f)?,
        })
    }

    /// Combines two arrays elementwise under NumPy broadcasting; `op` names the op in errors.
    pub fn binary(&self, op: &str, other: &Self, f: impl Fn(T, T) -> T + Sync) -> Result<Self> {
        if self.shape == other.shape {
            let data = zip_slices(&self.data, &other.data, f)?;
            return Ok(Self {
                shape: self.shape.clone(),
                data,
            });
        }
        let shape = broadcast_shapes(op, &self.shape, &other.shape)?;
        // A one-element operand is a scalar: no broadcast walk, no materialised copy.
        if other.size() == 1 && shape == self.shape {
            let y = other.data[0];
            return Ok(Self {
                data: map_slice(&self.data, |x| f(x, y))?,
                shape,
            });
        }
        if self.size() == 1 && shape == other.shape {
            let x = self.data[0];
            return Ok(Self {
                data: map_slice(&other.data, |y| f(x, y))?,
                shape,
            });
        }
        // A bias-like operand (`(32, 16) + (16,)`) repeats its data whole along the leading
        // axes: zip it row by row with flat loops instead of walking strides.
        if shape == self.shape && repeats_whole(&other.shape, &shape) {
            return Ok(Self {
                data: zip_rows(&self.data, &other.data, &f)?,
                shape,
            });
        }
        if shape == other.shape && repeats_whole(&self.shape, &shape) {
            return Ok(Self {
                data: zip_rows(&other.data, &self.data, &|y, x| f(x, y))?,
                shape,
            });
        }
        let mut data = try_with_capacity(checked_size(&shape)?)?;
        let sa = broadcast_strides(&self.shape, &shape);
        let sb = broadcast_strides(&other.shape, &shape);
        for_each_offset2(&shape, &sa, &sb, |i, j| {
            data.push(f(self.data[i], other.data[j]))
        });
        Ok(Self { shape, data })
    }

    /// Applies `f(x, s)` with one scalar `s` (converted to `T`; a Python scalar never promotes).
    pub fn scalar_op(&self, s: f64, f: impl Fn(T, T) -> T + Sync) -> Result<Self> {
        let s = T::from_f64_lossy(s);
        self.unary(|x| f(x, s))
    }

    /// Converts every element to another float type.
    pub fn cast<U: Float>(&self) -> NdArray<U> {
        self.map(|&x| U::from_f64_lossy(x.to_f64_lossless()))
    }

    /// Adds `other` into `self` elementwise (same shape), in place.
    pub fn add_assign(&mut self, other: &Self) -> Result<()> {
        if self.shape != other.shape {
            return Err(crate::shape_err!(
                "add_: shapes {} and {} differ",
                crate::shape::fmt_shape(&self.shape),
                crate::shape::fmt_shape(&other.shape)
            ));
        }
        if parallel(self.size()) {
            let y = &other.data;
            for_each_chunk_mut(&mut self.data, CHUNK, |i, x| {
                add_into(x, &y[i * CHUNK..][..x.len()])
            });
        } else {
            add_into(&mut self.data, &other.data);
        }
        Ok(())
    }

    /// Adds `grad[i]` into `out[offsets[i]]`: the backward of a gather.
    pub fn scatter_add(shape: &[usize], offsets: &[usize], grad: &Self) -> Result<Self> {
        let mut out = Self::full(shape, T::zero())?;
        for (&o, &g) in offsets.iter().zip(&grad.data) {
            out.data[o] = out.data[o] + g;
        }
        Ok(out)
    }
}

/// Numerically careful scalar functions shared by forward and backward rules.
pub mod scalar {
    use super::Float;

    /// The logistic function, exact 0/1 at the extremes and never NaN for finite input.
    /// Branch-free (`e = e^-|x|`, then `1/(1+e)` or `e/(1+e)`), so loops vectorise.
    #[inline(always)]
    pub fn sigmoid<T: Float>(x: T) -> T {
        let e = (-x.abs()).vexp();
        let r = T::one() / (T::one() + e);
        if x >= T::zero() || x.is_nan() {
            r
        } else {
            e * r
        }
    }

    /// `max(x, 0)`, keeping NaN.
    pub fn relu<T: Float>(x: T) -> T {
        if x > T::zero() || x.is_nan() {
            x
        } else {
            T::zero()
        }
    }

    /// `x ** y` with PyTorch's conventions (a negative base to a fractional power is NaN).
    pub fn pow<T: Float>(x: T, y: T) -> T {
        x.powf(y)
    }

    /// The sign of `x`: -1, 0 or 1 (0 at zero, as the subgradient of `abs`).
    pub fn sign<T: Float>(x: T) -> T {
        if x > T::zero() {
            T::one()
        } else if x < T::zero() {
            -T::one()
        } else {
            T::zero() * x
        }
    }

    /// Python's `x % y` for floats: `fmod` moved to the divisor's sign (CPython's
    /// `float_rem`); a zero divisor gives NaN.
    pub fn py_mod<T: Float>(x: T, y: T) -> T {
        let m = x % y;
        if m != T::zero() {
            if (y < T::zero()) != (m < T::zero()) {
                m + y
            } else {
                m
            }
        } else {
            T::zero().copysign(y)
        }
    }

    /// Python's `x // y` for floats (CPython's `float_floor_div`): exact where `floor(x / y)`
    /// would round the quotient up (`7.0 // 0.1 == 69.0`); a zero divisor gives ±inf or NaN.
    pub fn floor_div<T: Float>(x: T, y: T) -> T {
        if y == T::zero() {
            return x / y;
        }
        let m = x % y;
        let mut div = (x - m) / y;
        if m != T::zero() && ((y < T::zero()) != (m < T::zero())) {
            div = div - T::one();
        }
        if div != T::zero() {
            let f = div.floor();
            let half = T::one() / (T::one() + T::one());
            if div - f > half {
                f + T::one()
            } else {
                f
            }
        } else {
            T::zero().copysign(x / y)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `a - b` under broadcasting by walking strides (the general path), as a reference.
    fn reference(a: &NdArray<f64>, b: &NdArray<f64>) -> NdArray<f64> {
        let shape = broadcast_shapes("sub", &a.shape, &b.shape).unwrap();
        let (sa, sb) = (
            broadcast_strides(&a.shape, &shape),
            broadcast_strides(&b.shape, &shape),
        );
        let mut data = Vec::new();
        for_each_offset2(&shape, &sa, &sb, |i, j| data.push(a.data[i] - b.data[j]));
        NdArray { shape, data }
    }

    fn filled(shape: &[usize], start: f64) -> NdArray<f64> {
        let n = shape.iter().product();
        let data = (0..n).map(|i| start + i as f64 * 0.5).collect();
        NdArray::from_vec(data, shape).unwrap()
    }

    #[test]
    fn operands_repeated_whole_broadcast_like_the_stride_walk_on_either_side() {
        let cases: &[(&[usize], &[usize])] = &[
            (&[4, 3], &[3]),
            (&[4, 3], &[1, 3]),
            (&[2, 4, 3], &[4, 3]),
            (&[2, 4, 3], &[1, 1, 3]),
            (&[2, 1, 3], &[3]),
            (&[0, 3], &[3]),
            (&[4, 3], &[4, 1]),        // not repeated whole: the general path
            (&[5, 40_000], &[40_000]), // large enough to run in parallel
        ];
        for &(big, small) in cases {
            let (a, b) = (filled(big, 1.0), filled(small, -2.0));
            // Subtraction is not symmetric: checks that operands keep their sides.
            assert_eq!(
                a.binary("sub", &b, |x, y| x - y).unwrap(),
                reference(&a, &b)
            );
            assert_eq!(
                b.binary("sub", &a, |x, y| x - y).unwrap(),
                reference(&b, &a)
            );
        }
    }
}
