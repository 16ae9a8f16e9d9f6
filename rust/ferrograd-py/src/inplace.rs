//! The in-place methods of `Tensor` and `NdArray` — `+= -= *= /=`, `t[key] = value`,
//! `zero_ fill_ copy_ clamp_` and `_version` — written once as a macro that expands to a
//! `#[pymethods]` block for each class. The writes are the core's (`Tensor::apply_`,
//! `index_put_`, …); this converts the arguments and releases the GIL around large ones.

use ferrograd::tensor::{InplaceOp, Operand};
use ferrograd::{DType, DynArray, Tensor};
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::{PyList, PyTuple};

use crate::array_methods::{compute, operand, ArrayClass, Operand as PyOperand};
use crate::classes::{PyNdArray, PyTensor};
use crate::convert::{array_from_py, scalar_of, Infer};
use crate::errors::IntoPyResult;

/// Reads the right-hand side of an in-place op on a tensor of `dtype`: a Tensor or NdArray,
/// a number, or anything array-like. A Python list takes a float target's dtype (a float64
/// tensor keeps a list's float64 values), a NumPy array keeps its own.
fn rhs(op: &str, obj: &Bound<'_, PyAny>, dtype: DType) -> PyResult<PyOperand> {
    if obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>() {
        // A float target keeps the list's values at its precision; into an integer target
        // the list keeps its own dtype, so `int_t += [0.5]` is refused rather than truncated.
        let target = dtype.is_float().then_some(dtype);
        return Ok(PyOperand::Array(Tensor::new(
            array_from_py(obj, target, Infer::Natural)?,
            false,
        )));
    }
    operand::<PyTensor>(obj)?.ok_or_else(|| match obj.get_type().name() {
        Ok(name) => PyTypeError::new_err(format!("{op}: unsupported operand type {name}")),
        Err(e) => e,
    })
}

fn as_core(o: &PyOperand) -> Operand<'_> {
    match o {
        PyOperand::Array(t) => Operand::Tensor(t),
        PyOperand::Scalar(s) => Operand::Scalar(*s),
    }
}

/// `t op= other`.
pub fn apply(t: &Tensor, other: &Bound<'_, PyAny>, op: InplaceOp) -> PyResult<()> {
    let r = rhs(op.name(), other, t.dtype())?;
    let n = t.array().size();
    compute(other.py(), n, || t.apply_(op, as_core(&r))).py()
}

/// `t[key] = value`.
pub fn set_item(t: &Tensor, key: &Bound<'_, PyAny>, value: &Bound<'_, PyAny>) -> PyResult<()> {
    let items = crate::convert::parse_index(key)?;
    let v = rhs("__setitem__", value, t.dtype())?;
    let n = t.array().size();
    compute(key.py(), n, || t.index_put_(&items, as_core(&v))).py()
}

/// `t.copy_(src)`: a number is copied as a 0-d array.
pub fn copy(t: &Tensor, src: &Bound<'_, PyAny>) -> PyResult<()> {
    let py = src.py();
    let src = match rhs("copy_", src, t.dtype())? {
        PyOperand::Array(a) => a,
        PyOperand::Scalar(s) => Tensor::new(DynArray::full_scalar(&[], s, t.dtype()).py()?, false),
    };
    let n = t.array().size();
    compute(py, n, || t.copy_(&src)).py()
}

/// Runs a write that needs no arguments converted, releasing the GIL when it is large.
pub fn run(
    py: Python<'_>,
    t: &Tensor,
    f: impl FnOnce(&Tensor) -> ferrograd::Result<()> + Send,
) -> PyResult<()> {
    let n = t.array().size();
    compute(py, n, || f(t)).py()
}

macro_rules! inplace_methods {
    ($cls:ty) => {
        #[pymethods]
        impl $cls {
            /// How many in-place writes this array's memory has seen, through any alias
            /// (`.data`, `detach()`, `.grad`, an optimizer step): PyTorch's `_version`.
            #[getter]
            fn _version(&self) -> u64 {
                self.storage().version()
            }

            fn __iadd__(&self, o: &Bound<'_, PyAny>) -> PyResult<()> {
                apply(&self.tensor(), o, InplaceOp::Add)
            }
            fn __isub__(&self, o: &Bound<'_, PyAny>) -> PyResult<()> {
                apply(&self.tensor(), o, InplaceOp::Sub)
            }
            fn __imul__(&self, o: &Bound<'_, PyAny>) -> PyResult<()> {
                apply(&self.tensor(), o, InplaceOp::Mul)
            }
            fn __itruediv__(&self, o: &Bound<'_, PyAny>) -> PyResult<()> {
                apply(&self.tensor(), o, InplaceOp::Div)
            }

            /// `t[key] = value`: ints, slices, None, `...` and integer arrays as in reading;
            /// the value is a number or an array broadcast to the indexed shape.
            fn __setitem__(
                &self,
                key: &Bound<'_, PyAny>,
                value: &Bound<'_, PyAny>,
            ) -> PyResult<()> {
                set_item(&self.tensor(), key, value)
            }

            /// Sets every element to 0, in place; returns this array.
            fn zero_(slf: Bound<'_, Self>) -> PyResult<Bound<'_, Self>> {
                run(slf.py(), &slf.get().tensor(), Tensor::zero_)?;
                Ok(slf)
            }

            /// Sets every element to `value`, in place; returns this array.
            fn fill_<'py>(
                slf: Bound<'py, Self>,
                value: &Bound<'py, PyAny>,
            ) -> PyResult<Bound<'py, Self>> {
                let value = scalar_of(value)?.ok_or_else(|| {
                    PyTypeError::new_err("fill_: the value must be a bool, int or float")
                })?;
                run(slf.py(), &slf.get().tensor(), |t| t.fill_(value))?;
                Ok(slf)
            }

            /// Copies `src` (broadcast to this shape, cast to this dtype) in; returns this array.
            fn copy_<'py>(
                slf: Bound<'py, Self>,
                src: &Bound<'py, PyAny>,
            ) -> PyResult<Bound<'py, Self>> {
                copy(&slf.get().tensor(), src)?;
                Ok(slf)
            }

            /// Limits every element to `[min, max]` in place (either bound may be left out);
            /// returns this array.
            #[pyo3(signature = (min=None, max=None))]
            fn clamp_(
                slf: Bound<'_, Self>,
                min: Option<f64>,
                max: Option<f64>,
            ) -> PyResult<Bound<'_, Self>> {
                run(slf.py(), &slf.get().tensor(), |t| t.clamp_(min, max))?;
                Ok(slf)
            }
        }
    };
}

inplace_methods!(PyTensor);
inplace_methods!(PyNdArray);
