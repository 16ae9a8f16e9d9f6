//! `embedding`: rows of a weight matrix looked up by integer ids — the core's indexing
//! (`weight[ids]`, a differentiable gather) with PyTorch's stricter id rule.

use super::record;
use super::Tensor;
use crate::dynarray::{DynArray, Element};
use crate::ndarray::elementwise::add_into;
use crate::ndarray::{try_with_capacity, Float, IndexItem, NdArray};
use crate::shape::fmt_shape;
use crate::{shape_err, Error, Result};

impl Tensor {
    /// The rows of `self` (`(num_embeddings, dim)`) at integer `ids` of any shape: a tensor
    /// of shape `ids.shape + (dim,)`, whose gradient scatter-adds into the rows (repeated
    /// ids accumulate). Ids are checked by the indexing rule ([`IndexItem::from_array`]:
    /// int64/int32 only, a float or bool array is a TypeError; past the end an IndexError
    /// naming the id), except that a negative id is refused too, as PyTorch's embedding
    /// does: -1 is not "the last row" of a vocabulary.
    pub fn embedding(&self, ids: &DynArray) -> Result<Tensor> {
        let rows = match *self.array().shape() {
            [rows, _] => rows,
            ref other => {
                return Err(shape_err!(
                    "embedding: weight must be 2-D (num_embeddings, embedding_dim), got shape {}",
                    fmt_shape(other)
                ))
            }
        };
        let item = IndexItem::from_array(ids)?;
        let IndexItem::Array { indices, .. } = &item else {
            return Err(Error::Type(
                "embedding: ids must be integers, got a bool mask".into(),
            ));
        };
        if let Some(&bad) = indices.iter().find(|&&i| i < 0) {
            return Err(Error::Index(format!(
                "embedding: index {bad} is out of range for {rows} embeddings (ids are 0 to {})",
                rows.saturating_sub(1)
            )));
        }
        // Float weights (while no export records) take whole rows: a row copied per id and,
        // in the backward, a row added per id, where the general indexing walks an offset per
        // element. Both give the same numbers: the ids' rows added in order.
        let weight = self.array();
        let fast = !record::is_recording() && indices.iter().all(|&i| (i as usize) < rows);
        let (w_shape, dtype) = (weight.shape().to_vec(), weight.dtype());
        let mut out_shape = ids.shape().to_vec();
        out_shape.push(w_shape[1]);
        let out = match (&*weight, fast) {
            (DynArray::F32(w), true) => gather_rows(w, indices, &out_shape)?,
            (DynArray::F64(w), true) => gather_rows(w, indices, &out_shape)?,
            _ => {
                drop(weight);
                return self.index(&[item]);
            }
        };
        drop(weight);
        let ids: Vec<usize> = indices.iter().map(|&i| i as usize).collect();
        Ok(Tensor::from_op(out, "index", &[self], move |g, _| {
            let g = g.as_dtype(dtype);
            let dw = match g.as_ref() {
                DynArray::F32(g) => scatter_rows(g, &ids, &w_shape)?,
                DynArray::F64(g) => scatter_rows(g, &ids, &w_shape)?,
                _ => return Err(super::ops_nn::mismatch()),
            };
            Ok(vec![Some(dw)])
        }))
    }

    /// [`Tensor::embedding`] with the ids in a tensor: the same lookup, recorded for export
    /// as one `embedding` op whose inputs are the weight and the ids tensor (so the ids stay
    /// linked to where they came from, a model input say).
    pub fn embedding_by(&self, ids: &Tensor) -> Result<Tensor> {
        record::fused("embedding", &[self, ids], Vec::new, || {
            let ids = ids.array();
            self.embedding(&ids)
        })
    }
}

/// The rows `ids` (each in range) of `w`, one after another, as an array of `shape`
/// (the ids' shape and the row length).
fn gather_rows<T: Element + Float>(
    w: &NdArray<T>,
    ids: &[isize],
    shape: &[usize],
) -> Result<DynArray> {
    let dim = w.shape()[1];
    let mut out = try_with_capacity(ids.len() * dim)?;
    for &i in ids {
        let at = i as usize * dim;
        out.extend_from_slice(&w.data()[at..at + dim]);
    }
    Ok(T::wrap(NdArray::from_vec(out, shape)?))
}

/// The gradient of [`gather_rows`]: row `k` of `g` added into row `ids[k]` of a zero array
/// of `w_shape`, in order.
fn scatter_rows<T: Element + Float>(
    g: &NdArray<T>,
    ids: &[usize],
    w_shape: &[usize],
) -> Result<DynArray> {
    let dim = w_shape[1];
    if g.size() != ids.len() * dim {
        return Err(super::ops_nn::changed("embedding"));
    }
    let mut dw = NdArray::full(w_shape, T::zero())?;
    let rows = dw.data_mut();
    for (&i, gr) in ids.iter().zip(g.data().chunks_exact(dim.max(1))) {
        add_into(&mut rows[i * dim..(i + 1) * dim], gr);
    }
    Ok(T::wrap(dw))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    fn weight() -> Tensor {
        let w = DynArray::from_f64((0..6).map(f64::from).collect(), &[3, 2], DType::F64);
        Tensor::new(w.unwrap(), true)
    }

    fn ids(values: &[i64], shape: &[usize]) -> DynArray {
        DynArray::from_i64(values.to_vec(), shape, DType::I64).unwrap()
    }

    #[test]
    fn embedding_gathers_rows_and_scatter_adds_their_gradient() {
        let w = weight();
        let out = w.embedding(&ids(&[2, 0, 2, 2], &[2, 2])).unwrap();
        assert_eq!(out.shape(), vec![2, 2, 2]);
        assert_eq!(
            out.array().to_f64_vec(),
            vec![4.0, 5.0, 0.0, 1.0, 4.0, 5.0, 4.0, 5.0]
        );
        out.sum(None, false).unwrap().backward(None, false).unwrap();
        let g = w.grad().unwrap().read().to_f64_vec();
        assert_eq!(g, vec![1.0, 1.0, 0.0, 0.0, 3.0, 3.0]);
    }

    #[test]
    fn embedding_refuses_ids_out_of_range_negative_ids_and_float_ids() {
        let w = weight();
        let err = w.embedding(&ids(&[3], &[1])).unwrap_err();
        assert!(matches!(err, Error::Index(ref m) if m.contains('3')));
        let err = w.embedding(&ids(&[-1], &[1])).unwrap_err();
        assert!(matches!(err, Error::Index(ref m) if m.contains("-1")));
        let floats = DynArray::from_f64(vec![1.0], &[1], DType::F32).unwrap();
        let err = w.embedding(&floats).unwrap_err();
        assert!(matches!(err, Error::Type(ref m) if m.contains("float32")));
    }
}
