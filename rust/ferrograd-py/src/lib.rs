//! PyO3 bindings of the ferrograd core: conversion, error mapping and class wrappers; no math.

use pyo3::prelude::*;

mod allocator;
mod array_methods;
mod attention;
mod buffer;
mod classes;
mod convert;
mod dlpack;
mod errors;
mod functional;
mod functions;
mod hooks;
mod inplace;
mod io;
mod notebook;
mod optim;
mod record;
mod tensor;
mod transformer_ops;
mod value;

/// The compiled module behind `import ferrograd`.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    // Training loops free and reallocate the same buffers every step (see the function).
    ferrograd::ndarray::keep_freed_memory();
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    m.add_class::<classes::PyTensor>()?;
    m.add_class::<classes::PyNdArray>()?;
    m.add("AxisError", errors::axis_error_type(m.py())?)?;
    functions::register(m)?;
    functional::register(m)?;
    attention::register(m)?;
    value::register(m)?;
    optim::register(m)?;
    io::register(m)?;
    buffer::register(m)?;
    hooks::register(m)?;
    transformer_ops::register(m)?;
    record::register(m)?;
    Ok(())
}

// Only Rust's allocations go through it; Python and NumPy keep their own allocators.
#[global_allocator]
static GLOBAL: allocator::SmallFast = allocator::SmallFast;
