//! Tests of the fused optimizer steps against PyTorch's formulas.

use super::*;
use crate::parallel::PARALLEL_THRESHOLD;

fn tensor(values: &[f64], dtype: DType) -> Tensor {
    Tensor::new(
        DynArray::from_f64(values.to_vec(), &[values.len()], dtype).unwrap(),
        true,
    )
}

fn zeros_like(p: &Tensor) -> Tensor {
    Tensor::zeros(&p.shape(), p.dtype(), false).unwrap()
}

fn with_grad(p: &Tensor, grad: &[f64]) {
    p.set_grad(Some(
        DynArray::from_f64(grad.to_vec(), &p.shape(), p.dtype()).unwrap(),
    ))
    .unwrap();
}

fn values(t: &Tensor) -> Vec<f64> {
    t.array().to_f64_vec()
}

fn assert_close(got: &[f64], want: &[f64], tol: f64) {
    assert_eq!(got.len(), want.len());
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!(
            (g - w).abs() <= tol * (1.0 + w.abs()),
            "element {i}: got {g}, want {w} (all: {got:?} vs {want:?})"
        );
    }
}

/// SGD with momentum 0.9 and lr 0.1, nothing else.
fn momentum_sgd() -> Sgd {
    Sgd {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.0,
        weight_decay: 0.0,
        nesterov: false,
    }
}

const GRADS: [[f64; 2]; 3] = [[0.5, -1.0], [0.25, 2.0], [-1.0, 0.5]];

fn tolerance(dtype: DType) -> f64 {
    if dtype == DType::F32 {
        1e-6
    } else {
        1e-14
    }
}

#[test]
fn sgd_with_momentum_dampening_and_weight_decay_matches_hand_computed_steps() {
    // p = 1, g = 0.5, wd = 0.1, momentum = 0.9, dampening = 0.5, lr = 0.1 (first element):
    // step 1: d = 0.6, buf = 0.6, p = 1 - 0.06 = 0.94
    // step 2: d = 0.25 + 0.094 = 0.344, buf = 0.54 + 0.172 = 0.712, p = 0.94 - 0.0712 = 0.8688
    // step 3: d = -1 + 0.08688 = -0.91312, buf = 0.6408 - 0.45656 = 0.18424,
    //         p = 0.8688 - 0.018424 = 0.850376
    let options = Sgd {
        lr: 0.1,
        momentum: 0.9,
        dampening: 0.5,
        weight_decay: 0.1,
        nesterov: false,
    };
    for dtype in [DType::F64, DType::F32] {
        let p = tensor(&[1.0, 2.0], dtype);
        let buf = zeros_like(&p);
        let mut firsts = Vec::new();
        for (i, g) in GRADS.iter().enumerate() {
            with_grad(&p, g);
            sgd_step(&p, Some(&buf), &options, i == 0).unwrap();
            firsts.push(values(&p)[0]);
        }
        assert_close(&firsts, &[0.94, 0.8688, 0.850376], tolerance(dtype));
        assert_close(&[values(&buf)[0]], &[0.18424], tolerance(dtype));
    }
}

#[test]
fn sgd_nesterov_and_plain_sgd_match_hand_computed_steps() {
    // Nesterov, momentum 0.5, lr 0.1, p = 1: g = 0.5 → buf 0.5, d = 0.75, p = 0.925;
    // g = 0.25 → buf 0.5, d = 0.5, p = 0.875; g = -1 → buf -0.75, d = -1.375, p = 1.0125.
    let nesterov = Sgd {
        lr: 0.1,
        momentum: 0.5,
        dampening: 0.0,
        weight_decay: 0.0,
        nesterov: true,
    };
    let plain = Sgd {
        momentum: 0.0,
        nesterov: false,
        ..nesterov
    };
    for dtype in [DType::F64, DType::F32] {
        let p = tensor(&[1.0, 2.0], dtype);
        let q = tensor(&[1.0, 2.0], dtype);
        let buf = zeros_like(&p);
        let mut ps = Vec::new();
        for (i, g) in GRADS.iter().enumerate() {
            with_grad(&p, g);
            with_grad(&q, g);
            sgd_step(&p, Some(&buf), &nesterov, i == 0).unwrap();
            sgd_step(&q, None, &plain, false).unwrap();
            ps.push(values(&p)[0]);
        }
        assert_close(&ps, &[0.925, 0.875, 1.0125], tolerance(dtype));
        // Plain SGD: p − lr·Σg = 1 − 0.1·(−0.25), 2 − 0.1·1.5.
        assert_close(&values(&q), &[1.025, 1.85], tolerance(dtype));
    }
}

/// Adam in f64 scalars, straight from the formula in torch.optim's documentation.
fn adam_reference(o: &Adam, p0: f64, grads: &[f64]) -> Vec<f64> {
    let (mut p, mut m, mut v) = (p0, 0.0, 0.0);
    let mut out = Vec::new();
    for (i, &g) in grads.iter().enumerate() {
        let t = (i + 1) as i32;
        let mut g = g;
        if o.decoupled {
            p *= 1.0 - o.lr * o.weight_decay;
        } else {
            g += o.weight_decay * p;
        }
        m = o.beta1 * m + (1.0 - o.beta1) * g;
        v = o.beta2 * v + (1.0 - o.beta2) * g * g;
        let m_hat = m / (1.0 - o.beta1.powi(t));
        let v_hat = v / (1.0 - o.beta2.powi(t));
        p -= o.lr * m_hat / (v_hat.sqrt() + o.eps);
        out.push(p);
    }
    out
}

#[test]
fn adam_and_adamw_match_the_documented_formula_for_three_steps() {
    for decoupled in [false, true] {
        let options = Adam {
            lr: 0.01,
            beta1: 0.8,
            beta2: 0.9,
            eps: 1e-8,
            weight_decay: 0.1,
            decoupled,
        };
        for dtype in [DType::F64, DType::F32] {
            let p = tensor(&[1.0, 2.0], dtype);
            let (m, v) = (zeros_like(&p), zeros_like(&p));
            let mut trajectory = [Vec::new(), Vec::new()];
            for (i, g) in GRADS.iter().enumerate() {
                with_grad(&p, g);
                adam_step(&p, &m, &v, i as u64 + 1, &options).unwrap();
                for (k, x) in values(&p).into_iter().enumerate() {
                    trajectory[k].push(x);
                }
            }
            for (k, p0) in [1.0, 2.0].into_iter().enumerate() {
                let grads: Vec<f64> = GRADS.iter().map(|g| g[k]).collect();
                let want = adam_reference(&options, p0, &grads);
                assert_close(&trajectory[k], &want, tolerance(dtype));
            }
        }
    }
}

#[test]
fn states_that_decay_below_the_smallest_normal_float_become_zero_and_the_parameter_keeps_its_course(
) {
    // After one gradient, zeros: Adam's moments and SGD's momentum decay geometrically and
    // would pass through subnormal values (slow arithmetic); they are flushed to 0 instead.
    // The parameter ends where an unflushed f64 run puts it, to f32's precision.
    let is_normal_or_zero = |x: f64| x == 0.0 || (x as f32).abs() >= f32::MIN_POSITIVE;
    let adam = Adam {
        lr: 1e-3,
        beta1: 0.9,
        beta2: 0.9,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
    };
    let sgd = momentum_sgd();
    let grads: Vec<f64> = std::iter::once(0.5)
        .chain(std::iter::repeat_n(0.0, 1500))
        .collect();
    let p = tensor(&[1.0], DType::F32);
    let (m, v) = (zeros_like(&p), zeros_like(&p));
    let q = tensor(&[1.0], DType::F32);
    let buf = zeros_like(&q);
    let mut seen_zero = [false; 3];
    for (i, g) in grads.iter().enumerate() {
        with_grad(&p, &[*g]);
        adam_step(&p, &m, &v, i as u64 + 1, &adam).unwrap();
        with_grad(&q, &[*g]);
        sgd_step(&q, Some(&buf), &sgd, i == 0).unwrap();
        for (k, state) in [&m, &v, &buf].into_iter().enumerate() {
            let x = values(state)[0];
            assert!(
                is_normal_or_zero(x),
                "step {i}: state {k} is subnormal: {x:e}"
            );
            seen_zero[k] |= x == 0.0;
        }
    }
    assert_eq!(seen_zero, [true, true, true], "every state reached 0");
    let want = *adam_reference(&adam, 1.0, &grads).last().unwrap();
    assert_close(&values(&p), &[want], 1e-6);
    // SGD: p moves by lr · 0.5 · Σ 0.9^k = 0.5 in all.
    assert_close(&values(&q), &[0.5], 1e-6);
}

#[test]
fn rmsprop_states_that_decay_below_the_smallest_normal_float_become_zero() {
    // As for Adam and SGD above: one gradient, then zeros. The square and gradient averages
    // decay by alpha and the momentum buffer by momentum each step, past the subnormals to 0.
    let options = RmsProp {
        lr: 1e-3,
        alpha: 0.9,
        eps: 1e-8,
        weight_decay: 0.0,
        momentum: 0.9,
        centered: true,
    };
    let p = tensor(&[1.0], DType::F32);
    let (sq, buf, avg) = (zeros_like(&p), zeros_like(&p), zeros_like(&p));
    let mut seen_zero = [false; 3];
    for i in 0..1500 {
        with_grad(&p, &[if i == 0 { 0.5 } else { 0.0 }]);
        rmsprop_step(&p, &sq, Some(&buf), Some(&avg), &options).unwrap();
        for (k, state) in [&sq, &buf, &avg].into_iter().enumerate() {
            let x = values(state)[0];
            assert!(
                x == 0.0 || (x as f32).abs() >= f32::MIN_POSITIVE,
                "step {i}: state {k} is subnormal: {x:e}"
            );
            seen_zero[k] |= x == 0.0;
        }
    }
    assert_eq!(seen_zero, [true, true, true], "every state reached 0");
    // The first step's g/denominator, 0.5 / √(0.1·0.25 − 0.05²), carried by the momentum
    // buffer: p moves by lr · that · Σ 0.9^k.
    let want = 1.0 - 1e-3 * (0.5 / (0.0225f64.sqrt() + 1e-8)) * 10.0;
    assert_close(&values(&p), &[want], 1e-6);
}

#[test]
fn adam_first_step_moves_each_element_by_lr_against_its_gradient_sign() {
    // With m̂ = g and v̂ = g² the first step is lr·g/(|g| + eps) ≈ lr·sign(g).
    let options = Adam {
        lr: 0.5,
        beta1: 0.9,
        beta2: 0.999,
        eps: 0.0,
        weight_decay: 0.0,
        decoupled: false,
    };
    let p = tensor(&[1.0, 2.0], DType::F64);
    let (m, v) = (zeros_like(&p), zeros_like(&p));
    with_grad(&p, &[3.0, -0.01]);
    adam_step(&p, &m, &v, 1, &options).unwrap();
    assert_close(&values(&p), &[0.5, 2.5], 1e-12);
}

/// RMSprop in f64 scalars, following torch.optim.RMSprop's documented algorithm.
fn rmsprop_reference(o: &RmsProp, p0: f64, grads: &[f64]) -> Vec<f64> {
    let (mut p, mut sq, mut buf, mut avg) = (p0, 0.0, 0.0, 0.0);
    let mut out = Vec::new();
    for &g in grads {
        let g = g + o.weight_decay * p;
        sq = o.alpha * sq + (1.0 - o.alpha) * g * g;
        let mut denom = sq;
        if o.centered {
            avg = o.alpha * avg + (1.0 - o.alpha) * g;
            denom -= avg * avg;
        }
        let denom = denom.sqrt() + o.eps;
        if o.momentum > 0.0 {
            buf = o.momentum * buf + g / denom;
            p -= o.lr * buf;
        } else {
            p -= o.lr * g / denom;
        }
        out.push(p);
    }
    out
}

#[test]
fn rmsprop_plain_centered_and_with_momentum_match_the_documented_formula() {
    let base = RmsProp {
        lr: 0.01,
        alpha: 0.9,
        eps: 1e-8,
        weight_decay: 0.0,
        momentum: 0.0,
        centered: false,
    };
    let combos = [
        base,
        RmsProp {
            weight_decay: 0.1,
            momentum: 0.5,
            ..base
        },
        RmsProp {
            centered: true,
            ..base
        },
        RmsProp {
            centered: true,
            momentum: 0.9,
            weight_decay: 0.01,
            ..base
        },
    ];
    for options in combos {
        for dtype in [DType::F64, DType::F32] {
            let p = tensor(&[1.0, 2.0], dtype);
            let sq = zeros_like(&p);
            let buf = zeros_like(&p);
            let avg = zeros_like(&p);
            let mut trajectory = [Vec::new(), Vec::new()];
            for g in &GRADS {
                with_grad(&p, g);
                rmsprop_step(&p, &sq, Some(&buf), Some(&avg), &options).unwrap();
                for (k, x) in values(&p).into_iter().enumerate() {
                    trajectory[k].push(x);
                }
            }
            for (k, p0) in [1.0, 2.0].into_iter().enumerate() {
                let grads: Vec<f64> = GRADS.iter().map(|g| g[k]).collect();
                let want = rmsprop_reference(&options, p0, &grads);
                // Centered RMSprop divides by √(v − ḡ²), which cancels digits in f32.
                let tol = if options.centered && dtype == DType::F32 {
                    1e-5
                } else {
                    tolerance(dtype)
                };
                assert_close(&trajectory[k], &want, tol);
            }
        }
    }
}

#[test]
fn large_parameters_update_in_parallel_exactly_like_small_ones() {
    let n = PARALLEL_THRESHOLD * 3 + 17;
    let init: Vec<f64> = (0..n).map(|i| (i % 101) as f64 / 50.0 - 1.0).collect();
    let grad: Vec<f64> = (0..n).map(|i| ((i * 7) % 13) as f64 / 6.0 - 1.0).collect();
    let options = Adam {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.99,
        eps: 1e-8,
        weight_decay: 0.01,
        decoupled: true,
    };
    let big = tensor(&init, DType::F32);
    let (m, v) = (zeros_like(&big), zeros_like(&big));
    with_grad(&big, &grad);
    adam_step(&big, &m, &v, 1, &options).unwrap();
    let got = values(&big);
    for i in [0, 1, CHUNK - 1, CHUNK, n / 2, n - 1] {
        let small = tensor(&init[i..=i], DType::F32);
        let (m, v) = (zeros_like(&small), zeros_like(&small));
        with_grad(&small, &grad[i..=i]);
        adam_step(&small, &m, &v, 1, &options).unwrap();
        assert_eq!(got[i], values(&small)[0], "element {i}");
    }
}

/// A step of some optimizer: parameter, its three zeroed state buffers, step index.
type StepFn = Box<dyn Fn(&Tensor, &[Tensor; 3], usize)>;

/// Every option combination of every optimizer, as steps.
fn every_step_variant() -> Vec<(String, StepFn)> {
    let mut cases: Vec<(String, StepFn)> = Vec::new();
    for (momentum, wd, nesterov) in [0.0, 0.9]
        .into_iter()
        .flat_map(|m| [0.0, 0.1].map(|wd| (m, wd)))
        .flat_map(|(m, wd)| [false, true].map(|n| (m, wd, n)))
        .filter(|&(m, _, n)| m != 0.0 || !n)
    {
        let o = Sgd {
            lr: 0.1,
            momentum,
            dampening: if nesterov { 0.0 } else { 0.3 },
            weight_decay: wd,
            nesterov,
        };
        let step: StepFn = Box::new(move |p, b, i| {
            let buf = (momentum != 0.0).then_some(&b[0]);
            sgd_step(p, buf, &o, i == 0).unwrap();
        });
        cases.push((format!("{o:?}"), step));
    }
    for (wd, decoupled) in [(0.0, false), (0.1, false), (0.1, true)] {
        let o = Adam {
            lr: 0.1,
            beta1: 0.9,
            beta2: 0.99,
            eps: 1e-8,
            weight_decay: wd,
            decoupled,
        };
        let step: StepFn = Box::new(move |p, b, i| {
            adam_step(p, &b[0], &b[1], i as u64 + 1, &o).unwrap();
        });
        cases.push((format!("{o:?}"), step));
    }
    for bits in 0..8 {
        let o = RmsProp {
            lr: 0.01,
            alpha: 0.9,
            eps: 1e-8,
            weight_decay: if bits & 1 != 0 { 0.1 } else { 0.0 },
            momentum: if bits & 2 != 0 { 0.5 } else { 0.0 },
            centered: bits & 4 != 0,
        };
        let step: StepFn = Box::new(move |p, b, _| {
            let buf = (o.momentum > 0.0).then_some(&b[1]);
            let avg = o.centered.then_some(&b[2]);
            rmsprop_step(p, &b[0], buf, avg, &o).unwrap();
        });
        cases.push((format!("{o:?}"), step));
    }
    cases
}

/// Three steps from `init`; the bits of the parameter and buffers after each.
fn trajectory(step: &StepFn, init: &[f64], grads: &[Vec<f64>], dtype: DType) -> Vec<u64> {
    let p = tensor(init, dtype);
    let bufs = [zeros_like(&p), zeros_like(&p), zeros_like(&p)];
    let mut out = Vec::new();
    for (i, g) in grads.iter().enumerate() {
        with_grad(&p, g);
        step(&p, &bufs, i);
        for t in std::iter::once(&p).chain(&bufs) {
            out.extend(values(t).iter().map(|x| x.to_bits()));
        }
    }
    out
}

#[test]
fn every_option_combination_gives_the_same_bits_vectorised_as_one_element_at_a_time() {
    // Below 64 elements the baseline loop runs; above, the CPU's widest one (and in
    // parallel above PARALLEL_THRESHOLD). All must agree bit for bit.
    for n in [200, PARALLEL_THRESHOLD + 100] {
        let init: Vec<f64> = (0..n).map(|i| (i % 101) as f64 / 50.0 - 1.0).collect();
        let grads: Vec<Vec<f64>> = (0..3)
            .map(|k| {
                (0..n)
                    .map(|i| ((i * 7 + k * 3) % 13) as f64 / 6.0 - 1.0)
                    .collect()
            })
            .collect();
        for (name, step) in every_step_variant() {
            for dtype in [DType::F32, DType::F64] {
                let all = trajectory(&step, &init, &grads, dtype);
                for i in [0, 1, 63, 64, 65, n - 1] {
                    let one: Vec<Vec<f64>> = grads.iter().map(|g| vec![g[i]]).collect();
                    let want = trajectory(&step, &init[i..=i], &one, dtype);
                    let got: Vec<u64> = (0..want.len()).map(|j| all[j * n + i]).collect();
                    assert_eq!(got, want, "{name}, {dtype:?}, n {n}, element {i}");
                }
            }
        }
    }
}

#[test]
fn a_step_without_a_gradient_is_a_graph_error() {
    let p = tensor(&[1.0], DType::F32);
    let sgd = Sgd {
        lr: 0.1,
        momentum: 0.0,
        dampening: 0.0,
        weight_decay: 0.0,
        nesterov: false,
    };
    assert!(matches!(
        sgd_step(&p, None, &sgd, true),
        Err(Error::Graph(_))
    ));
}

#[test]
fn mismatched_or_aliased_buffers_are_rejected_before_anything_changes() {
    let options = Adam {
        lr: 0.1,
        beta1: 0.9,
        beta2: 0.999,
        eps: 1e-8,
        weight_decay: 0.0,
        decoupled: false,
    };
    let p = tensor(&[1.0, 2.0], DType::F32);
    with_grad(&p, &[1.0, 1.0]);
    let wrong_shape = tensor(&[0.0, 0.0, 0.0], DType::F32);
    let wrong_dtype = tensor(&[0.0, 0.0], DType::F64);
    let good = zeros_like(&p);
    for bad in [&wrong_shape, &wrong_dtype] {
        let err = adam_step(&p, &good, bad, 1, &options).unwrap_err();
        assert!(matches!(err, Error::Shape(_)), "{err:?}");
    }
    let err = adam_step(&p, &good, &good.detach(), 1, &options).unwrap_err();
    assert!(
        matches!(err, Error::Value(ref m) if m.contains("share memory")),
        "{err:?}"
    );
    let grad_view = Tensor::from_storage(p.grad().unwrap(), false);
    assert!(adam_step(&p, &good, &grad_view, 1, &options).is_err());
    assert!(adam_step(&p, &p.detach(), &good, 1, &options).is_err());
    assert!(adam_step(&p, &good, &zeros_like(&p), 0, &options).is_err());
    assert_eq!(values(&p), vec![1.0, 2.0]);
    assert_eq!(values(&good), vec![0.0, 0.0]);
}

#[test]
fn missing_buffers_that_the_options_need_are_value_errors() {
    let p = tensor(&[1.0], DType::F64);
    with_grad(&p, &[1.0]);
    let sgd = momentum_sgd();
    assert!(matches!(
        sgd_step(&p, None, &sgd, true),
        Err(Error::Value(_))
    ));
    let rms = RmsProp {
        lr: 0.1,
        alpha: 0.99,
        eps: 1e-8,
        weight_decay: 0.0,
        momentum: 0.0,
        centered: true,
    };
    let sq = zeros_like(&p);
    assert!(matches!(
        rmsprop_step(&p, &sq, None, None, &rms),
        Err(Error::Value(_))
    ));
}
