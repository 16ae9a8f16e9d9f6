//! PyO3 bindings of the ferrograd core: conversion, error mapping and class wrappers; no math.

use pyo3::prelude::*;

/// The compiled module behind `import ferrograd`.
#[pymodule]
fn _core(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
