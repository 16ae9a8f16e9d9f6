//! The fused `linear` on `Tensor`: `x @ Wᵀ + b` as one GEMM that starts from the bias rows,
//! whatever the rank of `x` (its batch axes read as rows in place), and a backward of two
//! GEMMs (dX = G·W, dW = Gᵀ·X; when large, side by side, or split by output features when
//! the weight is at least as tall as the batch) and the bias's column sums.

use super::ops_nn::{changed, typed, with_arrays};
use super::Tensor;
use crate::dtype::float_only_error;
use crate::dynarray::{DType, DynArray, Element};
use crate::ndarray::elementwise::simd::{self, Kernel};
use crate::ndarray::{linear_grads_by_features, matmul_flat, Float, NdArray, GEMM_PARALLEL_WORK};
use crate::parallel::join_split;
use crate::shape::fmt_shape;
use crate::{shape_err, Result};

impl Tensor {
    /// `self @ weightᵀ + bias`, fused: `self` is `(..., in)`, `weight` `(out, in)` (PyTorch's
    /// layout, never transposed in memory), `bias` `(out,)`; the result is `(..., out)`.
    pub fn linear(&self, weight: &Tensor, bias: Option<&Tensor>) -> Result<Tensor> {
        let mut parents = vec![self, weight];
        parents.extend(bias);
        let (out, shapes) = with_arrays(&parents, |a| {
            let shapes = [a[0].shape().to_vec(), a[1].shape().to_vec()];
            linear_forward(a[0], a[1], a.get(2).copied()).map(|out| (out, shapes))
        })?;
        Ok(Tensor::from_op(out, "linear", &parents, move |g, ctx| {
            // dX reads only W and dW only X: read just what the wanted gradients need.
            let has_bias = ctx.num_inputs() > 2;
            let db = match has_bias && ctx.needs_grad(2) {
                true => Some(linear_bias_grad(g, &shapes)?),
                false => None,
            };
            let mut grads = match [ctx.needs_grad(0), ctx.needs_grad(1)] {
                [true, true] => ctx.with_inputs(&[0, 1], |xw| {
                    linear_backward(g, Some(xw[0]), Some(xw[1]), &shapes)
                })?,
                [true, false] => linear_backward(g, None, Some(&*ctx.input(1)?), &shapes)?,
                [false, true] => linear_backward(g, Some(&*ctx.input(0)?), None, &shapes)?,
                [false, false] => vec![None, None],
            };
            if has_bias {
                grads.push(db);
            }
            Ok(grads)
        }))
    }
}

fn linear_forward(x: &DynArray, w: &DynArray, b: Option<&DynArray>) -> Result<DynArray> {
    let (xs, ws) = (x.shape(), w.shape());
    if ws.len() != 2 {
        return Err(shape_err!(
            "linear: weight must be 2-D (out_features, in_features), got shape {}",
            fmt_shape(ws)
        ));
    }
    let (out_f, in_f) = (ws[0], ws[1]);
    match xs.last() {
        None => {
            return Err(shape_err!(
                "linear: input must have at least 1 dimension (..., {in_f}), got a 0-d tensor"
            ))
        }
        Some(&k) if k != in_f => {
            return Err(shape_err!(
                "linear: input of shape {} does not fit weight of shape {}: \
                 in_features {k} != {in_f}",
                fmt_shape(xs),
                fmt_shape(ws)
            ))
        }
        Some(_) => {}
    }
    if let Some(b) = b {
        if b.shape() != [out_f] {
            return Err(shape_err!(
                "linear: bias of shape {} does not match weight of shape {}: expected ({out_f},)",
                fmt_shape(b.shape()),
                fmt_shape(ws)
            ));
        }
    }
    // The batch axes of X flatten into rows: one GEMM whatever X's rank (a 3-D X read as a
    // batch of matrices would pack W once per batch entry).
    let rows: usize = xs[..xs.len() - 1].iter().product();
    let mut out_shape = xs.to_vec();
    if let Some(last) = out_shape.last_mut() {
        *last = out_f;
    }
    // The bias rows are where the GEMM starts: no second pass over the output.
    flat_product(x, [rows, in_f], false, w, [out_f, in_f], true, b)?.into_shape(&out_shape)
}

/// dX = G @ W (when `w` is given) and dW = Gᵀ @ X (when `x` is given), with the batch axes
/// of X and G flattened into rows; `shapes` are X's and W's at the forward.
fn linear_backward(
    g: &DynArray,
    x: Option<&DynArray>,
    w: Option<&DynArray>,
    shapes: &[Vec<usize>; 2],
) -> Result<Vec<Option<DynArray>>> {
    let [xs, ws] = shapes;
    let (&[out_f, in_f], Some(_)) = (ws.as_slice(), xs.last()) else {
        return Err(changed("linear"));
    };
    let unchanged = x.is_none_or(|x| x.shape() == xs.as_slice())
        && w.is_none_or(|w| w.shape() == ws.as_slice())
        && g.shape().last() == Some(&out_f);
    if !unchanged {
        return Err(changed("linear"));
    }
    let rows: usize = xs[..xs.len() - 1].iter().product();
    // G, X and dX are read as `rows × features` matrices in place (no reshaped copies).
    let dx = || match w {
        Some(w) => Ok(Some(
            flat_product(g, [rows, out_f], false, w, [out_f, in_f], false, None)?.into_shape(xs)?,
        )),
        None => Ok(None),
    };
    let dw = || match x {
        Some(x) => Ok(Some(flat_product(
            g,
            [rows, out_f],
            true,
            x,
            [rows, in_f],
            false,
            None,
        )?)),
        None => Ok(None),
    };
    let (dx, dw) = match (x, w) {
        (Some(x), Some(w)) if rows * out_f * in_f >= GEMM_PARALLEL_WORK => {
            let threads = crate::parallel::num_threads();
            if threads > 1 && out_f >= rows.max(2 * threads) {
                // A weight at least as tall as the batch: split by its rows, so each
                // thread keeps to its own (see `linear_grads_by_features`).
                let (dx, dw) = grads_by_features(g, x, w, [rows, out_f, in_f], threads)?;
                (Ok(Some(dx.into_shape(xs)?)), Ok(Some(dw)))
            } else {
                // dX and dW are GEMMs of equal work (rows·out·in each): side by side.
                join_split(dx, dw)
            }
        }
        _ => (dx(), dw()),
    };
    let (dx, dw): (Option<DynArray>, Option<DynArray>) = (dx?, dw?);
    Ok(vec![dx, dw])
}

/// [`linear_grads_by_features`] on DynArrays: `(dX, dW)` as `rows × in` and `out × in`.
fn grads_by_features(
    g: &DynArray,
    x: &DynArray,
    w: &DynArray,
    dims: [usize; 3],
    threads: usize,
) -> Result<(DynArray, DynArray)> {
    fn typed_grads<T: Element + Float>(
        [g, x, w]: [&DynArray; 3],
        dims: [usize; 3],
        threads: usize,
    ) -> Result<(NdArray<T>, NdArray<T>)> {
        let [g, x, w] = [typed::<T>(g)?, typed::<T>(x)?, typed::<T>(w)?];
        linear_grads_by_features(g.data(), x.data(), w.data(), dims, threads)
    }
    let mut dtype = g.dtype();
    for a in [g, x, w] {
        a.require_float("linear")?;
        dtype = dtype.promote(a.dtype());
    }
    let [g, x, w] = [g.as_dtype(dtype), x.as_dtype(dtype), w.as_dtype(dtype)];
    let arrays = [g.as_ref(), x.as_ref(), w.as_ref()];
    Ok(match dtype {
        DType::F32 => {
            let (dx, dw) = typed_grads::<f32>(arrays, dims, threads)?;
            (DynArray::F32(dx), DynArray::F32(dw))
        }
        DType::F64 => {
            let (dx, dw) = typed_grads::<f64>(arrays, dims, threads)?;
            (DynArray::F64(dx), DynArray::F64(dw))
        }
        other => return Err(float_only_error("linear", other)),
    })
}

/// db = the column sums of G, its batch axes flattened into rows.
fn linear_bias_grad(g: &DynArray, shapes: &[Vec<usize>; 2]) -> Result<DynArray> {
    let (xs, out_f) = (&shapes[0], shapes[1].first().copied().unwrap_or(0));
    if g.shape().last() != Some(&out_f) || xs.is_empty() {
        return Err(changed("linear"));
    }
    let rows: usize = xs[..xs.len() - 1].iter().product();
    if rows.checked_mul(out_f) != Some(g.size()) {
        return Err(changed("linear"));
    }
    match g {
        DynArray::F32(g) => Ok(DynArray::F32(column_sums(g.data(), out_f)?)),
        DynArray::F64(g) => Ok(DynArray::F64(column_sums(g.data(), out_f)?)),
        other => Err(float_only_error("linear", other.dtype())),
    }
}

/// The sums over rows of a row-major `(rows, cols)` buffer: `(cols,)`.
fn column_sums<T: Float>(data: &[T], cols: usize) -> Result<NdArray<T>> {
    let mut out = crate::ndarray::try_filled(cols, T::zero())?;
    if cols > 0 {
        simd::run(ColumnSums {
            data,
            out: &mut out,
        });
    }
    NdArray::from_vec(out, &[cols])
}

/// `out += row` for every row of `data` (rows of `out.len()`), compiled per instruction set.
struct ColumnSums<'a, T> {
    data: &'a [T],
    out: &'a mut [T],
}

impl<T: Float> Kernel for ColumnSums<'_, T> {
    fn work(&self) -> usize {
        self.data.len()
    }

    #[inline(always)]
    fn run(self) {
        for row in self.data.chunks_exact(self.out.len()) {
            for (o, &v) in self.out.iter_mut().zip(row) {
                *o = *o + v;
            }
        }
    }
}

/// `a @ b (+ bias)` of float arrays read as the matrices `a_dims` and `b_dims` (each
/// transposed when asked) whatever shape they are stored with, their dtypes promoted.
fn flat_product(
    a: &DynArray,
    a_dims: [usize; 2],
    ta: bool,
    b: &DynArray,
    b_dims: [usize; 2],
    tb: bool,
    bias: Option<&DynArray>,
) -> Result<DynArray> {
    a.require_float("linear")?;
    b.require_float("linear")?;
    let mut dtype = a.dtype().promote(b.dtype());
    if let Some(c) = bias {
        c.require_float("linear")?;
        dtype = dtype.promote(c.dtype());
    }
    let (a, b) = (a.as_dtype(dtype), b.as_dtype(dtype));
    let bias = bias.map(|c| c.as_dtype(dtype));
    let (a, b, bias) = (a.as_ref(), b.as_ref(), bias.as_deref());
    Ok(match dtype {
        DType::F32 => DynArray::F32(typed_flat_product(a, (a_dims, ta), b, (b_dims, tb), bias)?),
        DType::F64 => DynArray::F64(typed_flat_product(a, (a_dims, ta), b, (b_dims, tb), bias)?),
        other => return Err(float_only_error("linear", other)),
    })
}

/// [`matmul_flat`] of operands already converted to `T`.
fn typed_flat_product<T: Element + Float>(
    a: &DynArray,
    (a_dims, ta): ([usize; 2], bool),
    b: &DynArray,
    (b_dims, tb): ([usize; 2], bool),
    bias: Option<&DynArray>,
) -> Result<NdArray<T>> {
    let bias = bias.map(|c| typed::<T>(c).map(NdArray::data)).transpose()?;
    matmul_flat(
        typed::<T>(a)?.data(),
        a_dims,
        ta,
        typed::<T>(b)?.data(),
        b_dims,
        tb,
        bias,
    )
}
