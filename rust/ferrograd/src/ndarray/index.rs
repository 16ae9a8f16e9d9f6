//! NumPy-style indexing (ints, slices, `None`, `...`, integer arrays) as a gather map.
//!
//! [`plan_index`] turns a shape and a list of [`IndexItem`]s into the flat source
//! offset of every output element, in row-major output order. The forward pass
//! gathers with it ([`NdArray::index`]); the backward pass scatter-adds with the
//! same offsets.

use super::{try_filled, try_with_capacity, NdArray};
use crate::shape::{broadcast_strides, checked_size, size_of, strides_of};
use crate::{Error, Result};

/// One entry of an index expression, as in `a[0, 1:3, None, ..., [2, 0]]`.
#[derive(Clone, Debug, PartialEq)]
pub enum IndexItem {
    /// One position on an axis; negative counts from the end. Alone among basic
    /// items it removes its axis; next to an `Array` it is an advanced index.
    Int(isize),
    /// A Python slice `start:stop:step` with Python's clamping; any non-zero step.
    Slice {
        start: Option<isize>,
        stop: Option<isize>,
        step: Option<isize>,
    },
    /// `None`: a new axis of length 1.
    NewAxis,
    /// `...`: as many full slices as the other items leave axes.
    Ellipsis,
    /// An integer list or array of any `shape` on one axis (advanced indexing):
    /// `indices` in row-major order, negative values counting from the end.
    Array {
        indices: Vec<isize>,
        shape: Vec<usize>,
    },
    /// A bool mask over as many axes as it has dimensions (NumPy's rule): the positions
    /// where it is true, in row-major order, as one advanced index per masked axis.
    Mask { mask: Vec<bool>, shape: Vec<usize> },
}

impl IndexItem {
    /// The full slice `:`.
    pub fn full() -> Self {
        IndexItem::Slice {
            start: None,
            stop: None,
            step: None,
        }
    }

    /// A slice `start:stop:step`.
    pub fn slice(start: Option<isize>, stop: Option<isize>, step: Option<isize>) -> Self {
        IndexItem::Slice { start, stop, step }
    }

    /// A one-dimensional integer list on one axis.
    pub fn list(indices: Vec<isize>) -> Self {
        let shape = vec![indices.len()];
        IndexItem::Array { indices, shape }
    }

    /// The advanced index an array stands for: an int64 or int32 array picks positions on
    /// one axis, a bool array is a mask (NumPy's rules). Any other dtype is a TypeError
    /// naming it: the one rule for every integer-array index (`t[idx]`, `t[idx] = v`,
    /// `Embedding`).
    pub fn from_array(arr: &crate::DynArray) -> Result<Self> {
        use crate::DynArray;
        let shape = arr.shape().to_vec();
        match arr {
            DynArray::Bool(m) => Ok(IndexItem::Mask {
                mask: m.data().to_vec(),
                shape,
            }),
            DynArray::I64(_) | DynArray::I32(_) => Ok(IndexItem::Array {
                // Saturating: an id past isize's range is out of bounds all the same.
                indices: arr
                    .to_i64_vec()
                    .into_iter()
                    .map(|i| {
                        isize::try_from(i).unwrap_or(if i < 0 { isize::MIN } else { isize::MAX })
                    })
                    .collect(),
                shape,
            }),
            other => Err(Error::Type(format!(
                "tensors used as indices must be int64, int32 or bool, got {}; cast with .long()",
                other.dtype()
            ))),
        }
    }
}

/// The result of planning an index: the output `shape` and, for every output
/// element in row-major order, the flat offset of its source element.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IndexPlan {
    /// Flat (row-major) source offset of each output element; repeats are allowed.
    pub offsets: Vec<usize>,
    /// The output shape; `offsets.len()` is its size.
    pub shape: Vec<usize>,
}

/// Replaces each bool mask by one integer index array per axis it covers, after checking
/// the mask's shape against those axes (IndexError on a mismatch, as NumPy).
fn expand_masks(shape: &[usize], items: &[IndexItem]) -> Result<Vec<IndexItem>> {
    let ndim = shape.len();
    let consumed: usize = items
        .iter()
        .map(|it| match it {
            IndexItem::Ellipsis | IndexItem::NewAxis => 0,
            IndexItem::Mask { shape, .. } => shape.len(),
            _ => 1,
        })
        .sum();
    if consumed > ndim {
        return Err(Error::Index(format!(
            "too many indices for array: array is {ndim}-dimensional, but {consumed} were indexed"
        )));
    }
    let mut out = Vec::with_capacity(items.len() + 2);
    let mut axis = 0;
    for item in items {
        match item {
            IndexItem::Ellipsis => {
                axis += ndim - consumed;
                out.push(item.clone());
            }
            IndexItem::NewAxis => out.push(item.clone()),
            IndexItem::Mask {
                mask,
                shape: mshape,
            } => {
                if mshape.is_empty() {
                    return Err(Error::Index(
                        "a 0-d boolean index is not supported; use a mask with dimensions".into(),
                    ));
                }
                for (k, &m) in mshape.iter().enumerate() {
                    if shape[axis + k] != m {
                        return Err(Error::Index(format!(
                            "boolean index did not match indexed array along axis {}; size of \
                             axis is {} but size of corresponding boolean axis is {m}",
                            axis + k,
                            shape[axis + k]
                        )));
                    }
                }
                let strides = strides_of(mshape);
                let hits: Vec<usize> = (0..mask.len()).filter(|&i| mask[i]).collect();
                for (k, &stride) in strides.iter().enumerate() {
                    let indices = hits
                        .iter()
                        .map(|&i| ((i / stride) % mshape[k]) as isize)
                        .collect();
                    out.push(IndexItem::list(indices));
                }
                axis += mshape.len();
            }
            other => {
                axis += 1;
                out.push(other.clone());
            }
        }
    }
    Ok(out)
}

/// One output slot: a basic axis (a slice or a new axis) as `(first, step, len)`
/// in source elements, or the block of broadcast advanced-index dimensions.
enum Slot {
    Basic(i128, i128, usize),
    Advanced,
}

/// Computes the gather map of `items` applied to an array of `shape`, with
/// NumPy's semantics and error messages.
pub fn plan_index(shape: &[usize], items: &[IndexItem]) -> Result<IndexPlan> {
    let expanded;
    let items = if items.iter().any(|it| matches!(it, IndexItem::Mask { .. })) {
        expanded = expand_masks(shape, items)?;
        expanded.as_slice()
    } else {
        items
    };
    let ndim = shape.len();
    let ellipses = items
        .iter()
        .filter(|it| matches!(it, IndexItem::Ellipsis))
        .count();
    if ellipses > 1 {
        return Err(Error::Index(
            "an index can only have a single ellipsis ('...')".into(),
        ));
    }
    let consumed = items
        .iter()
        .filter(|it| !matches!(it, IndexItem::Ellipsis | IndexItem::NewAxis))
        .count();
    if consumed > ndim {
        return Err(Error::Index(format!(
            "too many indices for array: array is {ndim}-dimensional, but {consumed} were indexed"
        )));
    }
    let bshape = advanced_shape(items)?;
    let has_advanced = bshape.is_some();
    let strides = strides_of(shape);
    let full_axis = |ax: usize| Slot::Basic(0, strides[ax] as i128, shape[ax]);

    let mut slots: Vec<Slot> = Vec::with_capacity(ndim + items.len());
    // Advanced items: (position in `items`, source offset per index, index shape).
    let mut advanced: Vec<(usize, Vec<usize>, &[usize])> = Vec::new();
    let mut base = 0usize;
    let mut ax = 0usize;
    for (pos, item) in items.iter().enumerate() {
        match item {
            IndexItem::Ellipsis => {
                for _ in 0..ndim - consumed {
                    slots.push(full_axis(ax));
                    ax += 1;
                }
            }
            IndexItem::NewAxis => slots.push(Slot::Basic(0, 0, 1)),
            IndexItem::Int(i) => {
                let off = normalize_index(*i, ax, shape[ax])? * strides[ax];
                if has_advanced {
                    if advanced.is_empty() {
                        slots.push(Slot::Advanced);
                    }
                    advanced.push((pos, vec![off], &[][..]));
                } else {
                    base += off;
                }
                ax += 1;
            }
            IndexItem::Slice { start, stop, step } => {
                let (first, step, len) = slice_indices(*start, *stop, *step, shape[ax])?;
                let stride = strides[ax] as i128;
                slots.push(Slot::Basic(first * stride, step * stride, len));
                ax += 1;
            }
            IndexItem::Array {
                indices,
                shape: ishape,
            } => {
                let mut offs = try_with_capacity(indices.len())?;
                for &i in indices {
                    offs.push(normalize_index(i, ax, shape[ax])? * strides[ax]);
                }
                if advanced.is_empty() {
                    slots.push(Slot::Advanced);
                }
                advanced.push((pos, offs, ishape));
                ax += 1;
            }
            IndexItem::Mask { .. } => {
                return Err(Error::Graph("internal error: unexpanded mask".into()))
            }
        }
    }
    while ax < ndim {
        slots.push(full_axis(ax));
        ax += 1;
    }

    // The broadcast index dimensions replace the advanced items where those are
    // adjacent in the index expression, and go to the front otherwise.
    if let (Some(first), Some(last)) = (advanced.first(), advanced.last()) {
        if last.0 - first.0 + 1 != advanced.len() {
            if let Some(at) = slots.iter().position(|s| matches!(s, Slot::Advanced)) {
                let slot = slots.remove(at);
                slots.insert(0, slot);
            }
        }
    }
    let bshape = bshape.unwrap_or_default();
    let mut out_shape = Vec::with_capacity(slots.len() + bshape.len());
    for slot in &slots {
        match slot {
            Slot::Basic(_, _, len) => out_shape.push(*len),
            Slot::Advanced => out_shape.extend_from_slice(&bshape),
        }
    }
    let n = checked_size(&out_shape)?;
    let mut offsets = try_with_capacity(n)?;
    if n == 0 {
        // Nothing to gather; do not materialise per-axis tables of an empty result.
        return Ok(IndexPlan {
            offsets,
            shape: out_shape,
        });
    }

    // Each slot's offset contribution per position; their sums are the offsets.
    let mut table = try_filled(size_of(&bshape), 0usize)?;
    for (_, offs, ishape) in &advanced {
        let istrides = broadcast_strides(ishape, &bshape);
        let mut k = 0;
        super::for_each_offset(&bshape, &istrides, 0, |src| {
            table[k] += offs[src];
            k += 1;
        });
    }
    let basic: Vec<Vec<usize>> = slots
        .iter()
        .map(|slot| match *slot {
            Slot::Basic(first, step, len) => (0..len as i128)
                .map(|j| (first + j * step) as usize)
                .collect(),
            Slot::Advanced => Vec::new(),
        })
        .collect();
    let factors: Vec<&[usize]> = slots
        .iter()
        .zip(&basic)
        .map(|(slot, contrib)| match slot {
            Slot::Basic(..) => contrib.as_slice(),
            Slot::Advanced => table.as_slice(),
        })
        .collect();
    cartesian_sums(&factors, base, |o| offsets.push(o));
    Ok(IndexPlan {
        offsets,
        shape: out_shape,
    })
}

/// Checks the integer arrays and broadcasts their shapes together (`None` when
/// there are none): NumPy checks this before any bounds.
fn advanced_shape(items: &[IndexItem]) -> Result<Option<Vec<usize>>> {
    let mut shapes: Vec<&[usize]> = Vec::new();
    for item in items {
        if let IndexItem::Array { indices, shape } = item {
            let n = checked_size(shape)?;
            if n != indices.len() {
                return Err(Error::Value(format!(
                    "index array of shape {} needs {n} indices, got {}",
                    crate::shape::fmt_shape(shape),
                    indices.len()
                )));
            }
            shapes.push(shape);
        }
    }
    if shapes.is_empty() {
        return Ok(None);
    }
    let mut out: Vec<usize> = Vec::new();
    for s in &shapes {
        match crate::shape::broadcast_shapes("index", &out, s) {
            Ok(b) => out = b,
            Err(_) => {
                let listed: Vec<String> = shapes.iter().map(|s| numpy_shape(s)).collect();
                return Err(Error::Index(format!(
                    "shape mismatch: indexing arrays could not be broadcast together with shapes {}",
                    listed.join(" ")
                )));
            }
        }
    }
    Ok(Some(out))
}

/// A shape as NumPy prints it in indexing errors: `(2,)`, `(2,3)`.
fn numpy_shape(shape: &[usize]) -> String {
    match shape {
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            format!("({})", parts.join(","))
        }
    }
}

/// Resolves a possibly negative index on axis `ax` of length `len`.
fn normalize_index(i: isize, ax: usize, len: usize) -> Result<usize> {
    let resolved = if i < 0 {
        i as i128 + len as i128
    } else {
        i as i128
    };
    if resolved < 0 || resolved >= len as i128 {
        return Err(Error::Index(format!(
            "index {i} is out of bounds for axis {ax} with size {len}"
        )));
    }
    Ok(resolved as usize)
}

/// Python's `slice(start, stop, step).indices(len)`, returned as
/// `(first, step, count)`; wide integers so no input can overflow.
fn slice_indices(
    start: Option<isize>,
    stop: Option<isize>,
    step: Option<isize>,
    len: usize,
) -> Result<(i128, i128, usize)> {
    let step = step.unwrap_or(1) as i128;
    if step == 0 {
        return Err(Error::Value("slice step cannot be zero".into()));
    }
    let len = len as i128;
    let (lower, upper) = if step > 0 { (0, len) } else { (-1, len - 1) };
    let clamp = |v: Option<isize>, default: i128| match v {
        None => default,
        Some(v) if v < 0 => (v as i128 + len).max(lower),
        Some(v) => (v as i128).min(upper),
    };
    let first = clamp(start, if step > 0 { lower } else { upper });
    let end = clamp(stop, if step > 0 { upper } else { lower });
    let count = if step > 0 && end > first {
        (end - first - 1) / step + 1
    } else if step < 0 && first > end {
        (first - end - 1) / -step + 1
    } else {
        0
    };
    Ok((first, step, count as usize))
}

/// Calls `f` with `base` plus one entry of each factor, for every combination,
/// in row-major order (the last factor varies fastest).
fn cartesian_sums(factors: &[&[usize]], base: usize, mut f: impl FnMut(usize)) {
    if factors.iter().any(|c| c.is_empty()) {
        return;
    }
    let Some((last, outer)) = factors.split_last() else {
        f(base);
        return;
    };
    let mut idx = vec![0usize; outer.len()];
    let mut acc = base + outer.iter().map(|c| c[0]).sum::<usize>();
    loop {
        for &c in *last {
            f(acc + c);
        }
        // Advance the outer factors like an odometer.
        let mut d = outer.len();
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            acc -= outer[d][idx[d]];
            idx[d] += 1;
            if idx[d] < outer[d].len() {
                acc += outer[d][idx[d]];
                break;
            }
            idx[d] = 0;
            acc += outer[d][0];
        }
    }
}

impl<T: Clone> NdArray<T> {
    /// NumPy-style indexing: gathers the elements [`plan_index`] selects.
    pub fn index(&self, items: &[IndexItem]) -> Result<Self> {
        let plan = plan_index(&self.shape, items)?;
        let mut data = try_with_capacity(plan.offsets.len())?;
        data.extend(plan.offsets.iter().map(|&i| self.data[i].clone()));
        Ok(Self {
            shape: plan.shape,
            data,
        })
    }
}

#[cfg(test)]
#[path = "index_tests.rs"]
mod tests;
