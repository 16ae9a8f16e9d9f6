//! `scaled_dot_product_attention` on `Tensor`: one fused op whose backward calls the attention
//! kernel's (see `ndarray::attention`); it saves only the per-row softmax statistics (and the
//! mask, and the dropout seed), the probabilities being recomputed in backward.

use super::ops_nn::{typed, with_arrays};
use super::record::{self, kv, Attr};
use super::{is_grad_enabled, Tensor};
use crate::dynarray::{DType, DynArray, Element};
use crate::ndarray::attention::{Attention, Dropout, Mask, Saved};
use crate::ndarray::NdArray;
use crate::{random, value_err, Error, Result};

/// The `attn_mask` of [`Tensor::scaled_dot_product_attention`], broadcastable to the
/// attention weights' shape `(..., L, S)`.
#[derive(Clone, Debug)]
pub enum AttentionMask {
    /// `true` marks a position that takes part (PyTorch's bool mask).
    Keep(NdArray<bool>),
    /// Added to the scaled scores (`-inf` excludes a position); not differentiated.
    Add(DynArray),
}

/// What the op keeps of its mask: the mask in the compute dtype, or the causal flag.
pub(super) enum SavedMask {
    None,
    Causal,
    Keep(NdArray<bool>),
    Add(DynArray),
}

impl SavedMask {
    fn view<T: Element>(&self) -> Result<Mask<'_, T>> {
        Ok(match self {
            SavedMask::None => Mask::None,
            SavedMask::Causal => Mask::Causal,
            SavedMask::Keep(m) => Mask::Keep(m),
            SavedMask::Add(m) => Mask::Add(typed(m)?),
        })
    }
}

/// The dtype of a float operand; other dtypes are a TypeError naming it.
fn float_dtype(what: &str, a: &DynArray) -> Result<DType> {
    match a.dtype() {
        d @ (DType::F32 | DType::F64) => Ok(d),
        other => Err(Error::Type(format!(
            "scaled_dot_product_attention: {what} must be a float tensor, got dtype {}",
            other.name()
        ))),
    }
}

/// The error for a compute dtype that is not a float (float_dtype rules it out first).
/// The dropout of one attention call: `None` without one, else `p` and the seed of this
/// call's mask, drawn from the global generator only when `p` is valid (an invalid `p` draws
/// nothing: the kernel rejects it).
pub(super) fn dropout_for(dropout_p: f64) -> Option<Dropout> {
    (dropout_p != 0.0).then(|| Dropout {
        p: dropout_p,
        seed: if (0.0..=1.0).contains(&dropout_p) {
            random::next_seed()
        } else {
            0
        },
    })
}

pub(super) fn not_float(dtype: DType) -> Error {
    Error::Type(format!(
        "scaled_dot_product_attention: needs float tensors, got dtype {}",
        dtype.name()
    ))
}

impl Tensor {
    /// Attention `softmax(scale · self · keyᵀ + mask) · value` with PyTorch's semantics:
    /// `self` (the query) is `(..., L, E)`, `key` `(..., S, E)`, `value` `(..., S, Ev)`, the
    /// result `(..., L, Ev)`, the leading axes broadcasting; `scale` defaults to `1/√E`.
    /// `is_causal` lets query `i` see keys `j <= i` (with `attn_mask` it is an error); dropout
    /// with probability `dropout_p` is applied to the weights whenever `dropout_p > 0`, from
    /// the generator `manual_seed` sets. A row whose every position is masked is 0 (PyTorch).
    /// float32 and float64 operands promote; the mask is cast to the result's dtype.
    pub fn scaled_dot_product_attention(
        &self,
        key: &Tensor,
        value: &Tensor,
        attn_mask: Option<AttentionMask>,
        dropout_p: f64,
        is_causal: bool,
        scale: Option<f64>,
    ) -> Result<Tensor> {
        if is_causal && attn_mask.is_some() {
            return Err(value_err!(
                "scaled_dot_product_attention: attn_mask must not be given when is_causal=True \
                 (the causal mask is applied instead)"
            ));
        }
        let parents = [self, key, value];
        let dropout = dropout_for(dropout_p);
        // Keep the probabilities only for a backward that will come (`from_op`'s test).
        let keep = is_grad_enabled() && parents.iter().any(|p| p.requires_grad());
        let (dtype, mask, (out, stats, probs)) = with_arrays(&parents, |a| -> Result<_> {
            let dtype = float_dtype("query", a[0])?
                .promote(float_dtype("key", a[1])?)
                .promote(float_dtype("value", a[2])?);
            let mask = match attn_mask {
                None if is_causal => SavedMask::Causal,
                None => SavedMask::None,
                Some(AttentionMask::Keep(m)) => SavedMask::Keep(m),
                Some(AttentionMask::Add(m)) => {
                    float_dtype("attn_mask (a bool or float mask)", &m)?;
                    SavedMask::Add(m.into_dtype(dtype))
                }
            };
            let cast: Vec<_> = a.iter().map(|x| x.as_dtype(dtype)).collect();
            let saved = match dtype {
                DType::F32 => forward::<f32>(&cast, &mask, scale, dropout, keep),
                DType::F64 => forward::<f64>(&cast, &mask, scale, dropout, keep),
                other => Err(not_float(other)),
            }?;
            Ok((dtype, mask, saved))
        })?;
        let attrs = record::attrs(|| {
            let mask = match &mask {
                SavedMask::None => Attr::None,
                SavedMask::Causal => Attr::from("causal"),
                SavedMask::Keep(m) => Attr::Array(DynArray::Bool(m.clone())),
                SavedMask::Add(m) => Attr::Array(m.clone()),
            };
            vec![
                kv("mask", mask),
                kv("scale", scale),
                kv("dropout_p", dropout_p),
            ]
        });
        Ok(Tensor::from_op(
            out,
            "scaled_dot_product_attention",
            &parents,
            move |g, ctx| {
                let need = [0, 1, 2].map(|i| ctx.needs_grad(i));
                let out = ctx.output()?;
                ctx.with_inputs(&[0, 1, 2], |a| {
                    let mut cast: Vec<_> = a.iter().map(|x| x.as_dtype(dtype)).collect();
                    cast.extend([g.as_dtype(dtype), out.as_dtype(dtype)]);
                    let grads = match dtype {
                        DType::F32 => backward::<f32>(
                            &cast,
                            &stats,
                            probs.as_ref(),
                            &mask,
                            scale,
                            dropout,
                            need,
                        ),
                        DType::F64 => backward::<f64>(
                            &cast,
                            &stats,
                            probs.as_ref(),
                            &mask,
                            scale,
                            dropout,
                            need,
                        ),
                        other => Err(not_float(other)),
                    }?;
                    Ok(grads.into())
                })
            },
        )
        .recorded_with(attrs))
    }
}

/// The kernel over `[q, k, v, …]` (already in `T`'s dtype), the mask and the options.
fn kernel<'a, T: Element>(
    a: &'a [impl AsRef<DynArray>],
    mask: &'a SavedMask,
    scale: Option<f64>,
    dropout: Option<Dropout>,
) -> Result<Attention<'a, T>> {
    Ok(Attention {
        q: typed::<T>(a[0].as_ref())?,
        k: typed(a[1].as_ref())?,
        v: typed(a[2].as_ref())?,
        mask: mask.view()?,
        scale,
        dropout,
    })
}

/// The kernel's forward on `[q, k, v]` (already in `T`'s dtype): the output, the row statistics
/// and the probabilities when the kernel keeps them.
pub(super) fn forward<T: Element>(
    a: &[impl AsRef<DynArray>],
    mask: &SavedMask,
    scale: Option<f64>,
    dropout: Option<Dropout>,
    keep_probs: bool,
) -> Result<(DynArray, DynArray, Option<DynArray>)> {
    let f = kernel::<T>(a, mask, scale, dropout)?.forward_with(keep_probs)?;
    Ok((T::wrap(f.out), T::wrap(f.stats), f.probs.map(T::wrap)))
}

/// The kernel's backward on `[q, k, v, grad, out]` (in `T`'s dtype) with the forward's
/// statistics and probabilities.
pub(super) fn backward<T: Element>(
    a: &[impl AsRef<DynArray>],
    stats: &DynArray,
    probs: Option<&DynArray>,
    mask: &SavedMask,
    scale: Option<f64>,
    dropout: Option<Dropout>,
    need: [bool; 3],
) -> Result<[Option<DynArray>; 3]> {
    let attention = kernel::<T>(a, mask, scale, dropout)?;
    let saved = Saved {
        out: typed(a[4].as_ref())?,
        stats: typed(stats)?,
        probs: probs.map(typed).transpose()?,
    };
    let grads = attention.backward(typed(a[3].as_ref())?, saved, need)?;
    Ok(grads.map(|g| g.map(T::wrap)))
}
