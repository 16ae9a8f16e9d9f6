//! Tests of the attention kernels against the naive f64 reference (`reference.rs`), and by
//! finite differences.

use super::reference::{assert_close, filled, naive, to_f32, Case, RefMask};
use super::*;
use crate::Error;

/// The shapes exercised: plain, causal square and not, masks of every broadcast form, leading
/// axes that broadcast, several row blocks.
fn cases() -> Vec<(&'static str, Case)> {
    let keep = |shape: &[usize], seed: u64| {
        let r: NdArray<f64> = filled(shape, seed);
        // Roughly 70% kept; each row keeps at least its first column.
        let n = shape[shape.len() - 1];
        let data = r
            .data()
            .iter()
            .enumerate()
            .map(|(i, &x)| x > -0.4 || i % n == 0)
            .collect();
        NdArray::from_vec(data, shape).unwrap()
    };
    vec![
        (
            "plain",
            Case::new(&[2, 3, 5, 4], &[2, 3, 6, 4], &[2, 3, 6, 3], RefMask::None),
        ),
        (
            "causal",
            Case::new(&[2, 2, 7, 4], &[2, 2, 7, 4], &[2, 2, 7, 5], RefMask::Causal),
        ),
        (
            "causal L<S",
            Case::new(&[3, 4, 2], &[3, 9, 2], &[3, 9, 3], RefMask::Causal),
        ),
        (
            "causal L>S",
            Case::new(&[3, 9, 2], &[3, 4, 2], &[3, 4, 3], RefMask::Causal),
        ),
        (
            "causal, several row blocks",
            Case::new(&[2, 150, 3], &[2, 150, 3], &[2, 150, 2], RefMask::Causal),
        ),
        (
            "bool mask (L, S)",
            Case::new(
                &[2, 3, 5, 4],
                &[2, 3, 6, 4],
                &[2, 3, 6, 3],
                RefMask::Keep(keep(&[5, 6], 9)),
            ),
        ),
        (
            "bool mask (B, 1, L, S)",
            Case::new(
                &[2, 3, 5, 4],
                &[2, 3, 6, 4],
                &[2, 3, 6, 3],
                RefMask::Keep(keep(&[2, 1, 5, 6], 10)),
            ),
        ),
        (
            "float mask (B, H, 1, S)",
            Case::new(
                &[2, 3, 5, 4],
                &[2, 3, 6, 4],
                &[2, 3, 6, 3],
                RefMask::Add(filled(&[2, 3, 1, 6], 11)),
            ),
        ),
        (
            "float mask, several row blocks",
            Case::new(
                &[1, 130, 4],
                &[1, 70, 4],
                &[1, 70, 2],
                RefMask::Add(filled(&[130, 70], 12)),
            ),
        ),
        (
            "leading axes broadcast",
            Case::new(&[2, 3, 5, 4], &[3, 6, 4], &[1, 1, 6, 2], RefMask::None),
        ),
        (
            "2-D operands",
            Case::new(&[5, 4], &[6, 4], &[6, 3], RefMask::None),
        ),
        (
            "parallel size",
            Case::new(
                &[4, 4, 64, 32],
                &[4, 4, 64, 32],
                &[4, 4, 64, 32],
                RefMask::Causal,
            ),
        ),
        (
            "one long slice, its row blocks in parallel",
            Case::new(&[1, 300, 16], &[1, 300, 16], &[1, 300, 8], RefMask::Causal),
        ),
    ]
}

/// Both ways the backward may get the probabilities: kept by the forward, or recomputed.
const SAVE: [bool; 2] = [true, false];

#[test]
fn forward_and_backward_match_the_naive_reference_in_float64() {
    for ((name, case), save) in cases()
        .into_iter()
        .flat_map(|c| SAVE.map(|s| (c.clone(), s)))
    {
        let add = case.add_mask();
        let a = case.attention(&add);
        let f = a.forward_with(save).unwrap();
        assert_eq!(f.probs.is_some(), save);
        let g = filled::<f64>(f.out.shape(), 5);
        let want = naive(&case, &g);
        assert_close(name, &f.out, &want.out, 1e-12);
        let grads = a.backward(&g, f.saved(), [true; 3]).unwrap();
        for (which, (got, want)) in ["dq", "dk", "dv"].iter().zip(grads.iter().zip(&want.grads)) {
            assert_close(
                &format!("{name} {which}"),
                got.as_ref().unwrap(),
                want,
                1e-11,
            );
        }
    }
}

#[test]
fn float32_forward_and_backward_match_the_float64_reference() {
    for ((name, case), save) in cases()
        .into_iter()
        .flat_map(|c| SAVE.map(|s| (c.clone(), s)))
    {
        let (q, k, v) = (to_f32(&case.q), to_f32(&case.k), to_f32(&case.v));
        let add = case.add_mask().map(|m| to_f32(&m));
        let mask = match (&case.mask, &add) {
            (RefMask::None, _) => Mask::None,
            (RefMask::Causal, _) => Mask::Causal,
            (RefMask::Keep(m), _) => Mask::Keep(m),
            (RefMask::Add(_), Some(m)) => Mask::Add(m),
            (RefMask::Add(_), None) => unreachable!(),
        };
        let a = Attention {
            q: &q,
            k: &k,
            v: &v,
            mask,
            scale: None,
            dropout: None,
        };
        let f = a.forward_with(save).unwrap();
        let g64 = filled::<f64>(f.out.shape(), 5);
        let want = naive(&case, &g64);
        assert_close(name, &f.out, &want.out, 2e-5);
        let grads = a.backward(&to_f32(&g64), f.saved(), [true; 3]).unwrap();
        for (which, (got, want)) in ["dq", "dk", "dv"].iter().zip(grads.iter().zip(&want.grads)) {
            assert_close(
                &format!("{name} {which}"),
                got.as_ref().unwrap(),
                want,
                1e-4,
            );
        }
    }
}

#[test]
fn gradients_with_dropout_match_finite_differences() {
    let ops = [
        filled::<f64>(&[2, 4, 3], 1),
        filled(&[2, 5, 3], 2),
        filled(&[2, 5, 2], 3),
    ];
    let dropout = Some(Dropout { p: 0.3, seed: 42 });
    let attention = |o: &'_ [NdArray<f64>; 3], mask, save| -> AttentionForward<f64> {
        let a = Attention {
            q: &o[0],
            k: &o[1],
            v: &o[2],
            mask,
            scale: Some(0.7),
            dropout,
        };
        a.forward_with(save).unwrap()
    };
    for (mask, save) in [Mask::None, Mask::Causal]
        .into_iter()
        .flat_map(|m| SAVE.map(|s| (m, s)))
    {
        let f = attention(&ops, mask, save);
        let g = filled::<f64>(f.out.shape(), 8);
        let a = Attention {
            q: &ops[0],
            k: &ops[1],
            v: &ops[2],
            mask,
            scale: Some(0.7),
            dropout,
        };
        let grads = a.backward(&g, f.saved(), [true; 3]).unwrap();
        // Σ out ∘ g with one element of one operand moved by d.
        let loss = |which: usize, idx: usize, d: f64| {
            let mut o = ops.clone();
            o[which].data_mut()[idx] += d;
            let out = attention(&o, mask, false).out;
            out.data()
                .iter()
                .zip(g.data())
                .map(|(x, y)| x * y)
                .sum::<f64>()
        };
        let h = 1e-6;
        for (which, grad) in grads.iter().enumerate() {
            let grad = grad.as_ref().unwrap();
            for idx in 0..ops[which].size() {
                let fd = (loss(which, idx, h) - loss(which, idx, -h)) / (2.0 * h);
                let got = grad.data()[idx];
                assert!(
                    (fd - got).abs() < 1e-7,
                    "operand {which}[{idx}]: {got} vs {fd}"
                );
            }
        }
    }
}

#[test]
fn dropout_is_reproducible_from_its_seed_and_drops_about_p_of_the_weights() {
    let (q, k, v) = (
        filled::<f64>(&[8, 32, 4], 1),
        filled(&[8, 32, 4], 2),
        filled(&[8, 32, 32], 3),
    );
    let run = |seed: u64, p: f64| {
        let dropout = Some(Dropout { p, seed });
        Attention {
            q: &q,
            k: &k,
            v: &v,
            mask: Mask::None,
            scale: None,
            dropout,
        }
        .forward()
        .unwrap()
        .out
    };
    assert_eq!(run(3, 0.25), run(3, 0.25));
    assert_ne!(run(3, 0.25), run(4, 0.25));
    // p = 1 drops every weight: the output is 0, not NaN.
    assert!(run(3, 1.0).data().iter().all(|&x| x == 0.0));
    // The fraction kept, counted through the mask function itself.
    let d = DropMask::new(Some(Dropout { p: 0.25, seed: 9 }))
        .unwrap()
        .unwrap();
    let kept = (0..100_000u64).filter(|&i| d.factor(i, 1.0) != 0.0).count();
    assert!((kept as f64 / 1e5 - 0.75).abs() < 0.01, "{kept}");
    let err = Attention {
        q: &q,
        k: &k,
        v: &v,
        mask: Mask::None,
        scale: None,
        dropout: Some(Dropout { p: 1.5, seed: 0 }),
    }
    .forward()
    .unwrap_err();
    assert!(matches!(err, Error::Value(ref m) if m.contains("dropout_p") && m.contains("1.5")));
}

#[test]
fn a_row_with_every_position_masked_is_zero_with_zero_gradients_and_a_nan_score_stays_nan() {
    let (q, k, v) = (
        filled::<f64>(&[3, 2], 1),
        filled(&[4, 2], 2),
        filled(&[4, 2], 3),
    );
    let keep = NdArray::from_vec(
        vec![
            true, false, true, true, false, false, false, false, false, true, false, false,
        ],
        &[3, 4],
    )
    .unwrap();
    let a = Attention {
        q: &q,
        k: &k,
        v: &v,
        mask: Mask::Keep(&keep),
        scale: None,
        dropout: None,
    };
    let f = a.forward().unwrap();
    assert_eq!(&f.out.data()[2..4], &[0.0, 0.0]);
    let case = Case {
        q: q.clone(),
        k: k.clone(),
        v: v.clone(),
        mask: RefMask::Keep(keep.clone()),
        scale: None,
    };
    let g = filled::<f64>(&[3, 2], 4);
    let want = naive(&case, &g);
    // The reference's masked row is NaN (0/0); every other element must agree.
    let rows = |a: &NdArray<f64>| -> Vec<f64> { [&a.data()[..2], &a.data()[4..]].concat() };
    assert_eq!(rows(&f.out).len(), 4);
    for (x, y) in rows(&f.out).iter().zip(rows(&want.out)) {
        assert!((x - y).abs() < 1e-12);
    }
    let [dq, dk, dv] = a.backward(&g, f.saved(), [true; 3]).unwrap();
    let dq = dq.unwrap();
    assert_eq!(&dq.data()[2..4], &[0.0, 0.0]);
    assert!(dk
        .unwrap()
        .data()
        .iter()
        .chain(dv.unwrap().data())
        .all(|x| x.is_finite()));
    // A NaN among the scores is not a masked row: it spreads, as in PyTorch.
    let mut qn = q.clone();
    qn.data_mut()[0] = f64::NAN;
    let a = Attention {
        q: &qn,
        k: &k,
        v: &v,
        mask: Mask::Keep(&keep),
        scale: None,
        dropout: None,
    };
    let out = a.forward().unwrap().out;
    assert!(out.data()[..2].iter().all(|x| x.is_nan()));
    assert!(out.data()[4..].iter().all(|x| x.is_finite()));
}

#[test]
fn no_keys_give_a_zero_output_and_zero_gradients() {
    let (q, k, v) = (
        filled::<f64>(&[2, 3, 2], 1),
        filled(&[2, 0, 2], 2),
        filled(&[2, 0, 4], 3),
    );
    for mask in [Mask::None, Mask::Causal] {
        let a = Attention {
            q: &q,
            k: &k,
            v: &v,
            mask,
            scale: None,
            dropout: None,
        };
        let f = a.forward().unwrap();
        assert_eq!(f.out.shape(), &[2, 3, 4]);
        assert!(f.out.data().iter().all(|&x| x == 0.0));
        let g = filled::<f64>(&[2, 3, 4], 4);
        let [dq, dk, dv] = a.backward(&g, f.saved(), [true; 3]).unwrap();
        assert!(dq.unwrap().data().iter().all(|&x| x == 0.0));
        assert_eq!(dk.unwrap().shape(), &[2, 0, 2]);
        assert_eq!(dv.unwrap().shape(), &[2, 0, 4]);
    }
}

#[test]
fn only_the_gradients_asked_for_are_computed() {
    let case = Case::new(&[2, 5, 3], &[2, 6, 3], &[2, 6, 4], RefMask::Causal);
    let a = case.attention(&None);
    let f = a.forward().unwrap();
    let g = filled::<f64>(f.out.shape(), 5);
    let want = naive(&case, &g);
    let [dq, dk, dv] = a.backward(&g, f.saved(), [false, true, false]).unwrap();
    assert!(dq.is_none() && dv.is_none());
    assert_close("dk", &dk.unwrap(), &want.grads[1], 1e-12);
}

#[test]
fn the_forward_keeps_the_probabilities_only_within_its_memory_budget() {
    let run = |l: usize| {
        let (q, k, v) = (
            filled::<f64>(&[l, 1], 1),
            filled(&[1024, 1], 2),
            filled(&[1024, 1], 3),
        );
        let a = Attention {
            q: &q,
            k: &k,
            v: &v,
            mask: Mask::Causal,
            scale: None,
            dropout: None,
        };
        a.forward().unwrap().probs.is_some()
    };
    let fits = SAVE_PROBS_BYTES / 8 / 1024;
    assert!(run(fits));
    assert!(!run(fits + 1));
}

#[test]
fn mismatched_shapes_are_errors_that_name_them() {
    let arr = |s: &[usize]| filled::<f64>(s, 1);
    let run = |q: &[usize], k: &[usize], v: &[usize]| {
        let (q, k, v) = (arr(q), arr(k), arr(v));
        Attention {
            q: &q,
            k: &k,
            v: &v,
            mask: Mask::None,
            scale: None,
            dropout: None,
        }
        .forward()
        .unwrap_err()
        .to_string()
    };
    let msg = run(&[2, 5, 4], &[2, 6, 3], &[2, 6, 3]);
    assert!(
        msg.contains("(2, 5, 4)") && msg.contains("(2, 6, 3)") && msg.contains("4 and 3"),
        "{msg}"
    );
    let msg = run(&[2, 5, 4], &[2, 6, 4], &[2, 7, 3]);
    assert!(
        msg.contains("(2, 7, 3)") && msg.contains("6 and 7"),
        "{msg}"
    );
    let msg = run(&[2, 5, 4], &[3, 6, 4], &[2, 6, 3]);
    assert!(
        msg.contains("broadcast") && msg.contains("(3, 6, 4)"),
        "{msg}"
    );
    let msg = run(&[4], &[6, 4], &[6, 3]);
    assert!(msg.contains("query") && msg.contains("(4,)"), "{msg}");
    let (q, k, v) = (arr(&[2, 5, 4]), arr(&[2, 6, 4]), arr(&[2, 6, 3]));
    for shape in [&[5, 7][..], &[6, 5], &[3, 5, 6], &[1, 2, 5, 6]] {
        let m = NdArray::full(shape, true).unwrap();
        let err = Attention {
            q: &q,
            k: &k,
            v: &v,
            mask: Mask::Keep(&m),
            scale: None,
            dropout: None,
        }
        .forward()
        .unwrap_err();
        let msg = err.to_string();
        assert!(matches!(err, Error::Shape(_)), "{msg}");
        assert!(
            msg.contains(&fmt_shape(shape)) && msg.contains("(2, 5, 6)"),
            "{msg}"
        );
    }
}
