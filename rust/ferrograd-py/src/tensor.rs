//! The Python classes `Tensor` (with autodiff) and `NdArray` (without), both thin wrappers
//! over a core `Tensor`; their shared methods come from `shared_array_methods!`.

use ferrograd::dynarray::{Arith, Bitwise, Compare};
use ferrograd::Tensor;
use pyo3::exceptions::PyTypeError;
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::array_methods::{binary, compute, repr_body, ArrayClass, BinOp};
use crate::convert::{array_from_py, parse_dtype, Infer};
use crate::errors::IntoPyResult;
use crate::shared_array_methods;

/// An n-d float array with reverse-mode autodiff.
#[pyclass(name = "Tensor", module = "ferrograd", frozen, weakref)]
pub struct PyTensor {
    pub inner: Tensor,
}

/// An n-d float array without autodiff.
#[pyclass(name = "NdArray", module = "ferrograd", frozen, weakref)]
pub struct PyNdArray {
    pub inner: Tensor,
}

impl ArrayClass for PyTensor {
    const CLASS_NAME: &'static str = "Tensor";
    fn tensor(&self) -> &Tensor {
        &self.inner
    }
    fn wrap(t: Tensor) -> Self {
        PyTensor { inner: t }
    }
}

impl ArrayClass for PyNdArray {
    const CLASS_NAME: &'static str = "NdArray";
    fn tensor(&self) -> &Tensor {
        &self.inner
    }
    fn wrap(t: Tensor) -> Self {
        // An NdArray never takes part in a graph.
        PyNdArray {
            inner: if t.requires_grad() { t.detach() } else { t },
        }
    }
}

shared_array_methods!(PyTensor);
shared_array_methods!(PyNdArray);
crate::transformer_methods!(PyTensor);
crate::transformer_methods!(PyNdArray);

/// Reads a gradient or data argument given as Tensor, NdArray, NumPy array, list or number.
fn array_arg(obj: &Bound<'_, PyAny>) -> PyResult<ferrograd::DynArray> {
    array_from_py(obj, None, Infer::Float)
}

#[pymethods]
impl PyTensor {
    /// `Tensor(data, requires_grad=False, dtype=None)`: copies `data` (a number, nested list,
    /// NumPy array, NdArray or Tensor — without its graph).
    #[new]
    #[pyo3(signature = (data, requires_grad=false, dtype=None))]
    fn py_new(
        data: &Bound<'_, PyAny>,
        requires_grad: bool,
        dtype: Option<&Bound<'_, PyAny>>,
    ) -> PyResult<Self> {
        let dtype = parse_dtype(dtype)?;
        Ok(PyTensor {
            inner: Tensor::leaf(array_from_py(data, dtype, Infer::Float)?, requires_grad).py()?,
        })
    }

    /// Whether gradients flow to this tensor (settable on leaves).
    #[getter]
    fn requires_grad(&self) -> bool {
        self.inner.requires_grad()
    }

    #[setter]
    fn set_requires_grad(&self, value: bool) -> PyResult<()> {
        self.inner.set_requires_grad(value).py()
    }

    /// Sets `requires_grad` in place and returns this tensor.
    #[pyo3(signature = (requires_grad=true))]
    fn requires_grad_(slf: Bound<'_, Self>, requires_grad: bool) -> PyResult<Bound<'_, Self>> {
        slf.get().inner.set_requires_grad(requires_grad).py()?;
        Ok(slf)
    }

    /// Whether this tensor was made by the user rather than by a recorded op.
    #[getter]
    fn is_leaf(&self) -> bool {
        self.inner.is_leaf()
    }

    /// The accumulated gradient (an NdArray sharing memory with the tensor's grad), or None.
    #[getter]
    fn grad(&self) -> Option<PyNdArray> {
        self.inner.grad().map(|g| PyNdArray {
            inner: Tensor::from_storage(g, false),
        })
    }

    #[setter]
    fn set_grad(&self, value: Option<&Bound<'_, PyAny>>) -> PyResult<()> {
        let g = value.filter(|v| !v.is_none()).map(array_arg).transpose()?;
        self.inner.set_grad(g).py()
    }

    /// The values as an NdArray sharing this tensor's memory, outside the graph.
    #[getter]
    fn data(&self) -> PyNdArray {
        PyNdArray {
            inner: self.inner.detach(),
        }
    }

    #[setter]
    fn set_data(&self, value: &Bound<'_, PyAny>) -> PyResult<()> {
        let new = array_from_py(value, Some(self.inner.dtype()), Infer::Float)?;
        *self.inner.array_mut() = new;
        Ok(())
    }

    /// Backpropagates, accumulating into the `.grad` of the leaves. `grad` defaults to 1 for a
    /// one-element tensor; without `retain_graph` the graph is freed.
    #[pyo3(signature = (grad=None, retain_graph=false))]
    fn backward(
        &self,
        py: Python<'_>,
        grad: Option<&Bound<'_, PyAny>>,
        retain_graph: bool,
    ) -> PyResult<()> {
        let g = grad.filter(|g| !g.is_none()).map(array_arg).transpose()?;
        let t = &self.inner;
        py.detach(|| t.backward(g, retain_graph)).py()
    }

    /// A tensor sharing this one's memory, cut from the graph.
    fn detach(&self) -> Self {
        PyTensor {
            inner: self.inner.detach(),
        }
    }

    /// The op that made this tensor (`"+"`, `"@"`, `"relu"`, …) or None for leaves.
    #[getter]
    fn _op(&self) -> Option<&'static str> {
        self.inner.op()
    }

    /// The tensors this one was computed from (empty for leaves and after backward freed the graph).
    #[getter]
    fn _prev<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyTuple>> {
        let parents: Vec<PyTensor> = self
            .inner
            .parents()
            .into_iter()
            .map(|inner| PyTensor { inner })
            .collect();
        PyTuple::new(py, parents)
    }

    /// Pickling (and so `copy.deepcopy`): rebuilt as a leaf from its values.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let t = &slf.get().inner;
        let values = crate::convert::to_numpy(slf.py(), &t.array())?;
        let args = (values, t.requires_grad(), t.dtype().name()).into_pyobject(slf.py())?;
        PyTuple::new(slf.py(), [slf.get_type().into_any(), args.into_any()])
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let body = repr_body(py, &self.inner.array(), "Tensor(")?;
        let mut extra = dtype_suffix(self.inner.dtype());
        if self.inner.requires_grad() {
            extra.push_str(", requires_grad=True");
        }
        Ok(format!("Tensor({body}{extra})"))
    }
}

#[pymethods]
impl PyNdArray {
    /// `NdArray(data, dtype=None)`: copies a number, nested list, NumPy array, NdArray or Tensor.
    #[new]
    #[pyo3(signature = (data, dtype=None))]
    fn py_new(data: &Bound<'_, PyAny>, dtype: Option<&Bound<'_, PyAny>>) -> PyResult<Self> {
        let dtype = parse_dtype(dtype)?;
        Ok(PyNdArray {
            inner: Tensor::new(array_from_py(data, dtype, Infer::Float)?, false),
        })
    }

    /// Pickling (and so `copy.deepcopy`): rebuilt from its values.
    fn __reduce__<'py>(slf: &Bound<'py, Self>) -> PyResult<Bound<'py, PyTuple>> {
        let t = &slf.get().inner;
        let values = crate::convert::to_numpy(slf.py(), &t.array())?;
        let args = (values, t.dtype().name()).into_pyobject(slf.py())?;
        PyTuple::new(slf.py(), [slf.get_type().into_any(), args.into_any()])
    }

    fn __repr__(&self, py: Python<'_>) -> PyResult<String> {
        let body = repr_body(py, &self.inner.array(), "NdArray(")?;
        Ok(format!(
            "NdArray({body}{})",
            dtype_suffix(self.inner.dtype())
        ))
    }
}

/// `, dtype=…` in a repr, for every dtype but the default float32 (docs/design.md).
fn dtype_suffix(dtype: ferrograd::DType) -> String {
    if dtype == ferrograd::DType::F32 {
        String::new()
    } else {
        format!(", dtype={dtype}")
    }
}

/// Tensors (or NdArrays) from a Python sequence, for `cat`/`stack`; anything else in it is a
/// TypeError naming its position, as in PyTorch.
pub fn tensors_from_seq(seq: &Bound<'_, PyAny>, op: &str) -> PyResult<(Vec<Tensor>, bool)> {
    let mut out = Vec::new();
    let mut any_tensor = false;
    for (i, item) in seq
        .try_iter()
        .map_err(|_| PyTypeError::new_err(format!("{op}: expected a sequence of tensors")))?
        .enumerate()
    {
        let item = item?;
        any_tensor |= item.is_instance_of::<PyTensor>();
        match crate::convert::ours(&item) {
            Some(t) => out.push(t),
            None => {
                return Err(PyTypeError::new_err(format!(
                    "{op}: expected a Tensor as element {i}, got {}",
                    item.get_type().name()?
                )))
            }
        }
    }
    Ok((out, any_tensor))
}
