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
use crate::ndarray::elementwise::simd;
use crate::ndarray::{try_filled, try_with_capacity, Float, NdArray};
use crate::shape::checked_size;
use crate::Result;

#[path = "conv_winograd_tiles.rs"]
mod tiles;
use tiles::{GradientTiles, InputGradientTiles, InputTiles, OutputTiles};

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

/// A convolution's dX `(N, C, H, W)` and dW `(O, C, KH, KW)`, flat (from [`backward`] here, or
/// from the im2col path in `ops_conv`).
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
