//! Helpers shared by the `Tensor` integration tests: building tensors, reading them back,
//! comparing values, and the finite-difference gradient check.

// Each test crate uses a different subset of these helpers.
#![allow(dead_code)]

use ferrograd::tensor::NoGradGuard;
use ferrograd::{DType, DynArray, Result, Tensor};

/// Both float dtypes, for forward tests that must hold in each.
pub const DTYPES: [DType; 2] = [DType::F32, DType::F64];

/// A tensor of `dtype` from f64 values.
pub fn tensor(data: &[f64], shape: &[usize], dtype: DType, requires_grad: bool) -> Tensor {
    Tensor::new(
        DynArray::from_f64(data.to_vec(), shape, dtype).expect("data fills the shape"),
        requires_grad,
    )
}

/// A float64 tensor that does not require grad.
pub fn t64(data: &[f64], shape: &[usize]) -> Tensor {
    tensor(data, shape, DType::F64, false)
}

/// A float32 tensor that does not require grad.
pub fn t32(data: &[f64], shape: &[usize]) -> Tensor {
    tensor(data, shape, DType::F32, false)
}

/// A float64 leaf that requires grad.
pub fn leaf(data: &[f64], shape: &[usize]) -> Tensor {
    tensor(data, shape, DType::F64, true)
}

/// The tensor's elements as f64, row-major.
pub fn vals(t: &Tensor) -> Vec<f64> {
    t.array().to_f64_vec()
}

/// The accumulated gradient of a leaf as f64 (panics if there is none).
pub fn grad(t: &Tensor) -> Vec<f64> {
    t.grad()
        .expect("the leaf has a gradient")
        .read()
        .to_f64_vec()
}

/// The dtype of a leaf's gradient (panics if there is none).
pub fn grad_dtype(t: &Tensor) -> DType {
    t.grad().expect("the leaf has a gradient").read().dtype()
}

/// `0, 1, …, n-1` in `shape`, as float64.
pub fn arange(shape: &[usize]) -> Tensor {
    let n: usize = shape.iter().product();
    t64(&(0..n).map(|i| i as f64).collect::<Vec<_>>(), shape)
}

/// Asserts `actual ≈ expected` elementwise within `tol * (1 + |expected|)`; NaN matches NaN.
#[track_caller]
pub fn assert_close(actual: &[f64], expected: &[f64], tol: f64) {
    assert_eq!(
        actual.len(),
        expected.len(),
        "length differs: {actual:?} vs {expected:?}"
    );
    for (i, (&a, &e)) in actual.iter().zip(expected).enumerate() {
        let ok = if e.is_nan() {
            a.is_nan()
        } else if e.is_infinite() {
            a == e
        } else {
            (a - e).abs() <= tol * (1.0 + e.abs())
        };
        assert!(
            ok,
            "element {i}: got {a}, expected {e}\n  actual   {actual:?}\n  expected {expected:?}"
        );
    }
}

/// Asserts the tensor's shape, dtype and values (`tol` relative; use 0 for exact values).
#[track_caller]
pub fn assert_tensor(t: &Tensor, shape: &[usize], dtype: DType, expected: &[f64], tol: f64) {
    assert_eq!(t.shape(), shape, "shape");
    assert_eq!(t.dtype(), dtype, "dtype");
    assert_close(&vals(t), expected, tol);
}

/// A tolerance fit for hand-computed values in `dtype`.
pub fn tol(dtype: DType) -> f64 {
    if dtype == DType::F32 {
        1e-6
    } else {
        1e-12
    }
}

/// Deterministic "random-ish" values in about [-2, 2], none within 0.1 of zero
/// (so `abs`/`relu` have no kink nearby) and distinct (so `max`/`min` have no ties).
pub fn sample(shape: &[usize], seed: u64) -> (Vec<f64>, Vec<usize>) {
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|i| {
            let x =
                ((i as f64 + 1.0) * 12.9898 + seed as f64 * 78.233).sin() * 2.0 + i as f64 * 1e-3;
            if x.abs() < 0.1 {
                x + 0.35
            } else {
                x
            }
        })
        .collect();
    (data, shape.to_vec())
}

/// Like [`sample`], but every value lies in about [0.5, 2.5] (bases of `pow`, `log`, `sqrt`).
pub fn positive(shape: &[usize], seed: u64) -> (Vec<f64>, Vec<usize>) {
    let (data, shape) = sample(shape, seed);
    (data.into_iter().map(|x| 0.5 + x.abs()).collect(), shape)
}

/// The fixed weights that reduce an output of `n` elements to a scalar: mixed signs,
/// none near zero, all different, so every output element matters.
fn weights(n: usize) -> Vec<f64> {
    (0..n)
        .map(|i| {
            let m = 0.5 + ((i as f64 + 1.0) * 0.618_033_988_75).fract();
            if i % 2 == 0 {
                m
            } else {
                -m
            }
        })
        .collect()
}

/// Checks the gradient of `f` at `inputs` against central finite differences in float64.
///
/// Builds float64 leaves requiring grad, reduces `f`'s output to `sum(out * w)` with fixed
/// weights `w`, backpropagates, and compares the gradient of every element of every input
/// with `(L(x + h) - L(x - h)) / 2h`, `h = 1e-6`, within `1e-6 * (1 + |numeric|)`.
#[track_caller]
pub fn check_grad(f: impl Fn(&[Tensor]) -> Result<Tensor>, inputs: &[(Vec<f64>, Vec<usize>)]) {
    let leaves: Vec<Tensor> = inputs
        .iter()
        .map(|(data, shape)| leaf(data, shape))
        .collect();
    let out = f(&leaves).expect("forward succeeds");
    assert_eq!(
        out.dtype(),
        DType::F64,
        "float64 inputs give a float64 output"
    );
    let w = weights(out.array().size());
    let wt = t64(&w, &out.shape());
    let loss = out
        .mul(&wt)
        .and_then(|p| p.sum(None, false))
        .expect("sum(out * w)");
    loss.backward(None, false).expect("backward succeeds");

    // The loss at perturbed inputs, computed without recording a graph.
    let loss_at = |inputs: &[(Vec<f64>, Vec<usize>)]| -> f64 {
        let _guard = NoGradGuard::new();
        let xs: Vec<Tensor> = inputs
            .iter()
            .map(|(data, shape)| t64(data, shape))
            .collect();
        let out = f(&xs).expect("forward succeeds at a perturbed point");
        vals(&out).iter().zip(&w).map(|(o, w)| o * w).sum()
    };

    let h = 1e-6;
    for (k, (leaf, (data, shape))) in leaves.iter().zip(inputs).enumerate() {
        let analytic = match leaf.grad() {
            Some(g) => {
                let g = g.read();
                assert_eq!(g.shape(), shape.as_slice(), "input {k}: grad shape");
                assert_eq!(g.dtype(), DType::F64, "input {k}: grad dtype");
                g.to_f64_vec()
            }
            None => vec![0.0; data.len()],
        };
        for j in 0..data.len() {
            let mut perturbed = inputs.to_vec();
            perturbed[k].0[j] = data[j] + h;
            let up = loss_at(&perturbed);
            perturbed[k].0[j] = data[j] - h;
            let down = loss_at(&perturbed);
            let numeric = (up - down) / (2.0 * h);
            assert!(
                (analytic[j] - numeric).abs() <= 1e-6 * (1.0 + numeric.abs()),
                "input {k} (shape {shape:?}) element {j}: analytic gradient {}, \
                 finite differences {numeric}\n  analytic {analytic:?}",
                analytic[j]
            );
        }
    }
}
