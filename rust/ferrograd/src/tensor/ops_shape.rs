//! Shape ops on `Tensor` — reshape, permute, indexing, concatenation — with backward rules.

use super::record::{self, kv, Attr};
use super::Tensor;
use crate::dynarray::DynArray;
use crate::ndarray::index::plan_index;
use crate::ndarray::IndexItem;
use crate::shape::normalize_axis;
use crate::{Error, Result};

impl Tensor {
    /// The same elements in a new shape (one `-1` is inferred).
    pub fn reshape(&self, shape: &[isize]) -> Result<Tensor> {
        let x = self.array();
        let out = x.reshape(shape)?;
        let input_shape = x.shape().to_vec();
        drop(x);
        Ok(Tensor::from_op(out, "reshape", &[self], move |g, _| {
            Ok(vec![Some(g.clone().into_shape(&input_shape)?)])
        }))
    }

    /// All elements in one dimension.
    pub fn flatten(&self) -> Result<Tensor> {
        self.reshape(&[-1])
    }

    /// Reorders the axes (negative axes allowed): output axis `i` is input axis `perm[i]`.
    pub fn permute(&self, perm: &[isize]) -> Result<Tensor> {
        let x = self.array();
        if perm.len() != x.ndim() {
            return Err(Error::Axis(format!(
                "permute: {} axes given for a tensor of dimension {}",
                perm.len(),
                x.ndim()
            )));
        }
        let perm = perm
            .iter()
            .map(|&a| normalize_axis("permute", a, x.ndim()))
            .collect::<Result<Vec<_>>>()?;
        let out = x.permute(&perm)?;
        drop(x);
        let mut inverse = vec![0; perm.len()];
        for (i, &p) in perm.iter().enumerate() {
            inverse[p] = i;
        }
        let attrs = record::attrs(|| vec![kv("perm", &perm[..])]);
        Ok(Tensor::from_op(out, "permute", &[self], move |g, _| {
            Ok(vec![Some(g.permute(&inverse)?)])
        })
        .recorded_with(attrs))
    }

    /// Swaps two axes.
    pub fn transpose(&self, a: isize, b: isize) -> Result<Tensor> {
        let nd = self.array().ndim();
        let (a, b) = (
            normalize_axis("transpose", a, nd)?,
            normalize_axis("transpose", b, nd)?,
        );
        let mut perm: Vec<isize> = (0..nd as isize).collect();
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// All axes reversed (NumPy's `.T`).
    pub fn t(&self) -> Result<Tensor> {
        let nd = self.array().ndim() as isize;
        self.permute(&(0..nd).rev().collect::<Vec<_>>())
    }

    /// NumPy-style indexing; gradients scatter-add back (repeated indices accumulate).
    pub fn index(&self, items: &[IndexItem]) -> Result<Tensor> {
        let x = self.array();
        let plan = plan_index(x.shape(), items)?;
        let out = x.gather(&plan.offsets, &plan.shape);
        let input_shape = x.shape().to_vec();
        drop(x);
        let offsets = plan.offsets;
        let attrs = record::attrs(|| {
            let items = items.iter().map(Attr::from).collect();
            vec![kv("items", Attr::List(items))]
        });
        Ok(Tensor::from_op(out, "index", &[self], move |g, _| {
            Ok(vec![Some(g.scatter_add(&input_shape, &offsets)?)])
        })
        .recorded_with(attrs))
    }

    /// Joins tensors along an existing axis.
    pub fn cat(tensors: &[&Tensor], axis: isize) -> Result<Tensor> {
        Self::join(tensors, axis, false)
    }

    /// Joins tensors of one shape along a new axis.
    pub fn stack(tensors: &[&Tensor], axis: isize) -> Result<Tensor> {
        Self::join(tensors, axis, true)
    }

    fn join(tensors: &[&Tensor], axis: isize, new_axis: bool) -> Result<Tensor> {
        // One read lock per distinct storage: `cat([x, x])` must not lock `x` twice.
        let mut owners: Vec<&Tensor> = Vec::new();
        let slots: Vec<usize> = tensors
            .iter()
            .map(|t| match owners.iter().position(|o| o.shares_storage(t)) {
                Some(i) => i,
                None => {
                    owners.push(t);
                    owners.len() - 1
                }
            })
            .collect();
        let guards: Vec<_> = owners.iter().map(|t| t.array()).collect();
        let arrays: Vec<&DynArray> = slots.iter().map(|&i| &*guards[i]).collect();
        let out = if new_axis {
            DynArray::stack(&arrays, axis)?
        } else {
            DynArray::concatenate(&arrays, axis)?
        };
        // The concatenation axis of the output, and each input's extent along it.
        let ax = normalize_axis("cat", axis, out.ndim())?;
        let extents: Vec<usize> = arrays
            .iter()
            .map(|a| if new_axis { 1 } else { a.shape()[ax] })
            .collect();
        let shapes: Vec<Vec<usize>> = arrays.iter().map(|a| a.shape().to_vec()).collect();
        drop(guards);
        let op = if new_axis { "stack" } else { "cat" };
        let attrs = record::attrs(|| vec![kv("axis", ax)]);
        Ok(Tensor::from_op(out, op, tensors, move |g, _| {
            let mut start = 0;
            let mut grads = Vec::with_capacity(extents.len());
            for (len, shape) in extents.iter().zip(&shapes) {
                let mut items: Vec<IndexItem> = (0..ax).map(|_| full_slice()).collect();
                items.push(IndexItem::Slice {
                    start: Some(start as isize),
                    stop: Some((start + len) as isize),
                    step: None,
                });
                let piece = g.index(&items)?;
                grads.push(Some(piece.into_shape(shape)?));
                start += len;
            }
            Ok(grads)
        })
        .recorded_with(attrs))
    }
}

fn full_slice() -> IndexItem {
    IndexItem::Slice {
        start: None,
        stop: None,
        step: None,
    }
}
