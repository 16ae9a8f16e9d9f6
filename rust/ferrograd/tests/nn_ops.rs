//! Neural-network ops — linear, conv2d, max_pool2d, gelu, dropout, cross_entropy, nll_loss,
//! clamp, maximum/minimum: forward on exact small cases, every backward by finite
//! differences (`common::check_grad`), and the errors bad arguments get.

mod common;

use std::sync::Mutex;

use common::{assert_close, check_grad, grad, leaf, sample, t32, t64, vals, DTYPES};
use ferrograd::{random, DType, Error, Result, Tensor};

/// Serialises the tests that seed and draw from the one global generator.
static RNG: Mutex<()> = Mutex::new(());

#[track_caller]
fn assert_err(r: Result<Tensor>, kind: fn(&Error) -> bool, parts: &[&str]) {
    let err = r.expect_err("the call fails");
    assert!(kind(&err), "unexpected error kind: {err:?}");
    let msg = err.to_string();
    for p in parts {
        assert!(msg.contains(p), "{msg:?} does not mention {p:?}");
    }
}

fn is_shape(e: &Error) -> bool {
    matches!(e, Error::Shape(_))
}

fn is_value(e: &Error) -> bool {
    matches!(e, Error::Value(_))
}

// ---------------------------------------------------------------------------------------
// linear

#[test]
fn linear_computes_x_times_weight_transposed_plus_bias() {
    let x = t64(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    let w = t64(&[1., 0., -1., 2., 1., 0.5], &[2, 3]);
    let b = t64(&[10., -10.], &[2]);
    let y = x.linear(&w, Some(&b)).unwrap();
    assert_eq!(y.shape(), vec![2, 2]);
    // row 0: (1 - 3, 2 + 2 + 1.5) + b; row 1: (4 - 6, 8 + 5 + 3) + b
    assert_eq!(vals(&y), vec![8., -4.5, 8., 6.]);
    let no_bias = x.linear(&w, None).unwrap();
    assert_eq!(vals(&no_bias), vec![-2., 5.5, -2., 16.]);
}

#[test]
fn linear_takes_1d_and_3d_inputs_and_promotes_mixed_dtypes() {
    let w = t64(&[1., 2., 3., 4., 5., 6.], &[3, 2]);
    let y = t64(&[1., -1.], &[2]).linear(&w, None).unwrap();
    assert_eq!((y.shape(), vals(&y)), (vec![3], vec![-1., -1., -1.]));
    let y = common::arange(&[2, 2, 2]).linear(&w, None).unwrap();
    assert_eq!(y.shape(), vec![2, 2, 3]);
    let mixed = t32(&[1., 1.], &[2])
        .linear(&w, Some(&t32(&[1., 1., 1.], &[3])))
        .unwrap();
    assert_eq!(mixed.dtype(), DType::F64);
    assert_eq!(vals(&mixed), vec![4., 8., 12.]);
}

#[test]
fn linear_gradients_match_finite_differences_for_1d_2d_and_3d_inputs() {
    for xs in [&[3][..], &[4, 3], &[2, 2, 3]] {
        check_grad(
            |t| t[0].linear(&t[1], Some(&t[2])),
            &[sample(xs, 1), sample(&[2, 3], 2), sample(&[2], 3)],
        );
        check_grad(
            |t| t[0].linear(&t[1], None),
            &[sample(xs, 4), sample(&[5, 3], 5)],
        );
    }
}

#[test]
fn linear_gives_gradients_only_to_inputs_that_require_them() {
    let x = t64(&[1., 2.], &[1, 2]);
    let w = leaf(&[1., 1., 1., 1.], &[2, 2]);
    x.linear(&w, None)
        .and_then(|y| y.sum(None, false))
        .and_then(|s| s.backward(None, false))
        .unwrap();
    assert!(x.grad().is_none());
    assert_eq!(grad(&w), vec![1., 2., 1., 2.]);
}

#[test]
fn linear_rejects_mismatched_shapes_naming_them() {
    let x = t64(&[0.; 6], &[2, 3]);
    let w = t64(&[0.; 8], &[2, 4]);
    assert_err(
        x.linear(&w, None),
        is_shape,
        &["linear", "(2, 3)", "(2, 4)", "3 != 4"],
    );
    let w = t64(&[0.; 6], &[2, 3]);
    let bad_bias = t64(&[0.; 3], &[3]);
    assert_err(
        x.linear(&w, Some(&bad_bias)),
        is_shape,
        &["bias", "(3,)", "(2,)"],
    );
    assert_err(x.linear(&t64(&[0.; 3], &[3]), None), is_shape, &["2-D"]);
    assert_err(t64(&[1.], &[]).linear(&w, None), is_shape, &["0-d"]);
}

// ---------------------------------------------------------------------------------------
// conv2d

/// The textbook six loops (plus the batch): y[n, o, i, j] = b[o] + Σ x[n, c, i·s + ki - p, …]·w.
#[allow(clippy::too_many_arguments)]
fn naive_conv(
    x: &[f64],
    xs: [usize; 4],
    w: &[f64],
    ws: [usize; 4],
    b: Option<&[f64]>,
    stride: (usize, usize),
    pad: (usize, usize),
) -> (Vec<f64>, Vec<usize>) {
    let [n, c, h, wd] = xs;
    let [o, _, kh, kw] = ws;
    let ho = (h + 2 * pad.0 - kh) / stride.0 + 1;
    let wo = (wd + 2 * pad.1 - kw) / stride.1 + 1;
    let mut y = vec![0.0; n * o * ho * wo];
    for ni in 0..n {
        for oi in 0..o {
            for i in 0..ho {
                for j in 0..wo {
                    let mut acc = b.map_or(0.0, |b| b[oi]);
                    for ci in 0..c {
                        for ki in 0..kh {
                            for kj in 0..kw {
                                let iy = (i * stride.0 + ki) as isize - pad.0 as isize;
                                let ix = (j * stride.1 + kj) as isize - pad.1 as isize;
                                if iy < 0 || ix < 0 || iy >= h as isize || ix >= wd as isize {
                                    continue;
                                }
                                let xv = x[((ni * c + ci) * h + iy as usize) * wd + ix as usize];
                                acc += xv * w[((oi * c + ci) * kh + ki) * kw + kj];
                            }
                        }
                    }
                    y[((ni * o + oi) * ho + i) * wo + j] = acc;
                }
            }
        }
    }
    (y, vec![n, o, ho, wo])
}

/// Input shape, weight shape, stride, padding.
type ConvCase = ([usize; 4], [usize; 4], (usize, usize), (usize, usize));

#[test]
fn conv2d_matches_a_naive_six_loop_reference() {
    let cases: [ConvCase; 5] = [
        ([1, 1, 4, 4], [1, 1, 3, 3], (1, 1), (0, 0)),
        ([2, 3, 5, 6], [4, 3, 3, 3], (1, 1), (1, 1)),
        ([2, 2, 7, 5], [3, 2, 2, 3], (2, 1), (1, 0)),
        ([1, 2, 6, 6], [2, 2, 3, 1], (2, 3), (0, 2)),
        ([3, 1, 3, 3], [2, 1, 3, 3], (1, 1), (2, 2)),
    ];
    for (xs, ws, stride, pad) in cases {
        let (x, _) = sample(&xs, 7);
        let (w, _) = sample(&ws, 8);
        let (b, _) = sample(&[ws[0]], 9);
        for dtype in DTYPES {
            let t = |d: &[f64], s: &[usize]| common::tensor(d, s, dtype, false);
            let y = t(&x, &xs)
                .conv2d(&t(&w, &ws), Some(&t(&b, &[ws[0]])), stride, pad)
                .unwrap();
            let (want, shape) = naive_conv(&x, xs, &w, ws, Some(&b), stride, pad);
            assert_eq!((y.shape(), y.dtype()), (shape, dtype), "{xs:?} {ws:?}");
            assert_close(&vals(&y), &want, common::tol(dtype) * 20.0);
        }
        let y = t64(&x, &xs)
            .conv2d(&t64(&w, &ws), None, stride, pad)
            .unwrap();
        assert_close(
            &vals(&y),
            &naive_conv(&x, xs, &w, ws, None, stride, pad).0,
            1e-12,
        );
    }
}

#[test]
fn conv2d_gradients_match_finite_differences_with_stride_padding_and_bias() {
    // stride 2, padding 1, bias, square kernel
    check_grad(
        |t| t[0].conv2d(&t[1], Some(&t[2]), (2, 2), (1, 1)),
        &[
            sample(&[2, 2, 5, 5], 10),
            sample(&[3, 2, 3, 3], 11),
            sample(&[3], 12),
        ],
    );
    // non-square kernel, unequal strides and paddings, no bias
    check_grad(
        |t| t[0].conv2d(&t[1], None, (1, 2), (0, 1)),
        &[sample(&[1, 3, 4, 6], 13), sample(&[2, 3, 2, 3], 14)],
    );
}

#[test]
fn conv2d_over_a_batch_larger_than_one_chunk_equals_per_image_convolutions() {
    // 36 × 1024 column elements per image: 4 Mi of them hold 113 images, so 120 is 2 chunks.
    let (xs, ws) = ([120, 4, 32, 32], [2, 4, 3, 3]);
    let (x, _) = sample(&xs, 15);
    let (w, _) = sample(&ws, 16);
    let xt = leaf(&x, &xs);
    let wt = leaf(&w, &ws);
    let y = xt.conv2d(&wt, None, (1, 1), (1, 1)).unwrap();
    assert_close(
        &vals(&y),
        &naive_conv(&x, xs, &w, ws, None, (1, 1), (1, 1)).0,
        1e-12,
    );
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    // The same sums image by image: dX of an image, and dW summed over the images.
    let img = 4 * 32 * 32;
    let mut dw = vec![0.0; w.len()];
    for i in [0, 112, 113, 119] {
        let xi = leaf(&x[i * img..(i + 1) * img], &[1, 4, 32, 32]);
        let wi = leaf(&w, &ws);
        let yi = xi.conv2d(&wi, None, (1, 1), (1, 1)).unwrap();
        yi.sum(None, false).unwrap().backward(None, false).unwrap();
        assert_close(&grad(&xt)[i * img..(i + 1) * img], &grad(&xi), 1e-12);
        dw.iter_mut().zip(grad(&wi)).for_each(|(a, b)| *a += b);
    }
    assert!(grad(&wt).iter().zip(&dw).any(|(a, b)| (a - b).abs() > 1.0));
}

#[test]
fn conv2d_rejects_bad_channels_kernels_strides_and_shapes() {
    let x = t64(&[0.; 2 * 3 * 4 * 4], &[2, 3, 4, 4]);
    let w = t64(&[0.; 5 * 2 * 3 * 3], &[5, 2, 3, 3]);
    assert_err(
        x.conv2d(&w, None, (1, 1), (0, 0)),
        is_shape,
        &["conv2d", "3 channels", "expects 2"],
    );
    let big = t64(&[0.; 3 * 7 * 7], &[1, 3, 7, 7]);
    assert_err(
        x.conv2d(&big, None, (1, 1), (1, 1)),
        is_shape,
        &["kernel (7, 7)", "larger than the padded input (6, 6)"],
    );
    let w = t64(&[0.; 3 * 9], &[1, 3, 3, 3]);
    assert_err(
        x.conv2d(&w, None, (0, 1), (0, 0)),
        is_value,
        &["stride", "(0, 1)"],
    );
    assert_err(
        t64(&[0.; 16], &[4, 4]).conv2d(&w, None, (1, 1), (0, 0)),
        is_shape,
        &["(N, C, H, W)"],
    );
    assert_err(
        x.conv2d(&t64(&[0.; 9], &[3, 3]), None, (1, 1), (0, 0)),
        is_shape,
        &["4-D"],
    );
    assert_err(
        x.conv2d(&w, Some(&t64(&[0.; 2], &[2])), (1, 1), (0, 0)),
        is_shape,
        &["bias", "(2,)", "(1,)"],
    );
}

// ---------------------------------------------------------------------------------------
// max_pool2d

#[test]
fn max_pool2d_takes_window_maxima_by_hand() {
    let x = common::arange(&[1, 1, 4, 4]);
    let y = x.max_pool2d((2, 2), (2, 2), (0, 0)).unwrap();
    assert_eq!(
        (y.shape(), vals(&y)),
        (vec![1, 1, 2, 2], vec![5., 7., 13., 15.])
    );
    // 3×3 windows every 2 with padding 1 (padding never wins: it counts as -inf).
    let neg = t64(
        &vals(&x).iter().map(|v| -v).collect::<Vec<_>>(),
        &[1, 1, 4, 4],
    );
    let y = neg.max_pool2d((3, 3), (2, 2), (1, 1)).unwrap();
    assert_eq!(
        (y.shape(), vals(&y)),
        (vec![1, 1, 2, 2], vec![0., -1., -4., -5.])
    );
    // a non-square kernel with a stride unlike it
    let y = x.max_pool2d((1, 3), (2, 1), (0, 0)).unwrap();
    assert_eq!(
        (y.shape(), vals(&y)),
        (vec![1, 1, 2, 2], vec![2., 3., 10., 11.])
    );
}

#[test]
fn max_pool2d_propagates_nan_and_sends_a_tie_to_the_first_maximum() {
    let x = leaf(&[1., f64::NAN, 0., 2., 3., 3., 3., 3.], &[1, 2, 2, 2]);
    let y = x.max_pool2d((2, 2), (2, 2), (0, 0)).unwrap();
    assert!(vals(&y)[0].is_nan());
    assert_eq!(vals(&y)[1], 3.0);
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![0., 1., 0., 0., 1., 0., 0., 0.]);
}

#[test]
fn max_pool2d_gradients_match_finite_differences_with_overlap_and_padding() {
    check_grad(
        |t| t[0].max_pool2d((3, 3), (2, 2), (1, 1)),
        &[sample(&[2, 2, 5, 5], 20)],
    );
    check_grad(
        |t| t[0].max_pool2d((2, 3), (1, 2), (1, 0)),
        &[sample(&[1, 2, 4, 5], 21)],
    );
}

#[test]
fn max_pool2d_rejects_wide_padding_zero_stride_and_oversized_kernels() {
    let x = t64(&[0.; 16], &[1, 1, 4, 4]);
    assert_err(
        x.max_pool2d((2, 2), (1, 1), (2, 0)),
        is_value,
        &["padding (2, 0)", "half"],
    );
    assert_err(x.max_pool2d((2, 2), (0, 0), (0, 0)), is_value, &["stride"]);
    assert_err(
        x.max_pool2d((5, 1), (1, 1), (0, 0)),
        is_shape,
        &["kernel (5, 1)", "larger"],
    );
    assert_err(
        x.max_pool2d((0, 1), (1, 1), (0, 0)),
        is_value,
        &["kernel size"],
    );
    assert_err(
        t64(&[0.; 4], &[2, 2]).max_pool2d((1, 1), (1, 1), (0, 0)),
        is_shape,
        &["(N, C, H, W)"],
    );
}

// ---------------------------------------------------------------------------------------
// gelu, dropout, clamp, maximum/minimum

#[test]
fn gelu_matches_the_exact_erf_form() {
    let xs = [-3., -1., 0., 0.5, 1., 2.];
    let want = [
        -0.00404969409489031,
        -0.15865525393145707,
        0.0,
        0.34573123063700656,
        0.8413447460685429,
        1.9544997361036416,
    ];
    assert_close(&vals(&t64(&xs, &[6]).gelu().unwrap()), &want, 1e-13);
    let y32 = t32(&xs, &[6]).gelu().unwrap();
    assert_eq!(y32.dtype(), DType::F32);
    assert_close(&vals(&y32), &want, 1e-6);
}

#[test]
fn gelu_gradient_matches_finite_differences() {
    check_grad(|t| t[0].gelu(), &[sample(&[3, 4], 30)]);
}

#[test]
fn dropout_is_the_identity_in_eval_mode_and_at_p_zero() {
    let x = leaf(&[1., 2., 3.], &[3]);
    assert!(x.dropout(0.5, false).unwrap().shares_storage(&x));
    assert!(x.dropout(0.0, true).unwrap().shares_storage(&x));
}

#[test]
fn dropout_keeps_about_one_minus_p_scaled_by_its_inverse_and_p_one_gives_zeros() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    random::manual_seed(3);
    let x = Tensor::ones(&[10_000], DType::F32, false).unwrap();
    let y = vals(&x.dropout(0.25, true).unwrap());
    let kept = y.iter().filter(|&&v| v != 0.0).count();
    assert!((7_250..7_750).contains(&kept), "kept {kept} of 10000");
    assert!(y.iter().all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-6));
    assert!(vals(&x.dropout(1.0, true).unwrap())
        .iter()
        .all(|&v| v == 0.0));
}

#[test]
fn dropout_backward_multiplies_by_the_same_scaled_mask() {
    let _rng = RNG.lock().unwrap_or_else(|e| e.into_inner());
    check_grad(
        |t| {
            random::manual_seed(11);
            t[0].dropout(0.4, true)
        },
        &[sample(&[4, 5], 31)],
    );
    random::manual_seed(11);
    let x = leaf(&sample(&[20], 32).0, &[20]);
    let y = x.dropout(0.4, true).unwrap();
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    let expected: Vec<f64> = vals(&y)
        .iter()
        .map(|&v| if v == 0.0 { 0.0 } else { 1.0 / 0.6 })
        .collect();
    assert_close(&grad(&x), &expected, 1e-12);
}

#[test]
fn dropout_rejects_probabilities_outside_zero_to_one() {
    let x = t64(&[1.], &[1]);
    for p in [-0.1, 1.5, f64::NAN] {
        assert_err(
            x.dropout(p, true),
            is_value,
            &["dropout", "between 0 and 1"],
        );
    }
}

#[test]
fn clamp_limits_values_keeps_nan_and_passes_gradient_at_the_bounds() {
    let x = leaf(&[-2., -1., 0., 1., 2., f64::NAN], &[6]);
    let y = x.clamp(Some(-1.0), Some(1.0)).unwrap();
    assert_close(&vals(&y), &[-1., -1., 0., 1., 1., f64::NAN], 0.0);
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![0., 1., 1., 1., 0., 0.]);
    let only_min = t64(&[-2., 3.], &[2]).clamp(Some(0.0), None).unwrap();
    assert_eq!(vals(&only_min), vec![0., 3.]);
    let crossed = t64(&[-2., 3.], &[2]).clamp(Some(1.0), Some(0.0)).unwrap();
    assert_eq!(vals(&crossed), vec![0., 0.]);
    assert_err(
        t64(&[1.], &[1]).clamp(None, None),
        is_value,
        &["clamp", "min", "max"],
    );
}

#[test]
fn clamp_gradient_matches_finite_differences_away_from_the_bounds() {
    check_grad(
        |t| t[0].clamp(Some(-0.93), Some(1.17)),
        &[sample(&[4, 5], 33)],
    );
    check_grad(|t| t[0].clamp(None, Some(0.31)), &[sample(&[7], 34)]);
}

#[test]
fn maximum_and_minimum_broadcast_propagate_nan_and_split_ties() {
    let a = leaf(&[1., 5., 3., f64::NAN], &[4]);
    let b = leaf(&[3.], &[1]);
    let hi = a.maximum(&b).unwrap();
    assert_close(&vals(&hi), &[3., 5., 3., f64::NAN], 0.0);
    hi.sum(None, false).unwrap().backward(None, false).unwrap();
    assert_eq!(grad(&a), vec![0., 1., 0.5, 1.]);
    assert_eq!(grad(&b), vec![1. + 0.5 + 1.]);
    let lo = t64(&[1., 5.], &[2, 1])
        .minimum(&t64(&[2., 3., 4.], &[3]))
        .unwrap();
    assert_eq!(
        (lo.shape(), vals(&lo)),
        (vec![2, 3], vec![1., 1., 1., 2., 3., 4.])
    );
}

#[test]
fn maximum_and_minimum_gradients_match_finite_differences_with_broadcasting() {
    let inputs = || vec![sample(&[2, 3], 35), sample(&[3], 36)];
    check_grad(|t| t[0].maximum(&t[1]), &inputs());
    check_grad(|t| t[1].minimum(&t[0]), &inputs());
}

// ---------------------------------------------------------------------------------------
// cross_entropy and nll_loss

/// log-softmax of each row, by hand.
fn log_softmax_rows(x: &[f64], c: usize) -> Vec<f64> {
    x.chunks(c)
        .flat_map(|r| {
            let m = r.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
            let lse = m + r.iter().map(|v| (v - m).exp()).sum::<f64>().ln();
            r.iter().map(move |v| v - lse)
        })
        .collect()
}

fn ce_by_hand(x: &[f64], c: usize, targets: &[usize], eps: f64) -> Vec<f64> {
    let lp = log_softmax_rows(x, c);
    lp.chunks(c)
        .zip(targets)
        .map(|(r, &t)| {
            -r.iter()
                .enumerate()
                .map(|(j, l)| ((1.0 - eps) * f64::from(u8::from(j == t)) + eps / c as f64) * l)
                .sum::<f64>()
        })
        .collect()
}

#[test]
fn cross_entropy_matches_log_softmax_by_hand_with_and_without_label_smoothing() {
    let (x, _) = sample(&[4, 5], 40);
    let targets = [0, 4, 2, 2];
    for eps in [0.0, 0.1, 1.0] {
        for dtype in DTYPES {
            let y = common::tensor(&x, &[4, 5], dtype, false)
                .cross_entropy(&targets, eps)
                .unwrap();
            assert_eq!((y.shape(), y.dtype()), (vec![4], dtype));
            assert_close(
                &vals(&y),
                &ce_by_hand(&x, 5, &targets, eps),
                common::tol(dtype) * 10.0,
            );
        }
    }
}

#[test]
fn cross_entropy_of_1d_logits_is_0d_and_huge_logits_stay_finite() {
    let y = t64(&[1., 2., 3.], &[3]).cross_entropy(&[2], 0.0).unwrap();
    assert_eq!(y.shape(), Vec::<usize>::new());
    assert_close(&vals(&y), &ce_by_hand(&[1., 2., 3.], 3, &[2], 0.0), 1e-14);
    let y = t32(&[1000., 0., -1000.], &[1, 3])
        .cross_entropy(&[1], 0.2)
        .unwrap();
    assert_close(&vals(&y), &[800.0 + 0.2 / 3.0 * 3000.0], 1e-6);
    assert!(vals(&y).iter().all(|v| v.is_finite()));
}

#[test]
fn cross_entropy_gradients_match_finite_differences() {
    for eps in [0.0, 0.3] {
        check_grad(
            |t| t[0].cross_entropy(&[1, 0, 3], eps),
            &[sample(&[3, 4], 41)],
        );
        check_grad(|t| t[0].cross_entropy(&[2], eps), &[sample(&[5], 42)]);
    }
}

#[test]
fn cross_entropy_rejects_bad_classes_counts_smoothing_and_ranks() {
    let x = t64(&[0.; 6], &[2, 3]);
    assert_err(
        x.cross_entropy(&[0, 3], 0.0),
        is_value,
        &["class 3", "3 classes"],
    );
    assert_err(
        x.cross_entropy(&[0], 0.0),
        is_shape,
        &["(2, 3)", "2 targets", "got 1"],
    );
    assert_err(
        x.cross_entropy(&[0, 1], 1.5),
        is_value,
        &["label_smoothing", "1.5"],
    );
    assert_err(
        t64(&[0.; 8], &[2, 2, 2]).cross_entropy(&[0, 1], 0.0),
        is_shape,
        &["(N, C)"],
    );
}

#[test]
fn nll_loss_gathers_negated_log_probabilities_and_scatters_the_gradient() {
    let lp = leaf(&[-0.5, -1.0, -2.0, -0.1, -3.0, -0.2], &[2, 3]);
    let y = lp.nll_loss(&[1, 2]).unwrap();
    assert_eq!((y.shape(), vals(&y)), (vec![2], vec![1.0, 0.2]));
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    assert_eq!(grad(&lp), vec![0., -1., 0., 0., 0., -1.]);
    check_grad(|t| t[0].nll_loss(&[2, 0, 2]), &[sample(&[3, 3], 43)]);
    assert_err(lp.nll_loss(&[0, 7]), is_value, &["nll_loss", "class 7"]);
}

#[test]
fn backward_after_an_input_was_reshaped_in_place_is_a_graph_error_not_a_panic() {
    let x = leaf(&sample(&[1, 1, 4, 4], 50).0, &[1, 1, 4, 4]);
    let w = leaf(&sample(&[2, 1, 3, 3], 51).0, &[2, 1, 3, 3]);
    let conv = x
        .conv2d(&w, None, (1, 1), (0, 0))
        .unwrap()
        .sum(None, false)
        .unwrap();
    let (a, b) = (leaf(&[1.0; 6], &[2, 3]), leaf(&[1.0; 3], &[1, 3]));
    let lin = a.linear(&b, None).unwrap().sum(None, false).unwrap();
    *b.array_mut() = ferrograd::DynArray::from_f64(vec![0.0; 2], &[2], DType::F64).unwrap();
    *w.array_mut() = ferrograd::DynArray::from_f64(vec![0.0; 4], &[4], DType::F64).unwrap();
    *x.array_mut() = ferrograd::DynArray::from_f64(vec![0.0; 4], &[2, 2], DType::F64).unwrap();
    for loss in [conv, lin] {
        let err = loss
            .backward(None, false)
            .expect_err("the graph no longer fits");
        assert!(matches!(err, Error::Graph(_) | Error::Shape(_)), "{err:?}");
    }
}
