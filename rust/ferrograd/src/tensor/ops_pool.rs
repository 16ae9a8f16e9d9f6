//! 2-D max pooling on NCHW `Tensor`s; the gradient of each output goes to its window's
//! maximum (the first one on a tie).

use super::ops_conv::{parallel, Geometry};
use super::record::{self, kv};
use super::Tensor;
use crate::dynarray::DynArray;
use crate::ndarray::{try_filled, Float, NdArray};
use crate::shape::{checked_size, fmt_shape};
use crate::{shape_err, value_err, Result};

impl Tensor {
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

/// The pooled values and, for each, the flat offset of its maximum in the input.
fn pool_forward<T: Float>(x: &[T], geo: &Geometry) -> Result<(Vec<T>, Vec<usize>)> {
    let (l, hw) = (geo.positions(), geo.h * geo.w);
    let total = checked_size(&[geo.n, geo.c, l])?;
    let mut vals = try_filled(total, T::zero())?;
    let mut args = try_filled(total, 0usize)?;
    // The column range of each output column's window, the same in every row and plane.
    let xs: Vec<_> = (0..geo.wo)
        .map(|ox| window(ox, geo.sw, geo.pw, geo.kw, geo.w))
        .collect();
    let one = |(p, (v, a)): (usize, (&mut [T], &mut [usize]))| {
        let plane = &x[p * hw..(p + 1) * hw];
        // The usual kernels get loops of known trip counts (unrolled): 4× faster on 2×2.
        match (geo.kw, geo.sw) {
            (2, 2) => pool_plane(plane, p * hw, geo, 2, 2, &xs, v, a),
            (3, 2) => pool_plane(plane, p * hw, geo, 3, 2, &xs, v, a),
            (3, 1) => pool_plane(plane, p * hw, geo, 3, 1, &xs, v, a),
            (kw, sw) => pool_plane(plane, p * hw, geo, kw, sw, &xs, v, a),
        }
    };
    let work = total.saturating_mul(geo.kh * geo.kw);
    if parallel(work, geo.n * geo.c) {
        let planes = vals.chunks_mut(l).zip(args.chunks_mut(l)).enumerate();
        crate::parallel::for_each_item(planes, one);
    } else {
        vals.chunks_mut(l)
            .zip(args.chunks_mut(l))
            .enumerate()
            .for_each(one);
    }
    Ok((vals, args))
}

/// The input positions `0..n` under window `o` (stride `s`, padding `p`, kernel `k`).
fn window(o: usize, s: usize, p: usize, k: usize, n: usize) -> std::ops::Range<usize> {
    let start = (o * s) as isize - p as isize;
    let lo = start.max(0) as usize;
    let hi = ((start + k as isize).max(0) as usize).min(n);
    lo..hi
}

/// Pools one `H × W` plane whose first element sits at input offset `base`; `xs` holds
/// each output column's input columns. Every window holds at least one real element
/// (padding is at most half the kernel). A row of outputs is pooled together, input row
/// by input row, so each input row is read once and in order. `kw` and `sw` are the
/// geometry's, passed in so that callers can make them constants.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn pool_plane<T: Float>(
    plane: &[T],
    base: usize,
    geo: &Geometry,
    kw: usize,
    sw: usize,
    xs: &[std::ops::Range<usize>],
    vals: &mut [T],
    args: &mut [usize],
) {
    let w = geo.w;
    for ((vrow, arow), oy) in vals
        .chunks_mut(geo.wo)
        .zip(args.chunks_mut(geo.wo))
        .zip(0..geo.ho)
    {
        let ys = window(oy, geo.sh, geo.ph, geo.kh, geo.h);
        // Each window's first element starts its search.
        for ((v, a), cols) in vrow.iter_mut().zip(arow.iter_mut()).zip(xs) {
            *a = ys.start * w + cols.start;
            *v = plane[*a];
        }
        for iy in ys {
            let row = &plane[iy * w..(iy + 1) * w];
            if geo.pw == 0 {
                // No column padding: every window is whole, so one pass per kernel column
                // over the output row (each window still sees its elements row by row).
                for kj in 0..kw {
                    for (ox, (best, arg)) in vrow.iter_mut().zip(arow.iter_mut()).enumerate() {
                        let ix = ox * sw + kj;
                        take_max(row[ix], iy * w + ix, best, arg);
                    }
                }
            } else {
                for ((best, arg), cols) in vrow.iter_mut().zip(arow.iter_mut()).zip(xs) {
                    for ix in cols.clone() {
                        take_max(row[ix], iy * w + ix, best, arg);
                    }
                }
            }
        }
        arow.iter_mut().for_each(|a| *a += base);
    }
}

/// Moves the running maximum `best` (at `arg`) to `v` (at `at`) if `v` is larger, or the
/// first NaN. Selects, not branches: on data a branch per element mispredicts half the time.
#[inline(always)]
fn take_max<T: Float>(v: T, at: usize, best: &mut T, arg: &mut usize) {
    let take = v > *best || (v.is_nan() && !best.is_nan());
    *best = if take { v } else { *best };
    *arg = if take { at } else { *arg };
}
