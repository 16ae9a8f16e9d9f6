//! What the losses share: the reduction modes and the validation of class-index targets.

use super::Tensor;
use crate::dynarray::DynArray;
use crate::shape::fmt_shape;
use crate::{Error, Result};

/// How a loss combines its per-sample values.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reduction {
    Mean,
    Sum,
    None,
}

impl Reduction {
    /// Parses `"mean"`, `"sum"` or `"none"`; `op` names the loss in the error.
    pub fn parse(name: &str, op: &str) -> Result<Self> {
        match name {
            "mean" => Ok(Reduction::Mean),
            "sum" => Ok(Reduction::Sum),
            "none" => Ok(Reduction::None),
            other => Err(Error::Value(format!(
                "{op}: reduction must be \"mean\", \"sum\" or \"none\", got {other:?}"
            ))),
        }
    }
}

impl Tensor {
    /// Applies a loss reduction: a 0-d mean or sum, or the values themselves.
    pub fn reduce_loss(&self, reduction: Reduction) -> Result<Tensor> {
        match reduction {
            Reduction::Mean => self.mean(None, false),
            Reduction::Sum => self.sum(None, false),
            Reduction::None => Ok(self.clone()),
        }
    }
}

/// Class indices from a target array: integers, or floats holding whole numbers (a bool
/// array is a TypeError). At most 1-D; negative, fractional or non-finite classes are a
/// ValueError naming the first offender. The range check against the class count is the
/// loss's own.
pub fn class_indices(op: &str, targets: &DynArray) -> Result<Vec<usize>> {
    if targets.ndim() > 1 {
        return Err(Error::Value(format!(
            "{op}: target must be 1-D class indices, got shape {}",
            fmt_shape(targets.shape())
        )));
    }
    if targets.dtype() == crate::DType::Bool {
        return Err(Error::Type(format!(
            "{op}: target must hold class indices (integers), got dtype bool"
        )));
    }
    let values: Vec<i64> = if targets.dtype().is_float() {
        let floats = targets.to_f64_vec();
        if let Some(bad) = floats
            .iter()
            .find(|x| !x.is_finite() || x.fract() != 0.0 || x.abs() >= 2f64.powi(53))
        {
            return Err(Error::Value(format!(
                "{op}: target class {bad} is not a whole number a class index can be"
            )));
        }
        floats.into_iter().map(|x| x as i64).collect()
    } else {
        targets.to_i64_vec()
    };
    values
        .into_iter()
        .map(|t| {
            usize::try_from(t).map_err(|_| {
                Error::Value(format!(
                    "{op}: target class {t} is negative; classes are 0 to C-1"
                ))
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    #[test]
    fn class_indices_take_integers_and_whole_floats_only() {
        let ints = DynArray::from_i64(vec![0, 2, 1], &[3], DType::I32).unwrap();
        assert_eq!(class_indices("ce", &ints).unwrap(), vec![0, 2, 1]);
        let whole = DynArray::from_f64(vec![1.0, 0.0], &[2], DType::F32).unwrap();
        assert_eq!(class_indices("ce", &whole).unwrap(), vec![1, 0]);
        let frac = DynArray::from_f64(vec![1.5], &[1], DType::F64).unwrap();
        assert!(matches!(class_indices("ce", &frac), Err(Error::Value(_))));
        let neg = DynArray::from_i64(vec![-1], &[1], DType::I64).unwrap();
        assert!(matches!(class_indices("ce", &neg), Err(Error::Value(_))));
        let mask = DynArray::from_i64(vec![1], &[1], DType::Bool).unwrap();
        assert!(matches!(class_indices("ce", &mask), Err(Error::Type(_))));
        let matrix = DynArray::from_i64(vec![1, 0], &[1, 2], DType::I64).unwrap();
        assert!(matches!(class_indices("ce", &matrix), Err(Error::Value(_))));
    }

    #[test]
    fn reductions_parse_and_name_the_loss_in_errors() {
        assert_eq!(Reduction::parse("sum", "mse").unwrap(), Reduction::Sum);
        let err = Reduction::parse("avg", "mse").unwrap_err();
        assert!(err.to_string().contains("mse"));
    }
}
