//! The geometry of one attention call: the shapes checked against each other, the broadcast
//! batch, and where each (batch × heads) slice of q, k, v and the mask starts.

use super::{Attention, Mask, PARALLEL_WORK};
use crate::ndarray::Float;
use crate::shape::{broadcast_shapes, broadcast_strides, checked_size, fmt_shape};
use crate::{shape_err, Result};

/// Sizes and per-slice offsets, checked once.
pub(super) struct Geometry {
    /// The broadcast leading axes.
    pub(super) batch: Vec<usize>,
    pub(super) count: usize,
    pub(super) l: usize,
    pub(super) s: usize,
    pub(super) e: usize,
    pub(super) ev: usize,
    /// Element offset of each slice in q, k and v.
    pub(super) offsets: Vec<[usize; 3]>,
    /// For a mask: its offset per slice and its (row, column) strides, 0 where it broadcasts.
    pub(super) mask: Option<(Vec<usize>, usize, usize)>,
}

impl Geometry {
    pub(super) fn new<T: Float>(a: &Attention<'_, T>) -> Result<Self> {
        let (qs, ks, vs) = (a.q.shape(), a.k.shape(), a.v.shape());
        let shapes = || {
            format!(
                "query {}, key {}, value {}",
                fmt_shape(qs),
                fmt_shape(ks),
                fmt_shape(vs)
            )
        };
        for (name, s) in [("query", qs), ("key", ks), ("value", vs)] {
            if s.len() < 2 {
                return Err(shape_err!(
                    "scaled_dot_product_attention: {name} must have at least 2 dimensions \
                     (..., length, features), got shape {}",
                    fmt_shape(s)
                ));
            }
        }
        let last2 = |s: &[usize]| (s[s.len() - 2], s[s.len() - 1]);
        let ((l, e), (s, ek), (sv, ev)) = (last2(qs), last2(ks), last2(vs));
        if ek != e {
            return Err(shape_err!(
                "scaled_dot_product_attention: query and key must have the same last dimension \
                 (embedding size), got {e} and {ek} ({})",
                shapes()
            ));
        }
        if sv != s {
            return Err(shape_err!(
                "scaled_dot_product_attention: key and value must have the same sequence length \
                 (second to last dimension), got {s} and {sv} ({})",
                shapes()
            ));
        }
        let lead = |s: &[usize]| s[..s.len() - 2].to_vec();
        let batch = broadcast_shapes("scaled_dot_product_attention", &lead(qs), &lead(ks))
            .and_then(|b| broadcast_shapes("scaled_dot_product_attention", &b, &lead(vs)))
            .map_err(|_| {
                shape_err!(
                    "scaled_dot_product_attention: the leading (batch) dimensions do not \
                     broadcast together ({})",
                    shapes()
                )
            })?;
        let count = checked_size(&batch)?;
        let mut full = batch.clone();
        full.extend([l, s]);
        // The weights' count (count·L·S) must be addressable: the dropout counters and mask
        // offsets index them, and the forward may keep them.
        checked_size(&full)?;
        let strides = |shape: &[usize], mat: usize| -> Vec<usize> {
            broadcast_strides(&lead(shape), &batch)
                .iter()
                .map(|st| st * mat)
                .collect()
        };
        let (sq, sk, sv) = (strides(qs, l * e), strides(ks, s * e), strides(vs, s * ev));
        let offsets = (0..count)
            .map(|i| slice_offsets(&batch, i, [&sq, &sk, &sv]))
            .collect();
        let mask = match a.mask {
            Mask::None | Mask::Causal => None,
            Mask::Keep(m) => Some(mask_geometry(m.shape(), &full, &batch)?),
            Mask::Add(m) => Some(mask_geometry(m.shape(), &full, &batch)?),
        };
        Ok(Self {
            batch,
            count,
            l,
            s,
            e,
            ev,
            offsets,
            mask,
        })
    }

    /// `batch + (rows, cols)`.
    pub(super) fn shape(&self, rows: usize, cols: usize) -> Vec<usize> {
        let mut s = self.batch.clone();
        s.extend([rows, cols]);
        s
    }

    /// Multiply-adds of one pass (both products) over all slices.
    fn work(&self) -> usize {
        self.count
            .saturating_mul(self.l)
            .saturating_mul(self.s)
            .saturating_mul(self.e + self.ev)
    }

    /// Whether the work is worth spreading over the crate's threads.
    pub(super) fn parallel(&self) -> bool {
        self.work() >= PARALLEL_WORK && crate::parallel::num_threads() > 1
    }
}

/// The offsets into each of `strides.len()` operands of slice `i` of the batch.
fn slice_offsets<const N: usize>(
    batch: &[usize],
    mut i: usize,
    strides: [&[usize]; N],
) -> [usize; N] {
    let mut out = [0; N];
    for d in (0..batch.len()).rev() {
        let j = i % batch[d];
        i /= batch[d];
        for (o, s) in out.iter_mut().zip(&strides) {
            *o += j * s[d];
        }
    }
    out
}

/// A mask of `shape` read as `full = batch + (L, S)`: its offset per slice and its row and
/// column strides. It must broadcast to `full` without enlarging it.
fn mask_geometry(
    shape: &[usize],
    full: &[usize],
    batch: &[usize],
) -> Result<(Vec<usize>, usize, usize)> {
    let fits = shape.len() <= full.len()
        && broadcast_shapes("scaled_dot_product_attention", shape, full).is_ok_and(|b| b == full);
    if !fits {
        return Err(shape_err!(
            "scaled_dot_product_attention: attn_mask of shape {} does not broadcast to the \
             attention weights' shape {} (batch..., L, S)",
            fmt_shape(shape),
            fmt_shape(full)
        ));
    }
    let strides = broadcast_strides(shape, full);
    let n = full.len();
    let lead = &strides[..n - 2];
    let count = batch.iter().product();
    let offsets = (0..count)
        .map(|i| slice_offsets(batch, i, [lead])[0])
        .collect();
    Ok((offsets, strides[n - 2], strides[n - 1]))
}
