//! The per-image loops of the Winograd transforms (see `conv_winograd.rs`), each compiled
//! per instruction set (see `simd::run`): every step is a vector operation over a run of
//! channels of channel-last tiles.

use std::mem::MaybeUninit;

use super::{Geometry, Tiles};
use crate::ndarray::elementwise::simd::Kernel;
use crate::ndarray::Float;

#[inline(always)]
fn set2<T: Float>(dst: &mut [T], a: &[T], b: &[T], f: impl Fn(T, T) -> T) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        *d = f(x, y);
    }
}

#[inline(always)]
fn set3<T: Float>(dst: &mut [T], a: &[T], b: &[T], c: &[T], f: impl Fn(T, T, T) -> T) {
    for (((d, &x), &y), &z) in dst.iter_mut().zip(a).zip(b).zip(c) {
        *d = f(x, y, z);
    }
}

/// [`set2`] into memory not yet initialised.
#[inline(always)]
fn put2<T: Float>(dst: &mut [MaybeUninit<T>], a: &[T], b: &[T], f: impl Fn(T, T) -> T) {
    for ((d, &x), &y) in dst.iter_mut().zip(a).zip(b) {
        d.write(f(x, y));
    }
}

/// `dst = f(a)` elementwise into memory not yet initialised (one source: with the same
/// slice passed twice to [`put2`] the loop was not vectorised).
#[inline(always)]
fn put1<T: Float>(dst: &mut [MaybeUninit<T>], a: &[T], f: impl Fn(T) -> T) {
    for (d, &x) in dst.iter_mut().zip(a) {
        d.write(f(x));
    }
}

/// `dst = -a` elementwise.
#[inline(always)]
fn set_neg<T: Float>(dst: &mut [T], a: &[T]) {
    for (d, &x) in dst.iter_mut().zip(a) {
        *d = -x;
    }
}

#[inline(always)]
fn add_to<T: Float>(dst: &mut [T], a: &[T]) {
    for (d, &x) in dst.iter_mut().zip(a) {
        *d = *d + x;
    }
}

/// One image of [`super::input_transform`], compiled per instruction set (see `simd::run`).
pub(super) struct InputTiles<'a, T> {
    pub(super) x: &'a [T],
    pub(super) geo: &'a Geometry,
    pub(super) tiles: Tiles,
    pub(super) padded: &'a mut [T],
    pub(super) tmp: &'a mut [T],
    pub(super) out: Vec<&'a mut [MaybeUninit<T>]>,
}

impl<T: Float> Kernel for InputTiles<'_, T> {
    fn work(&self) -> usize {
        self.x.len()
    }

    #[inline(always)]
    fn run(self) {
        let Self {
            x,
            geo,
            tiles,
            padded,
            tmp,
            mut out,
        } = self;
        let (c, cols) = (geo.c, tiles.cols);
        // The image padded and channel-last: a tile row is then 4·C contiguous values.
        padded.fill(T::zero());
        for y in 0..geo.h {
            for xx in 0..geo.w {
                let at = ((y + geo.ph) * cols + xx + geo.pw) * c;
                let dst = &mut padded[at..at + c];
                for (ci, d) in dst.iter_mut().enumerate() {
                    *d = x[(ci * geo.h + y) * geo.w + xx];
                }
            }
        }
        let run = 4 * c;
        for ty in 0..tiles.th {
            for tx in 0..tiles.tw {
                let t = ty * tiles.tw + tx;
                let row = |r: usize| {
                    let at = ((2 * ty + r) * cols + 2 * tx) * c;
                    &padded[at..at + run]
                };
                // Bᵀ d: rows d0 - d2, d1 + d2, d2 - d1, d1 - d3 (each 4 columns × C).
                let (t01, t23) = tmp.split_at_mut(2 * run);
                let (t0, t1) = t01.split_at_mut(run);
                let (t2, t3) = t23.split_at_mut(run);
                set2(t0, row(0), row(2), |a, b| a - b);
                set2(t1, row(1), row(2), |a, b| a + b);
                set2(t2, row(2), row(1), |a, b| a - b);
                set2(t3, row(1), row(3), |a, b| a - b);
                // (·) B: the same combination of each row's columns.
                for (q, tq) in tmp.chunks_exact(run).enumerate() {
                    let col = |s: usize| &tq[s * c..(s + 1) * c];
                    let span = t * c..(t + 1) * c;
                    put2(&mut out[q * 4][span.clone()], col(0), col(2), |a, b| a - b);
                    put2(&mut out[q * 4 + 1][span.clone()], col(1), col(2), |a, b| {
                        a + b
                    });
                    put2(&mut out[q * 4 + 2][span.clone()], col(2), col(1), |a, b| {
                        a - b
                    });
                    put2(&mut out[q * 4 + 3][span], col(1), col(3), |a, b| a - b);
                }
            }
        }
    }
}

/// One image of [`super::output_transform`] into `rows` `(H'·W', O)`, compiled per instruction
/// set (see `simd::run`).
pub(super) struct OutputTiles<'a, T> {
    pub(super) m: Vec<&'a [T]>,
    pub(super) geo: &'a Geometry,
    pub(super) tiles: Tiles,
    pub(super) o: usize,
    pub(super) rows: &'a mut [T],
    pub(super) tmp: &'a mut [T],
}

impl<T: Float> Kernel for OutputTiles<'_, T> {
    fn work(&self) -> usize {
        self.rows.len()
    }

    #[inline(always)]
    fn run(self) {
        let Self {
            m,
            geo,
            tiles,
            o,
            rows,
            tmp,
        } = self;
        for ty in 0..tiles.th {
            for tx in 0..tiles.tw {
                let t = ty * tiles.tw + tx;
                let at = |a: usize, b: usize| &m[a * 4 + b][t * o..(t + 1) * o];
                // Aᵀ over a: s0 = m0 + m1 + m2, s1 = m1 - m2 - m3, for each column b.
                for (b, s) in tmp.chunks_exact_mut(2 * o).enumerate() {
                    let (s0, s1) = s.split_at_mut(o);
                    set3(s0, at(0, b), at(1, b), at(2, b), |x, y, z| x + y + z);
                    set3(s1, at(1, b), at(2, b), at(3, b), |x, y, z| x - y - z);
                }
                // (·) A over b, straight into the output rows (cropped at an odd size).
                for i in 0..2 {
                    let y = 2 * ty + i;
                    if y >= geo.ho {
                        break;
                    }
                    let s = |b: usize| &tmp[(2 * b + i) * o..(2 * b + i + 1) * o];
                    let x0 = 2 * tx;
                    let at = (y * geo.wo + x0) * o;
                    set3(&mut rows[at..at + o], s(0), s(1), s(2), |p, q, r| p + q + r);
                    if x0 + 1 < geo.wo {
                        let at = at + o;
                        set3(&mut rows[at..at + o], s(1), s(2), s(3), |p, q, r| p - q - r);
                    }
                }
            }
        }
    }
}

/// One image of [`super::gradient_transform`], compiled per instruction set (see `simd::run`).
pub(super) struct GradientTiles<'a, T> {
    pub(super) rows: &'a [T],
    pub(super) geo: &'a Geometry,
    pub(super) tiles: Tiles,
    pub(super) o: usize,
    pub(super) padded: &'a mut [T],
    pub(super) tmp: &'a mut [T],
    pub(super) out: Vec<&'a mut [MaybeUninit<T>]>,
}

impl<T: Float> Kernel for GradientTiles<'_, T> {
    fn work(&self) -> usize {
        self.padded.len()
    }

    #[inline(always)]
    fn run(self) {
        let Self {
            rows,
            geo,
            tiles,
            o,
            padded,
            tmp,
            mut out,
        } = self;
        let width = 2 * tiles.tw * o;
        // An even output is whole tiles already; an odd one gets a zero row or column.
        let padded: &[T] = if geo.ho % 2 == 0 && geo.wo % 2 == 0 {
            rows
        } else {
            padded.fill(T::zero());
            let dst = padded.chunks_exact_mut(width);
            for (src, dst) in rows.chunks_exact(geo.wo * o).zip(dst) {
                dst[..src.len()].copy_from_slice(src);
            }
            padded
        };
        let run = 2 * o;
        for ty in 0..tiles.th {
            for tx in 0..tiles.tw {
                let t = ty * tiles.tw + tx;
                let dy = |i: usize| {
                    let at = (2 * ty + i) * width + 2 * tx * o;
                    &padded[at..at + run]
                };
                // A over rows: r0 = dy0, r1 = dy0 + dy1, r2 = dy0 - dy1, r3 = -dy1.
                let (r01, r23) = tmp.split_at_mut(2 * run);
                let (r0, r1) = r01.split_at_mut(run);
                let (r2, r3) = r23.split_at_mut(run);
                r0.copy_from_slice(dy(0));
                set2(r1, dy(0), dy(1), |a, b| a + b);
                set2(r2, dy(0), dy(1), |a, b| a - b);
                set_neg(r3, dy(1));
                // (·) Aᵀ over columns, the same combination.
                for (q, rq) in tmp.chunks_exact(run).enumerate() {
                    let (c0, c1) = rq.split_at(o);
                    let span = t * o..(t + 1) * o;
                    put1(&mut out[q * 4][span.clone()], c0, |a| a);
                    put2(&mut out[q * 4 + 1][span.clone()], c0, c1, |a, b| a + b);
                    put2(&mut out[q * 4 + 2][span.clone()], c0, c1, |a, b| a - b);
                    put1(&mut out[q * 4 + 3][span], c1, |b| -b);
                }
            }
        }
    }
}

/// One image of [`super::input_gradient`], compiled per instruction set (see `simd::run`).
pub(super) struct InputGradientTiles<'a, T> {
    pub(super) dv: Vec<&'a [T]>,
    pub(super) geo: &'a Geometry,
    pub(super) tiles: Tiles,
    pub(super) padded: &'a mut [T],
    pub(super) tmp: &'a mut [T],
    pub(super) image: &'a mut [T],
}

impl<T: Float> Kernel for InputGradientTiles<'_, T> {
    fn work(&self) -> usize {
        self.image.len()
    }

    #[inline(always)]
    fn run(self) {
        let Self {
            dv,
            geo,
            tiles,
            padded,
            tmp,
            image,
        } = self;
        let (c, cols) = (geo.c, tiles.cols);
        let run = 4 * c;
        padded.fill(T::zero());
        let (f, e) = tmp.split_at_mut(16 * c);
        let e = &mut e[..run];
        for ty in 0..tiles.th {
            for tx in 0..tiles.tw {
                let t = ty * tiles.tw + tx;
                let at = |a: usize, b: usize| &dv[a * 4 + b][t * c..(t + 1) * c];
                // B over a (the transpose of Bᵀ's rows): f[r][b], row r = 4 columns × C:
                // f0 = v0, f1 = v1 - v2 + v3, f2 = v1 + v2 - v0, f3 = -v3.
                for b in 0..4 {
                    let cell = |r: usize| (r * 4 + b) * c..(r * 4 + b + 1) * c;
                    f[cell(0)].copy_from_slice(at(0, b));
                    set3(&mut f[cell(1)], at(1, b), at(2, b), at(3, b), |x, y, z| {
                        x - y + z
                    });
                    set3(&mut f[cell(2)], at(1, b), at(2, b), at(0, b), |x, y, z| {
                        x + y - z
                    });
                    set_neg(&mut f[cell(3)], at(3, b));
                }
                // (·) Bᵀ over b, the same combination, each row added into the padded image.
                for r in 0..4 {
                    let fr = &f[r * run..(r + 1) * run];
                    let col = |s: usize| &fr[s * c..(s + 1) * c];
                    let (e01, e23) = e.split_at_mut(2 * c);
                    let (e0, e1) = e01.split_at_mut(c);
                    let (e2, e3) = e23.split_at_mut(c);
                    e0.copy_from_slice(col(0));
                    set3(e1, col(1), col(2), col(3), |x, y, z| x - y + z);
                    set3(e2, col(1), col(2), col(0), |x, y, z| x + y - z);
                    set_neg(e3, col(3));
                    let at = ((2 * ty + r) * cols + 2 * tx) * c;
                    add_to(&mut padded[at..at + run], e);
                }
            }
        }
        // Crop the padding and go back to channels first.
        let hw = geo.h * geo.w;
        for y in 0..geo.h {
            for xx in 0..geo.w {
                let at = ((y + geo.ph) * cols + xx + geo.pw) * c;
                let src = &padded[at..at + c];
                for (ci, &s) in src.iter().enumerate() {
                    image[ci * hw + y * geo.w + xx] = s;
                }
            }
        }
    }
}
