//! 2-D max pooling on NCHW `Tensor`s; the gradient of each output goes to its window's
//! maximum (the first one on a tie).

use super::ops_conv::{parallel, Geometry};
use super::record::{self, kv};
use super::Tensor;
use crate::dynarray::DynArray;
use crate::ndarray::elementwise::simd::{self, Kernel};
use crate::ndarray::{try_with_capacity, Float, NdArray};
use crate::shape::{checked_size, fmt_shape};
use crate::{shape_err, value_err, Result};
use std::mem::MaybeUninit;

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
        drop(x);
        let attrs = record::attrs(|| {
            vec![
                kv("kernel", kernel),
                kv("stride", stride),
                kv("padding", padding),
            ]
        });
        Ok(Tensor::from_op(out, "max_pool2d", &[self], move |g, _| {
            Ok(vec![Some(pool_backward(g, &argmax, &geo)?)])
        })
        .recorded_with(attrs))
    }
}

/// The pooled values and, for each, the flat offset of its maximum in the input.
fn pool_forward<T: Float>(x: &[T], geo: &Geometry) -> Result<(Vec<T>, Vec<usize>)> {
    let (l, hw) = (geo.positions(), geo.h * geo.w);
    let total = checked_size(&[geo.n, geo.c, l])?;
    let mut vals = try_with_capacity(total)?;
    let mut args = try_with_capacity(total)?;
    // The column range of each output column's window, the same in every row and plane.
    let xs: Vec<_> = (0..geo.wo)
        .map(|ox| window(ox, geo.sw, geo.pw, geo.kw, geo.w))
        .collect();
    // Planes go to the kernel in runs (one call per run, not per plane: a digits-CNN plane
    // has 16 outputs, and a call per plane cost several times the pooling itself).
    let per_run = (PLANES_PER_RUN / l.max(1)).max(1);
    // Written where they are computed, on the thread that goes on to read them: no serial
    // zero-fill before the split (see `pool_backward`).
    let one = |(r, (v, a)): (usize, (&mut [_], &mut [_]))| {
        let first = r * per_run;
        let count = v.len() / l;
        simd::run(PoolPlanes {
            x: &x[first * hw..(first + count) * hw],
            base: first * hw,
            geo,
            xs: &xs,
            vals: v,
            args: a,
        })
    };
    let work = total.saturating_mul(geo.kh * geo.kw);
    let runs = vals.spare_capacity_mut()[..total]
        .chunks_mut(per_run * l)
        .zip(args.spare_capacity_mut()[..total].chunks_mut(per_run * l));
    if parallel(work, geo.n * geo.c) {
        crate::parallel::for_each_item(runs.enumerate(), one);
    } else {
        runs.enumerate().for_each(one);
    }
    // SAFETY: the runs cover all `total` elements of both, and the pooling kernels write
    // every value and index of the planes they are given.
    unsafe {
        vals.set_len(total);
        args.set_len(total);
    }
    Ok((vals, args))
}

/// The input's gradient: each output's gradient added at its maximum's offset, zeros
/// elsewhere. Every maximum lies in its output's plane, so planes are independent: a run of
/// planes is zeroed and filled by one task, on the thread that goes on to read it (one
/// serial zero-fill and scatter took the pooling's backward at 2 threads from ~45 µs to
/// 60-130: its other half was then read from the other core).
fn pool_backward(g: &DynArray, argmax: &[usize], geo: &Geometry) -> Result<DynArray> {
    fn typed<T: Float>(g: &NdArray<T>, argmax: &[usize], geo: &Geometry) -> Result<NdArray<T>> {
        let (planes, hw, l) = (geo.n * geo.c, geo.h * geo.w, geo.positions());
        let len = checked_size(&[planes, hw])?;
        if g.data().len() != planes * l || argmax.len() != planes * l {
            return Err(shape_err!(
                "max_pool2d backward: a gradient of {} values for {} pooled positions",
                g.data().len(),
                planes * l
            ));
        }
        let mut out = try_with_capacity(len)?;
        let per_run = (PLANES_PER_RUN / l.max(1)).max(1);
        let fill = |(r, chunk): (usize, &mut [MaybeUninit<T>])| {
            let chunk = zeroed(chunk, T::zero());
            let (base, outputs) = (r * per_run * hw, r * per_run * l..);
            let count = chunk.len() / hw * l;
            for (&at, &v) in argmax[outputs.clone()]
                .iter()
                .zip(&g.data()[outputs])
                .take(count)
            {
                // `at` lies in this run's planes: `pool_forward` found it there.
                chunk[at - base] = chunk[at - base] + v;
            }
        };
        let runs = out.spare_capacity_mut()[..len].chunks_mut(per_run * hw);
        if parallel(len, planes) {
            crate::parallel::for_each_item(runs.enumerate(), fill);
        } else {
            runs.enumerate().for_each(fill);
        }
        // SAFETY: the runs cover all `len` elements, each written by `fill`.
        unsafe { out.set_len(len) };
        NdArray::from_vec(out, &[geo.n, geo.c, geo.h, geo.w])
    }
    match g {
        DynArray::F32(g) => Ok(DynArray::F32(typed(g, argmax, geo)?)),
        DynArray::F64(g) => Ok(DynArray::F64(typed(g, argmax, geo)?)),
        other => Err(crate::dtype::float_only_error("max_pool2d", other.dtype())),
    }
}

/// `chunk` filled with `zero`, as the initialised slice it then is.
fn zeroed<T: Copy>(chunk: &mut [MaybeUninit<T>], zero: T) -> &mut [T] {
    chunk.fill(MaybeUninit::new(zero));
    // SAFETY: every element of `chunk` was initialised just above, and `MaybeUninit<T>` has
    // the layout of `T`.
    unsafe { &mut *(chunk as *mut [MaybeUninit<T>] as *mut [T]) }
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
/// (padding is at most half the kernel). Each window is searched whole with its running
/// maximum in registers, row by row (the first maximum in row-major order wins).
#[inline(always)]
fn pool_plane<T: Float>(
    plane: &[T],
    base: usize,
    geo: &Geometry,
    xs: &[std::ops::Range<usize>],
    vals: &mut [MaybeUninit<T>],
    args: &mut [MaybeUninit<usize>],
) {
    let w = geo.w;
    for ((vrow, arow), oy) in vals
        .chunks_mut(geo.wo)
        .zip(args.chunks_mut(geo.wo))
        .zip(0..geo.ho)
    {
        let ys = window(oy, geo.sh, geo.ph, geo.kh, geo.h);
        for ((v, a), cols) in vrow.iter_mut().zip(arow.iter_mut()).zip(xs) {
            let mut at = ys.start * w + cols.start;
            let mut best = plane[at];
            for iy in ys.clone() {
                let row = &plane[iy * w..(iy + 1) * w];
                for ix in cols.clone() {
                    take_max(row[ix], iy * w + ix, &mut best, &mut at);
                }
            }
            v.write(best);
            a.write(base + at);
        }
    }
}

/// [`pool_plane`] for a `KH × KW` window at stride `(S, S)` without padding: loops of
/// known trip counts, unrolled (the 2×2 pooling of every CNN).
#[inline(always)]
fn pool_plane_fixed<T: Float, const KH: usize, const KW: usize, const S: usize>(
    plane: &[T],
    base: usize,
    geo: &Geometry,
    vals: &mut [MaybeUninit<T>],
    args: &mut [MaybeUninit<usize>],
) {
    let w = geo.w;
    for ((vrow, arow), oy) in vals
        .chunks_mut(geo.wo)
        .zip(args.chunks_mut(geo.wo))
        .zip(0..geo.ho)
    {
        let top = oy * S * w;
        let rows = &plane[top..top + (KH - 1) * w + geo.w];
        for ((v, a), ox) in vrow.iter_mut().zip(arow.iter_mut()).zip(0..geo.wo) {
            let mut at = ox * S;
            let mut best = rows[at];
            for ki in 0..KH {
                for kj in 0..KW {
                    let i = ki * w + ox * S + kj;
                    take_max(rows[i], i, &mut best, &mut at);
                }
            }
            v.write(best);
            a.write(base + top + at);
        }
    }
}

/// [`pool_plane_fixed`] for 2×2 windows at stride 2 as a tree: the first maximum (or NaN)
/// of each row's pair, then of the two; the same choice as the row-major scan (an earlier
/// candidate wins every tie), with shorter dependency chains.
#[inline(always)]
fn pool_plane_2x2<T: Float>(
    plane: &[T],
    base: usize,
    geo: &Geometry,
    vals: &mut [MaybeUninit<T>],
    args: &mut [MaybeUninit<usize>],
) {
    let w = geo.w;
    for ((vrow, arow), oy) in vals
        .chunks_exact_mut(geo.wo)
        .zip(args.chunks_exact_mut(geo.wo))
        .zip(0..geo.ho)
    {
        let top = 2 * oy * w;
        let (a, b) = plane[top..top + 2 * w].split_at(w);
        for (ox, (v, at)) in vrow.iter_mut().zip(arow.iter_mut()).enumerate() {
            let x = 2 * ox;
            let (m0, i0) = first_max((a[x], x), (a[x + 1], x + 1));
            let (m1, i1) = first_max((b[x], w + x), (b[x + 1], w + x + 1));
            let (m, i) = first_max((m0, i0), (m1, i1));
            v.write(m);
            at.write(base + top + i);
        }
    }
}

/// The first of two candidates `(value, index)` unless the second is larger, or a NaN
/// where the first is not (see [`take_max`]).
#[inline(always)]
fn first_max<T: Float>((x, ix): (T, usize), (y, iy): (T, usize)) -> (T, usize) {
    let mut best = (x, ix);
    take_max(y, iy, &mut best.0, &mut best.1);
    best
}

/// Moves the running maximum `best` (at `arg`) to `v` (at `at`) if `v` is larger, or the
/// first NaN. No branches: on data a branch per element mispredicts half the time (the
/// short-circuit `||`/`&&` this had compiled to branches, ~4 ns an element). `&`/`|` on the
/// comparisons leave the compiler a select for the value and the mask keeps the index
/// arithmetic.
#[inline(always)]
fn take_max<T: Float>(v: T, at: usize, best: &mut T, arg: &mut usize) {
    #[allow(clippy::eq_op)] // `x != x` is the NaN test
    let take = (v > *best) | ((v != v) & (*best == *best));
    *best = if take { v } else { *best };
    *arg ^= (*arg ^ at) & (take as usize).wrapping_neg();
}

/// Outputs per call of the pooling kernel (whole planes, at least one).
const PLANES_PER_RUN: usize = 1 << 12;

/// The pooling of consecutive planes, compiled per instruction set (see [`simd::run`]).
struct PoolPlanes<'a, T> {
    x: &'a [T],
    base: usize,
    geo: &'a Geometry,
    xs: &'a [std::ops::Range<usize>],
    vals: &'a mut [MaybeUninit<T>],
    args: &'a mut [MaybeUninit<usize>],
}

impl<T: Float> Kernel for PoolPlanes<'_, T> {
    fn work(&self) -> usize {
        self.x.len()
    }

    #[inline(always)]
    fn run(self) {
        let Self {
            x,
            base,
            geo,
            xs,
            vals,
            args,
        } = self;
        let (hw, l) = (geo.h * geo.w, geo.positions());
        let unpadded = geo.ph == 0 && geo.pw == 0;
        let planes = x
            .chunks_exact(hw)
            .zip(vals.chunks_exact_mut(l).zip(args.chunks_exact_mut(l)));
        for (p, (plane, (v, a))) in planes.enumerate() {
            let base = base + p * hw;
            match (geo.kh, geo.kw, geo.sh, geo.sw) {
                (2, 2, 2, 2) if unpadded => pool_plane_2x2(plane, base, geo, v, a),
                (3, 3, 2, 2) if unpadded => pool_plane_fixed::<T, 3, 3, 2>(plane, base, geo, v, a),
                (3, 3, 1, 1) if unpadded => pool_plane_fixed::<T, 3, 3, 1>(plane, base, geo, v, a),
                _ => pool_plane(plane, base, geo, xs, v, a),
            }
        }
    }
}
