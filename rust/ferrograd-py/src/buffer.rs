//! `_core._with_buffer(tensor, callback)`: lends a tensor's own memory to Python code — an MPI
//! collective in `ferrograd.distributed` — as a writable NumPy view, for one call, without a
//! copy.
//!
//! `np.asarray(t)` cannot serve here: a storage's `Vec` may be replaced or written at any time
//! (`t.data = x`, optimizer steps), so every other export is a snapshot. This one instead holds
//! the storage's write lock (`Tensor::array_mut`, which also counts as an in-place write) while
//! the callback runs, so nothing else can touch or reallocate the memory, and the view is only
//! valid during the call. It must not escape the callback: a view still referenced when the
//! callback returns is reported as an error (its memory stays the tensor's, but the tensor may
//! be resized or freed afterwards). The callback must not use the tensor itself (its lock is
//! held), and no other thread should use it meanwhile.

use ferrograd::ndarray::NdArray;
use ferrograd::{DynArray, Tensor};
use numpy::ndarray::{ArrayViewMut, IxDyn};
use numpy::PyArrayDyn;
use pyo3::exceptions::{PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;

use crate::classes::{PyNdArray, PyTensor};

/// The base object of a lent view: while a view (or anything derived from it) is alive, this
/// object's reference count is above one, which is how an escaped view is noticed.
#[pyclass(name = "_BufferLease", module = "ferrograd._core", frozen)]
struct BufferLease;

/// A writable NumPy view over `a`'s elements, kept alive by `lease`.
fn view_of<'py, T: numpy::Element + Clone>(
    a: &mut NdArray<T>,
    lease: &Bound<'py, BufferLease>,
) -> PyResult<Bound<'py, PyAny>> {
    let shape = a.shape().to_vec();
    let view = ArrayViewMut::from_shape(IxDyn(&shape), a.data_mut())
        .map_err(|e| PyValueError::new_err(format!("_with_buffer: {e}")))?;
    // SAFETY: the caller holds the storage's write lock until the view is dropped (or reported
    // as escaped), so the memory is neither reallocated nor accessed elsewhere meanwhile; the
    // lease is the view's base object and owns nothing.
    let array = unsafe { PyArrayDyn::borrow_from_array(&view, lease.clone().into_any()) };
    Ok(array.into_any())
}

fn tensor_of(obj: &Bound<'_, PyAny>) -> PyResult<Tensor> {
    if let Ok(t) = obj.cast::<PyTensor>() {
        Ok(t.get().inner.clone())
    } else if let Ok(t) = obj.cast::<PyNdArray>() {
        Ok(t.get().as_tensor())
    } else {
        Err(PyTypeError::new_err(format!(
            "_with_buffer: expected a Tensor or NdArray, got {}",
            obj.get_type().name()?
        )))
    }
}

/// Calls `callback(view)` with a writable NumPy array over `tensor`'s memory (a Tensor or an
/// NdArray such as `t.grad`) while holding its write lock, and returns what the callback
/// returns. The view is valid only during the call: it must not be stored or returned.
#[pyfunction]
#[pyo3(name = "_with_buffer")]
fn with_buffer(tensor: &Bound<'_, PyAny>, callback: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
    let py = tensor.py();
    if !callback.is_callable() {
        return Err(PyTypeError::new_err(format!(
            "_with_buffer: callback must be callable, got {}",
            callback.get_type().name()?
        )));
    }
    let t = tensor_of(tensor)?;
    let lease = Bound::new(py, BufferLease)?;
    let mut guard = t.array_mut();
    let view = match &mut *guard {
        DynArray::F32(a) => view_of(a, &lease)?,
        DynArray::F64(a) => view_of(a, &lease)?,
        DynArray::I64(a) => view_of(a, &lease)?,
        DynArray::I32(a) => view_of(a, &lease)?,
        DynArray::Bool(a) => view_of(a, &lease)?,
    };
    // The argument tuple owns the only reference to the view: it is gone once `call1` returns,
    // unless the callback kept it somewhere.
    let result = callback.call1((view,));
    // SAFETY: `lease` is a live object and the GIL is held.
    let escaped = unsafe { pyo3::ffi::Py_REFCNT(lease.as_ptr()) } > 1;
    drop(guard);
    let value = result?;
    if escaped {
        return Err(PyRuntimeError::new_err(
            "_with_buffer: the callback kept a reference to the view of the tensor's memory; \
             the view is valid only during the call (copy it with .copy() to keep the values)",
        ));
    }
    Ok(value.unbind())
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(with_buffer, m)?)
}
