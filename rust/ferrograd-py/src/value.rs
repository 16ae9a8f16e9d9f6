//! The Python class `Value`: a thread-bound wrapper of the core scalar autodiff `Value`.
//!
//! The core `Value` is an `Rc` graph node, so it is neither `Send` nor `Sync`. PyO3's
//! `#[pyclass(unsendable)]` answers a foreign-thread access with a panic (a
//! `PanicException`, not an `Exception`), so this class guards itself instead: it records
//! the thread that created it and every method checks it first, raising `RuntimeError`
//! elsewhere. A wrapper dropped on a foreign thread leaks its node rather than touch the
//! `Rc`'s non-atomic counts there.

use std::mem::ManuallyDrop;
use std::sync::atomic::{AtomicU64, Ordering};

use ferrograd::Value;
use pyo3::exceptions::{PyRuntimeError, PyTypeError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyFloat, PyInt, PyTuple, PyType};

static NEXT_THREAD: AtomicU64 = AtomicU64::new(1);

thread_local! {
    /// This thread's number: unique for the life of the process, never reused.
    static THREAD: u64 = NEXT_THREAD.fetch_add(1, Ordering::Relaxed);
}

/// The current thread's number; `None` while the thread is being torn down.
fn current_thread() -> Option<u64> {
    THREAD.try_with(|t| *t).ok()
}

/// A scalar with reverse-mode autodiff: `Value(2.0)`; `.data`, `.grad`, `.backward()`.
#[pyclass(name = "Value", module = "ferrograd._core", frozen)]
pub struct PyValue {
    /// The thread that created the wrapper: the only one that may touch `inner`.
    owner: u64,
    /// Dropped only on `owner` (see `Drop`).
    inner: ManuallyDrop<Value>,
}

// SAFETY: the only non-thread-safe part is `inner` (an `Rc` graph). Every access to it goes
// through `PyValue::value`, which returns it only on the thread that created the wrapper,
// and `Drop` releases it only on that thread (elsewhere it is leaked, never touched). The
// nodes reachable from `inner` are shared only with wrappers of the same thread, because
// every operation checks both operands with `value` before combining them. So the `Rc`
// counts and `RefCell` flags are only ever used by one thread.
unsafe impl Send for PyValue {}
// SAFETY: as for `Send`: a shared reference on another thread cannot reach `inner`.
unsafe impl Sync for PyValue {}

impl Drop for PyValue {
    fn drop(&mut self) {
        if current_thread() == Some(self.owner) {
            // SAFETY: `inner` is not used after this.
            unsafe { ManuallyDrop::drop(&mut self.inner) };
        }
        // On another thread: leak the node, the owner thread may still be using its graph.
    }
}

impl PyValue {
    /// Wraps a node made on the current thread.
    fn wrap(value: Value) -> Self {
        PyValue::wrap_for(current_thread().unwrap_or(0), value)
    }

    /// Wraps a node made on thread `owner`, which the caller knows is the current one.
    fn wrap_for(owner: u64, value: Value) -> Self {
        PyValue {
            owner,
            inner: ManuallyDrop::new(value),
        }
    }

    /// The node, on its own thread; `RuntimeError` on any other.
    fn value(&self) -> PyResult<&Value> {
        if current_thread() == Some(self.owner) {
            Ok(&self.inner)
        } else {
            Err(PyRuntimeError::new_err(
                "Value was created on another thread: a Value (and its graph) may only be \
                 used on the thread that created it",
            ))
        }
    }

    /// A new Python object for `value` (made on the current thread, `owner`), left
    /// untracked by the garbage collector.
    fn into_py_any(owner: u64, value: Value, py: Python<'_>) -> PyResult<Py<PyAny>> {
        let obj = Bound::new(py, PyValue::wrap_for(owner, value))?.into_any();
        untrack(&obj);
        Ok(obj.unbind())
    }

    /// The node of `other` if it is a Value of this wrapper's thread, which the caller has
    /// checked is the current one (so no second thread lookup); `RuntimeError` for a Value
    /// of another thread, `None` for anything else.
    fn same_thread<'a>(&self, other: &'a Bound<'_, PyAny>) -> PyResult<Option<&'a Value>> {
        let Ok(v) = other.cast::<PyValue>() else {
            return Ok(None);
        };
        let v = v.get();
        let value = if v.owner == self.owner {
            &*v.inner
        } else {
            v.value()?
        };
        // Leaves made by `Value(x)` are tracked (pyo3 allocates them); an op lets them go.
        untrack(other);
        Ok(Some(value))
    }

    /// `f(self, other)`, or `NotImplemented` when `other` is neither a Value nor a number.
    fn binary(
        slf: &Bound<'_, PyValue>,
        other: &Bound<'_, PyAny>,
        f: impl FnOnce(&Value, &Value) -> Value,
    ) -> PyResult<Py<PyAny>> {
        let me = slf.get();
        let a = me.value()?;
        let py = other.py();
        untrack(slf.as_any());
        let out = match me.same_thread(other)? {
            Some(b) => f(a, b),
            None => match real_number(other)? {
                Some(x) => f(a, &Value::new(x)),
                None => return Ok(py.NotImplemented()),
            },
        };
        PyValue::into_py_any(me.owner, out, py)
    }

    /// `f(other, self)`, for the reflected operators (`2.0 - v`).
    fn reflected(
        slf: &Bound<'_, PyValue>,
        other: &Bound<'_, PyAny>,
        f: impl FnOnce(&Value, &Value) -> Value,
    ) -> PyResult<Py<PyAny>> {
        PyValue::binary(slf, other, |me, lhs| f(lhs, me))
    }

    /// `f(self)` for the one-input ops.
    fn unary(slf: &Bound<'_, PyValue>, f: impl FnOnce(&Value) -> Value) -> PyResult<Py<PyAny>> {
        let me = slf.get();
        let out = f(me.value()?);
        untrack(slf.as_any());
        PyValue::into_py_any(me.owner, out, slf.py())
    }
}

/// Takes a Value's Python object off the garbage collector's lists. pyo3 tracks every
/// instance of a pyclass, but a `PyValue` holds no Python reference (its graph is Rust's
/// `Rc`s), so it can never be part of a reference cycle; tracked, the 100,000s of nodes of
/// a scalar graph made every collection walk them all (a third of a graph's build time).
fn untrack(obj: &Bound<'_, PyAny>) {
    // SAFETY: `obj` is a live object of a GC type (a pyclass); untracking an untracked
    // object is a no-op, and pyo3's dealloc untracks again harmlessly.
    unsafe { pyo3::ffi::PyObject_GC_UnTrack(obj.as_ptr().cast()) }
}

/// A Python real number as `f64`: `int`, `float`, `bool` or any `numbers.Real` (NumPy
/// scalars); `None` for anything else.
fn real_number(obj: &Bound<'_, PyAny>) -> PyResult<Option<f64>> {
    static REAL: PyOnceLock<Py<PyType>> = PyOnceLock::new();
    let is_real = obj.is_instance_of::<PyFloat>()
        || obj.is_instance_of::<PyInt>()
        || obj.is_instance(REAL.import(obj.py(), "numbers", "Real")?)?;
    if is_real {
        obj.extract::<f64>().map(Some)
    } else {
        Ok(None)
    }
}

/// A number for `Value(x)` and the setters, or `TypeError`.
fn require_number(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<f64> {
    real_number(obj)?.ok_or_else(|| {
        let ty = obj
            .get_type()
            .name()
            .map(|n| n.to_string())
            .unwrap_or_else(|_| "?".into());
        PyTypeError::new_err(format!("{what} takes a real number, got {ty}"))
    })
}

#[pymethods]
impl PyValue {
    /// `Value(data)`: a leaf holding a real number (int, float or NumPy scalar).
    #[new]
    fn new(data: &Bound<'_, PyAny>) -> PyResult<Self> {
        Ok(PyValue::wrap(Value::new(require_number(data, "Value()")?)))
    }

    /// NumPy defers to Value's reflected operators instead of broadcasting over it.
    #[classattr]
    fn __array_ufunc__(py: Python<'_>) -> Py<PyAny> {
        py.None()
    }

    /// The number this node holds.
    #[getter]
    fn data(&self) -> PyResult<f64> {
        Ok(self.value()?.data())
    }

    #[setter]
    fn set_data(&self, data: &Bound<'_, PyAny>) -> PyResult<()> {
        let x = require_number(data, "Value.data")?;
        self.value()?.set_data(x);
        Ok(())
    }

    /// d(root)/d(self) after the last `backward()` through this node.
    #[getter]
    fn grad(&self) -> PyResult<f64> {
        Ok(self.value()?.grad())
    }

    #[setter]
    fn set_grad(&self, grad: &Bound<'_, PyAny>) -> PyResult<()> {
        let g = require_number(grad, "Value.grad")?;
        self.value()?.set_grad(g);
        Ok(())
    }

    /// The inputs of the op that made this node, as a tuple (empty for a leaf).
    #[getter(_prev)]
    fn prev<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let parents = self
            .value()?
            .prev()
            .into_iter()
            .map(|p| PyValue::into_py_any(self.owner, p, py))
            .collect::<PyResult<Vec<_>>>()?;
        PyTuple::new(py, parents)
    }

    /// The op's short name (`"+"`, `"**"`, `"tanh"`, …), `None` on a leaf.
    #[getter(_op)]
    fn op(&self) -> PyResult<Option<&'static str>> {
        Ok(self.value()?.op_name())
    }

    /// A process-unique node id (two wrappers of one node share it).
    #[getter(_id)]
    fn id(&self) -> PyResult<usize> {
        Ok(self.value()?.id())
    }

    /// Backpropagates from this node: resets inner grads, seeds 1, accumulates into leaves.
    fn backward(&self) -> PyResult<()> {
        self.value()?.backward();
        Ok(())
    }

    /// `max(x, 0)`; the gradient is 1 where x > 0.
    fn relu(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        PyValue::unary(slf, Value::relu)
    }

    /// Hyperbolic tangent.
    fn tanh(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        PyValue::unary(slf, Value::tanh)
    }

    /// `e ** x`.
    fn exp(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        PyValue::unary(slf, Value::exp)
    }

    /// Natural logarithm (IEEE: NaN below 0, -inf at 0).
    fn log(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        PyValue::unary(slf, Value::log)
    }

    /// The logistic function `1 / (1 + exp(-x))`.
    fn sigmoid(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        PyValue::unary(slf, Value::sigmoid)
    }

    fn __neg__(slf: &Bound<'_, Self>) -> PyResult<Py<PyAny>> {
        PyValue::unary(slf, Value::neg_value)
    }

    fn __add__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        PyValue::binary(slf, other, |a, b| a + b)
    }

    fn __radd__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        PyValue::reflected(slf, other, |a, b| a + b)
    }

    fn __sub__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        PyValue::binary(slf, other, |a, b| a - b)
    }

    fn __rsub__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        PyValue::reflected(slf, other, |a, b| a - b)
    }

    fn __mul__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        PyValue::binary(slf, other, |a, b| a * b)
    }

    fn __rmul__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        PyValue::reflected(slf, other, |a, b| a * b)
    }

    fn __truediv__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        PyValue::binary(slf, other, |a, b| a / b)
    }

    fn __rtruediv__(slf: &Bound<'_, Self>, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        PyValue::reflected(slf, other, |a, b| a / b)
    }

    /// `v ** p`: a number exponent is a constant (`powf`), a Value one is differentiated.
    fn __pow__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        modulo: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        let py = other.py();
        slf.get().value()?;
        if !modulo.is_none() {
            return Ok(py.NotImplemented());
        }
        if other.cast::<PyValue>().is_ok() {
            return PyValue::binary(slf, other, Value::pow);
        }
        match real_number(other)? {
            Some(n) => PyValue::unary(slf, |me| me.powf(n)),
            None => Ok(py.NotImplemented()),
        }
    }

    /// `x ** v` for a number `x`: differentiable in `v`.
    fn __rpow__(
        slf: &Bound<'_, Self>,
        other: &Bound<'_, PyAny>,
        modulo: &Bound<'_, PyAny>,
    ) -> PyResult<Py<PyAny>> {
        if !modulo.is_none() {
            slf.get().value()?;
            return Ok(other.py().NotImplemented());
        }
        PyValue::reflected(slf, other, |base, exponent| base.pow(exponent))
    }

    /// Two wrappers are equal when they hold the same graph node (micrograd's identity).
    fn __eq__(&self, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> {
        let me = self.value()?;
        let py = other.py();
        match other.cast::<PyValue>() {
            Ok(v) => Ok(me
                .ptr_eq(v.get().value()?)
                .into_pyobject(py)?
                .to_owned()
                .into_any()
                .unbind()),
            Err(_) => Ok(py.NotImplemented()),
        }
    }

    fn __hash__(&self) -> PyResult<u64> {
        Ok(self.value()?.id() as u64)
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let v = self.value()?;
        let data = PyFloat::new(py, v.data()).repr()?;
        let grad = PyFloat::new(py, v.grad()).repr()?;
        Ok(format!("Value(data={data}, grad={grad})"))
    }
}

/// Adds the `Value` class to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<PyValue>()
}
