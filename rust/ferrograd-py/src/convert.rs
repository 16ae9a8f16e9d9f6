//! Python ⇄ core conversions: arrays (numbers, nested lists, NumPy), dtypes, shapes, axes
//! and index keys. NumPy parses lists in C and data crosses in one copy.

use ferrograd::ndarray::IndexItem;
use ferrograd::{DType, DynArray, NdArray};
use numpy::{
    PyArray, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyIndexError, PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyEllipsis, PyFloat, PyInt, PyList, PySlice, PyString, PyTuple};

use crate::errors::IntoPyResult;
use crate::tensor::{PyNdArray, PyTensor};

/// The `numpy` module, imported once.
pub fn numpy(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    NUMPY
        .get_or_try_init(py, || Ok::<_, PyErr>(py.import("numpy")?.unbind()))
        .map(|m| m.bind(py))
}

/// Parses a `dtype=` argument: "float32"/"float64", `fg.float32`/`fg.float64`, a NumPy dtype
/// or type (float16 → float32), or `None`.
pub fn parse_dtype(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<DType>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if let Ok(s) = obj.cast::<PyString>() {
        return DType::parse(&s.to_cow()?).py().map(Some);
    }
    // NumPy dtypes, scalar types (np.float64) and anything np.dtype() understands.
    let np = numpy(obj.py())?;
    let described = np.getattr("dtype")?.call1((obj,)).map_err(|_| {
        PyTypeError::new_err(format!(
            "dtype must be \"float32\" or \"float64\", got {}",
            repr(obj)
        ))
    })?;
    let kind: String = described.getattr("kind")?.extract()?;
    let size: usize = described.getattr("itemsize")?.extract()?;
    match (kind.as_str(), size) {
        ("f", 2 | 4) => Ok(Some(DType::F32)),
        ("f", _) => Ok(Some(DType::F64)),
        _ => Err(PyTypeError::new_err(format!(
            "dtype must be float32 or float64, got {}",
            described.str()?
        ))),
    }
}

fn repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr()
        .map_or_else(|_| "<object>".into(), |r| r.to_string())
}

/// Converts array-like input into a `DynArray`. Python numbers and lists become float32,
/// NumPy float arrays keep their precision (float16 → float32), integer and bool arrays
/// become float32; `dtype` overrides.
pub fn array_from_py(obj: &Bound<'_, PyAny>, dtype: Option<DType>) -> PyResult<DynArray> {
    if let Ok(t) = obj.cast::<PyTensor>() {
        return Ok(cast(&t.get().inner.array(), dtype));
    }
    if let Ok(t) = obj.cast::<PyNdArray>() {
        return Ok(cast(&t.get().inner.array(), dtype));
    }
    if obj.is_instance_of::<PyFloat>() || obj.is_instance_of::<PyInt>() {
        let x: f64 = obj.extract()?;
        return DynArray::from_f64(vec![x], &[], dtype.unwrap_or(DType::F32)).py();
    }
    let py = obj.py();
    let np = numpy(py)?;
    let from_numpy = obj.is_instance_of::<PyUntypedArray>() || is_numpy_scalar(obj);
    if obj.is_instance_of::<PyString>() {
        return Err(PyTypeError::new_err(format!(
            "expected numbers, got the string {}",
            repr(obj)
        )));
    }
    let sequence = obj.is_instance_of::<PyList>() || obj.is_instance_of::<PyTuple>();
    if !(from_numpy || sequence || obj.hasattr("__array__")?) {
        return Err(PyTypeError::new_err(format!(
            "cannot make an array from an object of type {}",
            obj.get_type().name()?
        )));
    }
    let arr = np.call_method1("asarray", (obj,))?;
    let arr = arr.cast_into::<PyUntypedArray>()?;
    let descr = arr.dtype();
    let natural = match (descr.kind(), descr.itemsize()) {
        (b'f', 2 | 4) => DType::F32,
        (b'f', _) if from_numpy => DType::F64,
        (b'f' | b'i' | b'u' | b'b', _) => DType::F32,
        _ => {
            return Err(PyTypeError::new_err(format!(
                "expected numbers, got data of dtype {} ({})",
                descr.str()?,
                short(obj)
            )))
        }
    };
    let target = dtype.unwrap_or(natural);
    match target {
        DType::F32 => read_numpy::<f32>(np, arr).map(DynArray::F32),
        DType::F64 => read_numpy::<f64>(np, arr).map(DynArray::F64),
    }
}

fn short(obj: &Bound<'_, PyAny>) -> String {
    let r = repr(obj);
    if r.chars().count() > 60 {
        format!("{}...", r.chars().take(60).collect::<String>())
    } else {
        r
    }
}

fn is_numpy_scalar(obj: &Bound<'_, PyAny>) -> bool {
    !obj.is_instance_of::<PyUntypedArray>()
        && obj
            .get_type()
            .getattr("__module__")
            .and_then(|m| m.extract::<String>())
            .is_ok_and(|m| m == "numpy")
        && obj.hasattr("dtype").unwrap_or(false)
}

fn cast(a: &DynArray, dtype: Option<DType>) -> DynArray {
    match dtype {
        Some(d) => a.to_dtype(d),
        None => a.clone(),
    }
}

/// Copies a NumPy array into an `NdArray<T>`: one `astype`/`ascontiguousarray` in C when the
/// dtype, byte order or layout differ, then one memcpy.
fn read_numpy<T: numpy::Element + Copy + ferrograd::ndarray::Float>(
    np: &Bound<'_, PyModule>,
    arr: Bound<'_, PyUntypedArray>,
) -> PyResult<NdArray<T>> {
    let py = arr.py();
    let want = numpy::dtype::<T>(py);
    let arr = if !arr.dtype().is_equiv_to(&want) || !arr.is_c_contiguous() {
        np.call_method1("ascontiguousarray", (arr, want))?
            .cast_into::<PyUntypedArray>()?
    } else {
        arr
    };
    let typed = arr.cast_into::<PyArrayDyn<T>>()?;
    let ro = typed
        .try_readonly()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let shape = ro.shape().to_vec();
    let data = ro
        .as_slice()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let mut v = ferrograd::ndarray::try_with_capacity(data.len()).py()?;
    v.extend_from_slice(data);
    NdArray::from_vec(v, &shape).py()
}

/// A writable NumPy copy of the array.
pub fn to_numpy<'py>(py: Python<'py>, a: &DynArray) -> PyResult<Bound<'py, PyAny>> {
    Ok(match a {
        DynArray::F32(x) => PyArray::from_slice(py, x.data())
            .reshape(x.shape())?
            .into_any(),
        DynArray::F64(x) => PyArray::from_slice(py, x.data())
            .reshape(x.shape())?
            .into_any(),
    })
}

/// A dimension: a non-negative int (huge ones are a MemoryError, negative a ValueError).
fn parse_dim(obj: &Bound<'_, PyAny>) -> PyResult<usize> {
    if obj.is_instance_of::<PyBool>() || !obj.hasattr("__index__")? {
        return Err(PyTypeError::new_err(format!(
            "shape dimensions must be integers, got {}",
            short(obj)
        )));
    }
    let d: i128 = obj.call_method0("__index__")?.extract().map_err(|_| {
        PyMemoryError::new_err(format!("dimension {} is too large to allocate", short(obj)))
    })?;
    if d < 0 {
        return Err(PyValueError::new_err(format!(
            "negative dimension {d} in shape"
        )));
    }
    // NumPy (npy_intp) cannot describe a dimension past isize::MAX, even in a zero-size
    // array: refuse it here, or such a tensor could never be converted or printed.
    isize::try_from(d)
        .map(|d| d as usize)
        .map_err(|_| PyMemoryError::new_err(format!("dimension {d} is too large to allocate")))
}

/// Accepts `f(2, 3)` and `f((2, 3))` alike.
pub fn parse_shape(args: &Bound<'_, PyTuple>) -> PyResult<Vec<usize>> {
    let items = shape_items(args)?;
    let shape: Vec<usize> = items
        .iter()
        .map(|d| parse_dim(d))
        .collect::<PyResult<_>>()?;
    ferrograd::shape::check_addressable(&shape).py()?;
    Ok(shape)
}

fn shape_items<'py>(args: &Bound<'py, PyTuple>) -> PyResult<Vec<Bound<'py, PyAny>>> {
    if args.len() == 1 {
        let first = args.get_item(0)?;
        if first.is_instance_of::<PyTuple>() || first.is_instance_of::<PyList>() {
            return first.try_iter()?.collect();
        }
    }
    Ok(args.iter().collect())
}

/// A shape for `reshape`, where `-1` stands for the inferred dimension.
pub fn parse_reshape(args: &Bound<'_, PyTuple>) -> PyResult<Vec<isize>> {
    shape_items(args)?
        .iter()
        .map(|d| {
            if d.is_instance_of::<PyBool>() || !d.hasattr("__index__")? {
                return Err(PyTypeError::new_err(format!(
                    "reshape: dimensions must be integers, got {}",
                    short(d)
                )));
            }
            // A dimension past isize is a ValueError naming it, not pyo3's OverflowError.
            let d = d.call_method0("__index__")?;
            d.extract::<isize>().map_err(|_| {
                PyValueError::new_err(format!("reshape: dimension {} is out of range", short(&d)))
            })
        })
        .collect()
}

/// One axis: an int.
pub fn parse_axis(obj: &Bound<'_, PyAny>) -> PyResult<isize> {
    if obj.is_instance_of::<PyBool>() || !obj.hasattr("__index__")? {
        return Err(PyTypeError::new_err(format!(
            "axis must be an integer, got {}",
            short(obj)
        )));
    }
    let i = obj.call_method0("__index__")?;
    // An axis past isize is out of bounds for every array: an AxisError, not an OverflowError.
    i.extract::<isize>().map_err(|_| {
        crate::errors::to_py(ferrograd::Error::Axis(format!(
            "axis {} is out of bounds",
            short(&i)
        )))
    })
}

/// An `axis=` argument taking one int, parsed by [`parse_axis`] (for pyo3 signatures).
pub struct Axis(pub isize);

impl<'a, 'py> FromPyObject<'a, 'py> for Axis {
    type Error = PyErr;

    fn extract(obj: pyo3::Borrowed<'a, 'py, PyAny>) -> PyResult<Self> {
        parse_axis(&obj).map(Axis)
    }
}

/// `axis=`: None, an int or a tuple/list of ints.
pub fn parse_axes(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<Vec<isize>>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if obj.is_instance_of::<PyTuple>() || obj.is_instance_of::<PyList>() {
        return obj
            .try_iter()?
            .map(|a| parse_axis(&a?))
            .collect::<PyResult<Vec<_>>>()
            .map(Some);
    }
    Ok(Some(vec![parse_axis(obj)?]))
}

/// Translates a `__getitem__` key into index items.
pub fn parse_index(key: &Bound<'_, PyAny>) -> PyResult<Vec<IndexItem>> {
    if let Ok(t) = key.cast::<PyTuple>() {
        return t.iter().map(|k| parse_index_item(&k)).collect();
    }
    Ok(vec![parse_index_item(key)?])
}

fn opt_isize(obj: Bound<'_, PyAny>) -> PyResult<Option<isize>> {
    if obj.is_none() {
        return Ok(None);
    }
    if !obj.hasattr("__index__")? {
        return Err(PyTypeError::new_err(format!(
            "slice indices must be integers or None, got {}",
            short(&obj)
        )));
    }
    // Clamp huge bounds: Python slices saturate rather than overflow.
    let v: i128 = obj.call_method0("__index__")?.extract()?;
    Ok(Some(
        v.clamp(isize::MIN as i128, isize::MAX as i128) as isize
    ))
}

fn parse_index_item(k: &Bound<'_, PyAny>) -> PyResult<IndexItem> {
    if k.is_none() {
        return Ok(IndexItem::NewAxis);
    }
    if k.is_instance_of::<PyEllipsis>() {
        return Ok(IndexItem::Ellipsis);
    }
    if let Ok(s) = k.cast::<PySlice>() {
        return Ok(IndexItem::Slice {
            start: opt_isize(s.getattr("start")?)?,
            stop: opt_isize(s.getattr("stop")?)?,
            step: opt_isize(s.getattr("step")?)?,
        });
    }
    if k.is_instance_of::<PyBool>() {
        return Err(PyTypeError::new_err(
            "boolean indices are not supported; use integers",
        ));
    }
    if k.is_instance_of::<PyInt>() || (is_numpy_scalar(k) && k.hasattr("__index__")?) {
        let i: i128 = k.call_method0("__index__")?.extract()?;
        let i = isize::try_from(i)
            .map_err(|_| PyIndexError::new_err(format!("index {i} is out of bounds")))?;
        return Ok(IndexItem::Int(i));
    }
    let is_array_like = k.is_instance_of::<PyList>()
        || k.is_instance_of::<PyUntypedArray>()
        || k.is_instance_of::<PyTensor>()
        || k.is_instance_of::<PyNdArray>();
    if !is_array_like {
        return Err(PyTypeError::new_err(format!(
            "only integers, slices, None, ..., and integer lists or arrays are valid indices, got {} of type {}",
            short(k),
            k.get_type().name()?
        )));
    }
    integer_array(k)
}

/// An integer list/array (or a Tensor holding whole numbers) as an advanced index.
fn integer_array(k: &Bound<'_, PyAny>) -> PyResult<IndexItem> {
    let py = k.py();
    let np = numpy(py)?;
    let ours = k.is_instance_of::<PyTensor>() || k.is_instance_of::<PyNdArray>();
    let arr = if ours {
        k.call_method0("numpy")?
    } else {
        np.call_method1("asarray", (k,))?
    };
    let arr = arr.cast_into::<PyUntypedArray>()?;
    let descr = arr.dtype();
    let shape = arr.shape().to_vec();
    let ints = match descr.kind() {
        b'i' | b'u' => arr,
        b'b' => {
            return Err(PyTypeError::new_err(
                "boolean mask indices are not supported; use integer indices",
            ))
        }
        _ if arr.len() == 0 => arr,
        // Our arrays hold indices as whole-number floats (e.g. from argmax); fractions are not.
        b'f' if ours => {
            // Whole-number floats (e.g. from argmax) are accepted; fractions are not.
            let whole: bool = np
                .call_method1(
                    "all",
                    (np.call_method1("equal", (&arr, np.call_method1("floor", (&arr,))?))?,),
                )?
                .extract()?;
            if !whole {
                return Err(PyIndexError::new_err(
                    "index arrays must hold whole numbers",
                ));
            }
            arr
        }
        _ => {
            return Err(PyTypeError::new_err(format!(
                "index arrays must be integers, got dtype {}",
                descr.str()?
            )))
        }
    };
    let as_i64 = np.call_method1("ascontiguousarray", (ints, numpy::dtype::<i64>(py)))?;
    let typed = as_i64.cast_into::<PyArrayDyn<i64>>()?;
    let ro = typed
        .try_readonly()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    let indices = ro
        .as_slice()
        .map_err(|e| PyValueError::new_err(e.to_string()))?
        .iter()
        .map(|&i| i as isize)
        .collect();
    Ok(IndexItem::Array { indices, shape })
}

/// The core tensor behind a `Tensor` or `NdArray` argument (shared, not copied); `what`
/// names the argument in the TypeError.
pub fn tensor_of(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<ferrograd::Tensor> {
    if let Ok(t) = obj.cast::<PyTensor>() {
        return Ok(t.get().inner.clone());
    }
    if let Ok(t) = obj.cast::<PyNdArray>() {
        return Ok(t.get().inner.clone());
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be a Tensor or NdArray, got {}",
        obj.get_type().name()?
    )))
}
