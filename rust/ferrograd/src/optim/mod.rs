//! Fused optimizer steps: SGD, Adam/AdamW and RMSprop update a parameter and its state
//! buffers in place, in one pass over the elements, following PyTorch's documented
//! algorithms (`torch.optim`). Python's `ferrograd.optim` calls one of these per parameter.

use std::sync::Arc;

use crate::dynarray::{DType, DynArray};
use crate::ndarray::Float;
use crate::parallel::should_split_work;
use crate::shape::fmt_shape;
use crate::tensor::{Storage, Tensor, WriteGuard};
use crate::{Error, Result};

/// An optimizer step costs about this many additions per element (it reads and writes up to
/// four arrays and may take a square root and a division), for the split rule.
const STEP_COST: usize = 4;

/// Elements per task when a step runs in parallel.
const CHUNK: usize = 1 << 14;

/// The most state buffers one optimizer keeps per parameter (RMSprop's three).
const MAX_BUFFERS: usize = 3;

/// SGD's hyper-parameters (`torch.optim.SGD`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Sgd {
    pub lr: f64,
    pub momentum: f64,
    pub dampening: f64,
    pub weight_decay: f64,
    pub nesterov: bool,
}

/// Adam's and AdamW's hyper-parameters (`torch.optim.Adam`, `torch.optim.AdamW`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Adam {
    pub lr: f64,
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
    pub weight_decay: f64,
    /// AdamW: shrink the parameter by `lr·weight_decay` instead of adding an L2 gradient.
    pub decoupled: bool,
}

/// RMSprop's hyper-parameters (`torch.optim.RMSprop`).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RmsProp {
    pub lr: f64,
    pub alpha: f64,
    pub eps: f64,
    pub weight_decay: f64,
    pub momentum: f64,
    pub centered: bool,
}

/// One SGD step on `param` from its gradient:
/// `g ← g + wd·p`; with momentum, `buf ← g` on the first step and
/// `buf ← momentum·buf + (1 − dampening)·g` after, then `g ← g + momentum·buf` (Nesterov)
/// or `g ← buf`; finally `p ← p − lr·g`. `momentum_buf` is needed when momentum ≠ 0.
pub fn sgd_step(
    param: &Tensor,
    momentum_buf: Option<&Tensor>,
    options: &Sgd,
    first_step: bool,
) -> Result<()> {
    let uses_momentum = options.momentum != 0.0;
    if uses_momentum && momentum_buf.is_none() {
        return Err(Error::Value(
            "sgd_step: momentum is non-zero but no momentum buffer was given".into(),
        ));
    }
    let buffers = [
        ("momentum_buffer", momentum_buf.filter(|_| uses_momentum)),
        ("", None),
        ("", None),
    ];
    with_locked_arrays("sgd_step", param, buffers, |p, g, bufs| match p.dtype() {
        DType::F32 => sgd_typed::<f32>(options, first_step, p, g, bufs),
        DType::F64 => sgd_typed::<f64>(options, first_step, p, g, bufs),
        other => Err(crate::dtype::float_only_error("sgd_step", other)),
    })
}

/// One Adam (or, with `decoupled`, AdamW) step; `step` counts from 1:
/// `m ← β1·m + (1−β1)·g`, `v ← β2·v + (1−β2)·g²`,
/// `p ← p − lr·m̂/(√v̂ + eps)` with `m̂ = m/(1−β1^t)`, `v̂ = v/(1−β2^t)`.
pub fn adam_step(
    param: &Tensor,
    exp_avg: &Tensor,
    exp_avg_sq: &Tensor,
    step: u64,
    options: &Adam,
) -> Result<()> {
    if step == 0 {
        return Err(Error::Value(
            "adam_step: step counts from 1 (the first update is step 1)".into(),
        ));
    }
    let buffers = [
        ("exp_avg", Some(exp_avg)),
        ("exp_avg_sq", Some(exp_avg_sq)),
        ("", None),
    ];
    with_locked_arrays("adam_step", param, buffers, |p, g, bufs| match p.dtype() {
        DType::F32 => adam_typed::<f32>(options, step, p, g, bufs),
        DType::F64 => adam_typed::<f64>(options, step, p, g, bufs),
        other => Err(crate::dtype::float_only_error("adam_step", other)),
    })
}

/// One RMSprop step, as PyTorch: `v ← α·v + (1−α)·g²`; centered, `ḡ ← α·ḡ + (1−α)·g` and
/// the denominator is `√(v − ḡ²) + eps`, else `√v + eps`; with momentum,
/// `buf ← momentum·buf + g/denominator` and `p ← p − lr·buf`, else `p ← p − lr·g/denominator`.
pub fn rmsprop_step(
    param: &Tensor,
    square_avg: &Tensor,
    momentum_buf: Option<&Tensor>,
    grad_avg: Option<&Tensor>,
    options: &RmsProp,
) -> Result<()> {
    let uses_momentum = options.momentum > 0.0;
    if uses_momentum && momentum_buf.is_none() {
        return Err(Error::Value(
            "rmsprop_step: momentum is positive but no momentum buffer was given".into(),
        ));
    }
    if options.centered && grad_avg.is_none() {
        return Err(Error::Value(
            "rmsprop_step: centered=True needs the grad_avg buffer".into(),
        ));
    }
    let buffers = [
        ("square_avg", Some(square_avg)),
        ("momentum_buffer", momentum_buf.filter(|_| uses_momentum)),
        ("grad_avg", grad_avg.filter(|_| options.centered)),
    ];
    with_locked_arrays("rmsprop_step", param, buffers, |p, g, bufs| {
        match p.dtype() {
            DType::F32 => rmsprop_typed::<f32>(options, p, g, bufs),
            DType::F64 => rmsprop_typed::<f64>(options, p, g, bufs),
            other => Err(crate::dtype::float_only_error("rmsprop_step", other)),
        }
    })
}

/// The optional state buffers of one step, in the kernel's order.
type Buffers<'a, A> = [Option<&'a mut A>; MAX_BUFFERS];

/// The typed parameter, gradient and buffers a kernel works on.
type TypedParts<'a, T> = (&'a mut [T], &'a [T], Buffers<'a, [T]>);

/// Checks that the parameter has a gradient and that no two of parameter, gradient and
/// buffers share memory, locks them (parameter, gradient, then buffers, always in that
/// order), checks the buffers' dtype and shape against the parameter, then runs `f`.
fn with_locked_arrays(
    op: &str,
    param: &Tensor,
    buffers: [(&str, Option<&Tensor>); MAX_BUFFERS],
    f: impl FnOnce(&mut DynArray, &DynArray, Buffers<'_, DynArray>) -> Result<()>,
) -> Result<()> {
    let grad = param.grad().ok_or_else(|| {
        Error::Graph(format!(
            "{op}: the parameter has no gradient; call backward() first \
             (optimizers skip parameters whose grad is None)"
        ))
    })?;
    let mut storages: Vec<(&str, &Arc<Storage>)> = vec![("the parameter", param.storage())];
    storages.push(("its gradient", &grad));
    storages.extend(
        buffers
            .iter()
            .filter_map(|(name, t)| t.map(|t| (*name, t.storage()))),
    );
    for (i, (a, sa)) in storages.iter().enumerate() {
        if let Some((b, _)) = storages[i + 1..].iter().find(|(_, sb)| Arc::ptr_eq(sa, sb)) {
            return Err(Error::Value(format!(
                "{op}: {a} and {b} share memory; each state buffer needs its own array"
            )));
        }
    }

    let mut p = param.array_mut();
    let g = grad.read();
    if g.shape() != p.shape() || g.dtype() != p.dtype() {
        return Err(Error::Shape(format!(
            "{op}: the gradient (dtype {}, shape {}) does not match the parameter \
             (dtype {}, shape {})",
            g.dtype().name(),
            fmt_shape(g.shape()),
            p.dtype().name(),
            fmt_shape(p.shape())
        )));
    }
    // Write guards: the step counts as a write of the parameter and of each buffer.
    let mut guards: [Option<WriteGuard<'_>>; MAX_BUFFERS] =
        buffers.map(|(_, t)| t.map(Tensor::array_mut));
    for ((name, _), guard) in buffers.iter().zip(&guards) {
        if let Some(b) = guard {
            if b.shape() != p.shape() || b.dtype() != p.dtype() {
                return Err(Error::Shape(format!(
                    "{op}: the {name} buffer (dtype {}, shape {}) does not match the \
                     parameter (dtype {}, shape {})",
                    b.dtype().name(),
                    fmt_shape(b.shape()),
                    p.dtype().name(),
                    fmt_shape(p.shape())
                )));
            }
        }
    }
    let [a, b, c] = &mut guards;
    f(
        &mut p,
        &g,
        [a.as_deref_mut(), b.as_deref_mut(), c.as_deref_mut()],
    )
}

/// Typed access to a `DynArray`'s elements.
trait Typed: Float {
    fn slice(a: &DynArray) -> Option<&[Self]>;
    fn slice_mut(a: &mut DynArray) -> Option<&mut [Self]>;
}

impl Typed for f32 {
    fn slice(a: &DynArray) -> Option<&[f32]> {
        match a {
            DynArray::F32(x) => Some(x.data()),
            _ => None,
        }
    }
    fn slice_mut(a: &mut DynArray) -> Option<&mut [f32]> {
        match a {
            DynArray::F32(x) => Some(x.data_mut()),
            _ => None,
        }
    }
}

impl Typed for f64 {
    fn slice(a: &DynArray) -> Option<&[f64]> {
        match a {
            DynArray::F64(x) => Some(x.data()),
            _ => None,
        }
    }
    fn slice_mut(a: &mut DynArray) -> Option<&mut [f64]> {
        match a {
            DynArray::F64(x) => Some(x.data_mut()),
            _ => None,
        }
    }
}

/// The typed element slices of parameter, gradient and buffers (dtypes already checked).
fn typed_slices<'a, T: Typed>(
    p: &'a mut DynArray,
    g: &'a DynArray,
    bufs: Buffers<'a, DynArray>,
) -> Result<TypedParts<'a, T>> {
    let mismatch = || Error::Type("optimizer step: internal dtype mismatch".into());
    let p = T::slice_mut(p).ok_or_else(mismatch)?;
    let g = T::slice(g).ok_or_else(mismatch)?;
    let [a, b, c] = bufs;
    let typed = |x: Option<&'a mut DynArray>| match x {
        Some(x) => T::slice_mut(x).map(Some).ok_or_else(mismatch),
        None => Ok(None),
    };
    Ok((p, g, [typed(a)?, typed(b)?, typed(c)?]))
}

/// Splits an optional slice into `pieces` chunks of `CHUNK` (all `None` when absent).
fn chunks_of<T>(s: Option<&mut [T]>, pieces: usize) -> Vec<Option<&mut [T]>> {
    match s {
        Some(s) => s.chunks_mut(CHUNK).map(Some).collect(),
        None => std::iter::repeat_with(|| None).take(pieces).collect(),
    }
}

/// Runs `kernel` over the whole slices, or over chunks on the pool's threads when large.
fn run_in_chunks<T: Float>(
    p: &mut [T],
    g: &[T],
    bufs: Buffers<'_, [T]>,
    kernel: impl Fn(&mut [T], &[T], Buffers<'_, [T]>) + Sync,
) {
    if !should_split_work(p.len(), STEP_COST) {
        kernel(p, g, bufs);
        return;
    }
    let pieces = p.len().div_ceil(CHUNK);
    let [a, b, c] = bufs;
    let (a, b, c) = (
        chunks_of(a, pieces),
        chunks_of(b, pieces),
        chunks_of(c, pieces),
    );
    let pieces = p
        .chunks_mut(CHUNK)
        .zip(g.chunks(CHUNK))
        .zip(a)
        .zip(b)
        .zip(c);
    crate::parallel::for_each_item(pieces, |((((p, g), a), b), c)| kernel(p, g, [a, b, c]));
}

mod kernels;
use kernels::{adam_typed, rmsprop_typed, sgd_typed};

#[cfg(test)]
mod tests;
