//! The loops of conv2d's layout moves, each compiled per instruction set (see
//! [`simd::run`]): im2col from the padded images, its adjoint col2im, and the GEMM's
//! `(positions, channels)` product turned into NCHW images.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use super::Geometry;
use crate::ndarray::elementwise::simd::{self, Kernel};
use crate::ndarray::{try_filled, Float};
use crate::shape::checked_size;
use crate::Result;

/// One image `(O, L)` from its `(L, O)` block `src` of the product, plus the bias.
pub(super) fn to_image<T: Float>(
    src: &[T],
    bias: Option<&[T]>,
    l: usize,
    o: usize,
    image: &mut [T],
) {
    simd::run(ToImage {
        src,
        bias,
        l,
        o,
        image,
    });
}

/// One image of [`super::to_images`]: its `(L, O)` block of the product transposed to `(O, L)`,
/// plus the bias, compiled per instruction set (see [`simd::run`]).
struct ToImage<'a, T> {
    src: &'a [T],
    bias: Option<&'a [T]>,
    l: usize,
    o: usize,
    image: &'a mut [T],
}

/// Positions per tile of [`ToImage`]: the tile's source rows (`TILE · O` values) stay in
/// L1 while each channel's `TILE` outputs are written as one run.
const TILE: usize = 8;

impl<T: Float> Kernel for ToImage<'_, T> {
    fn work(&self) -> usize {
        self.image.len()
    }

    #[inline(always)]
    fn run(self) {
        let Self {
            src,
            bias,
            l,
            o,
            image,
        } = self;
        for p0 in (0..l).step_by(TILE) {
            let p1 = (p0 + TILE).min(l);
            let rows = &src[p0 * o..p1 * o];
            for c in 0..o {
                let dst = &mut image[c * l + p0..c * l + p1];
                for (d, row) in dst.iter_mut().zip(rows.chunks_exact(o)) {
                    *d = match bias {
                        Some(b) => row[c] + b[c],
                        None => row[c],
                    };
                }
            }
        }
    }
}

/// `nb` images with their zero padding made real, `(nb, C, H + 2·ph, W + 2·pw)`: every
/// kernel row of every patch is then one run inside its padded row (borrowed as is when
/// there is no padding).
pub(super) fn pad<'a, T: Float>(x: &'a [T], geo: &Geometry, nb: usize) -> Result<Cow<'a, [T]>> {
    if geo.ph == 0 && geo.pw == 0 {
        return Ok(Cow::Borrowed(&x[..nb * geo.image()]));
    }
    let (hp, wp) = (geo.h + 2 * geo.ph, geo.w + 2 * geo.pw);
    let mut out = try_filled(checked_size(&[nb, geo.c, hp, wp])?, T::zero())?;
    if geo.h * geo.w > 0 {
        for (src, dst) in x.chunks(geo.h * geo.w).zip(out.chunks_mut(hp * wp)) {
            for (row, d) in src.chunks(geo.w).zip(dst[geo.ph * wp..].chunks_mut(wp)) {
                d[geo.pw..geo.pw + geo.w].copy_from_slice(row);
            }
        }
    }
    Ok(Cow::Owned(out))
}

/// One image's rows of the transposed columns (see [`columns`]) from its padded planes
/// (see [`pad`]), every element written.
pub(super) fn im2col<T: Float>(padded: &[T], geo: &Geometry, dst: &mut [MaybeUninit<T>]) {
    simd::run(Im2Col { padded, geo, dst });
}

/// [`im2col`]'s loop, compiled per instruction set (see [`simd::run`]).
struct Im2Col<'a, T> {
    padded: &'a [T],
    geo: &'a Geometry,
    dst: &'a mut [MaybeUninit<T>],
}

impl<T: Float> Kernel for Im2Col<'_, T> {
    fn work(&self) -> usize {
        self.dst.len()
    }

    #[inline(always)]
    fn run(self) {
        let Self { padded, geo, dst } = self;
        // Common kernel widths get a copy loop of known length (unrolled).
        match geo.kw {
            1 => patch_rows(padded, geo, 1, dst),
            2 => patch_rows(padded, geo, 2, dst),
            3 => patch_rows(padded, geo, 3, dst),
            5 => patch_rows(padded, geo, 5, dst),
            kw => patch_rows(padded, geo, kw, dst),
        }
    }
}

/// Row `oy·W' + ox` of `dst` gets, for each channel `c` and kernel row `ki`, the `kw`
/// padded inputs from `(oy·sh + ki, ox·sw)` on.
#[inline(always)]
fn patch_rows<T: Float>(padded: &[T], geo: &Geometry, kw: usize, dst: &mut [MaybeUninit<T>]) {
    let (ckk, hp, wp) = (geo.patch(), geo.h + 2 * geo.ph, geo.w + 2 * geo.pw);
    if ckk == 0 || geo.wo == 0 {
        return;
    }
    for (pos, row) in dst.chunks_exact_mut(ckk).enumerate() {
        let (oy, ox) = (pos / geo.wo, pos % geo.wo);
        let mut runs = row.chunks_exact_mut(kw);
        for c in 0..geo.c {
            let mut start = (c * hp + oy * geo.sh) * wp + ox * geo.sw;
            for _ in 0..geo.kh {
                if let Some(d) = runs.next() {
                    let src = &padded[start..start + kw];
                    d.iter_mut()
                        .zip(src)
                        .for_each(|(d, &s)| *d = MaybeUninit::new(s));
                }
                start += wp;
            }
        }
    }
}

/// The outputs `o` (of `outs`) along one axis whose input `o·s + k - p` lies inside
/// `0..n`, for kernel offset `k`, stride `s` and padding `p`.
fn inside_axis(n: usize, p: usize, s: usize, outs: usize, k: usize) -> std::ops::Range<usize> {
    let hi = (n + p).saturating_sub(k).div_ceil(s).min(outs);
    let lo = p.saturating_sub(k).div_ceil(s).min(hi);
    lo..hi
}

/// The output columns `ox` whose input column `ox·sw + kj - pw` lies inside `0..w`.
fn inside(geo: &Geometry, kj: usize) -> std::ops::Range<usize> {
    inside_axis(geo.w, geo.pw, geo.sw, geo.wo, kj)
}

/// The adjoint of [`im2col`] for one image, from the untransposed layout the dX GEMM
/// makes: adds image `i`'s entries of `cols` (`(C·kh·kw, nb·L)`, row `(c, ki, kj)`) back
/// into the image `img` they came from.
pub(super) fn col2im<T: Float>(cols: &[T], geo: &Geometry, nb: usize, i: usize, img: &mut [T]) {
    simd::run(Col2Im {
        cols,
        geo,
        nb,
        i,
        img,
    });
}

/// [`col2im`]'s loop, compiled per instruction set (see [`simd::run`]): the short runs it
/// adds (one output row each) then take one or two vector instructions.
struct Col2Im<'a, T> {
    cols: &'a [T],
    geo: &'a Geometry,
    nb: usize,
    i: usize,
    img: &'a mut [T],
}

impl<T: Float> Kernel for Col2Im<'_, T> {
    fn work(&self) -> usize {
        self.img.len()
    }

    #[inline(always)]
    fn run(self) {
        let Self {
            cols,
            geo,
            nb,
            i,
            img,
        } = self;
        let (l, hw, wo) = (geo.positions(), geo.h * geo.w, geo.wo);
        if l == 0 || hw == 0 {
            return;
        }
        let wide = nb * l;
        // The same rows and order as a walk over `cols` row by row: each input element
        // gets its terms in the same order (the result is bit for bit the same).
        for (c, plane) in img.chunks_exact_mut(hw).enumerate().take(geo.c) {
            for ki in 0..geo.kh {
                let rows = inside_axis(geo.h, geo.ph, geo.sh, geo.ho, ki);
                for kj in 0..geo.kw {
                    let span = inside(geo, kj);
                    if span.is_empty() || rows.is_empty() {
                        continue;
                    }
                    let first = span.start * geo.sw + kj - geo.pw;
                    let r = (c * geo.kh + ki) * geo.kw + kj;
                    let src = &cols[r * wide + i * l..r * wide + (i + 1) * l];
                    for oy in rows.clone() {
                        let iy = oy * geo.sh + ki - geo.ph;
                        let s = &src[oy * wo + span.start..oy * wo + span.end];
                        let d = &mut plane[iy * geo.w + first..(iy + 1) * geo.w];
                        if geo.sw == 1 {
                            d.iter_mut().zip(s).for_each(|(d, &s)| *d = *d + s);
                        } else {
                            d.iter_mut()
                                .step_by(geo.sw)
                                .zip(s)
                                .for_each(|(d, &s)| *d = *d + s);
                        }
                    }
                }
            }
        }
    }
}
