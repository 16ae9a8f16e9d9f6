//! `scaled_dot_product_attention` and `packed_attention`: argument and mask conversion and the GIL; the fused op and
//! its kernels are in the core.

use ferrograd::dynarray::DynArray;
use ferrograd::tensor::AttentionMask;
use ferrograd::{NdArray, Tensor};
use numpy::{
    PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::array_methods::compute;
use crate::classes::{PyNdArray, PyTensor};
use crate::convert::{array_from_py, numpy, Infer};
use crate::errors::IntoPyResult;
use crate::functional::arg;

const OP: &str = "scaled_dot_product_attention";

/// The NumPy dtype kind of a non-Tensor argument (`b'f'`, `b'b'`, …), via `np.asarray`.
fn numpy_kind<'py>(obj: &Bound<'py, PyAny>) -> PyResult<(Bound<'py, PyUntypedArray>, u8)> {
    let arr = numpy(obj.py())?
        .call_method1("asarray", (obj,))?
        .cast_into::<PyUntypedArray>()?;
    let kind = arr.dtype().kind();
    Ok((arr, kind))
}

/// A query/key/value operand: a Tensor or NdArray as it is, or a float array-like (a NumPy
/// array of integers or bools is a TypeError, as non-float tensors are in PyTorch).
fn operand(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<Tensor> {
    if !(obj.is_instance_of::<PyTensor>() || obj.is_instance_of::<PyNdArray>()) {
        if let Ok((arr, kind)) = numpy_kind(obj) {
            if kind != b'f' {
                return Err(PyTypeError::new_err(format!(
                    "{OP}: {what} must hold floats, got dtype {}",
                    arr.dtype().str()?
                )));
            }
        }
    }
    arg(obj, what)
}

/// `attn_mask`: a float Tensor/NdArray or float array-like is added to the scores; a bool
/// NumPy array or array-like of bools marks the positions that take part. Integer masks are a
/// TypeError.
fn mask(obj: &Bound<'_, PyAny>) -> PyResult<AttentionMask> {
    if obj.is_instance_of::<PyTensor>() || obj.is_instance_of::<PyNdArray>() {
        // Since the dtype rewrite a Tensor may be bool: then it marks positions that take part.
        return match arg(obj, "attn_mask")?.array().clone() {
            DynArray::Bool(m) => Ok(AttentionMask::Keep(m)),
            a @ (DynArray::F32(_) | DynArray::F64(_)) => Ok(AttentionMask::Add(a)),
            other => Err(PyTypeError::new_err(format!(
                "{OP}: attn_mask must be a bool mask (True = take part) or a float mask (added \
                 to the scores), got dtype {}",
                other.dtype().name()
            ))),
        };
    }
    let (arr, kind) = numpy_kind(obj)?;
    match kind {
        b'b' => {
            let np = numpy(obj.py())?;
            let contiguous = np.call_method1("ascontiguousarray", (&arr,))?;
            let typed = contiguous.cast_into::<PyArrayDyn<bool>>()?;
            let ro = typed
                .try_readonly()
                .map_err(|e| PyValueError::new_err(e.to_string()))?;
            let data = ro
                .as_slice()
                .map_err(|e| PyValueError::new_err(e.to_string()))?
                .to_vec();
            NdArray::from_vec(data, ro.shape())
                .py()
                .map(AttentionMask::Keep)
        }
        b'f' => Ok(AttentionMask::Add(array_from_py(
            obj,
            None,
            Infer::Natural,
        )?)),
        _ => Err(PyTypeError::new_err(format!(
            "{OP}: attn_mask must be a bool mask (True = take part) or a float mask (added to \
             the scores), got dtype {}",
            arr.dtype().str()?
        ))),
    }
}

/// Scaled dot-product attention with PyTorch's semantics, one fused op with its backward.
#[pyfunction]
#[pyo3(signature = (query, key, value, attn_mask=None, dropout_p=0.0, is_causal=false, scale=None))]
#[allow(clippy::too_many_arguments)]
fn scaled_dot_product_attention(
    py: Python<'_>,
    query: &Bound<'_, PyAny>,
    key: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    attn_mask: Option<&Bound<'_, PyAny>>,
    dropout_p: f64,
    is_causal: bool,
    scale: Option<f64>,
) -> PyResult<PyTensor> {
    let q = operand(query, "query")?;
    let k = operand(key, "key")?;
    let v = operand(value, "value")?;
    let attn_mask = attn_mask.filter(|m| !m.is_none());
    // A mask given as a Tensor is recorded as an input too, so an export sees where it came
    // from (the core takes it as an array).
    let mask_tensor =
        attn_mask.and_then(|m| m.cast::<PyTensor>().ok().map(|t| t.get().inner.clone()));
    let attn_mask = attn_mask.map(mask).transpose()?;
    // Multiply-adds of the two products: count·L·S·(E + Ev), estimated from the shapes.
    let work = {
        let (qs, ks, vs) = (q.shape(), k.shape(), v.shape());
        let last = |s: &[usize]| s.last().copied().unwrap_or(1);
        let rows = |s: &[usize]| s.iter().rev().skip(1).product::<usize>();
        rows(&qs)
            .saturating_mul(ks.iter().rev().nth(1).copied().unwrap_or(1))
            .saturating_mul(last(&ks).saturating_add(last(&vs)))
    };
    let out = compute(py, work, || {
        q.scaled_dot_product_attention(&k, &v, attn_mask, dropout_p, is_causal, scale)
    })
    .py()?;
    if let Some(m) = &mask_tensor {
        ferrograd::tensor::record::link_inputs(&out, &[m]);
    }
    Ok(PyTensor { inner: out })
}

/// Multi-head self-attention over a packed `(..., T, 3C)` projection, `(..., T, C)` out.
#[pyfunction]
#[pyo3(signature = (qkv, n_head, dropout_p=0.0, is_causal=false, scale=None))]
fn packed_attention(
    py: Python<'_>,
    qkv: &Bound<'_, PyAny>,
    n_head: usize,
    dropout_p: f64,
    is_causal: bool,
    scale: Option<f64>,
) -> PyResult<PyTensor> {
    let x = operand(qkv, "qkv")?;
    // Multiply-adds of the two products: rows·T·(2C/3), estimated from the shape.
    let work = {
        let s = x.shape();
        let t = s.iter().rev().nth(1).copied().unwrap_or(1);
        s.iter().product::<usize>().saturating_mul(t) / 3 * 2
    };
    let out = compute(py, work, || {
        x.packed_attention(n_head, dropout_p, is_causal, scale)
    })
    .py()?;
    Ok(PyTensor { inner: out })
}

/// Adds the functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(scaled_dot_product_attention, m)?)?;
    m.add_function(wrap_pyfunction!(packed_attention, m)?)
}
