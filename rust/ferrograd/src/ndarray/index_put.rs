//! `a[key] = value`: NumPy's indexed assignment, the scatter twin of the gather in
//! `index.rs`. The key is planned by [`plan_index`] (every element it selects, in row-major
//! order of the indexed result); the value is a scalar or an array broadcast to the indexed
//! shape. Where an integer array repeats a position, the last write wins, as in NumPy.

use super::index::plan_index;
use super::{for_each_offset, IndexItem, NdArray};
use crate::shape::{broadcast_strides, fmt_shape};
use crate::{Error, Result};

/// Where an assignment writes, checked against the array's shape and the value's shape
/// before anything is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PutPlan {
    /// The shape of the array the plan was made for.
    target: Vec<usize>,
    /// The flat offset written by each element of the indexed result, row-major.
    offsets: Vec<usize>,
    /// The shape of the indexed result.
    shape: Vec<usize>,
    /// The value's shape and the strides reading it as if it had `shape` (`None` for a
    /// scalar value).
    value: Option<(Vec<usize>, Vec<usize>)>,
}

impl PutPlan {
    /// Plans `a[items] = value` for an array of `shape` and a value of `value_shape`
    /// (`None` for a scalar). The value may have extra leading axes of length 1 (NumPy
    /// drops them); the rest must broadcast to the indexed shape.
    pub fn new(
        shape: &[usize],
        items: &[IndexItem],
        value_shape: Option<&[usize]>,
    ) -> Result<Self> {
        let plan = plan_index(shape, items)?;
        let value = match value_shape {
            None => None,
            Some(vs) => {
                let lead = vs.len().saturating_sub(plan.shape.len());
                let (extra, rest) = vs.split_at(lead);
                let fits = extra.iter().all(|&d| d == 1)
                    && rest
                        .iter()
                        .rev()
                        .zip(plan.shape.iter().rev())
                        .all(|(&v, &t)| v == t || v == 1);
                if !fits {
                    return Err(Error::Shape(format!(
                        "index_put_: could not broadcast a value of shape {} into the indexed \
                         shape {}",
                        fmt_shape(vs),
                        fmt_shape(&plan.shape)
                    )));
                }
                Some((vs.to_vec(), broadcast_strides(rest, &plan.shape)))
            }
        };
        Ok(Self {
            target: shape.to_vec(),
            offsets: plan.offsets,
            shape: plan.shape,
            value,
        })
    }

    /// The shape of the indexed result (what the value is broadcast to).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Refuses an array or value other than those the plan was made for.
    fn check(&self, array_shape: &[usize], value_shape: Option<&[usize]>) -> Result<()> {
        let planned = self.value.as_ref().map(|(s, _)| s.as_slice());
        if array_shape != self.target || planned != value_shape {
            return Err(Error::Value(format!(
                "index_put_: the assignment was planned for an array of shape {} and a {}",
                fmt_shape(&self.target),
                planned.map_or("scalar value".into(), |s| format!(
                    "value of shape {}",
                    fmt_shape(s)
                ))
            )));
        }
        Ok(())
    }
}

impl<T: Clone> NdArray<T> {
    /// `self[items] = value` (broadcast to the indexed shape); nothing is written on error.
    pub fn index_put(&mut self, items: &[IndexItem], value: &NdArray<T>) -> Result<()> {
        let plan = PutPlan::new(self.shape(), items, Some(value.shape()))?;
        self.put(&plan, value)
    }

    /// `self[items] = value` for one scalar value.
    pub fn index_fill(&mut self, items: &[IndexItem], value: T) -> Result<()> {
        let plan = PutPlan::new(self.shape(), items, None)?;
        self.put_scalar(&plan, value)
    }

    /// Writes `value` where `plan` says (a plan made for this shape and an array value of
    /// `value`'s shape).
    pub fn put(&mut self, plan: &PutPlan, value: &NdArray<T>) -> Result<()> {
        plan.check(self.shape(), Some(value.shape()))?;
        let strides = plan.value.as_ref().map_or(&[][..], |(_, s)| s.as_slice());
        let mut k = 0;
        let (data, src) = (&mut self.data, &value.data);
        for_each_offset(&plan.shape, strides, 0, |j| {
            data[plan.offsets[k]] = src[j].clone();
            k += 1;
        });
        Ok(())
    }

    /// Writes one scalar everywhere `plan` says.
    pub fn put_scalar(&mut self, plan: &PutPlan, value: T) -> Result<()> {
        plan.check(self.shape(), None)?;
        for &o in &plan.offsets {
            self.data[o] = value.clone();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arange(shape: &[usize]) -> NdArray<f64> {
        let n = shape.iter().product::<usize>();
        NdArray::from_vec((0..n).map(|i| i as f64).collect(), shape).unwrap()
    }

    fn arr(data: &[f64], shape: &[usize]) -> NdArray<f64> {
        NdArray::from_vec(data.to_vec(), shape).unwrap()
    }

    #[test]
    fn a_scalar_fills_a_stepped_slice() {
        let mut a = arange(&[6]);
        a.index_fill(&[IndexItem::slice(Some(1), None, Some(2))], -1.0)
            .unwrap();
        assert_eq!(a.data(), &[0., -1., 2., -1., 4., -1.]);
    }

    #[test]
    fn a_row_broadcasts_over_the_selected_rows() {
        let mut a = arange(&[3, 2]);
        a.index_put(
            &[IndexItem::slice(None, Some(2), None)],
            &arr(&[7., 8.], &[2]),
        )
        .unwrap();
        assert_eq!(a.data(), &[7., 8., 7., 8., 4., 5.]);
    }

    #[test]
    fn negative_ints_and_leading_unit_axes_of_the_value_work_as_in_numpy() {
        let mut a = arange(&[2, 3]);
        a.index_put(&[IndexItem::Int(-1)], &arr(&[9., 9., 9.], &[1, 3]))
            .unwrap();
        assert_eq!(a.data(), &[0., 1., 2., 9., 9., 9.]);
    }

    #[test]
    fn repeated_integer_indices_keep_the_last_write() {
        let mut a = arange(&[4]);
        a.index_put(
            &[IndexItem::list(vec![1, 3, 1])],
            &arr(&[10., 30., 11.], &[3]),
        )
        .unwrap();
        assert_eq!(a.data(), &[0., 11., 2., 30.]);
    }

    #[test]
    fn a_value_of_the_wrong_shape_is_a_shape_error_and_writes_nothing() {
        let mut a = arange(&[2, 3]);
        let err = a
            .index_put(&[IndexItem::Int(0)], &arr(&[1., 2.], &[2]))
            .unwrap_err();
        assert!(
            matches!(err, Error::Shape(ref m) if m.contains("(2,)") && m.contains("(3,)")),
            "{err:?}"
        );
        assert_eq!(a, arange(&[2, 3]));
    }

    #[test]
    fn an_index_out_of_range_is_an_index_error() {
        let mut a = arange(&[3]);
        let err = a.index_fill(&[IndexItem::Int(3)], 0.0).unwrap_err();
        assert!(matches!(err, Error::Index(_)), "{err:?}");
        let err = a
            .index_put(&[IndexItem::list(vec![0, -4])], &arr(&[1.], &[1]))
            .unwrap_err();
        assert!(matches!(err, Error::Index(_)), "{err:?}");
    }

    #[test]
    fn a_plan_for_another_shape_is_refused() {
        let plan = PutPlan::new(&[5], &[IndexItem::Int(4)], None).unwrap();
        let mut a = arange(&[3]);
        assert!(a.put_scalar(&plan, 1.0).is_err());
        assert_eq!(a, arange(&[3]));
    }
}
