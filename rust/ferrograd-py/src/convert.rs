//! Python ⇄ core conversions: arrays (numbers, nested lists, NumPy), dtypes, shapes, axes
//! and index keys. NumPy parses lists in C and data crosses in one copy.

use ferrograd::ndarray::IndexItem;
use ferrograd::{DType, DynArray, NdArray, Scalar};
use numpy::{
    PyArray, PyArrayDescrMethods, PyArrayDyn, PyArrayMethods, PyUntypedArray, PyUntypedArrayMethods,
};
use pyo3::exceptions::{PyIndexError, PyMemoryError, PyTypeError, PyValueError};
use pyo3::prelude::*;
use pyo3::sync::PyOnceLock;
use pyo3::types::{PyBool, PyEllipsis, PyFloat, PyInt, PyList, PySlice, PyString, PyTuple};

use crate::classes::{PyNdArray, PyTensor};
use crate::errors::IntoPyResult;

/// The `numpy` module, imported once.
pub fn numpy(py: Python<'_>) -> PyResult<&Bound<'_, PyModule>> {
    static NUMPY: PyOnceLock<Py<PyModule>> = PyOnceLock::new();
    NUMPY
        .get_or_try_init(py, || Ok::<_, PyErr>(py.import("numpy")?.unbind()))
        .map(|m| m.bind(py))
}

/// Parses a `dtype=` argument: a name ("float32", "int64", "bool", "long", …), `fg.int64`
/// and friends (which are those names), a NumPy dtype or type, or `None`.
pub fn parse_dtype(obj: Option<&Bound<'_, PyAny>>) -> PyResult<Option<DType>> {
    let Some(obj) = obj.filter(|o| !o.is_none()) else {
        return Ok(None);
    };
    if let Ok(s) = obj.cast::<PyString>() {
        return DType::parse(&s.to_cow()?).py().map(Some);
    }
    // Python's own `bool`, `int` and `float` types, as NumPy reads them.
    let np = numpy(obj.py())?;
    let described = np.getattr("dtype")?.call1((obj,)).map_err(|_| {
        PyTypeError::new_err(format!(
            "dtype must be one of float32, float64, int64, int32, bool, got {}",
            repr(obj)
        ))
    })?;
    let kind: String = described.getattr("kind")?.extract()?;
    let size: usize = described.getattr("itemsize")?.extract()?;
    natural_dtype(kind.as_bytes().first().copied().unwrap_or(0), size, true)
        .map(Some)
        .ok_or_else(|| {
            PyTypeError::new_err(format!(
                "dtype must be one of float32, float64, int64, int32, bool, got {}",
                described
                    .str()
                    .map_or_else(|_| "?".into(), |s| s.to_string())
            ))
        })
}

/// The dtype a NumPy array of this kind and item size keeps: float16 → float32, int32 stays,
/// other integer kinds → int64. `exact_floats` keeps float64 (NumPy input) rather than
/// taking the float32 default (Python lists).
fn natural_dtype(kind: u8, size: usize, exact_floats: bool) -> Option<DType> {
    match (kind, size) {
        (b'f', 2 | 4) => Some(DType::F32),
        (b'f', _) if exact_floats => Some(DType::F64),
        (b'f', _) => Some(DType::F32),
        (b'i', 4) => Some(DType::I32),
        (b'i' | b'u', _) => Some(DType::I64),
        (b'b', _) => Some(DType::Bool),
        _ => None,
    }
}

fn repr(obj: &Bound<'_, PyAny>) -> String {
    obj.repr()
        .map_or_else(|_| "<object>".into(), |r| r.to_string())
}

/// How a constructor picks the dtype of data that does not name one.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Infer {
    /// `fg.Tensor(data)`/`fg.NdArray(data)`, the float constructors: everything becomes
    /// float32 except NumPy float64, which keeps its precision.
    Float,
    /// `fg.tensor(data)`/`fg.from_numpy`, like `torch.tensor`: Python bools → bool, ints →
    /// int64, floats → float32; NumPy arrays keep float32/float64/int64/int32/bool.
    Natural,
}

/// Converts array-like input (a number, nested list, NumPy array or scalar, Tensor, NdArray,
/// anything with `__array__`) into a `DynArray`: the one conversion path of the bindings.
/// `dtype`, when given, always wins.
pub fn array_from_py(
    obj: &Bound<'_, PyAny>,
    dtype: Option<DType>,
    infer: Infer,
) -> PyResult<DynArray> {
    if let Some(t) = ours(obj) {
        let a = t.array();
        return match dtype {
            Some(d) if d != a.dtype() => Ok(a.to_dtype(d)),
            // On the pool's threads when large: the array is usually read next by a kernel
            // split over them (a seed gradient, a copied tensor).
            _ => a.try_clone().py(),
        };
    }
    if let Ok(arr) = obj.cast::<PyUntypedArray>() {
        // Already an array (a batch, a target vector): no `asarray` round trip.
        return from_array(arr.clone(), obj, dtype, infer, true);
    }
    // A NumPy scalar goes through `asarray` like an array, so that its dtype is kept.
    let from_numpy = is_numpy_scalar(obj);
    if let (Some(s), false) = (scalar_of(obj)?, from_numpy) {
        let natural = match infer {
            Infer::Natural => DType::default_for(s.category()),
            Infer::Float => DType::F32,
        };
        return DynArray::full_scalar(&[], s, dtype.unwrap_or(natural)).py();
    }
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
    let arr = numpy(obj.py())?.call_method1("asarray", (obj,))?;
    from_array(
        arr.cast_into::<PyUntypedArray>()?,
        obj,
        dtype,
        infer,
        from_numpy,
    )
}

/// The array of `arr`, which NumPy made from `obj` (`obj` itself when it was an array;
/// `from_numpy` when it came from NumPy, whose dtypes are then kept), in `dtype` or the
/// one `infer` picks.
fn from_array(
    arr: Bound<'_, PyUntypedArray>,
    obj: &Bound<'_, PyAny>,
    dtype: Option<DType>,
    infer: Infer,
    from_numpy: bool,
) -> PyResult<DynArray> {
    let np = numpy(obj.py())?;
    let descr = arr.dtype();
    let (kind, size) = (descr.kind(), descr.itemsize());
    // An empty list is float64 to NumPy; it has no elements to say otherwise.
    let natural = match infer {
        Infer::Natural => natural_dtype(kind, size, from_numpy),
        Infer::Float if matches!(kind, b'f' | b'i' | b'u' | b'b') => {
            Some(if kind == b'f' && size == 8 && from_numpy {
                DType::F64
            } else {
                DType::F32
            })
        }
        Infer::Float => None,
    };
    let Some(natural) = natural else {
        return Err(PyTypeError::new_err(format!(
            "expected numbers, got data of dtype {} ({})",
            descr.str()?,
            short(obj)
        )));
    };
    match dtype.unwrap_or(natural) {
        DType::F32 => read_numpy::<f32>(np, arr).map(DynArray::F32),
        DType::F64 => read_numpy::<f64>(np, arr).map(DynArray::F64),
        DType::I64 => read_numpy::<i64>(np, arr).map(DynArray::I64),
        DType::I32 => read_numpy::<i32>(np, arr).map(DynArray::I32),
        DType::Bool => read_numpy::<bool>(np, arr).map(DynArray::Bool),
    }
}

/// The core tensor behind a `Tensor` or `NdArray` (shared, not copied).
pub fn ours(obj: &Bound<'_, PyAny>) -> Option<ferrograd::Tensor> {
    if let Ok(t) = obj.cast::<PyTensor>() {
        return Some(t.get().inner.clone());
    }
    obj.cast::<PyNdArray>().ok().map(|t| t.get().as_tensor())
}

/// The Tensors in an index key (the key itself, or the items of a tuple key).
pub fn tensors_in_key(key: &Bound<'_, PyAny>) -> Vec<ferrograd::Tensor> {
    let one = |obj: &Bound<'_, PyAny>| obj.cast::<PyTensor>().ok().map(|t| t.get().inner.clone());
    match key.cast::<pyo3::types::PyTuple>() {
        Ok(items) => items.iter().filter_map(|k| one(&k)).collect(),
        Err(_) => one(key).into_iter().collect(),
    }
}

/// A Python or NumPy scalar (bool, int or float) as a core scalar; `None` for anything else.
/// Python ints beyond int64 are a ValueError (they fit no tensor dtype).
pub fn scalar_of(obj: &Bound<'_, PyAny>) -> PyResult<Option<Scalar>> {
    if obj.is_instance_of::<PyBool>() {
        return Ok(Some(Scalar::Bool(obj.extract()?)));
    }
    if obj.is_instance_of::<PyInt>() {
        return obj
            .extract::<i64>()
            .map(|i| Some(Scalar::Int(i)))
            .map_err(|_| {
                PyValueError::new_err(format!("the integer {} does not fit in int64", short(obj)))
            });
    }
    if obj.is_instance_of::<PyFloat>() {
        return Ok(Some(Scalar::Float(obj.extract()?)));
    }
    if !is_numpy_scalar(obj) {
        return Ok(None);
    }
    let kind: String = obj.getattr("dtype")?.getattr("kind")?.extract()?;
    Ok(match kind.as_str() {
        "b" => Some(Scalar::Bool(obj.call_method0("__bool__")?.extract()?)),
        "i" | "u" => Some(Scalar::Int(
            obj.call_method0("__int__")?.extract().map_err(|_| {
                PyValueError::new_err(format!("the integer {} does not fit in int64", short(obj)))
            })?,
        )),
        "f" => Some(Scalar::Float(obj.call_method0("__float__")?.extract()?)),
        _ => None,
    })
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

/// Copies a NumPy array into an `NdArray<T>`: one `asarray(dtype=…, order="C")` in C when the
/// dtype, byte order or layout differ (keeping a 0-d array 0-d), then one memcpy.
fn read_numpy<T: numpy::Element + Copy + Send + Sync>(
    np: &Bound<'_, PyModule>,
    arr: Bound<'_, PyUntypedArray>,
) -> PyResult<NdArray<T>> {
    let py = arr.py();
    let want = numpy::dtype::<T>(py);
    let arr = if !arr.dtype().is_equiv_to(&want) || !arr.is_c_contiguous() {
        let kwargs = pyo3::types::PyDict::new(py);
        kwargs.set_item("dtype", want)?;
        kwargs.set_item("order", "C")?;
        np.call_method("asarray", (arr,), Some(&kwargs))?
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
    let v = ferrograd::ndarray::try_copied(data).py()?;
    NdArray::from_vec(v, &shape).py()
}

/// A writable NumPy copy of the array.
pub fn to_numpy<'py>(py: Python<'py>, a: &DynArray) -> PyResult<Bound<'py, PyAny>> {
    fn copy<'py, T: numpy::Element + Copy>(
        py: Python<'py>,
        x: &NdArray<T>,
    ) -> PyResult<Bound<'py, PyAny>> {
        Ok(PyArray::from_slice(py, x.data())
            .reshape(x.shape())?
            .into_any())
    }
    match a {
        DynArray::F32(x) => copy(py, x),
        DynArray::F64(x) => copy(py, x),
        DynArray::I64(x) => copy(py, x),
        DynArray::I32(x) => copy(py, x),
        DynArray::Bool(x) => copy(py, x),
    }
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

/// An integer or bool list, NumPy array, Tensor or NdArray as an advanced index: integers
/// pick positions on one axis, a bool mask selects where it is true (NumPy's rules; the
/// core's [`IndexItem::from_array`] holds the rule).
fn integer_array(k: &Bound<'_, PyAny>) -> PyResult<IndexItem> {
    IndexItem::from_array(&index_array(k)?).py()
}

/// The array behind an index argument (a list, NumPy array, Tensor or NdArray), its dtype
/// kept for the core to judge.
pub fn index_array(k: &Bound<'_, PyAny>) -> PyResult<DynArray> {
    if let Some(t) = ours(k) {
        return Ok(t.array().clone());
    }
    let empty_list = k.cast::<PyList>().is_ok_and(|l| l.is_empty());
    let arr = array_from_py(k, None, Infer::Natural)?;
    // `a[[]]` selects nothing; NumPy reads `[]` as float64, but it holds no floats.
    Ok(if empty_list {
        arr.to_dtype(DType::I64)
    } else {
        arr
    })
}

/// The core tensor behind a `Tensor` or `NdArray` argument (shared, not copied); `what`
/// names the argument in the TypeError.
pub fn tensor_of(obj: &Bound<'_, PyAny>, what: &str) -> PyResult<ferrograd::Tensor> {
    if let Some(t) = ours(obj) {
        return Ok(t);
    }
    Err(PyTypeError::new_err(format!(
        "{what} must be a Tensor or NdArray, got {}",
        obj.get_type().name()?
    )))
}
