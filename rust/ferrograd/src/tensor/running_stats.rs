//! BatchNorm's running statistics: the exponential moving average of the batch mean and
//! the unbiased batch variance, written in place into the module's buffers.

use super::Tensor;
use crate::dynarray::DynArray;
use crate::{shape_err, value_err, Error, Result};

/// Moves `running_mean` and `running_var` (float buffers of `C` elements) toward a batch's
/// statistics: `r ← (1 - momentum)·r + momentum·s`, with the batch variance (`batch_var`,
/// biased, as the forward normalises with) made unbiased by `count / (count - 1)`, as
/// PyTorch does. `batch_mean`/`batch_var` may have any shape of `C` elements (e.g. the
/// forward's `(1, C, 1, 1)`). Each buffer is written once, in place, outside the graph, so
/// its version counts one write and anything that saved it notices.
pub fn update_running_stats(
    running_mean: &Tensor,
    running_var: &Tensor,
    batch_mean: &Tensor,
    batch_var: &Tensor,
    count: usize,
    momentum: f64,
) -> Result<()> {
    const OP: &str = "batch_norm";
    if count <= 1 {
        return Err(value_err!(
            "{OP}: expected more than 1 value per channel to update the running variance, \
             got {count}"
        ));
    }
    if !momentum.is_finite() {
        return Err(value_err!(
            "{OP}: momentum must be a finite number, got {momentum}"
        ));
    }
    let channels = running_mean.array().size();
    for (name, t) in [("running_mean", running_mean), ("running_var", running_var)] {
        if !t.dtype().is_float() {
            return Err(Error::Type(format!(
                "{OP}: {name} must be a float tensor, got dtype {}",
                t.dtype()
            )));
        }
        if t.requires_grad() {
            return Err(Error::Graph(format!(
                "{OP}: {name} is a buffer and must not require grad"
            )));
        }
    }
    // Read (copy) the batch statistics first, so no two locks are ever held at once.
    let mut stats = Vec::with_capacity(3);
    for (name, t) in [
        ("running_var", running_var),
        ("batch_mean", batch_mean),
        ("batch_var", batch_var),
    ] {
        let a = t.array();
        if a.size() != channels {
            return Err(shape_err!(
                "{OP}: {name} has {} elements, running_mean has {channels}",
                a.size()
            ));
        }
        stats.push(a.to_f64_vec());
    }
    let unbiased = count as f64 / (count as f64 - 1.0);
    let mix = |buffer: &Tensor, value: &dyn Fn(usize) -> f64| -> Result<()> {
        let mut guard = buffer.array_mut();
        let old = guard.to_f64_vec();
        let new = (0..channels)
            .map(|i| (1.0 - momentum) * old[i] + momentum * value(i))
            .collect();
        let next = DynArray::from_f64(new, guard.shape(), guard.dtype())?;
        *guard = next;
        Ok(())
    };
    mix(running_mean, &|i| stats[1][i])?;
    mix(running_var, &|i| stats[2][i] * unbiased)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    fn t(values: &[f64], shape: &[usize], dtype: DType) -> Tensor {
        Tensor::new(
            DynArray::from_f64(values.to_vec(), shape, dtype).unwrap(),
            false,
        )
    }

    #[test]
    fn running_stats_move_by_momentum_with_the_unbiased_variance() {
        let rm = t(&[0.0, 1.0], &[2], DType::F32);
        let rv = t(&[1.0, 1.0], &[2], DType::F32);
        let bm = t(&[2.0, 3.0], &[1, 2, 1], DType::F64);
        let bv = t(&[4.0, 0.5], &[1, 2, 1], DType::F64);
        update_running_stats(&rm, &rv, &bm, &bv, 5, 0.1).unwrap();
        let m = rm.array().to_f64_vec();
        assert!((m[0] - 0.2).abs() < 1e-6 && (m[1] - 1.2).abs() < 1e-6);
        let v = rv.array().to_f64_vec();
        assert!((v[0] - (0.9 + 0.1 * 4.0 * 5.0 / 4.0)).abs() < 1e-6);
        assert!((v[1] - (0.9 + 0.1 * 0.5 * 5.0 / 4.0)).abs() < 1e-6);
        // The buffers keep their dtype and shape, and each counts one write.
        assert_eq!((rm.dtype(), rm.shape()), (DType::F32, vec![2]));
        assert_eq!((rm.version(), rv.version()), (1, 1));
    }

    #[test]
    fn running_stats_refuse_mismatched_sizes_and_a_single_value_per_channel() {
        let rm = t(&[0.0, 1.0], &[2], DType::F32);
        let rv = t(&[1.0, 1.0], &[2], DType::F32);
        let three = t(&[1.0, 2.0, 3.0], &[3], DType::F32);
        let err = update_running_stats(&rm, &rv, &three, &three, 4, 0.1).unwrap_err();
        assert!(matches!(err, Error::Shape(_)));
        let err = update_running_stats(&rm, &rv, &rm, &rv, 1, 0.1).unwrap_err();
        assert!(matches!(err, Error::Value(_)));
        // A refused update writes nothing.
        assert_eq!((rm.version(), rv.version()), (0, 0));
    }
}
