//! Random integer tensors — `randint`, `randperm`, `multinomial` — drawn from the one seeded
//! generator (`crate::random`), so `manual_seed` makes them repeat. All give int64.

use super::Tensor;
use crate::dynarray::DynArray;
use crate::ndarray::NdArray;
use crate::shape::{checked_size, fmt_shape};
use crate::{random, Error, Result};

impl Tensor {
    /// Integers uniform in `[low, high)` of `shape`, int64.
    pub fn randint(low: i64, high: i64, shape: &[usize]) -> Result<Tensor> {
        if low >= high {
            return Err(Error::Value(format!(
                "randint: low ({low}) must be less than high ({high})"
            )));
        }
        let n = checked_size(shape)?;
        let data = random::integers(n, low, high)?;
        let out = DynArray::I64(NdArray::from_vec(data, shape)?);
        Ok(Tensor::untracked_op(out, "randint", &[]))
    }

    /// A uniformly random permutation of `0..n`, int64.
    pub fn randperm(n: usize) -> Result<Tensor> {
        crate::ndarray::try_with_capacity::<i64>(n)?;
        let p: Vec<i64> = random::permutation(n)
            .into_iter()
            .map(|i| i as i64)
            .collect();
        let out = DynArray::I64(NdArray::from_vec(p, &[n])?);
        Ok(Tensor::untracked_op(out, "randperm", &[]))
    }

    /// `num_samples` category indices per row of the weights `self` (1-D `(k,)` or 2-D
    /// `(rows, k)`), each drawn with probability proportional to its weight; int64 of shape
    /// `(num_samples,)` or `(rows, num_samples)`. Without replacement a category is drawn at
    /// most once (so at most as many samples as positive weights). A negative, infinite or
    /// NaN weight, or an all-zero row, is a ValueError.
    pub fn multinomial(&self, num_samples: usize, replacement: bool) -> Result<Tensor> {
        let x = self.array();
        x.require_float("multinomial")?;
        let (rows, k) = match *x.shape() {
            [k] => (1, k),
            [r, k] => (r, k),
            _ => {
                return Err(Error::Shape(format!(
                    "multinomial: expected 1-D or 2-D weights, got shape {}",
                    fmt_shape(x.shape())
                )))
            }
        };
        let w = x.to_f64_vec();
        let out_shape: Vec<usize> = match x.ndim() {
            1 => vec![num_samples],
            _ => vec![rows, num_samples],
        };
        drop(x);
        let total_size = checked_size(&out_shape)?;
        let mut out = crate::ndarray::try_with_capacity::<i64>(total_size)?;
        for r in 0..rows {
            let row = &w[r * k..(r + 1) * k];
            if let Some((i, &bad)) = row
                .iter()
                .enumerate()
                .find(|(_, &v)| !(v >= 0.0 && v.is_finite()))
            {
                return Err(Error::Value(format!(
                    "multinomial: weights must be finite and non-negative, got {bad} at \
                     position {i} of row {r}"
                )));
            }
            let positive = row.iter().filter(|&&v| v > 0.0).count();
            if positive == 0 {
                return Err(Error::Value(format!(
                    "multinomial: row {r} has no positive weight (its sum is 0)"
                )));
            }
            if !replacement && num_samples > positive {
                return Err(Error::Value(format!(
                    "multinomial: cannot draw {num_samples} samples without replacement from \
                     row {r}, which has only {positive} categories of positive weight"
                )));
            }
            if replacement {
                draw_with_replacement(row, num_samples, &mut out)?;
            } else {
                draw_without_replacement(row, num_samples, &mut out)?;
            }
        }
        let out = DynArray::I64(NdArray::from_vec(out, &out_shape)?);
        Ok(Tensor::untracked_op(out, "multinomial", &[self]))
    }
}

/// Inverse-CDF draws: the first category whose running sum exceeds `u · total`.
fn draw_with_replacement(row: &[f64], n: usize, out: &mut Vec<i64>) -> Result<()> {
    let mut cdf = Vec::with_capacity(row.len());
    let mut acc = 0.0;
    for &v in row {
        acc += v;
        cdf.push(acc);
    }
    // Rounding could put `u · total` at the very top: fall back to the last positive weight.
    let last = row.iter().rposition(|&v| v > 0.0).unwrap_or(0);
    for u in random::uniform(n)? {
        let x = u * acc;
        let i = cdf.partition_point(|&c| c <= x);
        out.push(i.min(last) as i64);
    }
    Ok(())
}

/// Draws without replacement by exponential keys (Efraimidis–Spirakis): each category with
/// positive weight `w` gets `E / w` for a standard exponential `E`; the `n` smallest keys,
/// in increasing order, are distributed as `n` sequential draws that remove what they pick.
fn draw_without_replacement(row: &[f64], n: usize, out: &mut Vec<i64>) -> Result<()> {
    let u = random::uniform(row.len())?;
    let mut keys: Vec<(f64, usize)> = row
        .iter()
        .zip(u)
        .enumerate()
        .filter(|(_, (&w, _))| w > 0.0)
        .map(|(i, (&w, u))| (-(1.0 - u).ln() / w, i))
        .collect();
    keys.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
    out.extend(keys.iter().take(n).map(|&(_, i)| i as i64));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dtype::DType;

    fn weights(w: &[f64], shape: &[usize]) -> Tensor {
        Tensor::new(
            DynArray::from_f64(w.to_vec(), shape, DType::F64).unwrap(),
            false,
        )
    }

    #[test]
    fn randint_stays_in_range_and_repeats_under_a_seed() {
        random::manual_seed(3);
        let a = Tensor::randint(-2, 5, &[1000])
            .unwrap()
            .array()
            .to_i64_vec();
        random::manual_seed(3);
        let b = Tensor::randint(-2, 5, &[1000])
            .unwrap()
            .array()
            .to_i64_vec();
        assert_eq!(a, b);
        assert!(a.iter().all(|&v| (-2..5).contains(&v)));
        assert!((-2..5).all(|v| a.contains(&v)));
        assert!(Tensor::randint(3, 3, &[2]).is_err());
    }

    #[test]
    fn randperm_is_a_permutation() {
        let mut p = Tensor::randperm(50).unwrap().array().to_i64_vec();
        p.sort_unstable();
        assert_eq!(p, (0..50).collect::<Vec<i64>>());
    }

    #[test]
    fn multinomial_never_draws_a_zero_weight() {
        random::manual_seed(0);
        let w = weights(&[0.0, 1.0, 0.0, 3.0], &[4]);
        let s = w.multinomial(500, true).unwrap().array().to_i64_vec();
        assert!(s.iter().all(|&i| i == 1 || i == 3));
        let ones = s.iter().filter(|&&i| i == 1).count();
        // Expected 125 of 500; 5 standard deviations is about 48.
        assert!((77..=173).contains(&ones), "{ones}");
    }

    #[test]
    fn multinomial_without_replacement_draws_each_category_once() {
        let w = weights(&[1.0, 2.0, 3.0, 4.0, 0.5, 0.5], &[2, 3]);
        let s = w.multinomial(3, false).unwrap().array().to_i64_vec();
        let (mut a, mut b) = (s[..3].to_vec(), s[3..].to_vec());
        a.sort_unstable();
        b.sort_unstable();
        assert_eq!((a, b), (vec![0, 1, 2], vec![0, 1, 2]));
        assert!(w.multinomial(4, false).is_err());
    }

    #[test]
    fn multinomial_refuses_bad_weights() {
        for bad in [
            [1.0, -1.0],
            [f64::NAN, 1.0],
            [0.0, 0.0],
            [f64::INFINITY, 1.0],
        ] {
            let e = weights(&bad, &[2]).multinomial(1, true).unwrap_err();
            assert!(matches!(e, Error::Value(_)), "{bad:?}: {e:?}");
        }
    }
}
