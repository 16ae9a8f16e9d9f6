//! DLPack export (`Tensor.__dlpack__`, `__dlpack_device__`, and the same on `NdArray`), so
//! `np.from_dlpack(t)` and `torch.from_dlpack(t)` take a tensor without Python loops.
//!
//! Safety: a tensor's storage (`Arc<RwLock<DynArray>>`) can have its `Vec` replaced or
//! written in place at any time (`t.data = x`, `+=`, optimizer steps), so a capsule never
//! points into it. Each export is a snapshot: one memcpy into a buffer the capsule owns
//! alone. The consumer frees it through the `DLManagedTensor`'s deleter; a capsule that was
//! never consumed frees it in its own destructor. Nothing else can reach that buffer, so it
//! lives exactly as long as the consumer needs it and never changes underneath it.

use std::ffi::{c_void, CStr};

use ferrograd::{DynArray, Tensor};
use pyo3::exceptions::PyBufferError;
use pyo3::ffi;
use pyo3::prelude::*;

use crate::array_methods::compute;
use crate::errors::IntoPyResult;

/// `kDLCPU`: host memory.
pub const DL_CPU: i32 = 1;
/// `kDLInt`: signed integers.
const DL_INT: u8 = 0;
/// `kDLFloat`: IEEE floats.
const DL_FLOAT: u8 = 2;
/// `kDLBool`: one byte per bool (DLPack ≥ 0.8).
const DL_BOOL: u8 = 6;
/// `DLPACK_FLAG_BITMASK_IS_COPIED` (DLPack 1.1): the producer made a copy for this export.
const FLAG_IS_COPIED: u64 = 1 << 1;

const LEGACY_NAME: &CStr = c"dltensor";
const VERSIONED_NAME: &CStr = c"dltensor_versioned";

#[repr(C)]
struct DLDevice {
    device_type: i32,
    device_id: i32,
}

#[repr(C)]
struct DLDataType {
    code: u8,
    bits: u8,
    lanes: u16,
}

#[repr(C)]
struct DLTensor {
    data: *mut c_void,
    device: DLDevice,
    ndim: i32,
    dtype: DLDataType,
    shape: *mut i64,
    strides: *mut i64,
    byte_offset: u64,
}

/// The pre-1.0 capsule payload (`"dltensor"`), which every consumer reads.
#[repr(C)]
struct DLManagedTensor {
    dl_tensor: DLTensor,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensor)>,
}

#[repr(C)]
struct DLPackVersion {
    major: u32,
    minor: u32,
}

/// The DLPack ≥ 1.0 capsule payload (`"dltensor_versioned"`).
#[repr(C)]
struct DLManagedTensorVersioned {
    version: DLPackVersion,
    manager_ctx: *mut c_void,
    deleter: Option<unsafe extern "C" fn(*mut DLManagedTensorVersioned)>,
    flags: u64,
    dl_tensor: DLTensor,
}

/// The memory one export owns: a private copy of the values, its shape and strides.
enum Buffer {
    F32(Vec<f32>),
    F64(Vec<f64>),
    I64(Vec<i64>),
    I32(Vec<i32>),
    Bool(Vec<bool>),
}

struct Export {
    buffer: Buffer,
    shape: Vec<i64>,
    strides: Vec<i64>,
}

impl Export {
    /// Copies the tensor's values (one memcpy under the read lock, the GIL released when
    /// large).
    fn snapshot(py: Python<'_>, t: &Tensor) -> PyResult<Self> {
        let n = t.array().size();
        let buffer = compute(py, n, || -> ferrograd::Result<Buffer> {
            let a = t.array();
            Ok(match &*a {
                DynArray::F32(x) => Buffer::F32(copy_of(x.data())?),
                DynArray::F64(x) => Buffer::F64(copy_of(x.data())?),
                DynArray::I64(x) => Buffer::I64(copy_of(x.data())?),
                DynArray::I32(x) => Buffer::I32(copy_of(x.data())?),
                DynArray::Bool(x) => Buffer::Bool(copy_of(x.data())?),
            })
        })
        .py()?;
        let dims = t.shape();
        let mut strides = vec![1i64; dims.len()];
        for i in (0..dims.len().saturating_sub(1)).rev() {
            strides[i] = strides[i + 1] * dims[i + 1] as i64;
        }
        Ok(Export {
            buffer,
            shape: dims.iter().map(|&d| d as i64).collect(),
            strides,
        })
    }

    /// The `DLTensor` describing this export; its pointers stay valid while `self` lives
    /// (moving an `Export` moves the `Vec` headers, not their heap buffers).
    fn dl_tensor(&mut self) -> DLTensor {
        let (data, code, bits) = match &mut self.buffer {
            Buffer::F32(v) => (v.as_mut_ptr().cast::<c_void>(), DL_FLOAT, 32),
            Buffer::F64(v) => (v.as_mut_ptr().cast::<c_void>(), DL_FLOAT, 64),
            Buffer::I64(v) => (v.as_mut_ptr().cast::<c_void>(), DL_INT, 64),
            Buffer::I32(v) => (v.as_mut_ptr().cast::<c_void>(), DL_INT, 32),
            // Rust's bool is one byte holding 0 or 1, as kDLBool requires.
            Buffer::Bool(v) => (v.as_mut_ptr().cast::<c_void>(), DL_BOOL, 8),
        };
        DLTensor {
            data,
            device: DLDevice {
                device_type: DL_CPU,
                device_id: 0,
            },
            ndim: self.shape.len() as i32,
            dtype: DLDataType {
                code,
                bits,
                lanes: 1,
            },
            shape: self.shape.as_mut_ptr(),
            strides: self.strides.as_mut_ptr(),
            byte_offset: 0,
        }
    }
}

fn copy_of<T: Copy>(data: &[T]) -> ferrograd::Result<Vec<T>> {
    let mut v = ferrograd::ndarray::try_with_capacity(data.len())?;
    v.extend_from_slice(data);
    Ok(v)
}

unsafe extern "C" fn delete_legacy(managed: *mut DLManagedTensor) {
    if managed.is_null() {
        return;
    }
    // SAFETY: `managed` and its `manager_ctx` were made by `Box::into_raw` in `legacy_capsule`
    // and DLPack calls the deleter once.
    unsafe {
        let managed = Box::from_raw(managed);
        drop(Box::from_raw(managed.manager_ctx.cast::<Export>()));
    }
}

unsafe extern "C" fn delete_versioned(managed: *mut DLManagedTensorVersioned) {
    if managed.is_null() {
        return;
    }
    // SAFETY: as in `delete_legacy`, for `versioned_capsule`.
    unsafe {
        let managed = Box::from_raw(managed);
        drop(Box::from_raw(managed.manager_ctx.cast::<Export>()));
    }
}

/// Frees an export nobody consumed. A consumer renames the capsule (`"used_dltensor"`) and
/// takes over the deleter, so a renamed capsule is left alone.
unsafe extern "C" fn legacy_capsule_destructor(capsule: *mut ffi::PyObject) {
    // SAFETY: called by CPython with a live capsule; neither call sets an error when the
    // name matches, and `IsValid` (checked first) never sets one.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, LEGACY_NAME.as_ptr()) == 1 {
            let p = ffi::PyCapsule_GetPointer(capsule, LEGACY_NAME.as_ptr());
            delete_legacy(p.cast::<DLManagedTensor>());
        }
    }
}

unsafe extern "C" fn versioned_capsule_destructor(capsule: *mut ffi::PyObject) {
    // SAFETY: as in `legacy_capsule_destructor`.
    unsafe {
        if ffi::PyCapsule_IsValid(capsule, VERSIONED_NAME.as_ptr()) == 1 {
            let p = ffi::PyCapsule_GetPointer(capsule, VERSIONED_NAME.as_ptr());
            delete_versioned(p.cast::<DLManagedTensorVersioned>());
        }
    }
}

/// Wraps `payload` in a capsule; on failure frees it with `delete` and returns the error.
fn capsule<'py, P>(
    py: Python<'py>,
    payload: *mut P,
    name: &'static CStr,
    destructor: unsafe extern "C" fn(*mut ffi::PyObject),
    delete: unsafe extern "C" fn(*mut P),
) -> PyResult<Bound<'py, PyAny>> {
    // SAFETY: `payload` is a live heap allocation; `name` is 'static as CPython requires.
    let raw =
        unsafe { ffi::PyCapsule_New(payload.cast::<c_void>(), name.as_ptr(), Some(destructor)) };
    if raw.is_null() {
        // SAFETY: the capsule was not created, so the payload is still ours to free once.
        unsafe { delete(payload) };
        return Err(PyErr::fetch(py));
    }
    // SAFETY: `PyCapsule_New` returned a new reference.
    Ok(unsafe { Bound::from_owned_ptr(py, raw) })
}

fn legacy_capsule<'py>(py: Python<'py>, export: Export) -> PyResult<Bound<'py, PyAny>> {
    let ctx = Box::into_raw(Box::new(export));
    // SAFETY: `ctx` is a live, uniquely owned Export until the deleter runs.
    let dl_tensor = unsafe { (*ctx).dl_tensor() };
    let managed = Box::into_raw(Box::new(DLManagedTensor {
        dl_tensor,
        manager_ctx: ctx.cast::<c_void>(),
        deleter: Some(delete_legacy),
    }));
    capsule(
        py,
        managed,
        LEGACY_NAME,
        legacy_capsule_destructor,
        delete_legacy,
    )
}

fn versioned_capsule<'py>(
    py: Python<'py>,
    export: Export,
    minor: u32,
) -> PyResult<Bound<'py, PyAny>> {
    let ctx = Box::into_raw(Box::new(export));
    // SAFETY: as in `legacy_capsule`.
    let dl_tensor = unsafe { (*ctx).dl_tensor() };
    let managed = Box::into_raw(Box::new(DLManagedTensorVersioned {
        version: DLPackVersion { major: 1, minor },
        manager_ctx: ctx.cast::<c_void>(),
        deleter: Some(delete_versioned),
        flags: if minor >= 1 { FLAG_IS_COPIED } else { 0 },
        dl_tensor,
    }));
    capsule(
        py,
        managed,
        VERSIONED_NAME,
        versioned_capsule_destructor,
        delete_versioned,
    )
}

/// `__dlpack__` for either class: checks the array-API keywords and exports a copy.
pub fn export(
    py: Python<'_>,
    t: &Tensor,
    stream: Option<&Bound<'_, PyAny>>,
    max_version: Option<(u32, u32)>,
    dl_device: Option<(i32, i32)>,
    copy: Option<bool>,
) -> PyResult<Py<PyAny>> {
    if let Some(s) = stream.filter(|s| !s.is_none()) {
        return Err(PyBufferError::new_err(format!(
            "__dlpack__: ferrograd tensors live on the CPU, where stream must be None, got {}",
            s.repr()?
        )));
    }
    if let Some(device) = dl_device.filter(|&d| d != (DL_CPU, 0)) {
        return Err(PyBufferError::new_err(format!(
            "__dlpack__: ferrograd tensors live on the CPU (device ({DL_CPU}, 0)), cannot export to device {device:?}"
        )));
    }
    if copy == Some(false) {
        return Err(PyBufferError::new_err(
            "__dlpack__: ferrograd exports a copy (its storage can be replaced or updated in place, \
             so it is never shared); pass copy=None or copy=True",
        ));
    }
    let export = Export::snapshot(py, t)?;
    let capsule = match max_version {
        Some((major, minor)) if major >= 1 => {
            versioned_capsule(py, export, if major > 1 { 1 } else { minor.min(1) })?
        }
        _ => legacy_capsule(py, export)?,
    };
    Ok(capsule.unbind())
}

/// Declares `__dlpack__` and `__dlpack_device__` for a class implementing `ArrayClass`.
macro_rules! dlpack_methods {
    ($cls:ty) => {
        #[pymethods]
        impl $cls {
            /// A DLPack capsule holding a copy of the values (for `np.from_dlpack`,
            /// `torch.from_dlpack`). CPU only: `stream` must be None; `copy=False` raises
            /// BufferError because the export is always a copy.
            #[pyo3(signature = (*, stream=None, max_version=None, dl_device=None, copy=None))]
            fn __dlpack__(
                &self,
                py: Python<'_>,
                stream: Option<&Bound<'_, PyAny>>,
                max_version: Option<(u32, u32)>,
                dl_device: Option<(i32, i32)>,
                copy: Option<bool>,
            ) -> PyResult<Py<PyAny>> {
                use $crate::array_methods::ArrayClass;
                export(py, &self.tensor(), stream, max_version, dl_device, copy)
            }

            /// `(1, 0)`: DLPack's CPU device.
            fn __dlpack_device__(&self) -> (i32, i32) {
                (DL_CPU, 0)
            }
        }
    };
}

dlpack_methods!(crate::classes::PyTensor);
dlpack_methods!(crate::classes::PyNdArray);
