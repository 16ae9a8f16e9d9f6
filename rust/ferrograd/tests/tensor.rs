//! Autograd semantics of `Tensor` (accumulation, freed graphs, no-grad, deep chains,
//! threads, grad dtypes) and the errors its ops return.
//!
//! Forward values live in `tensor_forward.rs`, gradient checks in `tensor_grad.rs`.

mod common;

use common::{grad, grad_dtype, leaf, t32, t64, vals};
use ferrograd::ndarray::IndexItem;
use ferrograd::tensor::{is_grad_enabled, NoGradGuard};
use ferrograd::{DType, DynArray, Error, Tensor};

/// `sum(x * x)`: gradient `2x`.
fn sum_of_squares(x: &Tensor) -> Tensor {
    x.mul(x).unwrap().sum(None, false).unwrap()
}

#[test]
fn leaf_gradients_accumulate_across_two_backward_calls() {
    let x = leaf(&[1., -2., 3.], &[3]);
    sum_of_squares(&x).backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![2., -4., 6.]);
    sum_of_squares(&x).backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![4., -8., 12.]);
    // Clearing the grad starts over.
    x.set_grad(None).unwrap();
    assert!(x.grad().is_none());
    sum_of_squares(&x).backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![2., -4., 6.]);
}

#[test]
fn intermediate_tensors_get_no_grad_and_report_their_op() {
    let x = leaf(&[1., 2.], &[2]);
    let y = x.mul_scalar(3.).unwrap();
    let z = y.exp().unwrap().sum(None, false).unwrap();
    assert!(x.is_leaf() && !y.is_leaf());
    assert_eq!((x.op(), y.op(), z.op()), (None, Some("*"), Some("sum")));
    assert_eq!(y.parents().len(), 1);
    assert_eq!(y.parents()[0].id(), x.id());
    z.backward(None, false).unwrap();
    assert!(y.grad().is_none());
    assert!(z.grad().is_none());
    assert!(x.grad().is_some());
    // Backward freed the graph: the parents are gone.
    assert!(y.parents().is_empty());
}

#[test]
fn a_second_backward_through_a_freed_graph_is_a_graph_error_naming_retain_graph() {
    let x = leaf(&[1., 2.], &[2]);
    let loss = x.exp().unwrap().sum(None, false).unwrap();
    loss.backward(None, false).unwrap();
    let first = grad(&x);
    match loss.backward(None, false) {
        Err(Error::Graph(msg)) => assert!(msg.contains("retain_graph"), "{msg}"),
        other => panic!("expected a graph error, got {other:?}"),
    }
    // The failed call changed nothing.
    assert_eq!(grad(&x), first);
}

#[test]
fn retain_graph_allows_a_second_backward_that_accumulates() {
    let x = leaf(&[0., 1.], &[2]);
    let loss = x.exp().unwrap().sum(None, false).unwrap();
    loss.backward(None, true).unwrap();
    assert_eq!(grad(&x), vec![1., 1f64.exp()]);
    loss.backward(None, true).unwrap();
    assert_eq!(grad(&x), vec![2., 2. * 1f64.exp()]);
    // A final backward without retain_graph still works, then frees the graph.
    loss.backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![3., 3. * 1f64.exp()]);
    assert!(matches!(loss.backward(None, false), Err(Error::Graph(_))));
}

#[test]
fn backward_on_a_tensor_that_does_not_require_grad_is_a_graph_error() {
    let x = t64(&[1., 2.], &[2]);
    let y = x.sum(None, false).unwrap();
    assert!(!y.requires_grad());
    assert!(matches!(y.backward(None, false), Err(Error::Graph(_))));
    assert!(matches!(x.backward(None, false), Err(Error::Graph(_))));
}

#[test]
fn backward_without_a_grad_on_a_non_scalar_is_a_graph_error() {
    let x = leaf(&[1., 2.], &[2]);
    let y = x.mul_scalar(2.).unwrap();
    match y.backward(None, false) {
        Err(Error::Graph(msg)) => assert!(msg.contains("(2,)"), "{msg}"),
        other => panic!("expected a graph error, got {other:?}"),
    }
    // With a grad it works; and any one-element shape needs none.
    y.backward(
        Some(DynArray::from_f64(vec![1., 10.], &[2], DType::F64).unwrap()),
        true,
    )
    .unwrap();
    assert_eq!(grad(&x), vec![2., 20.]);
    let one = x
        .reshape(&[1, 1, 2])
        .unwrap()
        .sum(Some(&[2]), true)
        .unwrap();
    assert_eq!(one.shape(), vec![1, 1, 1]);
    one.backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![3., 21.]);
}

#[test]
fn a_grad_of_the_wrong_shape_is_a_shape_error() {
    let x = leaf(&[1., 2., 3.], &[3]);
    let y = x.mul_scalar(2.).unwrap();
    let wrong = DynArray::from_f64(vec![1., 1.], &[2], DType::F64).unwrap();
    match y.backward(Some(wrong), false) {
        Err(Error::Shape(msg)) => assert!(msg.contains("(2,)") && msg.contains("(3,)"), "{msg}"),
        other => panic!("expected a shape error, got {other:?}"),
    }
    // Nothing was freed: the right grad still works.
    let right = DynArray::from_f64(vec![1., 1., 1.], &[3], DType::F32).unwrap();
    y.backward(Some(right), false).unwrap();
    assert_eq!(grad(&x), vec![2., 2., 2.]);
}

#[test]
fn no_grad_guard_makes_outputs_plain_leaves_until_dropped() {
    let x = leaf(&[1., 2.], &[2]);
    {
        let _guard = NoGradGuard::new();
        assert!(!is_grad_enabled());
        let y = x.mul(&x).unwrap().sum(None, false).unwrap();
        assert!(!y.requires_grad());
        assert!(y.is_leaf() && y.parents().is_empty());
        assert_eq!(vals(&y), vec![5.]);
        {
            // Nested guards restore the outer setting.
            let _inner = NoGradGuard::new();
        }
        assert!(!is_grad_enabled());
    }
    assert!(is_grad_enabled());
    let y = x.mul(&x).unwrap().sum(None, false).unwrap();
    assert!(y.requires_grad());
    y.backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![2., 4.]);
}

#[test]
fn only_inputs_that_require_grad_receive_one() {
    let x = leaf(&[1., 2.], &[2]);
    let c = t64(&[3., 4.], &[2]);
    x.mul(&c)
        .unwrap()
        .sum(None, false)
        .unwrap()
        .backward(None, false)
        .unwrap();
    assert_eq!(grad(&x), vec![3., 4.]);
    assert!(c.grad().is_none());
}

const CHAIN: usize = 100_000;

#[test]
fn a_chain_of_100_000_ops_builds_backprops_and_drops_without_overflowing_the_stack() {
    let x = leaf(&[1., 2.], &[2]);
    let mut y = x.clone();
    for i in 0..CHAIN {
        y = if i % 2 == 0 {
            y.add_scalar(1.0)
        } else {
            y.mul_scalar(1.0)
        }
        .unwrap();
    }
    assert_eq!(
        vals(&y),
        vec![1. + CHAIN as f64 / 2., 2. + CHAIN as f64 / 2.]
    );
    let loss = y.sum(None, false).unwrap();
    loss.backward(None, true).unwrap();
    assert_eq!(grad(&x), vec![1., 1.]);
    // Dropping the retained graph must not recurse either.
    drop(loss);
    drop(y);
    assert_eq!(grad(&x), vec![1., 1.]);
}

#[test]
fn a_chain_of_100_000_ops_frees_its_graph_during_backward() {
    let x = leaf(&[3.], &[]);
    let mut y = x.clone();
    for _ in 0..CHAIN {
        y = y.add_scalar(1.0).unwrap();
    }
    y.backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![1.]);
    assert!(matches!(y.backward(None, false), Err(Error::Graph(_))));
}

#[test]
fn a_chain_of_100_000_ops_drops_without_backward() {
    let x = leaf(&[1.], &[1]);
    let mut y = x.clone();
    for _ in 0..CHAIN {
        y = y.mul_scalar(1.0).unwrap();
    }
    drop(y);
    assert!(x.grad().is_none());
}

#[test]
fn tensor_is_send_and_sync() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<Tensor>();
}

#[test]
fn two_threads_backpropagating_into_one_leaf_add_up_exactly() {
    const RUNS: usize = 1000;
    let w = leaf(&[0.1, -0.3, 0.7], &[3]);
    let x = t64(&[1.5, 2.25, -0.125], &[3]);
    let one_pass = |w: &Tensor| {
        w.mul(&x)
            .unwrap()
            .tanh()
            .unwrap()
            .sum(None, false)
            .unwrap()
            .backward(None, false)
            .unwrap();
    };
    // The gradient of one pass, on a separate leaf with the same values.
    let single = leaf(&[0.1, -0.3, 0.7], &[3]);
    one_pass(&single);
    let single = grad(&single);

    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..RUNS {
                    one_pass(&w);
                }
            });
        }
    });
    // Sum the same per-pass gradient 2000 times sequentially: the result must be identical.
    let mut expected = vec![0.0; 3];
    for _ in 0..2 * RUNS {
        for (e, g) in expected.iter_mut().zip(&single) {
            *e += g;
        }
    }
    assert_eq!(grad(&w), expected);
    // With exactly representable per-pass gradients, that is 2000 times the single one.
    let v = leaf(&[1., 2., 4.], &[3]);
    let c = t64(&[0.5, 0.25, 2.], &[3]);
    std::thread::scope(|s| {
        for _ in 0..2 {
            s.spawn(|| {
                for _ in 0..RUNS {
                    v.mul(&c)
                        .unwrap()
                        .sum(None, false)
                        .unwrap()
                        .backward(None, false)
                        .unwrap();
                }
            });
        }
    });
    assert_eq!(grad(&v), vec![1000., 500., 4000.]);
}

#[test]
fn a_leaf_grad_keeps_the_leaf_dtype_when_the_output_is_promoted() {
    let a32 = common::tensor(&[1., 2.], &[2], DType::F32, true);
    let b64 = leaf(&[3., 4.], &[2]);
    let out = a32.mul(&b64).unwrap().sum(None, false).unwrap();
    assert_eq!(out.dtype(), DType::F64);
    out.backward(None, false).unwrap();
    assert_eq!(grad_dtype(&a32), DType::F32);
    assert_eq!(grad_dtype(&b64), DType::F64);
    assert_eq!(grad(&a32), vec![3., 4.]);
    assert_eq!(grad(&b64), vec![1., 2.]);
    // A float64 grad passed to a float32 output is cast to the output's dtype.
    let c32 = common::tensor(&[1., 2.], &[2], DType::F32, true);
    let y = c32.mul_scalar(2.).unwrap();
    y.backward(
        Some(DynArray::from_f64(vec![1., 1.], &[2], DType::F64).unwrap()),
        false,
    )
    .unwrap();
    assert_eq!(grad_dtype(&c32), DType::F32);
    // Through matmul too.
    let m32 = common::tensor(&[1., 2., 3., 4.], &[2, 2], DType::F32, true);
    let v64 = leaf(&[1., 1.], &[2]);
    m32.matmul(&v64)
        .unwrap()
        .sum(None, false)
        .unwrap()
        .backward(None, false)
        .unwrap();
    assert_eq!(grad_dtype(&m32), DType::F32);
    assert_eq!(grad(&m32), vec![1., 1., 1., 1.]);
    assert_eq!(grad(&v64), vec![4., 6.]);
}

#[test]
fn set_requires_grad_is_refused_on_non_leaves() {
    let x = leaf(&[1.], &[1]);
    let y = x.mul_scalar(2.).unwrap();
    assert!(matches!(y.set_requires_grad(false), Err(Error::Graph(_))));
    let d = y.detach();
    assert!(d.is_leaf() && !d.requires_grad());
    assert_eq!(vals(&d), vec![2.]);
}

/// Asserts `r` is a shape error whose message names every string in `parts`.
#[track_caller]
fn assert_shape_err(r: ferrograd::Result<Tensor>, parts: &[&str]) {
    match r {
        Err(Error::Shape(msg)) => {
            for p in parts {
                assert!(msg.contains(p), "{msg:?} does not mention {p}");
            }
        }
        other => panic!("expected a shape error, got {other:?}"),
    }
}

#[test]
fn mismatched_broadcast_shapes_are_shape_errors_naming_both_shapes() {
    let a = t64(&[0.; 6], &[2, 3]);
    let b = t32(&[0.; 4], &[4]);
    assert_shape_err(a.add(&b), &["(2, 3)", "(4,)"]);
    assert_shape_err(a.sub(&b), &["(2, 3)", "(4,)"]);
    assert_shape_err(b.mul(&a), &["(4,)", "(2, 3)"]);
    assert_shape_err(a.div(&b), &["(2, 3)", "(4,)"]);
    assert_shape_err(a.pow(&b), &["(2, 3)", "(4,)"]);
    let c = t64(&[0.; 6], &[3, 2]);
    assert_shape_err(a.add(&c), &["(2, 3)", "(3, 2)"]);
}

#[test]
fn matmul_with_mismatched_inner_dims_is_a_shape_error_naming_both_shapes() {
    let a = t64(&[0.; 12], &[3, 4]);
    let b = t64(&[0.; 10], &[5, 2]);
    assert_shape_err(a.matmul(&b), &["(3, 4)", "(5, 2)", "4 != 5"]);
    let u = t64(&[0.; 3], &[3]);
    assert_shape_err(u.matmul(&a.t().unwrap()), &["(3,)", "(4, 3)"]);
    assert_shape_err(
        t64(&[0.; 24], &[2, 3, 4]).matmul(&t64(&[0.; 30], &[3, 5, 2])),
        &["(2, 3, 4)", "(3, 5, 2)"],
    );
    // 0-d operands have no matrix axes.
    assert_shape_err(t64(&[1.], &[]).matmul(&u), &["()", "(3,)"]);
}

#[test]
fn bad_axes_are_axis_errors() {
    let x = t64(&[0.; 6], &[2, 3]);
    let is_axis = |r: ferrograd::Result<Tensor>| matches!(r, Err(Error::Axis(_)));
    assert!(is_axis(x.sum(Some(&[2]), false)));
    assert!(is_axis(x.mean(Some(&[-3]), false)));
    assert!(is_axis(x.max(Some(&[0, 0]), false)));
    assert!(is_axis(x.min(Some(&[1, -1]), true)));
    assert!(is_axis(x.argmax(Some(2), false)));
    assert!(is_axis(x.softmax(2)));
    assert!(is_axis(x.log_softmax(-3)));
    assert!(is_axis(x.transpose(0, 2)));
    assert!(is_axis(x.permute(&[0])));
    assert!(is_axis(x.permute(&[0, 0])));
    assert!(is_axis(Tensor::cat(&[&x, &x], 2)));
    assert!(is_axis(Tensor::stack(&[&x, &x], 3)));
}

#[test]
fn other_bad_arguments_get_the_matching_error_kind() {
    let x = t64(&[0.; 6], &[2, 3]);
    assert!(matches!(x.reshape(&[4, -1]), Err(Error::Shape(_))));
    assert!(matches!(x.reshape(&[-1, -1]), Err(Error::Value(_))));
    assert!(matches!(
        x.index(&[IndexItem::Int(2)]),
        Err(Error::Index(_))
    ));
    assert!(matches!(
        x.index(&[IndexItem::slice(None, None, Some(0))]),
        Err(Error::Value(_))
    ));
    assert!(matches!(Tensor::cat(&[], 0), Err(Error::Value(_))));
    let y = t64(&[0.; 4], &[2, 2]);
    assert!(matches!(Tensor::cat(&[&x, &y], 0), Err(Error::Shape(_))));
    assert!(matches!(Tensor::stack(&[&x, &y], 0), Err(Error::Shape(_))));
}

#[test]
fn an_impossible_allocation_is_a_memory_error_not_an_abort() {
    for dt in [DType::F32, DType::F64] {
        assert!(matches!(
            Tensor::zeros(&[1 << 40, 1 << 30], dt, false),
            Err(Error::Memory(_))
        ));
        assert!(matches!(
            Tensor::randn(&[1 << 40, 1 << 30], dt, false),
            Err(Error::Memory(_))
        ));
        // Sizes that fit `usize` but no address space: refused, not aborted.
        assert!(matches!(
            Tensor::ones(&[1 << 50], dt, false),
            Err(Error::Memory(_))
        ));
        assert!(matches!(
            Tensor::arange(0.0, (1u64 << 50) as f64, 1.0, dt, false),
            Err(Error::Memory(_))
        ));
        assert!(matches!(
            Tensor::eye(1 << 25, 1 << 25, dt, false),
            Err(Error::Memory(_))
        ));
    }
}
