//! Recording for export (`fg.onnx`): start and stop this thread's recording, hand the
//! records to Python as dicts, and let Python layers record a composite as one op.

use std::borrow::Cow;

use ferrograd::tensor::record::{self, Attr, Attrs, Record};
use ferrograd::Tensor;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyBool, PyDict, PyFloat, PyInt, PyList, PyString, PyTuple};

use crate::classes::PyTensor;
use crate::convert::{ours, to_numpy};
use crate::errors::IntoPyResult;

/// Starts recording the tensor ops this thread runs (RuntimeError if it already records).
#[pyfunction]
fn _start_recording() -> PyResult<()> {
    record::start().py()
}

/// Stops recording and returns the records, oldest first: dicts with `op` (str), `inputs`
/// and `outputs` (lists of `(Tensor, version)`) and `attrs` (dict).
#[pyfunction]
fn _stop_recording(py: Python<'_>) -> PyResult<Vec<Bound<'_, PyDict>>> {
    record::stop()
        .into_iter()
        .map(|r| record_to_py(py, r))
        .collect()
}

/// Whether this thread is recording.
#[pyfunction]
fn _is_recording() -> bool {
    record::is_recording()
}

/// Calls `fn()` (which must return a Tensor) as one recorded op named `op` with `inputs`
/// and `attrs` (numbers, bools, str, None or tuples of ints); outside recording it just
/// calls `fn()`.
#[pyfunction]
fn _record_fused(
    op: String,
    inputs: Vec<Bound<'_, PyAny>>,
    attrs: &Bound<'_, PyDict>,
    func: &Bound<'_, PyAny>,
) -> PyResult<PyTensor> {
    let call = || -> PyResult<Tensor> {
        let out = func.call0()?;
        ours(&out).ok_or_else(|| PyTypeError::new_err("_record_fused: fn must return a Tensor"))
    };
    if !record::is_recording() {
        return call().map(PyTensor::new);
    }
    let inputs = inputs
        .iter()
        .map(|t| {
            ours(t).ok_or_else(|| PyTypeError::new_err("_record_fused: inputs must be Tensors"))
        })
        .collect::<PyResult<Vec<Tensor>>>()?;
    let attrs = attrs
        .iter()
        .map(|(k, v)| Ok((Cow::Owned(k.extract::<String>()?), attr_from_py(&v)?)))
        .collect::<PyResult<Attrs>>()?;
    let refs: Vec<&Tensor> = inputs.iter().collect();
    // A Python error inside `fn` travels out through the core's Result as this slot.
    let mut failure: Option<PyErr> = None;
    let out = record::fused(
        op,
        &refs,
        || attrs,
        || {
            call().map_err(|e| {
                failure = Some(e);
                ferrograd::Error::Graph("_record_fused: fn failed".into())
            })
        },
    );
    match (out, failure) {
        (Ok(t), _) => Ok(PyTensor::new(t)),
        (Err(_), Some(e)) => Err(e),
        (Err(e), None) => Err(e).py(),
    }
}

fn record_to_py(py: Python<'_>, r: Record) -> PyResult<Bound<'_, PyDict>> {
    let d = PyDict::new(py);
    let pairs = |list: Vec<(Tensor, u64)>| -> PyResult<Bound<'_, PyList>> {
        let items = list
            .into_iter()
            .map(|(t, v)| (PyTensor::new(t), v).into_pyobject(py).map(Bound::into_any))
            .collect::<PyResult<Vec<_>>>()?;
        PyList::new(py, items)
    };
    d.set_item("op", r.op.as_ref())?;
    d.set_item("inputs", pairs(r.inputs)?)?;
    d.set_item("outputs", pairs(r.outputs)?)?;
    let attrs = PyDict::new(py);
    for (k, v) in r.attrs {
        attrs.set_item(k.as_ref(), attr_to_py(py, v)?)?;
    }
    d.set_item("attrs", attrs)?;
    Ok(d)
}

fn attr_to_py(py: Python<'_>, a: Attr) -> PyResult<Bound<'_, PyAny>> {
    Ok(match a {
        Attr::None => py.None().into_bound(py),
        Attr::Bool(b) => PyBool::new(py, b).to_owned().into_any(),
        Attr::Int(i) => i.into_pyobject(py)?.into_any(),
        Attr::Float(f) => f.into_pyobject(py)?.into_any(),
        Attr::Str(s) => PyString::new(py, &s).into_any(),
        Attr::Ints(v) => PyTuple::new(py, v)?.into_any(),
        Attr::List(v) => {
            let items = v
                .into_iter()
                .map(|x| attr_to_py(py, x))
                .collect::<PyResult<Vec<_>>>()?;
            PyTuple::new(py, items)?.into_any()
        }
        Attr::Array(arr) => to_numpy(py, &arr)?,
    })
}

fn attr_from_py(v: &Bound<'_, PyAny>) -> PyResult<Attr> {
    if v.is_none() {
        Ok(Attr::None)
    } else if v.is_instance_of::<PyBool>() {
        Ok(Attr::Bool(v.extract()?))
    } else if v.is_instance_of::<PyInt>() {
        Ok(Attr::Int(v.extract()?))
    } else if v.is_instance_of::<PyFloat>() {
        Ok(Attr::Float(v.extract()?))
    } else if v.is_instance_of::<PyString>() {
        Ok(Attr::Str(Cow::Owned(v.extract()?)))
    } else if let Ok(ints) = v.extract::<Vec<i64>>() {
        Ok(Attr::Ints(ints))
    } else {
        Err(PyTypeError::new_err(format!(
            "_record_fused: unsupported attribute value {v}"
        )))
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(_start_recording, m)?)?;
    m.add_function(wrap_pyfunction!(_stop_recording, m)?)?;
    m.add_function(wrap_pyfunction!(_is_recording, m)?)?;
    m.add_function(wrap_pyfunction!(_record_fused, m)?)?;
    Ok(())
}
