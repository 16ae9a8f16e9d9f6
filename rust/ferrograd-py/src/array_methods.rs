//! The methods `Tensor` and `NdArray` share — every non-autodiff method and operator — written
//! once as a macro that expands to a `#[pymethods]` block for each class.

use std::borrow::Cow;
use std::sync::Arc;

use ferrograd::dynarray::{Arith, Bitwise, Compare};
use ferrograd::tensor::Storage;
use ferrograd::{DynArray, Scalar, Tensor};
use pyo3::prelude::*;

use crate::classes::{PyNdArray, PyTensor};
use crate::convert::{array_from_py, numpy, ours, scalar_of, to_numpy, Infer};
use crate::errors::IntoPyResult;

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

/// What a Python array class provides to the shared methods. Reads go through the storage;
/// ops run on a core `Tensor`, which each class produces its own way: a `Tensor` is its own
/// graph node, an `NdArray` lends a transient non-grad tensor over its storage, so the same
/// op code serves both and an NdArray's ops are never recorded.
pub trait ArrayClass: pyo3::PyClass + Sized + Into<PyClassInitializer<Self>> {
    /// The class name in messages and `repr`.
    const CLASS_NAME: &'static str;
    /// The storage holding the values (and their version counter).
    fn storage(&self) -> &Arc<Storage>;
    /// A core tensor to run an op on.
    fn tensor(&self) -> Cow<'_, Tensor>;
    /// Wraps an op's result.
    fn wrap(t: Tensor) -> Self;
    /// A unique id: the graph node's for a Tensor, the storage's for an NdArray.
    fn object_id(&self) -> usize;
}

impl ArrayClass for PyTensor {
    const CLASS_NAME: &'static str = "Tensor";
    fn storage(&self) -> &Arc<Storage> {
        self.inner.storage()
    }
    fn tensor(&self) -> Cow<'_, Tensor> {
        Cow::Borrowed(&self.inner)
    }
    fn wrap(t: Tensor) -> Self {
        PyTensor::new(t)
    }
    fn object_id(&self) -> usize {
        self.inner.id()
    }
}

impl ArrayClass for PyNdArray {
    const CLASS_NAME: &'static str = "NdArray";
    fn storage(&self) -> &Arc<Storage> {
        PyNdArray::storage(self)
    }
    fn tensor(&self) -> Cow<'_, Tensor> {
        Cow::Owned(self.as_tensor())
    }
    fn wrap(t: Tensor) -> Self {
        PyNdArray::of(&t)
    }
    fn object_id(&self) -> usize {
        Arc::as_ptr(PyNdArray::storage(self)) as usize
    }
}

/// The right-hand side of a binary operator.
pub enum Operand {
    Array(Tensor),
    Scalar(Scalar),
}

/// Which binary operator.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum BinOp {
    Arith(Arith),
    MatMul,
    Compare(Compare),
    Bitwise(Bitwise),
}

impl BinOp {
    fn apply(self, a: &Tensor, b: &Tensor) -> ferrograd::Result<Tensor> {
        match self {
            BinOp::Arith(Arith::Add) => a.add(b),
            BinOp::Arith(Arith::Sub) => a.sub(b),
            BinOp::Arith(Arith::Mul) => a.mul(b),
            BinOp::Arith(Arith::Div) => a.div(b),
            BinOp::Arith(Arith::Pow) => a.pow(b),
            BinOp::Arith(Arith::FloorDiv) => a.floor_divide(b),
            BinOp::Arith(Arith::Rem) => a.remainder(b),
            BinOp::MatMul => a.matmul(b),
            BinOp::Compare(op) => a.compare(op, b),
            BinOp::Bitwise(op) => a.bitwise(op, b),
        }
    }

    /// `a op s`, or `s op a` when `reflected`, with a scalar that never widens.
    fn apply_scalar(self, a: &Tensor, s: Scalar, reflected: bool) -> ferrograd::Result<Tensor> {
        match (self, reflected) {
            (BinOp::Arith(Arith::Add), _) => a.add_scalar(s),
            (BinOp::Arith(Arith::Mul), _) => a.mul_scalar(s),
            (BinOp::Arith(Arith::Sub), false) => a.sub_scalar(s),
            (BinOp::Arith(Arith::Sub), true) => a.rsub_scalar(s),
            (BinOp::Arith(Arith::Div), false) => a.div_scalar(s),
            (BinOp::Arith(Arith::Div), true) => a.rdiv_scalar(s),
            (BinOp::Arith(Arith::Pow), false) => a.pow_scalar(s),
            (BinOp::Arith(Arith::Pow), true) => a.rpow_scalar(s),
            (BinOp::Arith(Arith::FloorDiv), r) => a.floor_divide_scalar(s, r),
            (BinOp::Arith(Arith::Rem), r) => a.remainder_scalar(s, r),
            // A number is a 0-d operand; the core's matmul says why that has no product.
            (BinOp::MatMul, r) => {
                let s = Tensor::new(DynArray::full_scalar(&[], s, a.dtype())?, false);
                if r {
                    s.matmul(a)
                } else {
                    a.matmul(&s)
                }
            }
            // A reflected comparison flips: `s < a` is `a > s`.
            (BinOp::Compare(op), r) => a.compare_scalar(if r { op.flipped() } else { op }, s),
            (BinOp::Bitwise(op), _) => a.bitwise_scalar(op, s),
        }
    }
}

/// Classifies an operand; `None` means "not ours" (Python then tries the other side).
/// `NdArray` leaves `Tensor` operands to `Tensor`'s reflected method, so the result is a Tensor.
pub fn operand<C: ArrayClass>(obj: &Bound<'_, PyAny>) -> PyResult<Option<Operand>> {
    if obj.is_instance_of::<PyTensor>() && C::CLASS_NAME == "NdArray" {
        return Ok(None);
    }
    if let Some(t) = ours(obj) {
        return Ok(Some(Operand::Array(t)));
    }
    if let Some(s) = scalar_of(obj)? {
        return Ok(Some(Operand::Scalar(s)));
    }
    if obj.is_instance_of::<numpy::PyUntypedArray>()
        || obj.is_instance_of::<pyo3::types::PyList>()
        || obj.is_instance_of::<pyo3::types::PyTuple>()
    {
        return Ok(Some(Operand::Array(Tensor::new(
            array_from_py(obj, None, Infer::Natural)?,
            false,
        ))));
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
    let a: &Tensor = &a;
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
                pyo3::types::PyTuple::new(py, self.storage().read().shape())
            }

            /// The number of dimensions.
            #[getter]
            fn ndim(&self) -> usize {
                self.storage().read().ndim()
            }

            /// The number of elements.
            #[getter]
            fn size(&self) -> usize {
                self.storage().read().size()
            }

            /// `"float32"`, `"float64"`, `"int64"`, `"int32"` or `"bool"`.
            #[getter]
            fn dtype(&self) -> &'static str {
                self.storage().read().dtype().name()
            }

            /// A unique id: the graph node's (Tensor) or the storage's (NdArray).
            #[getter]
            fn _id(&self) -> usize {
                self.object_id()
            }

            fn __len__(&self) -> PyResult<usize> {
                match self.storage().read().shape().first() {
                    Some(&n) => Ok(n),
                    None => Err(pyo3::exceptions::PyTypeError::new_err("len() of a 0-d array")),
                }
            }

            /// A writable NumPy copy.
            fn numpy<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                $crate::convert::to_numpy(py, &self.storage().read())
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
                let arr = $crate::convert::to_numpy(py, &self.storage().read())?;
                match dtype {
                    Some(d) if !d.is_none() => arr.call_method1("astype", (d,)),
                    _ => Ok(arr),
                }
            }

            /// Nested Python lists of floats.
            fn tolist<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                $crate::convert::to_numpy(py, &self.storage().read())?.call_method0("tolist")
            }

            /// The value of a one-element array as a Python float, int or bool (by dtype).
            fn item<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyAny>> {
                let s = self.storage().read().item_scalar().py()?;
                Ok(match s {
                    ferrograd::Scalar::Float(x) => x.into_pyobject(py)?.into_any(),
                    ferrograd::Scalar::Int(i) => i.into_pyobject(py)?.into_any(),
                    ferrograd::Scalar::Bool(b) => pyo3::types::PyBool::new(py, b).to_owned().into_any(),
                })
            }

            fn __float__(&self) -> PyResult<f64> {
                self.storage().read().item().py()
            }

            fn __int__(&self) -> PyResult<i64> {
                Ok(self.storage().read().item_scalar().py()?.to_i64())
            }

            /// One-element integer tensors index Python sequences, like PyTorch's.
            fn __index__(&self) -> PyResult<i64> {
                let a = self.storage().read();
                if a.dtype().is_float() {
                    return Err(pyo3::exceptions::PyTypeError::new_err(format!(
                        "only integer tensors of a single element can be converted to an index, got {}",
                        a.dtype()
                    )));
                }
                Ok(a.item_scalar().py()?.to_i64())
            }

            fn __bool__(&self) -> PyResult<bool> {
                self.storage().read().item().py().map(|x| x != 0.0)
            }

            fn __add__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Arith(Arith::Add), false) }
            fn __radd__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Arith(Arith::Add), true) }
            fn __sub__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Arith(Arith::Sub), false) }
            fn __rsub__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Arith(Arith::Sub), true) }
            fn __mul__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Arith(Arith::Mul), false) }
            fn __rmul__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Arith(Arith::Mul), true) }
            fn __truediv__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Arith(Arith::Div), false) }
            fn __rtruediv__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Arith(Arith::Div), true) }
            fn __matmul__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::MatMul, false) }
            fn __rmatmul__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::MatMul, true) }
            fn __pow__(&self, o: &Bound<'_, PyAny>, _modulo: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
                binary(self, o, BinOp::Arith(Arith::Pow), false)
            }
            fn __rpow__(&self, o: &Bound<'_, PyAny>, _modulo: Option<&Bound<'_, PyAny>>) -> PyResult<Py<PyAny>> {
                binary(self, o, BinOp::Arith(Arith::Pow), true)
            }
            fn __floordiv__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Arith(Arith::FloorDiv), false) }
            fn __rfloordiv__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Arith(Arith::FloorDiv), true) }
            fn __mod__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Arith(Arith::Rem), false) }
            fn __rmod__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Arith(Arith::Rem), true) }
            fn __and__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Bitwise(Bitwise::And), false) }
            fn __rand__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Bitwise(Bitwise::And), true) }
            fn __or__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Bitwise(Bitwise::Or), false) }
            fn __ror__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Bitwise(Bitwise::Or), true) }
            fn __xor__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Bitwise(Bitwise::Xor), false) }
            fn __rxor__(&self, o: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, o, BinOp::Bitwise(Bitwise::Xor), true) }
            fn __invert__(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::bitwise_not) }
            /// `==`, `!=`, `<`, `<=`, `>`, `>=`: bool tensors, never differentiable.
            fn __richcmp__(&self, o: &Bound<'_, PyAny>, op: pyo3::basic::CompareOp) -> PyResult<Py<PyAny>> {
                use pyo3::basic::CompareOp as C;
                let cmp = match op {
                    C::Eq => Compare::Eq,
                    C::Ne => Compare::Ne,
                    C::Lt => Compare::Lt,
                    C::Le => Compare::Le,
                    C::Gt => Compare::Gt,
                    C::Ge => Compare::Ge,
                };
                binary(self, o, BinOp::Compare(cmp), false)
            }
            /// Hashed by identity, as in PyTorch (`==` is elementwise).
            fn __hash__(slf: &Bound<'_, Self>) -> isize {
                slf.as_ptr() as isize
            }
            /// Elementwise equality as a bool tensor (`==`).
            fn eq(&self, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, other, BinOp::Compare(Compare::Eq), false) }
            /// Elementwise inequality as a bool tensor (`!=`).
            fn ne(&self, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, other, BinOp::Compare(Compare::Ne), false) }
            /// `self < other` as a bool tensor.
            fn lt(&self, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, other, BinOp::Compare(Compare::Lt), false) }
            /// `self <= other` as a bool tensor.
            fn le(&self, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, other, BinOp::Compare(Compare::Le), false) }
            /// `self > other` as a bool tensor.
            fn gt(&self, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, other, BinOp::Compare(Compare::Gt), false) }
            /// `self >= other` as a bool tensor.
            fn ge(&self, other: &Bound<'_, PyAny>) -> PyResult<Py<PyAny>> { binary(self, other, BinOp::Compare(Compare::Ge), false) }

            /// This array in another dtype (`"int64"`, `fg.float64`, a NumPy dtype, …).
            fn to(&self, py: Python<'_>, dtype: &Bound<'_, PyAny>) -> PyResult<Self> { self.astype(py, dtype) }
            /// As float32 (differentiable from float64).
            fn float(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, |t| t.astype(ferrograd::DType::F32)) }
            /// As float64 (differentiable from float32).
            fn double(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, |t| t.astype(ferrograd::DType::F64)) }
            /// As int64 (floats truncate toward zero).
            fn long(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, |t| t.astype(ferrograd::DType::I64)) }
            /// As int32 (floats truncate toward zero).
            fn int(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, |t| t.astype(ferrograd::DType::I32)) }
            /// As bool (`x != 0`).
            #[pyo3(name = "bool")]
            fn to_bool(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, |t| t.astype(ferrograd::DType::Bool)) }


            fn __neg__(&self, py: Python<'_>) -> PyResult<Self> { self.unary(py, Tensor::neg) }
            fn __pos__(&self) -> Self { Self::wrap(self.tensor().into_owned()) }
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
            /// Whether every element over `axis` is non-zero, as bool (True when empty).
            #[pyo3(signature = (axis=None, keepdims=false))]
            fn all(&self, py: Python<'_>, axis: Option<&Bound<'_, PyAny>>, keepdims: bool) -> PyResult<Self> {
                let axes = $crate::convert::parse_axes(axis)?;
                self.unary(py, |t| t.all(axes.as_deref(), keepdims))
            }
            /// Whether any element over `axis` is non-zero, as bool (False when empty).
            #[pyo3(signature = (axis=None, keepdims=false))]
            fn any(&self, py: Python<'_>, axis: Option<&Bound<'_, PyAny>>, keepdims: bool) -> PyResult<Self> {
                let axes = $crate::convert::parse_axes(axis)?;
                self.unary(py, |t| t.any(axes.as_deref(), keepdims))
            }
            /// Index of the maximum along `axis` (None = flattened), as int64.
            #[pyo3(signature = (axis=None, keepdims=false))]
            fn argmax(&self, py: Python<'_>, axis: Option<&Bound<'_, PyAny>>, keepdims: bool) -> PyResult<Self> {
                let axis = axis.filter(|a| !a.is_none()).map(|a| $crate::convert::parse_axis(a)).transpose()?;
                self.unary(py, |t| t.argmax(axis, keepdims))
            }
            /// Index of the minimum along `axis` (None = flattened), as int64.
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
                let out = self.unary(py, |t| t.index(&items))?;
                // Tensors in the key are recorded as inputs too (an export refuses them when
                // they are computed from the model's inputs: it would freeze their values).
                if ferrograd::tensor::record::is_recording() {
                    let keys = $crate::convert::tensors_in_key(key);
                    let refs: Vec<&Tensor> = keys.iter().collect();
                    let own = $crate::array_methods::ArrayClass::tensor(&out);
                    ferrograd::tensor::record::link_inputs(&own, &refs);
                }
                Ok(out)
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
                let t: &Tensor = &t;
                let n = t.array().size();
                compute(py, n, || f(t)).py().map(Self::wrap)
            }
        }
    };
}
