//! The optimizer kernels: one pass over a parameter, its gradient and state buffers,
//! vectorised for the CPU found at run time.

use super::{run_in_chunks, typed_slices, Adam, Buffers, RmsProp, Sgd, Typed};
use crate::dynarray::DynArray;
use crate::ndarray::elementwise::simd::{self, Kernel};
use crate::ndarray::Float;
use crate::Result;

// The kernels below run through `simd::run`, which compiles each loop for baseline x86-64
// and for AVX2/AVX-512, picking one at run time (the wheel is built for baseline x86-64).
// Options that are fixed for a whole step (weight decay on/off, momentum, Nesterov, first
// step, centering...) are const generics or separate loops, so every inner loop is
// branch-free and vectorises. Rust never fuses `a * b + c` into an FMA, so every
// instruction set gives bit-identical results.

/// `x`, or 0 where it is subnormal. A state that decays geometrically while its gradient is
/// 0 (Adam's moments, SGD's momentum buffer, RMSprop's averages and buffer at a dead ReLU unit) sinks below the smallest
/// normal float after several hundred steps, and arithmetic on subnormals is slow: the
/// digits MLP's Adam step took ~5 µs longer from its ~650th step on, with 1.2K of its 17K
/// first moments subnormal. What the flush changes is far below one rounding step of any
/// parameter that is not itself subnormal: Adam's update from a moment under 1.2e-38 is at
/// most lr · 1.2e-38 / eps, ~1e-33 at the defaults (PyTorch keeps the subnormals).
#[inline(always)]
fn flush_subnormal<T: Float>(x: T) -> T {
    if x.abs() < T::min_positive_value() {
        T::zero()
    } else {
        x
    }
}

pub(super) fn sgd_typed<T: Typed>(
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
            // The new buffer value is used from its register (see `AdamChunk::run`).
            let buf = flush_subnormal(if FIRST { d } else { momentum * *b + keep * d });
            *b = buf;
            let d = if NESTEROV { d + momentum * buf } else { buf };
            *p = *p - lr * d;
        }
    }
}

pub(super) fn adam_typed<T: Typed>(
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
        // A product, not a quotient, in the inner loop: the loop is bound by its vector square
        // root and divisions (the digits MLP's 17K parameters: 13.1 -> 11.3 µs per step).
        inv_bias_correction2_sqrt: t(1.0 / bias_correction2.sqrt()),
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
    inv_bias_correction2_sqrt: T,
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
            inv_bias_correction2_sqrt,
            eps,
            l2,
            shrink,
        } = self.c;
        let zipped = self.p.iter_mut().zip(self.g);
        for (((p, &g), m), v) in zipped.zip(self.m.iter_mut()).zip(self.v.iter_mut()) {
            // New values are used from registers, never read back from the stores just
            // made: LLVM otherwise reloads `m` for the update, and where `m` is not 32-byte
            // aligned (glibc's blocks are 16-byte aligned) the reload cannot be forwarded
            // from the split store and waits for it. The digits MLP's 17K parameters took
            // 14.5 µs per step with `m` at 16 mod 32 and 5.6 µs at 0 mod 32. Likewise
            // AdamW's shrunk parameter is stored once, with the update.
            let p_old = if SHRINK { *p * shrink } else { *p };
            let g = if L2 { g + l2 * p_old } else { g };
            let m_new = flush_subnormal(beta1 * *m + one_minus_beta1 * g);
            let v_new = flush_subnormal(beta2 * *v + one_minus_beta2 * g * g);
            *m = m_new;
            *v = v_new;
            let denom = v_new.sqrt() * inv_bias_correction2_sqrt + eps;
            *p = p_old - step_size * m_new / denom;
        }
    }
}

pub(super) fn rmsprop_typed<T: Typed>(
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
        macro_rules! go {
            ($decay:literal) => {
                simd::run(RmsChunk::<T, $decay> {
                    c,
                    p,
                    g,
                    sq,
                    buf,
                    avg,
                })
            };
        }
        if decays {
            go!(true)
        } else {
            go!(false)
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
        // New state values are used from registers (see `AdamChunk::run`).
        let sq_new = flush_subnormal(alpha * *sq + one_minus_alpha * g * g);
        *sq = sq_new;
        let denom = match avg {
            Some(avg) => {
                let avg_new = flush_subnormal(alpha * *avg + one_minus_alpha * g);
                *avg = avg_new;
                (sq_new - avg_new * avg_new).sqrt() + eps
            }
            None => sq_new.sqrt() + eps,
        };
        match buf {
            Some(buf) => {
                let buf_new = flush_subnormal(momentum * *buf + g / denom);
                *buf = buf_new;
                *p = *p - lr * buf_new;
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
