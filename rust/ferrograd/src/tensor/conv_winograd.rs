//! Winograd F(2×2, 3×3) for 3×3 stride-1 convolutions (Lavin & Gray, 2015): the forward,
//! dX and dW each as 16 batched GEMMs of `(tiles, C) × (C, O)`, 2.25× fewer multiplies than
//! im2col, and no im2col/col2im (dX and dW are the exact adjoints of the forward's linear
//! maps, so the gradients are those of the convolution up to rounding).
//!
//! Each output tile of 2×2 comes from a 4×4 input tile (stride 2) of the padded input:
//! `Y = Aᵀ [(G g Gᵀ) ⊙ (Bᵀ d B)] A`. The 16 positions `ξ = (a, b)` of the transformed
//! tiles are 16 independent matrix products over the channels:
//! `M[ξ] (T × O) = V[ξ] (T × C) @ U[ξ] (C × O)` with `V = Bᵀ d B` per tile and channel and
//! `U = G g Gᵀ` per filter. The backward transforms the output gradient once,
//! `Z = A dY Aᵀ`, then `dU[ξ] = V[ξ]ᵀ Z[ξ]` (dW = `Gᵀ dU G`) and `dV[ξ] = Z[ξ] U[ξ]ᵀ`
//! (dX = `B dV Bᵀ`, overlapping tiles added). The transforms work on channel-last tiles
//! so that every step is a vector operation over the channels.

use super::kernels::to_image;
use super::{parallel, Geometry};
use crate::ndarray::elementwise::simd::{self, Kernel};
use std::mem::MaybeUninit;

use crate::ndarray::{try_filled, try_with_capacity, Float, NdArray};
use crate::shape::checked_size;
use crate::Result;

/// Positions of a transformed 4×4 tile.
const XI: usize = 16;

/// From this many input channels the transforms pay for themselves: with one channel
/// (the first layer of an image CNN) the GEMMs have K = 1 and im2col's single GEMM is
/// cheaper than the tiles' bookkeeping.
const MIN_CHANNELS: usize = 8;

/// At most this many elements in one transformed operand (`16 · tiles · channels`, 64 MiB
/// of float32); larger convolutions take the im2col path, which works in bounded chunks.
const MAX_TILE_ELEMENTS: usize = 1 << 24;

/// Whether a convolution of this geometry with `o` output channels runs on Winograd tiles.
pub(super) fn applies(geo: &Geometry, o: usize) -> bool {
    let square3 = geo.kh == 3 && geo.kw == 3 && geo.sh == 1 && geo.sw == 1;
    if !square3 || geo.c < MIN_CHANNELS || o == 0 || geo.n == 0 || geo.positions() == 0 {
        return false;
    }
    let tiles = Tiles::new(geo);
    let elements = [geo.c, o]
        .iter()
        .map(|&k| checked_size(&[XI, geo.n, tiles.per_image, k]).unwrap_or(usize::MAX))
        .max()
        .unwrap_or(usize::MAX);
    elements <= MAX_TILE_ELEMENTS
}

/// The tiling of one image: `th × tw` output tiles of 2×2; the padded, channel-last input
/// they read is `rows × cols` (input padding plus zeros past an odd output size).
#[derive(Clone, Copy)]
struct Tiles {
    th: usize,
    tw: usize,
    per_image: usize,
    rows: usize,
    cols: usize,
}

impl Tiles {
    fn new(geo: &Geometry) -> Self {
        let (th, tw) = (geo.ho.div_ceil(2), geo.wo.div_ceil(2));
        Self {
            th,
            tw,
            per_image: th * tw,
            rows: 2 * th + 2,
            cols: 2 * tw + 2,
        }
    }
}

// ---------------------------------------------------------------------------------------
// vector helpers: every transform step is one of these over a run of channels

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

// ---------------------------------------------------------------------------------------
// the filter transforms: linear in the filter, so each is one small GEMM over all filters

/// `G ⊗ G` `(16, 9)`: row `(a, b)`, column `(ki, kj)` holds `G[a][ki] · G[b][kj]`, so that
/// `U = G g Gᵀ` of a filter `g` (9 values) is this matrix times `g`. Its entries are
/// products of 0, ±½ and 1: exact in any float type.
fn filter_matrix<T: Float>() -> Result<NdArray<T>> {
    const G: [[f64; 3]; 4] = [
        [1.0, 0.0, 0.0],
        [0.5, 0.5, 0.5],
        [0.5, -0.5, 0.5],
        [0.0, 0.0, 1.0],
    ];
    let mut m = Vec::with_capacity(XI * 9);
    for a in G {
        for b in G {
            for ga in a {
                m.extend(b.map(|gb| T::from_f64_lossy(ga * gb)));
            }
        }
    }
    NdArray::from_vec(m, &[XI, 9])
}

/// `U = G g Gᵀ` for every filter `g` of `w` `(O, C, 3, 3)`, as `(16, C, O)`: that layout
/// makes the three GEMMs that read it ~5% faster in all than `(16, O, C)`.
fn weight_transform<T: Float>(w: &[T], c: usize, o: usize) -> Result<NdArray<T>> {
    // The filters in (C, O) order, then (16, 9) @ (C·O, 9)ᵀ -> (16, C·O).
    let mut filters = Vec::with_capacity(w.len());
    for ci in 0..c {
        for oi in 0..o {
            filters.extend_from_slice(&w[(oi * c + ci) * 9..(oi * c + ci + 1) * 9]);
        }
    }
    let filters = NdArray::from_vec(filters, &[c * o, 9])?;
    let u = filter_matrix()?.matmul_t(&filters, false, true)?;
    NdArray::from_vec(u.into_vec(), &[XI, c, o])
}

/// The adjoint of [`weight_transform`]: `dW = Gᵀ dU G` from `dU` `(16, C, O)`, as
/// `(O, C, 3, 3)` (flat).
fn weight_gradient<T: Float>(du: NdArray<T>, c: usize, o: usize) -> Result<Vec<T>> {
    // (16, C·O)ᵀ @ (16, 9) -> (C·O, 9), then back to (O, C) order.
    let du = NdArray::from_vec(du.into_vec(), &[XI, c * o])?;
    let dw = du.matmul_t(&filter_matrix()?, true, false)?;
    let mut out = Vec::with_capacity(dw.data().len());
    for oi in 0..o {
        for ci in 0..c {
            out.extend_from_slice(&dw.data()[(ci * o + oi) * 9..(ci * o + oi + 1) * 9]);
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------------------------------
// per-image work

/// Runs `f(state, image, pieces)` for every image, on the threads when the work is large
/// enough; `pieces` are image `i`'s parts of each of the 16 planes of `planes` (planes of
/// `n · per` elements, image-major).
fn per_image_planes<'a, T: Send, S>(
    planes: &'a mut [T],
    n: usize,
    per: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, usize, Vec<&'a mut [T]>) + Sync,
) {
    let mut items: Vec<(usize, Vec<&'a mut [T]>)> =
        (0..n).map(|i| (i, Vec::with_capacity(XI))).collect();
    for plane in planes.chunks_exact_mut(n * per) {
        for (item, piece) in items.iter_mut().zip(plane.chunks_exact_mut(per)) {
            item.1.push(piece);
        }
    }
    run_items(items, XI * n * per, init, |s, (i, p)| f(s, i, p));
}

/// `f` over `items` (one per image), serially or on the threads by the amount of work.
fn run_items<I: Send, S>(
    items: Vec<I>,
    work: usize,
    init: impl Fn() -> S + Sync,
    f: impl Fn(&mut S, I) + Sync,
) {
    if parallel(work, items.len()) {
        crate::parallel::for_each_item_init(items, init, f);
    } else {
        let mut state = init();
        items.into_iter().for_each(|item| f(&mut state, item));
    }
}

/// `V = Bᵀ d B` for every tile and channel of `x` `(N, C, H, W)`, as `(16, N·tiles, C)`.
fn input_transform<T: Float>(x: &[T], geo: &Geometry) -> Result<NdArray<T>> {
    let (tiles, c) = (Tiles::new(geo), geo.c);
    let total = tiles.per_image * geo.n;
    let len = checked_size(&[XI, total, c])?;
    let mut v = try_with_capacity(len)?;
    let img = c * geo.h * geo.w;
    let scratch = || {
        (
            vec![T::zero(); tiles.rows * tiles.cols * c],
            vec![T::zero(); 16 * c],
        )
    };
    per_image_planes(
        &mut v.spare_capacity_mut()[..len],
        geo.n,
        tiles.per_image * c,
        scratch,
        |(padded, tmp), i, out| {
            simd::run(InputTiles {
                x: &x[i * img..(i + 1) * img],
                geo,
                tiles,
                padded,
                tmp,
                out,
            })
        },
    );
    // SAFETY: each image's kernel wrote all 16 of its pieces (every channel of every tile),
    // and the images' pieces tile the `len` elements.
    unsafe { v.set_len(len) };
    NdArray::from_vec(v, &[XI, total, c])
}

/// One image of [`input_transform`], compiled per instruction set (see [`simd::run`]).
struct InputTiles<'a, T> {
    x: &'a [T],
    geo: &'a Geometry,
    tiles: Tiles,
    padded: &'a mut [T],
    tmp: &'a mut [T],
    out: Vec<&'a mut [MaybeUninit<T>]>,
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

/// `Y = Aᵀ M A` for every tile of `m` `(16, N·tiles, O)`, plus the bias: the output
/// `(N, O, H', W')`.
fn output_transform<T: Float>(
    m: &[T],
    bias: Option<&[T]>,
    geo: &Geometry,
    o: usize,
) -> Result<Vec<T>> {
    let tiles = Tiles::new(geo);
    let l = geo.positions();
    let mut out = try_filled(checked_size(&[geo.n, o, l])?, T::zero())?;
    let plane = geo.n * tiles.per_image * o;
    let items: Vec<_> = out.chunks_exact_mut(o * l).enumerate().collect();
    let scratch = || (vec![T::zero(); l * o], vec![T::zero(); 8 * o]);
    run_items(items, plane * XI, scratch, |(rows, tmp), (i, image)| {
        let first = i * tiles.per_image * o;
        let m: Vec<&[T]> = m
            .chunks_exact(plane)
            .map(|p| &p[first..first + tiles.per_image * o])
            .collect();
        simd::run(OutputTiles {
            m,
            geo,
            tiles,
            o,
            rows,
            tmp,
        });
        to_image(rows, bias, l, o, image);
    });
    Ok(out)
}

/// One image of [`output_transform`] into `rows` `(H'·W', O)`, compiled per instruction
/// set (see [`simd::run`]).
struct OutputTiles<'a, T> {
    m: Vec<&'a [T]>,
    geo: &'a Geometry,
    tiles: Tiles,
    o: usize,
    rows: &'a mut [T],
    tmp: &'a mut [T],
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

/// `Z = A dY Aᵀ` for every tile of the output gradient `g` `(N, O, H', W')`, as
/// `(16, N·tiles, O)` (the positions past an odd output size count as 0).
fn gradient_transform<T: Float>(g: &[T], geo: &Geometry, o: usize) -> Result<NdArray<T>> {
    let tiles = Tiles::new(geo);
    let total = tiles.per_image * geo.n;
    let len = checked_size(&[XI, total, o])?;
    let mut z = try_with_capacity(len)?;
    let l = geo.positions();
    let scratch = || {
        (
            vec![T::zero(); 4 * tiles.per_image * o],
            vec![T::zero(); l * o],
            vec![T::zero(); 8 * o],
        )
    };
    per_image_planes(
        &mut z.spare_capacity_mut()[..len],
        geo.n,
        tiles.per_image * o,
        scratch,
        |(padded, rows, tmp), i, out| {
            // Channel-last, (H', W', O), then zero-extended to whole tiles.
            to_image(&g[i * o * l..(i + 1) * o * l], None, o, l, rows);
            simd::run(GradientTiles {
                rows,
                geo,
                tiles,
                o,
                padded,
                tmp,
                out,
            })
        },
    );
    // SAFETY: each image's kernel wrote all 16 of its pieces (every channel of every tile),
    // and the images' pieces tile the `len` elements.
    unsafe { z.set_len(len) };
    NdArray::from_vec(z, &[XI, total, o])
}

/// One image of [`gradient_transform`], compiled per instruction set (see [`simd::run`]).
struct GradientTiles<'a, T> {
    rows: &'a [T],
    geo: &'a Geometry,
    tiles: Tiles,
    o: usize,
    padded: &'a mut [T],
    tmp: &'a mut [T],
    out: Vec<&'a mut [MaybeUninit<T>]>,
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

/// The adjoint of [`input_transform`]: `dX = B dV Bᵀ` for every tile of `dv`
/// `(16, N·tiles, C)`, overlapping tiles added, cropped to the input `(N, C, H, W)`.
fn input_gradient<T: Float>(dv: &[T], geo: &Geometry) -> Result<Vec<T>> {
    let (tiles, c) = (Tiles::new(geo), geo.c);
    let img = c * geo.h * geo.w;
    let mut dx = try_filled(checked_size(&[geo.n, img])?, T::zero())?;
    let plane = geo.n * tiles.per_image * c;
    let items: Vec<_> = dx.chunks_exact_mut(img).enumerate().collect();
    let scratch = || {
        (
            vec![T::zero(); tiles.rows * tiles.cols * c],
            vec![T::zero(); 20 * c],
        )
    };
    run_items(items, plane * XI, scratch, |(padded, tmp), (i, image)| {
        let first = i * tiles.per_image * c;
        let dv: Vec<&[T]> = dv
            .chunks_exact(plane)
            .map(|p| &p[first..first + tiles.per_image * c])
            .collect();
        simd::run(InputGradientTiles {
            dv,
            geo,
            tiles,
            padded,
            tmp,
            image,
        });
    });
    Ok(dx)
}

/// One image of [`input_gradient`], compiled per instruction set (see [`simd::run`]).
struct InputGradientTiles<'a, T> {
    dv: Vec<&'a [T]>,
    geo: &'a Geometry,
    tiles: Tiles,
    padded: &'a mut [T],
    tmp: &'a mut [T],
    image: &'a mut [T],
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

// ---------------------------------------------------------------------------------------
// the convolution

/// The forward of a 3×3 stride-1 convolution of `x` `(N, C, H, W)` with `w` `(O, C, 3, 3)`
/// plus `bias`: the output `(N, O, H', W')` and, with `keep`, the input's transformed
/// tiles `V` for the weight's gradient.
pub(super) fn forward<T: Float>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    geo: &Geometry,
    o: usize,
    keep: bool,
) -> Result<(Vec<T>, Option<NdArray<T>>)> {
    let u = weight_transform(w, geo.c, o)?;
    let v = input_transform(x, geo)?;
    let m = v.matmul(&u)?; // (16, T, C) @ (16, C, O)
    let out = output_transform(m.data(), bias, geo, o)?;
    Ok((out, keep.then_some(v)))
}

/// The input's transformed tiles, for [`backward`] when the forward kept none.
pub(super) fn tiles_of<T: Float>(x: &[T], geo: &Geometry) -> Result<NdArray<T>> {
    input_transform(x, geo)
}

/// What [`backward`] computed: dX `(N, C, H, W)` and dW `(O, C, 3, 3)`, flat.
pub(super) struct Gradients<T> {
    pub(super) dx: Option<Vec<T>>,
    pub(super) dw: Option<Vec<T>>,
}

/// dX (when `w` is given) and dW (when the input's tiles `v` are) of a convolution from
/// its output gradient `g` `(N, O, H', W')`.
pub(super) fn backward<T: Float>(
    g: &[T],
    v: Option<&NdArray<T>>,
    w: Option<&[T]>,
    geo: &Geometry,
    o: usize,
) -> Result<Gradients<T>> {
    let z = gradient_transform(g, geo, o)?;
    let dw = match v {
        // (16, T, C)ᵀ @ (16, T, O) -> (16, C, O): the sum over tiles and images.
        Some(v) => Some(weight_gradient(v.matmul_t(&z, true, false)?, geo.c, o)?),
        None => None,
    };
    let dx = match w {
        Some(w) => {
            let u = weight_transform(w, geo.c, o)?;
            // (16, T, O) @ (16, C, O)ᵀ -> (16, T, C).
            Some(input_gradient(z.matmul_t(&u, false, true)?.data(), geo)?)
        }
        None => None,
    };
    Ok(Gradients { dx, dw })
}
