//! Integration tests of the scalar autodiff `Value` and of `NdArray<Value>`.

use ferrograd::value::Op;
use ferrograd::{Error, NdArray, Value};

/// A function of some `Value`s, evaluated on fresh leaves.
type Fun = fn(&[Value]) -> Value;

/// Checks every input's gradient of `f` at `xs` against central differences (h = 1e-6).
fn assert_gradients_match_finite_differences(name: &str, f: Fun, xs: &[f64]) {
    let leaves: Vec<Value> = xs.iter().map(|&x| Value::new(x)).collect();
    f(&leaves).backward();
    let h = 1e-6;
    for (i, leaf) in leaves.iter().enumerate() {
        let at = |delta: f64| {
            let inputs: Vec<Value> = xs
                .iter()
                .enumerate()
                .map(|(j, &x)| Value::new(if i == j { x + delta } else { x }))
                .collect();
            f(&inputs).data()
        };
        let numeric = (at(h) - at(-h)) / (2.0 * h);
        let analytic = leaf.grad();
        let tol = 1e-6 * (1.0 + numeric.abs());
        assert!(
            (analytic - numeric).abs() <= tol,
            "{name}: d/dx{i} at {xs:?} is {analytic}, finite differences give {numeric}"
        );
    }
}

fn close(a: f64, b: f64, tol: f64) -> bool {
    (a - b).abs() <= tol
}

#[test]
fn each_op_computes_its_forward_on_small_exact_cases() {
    let (two, three) = (Value::new(2.0), Value::new(3.0));
    assert_eq!((&two + &three).data(), 5.0);
    assert_eq!((&two - &three).data(), -1.0);
    assert_eq!((&two * &three).data(), 6.0);
    assert_eq!((&three / &two).data(), 1.5);
    assert_eq!(two.pow(&three).data(), 8.0);
    assert_eq!(Value::new(9.0).powf(0.5).data(), 3.0);
    assert_eq!((-&two).data(), -2.0);
    assert_eq!(Value::new(-1.5).relu().data(), 0.0);
    assert_eq!(two.relu().data(), 2.0);
    assert_eq!(Value::new(0.0).tanh().data(), 0.0);
    assert_eq!(Value::new(0.5).tanh().data(), 0.5f64.tanh());
    assert_eq!(Value::new(0.0).exp().data(), 1.0);
    assert_eq!(Value::new(1.0).exp().data(), std::f64::consts::E);
    assert_eq!(Value::new(1.0).log().data(), 0.0);
    assert_eq!(Value::new(std::f64::consts::E).log().data(), 1.0);
    assert_eq!(Value::new(0.0).sigmoid().data(), 0.5);
    assert!(close(
        Value::new(2.0).sigmoid().data(),
        1.0 / (1.0 + (-2.0f64).exp()),
        1e-15
    ));
}

#[test]
fn numbers_combine_with_values_on_either_side() {
    let v = Value::new(4.0);
    assert_eq!((2.0 * &v).data(), 8.0);
    assert_eq!((&v + 1.0).data(), 5.0);
    assert_eq!((1.0 - &v).data(), -3.0);
    assert_eq!((&v - 1.0).data(), 3.0);
    assert_eq!((1.0 / &v).data(), 0.25);
    assert_eq!((v.clone() / 2.0).data(), 2.0);
    assert_eq!((3.0 + v.clone()).data(), 7.0);
    assert_eq!((v.clone() * v.clone()).data(), 16.0);
}

#[test]
fn ops_record_their_name_and_inputs() {
    let a = Value::new(1.0);
    let b = Value::new(2.0);
    let c = &a * &b;
    assert_eq!(c.op(), Op::Mul);
    assert_eq!(c.op_name(), Some("*"));
    let prev = c.prev();
    assert_eq!(prev.len(), 2);
    assert!(prev[0].ptr_eq(&a) && prev[1].ptr_eq(&b));
    assert_eq!(a.powf(2.0).op_name(), Some("**"));
    assert_eq!(a.powf(2.0).prev().len(), 1);
    assert_eq!(a.tanh().op_name(), Some("tanh"));
    assert_eq!((-&a).op_name(), Some("neg"));
    assert_eq!(a.op_name(), None);
}

#[test]
fn ieee_edge_cases_give_inf_and_nan_instead_of_panicking() {
    assert!(Value::new(-1.0).log().data().is_nan());
    assert_eq!(Value::new(0.0).log().data(), f64::NEG_INFINITY);
    assert_eq!((Value::new(1.0) / 0.0).data(), f64::INFINITY);
    assert!(Value::new(-8.0).powf(1.0 / 3.0).data().is_nan());
    assert!(Value::new(f64::NAN).relu().data().is_nan());
    assert_eq!(Value::new(-1000.0).sigmoid().data(), 0.0);
    assert_eq!(Value::new(1000.0).sigmoid().data(), 1.0);
    let z = Value::new(0.0);
    let r = 1.0 / &z;
    r.backward();
    assert_eq!(z.grad(), f64::NEG_INFINITY);
}

#[test]
fn each_op_gradient_matches_central_finite_differences() {
    let cases: [(&str, Fun, &[f64]); 15] = [
        ("add", |v| &v[0] + &v[1], &[1.3, -0.7]),
        ("sub", |v| &v[0] - &v[1], &[1.3, -0.7]),
        ("mul", |v| &v[0] * &v[1], &[1.3, -0.7]),
        ("div", |v| &v[0] / &v[1], &[1.3, -0.7]),
        ("pow value", |v| v[0].pow(&v[1]), &[1.3, -0.7]),
        ("powf", |v| v[0].powf(3.5), &[1.7]),
        ("powf negative", |v| v[0].powf(-2.0), &[-1.7]),
        ("neg", |v| -&v[0], &[0.4]),
        ("relu positive", |v| v[0].relu(), &[0.4]),
        ("relu negative", |v| v[0].relu(), &[-0.4]),
        ("tanh", |v| v[0].tanh(), &[0.6]),
        ("exp", |v| v[0].exp(), &[0.6]),
        ("log", |v| v[0].log(), &[0.6]),
        ("sigmoid", |v| v[0].sigmoid(), &[-0.9]),
        (
            "composite",
            |v| ((&v[0] * &v[1] + 1.0).tanh() * v[0].exp() - v[1].sigmoid() / 3.0).powf(2.0),
            &[0.3, -1.1],
        ),
    ];
    for (name, f, xs) in cases {
        assert_gradients_match_finite_differences(name, f, xs);
    }
}

#[test]
fn pow_with_a_value_exponent_differentiates_both_sides() {
    let x = Value::new(2.0);
    let y = Value::new(3.0);
    x.pow(&y).backward();
    assert!(close(x.grad(), 3.0 * 4.0, 1e-12));
    assert!(close(y.grad(), 2f64.ln() * 8.0, 1e-12));
    let (x, y) = (Value::new(0.5), Value::new(-1.5));
    x.pow(&y).backward();
    assert!(close(x.grad(), -1.5 * 0.5f64.powf(-2.5), 1e-12));
    assert!(close(y.grad(), 0.5f64.ln() * 0.5f64.powf(-1.5), 1e-12));
}

#[test]
fn pow_at_a_zero_or_negative_base_follows_ieee_without_panicking() {
    let (x, y) = (Value::new(-2.0), Value::new(2.0));
    let out = x.pow(&y);
    out.backward();
    assert_eq!(out.data(), 4.0);
    assert_eq!(x.grad(), -4.0);
    assert!(y.grad().is_nan(), "ln of a negative base is NaN");
    let (x, y) = (Value::new(0.0), Value::new(2.0));
    x.pow(&y).backward();
    assert_eq!(x.grad(), 0.0);
    assert_eq!(y.grad(), 0.0, "0 ** y is constant for y > 0");
    assert!(Value::new(-2.0).pow(&Value::new(0.5)).data().is_nan());
}

#[test]
fn a_node_used_twice_accumulates_both_contributions() {
    let a = Value::new(3.0);
    (&a + &a).backward();
    assert_eq!(a.grad(), 2.0);
    let b = Value::new(3.0);
    (&b * &b).backward();
    assert_eq!(b.grad(), 6.0);
    // A shared inner node: y feeds z twice.
    let x = Value::new(2.0);
    let y = &x * 3.0;
    let z = &y * &y + &y;
    z.backward();
    assert_eq!(y.grad(), 2.0 * 6.0 + 1.0);
    assert_eq!(x.grad(), 3.0 * 13.0);
}

#[test]
fn calling_backward_twice_adds_to_the_leaves_only() {
    let x = Value::new(2.0);
    let y = &x * &x;
    let z = &y + &x;
    z.backward();
    assert_eq!((x.grad(), y.grad(), z.grad()), (5.0, 1.0, 1.0));
    z.backward();
    assert_eq!((x.grad(), y.grad(), z.grad()), (10.0, 1.0, 1.0));
    x.set_grad(0.0);
    z.backward();
    assert_eq!(x.grad(), 5.0);
}

#[test]
fn data_and_grad_can_be_set_directly() {
    let v = Value::new(1.0);
    v.set_data(-2.5);
    v.set_grad(7.0);
    assert_eq!((v.data(), v.grad()), (-2.5, 7.0));
}

#[test]
fn the_articles_example_gives_dz_dx_2_and_dz_dy_3() {
    let x = Value::new(1.0);
    let y = Value::new(2.0);
    let z = 2.0 * &x + 3.0 * &y;
    z.backward();
    assert_eq!(z.data(), 8.0);
    assert_eq!(x.grad(), 2.0);
    assert_eq!(y.grad(), 3.0);
}

#[test]
fn micrograds_readme_example_gives_its_published_numbers() {
    let a = Value::new(-4.0);
    let b = Value::new(2.0);
    let mut c = &a + &b;
    let mut d = &a * &b + b.powf(3.0);
    c += &c + 1.0;
    c += 1.0 + &c + (-&a);
    d += &d * 2.0 + (&b + &a).relu();
    d += 3.0 * &d + (&b - &a).relu();
    let e = &c - &d;
    let f = e.powf(2.0);
    let mut g = &f / 2.0;
    g += 10.0 / &f;
    assert_eq!(format!("{:.4}", g.data()), "24.7041");
    g.backward();
    assert_eq!(format!("{:.4}", a.grad()), "138.8338");
    assert_eq!(format!("{:.4}", b.grad()), "645.5773");
}

#[test]
fn a_million_op_chain_builds_backpropagates_and_drops_without_overflowing_the_stack() {
    const N: usize = 1_000_000;
    let x = Value::new(1.0);
    let mut v = x.clone();
    for _ in 0..N {
        v = &v * 1.000_000_1;
    }
    v.backward();
    let expected = 1.000_000_1f64.powi(N as i32);
    assert!(
        close(v.data(), expected, 1e-9),
        "{} vs {expected}",
        v.data()
    );
    assert!(
        close(x.grad(), expected, 1e-9),
        "{} vs {expected}",
        x.grad()
    );
    drop(v);
    // The leaf outlives its chain.
    assert_eq!(x.data(), 1.0);

    // A chain of unary ops, dropped while the leaf is still alive.
    let mut w = x.clone();
    for _ in 0..N {
        w = -(w.tanh());
    }
    w.backward();
    drop(w);
}

#[test]
fn a_tiny_value_matmul_sums_and_backpropagates_to_the_closed_form() {
    let a = NdArray::from_vec(vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3]).expect("2x3");
    let b = NdArray::from_vec(vec![7.0, 8.0, 9.0, 10.0, 11.0, 12.0], &[3, 2]).expect("3x2");
    let (va, vb) = (
        NdArray::<Value>::from_f64(&a),
        NdArray::<Value>::from_f64(&b),
    );
    let c = va.matmul(&vb).expect("(2, 3) @ (3, 2)");
    assert_eq!(c.shape(), &[2, 2]);
    assert_eq!(c.data_f64().data(), &[58.0, 64.0, 139.0, 154.0]);
    let s = c.sum();
    assert_eq!(s.data(), 415.0);
    s.backward();
    // d sum(A B) / dA[i, p] = sum_j B[p, j];  d / dB[p, j] = sum_i A[i, p].
    assert_eq!(va.grad().data(), &[15.0, 19.0, 23.0, 15.0, 19.0, 23.0]);
    assert_eq!(vb.grad().data(), &[5.0, 5.0, 7.0, 7.0, 9.0, 9.0]);
    assert_eq!(va.grad().shape(), &[2, 3]);

    // Backward over every element of C gives the same leaf gradients as backward of the sum.
    va.zero_grad();
    vb.zero_grad();
    c.backward();
    assert_eq!(va.grad().data(), &[15.0, 19.0, 23.0, 15.0, 19.0, 23.0]);
    assert_eq!(vb.grad().data(), &[5.0, 5.0, 7.0, 7.0, 9.0, 9.0]);
}

#[test]
fn a_value_matmul_of_mismatched_shapes_says_what_does_not_line_up() {
    let a = NdArray::<Value>::from_f64(&NdArray::full(&[3, 4], 1.0).expect("3x4"));
    let b = NdArray::<Value>::from_f64(&NdArray::full(&[5, 2], 1.0).expect("5x2"));
    match a.matmul(&b) {
        Err(Error::Shape(msg)) => assert_eq!(
            msg,
            "matmul: shapes (3, 4) and (5, 2) do not line up: 4 != 5"
        ),
        other => panic!("expected a shape error, got {other:?}"),
    }
}

#[test]
fn value_arrays_combine_elementwise_with_broadcasting() {
    let a =
        NdArray::<Value>::from_f64(&NdArray::from_vec(vec![1.0, 2.0, 3.0], &[3, 1]).expect("3x1"));
    let b = NdArray::<Value>::from_f64(&NdArray::from_vec(vec![4.0, 8.0], &[2]).expect("2"));
    let q = a.div(&b).expect("(3, 1) / (2,)");
    assert_eq!(q.shape(), &[3, 2]);
    assert_eq!(q.data_f64().data(), &[0.25, 0.125, 0.5, 0.25, 0.75, 0.375]);
    let y = a
        .add(&b)
        .expect("broadcast")
        .sub(&b)
        .expect("broadcast")
        .tanh()
        .sigmoid();
    y.sum().backward();
    let s = |x: f64| 1.0 / (1.0 + (-x.tanh()).exp());
    for (i, &x) in [1.0f64, 2.0, 3.0].iter().enumerate() {
        let expected = 2.0 * s(x) * (1.0 - s(x)) * (1.0 - x.tanh().powi(2));
        assert!(close(a.grad().data()[i], expected, 1e-12));
    }
    assert!(b.grad().data().iter().all(|g| g.abs() < 1e-12));
}
