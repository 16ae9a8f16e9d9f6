//! The elementwise work on one block of attention scores — the masks, the stable softmax, its
//! rebuild from the row statistics, dropout and the softmax gradient — compiled per instruction
//! set through `simd::run`, so that the exponentials and the row reductions vectorise.

use super::Dropout;
use crate::ndarray::elementwise::simd::Kernel;
use crate::ndarray::Float;
use crate::{value_err, Result};

/// Independent accumulators of the row reductions (max, sum), which the compiler keeps in
/// vector registers (one AVX-512 register of f32).
const LANES: usize = 16;

/// The mask of one block of rows as the kernels read it; `r` is a row of the block.
#[derive(Clone, Copy)]
pub(super) enum BlockMask<'a, T> {
    None,
    /// Row `r` (query `i0 + r`) sees the columns `j <= i0 + r`.
    Causal {
        i0: usize,
    },
    /// `data[start + r·rs + j·cs]` is true where the position takes part.
    Keep {
        data: &'a [bool],
        start: usize,
        rs: usize,
        cs: usize,
    },
    /// `data[start + r·rs + j·cs]` is added to the score.
    Add {
        data: &'a [T],
        start: usize,
        rs: usize,
        cs: usize,
    },
}

/// The keep test and scale of dropout.
#[derive(Clone, Copy, Debug)]
pub(super) struct DropMask {
    seed: u64,
    /// A weight is kept when its 53-bit draw is below this.
    threshold: u64,
    /// `1/(1-p)`, or 0 when `p = 1`.
    pub(super) scale: f64,
}

impl DropMask {
    /// The mask of `d`, `None` without dropout (`p = 0`); `p` outside `[0, 1]` is an error.
    pub(super) fn new(d: Option<Dropout>) -> Result<Option<Self>> {
        let Some(d) = d else { return Ok(None) };
        if !(0.0..=1.0).contains(&d.p) {
            return Err(value_err!(
                "scaled_dot_product_attention: dropout_p must be between 0 and 1, got {}",
                d.p
            ));
        }
        if d.p == 0.0 {
            return Ok(None);
        }
        let keep = 1.0 - d.p;
        Ok(Some(Self {
            seed: d.seed,
            threshold: (keep * (1u64 << 53) as f64) as u64,
            // p = 1 keeps nothing: every weight is 0, not 0·inf.
            scale: if keep > 0.0 { 1.0 / keep } else { 0.0 },
        }))
    }

    /// The factor (0 or `scale`) of the weight at flat position `at` of `(batch, L, S)`:
    /// SplitMix64's output for counter `at`, so any order of evaluation gives the same mask.
    #[inline(always)]
    pub(super) fn factor<T: Float>(&self, at: u64, scale: T) -> T {
        let mut z = self
            .seed
            .wrapping_add(at.wrapping_add(1).wrapping_mul(0x9E37_79B9_7F4A_7C15));
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^= z >> 31;
        if (z >> 11) < self.threshold {
            scale
        } else {
            T::zero()
        }
    }
}

/// Dropout of one block: the weight at row `r`, column `j` has counter `start + r·rs + j`.
#[derive(Clone, Copy)]
pub(super) struct BlockDrop<T> {
    pub(super) mask: DropMask,
    pub(super) start: u64,
    pub(super) rs: u64,
    pub(super) scale: T,
}

impl<T: Float> BlockDrop<T> {
    #[inline(always)]
    fn factor(&self, r: usize, j: usize) -> T {
        self.mask
            .factor(self.start + r as u64 * self.rs + j as u64, self.scale)
    }
}

impl<T> BlockMask<'_, T> {
    /// How many leading columns of row `r` (of `c`) may take part: under the causal mask
    /// the columns `j <= i0 + r`; the rest are never computed (their weights are 0).
    #[inline(always)]
    fn visible(&self, r: usize, c: usize) -> usize {
        match *self {
            BlockMask::Causal { i0 } => (i0 + r + 1).min(c),
            _ => c,
        }
    }
}

/// Masks the visible part of row `r` (the causal mask is applied by `visible`).
#[inline(always)]
fn apply_mask<T: Float>(row: &mut [T], r: usize, mask: &BlockMask<'_, T>) {
    let neg = T::neg_infinity();
    let n = row.len();
    match *mask {
        BlockMask::None | BlockMask::Causal { .. } => {}
        BlockMask::Keep {
            data,
            start,
            rs,
            cs,
        } => {
            let s = start + r * rs;
            if cs == 1 {
                for (x, &k) in row.iter_mut().zip(&data[s..s + n]) {
                    *x = if k { *x } else { neg };
                }
            } else {
                for (j, x) in row.iter_mut().enumerate() {
                    *x = if data[s + j * cs] { *x } else { neg };
                }
            }
        }
        BlockMask::Add {
            data,
            start,
            rs,
            cs,
        } => {
            let s = start + r * rs;
            if cs == 1 {
                for (x, &a) in row.iter_mut().zip(&data[s..s + n]) {
                    *x = *x + a;
                }
            } else {
                for (j, x) in row.iter_mut().enumerate() {
                    *x = *x + data[s + j * cs];
                }
            }
        }
    }
}

/// The largest element (NaN ignored, as `f32::max` does); -inf for an empty row.
#[inline(always)]
fn row_max<T: Float>(row: &[T]) -> T {
    let bigger = |a: T, x: T| if x > a { x } else { a };
    let mut acc = [T::neg_infinity(); LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks
        .remainder()
        .iter()
        .fold(T::neg_infinity(), |a, &x| bigger(a, x));
    for ch in chunks {
        for (a, &x) in acc.iter_mut().zip(ch) {
            *a = bigger(*a, x);
        }
    }
    bigger(rest, fold_lanes(acc, bigger))
}

/// `acc` folded by halves (8 pairs, then 4, 2, 1): a few vector steps, where folding the
/// lanes one after another is a chain of 16 dependent scalar operations per row.
#[inline(always)]
fn fold_lanes<T: Copy>(mut acc: [T; LANES], f: impl Fn(T, T) -> T) -> T {
    let mut w = LANES / 2;
    while w > 0 {
        for i in 0..w {
            acc[i] = f(acc[i], acc[i + w]);
        }
        w /= 2;
    }
    acc[0]
}

/// `Σ a_j·b_j`, in the lanes [`row_sum`] uses (a vector loop, where one running sum is a
/// chain of dependent additions).
#[inline(always)]
fn row_dot<T: Float>(a: &[T], b: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let (ca, cb) = (a.chunks_exact(LANES), b.chunks_exact(LANES));
    let rest = (ca.remainder().iter().zip(cb.remainder())).fold(T::zero(), |s, (&x, &y)| s + x * y);
    for (x, y) in ca.zip(cb) {
        for ((s, &x), &y) in acc.iter_mut().zip(x).zip(y) {
            *s = *s + x * y;
        }
    }
    rest + fold_lanes(acc, |a, x| a + x)
}

#[inline(always)]
fn row_sum<T: Float>(row: &[T]) -> T {
    let mut acc = [T::zero(); LANES];
    let chunks = row.chunks_exact(LANES);
    let rest = chunks.remainder().iter().fold(T::zero(), |a, &x| a + x);
    for ch in chunks {
        for (a, &x) in acc.iter_mut().zip(ch) {
            *a = *a + x;
        }
    }
    rest + fold_lanes(acc, |a, x| a + x)
}

/// Softmax of one row in place, stable (the row maximum subtracted); returns the maximum and
/// the reciprocal of the sum of exponentials, from which backward rebuilds the row. A row whose
/// every score is -inf (every position masked) becomes 0 with statistics (0, 0), as PyTorch's
/// "safe" softmax has it since 2.5; a NaN score still makes its row NaN.
#[inline(always)]
fn softmax_row<T: Float>(row: &mut [T]) -> (T, T) {
    let m = row_max(row);
    if m == T::neg_infinity() && row.iter().all(|&x| x == m) {
        row.fill(T::zero());
        return (T::zero(), T::zero());
    }
    for x in row.iter_mut() {
        *x = (*x - m).vexp();
    }
    let inv = T::one() / row_sum(row);
    for x in row.iter_mut() {
        *x = *x * inv;
    }
    (m, inv)
}

/// Forward: masks the scores of a block (rows of length `c`), turns each row into its softmax,
/// writing its statistics `(max, 1/sum)` and, unless `saved` is empty, a copy of it into
/// `saved` (row stride `saved_rs`), and applies dropout.
pub(super) struct ForwardRows<'s, T> {
    pub(super) p: &'s mut [T],
    pub(super) c: usize,
    pub(super) mask: BlockMask<'s, T>,
    pub(super) stats: &'s mut [T],
    pub(super) saved: &'s mut [T],
    pub(super) saved_rs: usize,
    pub(super) drop: Option<BlockDrop<T>>,
}

impl<T: Float> Kernel for ForwardRows<'_, T> {
    fn work(&self) -> usize {
        self.p.len()
    }

    #[inline(always)]
    fn run(self) {
        let rows = self.p.chunks_exact_mut(self.c);
        for (r, (row, st)) in rows.zip(self.stats.chunks_exact_mut(2)).enumerate() {
            let (row, hidden) = row.split_at_mut(self.mask.visible(r, self.c));
            hidden.fill(T::zero());
            apply_mask(row, r, &self.mask);
            let (m, inv) = softmax_row(row);
            st[0] = m;
            st[1] = inv;
            if !self.saved.is_empty() {
                let at = r * self.saved_rs;
                self.saved[at..at + row.len()].copy_from_slice(row);
            }
            if let Some(d) = &self.drop {
                for (j, x) in row.iter_mut().enumerate() {
                    *x = *x * d.factor(r, j);
                }
            }
        }
    }
}

/// Backward: masks the recomputed scores of a block and rebuilds the probabilities
/// `exp(s - max) · (1/sum)` from the forward's statistics (before dropout).
pub(super) struct RebuildRows<'s, T> {
    pub(super) p: &'s mut [T],
    pub(super) c: usize,
    pub(super) mask: BlockMask<'s, T>,
    pub(super) stats: &'s [T],
}

impl<T: Float> Kernel for RebuildRows<'_, T> {
    fn work(&self) -> usize {
        self.p.len()
    }

    #[inline(always)]
    fn run(self) {
        let rows = self.p.chunks_exact_mut(self.c);
        for (r, (row, st)) in rows.zip(self.stats.chunks_exact(2)).enumerate() {
            let (row, hidden) = row.split_at_mut(self.mask.visible(r, self.c));
            hidden.fill(T::zero());
            apply_mask(row, r, &self.mask);
            let (m, inv) = (st[0], st[1]);
            for x in row.iter_mut() {
                *x = (*x - m).vexp() * inv;
            }
        }
    }
}

/// The probabilities the forward kept: row `r` of the block starts at `data[r·rs]`.
#[derive(Clone, Copy)]
pub(super) struct KeptProbs<'s, T> {
    pub(super) data: &'s [T],
    pub(super) rs: usize,
}

/// Backward: the softmax gradient `dS = P ∘ (dPd ∘ M - Δ)` into `p`, and the dropped weights
/// `P ∘ M` (what multiplied V) into `dp`, which held `dPd = dO · Vᵀ`. `M` are the dropout
/// factors (1 without dropout) and `Δ_r = dO_r · O_r`. `P` is read from `kept` when the
/// forward kept it (`p` is then only written), else from `p`.
pub(super) struct GradRows<'s, T> {
    pub(super) p: &'s mut [T],
    pub(super) kept: Option<KeptProbs<'s, T>>,
    pub(super) dp: &'s mut [T],
    pub(super) c: usize,
    pub(super) mask: BlockMask<'s, T>,
    /// The block's rows of dO and O (of length `ev`), for `Δ`.
    pub(super) go: &'s [T],
    pub(super) o: &'s [T],
    pub(super) ev: usize,
    pub(super) drop: Option<BlockDrop<T>>,
}

impl<T: Float> Kernel for GradRows<'_, T> {
    fn work(&self) -> usize {
        self.p.len()
    }

    #[inline(always)]
    fn run(self) {
        let rows = self
            .p
            .chunks_exact_mut(self.c)
            .zip(self.dp.chunks_exact_mut(self.c));
        for (r, (prow, dprow)) in rows.enumerate() {
            let at = r * self.ev..(r + 1) * self.ev;
            let delta = row_dot(&self.go[at.clone()], &self.o[at]);
            // Hidden weights are 0 (those inside the last vector computed as such), and so
            // are their gradients.
            let n = self.mask.visible(r, self.c);
            prow[n..].fill(T::zero());
            dprow[n..].fill(T::zero());
            let (prow, dprow) = (&mut prow[..n], &mut dprow[..n]);
            // dS_j = P_j·(dPd_j·M_j - Δ) and P_j·M_j, with P_j from the kept rows or from `p`.
            match (self.kept, &self.drop) {
                (Some(k), None) => {
                    let src = &k.data[r * k.rs..r * k.rs + n];
                    for ((x, y), &p) in prow.iter_mut().zip(dprow.iter_mut()).zip(src) {
                        *x = p * (*y - delta);
                        *y = p;
                    }
                }
                (Some(k), Some(d)) => {
                    let src = &k.data[r * k.rs..r * k.rs + n];
                    let rows = prow.iter_mut().zip(dprow.iter_mut()).zip(src);
                    for (j, ((x, y), &p)) in rows.enumerate() {
                        let f = d.factor(r, j);
                        *x = p * (*y * f - delta);
                        *y = p * f;
                    }
                }
                (None, None) => {
                    for (x, y) in prow.iter_mut().zip(dprow.iter_mut()) {
                        let p = *x;
                        *x = p * (*y - delta);
                        *y = p;
                    }
                }
                (None, Some(d)) => {
                    for (j, (x, y)) in prow.iter_mut().zip(dprow.iter_mut()).enumerate() {
                        let (p, f) = (*x, d.factor(r, j));
                        *x = p * (*y * f - delta);
                        *y = p * f;
                    }
                }
            }
        }
    }
}
