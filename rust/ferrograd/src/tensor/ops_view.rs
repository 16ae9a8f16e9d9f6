//! PyTorch's view-style shape ops on `Tensor` — `unsqueeze squeeze view expand contiguous
//! narrow split chunk` — with backward rules. Arrays here are always contiguous, so a "view"
//! is a reshape and `contiguous` is the tensor itself.

use super::record::{self, kv};
use super::Tensor;
use crate::dynarray::DynArray;
use crate::shape::{broadcast_shapes, fmt_shape, normalize_axes, normalize_axis};
use crate::{Error, Result};

use super::ops_select::each_dtype;

/// Copies `len` positions from `start` along `axis` of a typed array.
fn narrow_typed<T: Copy>(
    x: &crate::NdArray<T>,
    axis: usize,
    start: usize,
    len: usize,
) -> Result<crate::NdArray<T>> {
    let shape = x.shape();
    let inner: usize = shape[axis + 1..].iter().product();
    let full = shape[axis] * inner;
    let mut out_shape = shape.to_vec();
    out_shape[axis] = len;
    let size = crate::shape::checked_size(&out_shape)?;
    let mut data = crate::ndarray::try_with_capacity(size)?;
    if size > 0 {
        for lane in x.data().chunks(full) {
            data.extend_from_slice(&lane[start * inner..(start + len) * inner]);
        }
    }
    crate::NdArray::from_vec(data, &out_shape)
}

/// Writes `g` into zeros of `shape` at positions `start..start+len` of `axis` (narrow's
/// backward).
fn unnarrow(g: &DynArray, shape: &[usize], axis: usize, start: usize) -> Result<DynArray> {
    fn typed<T: crate::ndarray::Float>(
        g: &crate::NdArray<T>,
        shape: &[usize],
        axis: usize,
        start: usize,
    ) -> Result<crate::NdArray<T>> {
        let inner: usize = shape[axis + 1..].iter().product();
        let full = shape[axis] * inner;
        let piece = g.shape()[axis] * inner;
        let size = crate::shape::checked_size(shape)?;
        if piece == 0 || full == 0 {
            return crate::NdArray::from_vec(crate::ndarray::try_zeroed::<T>(size)?, shape);
        }
        // Each lane is written once, in order: zeros, the piece, zeros (not zeros everywhere
        // and the piece over them; a split's backward makes one of these per piece).
        let mut data = crate::ndarray::try_with_capacity::<T>(size)?;
        let head = start * inner;
        let tail = full.checked_sub(head + piece).ok_or_else(|| {
            Error::Shape(format!(
                "narrow backward: a gradient of shape {} does not fit positions from {start} of \
                 shape {}",
                fmt_shape(g.shape()),
                fmt_shape(shape)
            ))
        })?;
        for src in g.data().chunks(piece) {
            data.resize(data.len() + head, T::zero());
            data.extend_from_slice(src);
            data.resize(data.len() + tail, T::zero());
        }
        crate::NdArray::from_vec(data, shape)
    }
    Ok(match g {
        DynArray::F32(a) => DynArray::F32(typed(a, shape, axis, start)?),
        DynArray::F64(a) => DynArray::F64(typed(a, shape, axis, start)?),
        other => {
            return Err(crate::dtype::float_only_error(
                "narrow backward",
                other.dtype(),
            ))
        }
    })
}

impl Tensor {
    /// A new axis of length 1 at `axis` (`-1` appends one).
    pub fn unsqueeze(&self, axis: isize) -> Result<Tensor> {
        let mut shape = self.shape();
        let at = normalize_axis("unsqueeze", axis, shape.len() + 1)?;
        shape.insert(at, 1);
        self.reshape_to(&shape)
    }

    /// Drops axes of length 1: all of them (`None`), or those listed; a listed axis whose
    /// length is not 1 stays, as in PyTorch.
    pub fn squeeze(&self, axes: Option<&[isize]>) -> Result<Tensor> {
        let shape = self.shape();
        let drop: Vec<usize> = match axes {
            None => (0..shape.len()).filter(|&a| shape[a] == 1).collect(),
            // A 0-d tensor takes axis 0 or -1, as in PyTorch.
            Some(ax) if shape.is_empty() => {
                normalize_axes("squeeze", Some(ax), 1)?;
                vec![]
            }
            Some(ax) => normalize_axes("squeeze", Some(ax), shape.len())?
                .into_iter()
                .filter(|&a| shape[a] == 1)
                .collect(),
        };
        let kept: Vec<usize> = (0..shape.len())
            .filter(|a| !drop.contains(a))
            .map(|a| shape[a])
            .collect();
        self.reshape_to(&kept)
    }

    /// PyTorch's `view`: the same elements in a new shape (one `-1` inferred). Every tensor
    /// here is contiguous, so this is `reshape`.
    pub fn view(&self, shape: &[isize]) -> Result<Tensor> {
        self.reshape(shape)
    }

    /// This tensor (already contiguous: arrays here are always one row-major block).
    pub fn contiguous(&self) -> Tensor {
        self.clone()
    }

    /// Broadcasts to `shape` (PyTorch's `expand`): `-1` keeps an axis, new axes may be added
    /// in front, and only axes of length 1 may grow. The gradient sums back.
    pub fn expand(&self, shape: &[isize]) -> Result<Tensor> {
        let own = self.shape();
        if shape.len() < own.len() {
            return Err(Error::Shape(format!(
                "expand: the target {shape:?} has fewer dimensions than the tensor's shape {}",
                fmt_shape(&own)
            )));
        }
        let lead = shape.len() - own.len();
        let mut target = Vec::with_capacity(shape.len());
        for (i, &d) in shape.iter().enumerate() {
            let cur = if i >= lead { Some(own[i - lead]) } else { None };
            let size = match (d, cur) {
                (-1, Some(c)) => c,
                (-1, None) => {
                    return Err(Error::Shape(format!(
                        "expand: -1 is not allowed for the new leading axis {i} in {shape:?}"
                    )))
                }
                (d, _) if d < 0 => {
                    return Err(Error::Shape(format!(
                        "expand: negative size {d} in {shape:?}"
                    )))
                }
                (d, Some(c)) if c != 1 && c != d as usize => {
                    return Err(Error::Shape(format!(
                        "expand: axis {i} of shape {} has length {c}, which cannot expand to {d} \
                         (only axes of length 1 can)",
                        fmt_shape(&own)
                    )))
                }
                (d, _) => d as usize,
            };
            target.push(size);
        }
        broadcast_shapes("expand", &own, &target)?;
        if target == own {
            return Ok(self.clone());
        }
        let out = self.array().broadcast_to(&target)?;
        // The engine sums a broadcast gradient down to the parent's shape.
        Ok(Tensor::from_op(out, "expand", &[self], |g, _| {
            Ok(vec![Some(g.clone())])
        }))
    }

    /// `len` positions from `start` along `axis` (PyTorch's `narrow`), as a copy; the
    /// gradient is written back into zeros.
    pub fn narrow(&self, axis: isize, start: usize, len: usize) -> Result<Tensor> {
        let (out, shape, ax) = {
            let x = self.array();
            if x.ndim() == 0 {
                return Err(Error::Shape(
                    "narrow: expected a tensor of at least 1 dimension, got a 0-d one".into(),
                ));
            }
            let ax = normalize_axis("narrow", axis, x.ndim())?;
            let n = x.shape()[ax];
            if start.checked_add(len).is_none_or(|end| end > n) {
                return Err(Error::Index(format!(
                    "narrow: positions {start}..{} are out of range for axis {ax} of length {n}",
                    start.saturating_add(len)
                )));
            }
            let out = each_dtype!(&*x, a => narrow_typed(a, ax, start, len)?);
            (out, x.shape().to_vec(), ax)
        };
        let attrs = record::attrs(|| vec![kv("axis", ax), kv("start", start), kv("len", len)]);
        Ok(Tensor::from_op(out, "narrow", &[self], move |g, _| {
            Ok(vec![Some(unnarrow(g, &shape, ax, start)?)])
        })
        .recorded_with(attrs))
    }

    /// Pieces of `size` positions along `axis`, the last one smaller when they do not
    /// divide (PyTorch's `split` with an int).
    pub fn split(&self, size: usize, axis: isize) -> Result<Vec<Tensor>> {
        let n = self.axis_len("split", axis)?;
        if size == 0 && n > 0 {
            return Err(Error::Value(
                "split: the split size must be positive for a non-empty axis".into(),
            ));
        }
        let sizes: Vec<usize> = match size {
            0 => vec![0],
            s => (0..n.div_ceil(s)).map(|i| s.min(n - i * s)).collect(),
        };
        self.split_sizes(&sizes, axis)
    }

    /// Pieces of the given lengths along `axis`; they must add up to its length.
    pub fn split_sizes(&self, sizes: &[usize], axis: isize) -> Result<Vec<Tensor>> {
        let n = self.axis_len("split", axis)?;
        let total = sizes.iter().try_fold(0usize, |a, &s| a.checked_add(s));
        if total != Some(n) {
            return Err(Error::Value(format!(
                "split: the sizes {sizes:?} do not add up to the axis length {n}"
            )));
        }
        let mut start = 0;
        let mut out = Vec::with_capacity(sizes.len());
        for &s in sizes {
            out.push(self.narrow(axis, start, s)?);
            start += s;
        }
        Ok(out)
    }

    /// `chunks` pieces along `axis` of `ceil(n / chunks)` positions each, the last smaller
    /// (fewer pieces when the axis is short, as in PyTorch).
    pub fn chunk(&self, chunks: usize, axis: isize) -> Result<Vec<Tensor>> {
        if chunks == 0 {
            return Err(Error::Value(
                "chunk: the number of chunks must be positive".into(),
            ));
        }
        let n = self.axis_len("chunk", axis)?;
        self.split(n.div_ceil(chunks).max(1), axis)
    }

    fn axis_len(&self, op: &str, axis: isize) -> Result<usize> {
        let shape = self.shape();
        if shape.is_empty() {
            return Err(Error::Shape(format!(
                "{op}: expected a tensor of at least 1 dimension, got a 0-d one"
            )));
        }
        Ok(shape[normalize_axis(op, axis, shape.len())?])
    }

    /// A reshape to a known shape of the same size.
    fn reshape_to(&self, shape: &[usize]) -> Result<Tensor> {
        let s: Vec<isize> = shape.iter().map(|&d| d as isize).collect();
        self.reshape(&s)
    }
}

#[cfg(test)]
#[path = "ops_view_tests.rs"]
mod tests;
