//! Module-level functions: creation (`zeros`, `randn`, …), `cat`/`stack`, the seed, grad
//! mode and the thread knob.

use ferrograd::{DType, Scalar, Tensor};
use pyo3::prelude::*;
use pyo3::types::PyTuple;

use crate::classes::{PyNdArray, PyTensor};
use crate::convert::{array_from_py, parse_dtype, parse_shape, scalar_of, Infer};
use crate::errors::IntoPyResult;
use crate::tensor::tensors_from_seq;

fn dtype_or_default(dtype: Option<&Bound<'_, PyAny>>) -> PyResult<DType> {
    Ok(parse_dtype(dtype)?.unwrap_or(DType::F32))
}

/// Parses `(*shape, dtype, requires_grad)` and calls a core creation function.
fn create(
    shape: &Bound<'_, PyTuple>,
    dtype: Option<&Bound<'_, PyAny>>,
    requires_grad: bool,
    make: fn(&[usize], DType, bool) -> ferrograd::Result<Tensor>,
) -> PyResult<PyTensor> {
    let t = make(
        &parse_shape(shape)?,
        dtype_or_default(dtype)?,
        requires_grad,
    )
    .py()?;
    Ok(PyTensor { inner: t })
}

/// `zeros(2, 3)` or `zeros((2, 3))`.
#[pyfunction]
#[pyo3(signature = (*shape, dtype=None, requires_grad=false))]
fn zeros(
    shape: &Bound<'_, PyTuple>,
    dtype: Option<&Bound<'_, PyAny>>,
    requires_grad: bool,
) -> PyResult<PyTensor> {
    create(shape, dtype, requires_grad, Tensor::zeros)
}

/// `ones(2, 3)` or `ones((2, 3))`.
#[pyfunction]
#[pyo3(signature = (*shape, dtype=None, requires_grad=false))]
fn ones(
    shape: &Bound<'_, PyTuple>,
    dtype: Option<&Bound<'_, PyAny>>,
    requires_grad: bool,
) -> PyResult<PyTensor> {
    create(shape, dtype, requires_grad, Tensor::ones)
}

/// `full(shape, value)`: the dtype follows the value when not given (bool → bool, int →
/// int64, float → float32), as in PyTorch.
#[pyfunction]
#[pyo3(signature = (shape, value, dtype=None, requires_grad=false))]
fn full(
    shape: &Bound<'_, PyAny>,
    value: &Bound<'_, PyAny>,
    dtype: Option<&Bound<'_, PyAny>>,
    requires_grad: bool,
) -> PyResult<PyTensor> {
    let shape = parse_shape(&PyTuple::new(shape.py(), [shape])?)?;
    let value = scalar_of(value)?.ok_or_else(|| {
        pyo3::exceptions::PyTypeError::new_err(format!(
            "full: the fill value must be a bool, int or float, got {}",
            value
                .get_type()
                .name()
                .map_or_else(|_| "?".into(), |n| n.to_string())
        ))
    })?;
    let dtype = parse_dtype(dtype)?.unwrap_or(DType::default_for(value.category()));
    let t = Tensor::full_scalar(&shape, value, dtype, requires_grad).py()?;
    Ok(PyTensor { inner: t })
}

/// Standard normal samples from the generator seeded by `manual_seed`.
#[pyfunction]
#[pyo3(signature = (*shape, dtype=None, requires_grad=false))]
fn randn(
    shape: &Bound<'_, PyTuple>,
    dtype: Option<&Bound<'_, PyAny>>,
    requires_grad: bool,
) -> PyResult<PyTensor> {
    create(shape, dtype, requires_grad, Tensor::randn)
}

/// Uniform samples in [0, 1) from the generator seeded by `manual_seed`.
#[pyfunction]
#[pyo3(signature = (*shape, dtype=None, requires_grad=false))]
fn rand(
    shape: &Bound<'_, PyTuple>,
    dtype: Option<&Bound<'_, PyAny>>,
    requires_grad: bool,
) -> PyResult<PyTensor> {
    create(shape, dtype, requires_grad, Tensor::rand)
}

/// `arange(stop)` or `arange(start, stop, step=1)`: int64 when every argument is an integer,
/// else float32 (PyTorch's rule).
#[pyfunction]
#[pyo3(signature = (start, stop=None, step=None, dtype=None, requires_grad=false))]
fn arange(
    start: &Bound<'_, PyAny>,
    stop: Option<&Bound<'_, PyAny>>,
    step: Option<&Bound<'_, PyAny>>,
    dtype: Option<&Bound<'_, PyAny>>,
    requires_grad: bool,
) -> PyResult<PyTensor> {
    let number = |obj: &Bound<'_, PyAny>| -> PyResult<Scalar> {
        match scalar_of(obj)? {
            Some(Scalar::Bool(_)) | None => Err(pyo3::exceptions::PyTypeError::new_err(format!(
                "arange: expected numbers, got {}",
                obj.repr().map_or_else(|_| "?".into(), |r| r.to_string())
            ))),
            Some(s) => Ok(s),
        }
    };
    let first = number(start)?;
    let (start, stop) = match stop.filter(|s| !s.is_none()) {
        Some(stop) => (first, number(stop)?),
        None => (Scalar::Int(0), first),
    };
    let step = match step.filter(|s| !s.is_none()) {
        Some(step) => number(step)?,
        None => Scalar::Int(1),
    };
    let all_int = [start, stop, step]
        .iter()
        .all(|s| matches!(s, Scalar::Int(_)));
    let natural = if all_int { DType::I64 } else { DType::F32 };
    let dtype = parse_dtype(dtype)?.unwrap_or(natural);
    let t = if all_int {
        Tensor::arange_int(
            start.to_i64(),
            stop.to_i64(),
            step.to_i64(),
            dtype,
            requires_grad,
        )
    } else {
        Tensor::arange(
            start.to_f64(),
            stop.to_f64(),
            step.to_f64(),
            dtype,
            requires_grad,
        )
    }
    .py()?;
    Ok(PyTensor { inner: t })
}

/// The `n × m` identity (m defaults to n).
#[pyfunction]
#[pyo3(signature = (n, m=None, dtype=None, requires_grad=false))]
fn eye(
    n: &Bound<'_, PyAny>,
    m: Option<&Bound<'_, PyAny>>,
    dtype: Option<&Bound<'_, PyAny>>,
    requires_grad: bool,
) -> PyResult<PyTensor> {
    let dims = match m.filter(|m| !m.is_none()) {
        Some(m) => PyTuple::new(n.py(), [n, m])?,
        None => PyTuple::new(n.py(), [n, n])?,
    };
    let shape = parse_shape(&dims)?;
    let t = Tensor::eye(shape[0], shape[1], dtype_or_default(dtype)?, requires_grad).py()?;
    Ok(PyTensor { inner: t })
}

/// A Tensor copied from a NumPy array, keeping its dtype (float16 → float32, other integer
/// kinds → int64).
#[pyfunction]
#[pyo3(signature = (array, dtype=None, requires_grad=false))]
fn from_numpy(
    array: &Bound<'_, PyAny>,
    dtype: Option<&Bound<'_, PyAny>>,
    requires_grad: bool,
) -> PyResult<PyTensor> {
    if !array.is_instance_of::<numpy::PyUntypedArray>() {
        return Err(pyo3::exceptions::PyTypeError::new_err(format!(
            "from_numpy expects a numpy.ndarray, got {}",
            array.get_type().name()?
        )));
    }
    tensor(array, dtype, requires_grad)
}

/// `tensor(data, dtype=None, requires_grad=False)`, inferring the dtype like `torch.tensor`:
/// Python bools → bool, ints → int64, floats → float32; NumPy arrays keep their dtype.
#[pyfunction]
#[pyo3(signature = (data, dtype=None, requires_grad=false))]
fn tensor(
    data: &Bound<'_, PyAny>,
    dtype: Option<&Bound<'_, PyAny>>,
    requires_grad: bool,
) -> PyResult<PyTensor> {
    let array = array_from_py(data, parse_dtype(dtype)?, Infer::Natural)?;
    Ok(PyTensor {
        inner: Tensor::leaf(array, requires_grad).py()?,
    })
}

fn join(
    py: Python<'_>,
    tensors: &Bound<'_, PyAny>,
    axis: isize,
    stack: bool,
) -> PyResult<Py<PyAny>> {
    let op = if stack { "stack" } else { "cat" };
    let (ts, any_tensor) = tensors_from_seq(tensors, op)?;
    let refs: Vec<&Tensor> = ts.iter().collect();
    let out = if stack {
        Tensor::stack(&refs, axis)
    } else {
        Tensor::cat(&refs, axis)
    }
    .py()?;
    if any_tensor {
        Ok(Bound::new(py, PyTensor { inner: out })?.into_any().unbind())
    } else {
        Ok(Bound::new(py, PyNdArray::of(&out))?.into_any().unbind())
    }
}

/// Joins tensors along an existing axis.
#[pyfunction]
#[pyo3(signature = (tensors, axis=crate::convert::Axis(0)), text_signature = "(tensors, axis=0)")]
fn cat(
    py: Python<'_>,
    tensors: &Bound<'_, PyAny>,
    axis: crate::convert::Axis,
) -> PyResult<Py<PyAny>> {
    join(py, tensors, axis.0, false)
}

/// Joins tensors of one shape along a new axis.
#[pyfunction]
#[pyo3(signature = (tensors, axis=crate::convert::Axis(0)), text_signature = "(tensors, axis=0)")]
fn stack(
    py: Python<'_>,
    tensors: &Bound<'_, PyAny>,
    axis: crate::convert::Axis,
) -> PyResult<Py<PyAny>> {
    join(py, tensors, axis.0, true)
}

/// Seeds the one generator behind every random function.
#[pyfunction]
fn manual_seed(seed: &Bound<'_, PyAny>) -> PyResult<()> {
    // An int past 128 bits is a ValueError naming it, not pyo3's OverflowError.
    let seed: i128 = match seed.extract() {
        Ok(s) => s,
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(seed.py()) => {
            return Err(pyo3::exceptions::PyValueError::new_err(format!(
                "manual_seed: seed {seed} does not fit in 128 bits"
            )))
        }
        Err(e) => return Err(e),
    };
    // Accept any Python int (negative ones too) by folding it into 64 bits.
    ferrograd::random::manual_seed(seed as u64 ^ ((seed >> 64) as u64));
    Ok(())
}

/// A random permutation of `range(n)` from the global generator (NumPy int64 array).
#[pyfunction]
fn _randperm<'py>(py: Python<'py>, n: usize) -> Bound<'py, numpy::PyArray1<i64>> {
    let p: Vec<i64> = ferrograd::random::permutation(n)
        .into_iter()
        .map(|i| i as i64)
        .collect();
    numpy::PyArray1::from_vec(py, p)
}

/// A 64-bit seed drawn from the global generator.
#[pyfunction]
fn _next_seed() -> u64 {
    ferrograd::random::next_seed()
}

/// Turns graph recording on or off for this thread; returns the previous setting.
#[pyfunction]
fn set_grad_enabled(enabled: bool) -> bool {
    ferrograd::tensor::set_grad_enabled(enabled)
}

/// Whether ops record the graph on this thread.
#[pyfunction]
fn is_grad_enabled() -> bool {
    ferrograd::tensor::is_grad_enabled()
}

/// Sets how many threads kernels use (0 = all cores, the default; at most 1024).
#[pyfunction]
fn set_num_threads(n: &Bound<'_, PyAny>) -> PyResult<()> {
    // Take any int, so a negative or huge count is a ValueError, not pyo3's OverflowError.
    let count: i128 = match n.extract() {
        Ok(c) => c,
        Err(e) if e.is_instance_of::<pyo3::exceptions::PyOverflowError>(n.py()) => i128::MAX,
        Err(e) => return Err(e),
    };
    if count < 0 {
        return Err(pyo3::exceptions::PyValueError::new_err(format!(
            "set_num_threads: the thread count must be >= 0 (0 = all cores), got {n}"
        )));
    }
    // Past usize it is past the core's limit too, which then names the limit.
    let count = usize::try_from(count).unwrap_or(usize::MAX);
    ferrograd::parallel::set_num_threads(count).map_err(crate::errors::to_py)
}

/// How many threads kernels use.
#[pyfunction]
fn get_num_threads() -> usize {
    ferrograd::parallel::num_threads()
}

/// `_core_to_core_round_trip_ns(round_trips=20000)`: the median time, in ns, of passing a
/// cache line to another core and back (a benchmark diagnostic; None on one core).
#[pyfunction]
#[pyo3(signature = (round_trips=20000))]
fn _core_to_core_round_trip_ns(py: Python<'_>, round_trips: usize) -> Option<f64> {
    py.detach(|| ferrograd::parallel::core_to_core_round_trip_ns(round_trips))
}

/// Adds the functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(zeros, m)?)?;
    m.add_function(wrap_pyfunction!(ones, m)?)?;
    m.add_function(wrap_pyfunction!(full, m)?)?;
    m.add_function(wrap_pyfunction!(randn, m)?)?;
    m.add_function(wrap_pyfunction!(rand, m)?)?;
    m.add_function(wrap_pyfunction!(arange, m)?)?;
    m.add_function(wrap_pyfunction!(eye, m)?)?;
    m.add_function(wrap_pyfunction!(from_numpy, m)?)?;
    m.add_function(wrap_pyfunction!(tensor, m)?)?;
    m.add_function(wrap_pyfunction!(cat, m)?)?;
    m.add_function(wrap_pyfunction!(stack, m)?)?;
    m.add_function(wrap_pyfunction!(manual_seed, m)?)?;
    m.add_function(wrap_pyfunction!(_randperm, m)?)?;
    m.add_function(wrap_pyfunction!(_next_seed, m)?)?;
    m.add_function(wrap_pyfunction!(set_grad_enabled, m)?)?;
    m.add_function(wrap_pyfunction!(is_grad_enabled, m)?)?;
    m.add_function(wrap_pyfunction!(set_num_threads, m)?)?;
    m.add_function(wrap_pyfunction!(_core_to_core_round_trip_ns, m)?)?;
    m.add_function(wrap_pyfunction!(get_num_threads, m)?)?;
    Ok(())
}
