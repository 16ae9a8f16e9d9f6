//! `embedding`: rows of a weight matrix looked up by integer ids — the core's indexing
//! (`weight[ids]`, a differentiable gather) with PyTorch's stricter id rule.

use super::record;
use super::Tensor;
use crate::dynarray::DynArray;
use crate::ndarray::IndexItem;
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
        self.index(&[item])
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
