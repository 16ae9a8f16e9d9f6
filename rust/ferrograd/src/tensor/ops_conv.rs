//! 2-D convolution (im2col + one batched GEMM) and 2-D max pooling on NCHW `Tensor`s, with
//! their backward rules (GEMM + col2im scatter-add; gradients routed to the argmax).

use rayon::prelude::*;

use super::ops_nn::{changed, typed, with_arrays};
use super::record::{self, kv};
use super::Tensor;
use crate::dynarray::{DType, DynArray, Element};
use crate::ndarray::{try_filled, try_with_capacity, Float, NdArray};
use crate::parallel::{num_threads, PARALLEL_THRESHOLD};
use crate::shape::{checked_size, fmt_shape};
use crate::{shape_err, value_err, Result};

/// At most this many im2col elements exist at once: a larger batch runs in chunks of images
/// (16 MiB of float32), bounding the memory a convolution needs on top of its input.
const COLS_CHUNK: usize = 1 << 22;

/// The sizes of a sliding-window op over an `(N, C, H, W)` input.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    kh: usize,
    kw: usize,
    sh: usize,
    sw: usize,
    ph: usize,
    pw: usize,
    ho: usize,
    wo: usize,
}

impl Geometry {
    fn new(
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
    fn positions(&self) -> usize {
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

fn parallel(work: usize, tasks: usize) -> bool {
    tasks > 1 && work >= PARALLEL_THRESHOLD && num_threads() > 1
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
        let (out, geo, dtypes) = with_arrays(&parents, |a| {
            let dtypes = [a[0].dtype(), a[1].dtype()];
            conv_forward(a[0], a[1], a.get(2).copied(), stride, padding)
                .map(|(out, geo)| (out, geo, dtypes))
        })?;
        let o = out.shape().get(1).copied().unwrap_or(0);
        let saved = Saved { geo, o, dtypes };
        let attrs = record::attrs(|| vec![kv("stride", stride), kv("padding", padding)]);
        Ok(Tensor::from_op(out, "conv2d", &parents, move |g, ctx| {
            let need = [ctx.needs_grad(0), ctx.needs_grad(1), ctx.needs_grad(2)];
            let n = ctx.num_inputs();
            // dX reads only W and dW only X (db neither): read just what is wanted.
            match [need[1], need[0]] {
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

    /// 2-D max pooling of `self` `(N, C, H, W)`; padding counts as -inf and may be at most
    /// half the kernel (PyTorch's rule). NaN propagates. The gradient of each output goes to
    /// the position of its maximum (the first one on a tie).
    pub fn max_pool2d(
        &self,
        kernel: (usize, usize),
        stride: (usize, usize),
        padding: (usize, usize),
    ) -> Result<Tensor> {
        let x = self.array();
        let geo = Geometry::new("max_pool2d", x.shape(), kernel, stride, padding)?;
        if padding.0 > kernel.0 / 2 || padding.1 > kernel.1 / 2 {
            return Err(value_err!(
                "max_pool2d: padding {padding:?} must be at most half the kernel size {kernel:?}"
            ));
        }
        if geo.h == 0 || geo.w == 0 {
            return Err(shape_err!(
                "max_pool2d: expected a non-empty image, got input of shape {}",
                fmt_shape(x.shape())
            ));
        }
        let shape = [geo.n, geo.c, geo.ho, geo.wo];
        let (out, argmax) = match &*x {
            DynArray::F32(a) => {
                let (v, i) = pool_forward(a.data(), &geo)?;
                (DynArray::F32(NdArray::from_vec(v, &shape)?), i)
            }
            DynArray::F64(a) => {
                let (v, i) = pool_forward(a.data(), &geo)?;
                (DynArray::F64(NdArray::from_vec(v, &shape)?), i)
            }
            other => return Err(crate::dtype::float_only_error("max_pool2d", other.dtype())),
        };
        let input_shape = x.shape().to_vec();
        drop(x);
        let attrs = record::attrs(|| {
            vec![
                kv("kernel", kernel),
                kv("stride", stride),
                kv("padding", padding),
            ]
        });
        Ok(Tensor::from_op(out, "max_pool2d", &[self], move |g, _| {
            Ok(vec![Some(g.scatter_add(&input_shape, &argmax)?)])
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
) -> Result<(DynArray, Geometry)> {
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
    let out = match dt {
        DType::F32 => conv_forward_typed::<f32>(&xc, &wc, bref, &geo, o)?,
        DType::F64 => conv_forward_typed::<f64>(&xc, &wc, bref, &geo, o)?,
        other => return Err(crate::dtype::float_only_error("conv2d", other)),
    };
    Ok((out, geo))
}

fn conv_forward_typed<T: Element>(
    x: &DynArray,
    w: &DynArray,
    b: Option<&DynArray>,
    geo: &Geometry,
    o: usize,
) -> Result<DynArray> {
    let (x, w) = (typed::<T>(x)?, typed::<T>(w)?);
    let w2 = NdArray::from_vec(w.data().to_vec(), &[o, geo.patch()])?;
    let shape = [geo.n, o, geo.ho, geo.wo];
    let total = checked_size(&shape)?;
    let img = geo.image();
    let mut out: Vec<T> = Vec::new();
    for (start, nb) in geo.chunks() {
        let cols = columns(&x.data()[start * img..(start + nb) * img], geo, nb)?;
        // (O, CKK) @ (nb, CKK, L) -> (nb, O, L): already the NCHW layout of the output.
        let part = w2.matmul(&cols)?.into_vec();
        if nb == geo.n {
            out = part; // one chunk: the product is the output, no copy
        } else {
            if out.is_empty() {
                out = try_with_capacity(total)?;
            }
            out.extend_from_slice(&part);
        }
    }
    if let Some(b) = b {
        let b = typed::<T>(b)?.data();
        let l = geo.positions();
        for (i, plane) in out.chunks_mut(l).enumerate() {
            let bo = b[i % o];
            plane.iter_mut().for_each(|y| *y = *y + bo);
        }
    }
    Ok(T::wrap(NdArray::from_vec(out, &shape)?))
}

/// The im2col matrices `(nb, C·kh·kw, H'·W')` of `nb` consecutive images.
fn columns<T: Float>(x: &[T], geo: &Geometry, nb: usize) -> Result<NdArray<T>> {
    let per = geo.patch() * geo.positions();
    let mut cols = try_filled(nb * per, T::zero())?;
    if per > 0 {
        let img = geo.image();
        let fill = |(i, dst): (usize, &mut [T])| im2col(&x[i * img..(i + 1) * img], geo, dst);
        if parallel(cols.len(), nb) {
            crate::parallel::install(|| cols.par_chunks_mut(per).enumerate().for_each(fill));
        } else {
            cols.chunks_mut(per).enumerate().for_each(fill);
        }
    }
    NdArray::from_vec(cols, &[nb, geo.patch(), geo.positions()])
}

/// Row `(c, ki, kj)`, column `(oy, ox)` of the columns holds `x[c, oy·sh + ki - ph, ox·sw +
/// kj - pw]`, 0 in the padding. (Indices left of the padding wrap to huge values and fail
/// the `< h` / `< w` tests.)
fn im2col<T: Float>(img: &[T], geo: &Geometry, cols: &mut [T]) {
    let (l, hw) = (geo.positions(), geo.h * geo.w);
    let mut rows = cols.chunks_mut(l);
    for c in 0..geo.c {
        let plane = &img[c * hw..(c + 1) * hw];
        for ki in 0..geo.kh {
            for kj in 0..geo.kw {
                let Some(row) = rows.next() else { return };
                for (oy, dst) in row.chunks_mut(geo.wo).enumerate() {
                    let iy = (oy * geo.sh + ki).wrapping_sub(geo.ph);
                    if iy >= geo.h {
                        dst.fill(T::zero());
                        continue;
                    }
                    let src = &plane[iy * geo.w..(iy + 1) * geo.w];
                    for (ox, d) in dst.iter_mut().enumerate() {
                        let ix = (ox * geo.sw + kj).wrapping_sub(geo.pw);
                        *d = if ix < geo.w { src[ix] } else { T::zero() };
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds every column entry back into the image it came from.
fn col2im<T: Float>(cols: &[T], geo: &Geometry, img: &mut [T]) {
    let (l, hw) = (geo.positions(), geo.h * geo.w);
    let mut rows = cols.chunks(l);
    for c in 0..geo.c {
        let plane = &mut img[c * hw..(c + 1) * hw];
        for ki in 0..geo.kh {
            for kj in 0..geo.kw {
                let Some(row) = rows.next() else { return };
                for (oy, src) in row.chunks(geo.wo).enumerate() {
                    let iy = (oy * geo.sh + ki).wrapping_sub(geo.ph);
                    if iy >= geo.h {
                        continue;
                    }
                    let dst = &mut plane[iy * geo.w..(iy + 1) * geo.w];
                    for (ox, &s) in src.iter().enumerate() {
                        let ix = (ox * geo.sw + kj).wrapping_sub(geo.pw);
                        if ix < geo.w {
                            dst[ix] = dst[ix] + s;
                        }
                    }
                }
            }
        }
    }
}

/// What a convolution keeps for its backward besides the saved arrays: the geometry, the
/// output channels and the dtypes of input and weight.
struct Saved {
    geo: Geometry,
    o: usize,
    dtypes: [DType; 2],
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
    let mut grads = match dt {
        DType::F32 => conv_backward_typed::<f32>(&gc, x, w, saved, need[2])?,
        DType::F64 => conv_backward_typed::<f64>(&gc, x, w, saved, need[2])?,
        other => return Err(crate::dtype::float_only_error("conv2d", other)),
    };
    grads.truncate(parents);
    Ok(grads)
}

fn conv_backward_typed<T: Element>(
    g: &DynArray,
    x: Option<&DynArray>,
    w: Option<&DynArray>,
    saved: &Saved,
    bias: bool,
) -> Result<Vec<Option<DynArray>>> {
    let (geo, o) = (&saved.geo, saved.o);
    let g = typed::<T>(g)?;
    let x = x.map(typed::<T>).transpose()?;
    let w = w.map(typed::<T>).transpose()?;
    let (l, ckk, img) = (geo.positions(), geo.patch(), geo.image());
    let x_shape = [geo.n, geo.c, geo.h, geo.w];
    let unchanged = x.is_none_or(|x| x.shape() == x_shape)
        && w.is_none_or(|w| w.shape() == [o, geo.c, geo.kh, geo.kw])
        && g.shape() == [geo.n, o, geo.ho, geo.wo];
    if !unchanged {
        return Err(changed("conv2d"));
    }
    let db = if bias {
        let mut db = vec![T::zero(); o];
        for (i, plane) in g.data().chunks(l).enumerate() {
            db[i % o] = db[i % o] + plane.iter().copied().sum::<T>();
        }
        Some(T::wrap(NdArray::from_vec(db, &[o])?))
    } else {
        None
    };
    // dW needs X's columns and dX needs W: each is computed when its input was read.
    let mut dw = match x {
        Some(x) => Some((x, try_filled(o * ckk, T::zero())?)),
        None => None,
    };
    let mut dx = match w {
        Some(w) => Some((
            NdArray::from_vec(w.data().to_vec(), &[o, ckk])?,
            try_filled(checked_size(&x_shape)?, T::zero())?,
        )),
        None => None,
    };
    for (start, nb) in geo.chunks() {
        let gchunk = NdArray::from_vec(
            g.data()[start * o * l..(start + nb) * o * l].to_vec(),
            &[nb, o, l],
        )?;
        if let Some((x, dw)) = dw.as_mut().filter(|(_, d)| !d.is_empty()) {
            let cols = columns(&x.data()[start * img..(start + nb) * img], geo, nb)?;
            // (nb, O, L) @ (nb, CKK, L)ᵀ -> (nb, O, CKK), summed over the images.
            let part = gchunk.matmul_t(&cols, false, true)?;
            for block in part.data().chunks(dw.len()) {
                dw.iter_mut().zip(block).for_each(|(a, &b)| *a = *a + b);
            }
        }
        if let Some((w2, dx)) = dx.as_mut().filter(|_| img > 0 && ckk > 0) {
            // (O, CKK)ᵀ @ (nb, O, L) -> (nb, CKK, L), scattered back into the images.
            let dcols = w2.matmul_t(&gchunk, true, false)?;
            let dst = &mut dx[start * img..(start + nb) * img];
            let add = |(d, c): (&mut [T], &[T])| col2im(c, geo, d);
            if parallel(dst.len(), nb) {
                crate::parallel::install(|| {
                    dst.par_chunks_mut(img)
                        .zip(dcols.data().par_chunks(ckk * l))
                        .for_each(add)
                });
            } else {
                dst.chunks_mut(img)
                    .zip(dcols.data().chunks(ckk * l))
                    .for_each(add);
            }
        }
    }
    let dx = dx
        .map(|(_, d)| NdArray::from_vec(d, &x_shape).map(T::wrap))
        .transpose()?;
    let dw = dw
        .map(|(_, d)| NdArray::from_vec(d, &[o, geo.c, geo.kh, geo.kw]).map(T::wrap))
        .transpose()?;
    Ok(vec![dx, dw, db])
}

// ---------------------------------------------------------------------------------------
// max pooling

/// The pooled values and, for each, the flat offset of its maximum in the input.
fn pool_forward<T: Float>(x: &[T], geo: &Geometry) -> Result<(Vec<T>, Vec<usize>)> {
    let (l, hw) = (geo.positions(), geo.h * geo.w);
    let total = checked_size(&[geo.n, geo.c, l])?;
    let mut vals = try_filled(total, T::zero())?;
    let mut args = try_filled(total, 0usize)?;
    let one = |(p, (v, a)): (usize, (&mut [T], &mut [usize]))| {
        pool_plane(&x[p * hw..(p + 1) * hw], p * hw, geo, v, a);
    };
    let work = total.saturating_mul(geo.kh * geo.kw);
    if parallel(work, geo.n * geo.c) {
        crate::parallel::install(|| {
            vals.par_chunks_mut(l)
                .zip(args.par_chunks_mut(l))
                .enumerate()
                .for_each(one)
        });
    } else {
        vals.chunks_mut(l)
            .zip(args.chunks_mut(l))
            .enumerate()
            .for_each(one);
    }
    Ok((vals, args))
}

/// Pools one `H × W` plane whose first element sits at input offset `base`. Every window
/// holds at least one real element (padding is at most half the kernel).
fn pool_plane<T: Float>(
    plane: &[T],
    base: usize,
    geo: &Geometry,
    vals: &mut [T],
    args: &mut [usize],
) {
    let window = |o: usize, s: usize, p: usize, k: usize, n: usize| {
        let start = (o * s) as isize - p as isize;
        let lo = start.max(0) as usize;
        let hi = ((start + k as isize).max(0) as usize).min(n);
        lo..hi
    };
    for oy in 0..geo.ho {
        let ys = window(oy, geo.sh, geo.ph, geo.kh, geo.h);
        for ox in 0..geo.wo {
            let xs = window(ox, geo.sw, geo.pw, geo.kw, geo.w);
            let mut best = T::neg_infinity();
            let mut arg = (ys.start.min(geo.h - 1)) * geo.w + xs.start.min(geo.w - 1);
            let mut first = true;
            for iy in ys.clone() {
                for ix in xs.clone() {
                    let v = plane[iy * geo.w + ix];
                    if first || v > best || (v.is_nan() && !best.is_nan()) {
                        best = v;
                        arg = iy * geo.w + ix;
                        first = false;
                    }
                }
            }
            vals[oy * geo.wo + ox] = best;
            args[oy * geo.wo + ox] = base + arg;
        }
    }
}
