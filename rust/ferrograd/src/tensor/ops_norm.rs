//! `layer_norm` on `Tensor`: one fused op over the trailing axes (PyTorch's `F.layer_norm`)
//! that saves each row's mean and reciprocal standard deviation for its backward, instead of
//! the eight elementwise and reduction ops (and their gradients) a composite would record.

use std::mem::MaybeUninit;

use super::ops_nn::{changed, with_arrays};
use super::record::{self, kv};
use super::Tensor;
use crate::dtype::float_only_error;
use crate::dynarray::{DType, DynArray, Element};
use crate::ndarray::elementwise::simd::{self, Kernel};
use crate::ndarray::{try_filled, try_with_capacity, NdArray};
use crate::parallel::{for_each_item, map_items, num_threads, should_split_work};
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
        let attrs = record::attrs(|| {
            vec![
                kv("axis", x_shape.len() - norm_shape.len()),
                kv("eps", eps),
                kv("weight", w_at.is_some()),
                kv("bias", b_at.is_some()),
            ]
        });
        Ok(Tensor::from_op(out, "layer_norm", &parents, move |g, ctx| {
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
                    DType::F32 => {
                        backward::<f32>(&g, x.as_deref(), w.as_deref(), &stats, &norm_shape, need)
                    }
                    DType::F64 => {
                        backward::<f64>(&g, x.as_deref(), w.as_deref(), &stats, &norm_shape, need)
                    }
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
        })
        .recorded_with(attrs))
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
    // A row normalised costs about two additions per element (statistics, then the output).
    let threads = match should_split_work(rows * n, 2) {
        true => num_threads(),
        false => 1,
    };
    rows.div_ceil(threads.max(1)).max(1)
}

/// `Σ a·b` (or `Σ a` with `b` empty) in eight interleaved partial sums: a fixed order the
/// compiler keeps in vector registers.
#[inline(always)]
fn lane_dot<T: Element>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); 8];
    let mut ca = a.chunks_exact(8);
    if b.is_empty() {
        for c in &mut ca {
            for (s, &v) in acc.iter_mut().zip(c) {
                *s = *s + v;
            }
        }
        let tail = ca.remainder().iter().fold(T::zero(), |s, &v| s + v);
        return acc.iter().fold(tail, |s, &v| s + v);
    }
    let mut cb = b.chunks_exact(8);
    for (c, d) in (&mut ca).zip(&mut cb) {
        for ((s, &v), &u) in acc.iter_mut().zip(c).zip(d) {
            *s = *s + v * u;
        }
    }
    let tail = ca
        .remainder()
        .iter()
        .zip(cb.remainder())
        .fold(T::zero(), |s, (&v, &u)| s + v * u);
    acc.iter().fold(tail, |s, &v| s + v)
}

/// `Σ (a - c)²`, summed in the order of [`lane_dot`]`(d, d)` over `d = a - c` (the same
/// value, without storing `d`).
#[inline(always)]
fn lane_sq_dev<T: Element>(a: &[T], c: T) -> T {
    let mut acc = [T::zero(); 8];
    let mut ca = a.chunks_exact(8);
    for ch in &mut ca {
        for (s, &v) in acc.iter_mut().zip(ch) {
            let d = v - c;
            *s = *s + d * d;
        }
    }
    let tail = ca.remainder().iter().fold(T::zero(), |s, &v| {
        let d = v - c;
        s + d * d
    });
    acc.iter().fold(tail, |s, &v| s + v)
}

/// The data of `a`, already cast to `T`'s dtype.
fn data_of<T: Element>(a: &DynArray) -> Result<&[T]> {
    Ok(super::ops_nn::typed::<T>(a)?.data())
}

/// The forward of a block of rows: each row's `(mean, rstd)` into `stats`, the normalised,
/// scaled and shifted row into `out`. A loop compiled per instruction set.
struct ForwardRows<'a, T> {
    x: &'a [T],
    /// Written once, element by element (never read).
    out: &'a mut [MaybeUninit<T>],
    stats: &'a mut [T],
    w: Option<&'a [T]>,
    b: Option<&'a [T]>,
    n: usize,
    eps: T,
}

impl<T: Element> Kernel for ForwardRows<'_, T> {
    fn work(&self) -> usize {
        self.x.len()
    }

    #[inline(always)]
    fn run(self) {
        let n = self.n;
        let inv_n = T::one() / T::from_usize(n).unwrap_or_else(T::one);
        let rows = self.x.chunks_exact(n).zip(self.out.chunks_exact_mut(n));
        for ((row, y), st) in rows.zip(self.stats.chunks_exact_mut(2)) {
            let mean = lane_dot(row, &[]) * inv_n;
            let var = lane_sq_dev(row, mean) * inv_n;
            let rstd = T::one() / (var + self.eps).sqrt();
            st[0] = mean;
            st[1] = rstd;
            let ys = y.iter_mut().zip(row.iter().map(|&v| v - mean));
            match (self.w, self.b) {
                (Some(w), Some(b)) => {
                    for ((y, d), (&w, &b)) in ys.zip(w.iter().zip(b)) {
                        y.write(d * rstd * w + b);
                    }
                }
                (Some(w), None) => ys.zip(w).for_each(|((y, d), &w)| {
                    y.write(d * rstd * w);
                }),
                (None, Some(b)) => ys.zip(b).for_each(|((y, d), &b)| {
                    y.write(d * rstd + b);
                }),
                (None, None) => ys.for_each(|(y, d)| {
                    y.write(d * rstd);
                }),
            }
        }
    }
}

/// A forward task's rows of the input, of the output (to write) and of the statistics.
type RowBlock<'a, T> = ((&'a [T], &'a mut [MaybeUninit<T>]), &'a mut [T]);

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
    // (A zero-length row has nothing to normalise: no rows are walked.)
    let rows = xd.len().checked_div(n).unwrap_or(0);
    let eps = T::from_f64_lossy(eps);
    // The kernel writes every element of each row once, so the output is not zeroed first.
    let len = rows * n;
    let mut out = try_with_capacity(len)?;
    let mut stats = try_filled(2 * rows, T::zero())?;
    let per = rows_per_task(rows, n);
    let task = |((x, out), stats): RowBlock<'_, T>| {
        simd::run(ForwardRows {
            x,
            out,
            stats,
            w,
            b,
            n,
            eps,
        });
    };
    if rows > 0 {
        let parts = xd
            .chunks(per * n)
            .zip(out.spare_capacity_mut()[..len].chunks_mut(per * n))
            .zip(stats.chunks_mut(per * 2));
        if per < rows {
            for_each_item(parts, task);
        } else {
            parts.for_each(task);
        }
    }
    // SAFETY: the `len` reserved elements are the `rows` rows of `n` that the tasks cover
    // between them, and the kernel writes every element of every row.
    unsafe { out.set_len(len) };
    Ok((
        T::wrap(NdArray::from_vec(out, x.shape())?),
        T::wrap(NdArray::from_vec(stats, &[rows, 2])?),
    ))
}

/// The backward of a block of rows: its rows of dX, and its shares of dW and dB summed into
/// `dw`, `db` (each empty when not wanted). A loop compiled per instruction set.
struct BackwardRows<'a, T> {
    g: &'a [T],
    x: Option<&'a [T]>,
    w: Option<&'a [T]>,
    stats: &'a [T],
    /// Written once, element by element (never read).
    dx: &'a mut [MaybeUninit<T>],
    dw: &'a mut [T],
    db: &'a mut [T],
    /// Two rows of scratch: x̂ and dx̂ = g·w.
    scratch: &'a mut [T],
    n: usize,
}

impl<T: Element> Kernel for BackwardRows<'_, T> {
    fn work(&self) -> usize {
        self.g.len()
    }

    #[inline(always)]
    fn run(self) {
        let n = self.n;
        let inv_n = T::one() / T::from_usize(n).unwrap_or_else(T::one);
        let (xhat, dxhat) = self.scratch.split_at_mut(n);
        for (r, (g, st)) in self
            .g
            .chunks_exact(n)
            .zip(self.stats.chunks_exact(2))
            .enumerate()
        {
            if !self.db.is_empty() {
                self.db.iter_mut().zip(g).for_each(|(d, &g)| *d = *d + g);
            }
            let Some(x) = self.x else { continue };
            let (mean, rstd) = (st[0], st[1]);
            let x = &x[r * n..(r + 1) * n];
            for (h, &v) in xhat.iter_mut().zip(x) {
                *h = (v - mean) * rstd;
            }
            if !self.dw.is_empty() {
                for ((d, &g), &h) in self.dw.iter_mut().zip(g).zip(xhat.iter()) {
                    *d = *d + g * h;
                }
            }
            if self.dx.is_empty() {
                continue;
            }
            match self.w {
                Some(w) => {
                    for ((d, &g), &w) in dxhat.iter_mut().zip(g).zip(w) {
                        *d = g * w;
                    }
                }
                None => dxhat.copy_from_slice(g),
            }
            let a = lane_dot(dxhat, &[]) * inv_n;
            let b = lane_dot(dxhat, xhat) * inv_n;
            let dx = &mut self.dx[r * n..(r + 1) * n];
            for ((d, &dh), &h) in dx.iter_mut().zip(dxhat.iter()).zip(xhat.iter()) {
                d.write(rstd * (dh - a - h * b));
            }
        }
    }
}

/// One task's shares of dW and dB.
type Shares<T> = (Vec<T>, Vec<T>);

/// `[dX, dW, dB]` (those in `need`) from the upstream gradient, the input (needed for dX and
/// dW), the weight (for dX) and the saved row statistics; dW and dB have `norm_shape`.
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
    // When wanted, the kernel writes every element of dX once (the input is read then too),
    // so it is not zeroed first.
    let mut dx = try_with_capacity(if need.x { gd.len() } else { 0 })?;
    let per = rows_per_task(rows, n);
    let tasks = rows.div_ceil(per);
    // Each task sums its rows' share of dW and dB; the shares are added at the end.
    let task = |(p, dx): (usize, &mut [MaybeUninit<T>])| -> Result<Shares<T>> {
        let mut dw = try_filled(if need.w { n } else { 0 }, T::zero())?;
        let mut db = try_filled(if need.b { n } else { 0 }, T::zero())?;
        let mut scratch = try_filled(2 * n, T::zero())?;
        let r = p * per..((p + 1) * per).min(rows);
        simd::run(BackwardRows {
            g: &gd[r.start * n..r.end * n],
            x: x.map(|x| &x[r.start * n..r.end * n]),
            w,
            stats: &st[2 * r.start..2 * r.end],
            dx,
            dw: &mut dw,
            db: &mut db,
            scratch: &mut scratch,
            n,
        });
        Ok((dw, db))
    };
    let mut parts: Vec<(usize, &mut [MaybeUninit<T>])> = match need.x && n > 0 {
        true => dx.spare_capacity_mut()[..gd.len()]
            .chunks_mut(per * n)
            .enumerate()
            .collect(),
        false if n > 0 => (0..tasks).map(|p| (p, &mut [][..])).collect(),
        false => Vec::new(),
    };
    parts.truncate(tasks);
    let shares: Vec<Shares<T>> = match tasks > 1 {
        true => map_items(parts, task).into_iter().collect::<Result<_>>()?,
        false => parts.into_iter().map(task).collect::<Result<_>>()?,
    };
    let sum = |pick: fn(&Shares<T>) -> &Vec<T>| -> Result<DynArray> {
        let mut total = try_filled(n, T::zero())?;
        for s in &shares {
            crate::ndarray::elementwise::add_into(&mut total, pick(s));
        }
        Ok(T::wrap(NdArray::from_vec(total, norm_shape)?))
    };
    if need.x {
        // SAFETY: the tasks' chunks cover all `gd.len()` reserved elements (rows·n of them),
        // and with dX wanted the input is read, so the kernel writes every row of dX.
        unsafe { dx.set_len(gd.len()) };
    }
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
