//! Selection ops on `Tensor` — `where`, `masked_fill`, `tril`/`triu`, `gather`, `one_hot`,
//! `topk` — each with its backward rule beside its forward. They work on every dtype (the
//! gradient flows only through float ones); conditions and masks must be bool.

use std::cmp::Ordering;

use super::record::{self, kv};
use super::Tensor;
use crate::dtype::Scalar;
use crate::dynarray::DynArray;
use crate::ndarray::element::Elem;
use crate::ndarray::{for_each_offset, try_with_capacity, NdArray};
use crate::shape::{broadcast_shapes, broadcast_strides, fmt_shape, normalize_axis, strides_of};
use crate::{Error, Result};

/// Runs `$body` on whichever typed array is inside, wrapping a typed result back.
macro_rules! each_dtype {
    ($arr:expr, $a:ident => $body:expr) => {
        match $arr {
            DynArray::F32($a) => DynArray::F32($body),
            DynArray::F64($a) => DynArray::F64($body),
            DynArray::I64($a) => DynArray::I64($body),
            DynArray::I32($a) => DynArray::I32($body),
            DynArray::Bool($a) => DynArray::Bool($body),
        }
    };
}
pub(super) use each_dtype;

/// The bool array inside `a`, or a TypeError naming `op` and `what`.
fn bool_view<'a>(op: &str, what: &str, a: &'a DynArray) -> Result<&'a NdArray<bool>> {
    match a {
        DynArray::Bool(m) => Ok(m),
        other => Err(Error::Type(format!(
            "{op}: {what} must be a bool tensor, got dtype {}; compare first, e.g. t > 0",
            other.dtype()
        ))),
    }
}

/// A copy of `x` with `value` written wherever `mask` (broadcast to `x`'s shape) equals
/// `when`. The mask must broadcast to `x`'s shape without enlarging it.
fn fill_where<T: Elem>(
    op: &str,
    x: &NdArray<T>,
    mask: &NdArray<bool>,
    when: bool,
    value: T,
) -> Result<NdArray<T>> {
    let shape = x.shape();
    if broadcast_shapes(op, mask.shape(), shape)? != shape {
        return Err(Error::Shape(format!(
            "{op}: the mask of shape {} does not broadcast to the tensor's shape {}",
            fmt_shape(mask.shape()),
            fmt_shape(shape)
        )));
    }
    let mut out = x.data().to_vec();
    let m = mask.data();
    if repeats_whole(mask.shape(), shape) {
        // The mask is the trailing block of the shape (a causal (T, T) mask over
        // (B, H, T, T) scores): apply it block by block, no stride walk.
        if !m.is_empty() {
            for block in out.chunks_mut(m.len()) {
                for (o, &k) in block.iter_mut().zip(m) {
                    if k == when {
                        *o = value;
                    }
                }
            }
        }
    } else {
        let strides = broadcast_strides(mask.shape(), shape);
        let mut i = 0;
        for_each_offset(shape, &strides, 0, |j| {
            if m[j] == when {
                out[i] = value;
            }
            i += 1;
        });
    }
    NdArray::from_vec(out, shape)
}

/// Whether an array of `shape` broadcast to `target` repeats its data whole along the
/// leading axes: its shape, leading 1s dropped, is the tail of `target`.
fn repeats_whole(shape: &[usize], target: &[usize]) -> bool {
    let lead = shape.iter().take_while(|&&d| d == 1).count();
    let core = &shape[lead..];
    core.len() <= target.len() && target[target.len() - core.len()..] == *core
}

/// `g` with zeros where `mask == when` (the backward of where/masked_fill).
fn zero_where(op: &str, g: &DynArray, mask: &NdArray<bool>, when: bool) -> Result<DynArray> {
    Ok(each_dtype!(g, a => fill_where(op, a, mask, when, Elem::from_i64(0))?))
}

/// `cond ? a : b` elementwise under three-way broadcasting (a and b share one dtype).
fn select<T: Elem>(cond: &NdArray<bool>, a: &NdArray<T>, b: &NdArray<T>) -> Result<NdArray<T>> {
    let shape = broadcast_shapes("where", a.shape(), b.shape())?;
    let shape = broadcast_shapes("where", cond.shape(), &shape)?;
    let n = crate::shape::checked_size(&shape)?;
    let (c, x, y) = (cond.data(), a.data(), b.data());
    let mut out = try_with_capacity(n)?;
    if cond.shape() == shape && a.shape() == shape && b.shape() == shape {
        out.extend(
            c.iter()
                .zip(x)
                .zip(y)
                .map(|((&k, &p), &q)| if k { p } else { q }),
        );
        return NdArray::from_vec(out, &shape);
    }
    let whole = |s: &[usize]| repeats_whole(s, &shape);
    if whole(cond.shape()) && whole(a.shape()) && whole(b.shape()) {
        // Each operand repeats whole along the leading axes (or is one element): walk them
        // with wrapping counters instead of strides.
        let (mut ic, mut ia, mut ib) = (0, 0, 0);
        for _ in 0..n {
            out.push(if c[ic] { x[ia] } else { y[ib] });
            ic = if ic + 1 == c.len() { 0 } else { ic + 1 };
            ia = if ia + 1 == x.len() { 0 } else { ia + 1 };
            ib = if ib + 1 == y.len() { 0 } else { ib + 1 };
        }
        return NdArray::from_vec(out, &shape);
    }
    let (sc, sa, sb) = (
        broadcast_strides(cond.shape(), &shape),
        broadcast_strides(a.shape(), &shape),
        broadcast_strides(b.shape(), &shape),
    );
    // Walk the output once, keeping each operand's offset like an odometer.
    let nd = shape.len();
    if n == 0 {
        return NdArray::from_vec(out, &shape);
    }
    let mut idx = vec![0usize; nd];
    let (mut oc, mut oa, mut ob) = (0usize, 0usize, 0usize);
    for _ in 0..n {
        out.push(if c[oc] { x[oa] } else { y[ob] });
        let mut d = nd;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            oc += sc[d];
            oa += sa[d];
            ob += sb[d];
            if idx[d] < shape[d] {
                break;
            }
            oc -= sc[d] * shape[d];
            oa -= sa[d] * shape[d];
            ob -= sb[d] * shape[d];
            idx[d] = 0;
        }
    }
    NdArray::from_vec(out, &shape)
}

/// Zeroes the elements above (`lower`) or below the `k`-th diagonal of the last two axes.
fn triangle<T: Elem>(op: &str, x: &NdArray<T>, k: isize, lower: bool) -> Result<NdArray<T>> {
    let shape = x.shape();
    if shape.len() < 2 {
        return Err(Error::Shape(format!(
            "{op}: expected a tensor of at least 2 dimensions, got shape {}",
            fmt_shape(shape)
        )));
    }
    let (rows, cols) = (shape[shape.len() - 2], shape[shape.len() - 1]);
    let mut out = x.data().to_vec();
    if rows * cols > 0 {
        for m in out.chunks_mut(rows * cols) {
            for (r, row) in m.chunks_mut(cols).enumerate() {
                for (c, v) in row.iter_mut().enumerate() {
                    let diag = c as isize - r as isize;
                    let keep = if lower { diag <= k } else { diag >= k };
                    if !keep {
                        *v = T::default();
                    }
                }
            }
        }
    }
    NdArray::from_vec(out, shape)
}

/// Flat offsets into an array of `shape` of the elements `index` picks along `axis`
/// (PyTorch's gather: the index has the input's rank and no larger an extent elsewhere).
fn gather_offsets(shape: &[usize], index: &DynArray, axis: usize) -> Result<Vec<usize>> {
    let ishape = index.shape();
    if ishape.len() != shape.len() {
        return Err(Error::Shape(format!(
            "gather: the index must have as many dimensions as the input ({}), got shape {}",
            shape.len(),
            fmt_shape(ishape)
        )));
    }
    if let Some(d) = (0..shape.len()).find(|&d| d != axis && ishape[d] > shape[d]) {
        return Err(Error::Shape(format!(
            "gather: the index of shape {} is larger than the input of shape {} at axis {d}",
            fmt_shape(ishape),
            fmt_shape(shape)
        )));
    }
    let values = match index {
        DynArray::I64(_) | DynArray::I32(_) => index.to_i64_vec(),
        other => {
            return Err(Error::Type(format!(
                "gather: the index must be an int64 or int32 tensor, got dtype {}",
                other.dtype()
            )))
        }
    };
    let strides = strides_of(shape);
    let n = values.len();
    let mut offsets = try_with_capacity(n)?;
    let nd = shape.len();
    let mut idx = vec![0usize; nd];
    let len = shape[axis] as i64;
    for &v in &values {
        if v < 0 || v >= len {
            return Err(Error::Index(format!(
                "gather: index {v} is out of bounds for axis {axis} of size {len}"
            )));
        }
        let mut off = v as usize * strides[axis];
        for d in 0..nd {
            if d != axis {
                off += idx[d] * strides[d];
            }
        }
        offsets.push(off);
        let mut d = nd;
        while d > 0 {
            d -= 1;
            idx[d] += 1;
            if idx[d] < ishape[d] {
                break;
            }
            idx[d] = 0;
        }
    }
    Ok(offsets)
}

/// NaN counts as the largest value, as in PyTorch's sort and topk.
fn total_cmp<T: PartialOrd>(a: &T, b: &T) -> Ordering {
    match a.partial_cmp(b) {
        Some(o) => o,
        None => {
            let a_nan = a.partial_cmp(a).is_none();
            let b_nan = b.partial_cmp(b).is_none();
            a_nan.cmp(&b_nan)
        }
    }
}

/// The `k` largest (or smallest) values along `axis` of every lane, in order, and the flat
/// offsets of each in `x` and their positions along the axis.
fn topk_lanes<T: Elem>(
    x: &NdArray<T>,
    k: usize,
    axis: usize,
    largest: bool,
) -> Result<(NdArray<T>, Vec<usize>, Vec<i64>)> {
    let shape = x.shape();
    let len = shape[axis];
    let inner: usize = shape[axis + 1..].iter().product();
    let outer: usize = shape[..axis].iter().product();
    let mut out_shape = shape.to_vec();
    out_shape[axis] = k;
    let total = outer * k * inner;
    let mut values = vec![T::default(); total];
    let mut offsets = vec![0usize; total];
    let mut positions = vec![0i64; total];
    let data = x.data();
    let mut lane: Vec<usize> = Vec::with_capacity(len);
    for o in 0..outer {
        for i in 0..inner {
            let base = o * len * inner + i;
            lane.clear();
            lane.extend(0..len);
            // Stable: among equal values the lower position comes first.
            let cmp = |p: &usize, q: &usize| {
                let c = total_cmp(&data[base + p * inner], &data[base + q * inner]);
                if largest {
                    c.reverse()
                } else {
                    c
                }
            };
            if k < len {
                lane.select_nth_unstable_by(k, |p, q| cmp(p, q).then(p.cmp(q)));
                lane.truncate(k);
            }
            lane.sort_by(|p, q| cmp(p, q).then(p.cmp(q)));
            for (j, &p) in lane.iter().take(k).enumerate() {
                let dst = o * k * inner + j * inner + i;
                values[dst] = data[base + p * inner];
                offsets[dst] = base + p * inner;
                positions[dst] = p as i64;
            }
        }
    }
    Ok((NdArray::from_vec(values, &out_shape)?, offsets, positions))
}

impl Tensor {
    /// `cond ? a : b` elementwise under broadcasting; `cond` must be bool, `a` and `b`
    /// promote to one dtype. Gradients flow to `a` where `cond` holds and to `b` elsewhere.
    pub fn where_(cond: &Tensor, a: &Tensor, b: &Tensor) -> Result<Tensor> {
        let out = {
            let c = cond.array();
            let cm = bool_view("where", "the condition", &c)?;
            super::read_pair(a, b, |x, y| -> Result<DynArray> {
                let dtype = x.dtype().promote(y.dtype());
                let (x, y) = (x.as_dtype(dtype), y.as_dtype(dtype));
                Ok(match (x.as_ref(), y.as_ref()) {
                    (DynArray::F32(p), DynArray::F32(q)) => DynArray::F32(select(cm, p, q)?),
                    (DynArray::F64(p), DynArray::F64(q)) => DynArray::F64(select(cm, p, q)?),
                    (DynArray::I64(p), DynArray::I64(q)) => DynArray::I64(select(cm, p, q)?),
                    (DynArray::I32(p), DynArray::I32(q)) => DynArray::I32(select(cm, p, q)?),
                    (DynArray::Bool(p), DynArray::Bool(q)) => DynArray::Bool(select(cm, p, q)?),
                    _ => return Err(Error::Graph("internal error: where dtypes".into())),
                })
            })?
        };
        Ok(Tensor::from_op(out, "where", &[cond, a, b], |g, ctx| {
            let c = ctx.input(0)?;
            let m = bool_view("where", "the condition", &c)?;
            let ga = match ctx.needs_grad(1) {
                true => Some(zero_where("where", g, m, false)?),
                false => None,
            };
            let gb = match ctx.needs_grad(2) {
                true => Some(zero_where("where", g, m, true)?),
                false => None,
            };
            Ok(vec![None, ga, gb])
        }))
    }

    /// A copy with `value` wherever the bool `mask` (broadcast to this shape) is true; the
    /// dtype stays this tensor's. The gradient is 0 at the filled places.
    pub fn masked_fill(&self, mask: &Tensor, value: Scalar) -> Result<Tensor> {
        let out = {
            let (x, m) = (self.array(), mask.array());
            let mm = bool_view("masked_fill", "the mask", &m)?;
            fn v<T: Elem>(s: Scalar) -> T {
                match s {
                    Scalar::Float(f) => T::from_f64(f),
                    other => T::from_i64(other.to_i64()),
                }
            }
            each_dtype!(&*x, a => fill_where("masked_fill", a, mm, true, v(value))?)
        };
        let attrs = record::attrs(|| vec![kv("value", value)]);
        Ok(
            Tensor::from_op(out, "masked_fill", &[self, mask], |g, ctx| {
                let m = ctx.input(1)?;
                let mm = bool_view("masked_fill", "the mask", &m)?;
                Ok(vec![Some(zero_where("masked_fill", g, mm, true)?), None])
            })
            .recorded_with(attrs),
        )
    }

    /// The lower triangle of the last two axes: elements with `col - row > k` become 0.
    pub fn tril(&self, k: isize) -> Result<Tensor> {
        self.triangle("tril", k, true)
    }

    /// The upper triangle of the last two axes: elements with `col - row < k` become 0.
    pub fn triu(&self, k: isize) -> Result<Tensor> {
        self.triangle("triu", k, false)
    }

    fn triangle(&self, op: &'static str, k: isize, lower: bool) -> Result<Tensor> {
        let out = each_dtype!(&*self.array(), a => triangle(op, a, k, lower)?);
        let attrs = record::attrs(|| vec![kv("k", k)]);
        Ok(Tensor::from_op(out, op, &[self], move |g, _| {
            Ok(vec![Some(each_dtype!(g, a => triangle(op, a, k, lower)?))])
        })
        .recorded_with(attrs))
    }

    /// PyTorch's `gather`: `out[i][j][k] = self[index[i][j][k]][j][k]` for `axis = 0`, and
    /// so on. `index` is int64 or int32 of this tensor's rank; gradients scatter-add back.
    pub fn gather_along(&self, axis: isize, index: &Tensor) -> Result<Tensor> {
        let (out, offsets, shape) = {
            let x = self.array();
            let ax = normalize_axis("gather", axis, x.ndim().max(1))?;
            let idx = index.array();
            if x.ndim() == 0 {
                return Err(Error::Shape(
                    "gather: expected a tensor of at least 1 dimension".into(),
                ));
            }
            let offsets = gather_offsets(x.shape(), &idx, ax)?;
            (x.gather(&offsets, idx.shape()), offsets, x.shape().to_vec())
        };
        let attrs = record::attrs(|| vec![kv("axis", axis)]);
        Ok(Tensor::from_op(out, "gather", &[self, index], move |g, _| {
            Ok(vec![Some(g.scatter_add(&shape, &offsets)?), None])
        })
        .recorded_with(attrs))
    }

    /// One-hot rows: int64 of shape `self.shape + (num_classes,)`; `num_classes = None`
    /// takes the largest class + 1. Classes must be integers in `[0, num_classes)`.
    pub fn one_hot(&self, num_classes: Option<usize>) -> Result<Tensor> {
        let x = self.array();
        let classes = match &*x {
            DynArray::I64(_) | DynArray::I32(_) => x.to_i64_vec(),
            other => {
                return Err(Error::Type(format!(
                    "one_hot: expected an int64 or int32 tensor of class indices, got dtype {}",
                    other.dtype()
                )))
            }
        };
        let n = match num_classes {
            Some(n) => n,
            None => match classes.iter().max() {
                Some(&m) if m >= 0 => m as usize + 1,
                Some(_) => 0,
                None => {
                    return Err(Error::Value(
                        "one_hot: cannot infer num_classes of an empty tensor; pass it".into(),
                    ))
                }
            },
        };
        if let Some(&bad) = classes.iter().find(|&&c| c < 0 || c as u128 >= n as u128) {
            return Err(Error::Index(format!(
                "one_hot: class {bad} is out of range for {n} classes"
            )));
        }
        let mut shape = x.shape().to_vec();
        shape.push(n);
        let size = crate::shape::checked_size(&shape)?;
        let mut data = crate::ndarray::try_filled(size, 0i64)?;
        for (i, &c) in classes.iter().enumerate() {
            data[i * n + c as usize] = 1;
        }
        drop(x);
        let out = DynArray::I64(NdArray::from_vec(data, &shape)?);
        Ok(Tensor::untracked_op(out, "one_hot", &[self]))
    }

    /// The `k` largest (or smallest) elements along `axis`, sorted (largest first when
    /// `largest`), and their positions as int64. NaN counts as the largest; ties keep the
    /// lower position first. The gradient flows to the chosen elements.
    pub fn topk(&self, k: usize, axis: isize, largest: bool) -> Result<(Tensor, Tensor)> {
        let (values, offsets, positions, shape, out_shape) = {
            let x = self.array();
            if x.ndim() == 0 {
                // A 0-d tensor is one lane of one element.
                normalize_axis("topk", axis, 1)?;
                drop(x);
                let (v, i) = self.reshape(&[1])?.topk(k, 0, largest)?;
                return match k {
                    1 => Ok((v.reshape(&[])?, i.reshape(&[])?)),
                    _ => Ok((v, i)),
                };
            }
            let ax = normalize_axis("topk", axis, x.ndim())?;
            let len = x.shape()[ax];
            if k > len {
                return Err(Error::Value(format!(
                    "topk: k ({k}) is larger than the {len} elements along axis {ax}"
                )));
            }
            let (values, offsets, positions) = match &*x {
                DynArray::F32(a) => {
                    let (v, o, p) = topk_lanes(a, k, ax, largest)?;
                    (DynArray::F32(v), o, p)
                }
                DynArray::F64(a) => {
                    let (v, o, p) = topk_lanes(a, k, ax, largest)?;
                    (DynArray::F64(v), o, p)
                }
                DynArray::I64(a) => {
                    let (v, o, p) = topk_lanes(a, k, ax, largest)?;
                    (DynArray::I64(v), o, p)
                }
                DynArray::I32(a) => {
                    let (v, o, p) = topk_lanes(a, k, ax, largest)?;
                    (DynArray::I32(v), o, p)
                }
                DynArray::Bool(a) => {
                    let (v, o, p) = topk_lanes(a, k, ax, largest)?;
                    (DynArray::Bool(v), o, p)
                }
            };
            let out_shape = values.shape().to_vec();
            (values, offsets, positions, x.shape().to_vec(), out_shape)
        };
        let indices = DynArray::I64(NdArray::from_vec(positions, &out_shape)?);
        let values = Tensor::from_op(values, "topk", &[self], move |g, _| {
            Ok(vec![Some(g.scatter_add(&shape, &offsets)?)])
        });
        Ok((values, Tensor::new(indices, false)))
    }
}

#[cfg(test)]
#[path = "ops_select_tests.rs"]
mod tests;
