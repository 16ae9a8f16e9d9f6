//! The neural-network functions of `ferrograd.functional` (linear, conv2d, max_pool2d, gelu,
//! layer_norm, dropout, the losses, clamp, maximum/minimum): argument parsing and the GIL; the
//! math is in the core.

use ferrograd::tensor::Reduction;
use ferrograd::Tensor;
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyList, PyTuple};

use crate::array_methods::compute;
use crate::classes::{PyNdArray, PyTensor};
use crate::convert::{array_from_py, tensor_of, Infer};
use crate::errors::IntoPyResult;

/// A Tensor or NdArray argument (shared, not copied); a NumPy array, list or number is
/// copied into a constant Tensor.
pub(crate) fn arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor> {
    if obj.is_instance_of::<PyTensor>() || obj.is_instance_of::<PyNdArray>() {
        return tensor_of(obj, what);
    }
    array_from_py(obj, None, Infer::Natural)
        .map(|a| Tensor::new(a, false))
        .map_err(|e| {
            if e.is_instance_of::<PyTypeError>(obj.py()) {
                PyTypeError::new_err(format!(
                    "{what} must be a Tensor, NdArray or array-like, got {}",
                    obj.get_type()
                        .name()
                        .map_or_else(|_| "?".into(), |n| n.to_string())
                ))
            } else {
                e
            }
        })
}

fn opt_arg(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Tensor>> {
    obj.filter(|o| !o.is_none())
        .map(|o| arg(o, what))
        .transpose()
}

fn wrap(t: Tensor) -> PyTensor {
    PyTensor { inner: t }
}

/// A non-negative int.
fn size(obj: &Bound<'_, PyAny>, op: &str, what: &str) -> PyResult<usize> {
    if obj.is_instance_of::<PyBool>() || !obj.hasattr("__index__")? {
        return Err(PyTypeError::new_err(format!(
            "{op}: {what} must be an int or a pair of ints, got {}",
            obj.get_type().name()?
        )));
    }
    let v: i128 = obj.call_method0("__index__")?.extract()?;
    if v < 0 {
        return Err(PyValueError::new_err(format!(
            "{op}: {what} must be non-negative, got {v}"
        )));
    }
    usize::try_from(v).map_err(|_| PyValueError::new_err(format!("{op}: {what} {v} is too large")))
}

/// `stride=`, `padding=`, `kernel_size=`: an int (both axes) or a pair of ints.
fn pair(obj: &Bound<'_, PyAny>, op: &str, what: &str) -> PyResult<(usize, usize)> {
    if obj.is_instance_of::<PyTuple>() || obj.is_instance_of::<PyList>() {
        let items: Vec<Bound<'_, PyAny>> = obj.try_iter()?.collect::<PyResult<_>>()?;
        return match items.as_slice() {
            [a, b] => Ok((size(a, op, what)?, size(b, op, what)?)),
            _ => Err(PyValueError::new_err(format!(
                "{op}: {what} must be an int or a pair of ints, got {} values",
                items.len()
            ))),
        };
    }
    let v = size(obj, op, what)?;
    Ok((v, v))
}

/// Class indices from an integer Tensor or array, a list of ints, or a float Tensor/array of
/// whole numbers (validated by the core); returns the indices and their `ndim`.
fn class_targets(obj: &Bound<'_, PyAny>, op: &str) -> PyResult<(Vec<usize>, usize)> {
    let targets = match crate::convert::ours(obj) {
        Some(t) => t.array().clone(),
        None => array_from_py(obj, None, Infer::Natural).map_err(|e| {
            if e.is_instance_of::<PyTypeError>(obj.py()) {
                PyTypeError::new_err(format!("{op}: target must hold integer class indices: {e}"))
            } else {
                e
            }
        })?,
    };
    let indices = ferrograd::tensor::class_indices(op, &targets).py()?;
    Ok((indices, targets.ndim()))
}

/// Targets for scores of `shape`: 1-D of length N for `(N, C)`, one class for `(C,)`.
fn targets_for(
    obj: &Bound<'_, PyAny>,
    shape: &[usize],
    op: &str,
    input: &str,
) -> PyResult<Vec<usize>> {
    let (targets, ndim) = class_targets(obj, op)?;
    if shape.len() == 2 && ndim != 1 {
        return Err(PyValueError::new_err(format!(
            "{op}: {input} of shape ({}, {}) needs a 1-D target of {} class indices, got a 0-d one",
            shape[0], shape[1], shape[0]
        )));
    }
    Ok(targets)
}

fn parse_reduction(reduction: &str, op: &str) -> PyResult<Reduction> {
    Reduction::parse(reduction, op).py()
}

fn reduce(t: Tensor, reduction: Reduction) -> ferrograd::Result<Tensor> {
    t.reduce_loss(reduction)
}

/// `x @ weight.T + bias` in one fused call.
#[pyfunction]
#[pyo3(signature = (x, weight, bias=None))]
fn linear(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    weight: &Bound<'_, PyAny>,
    bias: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyTensor> {
    let (x, w, b) = (arg(x, "x")?, arg(weight, "weight")?, opt_arg(bias, "bias")?);
    let work = x
        .array()
        .size()
        .saturating_mul(w.shape().first().copied().unwrap_or(1));
    compute(py, work, || x.linear(&w, b.as_ref()))
        .py()
        .map(wrap)
}

/// 2-D convolution of `x` (N, C, H, W) with `weight` (O, C, kh, kw).
#[pyfunction]
#[pyo3(signature = (x, weight, bias=None, stride=None, padding=None))]
fn conv2d(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    weight: &Bound<'_, PyAny>,
    bias: Option<&Bound<'_, PyAny>>,
    stride: Option<&Bound<'_, PyAny>>,
    padding: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyTensor> {
    let stride = stride.map_or(Ok((1, 1)), |s| pair(s, "conv2d", "stride"))?;
    let padding = padding.map_or(Ok((0, 0)), |p| pair(p, "conv2d", "padding"))?;
    let (x, w, b) = (arg(x, "x")?, arg(weight, "weight")?, opt_arg(bias, "bias")?);
    let work = x.array().size().saturating_mul(w.array().size());
    compute(py, work, || x.conv2d(&w, b.as_ref(), stride, padding))
        .py()
        .map(wrap)
}

/// 2-D max pooling of `x` (N, C, H, W); `stride` defaults to `kernel_size`.
#[pyfunction]
#[pyo3(signature = (x, kernel_size, stride=None, padding=None))]
fn max_pool2d(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    kernel_size: &Bound<'_, PyAny>,
    stride: Option<&Bound<'_, PyAny>>,
    padding: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyTensor> {
    let kernel = pair(kernel_size, "max_pool2d", "kernel_size")?;
    let stride = match stride.filter(|s| !s.is_none()) {
        Some(s) => pair(s, "max_pool2d", "stride")?,
        None => kernel,
    };
    let padding = padding.map_or(Ok((0, 0)), |p| pair(p, "max_pool2d", "padding"))?;
    let x = arg(x, "x")?;
    let work = x
        .array()
        .size()
        .saturating_mul(kernel.0.saturating_mul(kernel.1));
    compute(py, work, || x.max_pool2d(kernel, stride, padding))
        .py()
        .map(wrap)
}

/// The exact GELU, `0.5·x·(1 + erf(x/√2))`.
#[pyfunction]
fn gelu(py: Python<'_>, x: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
    let x = arg(x, "x")?;
    let work = x.array().size();
    compute(py, work, || x.gelu()).py().map(wrap)
}

/// Layer normalisation over the trailing `normalized_shape` axes, fused.
#[pyfunction]
#[pyo3(signature = (x, normalized_shape, weight=None, bias=None, eps=1e-5))]
fn layer_norm(
    py: Python<'_>,
    x: &Bound<'_, PyAny>,
    normalized_shape: &Bound<'_, PyAny>,
    weight: Option<&Bound<'_, PyAny>>,
    bias: Option<&Bound<'_, PyAny>>,
    eps: f64,
) -> PyResult<PyTensor> {
    let shape: Vec<usize> = if normalized_shape.hasattr("__index__")? {
        vec![size(normalized_shape, "layer_norm", "normalized_shape")?]
    } else if normalized_shape.is_instance_of::<PyTuple>()
        || normalized_shape.is_instance_of::<PyList>()
    {
        normalized_shape
            .try_iter()?
            .map(|item| size(&item?, "layer_norm", "normalized_shape"))
            .collect::<PyResult<_>>()?
    } else {
        return Err(PyTypeError::new_err(format!(
            "layer_norm: normalized_shape must be an int or a tuple of ints, got {}",
            normalized_shape.get_type().name()?
        )));
    };
    let (x, w, b) = (
        arg(x, "x")?,
        opt_arg(weight, "weight")?,
        opt_arg(bias, "bias")?,
    );
    let work = x.array().size();
    compute(py, work, || {
        x.layer_norm(&shape, w.as_ref(), b.as_ref(), eps)
    })
    .py()
    .map(wrap)
}

/// Zeroes elements with probability `p`, scaling the rest by 1/(1-p); identity when
/// `training` is false.
#[pyfunction]
#[pyo3(signature = (x, p=0.5, training=true))]
fn dropout(x: &Bound<'_, PyAny>, p: f64, training: bool) -> PyResult<PyTensor> {
    arg(x, "x")?.dropout(p, training).py().map(wrap)
}

/// Cross-entropy of `logits` (N, C) or (C,) against class indices, fused and stable.
#[pyfunction]
#[pyo3(signature = (logits, target, reduction="mean", label_smoothing=0.0))]
fn cross_entropy(
    py: Python<'_>,
    logits: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    reduction: &str,
    label_smoothing: f64,
) -> PyResult<PyTensor> {
    let reduction = parse_reduction(reduction, "cross_entropy")?;
    let x = arg(logits, "logits")?;
    let shape = x.shape();
    let targets = targets_for(target, &shape, "cross_entropy", "logits")?;
    let work = x.array().size();
    compute(py, work, || {
        reduce(x.cross_entropy(&targets, label_smoothing)?, reduction)
    })
    .py()
    .map(wrap)
}

/// Negative log-likelihood of `log_probs` (N, C) or (C,) against class indices.
#[pyfunction]
#[pyo3(signature = (log_probs, target, reduction="mean"))]
fn nll_loss(
    log_probs: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    reduction: &str,
) -> PyResult<PyTensor> {
    let reduction = parse_reduction(reduction, "nll_loss")?;
    let x = arg(log_probs, "log_probs")?;
    let targets = targets_for(target, &x.shape(), "nll_loss", "log_probs")?;
    x.nll_loss(&targets)
        .and_then(|t| reduce(t, reduction))
        .py()
        .map(wrap)
}

/// Binary cross-entropy of probabilities `input` against `target` of the same shape, each
/// log clamped to >= -100 (PyTorch).
#[pyfunction]
#[pyo3(signature = (input, target, reduction="mean"))]
fn binary_cross_entropy(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    reduction: &str,
) -> PyResult<PyTensor> {
    let reduction = parse_reduction(reduction, "binary_cross_entropy")?;
    let (p, y) = (arg(input, "input")?, arg(target, "target")?);
    let work = p.array().size();
    compute(py, work, || p.binary_cross_entropy(&y, reduction))
        .py()
        .map(wrap)
}

/// Binary cross-entropy of logits `input` against `target` of the same shape, stable for
/// any logit.
#[pyfunction]
#[pyo3(signature = (input, target, reduction="mean"))]
fn binary_cross_entropy_with_logits(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    target: &Bound<'_, PyAny>,
    reduction: &str,
) -> PyResult<PyTensor> {
    let reduction = parse_reduction(reduction, "binary_cross_entropy_with_logits")?;
    let (x, y) = (arg(input, "input")?, arg(target, "target")?);
    let work = x.array().size();
    compute(py, work, || {
        x.binary_cross_entropy_with_logits(&y, reduction)
    })
    .py()
    .map(wrap)
}

/// The rows of `weight` at the integer ids `input` (PyTorch's `F.embedding` argument order).
#[pyfunction]
fn embedding(
    py: Python<'_>,
    input: &Bound<'_, PyAny>,
    weight: &Bound<'_, PyAny>,
) -> PyResult<PyTensor> {
    let w = tensor_of(weight, "weight")?;
    let dim = w.shape().last().copied().unwrap_or(1);
    // A tensor of ids stays linked to the lookup in an export recording.
    if let Ok(t) = input.cast::<PyTensor>() {
        let ids = t.get().inner.clone();
        let work = ids.array().size().saturating_mul(dim);
        return compute(py, work, || w.embedding_by(&ids)).py().map(wrap);
    }
    let ids = crate::convert::index_array(input)?;
    let work = ids.size().saturating_mul(dim);
    compute(py, work, || w.embedding(&ids)).py().map(wrap)
}

/// Moves BatchNorm's running statistics toward a batch's, in place (see the core's
/// `update_running_stats`).
#[pyfunction]
fn update_running_stats(
    running_mean: &Bound<'_, PyAny>,
    running_var: &Bound<'_, PyAny>,
    batch_mean: &Bound<'_, PyAny>,
    batch_var: &Bound<'_, PyAny>,
    count: usize,
    momentum: f64,
) -> PyResult<()> {
    ferrograd::tensor::update_running_stats(
        &tensor_of(running_mean, "running_mean")?,
        &tensor_of(running_var, "running_var")?,
        &tensor_of(batch_mean, "batch_mean")?,
        &tensor_of(batch_var, "batch_var")?,
        count,
        momentum,
    )
    .py()
}

/// Limits `x` to `[min, max]` (either may be None, not both).
#[pyfunction]
#[pyo3(signature = (x, min=None, max=None))]
fn clamp(x: &Bound<'_, PyAny>, min: Option<f64>, max: Option<f64>) -> PyResult<PyTensor> {
    arg(x, "x")?.clamp(min, max).py().map(wrap)
}

/// The elementwise larger of `a` and `b`, broadcasting.
#[pyfunction]
fn maximum(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
    arg(a, "a")?.maximum(&arg(b, "b")?).py().map(wrap)
}

/// The elementwise smaller of `a` and `b`, broadcasting.
#[pyfunction]
fn minimum(a: &Bound<'_, PyAny>, b: &Bound<'_, PyAny>) -> PyResult<PyTensor> {
    arg(a, "a")?.minimum(&arg(b, "b")?).py().map(wrap)
}

/// Adds the functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(linear, m)?)?;
    m.add_function(wrap_pyfunction!(conv2d, m)?)?;
    m.add_function(wrap_pyfunction!(max_pool2d, m)?)?;
    m.add_function(wrap_pyfunction!(gelu, m)?)?;
    m.add_function(wrap_pyfunction!(layer_norm, m)?)?;
    m.add_function(wrap_pyfunction!(dropout, m)?)?;
    m.add_function(wrap_pyfunction!(cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(nll_loss, m)?)?;
    m.add_function(wrap_pyfunction!(clamp, m)?)?;
    m.add_function(wrap_pyfunction!(maximum, m)?)?;
    m.add_function(wrap_pyfunction!(minimum, m)?)?;
    m.add_function(wrap_pyfunction!(binary_cross_entropy, m)?)?;
    m.add_function(wrap_pyfunction!(binary_cross_entropy_with_logits, m)?)?;
    m.add_function(wrap_pyfunction!(embedding, m)?)?;
    m.add_function(wrap_pyfunction!(update_running_stats, m)?)?;
    Ok(())
}
