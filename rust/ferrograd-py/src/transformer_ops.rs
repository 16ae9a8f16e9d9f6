//! The ops a transformer needs, as Python methods of `Tensor` and `NdArray` (a macro that
//! expands to an extra `#[pymethods]` block for each class) and module functions (`where`,
//! `tril`, `triu`, `one_hot`, `multinomial`, `randint`, `randperm`). Argument parsing and the
//! GIL only; the math is in the core.

use ferrograd::{DType, Scalar, Tensor};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::array_methods::compute;
use crate::classes::PyTensor;
use crate::convert::{array_from_py, ours, parse_shape, scalar_of, Infer};
use crate::errors::IntoPyResult;

/// A Tensor or NdArray (shared), or a number, NumPy array or list (copied, dtype inferred as
/// `fg.tensor` does); `what` names the argument in the TypeError.
pub fn tensor_arg(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor> {
    if let Some(t) = ours(obj) {
        return Ok(t);
    }
    array_from_py(obj, None, Infer::Natural)
        .map(|a| Tensor::new(a, false))
        .map_err(|e| {
            if e.is_instance_of::<PyTypeError>(obj.py()) {
                PyTypeError::new_err(format!(
                    "{what} must be a Tensor, NdArray, number or array-like, got {}",
                    obj.get_type()
                        .name()
                        .map_or_else(|_| "?".into(), |n| n.to_string())
                ))
            } else {
                e
            }
        })
}

/// A fill value or bound: a Python or NumPy number, or a one-element tensor.
pub fn scalar_arg(obj: &Bound<'_, PyAny>, op: &str, what: &str) -> PyResult<Scalar> {
    if let Some(s) = scalar_of(obj)? {
        return Ok(s);
    }
    if let Some(t) = ours(obj) {
        return t.array().item_scalar().py();
    }
    Err(PyTypeError::new_err(format!(
        "{op}: {what} must be a number, got {}",
        obj.get_type().name()?
    )))
}

/// A non-negative int argument.
pub fn count_arg(obj: &Bound<'_, PyAny>, op: &str, what: &str) -> PyResult<usize> {
    if obj.is_instance_of::<pyo3::types::PyBool>() || !obj.hasattr("__index__")? {
        return Err(PyTypeError::new_err(format!(
            "{op}: {what} must be an int, got {}",
            obj.get_type().name()?
        )));
    }
    let v: i128 = obj.call_method0("__index__")?.extract()?;
    usize::try_from(v).map_err(|_| {
        PyValueError::new_err(format!("{op}: {what} must be a non-negative int, got {v}"))
    })
}

/// `t.split(size)` or `t.split([sizes])`.
pub fn split_arg(obj: &Bound<'_, PyAny>) -> PyResult<Result<usize, Vec<usize>>> {
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        let sizes = obj
            .try_iter()?
            .map(|s| count_arg(&s?, "split", "a section size"))
            .collect::<PyResult<Vec<_>>>()?;
        return Ok(Err(sizes));
    }
    Ok(Ok(count_arg(obj, "split", "the split size")?))
}

/// `clamp(min, max)` where either bound may be a number or a tensor (broadcast, then
/// `maximum`/`minimum`).
pub fn clamp_any(
    t: &Tensor,
    min: Option<&Bound<'_, PyAny>>,
    max: Option<&Bound<'_, PyAny>>,
) -> PyResult<Tensor> {
    let min = min.filter(|m| !m.is_none());
    let max = max.filter(|m| !m.is_none());
    let tensor_bound = |b: Option<&Bound<'_, PyAny>>| {
        b.is_some_and(|b| {
            scalar_of(b).ok().flatten().is_none()
                && ours(b).is_some_and(|t| t.array().size() != 1 || t.array().ndim() != 0)
        })
    };
    if !tensor_bound(min) && !tensor_bound(max) {
        let lo = min.map(|m| scalar_arg(m, "clamp", "min")).transpose()?;
        let hi = max.map(|m| scalar_arg(m, "clamp", "max")).transpose()?;
        return t.clamp_scalar(lo, hi).py();
    }
    let mut out = t.clone();
    if let Some(m) = min {
        out = out.maximum(&tensor_arg(m, "clamp: min")?).py()?;
    }
    if let Some(m) = max {
        out = out.minimum(&tensor_arg(m, "clamp: max")?).py()?;
    }
    Ok(out)
}

/// Declares the transformer-op methods for a class implementing `ArrayClass`.
#[macro_export]
macro_rules! transformer_methods {
    ($cls:ty) => {
        #[pymethods]
        impl $cls {
            /// A copy with `value` where the bool `mask` (broadcast to this shape) is true.
            fn masked_fill(&self, py: Python<'_>, mask: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<Self> {
                let m = $crate::transformer_ops::tensor_arg(mask, "masked_fill: mask")?;
                let v = $crate::transformer_ops::scalar_arg(value, "masked_fill", "value")?;
                self.unary(py, |t| t.masked_fill(&m, v))
            }
            /// The lower triangle of the last two axes (elements with col - row > k are 0).
            #[pyo3(signature = (k=0))]
            fn tril(&self, py: Python<'_>, k: isize) -> PyResult<Self> { self.unary(py, |t| t.tril(k)) }
            /// The upper triangle of the last two axes (elements with col - row < k are 0).
            #[pyo3(signature = (k=0))]
            fn triu(&self, py: Python<'_>, k: isize) -> PyResult<Self> { self.unary(py, |t| t.triu(k)) }
            /// A new axis of length 1 at `axis`.
            fn unsqueeze(&self, py: Python<'_>, axis: $crate::convert::Axis) -> PyResult<Self> {
                self.unary(py, |t| t.unsqueeze(axis.0))
            }
            /// Drops axes of length 1 (all, or those given; a given axis of another length stays).
            #[pyo3(signature = (axis=None))]
            fn squeeze(&self, py: Python<'_>, axis: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
                let axes = $crate::convert::parse_axes(axis)?;
                self.unary(py, |t| t.squeeze(axes.as_deref()))
            }
            /// The same elements in a new shape (PyTorch's view; arrays here are contiguous).
            #[pyo3(signature = (*shape))]
            fn view(&self, py: Python<'_>, shape: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<Self> {
                let shape = $crate::convert::parse_reshape(shape)?;
                self.unary(py, |t| t.view(&shape))
            }
            /// Broadcasts to `shape` (-1 keeps an axis); only axes of length 1 grow.
            #[pyo3(signature = (*shape))]
            fn expand(&self, py: Python<'_>, shape: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<Self> {
                let shape = $crate::convert::parse_reshape(shape)?;
                self.unary(py, |t| t.expand(&shape))
            }
            /// This array (arrays here are always contiguous).
            fn contiguous(&self) -> Self { Self::wrap(self.tensor().contiguous()) }
            /// Pieces of `size` positions along `axis` (the last smaller), or of the listed sizes.
            #[pyo3(signature = (size, axis=$crate::convert::Axis(0)), text_signature = "($self, size, axis=0)")]
            fn split<'py>(&self, py: Python<'py>, size: &Bound<'py, PyAny>, axis: $crate::convert::Axis) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
                let sizes = $crate::transformer_ops::split_arg(size)?;
                let t = self.tensor();
                let n = t.array().size();
                let parts = compute(py, n, || match sizes {
                    Ok(s) => t.split(s, axis.0),
                    Err(sizes) => t.split_sizes(&sizes, axis.0),
                }).py()?;
                pyo3::types::PyTuple::new(py, parts.into_iter().map(Self::wrap))
            }
            /// `n` pieces along `axis` of ceil(len / n) positions each, the last smaller.
            #[pyo3(signature = (n, axis=$crate::convert::Axis(0)), text_signature = "($self, n, axis=0)")]
            fn chunk<'py>(&self, py: Python<'py>, n: &Bound<'py, PyAny>, axis: $crate::convert::Axis) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
                let n = $crate::transformer_ops::count_arg(n, "chunk", "the number of chunks")?;
                let t = self.tensor();
                let size = t.array().size();
                let parts = compute(py, size, || t.chunk(n, axis.0)).py()?;
                pyo3::types::PyTuple::new(py, parts.into_iter().map(Self::wrap))
            }
            /// PyTorch's gather: picks along `axis` at the int64/int32 `index` (same rank).
            fn gather(&self, py: Python<'_>, axis: $crate::convert::Axis, index: &Bound<'_, PyAny>) -> PyResult<Self> {
                let index = $crate::transformer_ops::tensor_arg(index, "gather: index")?;
                self.unary(py, |t| t.gather_along(axis.0, &index))
            }
            /// Limits elements to `[min, max]`; either bound alone; numbers or tensors.
            #[pyo3(signature = (min=None, max=None))]
            fn clamp(&self, min: Option<&Bound<'_, PyAny>>, max: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
                $crate::transformer_ops::clamp_any(&self.tensor(), min, max).map(Self::wrap)
            }
            /// `self ** exponent` (a number or a tensor).
            fn pow(&self, exponent: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
                let out = $crate::array_methods::binary(self, exponent, $crate::array_methods::BinOp::Arith(ferrograd::dynarray::Arith::Pow), false)?;
                if out.is(&exponent.py().NotImplemented()) {
                    return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                        "pow: the exponent must be a number or a tensor, got {}", exponent.get_type().name()?
                    )));
                }
                Ok(out)
            }
            /// Sine.
            fn sin(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::sin) }
            /// Cosine.
            fn cos(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::cos) }
            /// `1 / sqrt(x)`.
            fn rsqrt(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::rsqrt) }
            /// Variance over `axis` (None = all) with `correction` (1: Bessel's, as PyTorch).
            #[pyo3(signature = (axis=None, correction=1.0, keepdims=false))]
            fn var(&self, py: Python<'_>, axis: Option<&Bound<'_, PyAny>>, correction: f64, keepdims: bool) -> PyResult<Self> {
                let axes = $crate::convert::parse_axes(axis)?;
                self.unary(py, |t| t.var(axes.as_deref(), correction, keepdims))
            }
            /// Standard deviation over `axis` (None = all) with `correction`.
            #[pyo3(signature = (axis=None, correction=1.0, keepdims=false))]
            fn std(&self, py: Python<'_>, axis: Option<&Bound<'_, PyAny>>, correction: f64, keepdims: bool) -> PyResult<Self> {
                let axes = $crate::convert::parse_axes(axis)?;
                self.unary(py, |t| t.std(axes.as_deref(), correction, keepdims))
            }
            /// `log(sum(exp(x)))` over `axis` (an int or tuple), stable for large inputs.
            #[pyo3(signature = (axis, keepdims=false))]
            fn logsumexp(&self, py: Python<'_>, axis: &Bound<'_, PyAny>, keepdims: bool) -> PyResult<Self> {
                let axes = $crate::convert::parse_axes(Some(axis))?.unwrap_or_default();
                self.unary(py, |t| t.logsumexp(&axes, keepdims))
            }
            /// Running sums along `axis`; integers and bools sum in int64.
            fn cumsum(&self, py: Python<'_>, axis: $crate::convert::Axis) -> PyResult<Self> {
                self.unary(py, |t| t.cumsum(axis.0))
            }
            /// The `k` largest (or smallest) values along `axis`, sorted, and their int64 indices.
            #[pyo3(signature = (k, axis=$crate::convert::Axis(-1), largest=true, sorted=true), text_signature = "($self, k, axis=-1, largest=True, sorted=True)")]
            fn topk<'py>(&self, py: Python<'py>, k: &Bound<'py, PyAny>, axis: $crate::convert::Axis, largest: bool, sorted: bool) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
                // Always sorted: an unsorted result may come in any order.
                let _ = sorted;
                let k = $crate::transformer_ops::count_arg(k, "topk", "k")?;
                let t = self.tensor();
                let n = t.array().size();
                let (v, i) = compute(py, n, || t.topk(k, axis.0, largest)).py()?;
                pyo3::types::PyTuple::new(py, [Self::wrap(v), Self::wrap(i)])
            }
            /// Samples category indices from the weights of each row (int64).
            #[pyo3(signature = (num_samples, replacement=false))]
            fn multinomial(&self, num_samples: &Bound<'_, PyAny>, replacement: bool) -> PyResult<Self> {
                let n = $crate::transformer_ops::count_arg(num_samples, "multinomial", "num_samples")?;
                self.tensor().multinomial(n, replacement).py().map(Self::wrap)
            }
        }
    };
}

fn wrap(t: Tensor) -> PyTensor {
    PyTensor { inner: t }
}

/// `cond ? a : b` elementwise, broadcasting; `cond` must be bool.
#[pyfunction]
#[pyo3(name = "where")]
fn where_(
    py: Python<'_>,
    condition: &Bound<'_, PyAny>,
    input: &Bound<'_, PyAny>,
    other: &Bound<'_, PyAny>,
) -> PyResult<PyTensor> {
    let c = tensor_arg(condition, "where: condition")?;
    let a = tensor_arg(input, "where: input")?;
    let b = tensor_arg(other, "where: other")?;
    let n = a.array().size().max(b.array().size());
    compute(py, n, || Tensor::where_(&c, &a, &b)).py().map(wrap)
}

/// The lower triangle of the last two axes of `input`.
#[pyfunction]
#[pyo3(signature = (input, k=0))]
fn tril(input: &Bound<'_, PyAny>, k: isize) -> PyResult<PyTensor> {
    tensor_arg(input, "tril: input")?.tril(k).py().map(wrap)
}

/// The upper triangle of the last two axes of `input`.
#[pyfunction]
#[pyo3(signature = (input, k=0))]
fn triu(input: &Bound<'_, PyAny>, k: isize) -> PyResult<PyTensor> {
    tensor_arg(input, "triu: input")?.triu(k).py().map(wrap)
}

/// One-hot rows (int64) of integer class indices; `num_classes=-1` infers max + 1.
#[pyfunction]
#[pyo3(signature = (input, num_classes=-1), text_signature = "(input, num_classes=-1)")]
fn one_hot(input: &Bound<'_, PyAny>, num_classes: i64) -> PyResult<PyTensor> {
    let n = match num_classes {
        -1 => None,
        n if n < 0 => {
            return Err(PyValueError::new_err(format!(
                "one_hot: num_classes must be -1 or non-negative, got {n}"
            )))
        }
        n => Some(n as usize),
    };
    tensor_arg(input, "one_hot: input")?
        .one_hot(n)
        .py()
        .map(wrap)
}

/// Samples `num_samples` category indices per row of the weights `input` (int64).
#[pyfunction]
#[pyo3(signature = (input, num_samples, replacement=false))]
fn multinomial(
    input: &Bound<'_, PyAny>,
    num_samples: &Bound<'_, PyAny>,
    replacement: bool,
) -> PyResult<PyTensor> {
    let n = count_arg(num_samples, "multinomial", "num_samples")?;
    tensor_arg(input, "multinomial: input")?
        .multinomial(n, replacement)
        .py()
        .map(wrap)
}

/// Integers uniform in `[low, high)` of `shape` (int64): `randint(low, high, shape)` or
/// `randint(high, shape)`.
#[pyfunction]
#[pyo3(signature = (low, high, shape=None, dtype=None))]
fn randint(
    low: &Bound<'_, PyAny>,
    high: &Bound<'_, PyAny>,
    shape: Option<&Bound<'_, PyAny>>,
    dtype: Option<&Bound<'_, PyAny>>,
) -> PyResult<PyTensor> {
    let int = |o: &Bound<'_, PyAny>, what: &str| -> PyResult<i64> {
        match scalar_of(o)? {
            Some(Scalar::Int(i)) => Ok(i),
            _ => Err(PyTypeError::new_err(format!(
                "randint: {what} must be an int, got {}",
                o.get_type().name()?
            ))),
        }
    };
    let (lo, hi, shape) = match shape.filter(|s| !s.is_none()) {
        Some(s) => (int(low, "low")?, int(high, "high")?, s.clone()),
        None => (0, int(low, "high")?, high.clone()),
    };
    let shape = parse_shape(&PyTuple::new(shape.py(), [shape])?)?;
    let t = Tensor::randint(lo, hi, &shape).py()?;
    let dtype = crate::convert::parse_dtype(dtype)?.unwrap_or(DType::I64);
    let t = match dtype {
        DType::I64 => t,
        d => Tensor::new(t.array().to_dtype(d), false),
    };
    Ok(wrap(t))
}

/// A random permutation of `0..n` (int64).
#[pyfunction]
#[pyo3(signature = (n, dtype=None))]
fn randperm(n: &Bound<'_, PyAny>, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<PyTensor> {
    let n = count_arg(n, "randperm", "n")?;
    let t = Tensor::randperm(n).py()?;
    let dtype = crate::convert::parse_dtype(dtype)?.unwrap_or(DType::I64);
    Ok(wrap(match dtype {
        DType::I64 => t,
        d => Tensor::new(t.array().to_dtype(d), false),
    }))
}

/// Adds the module functions.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(where_, m)?)?;
    m.add_function(wrap_pyfunction!(tril, m)?)?;
    m.add_function(wrap_pyfunction!(triu, m)?)?;
    m.add_function(wrap_pyfunction!(one_hot, m)?)?;
    m.add_function(wrap_pyfunction!(multinomial, m)?)?;
    m.add_function(wrap_pyfunction!(randint, m)?)?;
    m.add_function(wrap_pyfunction!(randperm, m)?)?;
    Ok(())
}
