//! The naive f64 reference the attention tests compare against: scores materialised, masks
//! applied elementwise, the softmax and its gradient written out loop by loop.

use super::{Attention, Mask};
use crate::ndarray::{Float, NdArray};
use crate::shape::{broadcast_shapes, broadcast_strides, size_of, strides_of};

pub(super) use crate::test_util::filled;

pub(super) fn to_f32(a: &NdArray<f64>) -> NdArray<f32> {
    a.map(|&x| x as f32)
}

/// The masks of a test case, in f64 (the kernel's float mask is converted per dtype).
#[derive(Clone)]
pub(super) enum RefMask {
    None,
    Causal,
    Keep(NdArray<bool>),
    Add(NdArray<f64>),
}

/// One attention problem in f64.
#[derive(Clone)]
pub(super) struct Case {
    pub(super) q: NdArray<f64>,
    pub(super) k: NdArray<f64>,
    pub(super) v: NdArray<f64>,
    pub(super) mask: RefMask,
    pub(super) scale: Option<f64>,
}

impl Case {
    pub(super) fn new(qs: &[usize], ks: &[usize], vs: &[usize], mask: RefMask) -> Self {
        Self {
            q: filled(qs, 1),
            k: filled(ks, 2),
            v: filled(vs, 3),
            mask,
            scale: None,
        }
    }

    pub(super) fn attention<'a>(&'a self, add: &'a Option<NdArray<f64>>) -> Attention<'a, f64> {
        Attention {
            q: &self.q,
            k: &self.k,
            v: &self.v,
            mask: match (&self.mask, add) {
                (RefMask::None, _) => Mask::None,
                (RefMask::Causal, _) => Mask::Causal,
                (RefMask::Keep(m), _) => Mask::Keep(m),
                (RefMask::Add(_), Some(m)) => Mask::Add(m),
                (RefMask::Add(_), None) => unreachable!(),
            },
            scale: self.scale,
            dropout: None,
        }
    }

    pub(super) fn add_mask(&self) -> Option<NdArray<f64>> {
        match &self.mask {
            RefMask::Add(m) => Some(m.clone()),
            _ => None,
        }
    }
}

/// The naive reference: output, and the gradients of q, k, v (in the broadcast batch shape)
/// for the upstream gradient `g`.
pub(super) struct Naive {
    pub(super) out: NdArray<f64>,
    pub(super) grads: [NdArray<f64>; 3],
}

pub(super) fn naive(c: &Case, g: &NdArray<f64>) -> Naive {
    let (qs, ks, vs) = (c.q.shape(), c.k.shape(), c.v.shape());
    let nd = |s: &[usize]| s.len() - 2;
    let (l, e) = (qs[nd(qs)], qs[nd(qs) + 1]);
    let (s, ev) = (ks[nd(ks)], vs[nd(vs) + 1]);
    let batch = broadcast_shapes("t", &qs[..nd(qs)], &ks[..nd(ks)]).unwrap();
    let batch = broadcast_shapes("t", &batch, &vs[..nd(vs)]).unwrap();
    let count = size_of(&batch);
    let bstr = strides_of(&batch);
    let mut full = batch.clone();
    full.extend([l, s]);
    let off = |shape: &[usize], b: usize, mat: usize| -> usize {
        let st = broadcast_strides(&shape[..shape.len() - 2], &batch);
        (0..batch.len())
            .map(|d| (b / bstr[d] % batch[d]) * st[d] * mat)
            .sum()
    };
    let mask_at = |shape: &[usize], b: usize, i: usize, j: usize| -> usize {
        let st = broadcast_strides(shape, &full);
        let n = full.len();
        let mut o: usize = (0..batch.len())
            .map(|d| (b / bstr[d] % batch[d]) * st[d])
            .sum();
        o += i * st[n - 2] + j * st[n - 1];
        o
    };
    let scale = c.scale.unwrap_or(1.0 / (e as f64).sqrt());
    let mut out = vec![0.0; count * l * ev];
    let (mut dq, mut dk, mut dv) = (
        vec![0.0; count * l * e],
        vec![0.0; count * s * e],
        vec![0.0; count * s * ev],
    );
    for b in 0..count {
        let (qo, ko, vo) = (off(qs, b, l * e), off(ks, b, s * e), off(vs, b, s * ev));
        let mut p = vec![vec![0.0; s]; l];
        for (i, pi) in p.iter_mut().enumerate() {
            for (j, pij) in pi.iter_mut().enumerate() {
                let dot: f64 = (0..e)
                    .map(|t| c.q.data()[qo + i * e + t] * c.k.data()[ko + j * e + t])
                    .sum();
                *pij = dot * scale
                    + match &c.mask {
                        RefMask::None => 0.0,
                        RefMask::Causal if j > i => f64::NEG_INFINITY,
                        RefMask::Causal => 0.0,
                        RefMask::Keep(m) if m.data()[mask_at(m.shape(), b, i, j)] => 0.0,
                        RefMask::Keep(_) => f64::NEG_INFINITY,
                        RefMask::Add(m) => m.data()[mask_at(m.shape(), b, i, j)],
                    };
            }
            let mx = pi.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let z: f64 = pi.iter().map(|x| (x - mx).exp()).sum();
            pi.iter_mut().for_each(|x| *x = (*x - mx).exp() / z);
        }
        for i in 0..l {
            for t in 0..ev {
                out[(b * l + i) * ev + t] =
                    (0..s).map(|j| p[i][j] * c.v.data()[vo + j * ev + t]).sum();
            }
        }
        // dP = G Vᵀ; dS = P ∘ (dP - rowsum(P ∘ dP)); dQ = scale dS K; dK = scale dSᵀ Q; dV = Pᵀ G.
        let gd = |i: usize, t: usize| g.data()[(b * l + i) * ev + t];
        for i in 0..l {
            let dp: Vec<f64> = (0..s)
                .map(|j| {
                    (0..ev)
                        .map(|t| gd(i, t) * c.v.data()[vo + j * ev + t])
                        .sum()
                })
                .collect();
            let rs: f64 = (0..s).map(|j| p[i][j] * dp[j]).sum();
            for j in 0..s {
                let ds = p[i][j] * (dp[j] - rs) * scale;
                for t in 0..e {
                    dq[(b * l + i) * e + t] += ds * c.k.data()[ko + j * e + t];
                    dk[(b * s + j) * e + t] += ds * c.q.data()[qo + i * e + t];
                }
                for t in 0..ev {
                    dv[(b * s + j) * ev + t] += p[i][j] * gd(i, t);
                }
            }
        }
    }
    let sh = |r: usize, cc: usize| {
        let mut v = batch.clone();
        v.extend([r, cc]);
        v
    };
    Naive {
        out: NdArray::from_vec(out, &sh(l, ev)).unwrap(),
        grads: [
            NdArray::from_vec(dq, &sh(l, e)).unwrap(),
            NdArray::from_vec(dk, &sh(s, e)).unwrap(),
            NdArray::from_vec(dv, &sh(s, ev)).unwrap(),
        ],
    }
}

pub(super) fn assert_close<T: Float>(what: &str, got: &NdArray<T>, want: &NdArray<f64>, tol: f64) {
    assert_eq!(got.shape(), want.shape(), "{what}: shape");
    for (i, (g, w)) in got.data().iter().zip(want.data()).enumerate() {
        let g = g.to_f64_lossless();
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "{what}[{i}]: got {g}, want {w}"
        );
    }
}
