//! `layer_norm` on `Tensor`: one fused op over the trailing axes (PyTorch's `F.layer_norm`)
//! that saves each row's mean and reciprocal standard deviation for its backward, instead of
//! the eight elementwise and reduction ops (and their gradients) a composite would record.

use rayon::prelude::*;

use super::ops_nn::{changed, with_arrays};
use super::Tensor;
use crate::dtype::float_only_error;
use crate::dynarray::{DType, DynArray, Element};
use crate::ndarray::{try_filled, NdArray};
use crate::parallel::{install, num_threads, PARALLEL_THRESHOLD};
use crate::shape::fmt_shape;
use crate::{shape_err, Result};

impl Tensor {
    /// Normalises over the trailing axes `normalized_shape` (the biased variance, `eps` added
    /// under the square root), then multiplies by `weight` and adds `bias` when given (each of
    /// shape `normalized_shape`). float32 and float64 operands promote.
    pub fn layer_norm(
        &self,
        normalized_shape: &[usize],
        weight: Option<&Tensor>,
        bias: Option<&Tensor>,
        eps: f64,
    ) -> Result<Tensor> {
        let mut parents = vec![self];
        parents.extend(weight);
        parents.extend(bias);
        // Where weight and bias sit among the parents.
        let (w_at, b_at) = match (weight.is_some(), bias.is_some()) {
            (true, true) => (Some(1), Some(2)),
            (true, false) => (Some(1), None),
            (false, true) => (None, Some(1)),
            (false, false) => (None, None),
        };
        let (out, stats, dtype) = with_arrays(&parents, |a| -> Result<_> {
            let n = check_shapes(
                a[0].shape(),
                normalized_shape,
                w_at.map(|i| a[i]),
                b_at.map(|i| a[i]),
            )?;
            let mut dtype = DType::F32;
            for (i, arr) in a.iter().enumerate() {
                let d = arr.dtype();
                if !d.is_float() {
                    return Err(float_only_error("layer_norm", d));
                }
                dtype = if i == 0 { d } else { dtype.promote(d) };
            }
            let cast: Vec<_> = a.iter().map(|x| x.as_dtype(dtype)).collect();
            let pick = |i: Option<usize>| i.map(|i| cast[i].as_ref());
            let (out, stats) = match dtype {
                DType::F32 => forward::<f32>(cast[0].as_ref(), n, pick(w_at), pick(b_at), eps)?,
                DType::F64 => forward::<f64>(cast[0].as_ref(), n, pick(w_at), pick(b_at), eps)?,
                other => return Err(float_only_error("layer_norm", other)),
            };
            Ok((out, stats, dtype))
        })?;
        let x_shape = self.shape();
        let norm_shape = normalized_shape.to_vec();
        Ok(Tensor::from_op(
            out,
            "layer_norm",
            &parents,
            move |g, ctx| {
                let need = Need {
                    x: ctx.needs_grad(0),
                    w: w_at.is_some_and(|i| ctx.needs_grad(i)),
                    b: b_at.is_some_and(|i| ctx.needs_grad(i)),
                };
                // The input is read only for dX and dW; the weight only for dX.
                let mut read = Vec::new();
                if need.x || need.w {
                    read.push(0);
                }
                if let (Some(i), true) = (w_at, need.x) {
                    read.push(i);
                }
                let [dx, dw, db] = ctx.with_inputs(&read, |a| {
                    let x = read
                        .iter()
                        .position(|&i| i == 0)
                        .map(|k| a[k].as_dtype(dtype));
                    let w = read
                        .iter()
                        .position(|&i| Some(i) == w_at)
                        .map(|k| a[k].as_dtype(dtype));
                    if x.as_ref().is_some_and(|x| x.shape() != x_shape.as_slice()) {
                        return Err(changed("layer_norm"));
                    }
                    let g = g.as_dtype(dtype);
                    match dtype {
                        DType::F32 => backward::<f32>(
                            &g,
                            x.as_deref(),
                            w.as_deref(),
                            &stats,
                            &norm_shape,
                            need,
                        ),
                        DType::F64 => backward::<f64>(
                            &g,
                            x.as_deref(),
                            w.as_deref(),
                            &stats,
                            &norm_shape,
                            need,
                        ),
                        other => Err(float_only_error("layer_norm", other)),
                    }
                })?;
                let mut grads = vec![dx];
                if w_at.is_some() {
                    grads.push(dw);
                }
                if b_at.is_some() {
                    grads.push(db);
                }
                Ok(grads)
            },
        ))
    }
}

/// Which gradients a backward computes.
#[derive(Clone, Copy)]
struct Need {
    x: bool,
    w: bool,
    b: bool,
}

/// Checks that `x` ends in `normalized_shape` and that weight and bias have that shape;
/// returns the row length (the product of `normalized_shape`).
fn check_shapes(
    x: &[usize],
    normalized_shape: &[usize],
    weight: Option<&DynArray>,
    bias: Option<&DynArray>,
) -> Result<usize> {
    let k = normalized_shape.len();
    if k == 0 || x.len() < k || x[x.len() - k..] != *normalized_shape {
        return Err(shape_err!(
            "layer_norm: input of shape {} does not end in normalized_shape {}",
            fmt_shape(x),
            fmt_shape(normalized_shape)
        ));
    }
    for (what, a) in [("weight", weight), ("bias", bias)] {
        if let Some(a) = a.filter(|a| a.shape() != normalized_shape) {
            return Err(shape_err!(
                "layer_norm: {what} of shape {} does not match normalized_shape {}",
                fmt_shape(a.shape()),
                fmt_shape(normalized_shape)
            ));
        }
    }
    Ok(normalized_shape.iter().product())
}

/// Rows per task: enough elements to be worth a thread, and one task per thread at most.
fn rows_per_task(rows: usize, n: usize) -> usize {
    let threads = match rows * n >= PARALLEL_THRESHOLD {
        true => num_threads(),
        false => 1,
    };
    rows.div_ceil(threads.max(1)).max(1)
}

/// `Σ f(x)` over a slice in eight interleaved partial sums (a fixed order the compiler can
/// keep in vector registers).
#[inline(always)]
fn lane_sum<T: Element>(xs: &[T], f: impl Fn(usize, T) -> T) -> T {
    let mut acc = [T::zero(); 8];
    let mut chunks = xs.chunks_exact(8);
    let mut at = 0;
    for c in &mut chunks {
        for (l, (a, &v)) in acc.iter_mut().zip(c).enumerate() {
            *a = *a + f(at + l, v);
        }
        at += 8;
    }
    let tail = chunks
        .remainder()
        .iter()
        .enumerate()
        .fold(T::zero(), |s, (l, &v)| s + f(at + l, v));
    acc.iter().fold(tail, |s, &a| s + a)
}

/// The row's mean and `1/√(var + eps)`.
fn row_stats<T: Element>(row: &[T], eps: T) -> (T, T) {
    let inv_n = T::one() / T::from_usize(row.len()).unwrap_or_else(T::one);
    let mean = lane_sum(row, |_, v| v) * inv_n;
    let var = lane_sum(row, |_, v| (v - mean) * (v - mean)) * inv_n;
    (mean, T::one() / (var + eps).sqrt())
}

/// The data of `a`, already cast to `T`'s dtype.
fn data_of<T: Element>(a: &DynArray) -> Result<&[T]> {
    Ok(super::ops_nn::typed::<T>(a)?.data())
}

/// The output and the per-row `(mean, rstd)` pairs (shape `(rows, 2)`).
fn forward<T: Element>(
    x: &DynArray,
    n: usize,
    w: Option<&DynArray>,
    b: Option<&DynArray>,
    eps: f64,
) -> Result<(DynArray, DynArray)> {
    let typed = data_of::<T>;
    let (xd, w, b) = (
        typed(x)?,
        w.map(typed).transpose()?,
        b.map(typed).transpose()?,
    );
    let rows = xd.len() / n;
    let eps = T::from_f64_lossy(eps);
    let mut out = try_filled(xd.len(), T::zero())?;
    let mut stats = try_filled(2 * rows, T::zero())?;
    let per = rows_per_task(rows, n);
    let task = |((xs, ys), st): ((&[T], &mut [T]), &mut [T])| {
        for ((row, y), st) in xs
            .chunks_exact(n)
            .zip(ys.chunks_exact_mut(n))
            .zip(st.chunks_exact_mut(2))
        {
            let (mean, rstd) = row_stats(row, eps);
            st[0] = mean;
            st[1] = rstd;
            match (w, b) {
                (Some(w), Some(b)) => {
                    for (((y, &v), &w), &b) in y.iter_mut().zip(row).zip(w).zip(b) {
                        *y = (v - mean) * rstd * w + b;
                    }
                }
                (Some(w), None) => {
                    for ((y, &v), &w) in y.iter_mut().zip(row).zip(w) {
                        *y = (v - mean) * rstd * w;
                    }
                }
                (None, Some(b)) => {
                    for ((y, &v), &b) in y.iter_mut().zip(row).zip(b) {
                        *y = (v - mean) * rstd + b;
                    }
                }
                (None, None) => {
                    for (y, &v) in y.iter_mut().zip(row) {
                        *y = (v - mean) * rstd;
                    }
                }
            }
        }
    };
    if rows > 0 {
        let parts = xd
            .chunks(per * n)
            .zip(out.chunks_mut(per * n))
            .zip(stats.chunks_mut(per * 2));
        if per < rows {
            let parts: Vec<_> = parts.collect();
            install(|| parts.into_par_iter().for_each(task));
        } else {
            parts.for_each(task);
        }
    }
    Ok((
        T::wrap(NdArray::from_vec(out, x.shape())?),
        T::wrap(NdArray::from_vec(stats, &[rows, 2])?),
    ))
}

/// `[dX, dW, dB]` (those in `need`) from the upstream gradient, the input (needed for dX and
/// dW), the weight (for dX) and the saved row statistics.
fn backward<T: Element>(
    g: &DynArray,
    x: Option<&DynArray>,
    w: Option<&DynArray>,
    stats: &DynArray,
    norm_shape: &[usize],
    need: Need,
) -> Result<[Option<DynArray>; 3]> {
    let n: usize = norm_shape.iter().product();
    let typed = data_of::<T>;
    let (gd, st) = (typed(g)?, typed(stats)?);
    let rows = st.len() / 2;
    let x = x.map(typed).transpose()?;
    let w = w.map(typed).transpose()?;
    if gd.len() != rows * n || x.is_some_and(|x| x.len() != gd.len()) {
        return Err(changed("layer_norm"));
    }
    let mut dx = match need.x {
        true => try_filled(gd.len(), T::zero())?,
        false => Vec::new(),
    };
    let per = rows_per_task(rows, n);
    // Each task sums its rows' share of dW and dB; the shares are added at the end.
    let task = |(p, dx): (usize, &mut [T])| -> (Vec<T>, Vec<T>) {
        let mut dw = vec![T::zero(); if need.w { n } else { 0 }];
        let mut db = vec![T::zero(); if need.b { n } else { 0 }];
        let inv_n = T::one() / T::from_usize(n).unwrap_or_else(T::one);
        for r in p * per..((p + 1) * per).min(rows) {
            let gr = &gd[r * n..(r + 1) * n];
            let (mean, rstd) = (st[2 * r], st[2 * r + 1]);
            if need.b {
                crate::ndarray::elementwise::add_into(&mut db, gr);
            }
            let Some(x) = x else { continue };
            let xr = &x[r * n..(r + 1) * n];
            if need.w {
                for ((d, &gv), &v) in dw.iter_mut().zip(gr).zip(xr) {
                    *d = *d + gv * ((v - mean) * rstd);
                }
            }
            if need.x {
                let dxhat = |j: usize, gv: T| match w {
                    Some(w) => gv * w[j],
                    None => gv,
                };
                let a = lane_sum(gr, dxhat) * inv_n;
                let b = lane_sum(gr, |j, gv| dxhat(j, gv) * ((xr[j] - mean) * rstd)) * inv_n;
                let dr = &mut dx[(r - p * per) * n..(r - p * per + 1) * n];
                for (j, (d, (&gv, &v))) in dr.iter_mut().zip(gr.iter().zip(xr)).enumerate() {
                    *d = rstd * (dxhat(j, gv) - a - (v - mean) * rstd * b);
                }
            }
        }
        (dw, db)
    };
    let shares: Vec<(Vec<T>, Vec<T>)> = if rows == 0 {
        Vec::new()
    } else if need.x {
        let parts: Vec<_> = dx.chunks_mut(per * n).enumerate().collect();
        match per < rows {
            true => install(|| parts.into_par_iter().map(task).collect()),
            false => parts.into_iter().map(task).collect(),
        }
    } else {
        let parts = rows.div_ceil(per);
        match per < rows {
            true => install(|| {
                (0..parts)
                    .into_par_iter()
                    .map(|p| task((p, &mut [])))
                    .collect()
            }),
            false => (0..parts).map(|p| task((p, &mut []))).collect(),
        }
    };
    let sum = |pick: fn(&(Vec<T>, Vec<T>)) -> &Vec<T>| -> Result<DynArray> {
        let mut total = try_filled(n, T::zero())?;
        for s in &shares {
            crate::ndarray::elementwise::add_into(&mut total, pick(s));
        }
        Ok(T::wrap(NdArray::from_vec(total, norm_shape)?))
    };
    let dx = match need.x {
        true => Some(T::wrap(NdArray::from_vec(dx, g.shape())?)),
        false => None,
    };
    let dw = match need.w {
        true => Some(sum(|s| &s.0)?),
        false => None,
    };
    let db = match need.b {
        true => Some(sum(|s| &s.1)?),
        false => None,
    };
    Ok([dx, dw, db])
}
