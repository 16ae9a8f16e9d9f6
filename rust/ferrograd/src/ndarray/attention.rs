//! Fused scaled-dot-product attention on `NdArray<T>`: `softmax(scale·Q·Kᵀ + mask)·V` and its
//! backward, parallel over the (batch × heads) slices. The forward saves per-row softmax
//! statistics, and the probabilities themselves while they are small (see
//! [`SAVE_PROBS_BYTES`]); without them the backward recomputes the probabilities from the
//! statistics, flash-attention style.
//!
//! Shapes follow PyTorch: `q (..., L, E)`, `k (..., S, E)`, `v (..., S, Ev)` give
//! `(..., L, Ev)`; the leading axes broadcast. A row whose every position is masked attends to
//! nothing: its output and gradients are 0, as in PyTorch (its "safe" softmax, since 2.5).

mod gemm;
mod geometry;
mod rows;

use super::elementwise::{add_into, simd};
use super::{try_zeroed, Float, NdArray};
use crate::shape::{checked_size, fmt_shape};
use crate::{shape_err, Result};
use gemm::{gemm_into, Mat};
use geometry::Geometry;
use rows::{BlockDrop, BlockMask, DropMask, ForwardRows, GradRows, KeptProbs, RebuildRows};

/// Rows of the query handled together: the scores of one block (`ROW_BLOCK × S`) are the only
/// buffer that grows with the sequence, and under a causal mask a block computes only the
/// columns its rows can see.
const ROW_BLOCK: usize = 64;
/// [`ROW_BLOCK`] under the causal mask.
const CAUSAL_ROW_BLOCK: usize = 32;

/// The forward keeps the probabilities for the backward while they take at most this many
/// bytes (`count·L·S` elements): reading them back costs far less than recomputing
/// `Q·Kᵀ` and its exponentials (at nanoGPT's shapes, batch 12 × 4 heads × 64 × 64 in f32,
/// 786 KB, the backward runs ~20% faster). Beyond it memory wins: the backward recomputes.
pub const SAVE_PROBS_BYTES: usize = 8 << 20;

/// From this many multiply-adds in all (`count·L·S·(E + Ev)`), the row blocks (forward) and
/// slices (backward) are spread over the crate's threads: the order of matmul's threshold for
/// batches of small GEMMs, below which handing work to the pool costs about what it saves.
const PARALLEL_WORK: usize = 1 << 19;

/// Which positions take part, and what is added to the scores.
#[derive(Clone, Copy, Debug)]
pub enum Mask<'a, T> {
    /// Every position takes part.
    None,
    /// Query `i` sees keys `j <= i` (top-left aligned, PyTorch's `tril(ones(L, S))`); the mask
    /// is never materialised.
    Causal,
    /// Broadcastable to `(..., L, S)`: `true` marks a position that takes part.
    Keep(&'a NdArray<bool>),
    /// Broadcastable to `(..., L, S)`: added to the scaled scores.
    Add(&'a NdArray<T>),
}

/// Dropout of the attention weights: each is zeroed with probability `p`, the rest scaled by
/// `1/(1-p)`. The decision for weight `(slice, i, j)` is a pure function of `seed` and that
/// position, so the backward pass regenerates it instead of storing a mask, and the result
/// does not depend on the thread count.
#[derive(Clone, Copy, Debug)]
pub struct Dropout {
    pub p: f64,
    pub seed: u64,
}

/// One attention call: the operands and its options.
#[derive(Clone, Copy, Debug)]
pub struct Attention<'a, T> {
    pub q: &'a NdArray<T>,
    pub k: &'a NdArray<T>,
    pub v: &'a NdArray<T>,
    pub mask: Mask<'a, T>,
    /// The factor applied to `Q·Kᵀ`; `None` is `1/√E`.
    pub scale: Option<f64>,
    pub dropout: Option<Dropout>,
}

/// The output of the forward pass and what its backward needs besides the operands.
#[derive(Clone, Debug)]
pub struct AttentionForward<T> {
    /// `(..., L, Ev)`.
    pub out: NdArray<T>,
    /// Per query row, the row maximum of the masked scores and the reciprocal of the sum of
    /// their exponentials: `(..., L, 2)`. Backward rebuilds the probabilities from these.
    pub stats: NdArray<T>,
    /// The probabilities before dropout, `(..., L, S)`, when the forward kept them.
    pub probs: Option<NdArray<T>>,
}

impl<T> AttentionForward<T> {
    /// What the backward reads of this forward.
    pub fn saved(&self) -> Saved<'_, T> {
        Saved {
            out: &self.out,
            stats: &self.stats,
            probs: self.probs.as_ref(),
        }
    }
}

/// What the backward reads of its forward: the output and the [`AttentionForward`] fields.
#[derive(Clone, Copy, Debug)]
pub struct Saved<'a, T> {
    pub out: &'a NdArray<T>,
    pub stats: &'a NdArray<T>,
    pub probs: Option<&'a NdArray<T>>,
}

/// The gradients of `q`, `k` and `v`, each in the broadcast batch shape (`batch + (L, E)`,
/// …): summing them down to an operand's own shape is the caller's job. `None` where not
/// asked for.
pub type AttentionGrads<T> = [Option<NdArray<T>>; 3];

/// Read-only data shared by the per-slice work of one call.
struct Ctx<'a, T> {
    g: Geometry,
    q: &'a [T],
    k: &'a [T],
    v: &'a [T],
    mask: Mask<'a, T>,
    scale: T,
    drop: Option<DropMask>,
}

impl<'a, T: Float> Ctx<'a, T> {
    fn new(a: &Attention<'a, T>) -> Result<Self> {
        let g = Geometry::new(a)?;
        let scale = a.scale.unwrap_or_else(|| 1.0 / (g.e as f64).sqrt());
        Ok(Self {
            q: a.q.data(),
            k: a.k.data(),
            v: a.v.data(),
            mask: a.mask,
            scale: T::from_f64_lossy(scale),
            drop: DropMask::new(a.dropout)?,
            g,
        })
    }

    /// Rows per block: under the causal mask smaller blocks skip more of the hidden upper
    /// triangle (at L = 64: 32 rows ran ~8% faster than 64 or 16; measured).
    fn row_block(&self) -> usize {
        match self.mask {
            Mask::Causal => CAUSAL_ROW_BLOCK,
            _ => ROW_BLOCK,
        }
    }

    /// The key columns rows `i0..i1` can see: all of them, or under the causal mask only
    /// `j < i1` (row `i` sees `j <= i`).
    fn cols(&self, i1: usize) -> usize {
        match self.mask {
            Mask::Causal => i1.min(self.g.s),
            _ => self.g.s,
        }
    }

    /// `sc (rows × c) = scale · Q[i0..i0+rows] · K[..c]ᵀ`: the scores of one block.
    fn scores(&self, b: usize, i0: usize, rows: usize, c: usize, sc: &mut [T]) {
        let Geometry { e, .. } = self.g;
        let [qo, ko, _] = self.g.offsets[b];
        let q = Mat::rows(&self.q[qo + i0 * e..], rows, e);
        let kt = Mat::rows(&self.k[ko..], c, e).t();
        gemm_into(sc, c, q, kt, self.scale, false);
    }

    /// The mask of the block of rows from `i0` of slice `b`.
    fn block_mask(&self, b: usize, i0: usize) -> BlockMask<'a, T> {
        let (start, rs, cs) = match &self.g.mask {
            Some((offs, rs, cs)) => (offs[b] + i0 * rs, *rs, *cs),
            None => (0, 0, 0),
        };
        match self.mask {
            Mask::None => BlockMask::None,
            Mask::Causal => BlockMask::Causal { i0 },
            Mask::Keep(m) => BlockMask::Keep {
                data: m.data(),
                start,
                rs,
                cs,
            },
            Mask::Add(m) => BlockMask::Add {
                data: m.data(),
                start,
                rs,
                cs,
            },
        }
    }

    /// The dropout of the block of rows from `i0` of slice `b`, if any.
    fn block_drop(&self, b: usize, i0: usize) -> Option<BlockDrop<T>> {
        self.drop.map(|mask| BlockDrop {
            mask,
            start: ((b * self.g.l + i0) * self.g.s) as u64,
            rs: self.g.s as u64,
            scale: T::from_f64_lossy(mask.scale),
        })
    }

    /// Forward of rows `i0..i0+rows` of slice `b`: writes their output rows and statistics,
    /// and their probabilities into `saved` (rows of length S) unless it is empty.
    fn forward_block(
        &self,
        b: usize,
        i0: usize,
        [out, stats, saved]: [&mut [T]; 3],
        sc: &mut Vec<T>,
    ) {
        let ev = self.g.ev;
        let rows = stats.len() / 2;
        let c = self.cols(i0 + rows);
        if c == 0 {
            // No keys: an empty softmax, and its product with an empty V is 0 (PyTorch).
            out.fill(T::zero());
            return;
        }
        // The scores GEMM overwrites every element: no zeroing of the reused scratch.
        let sc = scratch(sc, rows * c);
        self.scores(b, i0, rows, c, sc);
        simd::run(ForwardRows {
            p: &mut *sc,
            c,
            mask: self.block_mask(b, i0),
            stats,
            saved,
            saved_rs: self.g.s,
            drop: self.block_drop(b, i0),
        });
        let vo = self.g.offsets[b][2];
        let p = Mat::rows(&*sc, rows, c);
        let v = Mat::rows(&self.v[vo..], c, ev);
        gemm_into(out, ev, p, v, T::one(), false);
    }

    fn forward(&self, save_probs: bool) -> Result<AttentionForward<T>> {
        let Geometry {
            count, l, s, ev, ..
        } = self.g;
        let mut out = try_zeroed::<T>(checked_size(&[count, l, ev])?)?;
        let mut stats = try_zeroed::<T>(checked_size(&[count, l, 2])?)?;
        let mut probs = match save_probs {
            true => try_zeroed::<T>(checked_size(&[count, l, s])?)?,
            false => Vec::new(),
        };
        // With no output (Ev = 0 or nothing in the batch) there is nothing to compute.
        if !out.is_empty() {
            // One task per block of rows of each slice (blocks are independent in the
            // forward), so that a few long sequences spread over the threads too.
            let rb = self.row_block();
            let mut tasks = Vec::new();
            let slices = out
                .chunks_mut(l * ev)
                .zip(stats.chunks_mut(l * 2))
                .zip(per_slice(&mut probs, count, l * s));
            for (b, ((o, st), pr)) in slices.enumerate() {
                let blocks = o
                    .chunks_mut(rb * ev)
                    .zip(st.chunks_mut(rb * 2))
                    .zip(per_slice(pr, l.div_ceil(rb), rb * s));
                for (i, ((o, st), pr)) in blocks.enumerate() {
                    tasks.push((b, i * rb, [o, st, pr]));
                }
            }
            let block = |sc: &mut Vec<T>, (b, i0, bufs): (usize, usize, [&mut [T]; 3])| {
                self.forward_block(b, i0, bufs, sc)
            };
            if self.g.parallel() {
                crate::parallel::for_each_item_init(tasks, Vec::new, block);
            } else {
                let mut sc = Vec::new();
                tasks.into_iter().for_each(|t| block(&mut sc, t));
            }
        }
        Ok(AttentionForward {
            out: NdArray::from_vec(out, &self.g.shape(l, ev))?,
            stats: NdArray::from_vec(stats, &self.g.shape(l, 2))?,
            probs: save_probs
                .then(|| NdArray::from_vec(probs, &self.g.shape(l, s)))
                .transpose()?,
        })
    }
}

impl<'a, T: Float> Attention<'a, T> {
    /// The forward pass: the output and what its backward needs, the probabilities among it
    /// when they fit in [`SAVE_PROBS_BYTES`].
    pub fn forward(&self) -> Result<AttentionForward<T>> {
        self.forward_with(true)
    }

    /// The forward pass, keeping the probabilities for the backward only if `keep_probs` and
    /// they fit in [`SAVE_PROBS_BYTES`] (pass false when no backward will follow).
    pub fn forward_with(&self, keep_probs: bool) -> Result<AttentionForward<T>> {
        let cx = Ctx::new(self)?;
        let g = &cx.g;
        let bytes = [g.count, g.l, g.s, std::mem::size_of::<T>()]
            .iter()
            .try_fold(1usize, |a, &d| a.checked_mul(d));
        cx.forward(keep_probs && bytes.is_some_and(|b| b <= SAVE_PROBS_BYTES))
    }

    /// The backward pass: gradients of q, k and v (those `need` asks for) from the gradient
    /// of the output `grad` and what the forward `saved` (its output among it).
    pub fn backward(
        &self,
        grad: &NdArray<T>,
        saved: Saved<'_, T>,
        need: [bool; 3],
    ) -> Result<AttentionGrads<T>> {
        let cx = Ctx::new(self)?;
        let g = &cx.g;
        let want_out = g.shape(g.l, g.ev);
        let want_stats = g.shape(g.l, 2);
        let want_probs = g.shape(g.l, g.s);
        let mut checks = vec![
            ("grad", grad, &want_out),
            ("out", saved.out, &want_out),
            ("stats", saved.stats, &want_stats),
        ];
        checks.extend(saved.probs.map(|p| ("probs", p, &want_probs)));
        for (name, a, want) in checks {
            if a.shape() != want.as_slice() {
                return Err(shape_err!(
                    "scaled_dot_product_attention backward: {name} has shape {}, expected {}",
                    fmt_shape(a.shape()),
                    fmt_shape(want)
                ));
            }
        }
        let probs = saved.probs.map(NdArray::data);
        cx.backward(
            [grad.data(), saved.out.data(), saved.stats.data()],
            probs,
            need,
        )
    }
}

/// A backward task: a slice, its range of row blocks, and where its dQ rows, dK and dV go.
type BackwardTask<'a, T> = (usize, std::ops::Range<usize>, [&'a mut [T]; 3]);

/// The scratch buffers of the backward pass (one per thread, reused block after block).
#[derive(Default)]
struct Scratch<T> {
    /// Probabilities, then the score gradients dS.
    p: Vec<T>,
    /// dO·Vᵀ, then the dropped probabilities.
    dp: Vec<T>,
}

impl<T: Float> Ctx<'_, T> {
    fn backward(
        &self,
        [grad, out, stats]: [&[T]; 3],
        probs: Option<&[T]>,
        need: [bool; 3],
    ) -> Result<AttentionGrads<T>> {
        let Geometry {
            count, l, s, e, ev, ..
        } = self.g;
        let alloc = |want: bool, n: usize| -> Result<Vec<T>> {
            if want {
                try_zeroed(checked_size(&[count, n])?)
            } else {
                Ok(Vec::new())
            }
        };
        if !need.iter().any(|&n| n) {
            return Ok([None, None, None]);
        }
        let mut dq = alloc(need[0], l * e)?;
        // dK and dV are sums over the row blocks: they start as these zeros (zeroing them
        // again in each task only cost time).
        let mut dk = alloc(need[1], s * e)?;
        let mut dv = alloc(need[2], s * ev)?;
        let rb = self.row_block();
        let blocks = l.div_ceil(rb);
        // Each slice is a task. With fewer slices than threads, a slice's row blocks are also
        // split over `parts` tasks; all but the first sum their share of dK and dV into
        // buffers of their own, added up at the end.
        let threads = match self.g.parallel() {
            true => crate::parallel::num_threads(),
            false => 1,
        };
        let per = match count < threads {
            true => blocks.div_ceil((threads / count.max(1)).clamp(1, blocks.max(1))),
            false => blocks,
        };
        let parts = blocks.div_ceil(per.max(1)).max(1);
        let extra = count * (parts - 1);
        let mut xk = alloc(need[1] && parts > 1, (parts - 1) * s * e)?;
        let mut xv = alloc(need[2] && parts > 1, (parts - 1) * s * ev)?;
        let mut xk_parts = per_slice(&mut xk, extra, s * e).into_iter();
        let mut xv_parts = per_slice(&mut xv, extra, s * ev).into_iter();
        let mut tasks = Vec::with_capacity(count * parts);
        let slices = per_slice(&mut dq, count, l * e)
            .into_iter()
            .zip(per_slice(&mut dk, count, s * e))
            .zip(per_slice(&mut dv, count, s * ev));
        for (b, ((dq, dk), dv)) in slices.enumerate() {
            let mut own = Some([dk, dv]);
            for (p, dq) in per_slice(dq, parts, per * rb * e).into_iter().enumerate() {
                let [dk, dv] = match own.take() {
                    Some(first) => first,
                    None => [
                        xk_parts.next().unwrap_or_default(),
                        xv_parts.next().unwrap_or_default(),
                    ],
                };
                let range = p * per..((p + 1) * per).min(blocks);
                tasks.push((b, range, [dq, dk, dv]));
            }
        }
        // The scratch is per thread, reused from task to task as from block to block (a
        // fresh one per slice was an allocation and a zero-fill of its blocks per slice).
        let task = |scratch: &mut Scratch<T>, (b, range, [dq, dk, dv]): BackwardTask<'_, T>| {
            let r0 = range.start * rb;
            for blk in range {
                let i0 = blk * rb;
                let rows = rb.min(l - i0);
                let at = b * l + i0;
                let dq_blk = match dq.is_empty() {
                    true => &mut [][..],
                    false => &mut dq[(i0 - r0) * e..(i0 - r0 + rows) * e],
                };
                self.backward_block(
                    b,
                    i0,
                    [
                        &grad[at * ev..(at + rows) * ev],
                        &out[at * ev..(at + rows) * ev],
                        &stats[at * 2..(at + rows) * 2],
                    ],
                    probs.map(|p| &p[at * s..(at + rows) * s]),
                    [dq_blk, &mut *dk, &mut *dv],
                    scratch,
                );
            }
        };
        if threads > 1 {
            crate::parallel::for_each_item_init(tasks, Scratch::default, task);
        } else {
            let mut scratch = Scratch::default();
            tasks.into_iter().for_each(|t| task(&mut scratch, t));
        }
        // The parts' shares of dK and dV.
        for (total, shares, n) in [(&mut dk, &xk, s * e), (&mut dv, &xv, s * ev)] {
            if shares.is_empty() || n == 0 {
                continue;
            }
            for (t, sh) in total.chunks_mut(n).zip(shares.chunks(n * (parts - 1))) {
                sh.chunks(n).for_each(|x| add_into(t, x));
            }
        }
        let wrap = |want: bool, v: Vec<T>, rows: usize, cols: usize| {
            want.then(|| NdArray::from_vec(v, &self.g.shape(rows, cols)))
                .transpose()
        };
        Ok([
            wrap(need[0], dq, l, e)?,
            wrap(need[1], dk, s, e)?,
            wrap(need[2], dv, s, ev)?,
        ])
    }

    /// Backward of one row block of slice `b`, starting at row `i0`: writes its rows of dQ and
    /// adds its share to dK and dV (of the whole slice). `go`, `o` and `st` are the block's
    /// rows of the output gradient, the output and the statistics.
    fn backward_block(
        &self,
        b: usize,
        i0: usize,
        [go, o, st]: [&[T]; 3],
        saved: Option<&[T]>,
        [dq, dk, dv]: [&mut [T]; 3],
        buf: &mut Scratch<T>,
    ) {
        let Geometry { e, ev, .. } = self.g;
        let rows = st.len() / 2;
        let c = self.cols(i0 + rows);
        if c == 0 {
            return; // no keys: the output is the constant 0
        }
        let [qo, ko, vo] = self.g.offsets[b];
        // Every element of both scratch blocks is written below (the GEMMs overwrite, the
        // row kernels write hidden weights as 0): no zeroing of the reused buffers.
        let p = scratch(&mut buf.p, rows * c);
        let dp = scratch(&mut buf.dp, rows * c);
        // P as the forward kept it (rows of length S, of which the first c are visible) is
        // read where it lies; otherwise it is rebuilt into `p` exactly as the forward made
        // it: exp(s - max) · (1/sum).
        let kept = match saved {
            Some(saved) => Some(KeptProbs {
                data: saved,
                rs: self.g.s,
            }),
            None => {
                self.scores(b, i0, rows, c, p);
                simd::run(RebuildRows {
                    p: &mut *p,
                    c,
                    mask: self.block_mask(b, i0),
                    stats: st,
                });
                None
            }
        };
        // dPd = dO · Vᵀ: the gradient of the (dropped) weights.
        let go_m = Mat::rows(go, rows, ev);
        let vt = Mat::rows(&self.v[vo..], c, ev).t();
        gemm_into(dp, c, go_m, vt, T::one(), false);
        simd::run(GradRows {
            p: &mut *p,
            kept,
            dp: &mut *dp,
            c,
            mask: self.block_mask(b, i0),
            go,
            o,
            ev,
            drop: self.block_drop(b, i0),
        });
        if !dv.is_empty() {
            // dV[..c] += (P ∘ M)ᵀ · dO
            let pd = Mat::rows(&*dp, rows, c).t();
            gemm_into(&mut dv[..c * ev], ev, pd, go_m, T::one(), true);
        }
        let ds = Mat::rows(&*p, rows, c);
        if !dq.is_empty() {
            // dQ = scale · dS · K[..c]
            gemm_into(dq, e, ds, Mat::rows(&self.k[ko..], c, e), self.scale, false);
        }
        if !dk.is_empty() {
            // dK[..c] += scale · dSᵀ · Q
            let q = Mat::rows(&self.q[qo + i0 * e..], rows, e);
            gemm_into(&mut dk[..c * e], e, ds.t(), q, self.scale, true);
        }
    }
}

/// The first `n` elements of a reused scratch buffer, grown (with zeros) when too short; the
/// values left from an earlier block are for the caller to overwrite.
fn scratch<T: Float>(buf: &mut Vec<T>, n: usize) -> &mut [T] {
    if buf.len() < n {
        buf.resize(n, T::zero());
    }
    &mut buf[..n]
}

/// `v` cut into `count` chunks of `n`, or `count` empty chunks when `v` is empty.
fn per_slice<T>(v: &mut [T], count: usize, n: usize) -> Vec<&mut [T]> {
    if v.is_empty() || n == 0 {
        (0..count).map(|_| &mut [][..]).collect()
    } else {
        v.chunks_mut(n).collect()
    }
}

#[cfg(test)]
mod reference;
#[cfg(test)]
mod tests;
