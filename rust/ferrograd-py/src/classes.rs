//! The Python classes `Tensor` and `NdArray` as data — a leaf module: it imports nothing
//! from the rest of the bindings, which all depend on it (conversion, the shared methods,
//! the class methods), so no two binding modules import each other.
//!
//! `Tensor` holds a core graph node. `NdArray` holds only the core's storage (the array and
//! its version counter), so "never in a graph" is a fact of its type: `t.data` and `t.grad`
//! are NdArrays sharing the tensor's storage, and a write through them bumps the version
//! the tensor's backward checks.

use std::sync::Arc;

use ferrograd::tensor::Storage;
use ferrograd::{DynArray, Tensor};
use pyo3::prelude::*;

/// An n-d array with reverse-mode autodiff.
#[pyclass(name = "Tensor", module = "ferrograd", frozen, weakref)]
pub struct PyTensor {
    pub inner: Tensor,
}

impl PyTensor {
    pub fn new(inner: Tensor) -> Self {
        PyTensor { inner }
    }
}

/// An n-d array without autodiff: the core's storage, with no graph node.
#[pyclass(name = "NdArray", module = "ferrograd", frozen, weakref)]
pub struct PyNdArray {
    storage: Arc<Storage>,
}

impl PyNdArray {
    /// A new array owning `array`.
    pub fn new(array: DynArray) -> Self {
        Self::from_storage(Storage::new(array))
    }

    /// An array over an existing storage (an alias: writes show through both).
    pub fn from_storage(storage: Arc<Storage>) -> Self {
        PyNdArray { storage }
    }

    /// The values of a tensor (an op's result, a `.data`), sharing its storage; the graph
    /// node is not kept.
    pub fn of(t: &Tensor) -> Self {
        Self::from_storage(t.storage().clone())
    }

    /// The storage behind this array.
    pub fn storage(&self) -> &Arc<Storage> {
        &self.storage
    }

    /// A core tensor over this storage to run an op on: a leaf that does not require grad,
    /// so no op records it, and that lives only as long as the op.
    pub fn as_tensor(&self) -> Tensor {
        Tensor::from_storage(self.storage.clone(), false)
    }
}
