//! The row kernels of the fused cross-entropy: per-row loss and log-sum-exp forward, and
//! `(softmax − q)·g` backward. They know nothing of gradients or tensors.
//!
//! Rows are short (a class count: 10 for digits, 65 for characters), so a loop over one row
//! barely vectorises. Each kernel instead writes the shifted logits of all its rows into one
//! flat buffer, exponentiates that buffer in a single vectorised pass (`vexp`, no libm call),
//! and then finishes each row.

use crate::ndarray::elementwise::simd::Kernel;
use crate::ndarray::Float;

/// The largest element of `row`, or 0 where it is not finite: an all −inf row would give
/// −inf − −inf = NaN, so it is shifted by 0 instead.
#[inline(always)]
fn row_shift<T: Float>(row: &[T]) -> T {
    let m = row.iter().fold(T::neg_infinity(), |m, &v| m.max(v));
    if m.is_finite() {
        m
    } else {
        T::zero()
    }
}

#[inline(always)]
fn exp_in_place<T: Float>(xs: &mut [T]) {
    for x in xs {
        *x = x.vexp();
    }
}

/// Forward over `out.len()` rows of `c` logits: each row's `(loss, ln Σ exp(x − m))` with
/// the label-smoothing weight `eps`. The loss is written `ln_s + (1 − eps)(m − x_t)
/// + eps/c · Σ (m − x)`, so huge logits lose no precision.
pub(super) struct ForwardRows<'a, T> {
    pub x: &'a [T],
    pub c: usize,
    pub targets: &'a [usize],
    pub eps: T,
    pub out: &'a mut [(T, T)],
}

impl<T: Float> Kernel for ForwardRows<'_, T> {
    fn work(&self) -> usize {
        self.x.len()
    }

    #[inline(always)]
    fn run(self) {
        let Self {
            x,
            c,
            targets,
            eps,
            out,
        } = self;
        let mut e: Vec<T> = x.to_vec();
        let mut shifts = Vec::with_capacity(out.len());
        for row in e.chunks_exact_mut(c) {
            let m = row_shift(row);
            row.iter_mut().for_each(|v| *v = *v - m);
            shifts.push(m);
        }
        exp_in_place(&mut e);
        let rows = x.chunks_exact(c).zip(e.chunks_exact(c));
        for (((row, exps), &m), (out, &t)) in rows.zip(&shifts).zip(out.iter_mut().zip(targets)) {
            let ln_s = exps.iter().fold(T::zero(), |s, &v| s + v).ln();
            let mut loss = ln_s + (T::one() - eps) * (m - row[t]);
            if eps > T::zero() {
                let classes = T::from_usize(c).unwrap_or_else(T::one);
                let spread = row.iter().fold(T::zero(), |s, &v| s + (m - v));
                loss = loss + eps / classes * spread;
            }
            // The log-sum of the *shifted* row is saved: `m + ln_s` would round away the low
            // bits of `ln_s` when |m| is large (float32 at 1e4 keeps ~3 decimals), and the
            // backward would then compute softmax probabilities off by ~1e-4.
            *out = (loss, ln_s);
        }
    }
}

/// Backward over the rows of `dx` (row length `c`): `dx = (exp((x − m) − ln_s) − q) · g`,
/// the softmax rebuilt from the forward's `ln_s` (the shift `m` recomputed), `q` the
/// smoothed one-hot target: `on` at the target class, `off` elsewhere.
pub(super) struct BackwardRows<'a, T> {
    pub x: &'a [T],
    pub c: usize,
    pub g: &'a [T],
    pub ln_s: &'a [T],
    pub targets: &'a [usize],
    pub on: T,
    pub off: T,
    pub dx: &'a mut [T],
}

impl<T: Float> Kernel for BackwardRows<'_, T> {
    fn work(&self) -> usize {
        self.dx.len()
    }

    #[inline(always)]
    fn run(self) {
        let Self {
            x,
            c,
            g,
            ln_s,
            targets,
            on,
            off,
            dx,
        } = self;
        for ((d, row), &s) in dx.chunks_exact_mut(c).zip(x.chunks_exact(c)).zip(ln_s) {
            let m = row_shift(row);
            d.iter_mut().zip(row).for_each(|(d, &v)| *d = (v - m) - s);
        }
        exp_in_place(dx);
        let rows = dx.chunks_exact_mut(c).zip(g).zip(targets);
        for ((d, &gi), &t) in rows {
            for (j, d) in d.iter_mut().enumerate() {
                let q = if j == t { on } else { off };
                *d = (*d - q) * gi;
            }
        }
    }
}
