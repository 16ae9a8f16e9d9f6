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
//! so that every step is a vector operation over the channels. On several threads the
//! images are split into groups, each running all of these steps for its tiles on one
//! thread (see [`GROUP_ROWS`]).

use super::kernels::to_image;
use super::{parallel, Geometry};
use crate::ndarray::elementwise::simd;
use std::mem::MaybeUninit;

use crate::ndarray::{matmul_flat, try_filled, try_with_capacity, Float, NdArray};
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
// per-group work

/// Rows of tiles (images × tiles per image) in one group: each group of consecutive images
/// runs its transforms and its 16 GEMMs together, on one thread, so what it writes (the
/// tiles `V`, the products `M`, the gradient's tiles `Z`) is read back from that core's
/// cache, never from the other core's: with the two cores on different core complexes,
/// reading the other's lines stalled the batch-wide GEMMs (digits CNN conv2, fwd+bwd at
/// 2 threads: 1.9 ms, 1.65 ms at 1 thread). 128 rows keep a group's working set within
/// L2 and its GEMMs large enough to run at full speed.
const GROUP_ROWS: usize = 128;

/// Consecutive images per group (see [`GROUP_ROWS`]) for `work` elements of work: all of
/// them in one group when the work stays on this thread (the GEMMs then run at full size).
fn images_per_group(geo: &Geometry, tiles: Tiles, work: usize) -> usize {
    if parallel(work, geo.n) {
        GROUP_ROWS.div_ceil(tiles.per_image).clamp(1, geo.n)
    } else {
        geo.n.max(1)
    }
}

/// The groups' parts of 16 planes of `n · per` elements each (image-major, `per` elements
/// per image): for each group of `group` images, its piece of every plane.
fn group_planes<T>(planes: &mut [T], n: usize, per: usize, group: usize) -> Vec<Vec<&mut [T]>> {
    let mut groups: Vec<Vec<&mut [T]>> = (0..n.div_ceil(group))
        .map(|_| Vec::with_capacity(XI))
        .collect();
    for plane in planes.chunks_exact_mut(n * per) {
        for (pieces, piece) in groups.iter_mut().zip(plane.chunks_mut(group * per)) {
            pieces.push(piece);
        }
    }
    groups
}

/// `f` over the groups, serially or on the threads by the amount of work; the first error
/// wins.
fn run_groups<I: Send, R: Send>(
    items: Vec<I>,
    work: usize,
    f: impl Fn(I) -> Result<R> + Sync,
) -> Result<Vec<R>> {
    let results = if parallel(work, items.len()) {
        crate::parallel::map_items(items, f)
    } else {
        items.into_iter().map(f).collect()
    };
    results.into_iter().collect()
}

/// Plane `xi` of a `(16, …)` operand whose planes hold `len` elements each.
fn plane<T>(planes: &[T], xi: usize, len: usize) -> &[T] {
    &planes[xi * len..(xi + 1) * len]
}

/// Pieces written whole, read as initialised values.
fn written<'a, T>(pieces: &'a [&mut [MaybeUninit<T>]]) -> Vec<&'a [T]> {
    pieces
        .iter()
        // SAFETY: the callers pass pieces their kernels have just written entirely, and
        // `MaybeUninit<T>` has `T`'s layout.
        .map(|p| unsafe { &*(&**p as *const [MaybeUninit<T>] as *const [T]) })
        .collect()
}

/// Image `j`'s parts (`per` elements each) of a group's pieces of the 16 planes.
fn image_pieces<'a, T>(pieces: &'a mut [&mut [T]], j: usize, per: usize) -> Vec<&'a mut [T]> {
    pieces
        .iter_mut()
        .map(|p| &mut p[j * per..(j + 1) * per])
        .collect()
}

/// `V = Bᵀ d B` of the images `first..` into their `pieces` of the 16 planes (`tiles · C`
/// elements per image in each).
fn transform_images<T: Float>(
    x: &[T],
    geo: &Geometry,
    tiles: Tiles,
    first: usize,
    pieces: &mut [&mut [MaybeUninit<T>]],
) {
    let c = geo.c;
    let (img, per) = (c * geo.h * geo.w, tiles.per_image * c);
    let count = pieces.first().map_or(0, |p| p.len() / per);
    let mut padded = vec![T::zero(); tiles.rows * tiles.cols * c];
    let mut tmp = vec![T::zero(); 16 * c];
    for j in 0..count {
        let i = first + j;
        simd::run(InputTiles {
            x: &x[i * img..(i + 1) * img],
            geo,
            tiles,
            padded: &mut padded,
            tmp: &mut tmp,
            out: image_pieces(pieces, j, per),
        })
    }
}

/// `V = Bᵀ d B` for every tile and channel of `x` `(N, C, H, W)`, as `(16, N·tiles, C)`.
fn input_transform<T: Float>(x: &[T], geo: &Geometry) -> Result<NdArray<T>> {
    let (tiles, c) = (Tiles::new(geo), geo.c);
    let total = tiles.per_image * geo.n;
    let len = checked_size(&[XI, total, c])?;
    let mut v = try_with_capacity(len)?;
    let group = images_per_group(geo, tiles, len);
    let per = tiles.per_image * c;
    let items: Vec<_> = group_planes(&mut v.spare_capacity_mut()[..len], geo.n, per, group)
        .into_iter()
        .enumerate()
        .collect();
    run_groups(items, len, |(g, mut pieces)| {
        transform_images(x, geo, tiles, g * group, &mut pieces);
        Ok(())
    })?;
    // SAFETY: each group's kernels wrote all 16 of its pieces (every channel of every tile
    // of its images), and the groups' pieces tile the `len` elements.
    unsafe { v.set_len(len) };
    NdArray::from_vec(v, &[XI, total, c])
}

// ---------------------------------------------------------------------------------------
// the convolution

/// The forward of a 3×3 stride-1 convolution of `x` `(N, C, H, W)` with `w` `(O, C, 3, 3)`
/// plus `bias`: the output `(N, O, H', W')` and, with `keep`, the input's transformed
/// tiles `V` for the weight's gradient. Per group of images: `V`, then
/// `M[ξ] = V[ξ] @ U[ξ]` (16 GEMMs), then `Y = Aᵀ M A` plus the bias.
pub(super) fn forward<T: Float>(
    x: &[T],
    w: &[T],
    bias: Option<&[T]>,
    geo: &Geometry,
    o: usize,
    keep: bool,
) -> Result<(Vec<T>, Option<NdArray<T>>)> {
    let (tiles, c, l) = (Tiles::new(geo), geo.c, geo.positions());
    let u = weight_transform(w, c, o)?;
    let total = tiles.per_image * geo.n;
    let len = checked_size(&[XI, total, c])?;
    let mut v = try_with_capacity(len)?;
    let mut out = try_filled(checked_size(&[geo.n, o, l])?, T::zero())?;
    let work = XI * total * c.max(o);
    let group = images_per_group(geo, tiles, work);
    let per = tiles.per_image * c;
    let items: Vec<_> = group_planes(&mut v.spare_capacity_mut()[..len], geo.n, per, group)
        .into_iter()
        .zip(out.chunks_mut(group * o * l))
        .enumerate()
        .collect();
    run_groups(items, work, |(g, (mut pieces, images))| {
        transform_images(x, geo, tiles, g * group, &mut pieces);
        let rows = pieces[0].len() / c;
        let m = written(&pieces)
            .iter()
            .enumerate()
            .map(|(xi, v)| {
                let u = plane(u.data(), xi, c * o);
                matmul_flat(v, [rows, c], false, u, [c, o], false, None)
            })
            .collect::<Result<Vec<_>>>()?;
        let per_out = tiles.per_image * o;
        let mut channel_last = vec![T::zero(); l * o];
        let mut tmp = vec![T::zero(); 8 * o];
        for (j, image) in images.chunks_exact_mut(o * l).enumerate() {
            simd::run(OutputTiles {
                m: m.iter()
                    .map(|m| &m.data()[j * per_out..(j + 1) * per_out])
                    .collect(),
                geo,
                tiles,
                o,
                rows: &mut channel_last,
                tmp: &mut tmp,
            });
            to_image(&channel_last, bias, l, o, image);
        }
        Ok(())
    })?;
    // SAFETY: each group's kernels wrote all 16 of its pieces, and the groups' pieces tile
    // the `len` elements.
    unsafe { v.set_len(len) };
    let v = NdArray::from_vec(v, &[XI, total, c])?;
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

/// `Z = A dY Aᵀ` of the output gradient `g` `(N, O, H', W')` for the `count` images from
/// `first`, as `(16, count·tiles, O)` (the positions past an odd output size count as 0).
fn gradient_transform<T: Float>(
    g: &[T],
    geo: &Geometry,
    o: usize,
    first: usize,
    count: usize,
) -> Result<Vec<T>> {
    let (tiles, l) = (Tiles::new(geo), geo.positions());
    let (per, len) = (tiles.per_image * o, XI * count * tiles.per_image * o);
    let mut z = try_with_capacity(len)?;
    let mut pieces: Vec<&mut [MaybeUninit<T>]> = z.spare_capacity_mut()[..len]
        .chunks_mut(count * per)
        .collect();
    let mut padded = vec![T::zero(); 4 * tiles.per_image * o];
    let mut channel_last = vec![T::zero(); l * o];
    let mut tmp = vec![T::zero(); 8 * o];
    for j in 0..count {
        let i = first + j;
        // Channel-last, (H', W', O), then zero-extended to whole tiles.
        to_image(
            &g[i * o * l..(i + 1) * o * l],
            None,
            o,
            l,
            &mut channel_last,
        );
        simd::run(GradientTiles {
            rows: &channel_last,
            geo,
            tiles,
            o,
            padded: &mut padded,
            tmp: &mut tmp,
            out: image_pieces(&mut pieces, j, per),
        });
    }
    // SAFETY: each image's kernel wrote its pieces of all 16 planes, which tile them.
    unsafe { z.set_len(len) };
    Ok(z)
}

/// dX (when `w` is given) and dW (when the input's tiles `v` are) of a convolution from
/// its output gradient `g` `(N, O, H', W')`. Per group of images: `Z = A dY Aᵀ`, then
/// the group's part of `dU[ξ] = V[ξ]ᵀ Z[ξ]` (summed over the groups after) and
/// `dV[ξ] = Z[ξ] U[ξ]ᵀ`, and `dX = B dV Bᵀ` with overlapping tiles added.
pub(super) fn backward<T: Float>(
    g: &[T],
    v: Option<&NdArray<T>>,
    w: Option<&[T]>,
    geo: &Geometry,
    o: usize,
) -> Result<Gradients<T>> {
    let (tiles, c) = (Tiles::new(geo), geo.c);
    let total = tiles.per_image * geo.n;
    let u = w.map(|w| weight_transform(w, c, o)).transpose()?;
    let img = c * geo.h * geo.w;
    let mut dx = match u {
        Some(_) => Some(try_filled(checked_size(&[geo.n, img])?, T::zero())?),
        None => None,
    };
    let work = XI * total * c.max(o);
    let group = images_per_group(geo, tiles, work);
    let dx_parts: Vec<Option<&mut [T]>> = match dx.as_mut() {
        Some(dx) => dx.chunks_mut(group * img).map(Some).collect(),
        None => (0..geo.n.div_ceil(group)).map(|_| None).collect(),
    };
    let items: Vec<_> = dx_parts.into_iter().enumerate().collect();
    let per_in = tiles.per_image * c;
    let partials = run_groups(items, work, |(gi, dx_part)| {
        let first = gi * group;
        let count = group.min(geo.n - first);
        let rows = count * tiles.per_image;
        let z = gradient_transform(g, geo, o, first, count)?;
        // (rows, C)ᵀ @ (rows, O) per plane: this group's share of the sum over tiles.
        let du = match v {
            Some(v) => {
                let mut du = Vec::with_capacity(XI * c * o);
                for xi in 0..XI {
                    let vg = &plane(v.data(), xi, total * c)[first * per_in..][..rows * c];
                    let zg = plane(&z, xi, rows * o);
                    let part = matmul_flat(vg, [rows, c], true, zg, [rows, o], false, None)?;
                    du.extend_from_slice(part.data());
                }
                Some(du)
            }
            None => None,
        };
        if let (Some(u), Some(dx_part)) = (&u, dx_part) {
            // (rows, O) @ (C, O)ᵀ per plane, then each image's tiles back into dX.
            let dv = (0..XI)
                .map(|xi| {
                    let (zg, u) = (plane(&z, xi, rows * o), plane(u.data(), xi, c * o));
                    matmul_flat(zg, [rows, o], false, u, [c, o], true, None)
                })
                .collect::<Result<Vec<_>>>()?;
            let mut padded = vec![T::zero(); tiles.rows * tiles.cols * c];
            let mut tmp = vec![T::zero(); 20 * c];
            for (j, image) in dx_part.chunks_exact_mut(img).enumerate() {
                simd::run(InputGradientTiles {
                    dv: dv
                        .iter()
                        .map(|d| &d.data()[j * per_in..(j + 1) * per_in])
                        .collect(),
                    geo,
                    tiles,
                    padded: &mut padded,
                    tmp: &mut tmp,
                    image,
                });
            }
        }
        Ok(du)
    })?;
    let dw = match v {
        Some(_) => {
            let mut sum = vec![T::zero(); XI * c * o];
            for part in partials.into_iter().flatten() {
                sum.iter_mut().zip(part).for_each(|(s, p)| *s = *s + p);
            }
            Some(weight_gradient(NdArray::from_vec(sum, &[XI, c, o])?, c, o)?)
        }
        None => None,
    };
    Ok(Gradients { dx, dw })
}
