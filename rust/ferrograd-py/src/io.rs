//! `_core.save_safetensors` and `_core.load_safetensors`: safetensors files of named arrays
//! (behind `fg.save`/`fg.load`). Paths may be str, bytes or `os.PathLike`.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use ferrograd::{DynArray, Tensor};
use pyo3::exceptions::{PyFileNotFoundError, PyIsADirectoryError, PyTypeError};
use pyo3::prelude::*;
use pyo3::types::{PyDict, PyString};

use crate::classes::PyTensor;
use crate::convert::tensor_of;
use crate::errors::IntoPyResult;

const ENOENT: i32 = 2;
const EISDIR: i32 = 21;

fn file_not_found(path: &Path) -> PyErr {
    PyFileNotFoundError::new_err((
        ENOENT,
        "No such file or directory",
        path.display().to_string(),
    ))
}

/// Saves `tensors` (a dict of str → Tensor or NdArray) and optional str → str `metadata`.
#[pyfunction]
#[pyo3(signature = (path, tensors, metadata=None))]
fn save_safetensors(
    py: Python<'_>,
    path: PathBuf,
    tensors: &Bound<'_, PyDict>,
    metadata: Option<HashMap<String, String>>,
) -> PyResult<()> {
    let mut named: Vec<(String, Tensor)> = Vec::with_capacity(tensors.len());
    for (key, value) in tensors.iter() {
        let name = key.cast::<PyString>().map_err(|_| {
            PyTypeError::new_err(format!(
                "save: tensor names must be str, got {}",
                key.get_type()
                    .name()
                    .map_or_else(|_| "?".into(), |n| n.to_string())
            ))
        })?;
        let name = name.to_cow()?.into_owned();
        let tensor = tensor_of(&value, &format!("save: the value of {name:?}"))?;
        named.push((name, tensor));
    }
    let parent = path.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(dir) = parent.filter(|d| !d.is_dir()) {
        return Err(file_not_found(dir));
    }
    if path.is_dir() {
        return Err(PyIsADirectoryError::new_err((
            EISDIR,
            "Is a directory",
            path.display().to_string(),
        )));
    }
    py.detach(|| {
        let guards: Vec<_> = named.iter().map(|(n, t)| (n.as_str(), t.array())).collect();
        let arrays: Vec<(&str, &DynArray)> = guards.iter().map(|(n, g)| (*n, &**g)).collect();
        ferrograd::io::save_safetensors(&path, &arrays, metadata)
    })
    .py()
}

/// Loads a safetensors file: `(dict of name → Tensor in file order, metadata dict)`.
#[pyfunction]
fn load_safetensors<'py>(
    py: Python<'py>,
    path: PathBuf,
) -> PyResult<(Bound<'py, PyDict>, HashMap<String, String>)> {
    if !path.exists() {
        return Err(file_not_found(&path));
    }
    if path.is_dir() {
        return Err(PyIsADirectoryError::new_err((
            EISDIR,
            "Is a directory",
            path.display().to_string(),
        )));
    }
    let (arrays, metadata) = py.detach(|| ferrograd::io::load_safetensors(&path)).py()?;
    let out = PyDict::new(py);
    for (name, array) in arrays {
        out.set_item(
            name,
            PyTensor {
                inner: Tensor::new(array, false),
            },
        )?;
    }
    Ok((out, metadata))
}

/// Adds the safetensors functions to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(save_safetensors, m)?)?;
    m.add_function(wrap_pyfunction!(load_safetensors, m)?)?;
    Ok(())
}
