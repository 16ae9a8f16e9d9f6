//! `packed_attention` on `Tensor`: multi-head self-attention over one packed projection
//! `(..., T, 3C)` (q, k and v side by side, as nanoGPT's `c_attn` makes them), giving the heads
//! side by side again, `(..., T, C)`.
//!
//! The numbers are exactly those of the usual chain — split into q, k, v, view each as
//! `(..., T, H, D)`, move the heads forward, `scaled_dot_product_attention`, move them back
//! and merge — since the same attention kernel runs on the same head-major operands. What goes
//! is the chain's copies: it copies every piece once per step (split, transpose, merge) and its
//! backward again per step, the split's gradient three full-width zero-filled arrays summed
//! into one. Here one gather builds the head-major q, k, v, one scatter writes the output, and
//! the backward scatters dQ, dK and dV straight into one `(..., T, 3C)` gradient.

use std::borrow::Cow;
use std::mem::MaybeUninit;

use super::ops_attention::{backward, dropout_for, forward, not_float, SavedMask};
use super::ops_nn::{typed, with_arrays};
use super::{is_grad_enabled, Tensor};
use crate::dynarray::{DType, DynArray, Element};
use crate::ndarray::attention::Dropout;
use crate::ndarray::{try_with_capacity, Float, NdArray};
use crate::shape::fmt_shape;
use crate::{shape_err, value_err, Error, Result};

/// The sizes of one call: `n` leading rows of `t` positions, `h` heads of `d` features.
#[derive(Clone, Copy)]
struct Heads {
    n: usize,
    t: usize,
    h: usize,
    d: usize,
}

impl Heads {
    /// Checks a packed `(..., T, 3C)` shape against `n_head`.
    fn of(shape: &[usize], n_head: usize) -> Result<Heads> {
        let nd = shape.len();
        if nd < 2 {
            return Err(shape_err!(
                "packed_attention: qkv must have at least 2 dimensions (..., T, 3 * C), got \
                 shape {}",
                fmt_shape(shape)
            ));
        }
        let (t, c3) = (shape[nd - 2], shape[nd - 1]);
        if c3 % 3 != 0 {
            return Err(shape_err!(
                "packed_attention: the last dimension of qkv ({c3}, shape {}) must hold q, k \
                 and v side by side: a multiple of 3",
                fmt_shape(shape)
            ));
        }
        let c = c3 / 3;
        if n_head == 0 || c % n_head != 0 {
            return Err(value_err!(
                "packed_attention: n_head must be positive and divide the embedding size {c} \
                 (qkv shape {}), got {n_head}",
                fmt_shape(shape)
            ));
        }
        Ok(Heads {
            n: shape[..nd - 2].iter().product(),
            t,
            h: n_head,
            d: c / n_head,
        })
    }

    /// The head-major shape of one of q, k, v: `lead + (H, T, D)`.
    fn head_major(&self, lead: &[usize]) -> Vec<usize> {
        let mut s = lead.to_vec();
        s.extend([self.h, self.t, self.d]);
        s
    }
}

/// Appends to the part of a buffer one task writes.
struct Sink<'a, T> {
    dst: &'a mut [MaybeUninit<T>],
    at: usize,
}

impl<T: Copy> Sink<'_, T> {
    fn put(&mut self, src: &[T]) {
        for (d, &v) in self.dst[self.at..self.at + src.len()].iter_mut().zip(src) {
            d.write(v);
        }
        self.at += src.len();
    }
}

/// A buffer of `n` blocks of `per` elements, block `b` written by `fill(b, sink)`, which
/// must put exactly `per` elements; the blocks are spread over the pool's threads when the
/// copy is large enough to pay for it.
fn filled_by_blocks<T: Copy + Send + Sync>(
    n: usize,
    per: usize,
    fill: impl Fn(usize, &mut Sink<'_, T>) + Sync,
) -> Result<Vec<T>> {
    let len = n * per;
    let mut out = try_with_capacity(len)?;
    if len == 0 {
        return Ok(out);
    }
    let threads = match crate::parallel::should_split(len) {
        true => crate::parallel::num_threads(),
        false => 1,
    };
    let blocks = n.div_ceil(threads.max(1));
    let spare = &mut out.spare_capacity_mut()[..len];
    crate::parallel::for_each_chunk_mut(spare, blocks * per, |i, dst| {
        let mut sink = Sink { dst, at: 0 };
        let first = i * blocks;
        for b in first..first + sink.dst.len() / per {
            fill(b, &mut sink);
        }
        // What makes `set_len` below sound: every element of the chunk was written.
        assert_eq!(
            sink.at,
            sink.dst.len(),
            "packed_attention: a block left unwritten"
        );
    });
    // SAFETY: the chunks cover the `len` reserved elements, and each task wrote all of its
    // chunk (the assert above; a panic there propagates before this line).
    unsafe { out.set_len(len) };
    Ok(out)
}

/// The head-major arrays `(n, H, T, D)` of the `parts` pieces of a row-major `(n, T, parts·H·D)`
/// buffer (q, k, v for the packed input; one piece for the output's gradient).
fn split_heads<T: Copy + Send + Sync>(x: &[T], parts: usize, g: Heads) -> Result<Vec<Vec<T>>> {
    let Heads { n, t, h, d } = g;
    let width = parts * h * d;
    (0..parts)
        .map(|p| {
            filled_by_blocks(n, h * t * d, |b, out| {
                for hh in 0..h {
                    for tt in 0..t {
                        let at = (b * t + tt) * width + (p * h + hh) * d;
                        out.put(&x[at..at + d]);
                    }
                }
            })
        })
        .collect()
}

/// The inverse of [`split_heads`]: the head-major pieces side by side in rows of
/// `parts·H·D`, `(n, T, parts·H·D)`.
fn merge_heads<T: Copy + Send + Sync>(pieces: &[&[T]], g: Heads) -> Result<Vec<T>> {
    let Heads { n, t, h, d } = g;
    filled_by_blocks(n, t * pieces.len() * h * d, |b, out| {
        for tt in 0..t {
            for piece in pieces {
                for hh in 0..h {
                    let at = ((b * h + hh) * t + tt) * d;
                    out.put(&piece[at..at + d]);
                }
            }
        }
    })
}

/// The arrays as the kernel's entry points take them.
fn borrowed<'a>(arrays: impl IntoIterator<Item = &'a DynArray>) -> Vec<Cow<'a, DynArray>> {
    arrays.into_iter().map(Cow::Borrowed).collect()
}

/// What the backward keeps of the forward, head-major: q, k, v and the output (the kernel
/// reads them all), the row statistics and, when kept, the probabilities.
struct Kept {
    qkv: [DynArray; 3],
    out: DynArray,
    stats: DynArray,
    probs: Option<DynArray>,
}

/// The forward in `T`: the `(..., T, C)` output and what the backward needs.
fn packed_forward<T: Element + Float>(
    x: &DynArray,
    g: Heads,
    mask: &SavedMask,
    (scale, dropout, keep): (Option<f64>, Option<Dropout>, bool),
) -> Result<(DynArray, Kept)> {
    let shape = x.shape();
    let lead = &shape[..shape.len() - 2];
    let hm = g.head_major(lead);
    let wrap = |v: Vec<T>| NdArray::from_vec(v, &hm).map(T::wrap);
    let mut pieces = split_heads(typed::<T>(x)?.data(), 3, g)?.into_iter();
    let mut next = || wrap(pieces.next().unwrap_or_default());
    let qkv = [next()?, next()?, next()?];
    let (out, stats, probs) = forward::<T>(&borrowed(&qkv), mask, scale, dropout, keep)?;
    let merged = merge_heads(&[typed::<T>(&out)?.data()], g)?;
    let mut out_shape = lead.to_vec();
    out_shape.extend([g.t, g.h * g.d]);
    let result = T::wrap(NdArray::from_vec(merged, &out_shape)?);
    Ok((
        result,
        Kept {
            qkv,
            out,
            stats,
            probs,
        },
    ))
}

/// The backward in `T`: the `(..., T, 3C)` gradient of the packed input from the output's.
fn packed_backward<T: Element + Float>(
    grad: &DynArray,
    kept: &Kept,
    g: Heads,
    mask: &SavedMask,
    (scale, dropout): (Option<f64>, Option<Dropout>),
    in_shape: &[usize],
) -> Result<DynArray> {
    let go = split_heads(typed::<T>(grad)?.data(), 1, g)?
        .pop()
        .unwrap_or_default();
    let go = T::wrap(NdArray::from_vec(go, kept.out.shape())?);
    let [q, k, v] = &kept.qkv;
    let operands = borrowed([q, k, v, &go, &kept.out]);
    let grads = backward::<T>(
        &operands,
        &kept.stats,
        kept.probs.as_ref(),
        mask,
        scale,
        dropout,
        [true; 3],
    )?;
    let pieces = grads
        .iter()
        .map(|gr| match gr {
            Some(a) => typed::<T>(a).map(NdArray::data),
            None => Err(value_err!("packed_attention: the kernel gave no gradient")),
        })
        .collect::<Result<Vec<_>>>()?;
    let merged = merge_heads(&pieces, g)?;
    Ok(T::wrap(NdArray::from_vec(merged, in_shape)?))
}

impl Tensor {
    /// Multi-head self-attention over a packed projection: `self` is `(..., T, 3·C)`, the
    /// query, key and value side by side along the last axis, each cut into `n_head` heads of
    /// `C / n_head` features; the result is `(..., T, C)`, the heads' outputs side by side.
    /// The same as splitting, viewing each piece as `(..., T, n_head, D)`, moving the heads in
    /// front of T, [`Tensor::scaled_dot_product_attention`] (`dropout_p`, `is_causal`,
    /// `scale` as there) and moving them back, to the bit, gradient included; only the copies
    /// between those steps are saved.
    pub fn packed_attention(
        &self,
        n_head: usize,
        dropout_p: f64,
        is_causal: bool,
        scale: Option<f64>,
    ) -> Result<Tensor> {
        let in_shape = self.shape();
        let heads = Heads::of(&in_shape, n_head)?;
        let dropout = dropout_for(dropout_p);
        let keep = is_grad_enabled() && self.requires_grad();
        let mask = match is_causal {
            true => SavedMask::Causal,
            false => SavedMask::None,
        };
        let (dtype, out, kept) = with_arrays(&[self], |a| -> Result<_> {
            let dtype = match a[0].dtype() {
                d @ (DType::F32 | DType::F64) => d,
                other => {
                    return Err(Error::Type(format!(
                        "packed_attention: qkv must be a float tensor, got dtype {}",
                        other.name()
                    )))
                }
            };
            let opts = (scale, dropout, keep);
            let (out, kept) = match dtype {
                DType::F32 => packed_forward::<f32>(a[0], heads, &mask, opts),
                DType::F64 => packed_forward::<f64>(a[0], heads, &mask, opts),
                other => Err(not_float(other)),
            }?;
            Ok((dtype, out, kept))
        })?;
        // The backward reads only what the forward kept (its own copies), never the input.
        Ok(Tensor::from_op(
            out,
            "packed_attention",
            &[self],
            move |g, _| {
                let g = g.as_dtype(dtype);
                let opts = (scale, dropout);
                let grad = match dtype {
                    DType::F32 => packed_backward::<f32>(&g, &kept, heads, &mask, opts, &in_shape),
                    DType::F64 => packed_backward::<f64>(&g, &kept, heads, &mask, opts, &in_shape),
                    other => Err(not_float(other)),
                }?;
                Ok(vec![Some(grad)])
            },
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A tensor of `shape` with deterministic values in [-1, 1).
    fn sample(shape: &[usize], seed: u64, requires_grad: bool) -> Tensor {
        let a = crate::test_util::filled::<f64>(shape, seed);
        Tensor::new(DynArray::F64(a), requires_grad)
    }

    /// The chain `packed_attention` replaces: split, view, move the heads forward, attend,
    /// move them back, merge.
    fn chain(x: &Tensor, n_head: usize, causal: bool) -> Result<Tensor> {
        let s = x.shape();
        let (b, t, c) = (s[0] as isize, s[1] as isize, s[2] / 3);
        let heads = |i: usize| -> Result<Tensor> {
            x.narrow(2, i * c, c)?
                .reshape(&[b, t, n_head as isize, (c / n_head) as isize])?
                .transpose(1, 2)
        };
        let y = heads(0)?.scaled_dot_product_attention(
            &heads(1)?,
            &heads(2)?,
            None,
            0.0,
            causal,
            None,
        )?;
        y.transpose(1, 2)?.reshape(&[b, t, c as isize])
    }

    /// The output and the input's gradient (from the gradient `g` of the output).
    fn run(f: impl Fn(&Tensor) -> Result<Tensor>, x: &Tensor, g: &Tensor) -> (Vec<f64>, Vec<f64>) {
        let y = f(x).expect("the op runs");
        y.backward(Some(g.array().clone()), false)
            .expect("the backward runs");
        let dx = x.grad().expect("a gradient").read().to_f64_vec();
        let out = y.array().to_f64_vec();
        (out, dx)
    }

    #[test]
    fn packed_attention_equals_the_split_transpose_attention_chain_to_the_bit() {
        for causal in [true, false] {
            let g = sample(&[3, 10, 8], 2, false);
            let x1 = sample(&[3, 10, 24], 1, true);
            let x2 = sample(&[3, 10, 24], 1, true);
            let got = run(|x| x.packed_attention(2, 0.0, causal, None), &x1, &g);
            let want = run(|x| chain(x, 2, causal), &x2, &g);
            assert_eq!(got, want);
        }
    }

    #[test]
    fn packed_attention_refuses_shapes_that_do_not_split_into_heads() {
        let cases: [(&[usize], usize, &str); 4] = [
            (&[4, 25], 1, "multiple of 3"),
            (&[4, 24], 3, "n_head"),
            (&[4, 24], 0, "n_head"),
            (&[24], 2, "at least 2 dimensions"),
        ];
        for (shape, n_head, words) in cases {
            let err = sample(shape, 0, false)
                .packed_attention(n_head, 0.0, false, None)
                .expect_err("a bad shape is refused");
            assert!(err.to_string().contains(words), "{err} lacks {words:?}");
        }
    }
}
