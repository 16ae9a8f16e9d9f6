//! Maps core errors to Python exceptions, and defines `ferrograd.AxisError`.

use ferrograd::Error;
use pyo3::exceptions::{PyIndexError, PyMemoryError, PyRuntimeError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyDict, PyTuple, PyType};

static AXIS_ERROR: PyOnceLock<Py<PyType>> = PyOnceLock::new();

/// `AxisError(ValueError, IndexError)`, as NumPy's: catchable as either.
pub fn axis_error_type(py: Python<'_>) -> PyResult<&Bound<'_, PyType>> {
    AXIS_ERROR
        .get_or_try_init(py, || {
            let bases = PyTuple::new(
                py,
                [py.get_type::<PyValueError>(), py.get_type::<PyIndexError>()],
            )?;
            let ns = PyDict::new(py);
            ns.set_item("__module__", "ferrograd")?;
            ns.set_item(
                "__doc__",
                "An axis out of range or repeated: both a ValueError and an IndexError.",
            )?;
            let ty = py.get_type::<PyType>().call1(("AxisError", bases, ns))?;
            Ok::<_, PyErr>(ty.cast_into::<PyType>()?.unbind())
        })
        .map(|t| t.bind(py))
}

/// Converts a core error into the Python exception its kind stands for (docs/design.md).
pub fn to_py(err: Error) -> PyErr {
    match err {
        Error::Shape(m) | Error::Value(m) => PyValueError::new_err(m),
        Error::Index(m) => PyIndexError::new_err(m),
        Error::Type(m) => PyTypeError::new_err(m),
        Error::Graph(m) => PyRuntimeError::new_err(m),
        Error::Memory(m) => PyMemoryError::new_err(m),
        Error::Hook(m) => {
            crate::hooks::take_hook_error().unwrap_or_else(|| PyRuntimeError::new_err(m))
        }
        Error::Axis(m) => Python::attach(|py| match axis_error_type(py) {
            Ok(ty) => PyErr::from_type(ty.clone(), m),
            Err(e) => e,
        }),
    }
}

/// `?`-friendly conversion of core results.
pub trait IntoPyResult<T> {
    fn py(self) -> PyResult<T>;
}

impl<T> IntoPyResult<T> for ferrograd::Result<T> {
    fn py(self) -> PyResult<T> {
        self.map_err(to_py)
    }
}
