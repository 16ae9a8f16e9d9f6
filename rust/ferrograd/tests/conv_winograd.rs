//! The Winograd path of conv2d (3×3 kernels at stride 1 with 8 or more input channels):
//! forward against a direct six-loop convolution for even and odd sizes and paddings 0-2,
//! gradients by finite differences (float64) and against the direct adjoints, and the
//! 2×2 max pooling tree's choice of maximum with NaNs and ties in every position.

mod common;

use common::{assert_close, check_grad, grad, leaf, sample, vals, DTYPES};

/// Backpropagates Σ g·y from `y` with a sampled `g` (seeded), which it returns.
fn backward_weighted(y: &ferrograd::Tensor, seed: u64) -> Vec<f64> {
    let (g, _) = sample(&y.shape(), seed);
    let loss = y.mul(&common::t64(&g, &y.shape())).unwrap();
    loss.sum(None, false)
        .unwrap()
        .backward(None, false)
        .unwrap();
    g
}

/// `(N, C, H, W)` of the input, output channels, padding.
type Case = ([usize; 4], usize, usize);

/// The direct convolution (3×3, stride 1, zero padding `p`) and its output shape.
fn direct(x: &[f64], [n, c, h, w]: [usize; 4], wt: &[f64], o: usize, p: usize) -> Vec<f64> {
    let (ho, wo) = (h + 2 * p - 2, w + 2 * p - 2);
    let mut y = vec![0.0; n * o * ho * wo];
    for i in 0..n {
        for oc in 0..o {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut s = 0.0;
                    for ci in 0..c {
                        for ki in 0..3 {
                            for kj in 0..3 {
                                let (iy, ix) = (oy + ki, ox + kj);
                                if iy < p || ix < p || iy - p >= h || ix - p >= w {
                                    continue;
                                }
                                let xv = x[((i * c + ci) * h + iy - p) * w + ix - p];
                                s += xv * wt[((oc * c + ci) * 3 + ki) * 3 + kj];
                            }
                        }
                    }
                    y[((i * o + oc) * ho + oy) * wo + ox] = s;
                }
            }
        }
    }
    y
}

const CASES: [Case; 6] = [
    ([2, 8, 8, 8], 5, 1),  // the digits CNN's shape, small
    ([1, 9, 7, 5], 3, 1),  // odd output: a last tile half outside
    ([2, 8, 6, 9], 4, 0),  // no padding, one odd side
    ([1, 10, 4, 3], 2, 2), // padding 2
    ([3, 8, 3, 3], 1, 0),  // one output pixel per image
    ([1, 16, 1, 1], 4, 1), // a 1×1 image
];

#[test]
fn conv2d_on_winograd_tiles_matches_a_direct_convolution() {
    for (xs, o, p) in CASES {
        let ws = [o, xs[1], 3, 3];
        let (x, _) = sample(&xs, 31);
        let (w, _) = sample(&ws, 32);
        let (b, _) = sample(&[o], 33);
        let mut want = direct(&x, xs, &w, o, p);
        let per = want.len() / (xs[0] * o);
        for (k, v) in want.iter_mut().enumerate() {
            *v += b[(k / per) % o];
        }
        for dtype in DTYPES {
            let t = |d: &[f64], s: &[usize]| common::tensor(d, s, dtype, false);
            let y = t(&x, &xs)
                .conv2d(&t(&w, &ws), Some(&t(&b, &[o])), (1, 1), (p, p))
                .unwrap();
            let shape = vec![xs[0], o, xs[2] + 2 * p - 2, xs[3] + 2 * p - 2];
            assert_eq!(y.shape(), shape, "{xs:?}");
            // Sums of ~100 products of values up to 2: float32 rounding, not an error.
            let tol = if dtype == ferrograd::DType::F32 {
                2e-5
            } else {
                1e-12
            };
            assert_close(&vals(&y), &want, tol);
        }
    }
}

#[test]
fn conv2d_on_winograd_tiles_gradients_match_finite_differences() {
    check_grad(
        |t| t[0].conv2d(&t[1], Some(&t[2]), (1, 1), (1, 1)),
        &[
            sample(&[2, 8, 5, 4], 34),
            sample(&[3, 8, 3, 3], 35),
            sample(&[3], 36),
        ],
    );
    // no padding and an odd output: the zero row and column of the last tiles
    check_grad(
        |t| t[0].conv2d(&t[1], None, (1, 1), (0, 0)),
        &[sample(&[1, 8, 5, 6], 37), sample(&[2, 8, 3, 3], 38)],
    );
}

#[test]
fn conv2d_on_winograd_tiles_gradients_equal_the_direct_adjoints() {
    for (xs, o, p) in CASES {
        let ws = [o, xs[1], 3, 3];
        let (x, _) = sample(&xs, 41);
        let (w, _) = sample(&ws, 42);
        let (xt, wt) = (leaf(&x, &xs), leaf(&w, &ws));
        let y = xt.conv2d(&wt, None, (1, 1), (p, p)).unwrap();
        let g = backward_weighted(&y, 43);
        // d/dx and d/dw of Σ g·conv(x, w), one basis vector at a time through `direct`.
        let dot = |x: &[f64], w: &[f64]| -> f64 {
            let y = direct(x, xs, w, o, p);
            y.iter().zip(&g).map(|(a, b)| a * b).sum()
        };
        let basis = |len: usize, j: usize| {
            let mut e = vec![0.0; len];
            e[j] = 1.0;
            e
        };
        let dx: Vec<f64> = (0..x.len()).map(|j| dot(&basis(x.len(), j), &w)).collect();
        let dw: Vec<f64> = (0..w.len()).map(|j| dot(&x, &basis(w.len(), j))).collect();
        assert_close(&grad(&xt), &dx, 1e-12);
        assert_close(&grad(&wt), &dw, 1e-12);
    }
}

#[test]
fn conv2d_on_winograd_tiles_gives_the_same_weight_gradient_whether_or_not_the_input_wants_one() {
    let (xs, ws) = ([2, 8, 6, 7], [4, 8, 3, 3]);
    let (x, _) = sample(&xs, 44);
    let (w, _) = sample(&ws, 45);
    let dw = |x_grad: bool| {
        let xt = common::tensor(&x, &xs, ferrograd::DType::F64, x_grad);
        let wt = leaf(&w, &ws);
        let y = xt.conv2d(&wt, None, (1, 1), (1, 1)).unwrap();
        y.sum(None, false).unwrap().backward(None, false).unwrap();
        grad(&wt)
    };
    assert_eq!(dw(true), dw(false));
}

#[test]
fn conv2d_on_winograd_tiles_in_groups_of_images_on_two_threads_equals_one_group_on_one() {
    // 11 images of 8×8 (16 tiles each) are split at 2 threads into groups of 8 and 3
    // images, each running its own GEMMs; dW is summed over the groups. On one thread
    // they are one group. (The knob is global, but every other test here holds for any
    // thread count.)
    let (xs, ws, o) = ([11, 8, 8, 8], [16, 8, 3, 3], 16);
    let (x, _) = sample(&xs, 51);
    let (w, _) = sample(&ws, 52);
    let (b, _) = sample(&[o], 53);
    let run = |threads: usize| {
        ferrograd::parallel::set_num_threads(threads).unwrap();
        let (xt, wt, bt) = (leaf(&x, &xs), leaf(&w, &ws), leaf(&b, &[o]));
        let y = xt.conv2d(&wt, Some(&bt), (1, 1), (1, 1)).unwrap();
        backward_weighted(&y, 54);
        ferrograd::parallel::set_num_threads(0).unwrap();
        [vals(&y), grad(&xt), grad(&wt), grad(&bt)]
    };
    let (one, two) = (run(1), run(2));
    let mut want = direct(&x, xs, &w, o, 1);
    for (k, v) in want.iter_mut().enumerate() {
        *v += b[(k / 64) % o];
    }
    assert_close(&two[0], &want, 1e-12);
    for (a, b) in one.iter().zip(&two) {
        assert_close(b, a, 1e-12);
    }
}

#[test]
fn max_pool2d_2x2_picks_the_first_maximum_or_nan_wherever_it_lies() {
    let nan = f64::NAN;
    // One 2×2 window per plane (row-major a0 a1 / b0 b1) and the flat index it picks.
    let planes: [([f64; 4], usize); 9] = [
        ([1., 2., 3., 4.], 3),
        ([4., 3., 2., 1.], 0),
        ([1., 4., 4., 2.], 1), // tie across the rows: the first
        ([1., 2., 4., 4.], 2), // tie in the second row: the first
        ([5., 5., 5., 5.], 0),
        ([1., 2., nan, 9.], 2), // NaN in the second row beats a larger value after it
        ([nan, 2., nan, 9.], 0),
        ([1., nan, 3., nan], 1),
        ([1., 2., 3., nan], 3),
    ];
    let data: Vec<f64> = planes.iter().flat_map(|(p, _)| *p).collect();
    let x = leaf(&data, &[1, planes.len(), 2, 2]);
    let y = x.max_pool2d((2, 2), (2, 2), (0, 0)).unwrap();
    for (k, (&v, (p, at))) in vals(&y).iter().zip(&planes).enumerate() {
        let want = p[*at];
        assert!(v == want || (v.is_nan() && want.is_nan()), "plane {k}: {v}");
    }
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    let want: Vec<f64> = planes
        .iter()
        .flat_map(|(_, at)| (0..4).map(move |i| f64::from(u8::from(i == *at))))
        .collect();
    assert_eq!(grad(&x), want);
}

#[test]
fn max_pool2d_2x2_on_wider_planes_matches_a_scan_of_each_window() {
    let (xs, _) = sample(&[2, 3, 6, 8], 46);
    let x = leaf(&xs, &[2, 3, 6, 8]);
    let y = x.max_pool2d((2, 2), (2, 2), (0, 0)).unwrap();
    let mut want = Vec::new();
    for plane in xs.chunks(48) {
        for oy in 0..3 {
            for ox in 0..4 {
                let at = |i: usize, j: usize| plane[(2 * oy + i) * 8 + 2 * ox + j];
                want.push(at(0, 0).max(at(0, 1)).max(at(1, 0)).max(at(1, 1)));
            }
        }
    }
    assert_eq!(vals(&y), want);
}
