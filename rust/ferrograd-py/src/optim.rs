//! `_core.sgd_step`, `_core.adam_step`, `_core.rmsprop_step`: one fused, in-place update of a
//! parameter and its state buffers each. `_core.sgd_steps` and `_core.adam_steps` run the
//! same update over a whole parameter group in one call, which `ferrograd.optim` uses: a
//! small model's step is then one crossing into Rust per group, not one per parameter.

use ferrograd::optim::{Adam, RmsProp, Sgd};
use ferrograd::Tensor;
use pyo3::exceptions::PyValueError;
use pyo3::prelude::*;
use pyo3::types::PyList;

use crate::array_methods::compute;
use crate::convert::tensor_of;
use crate::errors::IntoPyResult;

/// A buffer argument that may be None.
fn optional_tensor(obj: Option<&Bound<'_, PyAny>>, what: &str) -> PyResult<Option<Tensor>> {
    obj.filter(|o| !o.is_none())
        .map(|o| tensor_of(o, what))
        .transpose()
}

fn size_of(param: &Tensor) -> usize {
    param.array().size()
}

/// One SGD step on `param` from `param.grad`, in place (PyTorch's algorithm).
#[pyfunction]
#[pyo3(signature = (param, momentum_buffer, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=false, first_step=false))]
#[allow(clippy::too_many_arguments)]
fn sgd_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    momentum_buffer: Option<&Bound<'_, PyAny>>,
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
    first_step: bool,
) -> PyResult<()> {
    let param = tensor_of(param, "param")?;
    let buffer = optional_tensor(momentum_buffer, "momentum_buffer")?;
    let options = Sgd {
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
    };
    compute(py, size_of(&param), || {
        ferrograd::optim::sgd_step(&param, buffer.as_ref(), &options, first_step)
    })
    .py()
}

/// One Adam (or, with `decoupled=True`, AdamW) step; `step` counts from 1.
#[pyfunction]
#[pyo3(signature = (param, exp_avg, exp_avg_sq, step, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=false))]
#[allow(clippy::too_many_arguments)]
fn adam_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    exp_avg: &Bound<'_, PyAny>,
    exp_avg_sq: &Bound<'_, PyAny>,
    step: u64,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
) -> PyResult<()> {
    let param = tensor_of(param, "param")?;
    let exp_avg = tensor_of(exp_avg, "exp_avg")?;
    let exp_avg_sq = tensor_of(exp_avg_sq, "exp_avg_sq")?;
    let options = Adam {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled,
    };
    compute(py, size_of(&param), || {
        ferrograd::optim::adam_step(&param, &exp_avg, &exp_avg_sq, step, &options)
    })
    .py()
}

/// The tensors of a list argument; `what` names the list in errors.
fn tensors_of(list: &Bound<'_, PyList>, what: &str) -> PyResult<Vec<Tensor>> {
    // The entry's index goes into the message only when there is an error to report.
    list.iter()
        .enumerate()
        .map(|(i, t)| tensor_of(&t, what).or_else(|_| tensor_of(&t, &format!("{what}[{i}]"))))
        .collect()
}

/// A `ValueError` unless every list has `n` entries.
fn check_lengths(n: usize, lists: &[(&str, usize)]) -> PyResult<()> {
    match lists.iter().find(|(_, len)| *len != n) {
        Some((name, len)) => Err(PyValueError::new_err(format!(
            "{name} has {len} entries but params has {n}: one per parameter"
        ))),
        None => Ok(()),
    }
}

/// `sgd_step` over a group: `momentum_buffers[i]` (None without momentum) and
/// `first_steps[i]` belong to `params[i]`. Parameters are updated in order; an error stops
/// at the parameter that raised it.
#[pyfunction]
#[pyo3(signature = (params, momentum_buffers, first_steps, lr, momentum=0.0, dampening=0.0, weight_decay=0.0, nesterov=false))]
#[allow(clippy::too_many_arguments)]
fn sgd_steps(
    py: Python<'_>,
    params: &Bound<'_, PyList>,
    momentum_buffers: &Bound<'_, PyList>,
    first_steps: Vec<bool>,
    lr: f64,
    momentum: f64,
    dampening: f64,
    weight_decay: f64,
    nesterov: bool,
) -> PyResult<()> {
    let ps = tensors_of(params, "params")?;
    check_lengths(
        ps.len(),
        &[
            ("momentum_buffers", momentum_buffers.len()),
            ("first_steps", first_steps.len()),
        ],
    )?;
    let buffers = momentum_buffers
        .iter()
        .enumerate()
        .map(|(i, b)| optional_tensor(Some(&b), &format!("momentum_buffers[{i}]")))
        .collect::<PyResult<Vec<_>>>()?;
    let options = Sgd {
        lr,
        momentum,
        dampening,
        weight_decay,
        nesterov,
    };
    let size = ps.iter().map(size_of).sum();
    compute(py, size, || {
        ps.iter()
            .zip(&buffers)
            .zip(&first_steps)
            .try_for_each(|((p, b), &first)| {
                ferrograd::optim::sgd_step(p, b.as_ref(), &options, first)
            })
    })
    .py()
}

/// `adam_step` over a group: `exp_avgs[i]`, `exp_avg_sqs[i]` and `steps[i]` belong to
/// `params[i]`. Parameters are updated in order; an error stops at the parameter that
/// raised it.
#[pyfunction]
#[pyo3(signature = (params, exp_avgs, exp_avg_sqs, steps, lr, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.0, decoupled=false))]
#[allow(clippy::too_many_arguments)]
fn adam_steps(
    py: Python<'_>,
    params: &Bound<'_, PyList>,
    exp_avgs: &Bound<'_, PyList>,
    exp_avg_sqs: &Bound<'_, PyList>,
    steps: Vec<u64>,
    lr: f64,
    beta1: f64,
    beta2: f64,
    eps: f64,
    weight_decay: f64,
    decoupled: bool,
) -> PyResult<()> {
    let ps = tensors_of(params, "params")?;
    let ms = tensors_of(exp_avgs, "exp_avgs")?;
    let vs = tensors_of(exp_avg_sqs, "exp_avg_sqs")?;
    check_lengths(
        ps.len(),
        &[
            ("exp_avgs", ms.len()),
            ("exp_avg_sqs", vs.len()),
            ("steps", steps.len()),
        ],
    )?;
    let options = Adam {
        lr,
        beta1,
        beta2,
        eps,
        weight_decay,
        decoupled,
    };
    let size = ps.iter().map(size_of).sum();
    compute(py, size, || {
        ps.iter()
            .zip(&ms)
            .zip(&vs)
            .zip(&steps)
            .try_for_each(|(((p, m), v), &step)| {
                ferrograd::optim::adam_step(p, m, v, step, &options)
            })
    })
    .py()
}

/// One RMSprop step; `momentum_buffer` is needed when momentum > 0, `grad_avg` when centered.
#[pyfunction]
#[pyo3(signature = (param, square_avg, momentum_buffer, grad_avg, lr, alpha=0.99, eps=1e-8, weight_decay=0.0, momentum=0.0, centered=false))]
#[allow(clippy::too_many_arguments)]
fn rmsprop_step(
    py: Python<'_>,
    param: &Bound<'_, PyAny>,
    square_avg: &Bound<'_, PyAny>,
    momentum_buffer: Option<&Bound<'_, PyAny>>,
    grad_avg: Option<&Bound<'_, PyAny>>,
    lr: f64,
    alpha: f64,
    eps: f64,
    weight_decay: f64,
    momentum: f64,
    centered: bool,
) -> PyResult<()> {
    let param = tensor_of(param, "param")?;
    let square_avg = tensor_of(square_avg, "square_avg")?;
    let momentum_buffer = optional_tensor(momentum_buffer, "momentum_buffer")?;
    let grad_avg = optional_tensor(grad_avg, "grad_avg")?;
    let options = RmsProp {
        lr,
        alpha,
        eps,
        weight_decay,
        momentum,
        centered,
    };
    compute(py, size_of(&param), || {
        ferrograd::optim::rmsprop_step(
            &param,
            &square_avg,
            momentum_buffer.as_ref(),
            grad_avg.as_ref(),
            &options,
        )
    })
    .py()
}

/// Adds the optimizer steps to the module.
pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_function(wrap_pyfunction!(sgd_step, m)?)?;
    m.add_function(wrap_pyfunction!(adam_step, m)?)?;
    m.add_function(wrap_pyfunction!(sgd_steps, m)?)?;
    m.add_function(wrap_pyfunction!(adam_steps, m)?)?;
    m.add_function(wrap_pyfunction!(rmsprop_step, m)?)?;
    Ok(())
}
