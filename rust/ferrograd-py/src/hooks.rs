//! `Tensor.register_post_accumulate_grad_hook(fn)`: Python functions that backward calls on a
//! leaf right after adding this pass's gradient into its `.grad`, and the handle that removes one.
//!
//! Backward runs with the GIL released; a hook takes it back to call Python. A hook's exception
//! stops backward and is raised by `backward()` as that same exception: it waits in a
//! per-thread slot (backward runs on the calling thread) until `errors::to_py` turns the core's
//! `Error::Hook` into it.

use std::cell::RefCell;
use std::sync::Arc;

use ferrograd::tensor::HookHandle;
use ferrograd::{Error, Tensor};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyWeakrefReference;

use crate::classes::PyTensor;
use crate::errors::IntoPyResult;

thread_local! {
    static PENDING: RefCell<Option<PyErr>> = const { RefCell::new(None) };
}

/// The exception of the hook whose failure stopped this thread's backward, if any.
pub fn take_hook_error() -> Option<PyErr> {
    PENDING.with(|p| p.borrow_mut().take())
}

fn hook_failed(err: PyErr) -> Error {
    let message = format!("a post-accumulate-grad hook raised {err}");
    PENDING.with(|p| *p.borrow_mut() = Some(err));
    Error::Hook(message)
}

/// Removes the hook it was returned for: `handle.remove()`, or leave a `with` block.
#[pyclass(name = "RemovableHandle", module = "ferrograd", frozen)]
pub struct PyRemovableHandle {
    inner: HookHandle,
}

#[pymethods]
impl PyRemovableHandle {
    /// Unregisters the hook (a second call does nothing).
    fn remove(&self) {
        self.inner.remove();
    }

    fn __enter__(slf: Bound<'_, Self>) -> Bound<'_, Self> {
        slf
    }

    #[pyo3(signature = (*_args))]
    fn __exit__(&self, _args: &Bound<'_, pyo3::types::PyTuple>) {
        self.inner.remove();
    }
}

#[pymethods]
impl PyTensor {
    /// Registers `hook(tensor)` to run after each backward pass has accumulated this leaf's
    /// gradient into `.grad` (PyTorch's hook of the same name). It must return None; an
    /// exception it raises ends `backward()` with that exception. Returns a handle whose
    /// `remove()` unregisters the hook.
    fn register_post_accumulate_grad_hook(
        slf: &Bound<'_, Self>,
        hook: &Bound<'_, PyAny>,
    ) -> PyResult<PyRemovableHandle> {
        if !hook.is_callable() {
            return Err(PyTypeError::new_err(format!(
                "register_post_accumulate_grad_hook: hook must be callable, got {}",
                hook.get_type().name()?
            )));
        }
        // The hook gets this very Python object while it lives; a weak reference, because the
        // node owns the hook and a strong one would keep the tensor alive forever.
        let this = PyWeakrefReference::new(slf.as_any())?.unbind();
        let hook = hook.clone().unbind();
        let call = move |t: &Tensor| -> ferrograd::Result<()> {
            Python::attach(|py| {
                let target = match this.bind(py).upgrade() {
                    Some(obj) => obj,
                    None => Bound::new(py, PyTensor { inner: t.clone() })
                        .map_err(hook_failed)?
                        .into_any(),
                };
                let returned = hook.bind(py).call1((target,)).map_err(hook_failed)?;
                if !returned.is_none() {
                    return Err(hook_failed(pyo3::exceptions::PyRuntimeError::new_err(
                        "post accumulate grad hooks should return None",
                    )));
                }
                Ok(())
            })
        };
        let inner = slf
            .get()
            .inner
            .register_post_accumulate_grad_hook(Arc::new(call))
            .py()?;
        Ok(PyRemovableHandle { inner })
    }
}

pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyRemovableHandle>()
}
