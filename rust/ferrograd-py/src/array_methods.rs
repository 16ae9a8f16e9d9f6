//! The methods `Tensor` and `NdArray` share — every non-autodiff method and operator — written
//! once as a macro that expands to a `#[pymethods]` block for each class.

use ferrograd::{DynArray, Tensor};
use pyo3::prelude::*;
use pyo3::types::PyFloat;
use pyo3::types::PyInt;

use crate::convert::{array_from_py, numpy, to_numpy};
use crate::errors::IntoPyResult;
use crate::tensor::{PyNdArray, PyTensor};

/// Work on more elements than this releases the GIL: below it, the release costs more than
/// it frees.
const RELEASE_GIL_ABOVE: usize = 1 << 14;

/// Runs `f`, releasing the GIL when the work is large.
pub fn compute<R: Send>(py: Python<'_>, elements: usize, f: impl FnOnce() -> R + Send) -> R {
    if elements > RELEASE_GIL_ABOVE {
        py.detach(f)
    } else {
        f()
    }
}

/// What a Python class wrapping a `Tensor` provides to the shared methods.
pub trait ArrayClass: pyo3::PyClass + Sized + Into<PyClassInitializer<Self>> {
    /// The class name in messages and `repr`.
    const CLASS_NAME: &'static str;
    fn tensor(&self) -> &Tensor;
    fn wrap(t: Tensor) -> Self;
}

/// The right-hand side of a binary operator.
pub enum Operand {
    Array(Tensor),
    Scalar(f64),
}

/// Which binary operator.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    MatMul,
}

impl BinOp {
    fn apply(self, a: &Tensor, b: &Tensor) -> ferrograd::Result<Tensor> {
        match self {
            BinOp::Add => a.add(b),
            BinOp::Sub => a.sub(b),
            BinOp::Mul => a.mul(b),
            BinOp::Div => a.div(b),
            BinOp::Pow => a.pow(b),
            BinOp::MatMul => a.matmul(b),
        }
    }

    /// `a op s`, or `s op a` when `reflected`, with a scalar that never promotes.
    fn apply_scalar(self, a: &Tensor, s: f64, reflected: bool) -> ferrograd::Result<Tensor> {
        match (self, reflected) {
            (BinOp::Add, _) => a.add_scalar(s),
            (BinOp::Mul, _) => a.mul_scalar(s),
            (BinOp::Sub, false) => a.sub_scalar(s),
            (BinOp::Sub, true) => a.rsub_scalar(s),
            (BinOp::Div, false) => a.div_scalar(s),
            (BinOp::Div, true) => a.rdiv_scalar(s),
            (BinOp::Pow, false) => a.pow_scalar(s),
            (BinOp::Pow, true) => a.rpow_scalar(s),
            (BinOp::MatMul, _) => {
                let b = Tensor::new(DynArray::full(&[], s, a.dtype())?, false);
                if reflected {
                    b.matmul(a)
                } else {
                    a.matmul(&b)
                }
            }
        }
    }
}

/// Classifies an operand; `None` means "not ours" (Python then tries the other side).
/// `NdArray` leaves `Tensor` operands to `Tensor`'s reflected method, so the result is a Tensor.
pub fn operand<C: ArrayClass>(obj: &Bound<'_, PyAny>) -> PyResult<Option<Operand>> {
    if let Ok(t) = obj.cast::<PyTensor>() {
        if C::CLASS_NAME == "NdArray" {
            return Ok(None);
        }
        return Ok(Some(Operand::Array(t.get().inner.clone())));
    }
    if let Ok(t) = obj.cast::<PyNdArray>() {
        return Ok(Some(Operand::Array(t.get().inner.clone())));
    }
    if obj.is_instance_of::<PyFloat>() || obj.is_instance_of::<PyInt>() {
        return Ok(Some(Operand::Scalar(obj.extract()?)));
    }
    let np = numpy(obj.py())?;
    if obj.is_instance_of::<numpy::PyUntypedArray>()
        || obj.is_instance_of::<pyo3::types::PyList>()
        || obj.is_instance_of::<pyo3::types::PyTuple>()
    {
        return Ok(Some(Operand::Array(Tensor::new(
            array_from_py(obj, None)?,
            false,
        ))));
    }
    // NumPy scalars (np.float32(2), np.int64(3)) act like Python scalars.
    if obj.is_instance(&np.getattr("generic")?)? {
        let x: f64 = obj.call_method0("__float__")?.extract()?;
        return Ok(Some(Operand::Scalar(x)));
    }
    Ok(None)
}

/// `self op other` (or `other op self`) for either class; NotImplemented for foreign types.
pub fn binary<C: ArrayClass>(
    slf: &C,
    other: &Bound<'_, PyAny>,
    op: BinOp,
    reflected: bool,
) -> PyResult<Py<PyAny>> {
    let py = other.py();
    let Some(rhs) = operand::<C>(other)? else {
        return Ok(py.NotImplemented());
    };
    let a = slf.tensor();
    let n = a.array().size();
    let out = compute(py, n, || match &rhs {
        Operand::Scalar(s) => op.apply_scalar(a, *s, reflected),
        Operand::Array(b) if reflected => op.apply(b, a),
        Operand::Array(b) => op.apply(a, b),
    })
    .py()?;
    Ok(Bound::new(py, C::wrap(out))?.into_any().unbind())
}

/// The text inside `Tensor(...)`/`NdArray(...)`: NumPy's formatting, summarised past 1,000.
pub fn repr_body(py: Python<'_>, a: &DynArray, prefix: &str) -> PyResult<String> {
    let np = numpy(py)?;
    let arr = to_numpy(py, a)?;
    let kwargs = pyo3::types::PyDict::new(py);
    kwargs.set_item("separator", ", ")?;
    kwargs.set_item("prefix", prefix)?;
    kwargs.set_item("threshold", 1000)?;
    np.call_method("array2string", (arr,), Some(&kwargs))?
        .extract()
}

/// Declares the shared `#[pymethods]` for a class implementing `ArrayClass`.
#[macro_export]
macro_rules! shared_array_methods {
    ($cls:ty) => {
        #[pymethods]
        impl $cls {
            #[classattr]
            #[allow(non_upper_case_globals)]
            const __array_ufunc__: Option<bool> = None;

            /// The dimensions, a tuple of ints.
            #[getter]
            fn shape<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, pyo3::types::PyTuple>> {
                pyo3::types::PyTuple::new(py, self.tensor().array().shape())
            }

            /// The number of dimensions.
            #[getter]
            fn ndim(&self) -> usize {
                self.tensor().array().ndim()
            }

            /// The number of elements.
            #[getter]
            fn size(&self) -> usize {
                self.tensor().array().size()
            }

            /// `"float32"` or `"float64"`.
            #[getter]
            fn dtype(&self) -> &'static str {
                self.tensor().dtype().name()
            }

            /// A unique id of the underlying graph node.
            #[getter]
            fn _id(&self) -> usize {
                self.tensor().id()
            }

            fn __len__(&self) -> PyResult<usize> {
                match self.tensor().array().shape().first() {
                    Some(&n) => Ok(n),
                    None => Err(pyo3::exceptions::PyTypeError::new_err("len() of a 0-d array")),
                }
            }

            /// A writable NumPy copy.
            fn numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                $crate::convert::to_numpy(py, &self.tensor().array())
            }

            #[pyo3(signature = (dtype=None, copy=None))]
            fn __array__<'py>(
                &self,
                py: Python<'py>,
                dtype: Option<&Bound<'py, PyAny>>,
                copy: Option<bool>,
            ) -> PyResult<Bound<'py, PyAny>> {
                // Always a copy: the storage's buffer can be replaced or updated in place, so
                // a view could dangle or change under NumPy. NumPy 2's `copy=False` means
                // "never copy", which therefore raises, as the protocol asks.
                if copy == Some(false) {
                    return Err(pyo3::exceptions::PyValueError::new_err(
                        "ferrograd arrays convert to NumPy by copying (their memory can be replaced or \
                         updated in place, so it is never shared); use copy=None or copy=True",
                    ));
                }
                let arr = $crate::convert::to_numpy(py, &self.tensor().array())?;
                match dtype {
                    Some(d) if !d.is_none() => arr.call_method1("astype", (d,)),
                    _ => Ok(arr),
                }
            }

            /// Nested Python lists of floats.
            fn tolist<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                $crate::convert::to_numpy(py, &self.tensor().array())?.call_method0("tolist")
            }

            /// The value of a one-element array as a Python float.
            fn item(&self) -> PyResult<f64> {
                self.tensor().array().item().py()
            }

            fn __float__(&self) -> PyResult<f64> {
                self.item()
            }

            fn __bool__(&self) -> PyResult<bool> {
                self.tensor().array().item().py().map(|x| x != 0.0)
            }

            fn __add__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Add, false) }
            fn __radd__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Add, true) }
            fn __sub__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Sub, false) }
            fn __rsub__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Sub, true) }
            fn __mul__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Mul, false) }
            fn __rmul__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Mul, true) }
            fn __truediv__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Div, false) }
            fn __rtruediv__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Div, true) }
            fn __matmul__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::MatMul, false) }
            fn __rmatmul__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::MatMul, true) }
            fn __pow__(&self, o: &Bound<'_, PyAny>, _modulo: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
                binary(self, o, BinOp::Pow, false)
            }
            fn __rpow__(&self, o: &Bound<'_, PyAny>, _modulo: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
                binary(self, o, BinOp::Pow, true)
            }

            fn __neg__(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::neg) }
            fn __pos__(&self) -> Self { Self::wrap(self.tensor().clone()) }
            fn __abs__(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::abs) }
            /// `e ** x`, elementwise.
            fn exp(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::exp) }
            /// Natural logarithm (IEEE: NaN below 0, -inf at 0).
            fn log(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::log) }
            /// Square root.
            fn sqrt(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::sqrt) }
            /// Absolute value.
            fn abs(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::abs) }
            /// `max(x, 0)`.
            fn relu(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::relu) }
            /// The logistic function.
            fn sigmoid(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::sigmoid) }
            /// Hyperbolic tangent.
            fn tanh(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::tanh) }

            /// Sum over `axis` (None = all; int, negative or tuple).
            #[pyo3(signature = (axis=None, keepdims=false))]
            fn sum(&self, py: Python<'_>, axis: Option<&Bound<'_, PyAny>>, keepdims: bool) -> PyResult<Self> {
                let axes = $crate::convert::parse_axes(axis)?;
                self.unary(py, |t| t.sum(axes.as_deref(), keepdims))
            }
            /// Mean over `axis` (NaN for an empty array).
            #[pyo3(signature = (axis=None, keepdims=false))]
            fn mean(&self, py: Python<'_>, axis: Option<&Bound<'_, PyAny>>, keepdims: bool) -> PyResult<Self> {
                let axes = $crate::convert::parse_axes(axis)?;
                self.unary(py, |t| t.mean(axes.as_deref(), keepdims))
            }
            /// Maximum over `axis`; NaN propagates.
            #[pyo3(signature = (axis=None, keepdims=false))]
            fn max(&self, py: Python<'_>, axis: Option<&Bound<'_, PyAny>>, keepdims: bool) -> PyResult<Self> {
                let axes = $crate::convert::parse_axes(axis)?;
                self.unary(py, |t| t.max(axes.as_deref(), keepdims))
            }
            /// Minimum over `axis`; NaN propagates.
            #[pyo3(signature = (axis=None, keepdims=false))]
            fn min(&self, py: Python<'_>, axis: Option<&Bound<'_, PyAny>>, keepdims: bool) -> PyResult<Self> {
                let axes = $crate::convert::parse_axes(axis)?;
                self.unary(py, |t| t.min(axes.as_deref(), keepdims))
            }
            /// Index of the maximum along `axis` (None = flattened), as whole-number floats.
            #[pyo3(signature = (axis=None, keepdims=false))]
            fn argmax(&self, py: Python<'_>, axis: Option<&Bound<'_, PyAny>>, keepdims: bool) -> PyResult<Self> {
                let axis = axis.filter(|a| !a.is_none()).map(|a| $crate::convert::parse_axis(a)).transpose()?;
                self.unary(py, |t| t.argmax(axis, keepdims))
            }
            /// Index of the minimum along `axis` (None = flattened), as whole-number floats.
            #[pyo3(signature = (axis=None, keepdims=false))]
            fn argmin(&self, py: Python<'_>, axis: Option<&Bound<'_, PyAny>>, keepdims: bool) -> PyResult<Self> {
                let axis = axis.filter(|a| !a.is_none()).map(|a| $crate::convert::parse_axis(a)).transpose()?;
                self.unary(py, |t| t.argmin(axis, keepdims))
            }
            /// Softmax along `axis`.
            #[pyo3(signature = (axis=$crate::convert::Axis(-1)), text_signature = "($self, axis=-1)")]
            fn softmax(&self, py: Python<'_>, axis: $crate::convert::Axis) -> PyResult<Self> {
                self.unary(py, |t| t.softmax(axis.0))
            }
            /// Log-softmax along `axis`, stable for large logits.
            #[pyo3(signature = (axis=$crate::convert::Axis(-1)), text_signature = "($self, axis=-1)")]
            fn log_softmax(&self, py: Python<'_>, axis: $crate::convert::Axis) -> PyResult<Self> {
                self.unary(py, |t| t.log_softmax(axis.0))
            }

            /// The same elements in a new shape: `reshape(2, -1)` or `reshape((2, -1))`.
            #[pyo3(signature = (*shape))]
            fn reshape(&self, py: Python<'_>, shape: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<Self> {
                let shape = $crate::convert::parse_reshape(shape)?;
                self.unary(py, |t| t.reshape(&shape))
            }
            /// All elements in one dimension.
            fn flatten(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::flatten) }
            /// Swaps axes `a` and `b` (PyTorch's transpose); with no arguments reverses all axes.
            #[pyo3(signature = (*axes))]
            fn transpose(&self, py: Python<'_>, axes: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<Self> {
                match axes.len() {
                    0 => self.unary(py, Tensor::t),
                    2 => {
                        let a = $crate::convert::parse_axis(&axes.get_item(0)?)?;
                        let b = $crate::convert::parse_axis(&axes.get_item(1)?)?;
                        self.unary(py, |t| t.transpose(a, b))
                    }
                    n => Err(pyo3::exceptions::PyTypeError::new_err(format!(
                        "transpose takes two axes to swap (or none to reverse all), got {n}; use permute for a full permutation"
                    ))),
                }
            }
            /// Reorders all axes: `permute(2, 0, 1)`.
            #[pyo3(signature = (*dims))]
            fn permute(&self, py: Python<'_>, dims: &Bound<'_, pyo3::types::PyTuple>) -> PyResult<Self> {
                let dims = $crate::convert::parse_reshape(dims)?;
                self.unary(py, |t| t.permute(&dims))
            }
            /// All axes reversed (NumPy's `.T`).
            #[getter(T)]
            fn t_(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::t) }

            /// This array in another dtype.
            fn astype(&self, py: Python<'_>, dtype: &Bound<'_, PyAny>) -> PyResult<Self> {
                let d = $crate::convert::parse_dtype(Some(dtype))?
                    .ok_or_else(|| pyo3::exceptions::PyTypeError::new_err("astype: dtype must not be None"))?;
                self.unary(py, |t| t.astype(d))
            }

            fn __getitem__(&self, py: Python<'_>, key: &Bound<'_, PyAny>) -> PyResult<Self> {
                let items = $crate::convert::parse_index(key)?;
                self.unary(py, |t| t.index(&items))
            }
        }

        impl $cls {
            /// Runs a one-input op, releasing the GIL for large arrays.
            fn unary(
                &self,
                py: Python<'_>,
                f: impl FnOnce(&Tensor) -> ferrograd::Result<Tensor> + Send,
            ) -> PyResult<Self> {
                let t = self.tensor();
                let n = t.array().size();
                compute(py, n, || f(t)).py().map(Self::wrap)
            }
        }
    };
}
