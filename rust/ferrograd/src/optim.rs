//! Fused optimizer steps: SGD, Adam/AdamW and RMSprop update a parameter and its state
//! buffers in place, in one pass over the elements, following PyTorch's documented
//! algorithms (`torch.optim`). Python's `ferrograd.optim` calls one of these per parameter.

use std::sync::{Arc, RwLockWriteGuard};

use rayon::prelude::*;

use crate::dynarray::{DType, DynArray};
use crate::ndarray::elementwise::simd::{self, Kernel};
use crate::ndarray::Float;
use crate::parallel::{num_threads, PARALLEL_THRESHOLD};
use crate::shape::fmt_shape;
use crate::tensor::{read, Storage, Tensor};
use crate::{Error, Result};

/// Elements per rayon task when a step runs in parallel.
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
    let mut storages: Vec<(&str, &Storage)> = vec![("the parameter", param.storage())];
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
    let g = read(&grad);
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
    let mut guards: [Option<RwLockWriteGuard<'_, DynArray>>; MAX_BUFFERS] =
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
            DynArray::F64(_) => None,
        }
    }
    fn slice_mut(a: &mut DynArray) -> Option<&mut [f32]> {
        match a {
            DynArray::F32(x) => Some(x.data_mut()),
            DynArray::F64(_) => None,
        }
    }
}

impl Typed for f64 {
    fn slice(a: &DynArray) -> Option<&[f64]> {
        match a {
            DynArray::F64(x) => Some(x.data()),
            DynArray::F32(_) => None,
        }
    }
    fn slice_mut(a: &mut DynArray) -> Option<&mut [f64]> {
        match a {
            DynArray::F64(x) => Some(x.data_mut()),
            DynArray::F32(_) => None,
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

/// Runs `kernel` over the whole slices, or over chunks on rayon's threads when large.
fn run_in_chunks<T: Float>(
    p: &mut [T],
    g: &[T],
    bufs: Buffers<'_, [T]>,
    kernel: impl Fn(&mut [T], &[T], Buffers<'_, [T]>) + Sync,
) {
    if p.len() < PARALLEL_THRESHOLD || num_threads() < 2 {
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
    crate::parallel::install(|| {
        p.par_chunks_mut(CHUNK)
            .zip(g.par_chunks(CHUNK))
            .zip(a.into_par_iter())
            .zip(b.into_par_iter())
            .zip(c.into_par_iter())
            .for_each(|((((p, g), a), b), c)| kernel(p, g, [a, b, c]))
    });
}

// The kernels below run through `simd::run`, which compiles each loop for baseline x86-64
// and for AVX2/AVX-512, picking one at run time (the wheel is built for baseline x86-64).
// Options that are fixed for a whole step (weight decay on/off, momentum, Nesterov, first
// step, centering...) are const generics or separate loops, so every inner loop is
// branch-free and vectorises. Rust never fuses `a * b + c` into an FMA, so every
// instruction set gives bit-identical results.

fn sgd_typed<T: Typed>(
    o: &Sgd,
    first_step: bool,
    p: &mut DynArray,
    g: &DynArray,
    bufs: Buffers<'_, DynArray>,
) -> Result<()> {
    let (p, g, bufs) = typed_slices::<T>(p, g, bufs)?;
    let t = T::from_f64_lossy;
    let c = SgdConsts {
        lr: t(o.lr),
        wd: t(o.weight_decay),
        momentum: t(o.momentum),
        keep: t(1.0 - o.dampening),
    };
    let decays = o.weight_decay != 0.0;
    let nesterov = o.nesterov;
    run_in_chunks(p, g, bufs, move |p, g, [buf, _, _]| {
        // Expands to one `simd::run` per combination of the step's fixed options.
        macro_rules! go {
            ($decay:literal) => {
                simd::run(SgdPlain::<T, $decay> { c, p, g })
            };
            ($decay:literal, $first:literal, $nesterov:literal, $buf:expr) => {
                simd::run(SgdMomentum::<T, $decay, $first, $nesterov> { c, p, g, buf: $buf })
            };
        }
        match (buf, decays, first_step, nesterov) {
            (None, false, ..) => go!(false),
            (None, true, ..) => go!(true),
            (Some(b), false, false, false) => go!(false, false, false, b),
            (Some(b), false, false, true) => go!(false, false, true, b),
            (Some(b), false, true, false) => go!(false, true, false, b),
            (Some(b), false, true, true) => go!(false, true, true, b),
            (Some(b), true, false, false) => go!(true, false, false, b),
            (Some(b), true, false, true) => go!(true, false, true, b),
            (Some(b), true, true, false) => go!(true, true, false, b),
            (Some(b), true, true, true) => go!(true, true, true, b),
        }
    });
    Ok(())
}

/// SGD's per-element constants, copied into the kernel (register-resident, not loaded
/// through a closure's environment on every element, which blocks vectorisation).
#[derive(Clone, Copy)]
struct SgdConsts<T> {
    lr: T,
    wd: T,
    momentum: T,
    keep: T,
}

/// One chunk of an SGD step without momentum: `p ← p − lr·(g + wd·p)`.
struct SgdPlain<'a, T, const DECAY: bool> {
    c: SgdConsts<T>,
    p: &'a mut [T],
    g: &'a [T],
}

impl<T: Float, const DECAY: bool> Kernel for SgdPlain<'_, T, DECAY> {
    fn work(&self) -> usize {
        self.p.len()
    }

    #[inline(always)]
    fn run(self) {
        let SgdConsts { lr, wd, .. } = self.c;
        for (p, &g) in self.p.iter_mut().zip(self.g) {
            let d = if DECAY { g + wd * *p } else { g };
            *p = *p - lr * d;
        }
    }
}

/// One chunk of an SGD step with momentum; `FIRST` copies the gradient into the buffer
/// (PyTorch's first step), `NESTEROV` looks ahead along the new buffer.
struct SgdMomentum<'a, T, const DECAY: bool, const FIRST: bool, const NESTEROV: bool> {
    c: SgdConsts<T>,
    p: &'a mut [T],
    g: &'a [T],
    buf: &'a mut [T],
}

impl<T: Float, const DECAY: bool, const FIRST: bool, const NESTEROV: bool> Kernel
    for SgdMomentum<'_, T, DECAY, FIRST, NESTEROV>
{
    fn work(&self) -> usize {
        self.p.len()
    }

    #[inline(always)]
    fn run(self) {
        let SgdConsts {
            lr,
            wd,
            momentum,
            keep,
        } = self.c;
        for ((p, &g), b) in self.p.iter_mut().zip(self.g).zip(self.buf.iter_mut()) {
            let d = if DECAY { g + wd * *p } else { g };
            *b = if FIRST { d } else { momentum * *b + keep * d };
            let d = if NESTEROV { d + momentum * *b } else { *b };
            *p = *p - lr * d;
        }
    }
}

fn adam_typed<T: Typed>(
    o: &Adam,
    step: u64,
    p: &mut DynArray,
    g: &DynArray,
    bufs: Buffers<'_, DynArray>,
) -> Result<()> {
    let (p, g, bufs) = typed_slices::<T>(p, g, bufs)?;
    let t = T::from_f64_lossy;
    // The bias corrections in f64, as PyTorch computes them in Python floats.
    let bias_correction1 = 1.0 - o.beta1.powf(step as f64);
    let bias_correction2 = 1.0 - o.beta2.powf(step as f64);
    let c = AdamConsts {
        beta1: t(o.beta1),
        beta2: t(o.beta2),
        one_minus_beta1: t(1.0 - o.beta1),
        one_minus_beta2: t(1.0 - o.beta2),
        step_size: t(o.lr / bias_correction1),
        bias_correction2_sqrt: t(bias_correction2.sqrt()),
        eps: t(o.eps),
        l2: t(o.weight_decay),
        shrink: t(1.0 - o.lr * o.weight_decay),
    };
    let decays = o.weight_decay != 0.0;
    let decoupled = o.decoupled;
    run_in_chunks(p, g, bufs, move |p, g, [m, v, _]| {
        let (Some(m), Some(v)) = (m, v) else {
            return;
        };
        match (decays, decoupled) {
            (false, _) => simd::run(AdamChunk::<T, false, false> { c, p, g, m, v }),
            (true, false) => simd::run(AdamChunk::<T, true, false> { c, p, g, m, v }),
            (true, true) => simd::run(AdamChunk::<T, false, true> { c, p, g, m, v }),
        }
    });
    Ok(())
}

/// Adam's per-element constants (see [`SgdConsts`]).
#[derive(Clone, Copy)]
struct AdamConsts<T> {
    beta1: T,
    beta2: T,
    one_minus_beta1: T,
    one_minus_beta2: T,
    step_size: T,
    bias_correction2_sqrt: T,
    eps: T,
    l2: T,
    shrink: T,
}

/// One chunk of an Adam step: `L2` adds `l2·p` to the gradient (Adam's weight decay),
/// `SHRINK` scales the parameter by `1 − lr·wd` first (AdamW's).
struct AdamChunk<'a, T, const L2: bool, const SHRINK: bool> {
    c: AdamConsts<T>,
    p: &'a mut [T],
    g: &'a [T],
    m: &'a mut [T],
    v: &'a mut [T],
}

impl<T: Float, const L2: bool, const SHRINK: bool> Kernel for AdamChunk<'_, T, L2, SHRINK> {
    fn work(&self) -> usize {
        self.p.len()
    }

    #[inline(always)]
    fn run(self) {
        let AdamConsts {
            beta1,
            beta2,
            one_minus_beta1,
            one_minus_beta2,
            step_size,
            bias_correction2_sqrt,
            eps,
            l2,
            shrink,
        } = self.c;
        let zipped = self.p.iter_mut().zip(self.g);
        for (((p, &g), m), v) in zipped.zip(self.m.iter_mut()).zip(self.v.iter_mut()) {
            if SHRINK {
                *p = *p * shrink;
            }
            let g = if L2 { g + l2 * *p } else { g };
            *m = beta1 * *m + one_minus_beta1 * g;
            *v = beta2 * *v + one_minus_beta2 * g * g;
            let denom = v.sqrt() / bias_correction2_sqrt + eps;
            *p = *p - step_size * *m / denom;
        }
    }
}

fn rmsprop_typed<T: Typed>(
    o: &RmsProp,
    p: &mut DynArray,
    g: &DynArray,
    bufs: Buffers<'_, DynArray>,
) -> Result<()> {
    let (p, g, bufs) = typed_slices::<T>(p, g, bufs)?;
    let t = T::from_f64_lossy;
    let c = RmsConsts {
        lr: t(o.lr),
        alpha: t(o.alpha),
        one_minus_alpha: t(1.0 - o.alpha),
        eps: t(o.eps),
        wd: t(o.weight_decay),
        momentum: t(o.momentum),
    };
    let decays = o.weight_decay != 0.0;
    run_in_chunks(p, g, bufs, move |p, g, [sq, buf, avg]| {
        let Some(sq) = sq else {
            return;
        };
        if decays {
            simd::run(RmsChunk::<T, true> {
                c,
                p,
                g,
                sq,
                buf,
                avg,
            });
        } else {
            simd::run(RmsChunk::<T, false> {
                c,
                p,
                g,
                sq,
                buf,
                avg,
            });
        }
    });
    Ok(())
}

/// RMSprop's per-element constants (see [`SgdConsts`]).
#[derive(Clone, Copy)]
struct RmsConsts<T> {
    lr: T,
    alpha: T,
    one_minus_alpha: T,
    eps: T,
    wd: T,
    momentum: T,
}

/// One chunk of an RMSprop step; `buf` is the momentum buffer, `avg` the centered one.
struct RmsChunk<'a, T, const DECAY: bool> {
    c: RmsConsts<T>,
    p: &'a mut [T],
    g: &'a [T],
    sq: &'a mut [T],
    buf: Option<&'a mut [T]>,
    avg: Option<&'a mut [T]>,
}

impl<T: Float, const DECAY: bool> RmsChunk<'_, T, DECAY> {
    /// One element; inlined into loops where `buf` and `avg` are always `Some` or always
    /// `None`, so the matches below compile away.
    #[inline(always)]
    fn element(
        c: RmsConsts<T>,
        p: &mut T,
        g: T,
        sq: &mut T,
        buf: Option<&mut T>,
        avg: Option<&mut T>,
    ) {
        let RmsConsts {
            lr,
            alpha,
            one_minus_alpha,
            eps,
            wd,
            momentum,
        } = c;
        let g = if DECAY { g + wd * *p } else { g };
        *sq = alpha * *sq + one_minus_alpha * g * g;
        let denom = match avg {
            Some(avg) => {
                *avg = alpha * *avg + one_minus_alpha * g;
                (*sq - *avg * *avg).sqrt() + eps
            }
            None => sq.sqrt() + eps,
        };
        match buf {
            Some(buf) => {
                *buf = momentum * *buf + g / denom;
                *p = *p - lr * *buf;
            }
            None => *p = *p - lr * g / denom,
        }
    }
}

impl<T: Float, const DECAY: bool> Kernel for RmsChunk<'_, T, DECAY> {
    fn work(&self) -> usize {
        self.p.len()
    }

    #[inline(always)]
    fn run(self) {
        let Self {
            c,
            p,
            g,
            sq,
            buf,
            avg,
        } = self;
        let f = Self::element;
        let pgs = p.iter_mut().zip(g).zip(sq.iter_mut());
        match (buf, avg) {
            (None, None) => {
                for ((p, &g), sq) in pgs {
                    f(c, p, g, sq, None, None);
                }
            }
            (Some(buf), None) => {
                for (((p, &g), sq), b) in pgs.zip(buf.iter_mut()) {
                    f(c, p, g, sq, Some(b), None);
                }
            }
            (None, Some(avg)) => {
                for (((p, &g), sq), a) in pgs.zip(avg.iter_mut()) {
                    f(c, p, g, sq, None, Some(a));
                }
            }
            (Some(buf), Some(avg)) => {
                for ((((p, &g), sq), b), a) in pgs.zip(buf.iter_mut()).zip(avg.iter_mut()) {
                    f(c, p, g, sq, Some(b), Some(a));
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tensor(values: &[f64], dtype: DType) -> Tensor {
        Tensor::new(
            DynArray::from_f64(values.to_vec(), &[values.len()], dtype).unwrap(),
            true,
        )
    }

    fn zeros_like(p: &Tensor) -> Tensor {
        Tensor::zeros(&p.shape(), p.dtype(), false).unwrap()
    }

    fn with_grad(p: &Tensor, grad: &[f64]) {
        p.set_grad(Some(
            DynArray::from_f64(grad.to_vec(), &p.shape(), p.dtype()).unwrap(),
        ))
        .unwrap();
    }

    fn values(t: &Tensor) -> Vec<f64> {
        t.array().to_f64_vec()
    }

    fn assert_close(got: &[f64], want: &[f64], tol: f64) {
        assert_eq!(got.len(), want.len());
        for (i, (g, w)) in got.iter().zip(want).enumerate() {
            assert!(
                (g - w).abs() <= tol * (1.0 + w.abs()),
                "element {i}: got {g}, want {w} (all: {got:?} vs {want:?})"
            );
        }
    }

    const GRADS: [[f64; 2]; 3] = [[0.5, -1.0], [0.25, 2.0], [-1.0, 0.5]];

    fn tolerance(dtype: DType) -> f64 {
        match dtype {
            DType::F32 => 1e-6,
            DType::F64 => 1e-14,
        }
    }

    #[test]
    fn sgd_with_momentum_dampening_and_weight_decay_matches_hand_computed_steps() {
        // p = 1, g = 0.5, wd = 0.1, momentum = 0.9, dampening = 0.5, lr = 0.1 (first element):
        // step 1: d = 0.6, buf = 0.6, p = 1 - 0.06 = 0.94
        // step 2: d = 0.25 + 0.094 = 0.344, buf = 0.54 + 0.172 = 0.712, p = 0.94 - 0.0712 = 0.8688
        // step 3: d = -1 + 0.08688 = -0.91312, buf = 0.6408 - 0.45656 = 0.18424,
        //         p = 0.8688 - 0.018424 = 0.850376
        let options = Sgd {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.5,
            weight_decay: 0.1,
            nesterov: false,
        };
        for dtype in [DType::F64, DType::F32] {
            let p = tensor(&[1.0, 2.0], dtype);
            let buf = zeros_like(&p);
            let mut firsts = Vec::new();
            for (i, g) in GRADS.iter().enumerate() {
                with_grad(&p, g);
                sgd_step(&p, Some(&buf), &options, i == 0).unwrap();
                firsts.push(values(&p)[0]);
            }
            assert_close(&firsts, &[0.94, 0.8688, 0.850376], tolerance(dtype));
            assert_close(&[values(&buf)[0]], &[0.18424], tolerance(dtype));
        }
    }

    #[test]
    fn sgd_nesterov_and_plain_sgd_match_hand_computed_steps() {
        // Nesterov, momentum 0.5, lr 0.1, p = 1: g = 0.5 → buf 0.5, d = 0.75, p = 0.925;
        // g = 0.25 → buf 0.5, d = 0.5, p = 0.875; g = -1 → buf -0.75, d = -1.375, p = 1.0125.
        let nesterov = Sgd {
            lr: 0.1,
            momentum: 0.5,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: true,
        };
        let plain = Sgd {
            momentum: 0.0,
            nesterov: false,
            ..nesterov
        };
        for dtype in [DType::F64, DType::F32] {
            let p = tensor(&[1.0, 2.0], dtype);
            let q = tensor(&[1.0, 2.0], dtype);
            let buf = zeros_like(&p);
            let mut ps = Vec::new();
            for (i, g) in GRADS.iter().enumerate() {
                with_grad(&p, g);
                with_grad(&q, g);
                sgd_step(&p, Some(&buf), &nesterov, i == 0).unwrap();
                sgd_step(&q, None, &plain, false).unwrap();
                ps.push(values(&p)[0]);
            }
            assert_close(&ps, &[0.925, 0.875, 1.0125], tolerance(dtype));
            // Plain SGD: p − lr·Σg = 1 − 0.1·(−0.25), 2 − 0.1·1.5.
            assert_close(&values(&q), &[1.025, 1.85], tolerance(dtype));
        }
    }

    /// Adam in f64 scalars, straight from the formula in torch.optim's documentation.
    fn adam_reference(o: &Adam, p0: f64, grads: &[f64]) -> Vec<f64> {
        let (mut p, mut m, mut v) = (p0, 0.0, 0.0);
        let mut out = Vec::new();
        for (i, &g) in grads.iter().enumerate() {
            let t = (i + 1) as i32;
            let mut g = g;
            if o.decoupled {
                p *= 1.0 - o.lr * o.weight_decay;
            } else {
                g += o.weight_decay * p;
            }
            m = o.beta1 * m + (1.0 - o.beta1) * g;
            v = o.beta2 * v + (1.0 - o.beta2) * g * g;
            let m_hat = m / (1.0 - o.beta1.powi(t));
            let v_hat = v / (1.0 - o.beta2.powi(t));
            p -= o.lr * m_hat / (v_hat.sqrt() + o.eps);
            out.push(p);
        }
        out
    }

    #[test]
    fn adam_and_adamw_match_the_documented_formula_for_three_steps() {
        for decoupled in [false, true] {
            let options = Adam {
                lr: 0.01,
                beta1: 0.8,
                beta2: 0.9,
                eps: 1e-8,
                weight_decay: 0.1,
                decoupled,
            };
            for dtype in [DType::F64, DType::F32] {
                let p = tensor(&[1.0, 2.0], dtype);
                let (m, v) = (zeros_like(&p), zeros_like(&p));
                let mut trajectory = [Vec::new(), Vec::new()];
                for (i, g) in GRADS.iter().enumerate() {
                    with_grad(&p, g);
                    adam_step(&p, &m, &v, i as u64 + 1, &options).unwrap();
                    for (k, x) in values(&p).into_iter().enumerate() {
                        trajectory[k].push(x);
                    }
                }
                for (k, p0) in [1.0, 2.0].into_iter().enumerate() {
                    let grads: Vec<f64> = GRADS.iter().map(|g| g[k]).collect();
                    let want = adam_reference(&options, p0, &grads);
                    assert_close(&trajectory[k], &want, tolerance(dtype));
                }
            }
        }
    }

    #[test]
    fn adam_first_step_moves_each_element_by_lr_against_its_gradient_sign() {
        // With m̂ = g and v̂ = g² the first step is lr·g/(|g| + eps) ≈ lr·sign(g).
        let options = Adam {
            lr: 0.5,
            beta1: 0.9,
            beta2: 0.999,
            eps: 0.0,
            weight_decay: 0.0,
            decoupled: false,
        };
        let p = tensor(&[1.0, 2.0], DType::F64);
        let (m, v) = (zeros_like(&p), zeros_like(&p));
        with_grad(&p, &[3.0, -0.01]);
        adam_step(&p, &m, &v, 1, &options).unwrap();
        assert_close(&values(&p), &[0.5, 2.5], 1e-12);
    }

    /// RMSprop in f64 scalars, following torch.optim.RMSprop's documented algorithm.
    fn rmsprop_reference(o: &RmsProp, p0: f64, grads: &[f64]) -> Vec<f64> {
        let (mut p, mut sq, mut buf, mut avg) = (p0, 0.0, 0.0, 0.0);
        let mut out = Vec::new();
        for &g in grads {
            let g = g + o.weight_decay * p;
            sq = o.alpha * sq + (1.0 - o.alpha) * g * g;
            let mut denom = sq;
            if o.centered {
                avg = o.alpha * avg + (1.0 - o.alpha) * g;
                denom -= avg * avg;
            }
            let denom = denom.sqrt() + o.eps;
            if o.momentum > 0.0 {
                buf = o.momentum * buf + g / denom;
                p -= o.lr * buf;
            } else {
                p -= o.lr * g / denom;
            }
            out.push(p);
        }
        out
    }

    #[test]
    fn rmsprop_plain_centered_and_with_momentum_match_the_documented_formula() {
        let base = RmsProp {
            lr: 0.01,
            alpha: 0.9,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: false,
        };
        let combos = [
            base,
            RmsProp {
                weight_decay: 0.1,
                momentum: 0.5,
                ..base
            },
            RmsProp {
                centered: true,
                ..base
            },
            RmsProp {
                centered: true,
                momentum: 0.9,
                weight_decay: 0.01,
                ..base
            },
        ];
        for options in combos {
            for dtype in [DType::F64, DType::F32] {
                let p = tensor(&[1.0, 2.0], dtype);
                let sq = zeros_like(&p);
                let buf = zeros_like(&p);
                let avg = zeros_like(&p);
                let mut trajectory = [Vec::new(), Vec::new()];
                for g in &GRADS {
                    with_grad(&p, g);
                    rmsprop_step(&p, &sq, Some(&buf), Some(&avg), &options).unwrap();
                    for (k, x) in values(&p).into_iter().enumerate() {
                        trajectory[k].push(x);
                    }
                }
                for (k, p0) in [1.0, 2.0].into_iter().enumerate() {
                    let grads: Vec<f64> = GRADS.iter().map(|g| g[k]).collect();
                    let want = rmsprop_reference(&options, p0, &grads);
                    // Centered RMSprop divides by √(v − ḡ²), which cancels digits in f32.
                    let tol = if options.centered && dtype == DType::F32 {
                        1e-5
                    } else {
                        tolerance(dtype)
                    };
                    assert_close(&trajectory[k], &want, tol);
                }
            }
        }
    }

    #[test]
    fn large_parameters_update_in_parallel_exactly_like_small_ones() {
        let n = PARALLEL_THRESHOLD * 3 + 17;
        let init: Vec<f64> = (0..n).map(|i| (i % 101) as f64 / 50.0 - 1.0).collect();
        let grad: Vec<f64> = (0..n).map(|i| ((i * 7) % 13) as f64 / 6.0 - 1.0).collect();
        let options = Adam {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: 0.01,
            decoupled: true,
        };
        let big = tensor(&init, DType::F32);
        let (m, v) = (zeros_like(&big), zeros_like(&big));
        with_grad(&big, &grad);
        adam_step(&big, &m, &v, 1, &options).unwrap();
        let got = values(&big);
        for i in [0, 1, CHUNK - 1, CHUNK, n / 2, n - 1] {
            let small = tensor(&init[i..=i], DType::F32);
            let (m, v) = (zeros_like(&small), zeros_like(&small));
            with_grad(&small, &grad[i..=i]);
            adam_step(&small, &m, &v, 1, &options).unwrap();
            assert_eq!(got[i], values(&small)[0], "element {i}");
        }
    }

    /// A step of some optimizer: parameter, its three zeroed state buffers, step index.
    type StepFn = Box<dyn Fn(&Tensor, &[Tensor; 3], usize)>;

    /// Every option combination of every optimizer, as steps.
    fn every_step_variant() -> Vec<(String, StepFn)> {
        let mut cases: Vec<(String, StepFn)> = Vec::new();
        for (momentum, wd, nesterov) in [0.0, 0.9]
            .into_iter()
            .flat_map(|m| [0.0, 0.1].map(|wd| (m, wd)))
            .flat_map(|(m, wd)| [false, true].map(|n| (m, wd, n)))
            .filter(|&(m, _, n)| m != 0.0 || !n)
        {
            let o = Sgd {
                lr: 0.1,
                momentum,
                dampening: if nesterov { 0.0 } else { 0.3 },
                weight_decay: wd,
                nesterov,
            };
            let step: StepFn = Box::new(move |p, b, i| {
                let buf = (momentum != 0.0).then_some(&b[0]);
                sgd_step(p, buf, &o, i == 0).unwrap();
            });
            cases.push((format!("{o:?}"), step));
        }
        for (wd, decoupled) in [(0.0, false), (0.1, false), (0.1, true)] {
            let o = Adam {
                lr: 0.1,
                beta1: 0.9,
                beta2: 0.99,
                eps: 1e-8,
                weight_decay: wd,
                decoupled,
            };
            let step: StepFn = Box::new(move |p, b, i| {
                adam_step(p, &b[0], &b[1], i as u64 + 1, &o).unwrap();
            });
            cases.push((format!("{o:?}"), step));
        }
        for bits in 0..8 {
            let o = RmsProp {
                lr: 0.01,
                alpha: 0.9,
                eps: 1e-8,
                weight_decay: if bits & 1 != 0 { 0.1 } else { 0.0 },
                momentum: if bits & 2 != 0 { 0.5 } else { 0.0 },
                centered: bits & 4 != 0,
            };
            let step: StepFn = Box::new(move |p, b, _| {
                let buf = (o.momentum > 0.0).then_some(&b[1]);
                let avg = o.centered.then_some(&b[2]);
                rmsprop_step(p, &b[0], buf, avg, &o).unwrap();
            });
            cases.push((format!("{o:?}"), step));
        }
        cases
    }

    /// Three steps from `init`; the bits of the parameter and buffers after each.
    fn trajectory(step: &StepFn, init: &[f64], grads: &[Vec<f64>], dtype: DType) -> Vec<u64> {
        let p = tensor(init, dtype);
        let bufs = [zeros_like(&p), zeros_like(&p), zeros_like(&p)];
        let mut out = Vec::new();
        for (i, g) in grads.iter().enumerate() {
            with_grad(&p, g);
            step(&p, &bufs, i);
            for t in std::iter::once(&p).chain(&bufs) {
                out.extend(values(t).iter().map(|x| x.to_bits()));
            }
        }
        out
    }

    #[test]
    fn every_option_combination_gives_the_same_bits_vectorised_as_one_element_at_a_time() {
        // Below 64 elements the baseline loop runs; above, the CPU's widest one (and in
        // parallel above PARALLEL_THRESHOLD). All must agree bit for bit.
        for n in [200, PARALLEL_THRESHOLD + 100] {
            let init: Vec<f64> = (0..n).map(|i| (i % 101) as f64 / 50.0 - 1.0).collect();
            let grads: Vec<Vec<f64>> = (0..3)
                .map(|k| {
                    (0..n)
                        .map(|i| ((i * 7 + k * 3) % 13) as f64 / 6.0 - 1.0)
                        .collect()
                })
                .collect();
            for (name, step) in every_step_variant() {
                for dtype in [DType::F32, DType::F64] {
                    let all = trajectory(&step, &init, &grads, dtype);
                    for i in [0, 1, 63, 64, 65, n - 1] {
                        let one: Vec<Vec<f64>> = grads.iter().map(|g| vec![g[i]]).collect();
                        let want = trajectory(&step, &init[i..=i], &one, dtype);
                        let got: Vec<u64> = (0..want.len()).map(|j| all[j * n + i]).collect();
                        assert_eq!(got, want, "{name}, {dtype:?}, n {n}, element {i}");
                    }
                }
            }
        }
    }

    #[test]
    fn a_step_without_a_gradient_is_a_graph_error() {
        let p = tensor(&[1.0], DType::F32);
        let sgd = Sgd {
            lr: 0.1,
            momentum: 0.0,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        };
        assert!(matches!(
            sgd_step(&p, None, &sgd, true),
            Err(Error::Graph(_))
        ));
    }

    #[test]
    fn mismatched_or_aliased_buffers_are_rejected_before_anything_changes() {
        let options = Adam {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.999,
            eps: 1e-8,
            weight_decay: 0.0,
            decoupled: false,
        };
        let p = tensor(&[1.0, 2.0], DType::F32);
        with_grad(&p, &[1.0, 1.0]);
        let wrong_shape = tensor(&[0.0, 0.0, 0.0], DType::F32);
        let wrong_dtype = tensor(&[0.0, 0.0], DType::F64);
        let good = zeros_like(&p);
        for bad in [&wrong_shape, &wrong_dtype] {
            let err = adam_step(&p, &good, bad, 1, &options).unwrap_err();
            assert!(matches!(err, Error::Shape(_)), "{err:?}");
        }
        let err = adam_step(&p, &good, &good.detach(), 1, &options).unwrap_err();
        assert!(
            matches!(err, Error::Value(ref m) if m.contains("share memory")),
            "{err:?}"
        );
        let grad_view = Tensor::from_storage(p.grad().unwrap(), false);
        assert!(adam_step(&p, &good, &grad_view, 1, &options).is_err());
        assert!(adam_step(&p, &p.detach(), &good, 1, &options).is_err());
        assert!(adam_step(&p, &good, &zeros_like(&p), 0, &options).is_err());
        assert_eq!(values(&p), vec![1.0, 2.0]);
        assert_eq!(values(&good), vec![0.0, 0.0]);
    }

    #[test]
    fn missing_buffers_that_the_options_need_are_value_errors() {
        let p = tensor(&[1.0], DType::F64);
        with_grad(&p, &[1.0]);
        let sgd = Sgd {
            lr: 0.1,
            momentum: 0.9,
            dampening: 0.0,
            weight_decay: 0.0,
            nesterov: false,
        };
        assert!(matches!(
            sgd_step(&p, None, &sgd, true),
            Err(Error::Value(_))
        ));
        let rms = RmsProp {
            lr: 0.1,
            alpha: 0.99,
            eps: 1e-8,
            weight_decay: 0.0,
            momentum: 0.0,
            centered: true,
        };
        let sq = zeros_like(&p);
        assert!(matches!(
            rmsprop_step(&p, &sq, None, None, &rms),
            Err(Error::Value(_))
        ));
    }
}
