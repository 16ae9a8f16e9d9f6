//! 2-D convolution on NCHW `Tensor`s (im2col + one GEMM per batch) with its backward (two
//! GEMMs and a col2im scatter-add), and the sliding-window geometry max pooling shares.
//! 3×3 stride-1 convolutions with 8 or more input channels run on Winograd tiles instead
//! (`conv_winograd.rs`: 2.25× fewer multiplies, no im2col/col2im).

use std::borrow::Cow;
use std::mem::MaybeUninit;

use super::ops_nn::{changed, typed, with_arrays};
use super::record::{self, kv};
use super::{is_grad_enabled, Tensor};
use crate::dynarray::{DType, DynArray, Element};
use crate::ndarray::{try_filled, try_with_capacity, Float, NdArray};
use crate::parallel::num_threads;
use crate::shape::{checked_size, fmt_shape};
use crate::{shape_err, value_err, Result};

/// At most this many im2col elements exist at once: a larger batch runs in chunks of images
/// (16 MiB of float32), bounding the memory a convolution needs on top of its input.
const COLS_CHUNK: usize = 1 << 22;

/// The sizes of a sliding-window op over an `(N, C, H, W)` input.
#[derive(Clone, Copy, Debug)]
pub(super) struct Geometry {
    pub(super) n: usize,
    pub(super) c: usize,
    pub(super) h: usize,
    pub(super) w: usize,
    pub(super) kh: usize,
    pub(super) kw: usize,
    pub(super) sh: usize,
    pub(super) sw: usize,
    pub(super) ph: usize,
    pub(super) pw: usize,
    pub(super) ho: usize,
    pub(super) wo: usize,
}

impl Geometry {
    pub(super) fn new(
        op: &str,
        x: &[usize],
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Self> {
        let [n, c, h, w] = *x else {
            return Err(shape_err!(
                "{op}: expected input of shape (N, C, H, W), got {}",
                fmt_shape(x)
            ));
        };
        if kernel.0 == 0 || kernel.1 == 0 {
            return Err(value_err!(
                "{op}: kernel size must be positive, got {kernel:?}"
            ));
        }
        if stride.0 == 0 || stride.1 == 0 {
            return Err(value_err!("{op}: stride must be positive, got {stride:?}"));
        }
        let padded = |d: usize, p: usize| {
            p.checked_mul(2)
                .and_then(|p2| d.checked_add(p2))
                .ok_or_else(|| value_err!("{op}: padding {padding:?} is too large"))
        };
        let (hp, wp) = (padded(h, padding.0)?, padded(w, padding.1)?);
        if hp < kernel.0 || wp < kernel.1 {
            return Err(shape_err!(
                "{op}: kernel {kernel:?} is larger than the padded input ({hp}, {wp}) \
                 (input of shape {} with padding {padding:?})",
                fmt_shape(x)
            ));
        }
        Ok(Self {
            n,
            c,
            h,
            w,
            kh: kernel.0,
            kw: kernel.1,
            sh: stride.0,
            sw: stride.1,
            ph: padding.0,
            pw: padding.1,
            ho: (hp - kernel.0) / stride.0 + 1,
            wo: (wp - kernel.1) / stride.1 + 1,
        })
    }

    /// Elements of one input image.
    fn image(&self) -> usize {
        self.c * self.h * self.w
    }

    /// Rows of the im2col matrix: `C · kh · kw`.
    fn patch(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Output positions per image: `H' · W'`.
    pub(super) fn positions(&self) -> usize {
        self.ho * self.wo
    }

    /// How many images' columns are built at once.
    fn images_per_chunk(&self) -> usize {
        (COLS_CHUNK / (self.patch() * self.positions()).max(1)).max(1)
    }

    /// The image ranges `(start, count)` processed together.
    fn chunks(&self) -> impl Iterator<Item = (usize, usize)> {
        let (n, per) = (self.n, self.images_per_chunk());
        (0..n).step_by(per).map(move |s| (s, per.min(n - s)))
    }
}

#[path = "conv_kernels.rs"]
mod kernels;
use kernels::{col2im, im2col, pad, to_image};
#[path = "conv_winograd.rs"]
mod winograd;

/// From this many elements (or window reads, for pooling), the per-image loops of convolution
/// and pooling (im2col, col2im, the output's layout) are split over the threads: they gather
/// and scatter, costlier per element than an addition, and a digits-CNN step at 2 threads
/// ran ~10% faster with this than with the elementwise threshold (64K).
const CONV_PARALLEL_WORK: usize = 1 << 14;

pub(super) fn parallel(work: usize, tasks: usize) -> bool {
    tasks > 1 && work >= CONV_PARALLEL_WORK && num_threads() > 1
}

impl Tensor {
    /// 2-D convolution (cross-correlation, as PyTorch) of `self` `(N, C, H, W)` with `weight`
    /// `(O, C, kh, kw)` plus `bias` `(O,)`, zero padding; the result is `(N, O, H', W')`.
    pub fn conv2d(
        &self,
        weight: &Tensor,
        bias: Option<&Tensor>,
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        let mut parents = vec![self, weight];
        parents.extend(bias);
        // dW needs the input's columns again: keep the forward's when they are one chunk.
        let keep_cols = is_grad_enabled() && weight.requires_grad();
        let (out, geo, dtypes, cols) = with_arrays(&parents, |a| {
            let dtypes = [a[0].dtype(), a[1].dtype()];
            conv_forward(a[0], a[1], a.get(2).copied(), stride, padding, keep_cols)
                .map(|(out, geo, cols)| (out, geo, dtypes, cols))
        })?;
        let o = out.shape().get(1).copied().unwrap_or(0);
        let saved = Saved {
            geo,
            o,
            dtypes,
            cols,
        };
        let attrs = record::attrs(|| vec![kv("stride", stride), kv("padding", padding)]);
        Ok(Tensor::from_op(out, "conv2d", &parents, move |g, ctx| {
            let need = [ctx.needs_grad(0), ctx.needs_grad(1), ctx.needs_grad(2)];
            let n = ctx.num_inputs();
            // dX reads only W and dW only X (db neither): read just what is wanted. With the
            // columns kept, X is only checked for in-place writes since the forward.
            let need_x = need[1] && saved.cols_for(g).is_none();
            if need[1] && !need_x {
                drop(ctx.input(0)?);
            }
            match [need_x, need[0]] {
                [true, true] => ctx.with_inputs(&[0, 1], |xw| {
                    conv_backward(g, Some(xw[0]), Some(xw[1]), &saved, need, n)
                }),
                [true, false] => conv_backward(g, Some(&*ctx.input(0)?), None, &saved, need, n),
                [false, true] => conv_backward(g, None, Some(&*ctx.input(1)?), &saved, need, n),
                [false, false] => conv_backward(g, None, None, &saved, need, n),
            }
        })
        .recorded_with(attrs))
    }
}

// ---------------------------------------------------------------------------------------
// convolution

fn conv_forward(
    x: &DynArray,
    w: &DynArray,
    b: Option<&DynArray>,
    stride: (usize, usize),
    padding: (usize, usize),
    keep_cols: bool,
) -> Result<(DynArray, Geometry, Option<DynArray>)> {
    let ws = w.shape();
    let &[o, wc, kh, kw] = ws else {
        return Err(shape_err!(
            "conv2d: weight must be 4-D (out_channels, in_channels, kh, kw), got shape {}",
            fmt_shape(ws)
        ));
    };
    let geo = Geometry::new("conv2d", x.shape(), (kh, kw), stride, padding)?;
    if wc != geo.c {
        return Err(shape_err!(
            "conv2d: input of shape {} has {} channels but weight of shape {} expects {wc}",
            fmt_shape(x.shape()),
            geo.c,
            fmt_shape(ws)
        ));
    }
    if let Some(b) = b {
        if b.shape() != [o] {
            return Err(shape_err!(
                "conv2d: bias of shape {} does not match weight of shape {}: expected ({o},)",
                fmt_shape(b.shape()),
                fmt_shape(ws)
            ));
        }
    }
    let dt = b.map_or(x.dtype().promote(w.dtype()), |b| {
        x.dtype().promote(w.dtype()).promote(b.dtype())
    });
    let (xc, wc) = (x.as_dtype(dt), w.as_dtype(dt));
    let bc = b.map(|b| b.as_dtype(dt));
    let bref = bc.as_deref();
    let (out, cols) = match dt {
        DType::F32 => conv_forward_typed::<f32>(&xc, &wc, bref, &geo, o, keep_cols)?,
        DType::F64 => conv_forward_typed::<f64>(&xc, &wc, bref, &geo, o, keep_cols)?,
        other => return Err(crate::dtype::float_only_error("conv2d", other)),
    };
    Ok((out, geo, cols))
}

fn conv_forward_typed<T: Element>(
    x: &DynArray,
    w: &DynArray,
    b: Option<&DynArray>,
    geo: &Geometry,
    o: usize,
    keep_cols: bool,
) -> Result<(DynArray, Option<DynArray>)> {
    let (x, w) = (typed::<T>(x)?, typed::<T>(w)?);
    let w2 = NdArray::from_vec(w.data().to_vec(), &[o, geo.patch()])?;
    let bias = b.map(typed::<T>).transpose()?.map(NdArray::data);
    let shape = [geo.n, o, geo.ho, geo.wo];
    let (img, out_img) = (geo.image(), o * geo.positions());
    if winograd::applies(geo, o) {
        let (out, tiles) = winograd::forward(x.data(), w.data(), bias, geo, o, keep_cols)?;
        return Ok((T::wrap(NdArray::from_vec(out, &shape)?), tiles.map(T::wrap)));
    }
    let mut out = try_filled(checked_size(&shape)?, T::zero())?;
    let mut kept = None;
    for (start, nb) in geo.chunks() {
        let cols = columns(&x.data()[start * img..(start + nb) * img], geo, nb)?;
        // (nb·L, CKK) @ (O, CKK)ᵀ -> (nb·L, O): one tall GEMM for all the images.
        let prod = cols.matmul_t(&w2, false, true)?;
        let dst = &mut out[start * out_img..(start + nb) * out_img];
        to_images(prod.data(), bias, geo, nb, o, dst);
        if keep_cols && nb == geo.n {
            kept = Some(T::wrap(cols));
        }
    }
    Ok((T::wrap(NdArray::from_vec(out, &shape)?), kept))
}

/// Writes `(nb·L, O)` (the GEMM's layout) as `nb` images `(O, L)` (NCHW), adding the bias.
fn to_images<T: Float>(
    prod: &[T],
    bias: Option<&[T]>,
    geo: &Geometry,
    nb: usize,
    o: usize,
    dst: &mut [T],
) {
    let l = geo.positions();
    if l == 0 || o == 0 {
        return;
    }
    let one = |(i, image): (usize, &mut [T])| {
        to_image(&prod[i * l * o..(i + 1) * l * o], bias, l, o, image)
    };
    if parallel(dst.len(), nb) {
        crate::parallel::for_each_chunk_mut(dst, o * l, |i, d| one((i, d)));
    } else {
        dst.chunks_mut(o * l).enumerate().for_each(one);
    }
}

/// `nb` images `(O, L)` side by side as one `(O, nb·L)` matrix (the gradient's layout for
/// the backward's GEMMs).
fn from_images<T: Float>(g: &[T], geo: &Geometry, nb: usize, o: usize) -> Result<NdArray<T>> {
    let l = geo.positions();
    let wide = nb * l;
    let mut out = try_with_capacity(o * wide)?;
    for c in 0..o {
        for i in 0..nb {
            out.extend_from_slice(&g[(i * o + c) * l..(i * o + c + 1) * l]);
        }
    }
    NdArray::from_vec(out, &[o, wide])
}

/// The im2col matrix of `nb` consecutive images, transposed: `(nb·H'·W', C·kh·kw)`, row
/// `i·L + oy·W' + ox` holds the patch under output `(oy, ox)` of image `i`, column
/// `(c·kh + ki)·kw + kj` the input `x[i, c, oy·sh + ki - ph, ox·sw + kj - pw]`, 0 in the
/// padding. Every element is written once (no zero fill first). Rows of patches make both
/// GEMMs that read the columns (the forward's and dW's) read them along their rows: dW from
/// a `(C·kh·kw, nb·L)` matrix read transposed took 2.6× as long (its packing dominated).
fn columns<T: Float>(x: &[T], geo: &Geometry, nb: usize) -> Result<NdArray<T>> {
    let per = geo.positions() * geo.patch();
    let len = nb * per;
    let mut cols = try_with_capacity(len)?;
    if per > 0 {
        let padded = pad(x, geo, nb)?;
        let img = padded.len() / nb;
        let fill = |(i, dst): (usize, &mut [MaybeUninit<T>])| {
            im2col(&padded[i * img..(i + 1) * img], geo, dst)
        };
        let spare = &mut cols.spare_capacity_mut()[..len];
        if parallel(len, nb) {
            crate::parallel::for_each_chunk_mut(spare, per, |i, d| fill((i, d)));
        } else {
            spare.chunks_mut(per).enumerate().for_each(fill);
        }
    }
    // SAFETY: `im2col` writes every element of its image's `per` rows, which tile `len`.
    unsafe { cols.set_len(len) };
    NdArray::from_vec(cols, &[nb * geo.positions(), geo.patch()])
}

/// What a convolution keeps for its backward besides the saved arrays: the geometry, the
/// output channels, the dtypes of input and weight and, when the weight wants a gradient
/// and the batch was one chunk, the input's columns (`(N·L, C·kh·kw)`, for dW; on the
/// Winograd path its transformed tiles `(16, tiles, C)` instead).
struct Saved {
    geo: Geometry,
    o: usize,
    dtypes: [DType; 2],
    cols: Option<DynArray>,
}

impl Saved {
    /// The kept columns, if they have the dtype the backward of `g` computes in.
    fn cols_for(&self, g: &DynArray) -> Option<&DynArray> {
        let dt = g.dtype().promote(self.dtypes[0]).promote(self.dtypes[1]);
        self.cols.as_ref().filter(|c| c.dtype() == dt)
    }
}

/// dX (GEMM Wᵀ·G, then col2im; when `w` is given), dW (Σ over images of G·colsᵀ; when `x`
/// is given) and db (sums of G over N, H', W'; when `need[2]`); `parents` is 2 or 3 (with a
/// bias).
fn conv_backward(
    g: &DynArray,
    x: Option<&DynArray>,
    w: Option<&DynArray>,
    saved: &Saved,
    need: [bool; 3],
    parents: usize,
) -> Result<Vec<Option<DynArray>>> {
    let dt = g.dtype().promote(saved.dtypes[0]).promote(saved.dtypes[1]);
    let gc = g.as_dtype(dt);
    let xc = x.map(|x| x.as_dtype(dt));
    let wc = w.map(|w| w.as_dtype(dt));
    let (x, w) = (xc.as_deref(), wc.as_deref());
    // dW from the kept columns when there are some, else from X's.
    let cols = saved.cols_for(g).filter(|_| need[1]);
    let mut grads = match dt {
        DType::F32 => conv_backward_typed::<f32>(&gc, x, cols, w, saved, need[2])?,
        DType::F64 => conv_backward_typed::<f64>(&gc, x, cols, w, saved, need[2])?,
        other => return Err(crate::dtype::float_only_error("conv2d", other)),
    };
    grads.truncate(parents);
    Ok(grads)
}

fn conv_backward_typed<T: Element>(
    g: &DynArray,
    x: Option<&DynArray>,
    kept: Option<&DynArray>,
    w: Option<&DynArray>,
    saved: &Saved,
    bias: bool,
) -> Result<Vec<Option<DynArray>>> {
    let (geo, o) = (&saved.geo, saved.o);
    let g = typed::<T>(g)?;
    let x = x.map(typed::<T>).transpose()?;
    let kept = kept.map(typed::<T>).transpose()?;
    let w = w.map(typed::<T>).transpose()?;
    let l = geo.positions();
    let x_shape = [geo.n, geo.c, geo.h, geo.w];
    let unchanged = x.is_none_or(|x| x.shape() == x_shape)
        && w.is_none_or(|w| w.shape() == [o, geo.c, geo.kh, geo.kw])
        && g.shape() == [geo.n, o, geo.ho, geo.wo];
    if !unchanged {
        return Err(changed("conv2d"));
    }
    let db = if bias {
        let mut db = vec![T::zero(); o];
        // Each plane with interleaved partial sums: one running sum is a dependency chain
        // the compiler cannot vectorise (~1 ns an element, 100+ µs for the digits CNN's
        // second convolution, on the calling thread while the pool waited).
        for (i, plane) in g.data().chunks(l).enumerate() {
            db[i % o] = db[i % o] + crate::ndarray::lane_sum(plane);
        }
        Some(T::wrap(NdArray::from_vec(db, &[o])?))
    } else {
        None
    };
    let winograd::Gradients { dx, dw } = if winograd::applies(geo, o) {
        let tiles = match (kept, x) {
            (Some(tiles), _) => Some(Cow::Borrowed(tiles)),
            (None, Some(x)) => Some(Cow::Owned(winograd::tiles_of(x.data(), geo)?)),
            (None, None) => None,
        };
        winograd::backward(g.data(), tiles.as_deref(), w.map(NdArray::data), geo, o)?
    } else {
        im2col_gradients(g, x, kept, w, geo, o)?
    };
    let dx = dx
        .map(|d| NdArray::from_vec(d, &x_shape).map(T::wrap))
        .transpose()?;
    let dw = dw
        .map(|d| NdArray::from_vec(d, &[o, geo.c, geo.kh, geo.kw]).map(T::wrap))
        .transpose()?;
    Ok(vec![dx, dw, db])
}

/// dX (when `w` is given) and dW (when the input `x` or its `kept` columns are) of a
/// convolution through im2col: a GEMM per chunk of images, dX scattered back by col2im.
fn im2col_gradients<T: Element>(
    g: &NdArray<T>,
    x: Option<&NdArray<T>>,
    kept: Option<&NdArray<T>>,
    w: Option<&NdArray<T>>,
    geo: &Geometry,
    o: usize,
) -> Result<winograd::Gradients<T>> {
    let (l, ckk, img) = (geo.positions(), geo.patch(), geo.image());
    let x_shape = [geo.n, geo.c, geo.h, geo.w];
    // dW needs X's columns and dX needs W: each is computed when its input was read.
    let mut dw: Option<Vec<T>> = None;
    let w2 = w
        .map(|w| NdArray::from_vec(w.data().to_vec(), &[o, ckk]))
        .transpose()?;
    let mut dx = match w2 {
        Some(_) => Some(try_filled(checked_size(&x_shape)?, T::zero())?),
        None => None,
    };
    for (start, nb) in geo.chunks() {
        // (nb, O, L) -> (O, nb·L): the images side by side, as in the forward's GEMM.
        let gt = from_images(&g.data()[start * o * l..(start + nb) * o * l], geo, nb, o)?;
        let cols = match (kept, x) {
            // Kept only when the batch was one chunk: this one.
            (Some(cols), _) => Some(Cow::Borrowed(cols)),
            (None, Some(x)) => Some(Cow::Owned(columns(
                &x.data()[start * img..(start + nb) * img],
                geo,
                nb,
            )?)),
            (None, None) => None,
        };
        if let Some(cols) = cols {
            // (O, nb·L) @ (nb·L, CKK) -> (O, CKK): the sum over the images is the GEMM's.
            let part = gt.matmul(&cols)?.into_vec();
            match dw.as_mut() {
                Some(acc) => acc.iter_mut().zip(&part).for_each(|(a, &b)| *a = *a + b),
                None => dw = Some(part),
            }
        }
        if let (Some(w2), Some(dx)) = (&w2, dx.as_mut().filter(|_| img > 0 && ckk > 0)) {
            // (O, CKK)ᵀ @ (O, nb·L) -> (CKK, nb·L), scattered back into the images.
            let dcols = w2.matmul_t(&gt, true, false)?;
            let dst = &mut dx[start * img..(start + nb) * img];
            let add = |(i, d): (usize, &mut [T])| col2im(dcols.data(), geo, nb, i, d);
            if parallel(dst.len(), nb) {
                crate::parallel::for_each_chunk_mut(dst, img, |i, d| add((i, d)));
            } else {
                dst.chunks_mut(img).enumerate().for_each(add);
            }
        }
    }
    let dw = match (x.is_some() || kept.is_some(), dw) {
        (true, None) => Some(try_filled(o * ckk, T::zero())?), // an empty batch
        (_, dw) => dw,
    };
    Ok(winograd::Gradients { dx, dw })
}
