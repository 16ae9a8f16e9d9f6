//! Backward of every differentiable `Tensor` op, checked against central finite differences
//! in float64 (see `common::check_grad`), plus the exact gradients of ties and gathers.

mod common;

use common::{check_grad, grad, leaf, positive, sample};
use ferrograd::ndarray::IndexItem;
use ferrograd::{Result, Tensor};

/// The broadcasting pairs every binary op is checked on (each also in swapped order).
const BROADCAST_PAIRS: [(&[usize], &[usize]); 6] = [
    (&[2, 3], &[2, 3]),
    (&[], &[3]),
    (&[1], &[3]),
    (&[2, 3], &[3]),
    (&[2, 1], &[1, 3]),
    (&[4, 1, 3], &[2, 1]),
];

type Binary = fn(&Tensor, &Tensor) -> Result<Tensor>;

/// Checks a binary op on every broadcasting pair, both ways round; `pos` asks for positive
/// left operands (bases of `pow`, denominators of `div`).
fn check_binary(op: Binary, pos_left: bool, pos_right: bool) {
    for (a, b) in BROADCAST_PAIRS {
        for (sa, sb) in [(a, b), (b, a)] {
            let x = if pos_left {
                positive(sa, 1)
            } else {
                sample(sa, 1)
            };
            let y = if pos_right {
                positive(sb, 2)
            } else {
                sample(sb, 2)
            };
            check_grad(|t| op(&t[0], &t[1]), &[x, y]);
        }
    }
}

#[test]
fn add_gradients_reduce_over_every_broadcast_pair() {
    check_binary(Tensor::add, false, false);
}

#[test]
fn sub_gradients_reduce_over_every_broadcast_pair() {
    check_binary(Tensor::sub, false, false);
}

#[test]
fn mul_gradients_reduce_over_every_broadcast_pair() {
    check_binary(Tensor::mul, false, false);
}

#[test]
fn div_gradients_reduce_over_every_broadcast_pair() {
    check_binary(Tensor::div, false, true);
}

#[test]
fn pow_with_a_tensor_exponent_is_differentiable_in_base_and_exponent() {
    check_binary(Tensor::pow, true, false);
}

#[test]
fn a_tensor_used_twice_in_one_op_gets_both_contributions() {
    check_grad(|t| t[0].mul(&t[0]), &[sample(&[2, 3], 3)]);
    check_grad(|t| t[0].pow(&t[0]), &[positive(&[4], 4)]);
    check_grad(
        |t| t[0].add(&t[1])?.mul(&t[0])?.div(&t[1]),
        &[sample(&[3], 5), positive(&[2, 3], 6)],
    );
}

#[test]
fn scalar_ops_have_the_derivatives_of_their_scalar_forms() {
    let x = || vec![positive(&[2, 3], 7)];
    check_grad(|t| t[0].add_scalar(1.5), &x());
    check_grad(|t| t[0].sub_scalar(1.5), &x());
    check_grad(|t| t[0].rsub_scalar(1.5), &x());
    check_grad(|t| t[0].mul_scalar(-2.5), &x());
    check_grad(|t| t[0].div_scalar(-2.5), &x());
    check_grad(|t| t[0].rdiv_scalar(3.0), &x());
    check_grad(|t| t[0].pow_scalar(3.0), &x());
    check_grad(|t| t[0].pow_scalar(-0.5), &x());
    check_grad(|t| t[0].rpow_scalar(2.0), &x());
    check_grad(|t| t[0].rpow_scalar(0.3), &x());
}

#[test]
fn rpow_and_rdiv_scalars_differentiate_negative_and_mixed_inputs() {
    check_grad(|t| t[0].rpow_scalar(1.7), &[sample(&[5], 8)]);
    check_grad(|t| t[0].rdiv_scalar(-4.0), &[sample(&[5], 9)]);
}

#[test]
fn unary_ops_match_finite_differences() {
    let x = || vec![sample(&[2, 3], 10)];
    let p = || vec![positive(&[2, 3], 11)];
    check_grad(|t| t[0].neg(), &x());
    check_grad(|t| t[0].exp(), &x());
    check_grad(|t| t[0].log(), &p());
    check_grad(|t| t[0].sqrt(), &p());
    check_grad(|t| t[0].abs(), &x());
    check_grad(|t| t[0].relu(), &x());
    check_grad(|t| t[0].sigmoid(), &x());
    check_grad(|t| t[0].tanh(), &x());
}

#[test]
fn matmul_gradients_cover_every_operand_rank() {
    let cases: [(&[usize], &[usize]); 7] = [
        (&[4], &[4]),
        (&[3], &[3, 2]),
        (&[2, 3], &[3]),
        (&[2, 3], &[3, 4]),
        (&[2, 1, 3, 4], &[5, 4, 2]),
        (&[4], &[2, 4, 3]),
        (&[2, 3, 4], &[4]),
    ];
    for (sa, sb) in cases {
        check_grad(|t| t[0].matmul(&t[1]), &[sample(sa, 12), sample(sb, 13)]);
    }
}

/// Reduction axes to check on a (2, 3, 4) input: all, single, negative, tuple.
const AXES: [Option<&[isize]>; 6] = [
    None,
    Some(&[0]),
    Some(&[1]),
    Some(&[-1]),
    Some(&[0, 2]),
    Some(&[-1, 0, 1]),
];

#[test]
fn sum_and_mean_gradients_hold_for_every_axis_form_with_and_without_keepdims() {
    for axes in AXES {
        for keepdims in [false, true] {
            check_grad(|t| t[0].sum(axes, keepdims), &[sample(&[2, 3, 4], 14)]);
            check_grad(|t| t[0].mean(axes, keepdims), &[sample(&[2, 3, 4], 15)]);
        }
    }
}

#[test]
fn max_and_min_gradients_hold_for_every_axis_form_with_and_without_keepdims() {
    for axes in AXES {
        for keepdims in [false, true] {
            check_grad(|t| t[0].max(axes, keepdims), &[sample(&[2, 3, 4], 16)]);
            check_grad(|t| t[0].min(axes, keepdims), &[sample(&[2, 3, 4], 17)]);
        }
    }
}

#[test]
fn tied_maxima_and_minima_share_the_gradient_equally() {
    let x = leaf(&[1.0, 3.0, 3.0], &[3]);
    x.max(None, false).unwrap().backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![0.0, 0.5, 0.5]);

    let x = leaf(&[2.0, 2.0, 2.0, 5.0], &[4]);
    x.min(None, false).unwrap().backward(None, false).unwrap();
    let third = 1.0 / 3.0;
    assert_eq!(grad(&x), vec![third, third, third, 0.0]);

    // Per row along an axis: row 0 ties twice, row 1 has one maximum.
    let x = leaf(&[4.0, 1.0, 4.0, 0.0, 7.0, 2.0], &[2, 3]);
    let y = x.max(Some(&[1]), false).unwrap();
    y.backward(Some(common::t64(&[2.0, 10.0], &[2]).array().clone()), false)
        .unwrap();
    assert_eq!(grad(&x), vec![1.0, 0.0, 1.0, 0.0, 10.0, 0.0]);
}

#[test]
fn softmax_and_log_softmax_gradients_hold_along_each_axis() {
    for axis in [0, 1, 2, -1, -3] {
        check_grad(|t| t[0].softmax(axis), &[sample(&[2, 3, 4], 18)]);
        check_grad(|t| t[0].log_softmax(axis), &[sample(&[2, 3, 4], 19)]);
    }
    check_grad(|t| t[0].softmax(0), &[sample(&[5], 20)]);
    check_grad(|t| t[0].log_softmax(-1), &[sample(&[5], 21)]);
}

#[test]
fn shape_ops_route_gradients_back_to_their_source_elements() {
    let x = || vec![sample(&[2, 3, 4], 22)];
    check_grad(|t| t[0].reshape(&[4, -1]), &x());
    check_grad(|t| t[0].flatten(), &x());
    check_grad(|t| t[0].permute(&[2, 0, 1]), &x());
    check_grad(|t| t[0].permute(&[-1, 1, 0]), &x());
    check_grad(|t| t[0].transpose(0, -1), &x());
    check_grad(|t| t[0].t(), &x());
    // A permuted tensor flowing into a broadcast op.
    check_grad(
        |t| t[0].t()?.mul(&t[1]),
        &[sample(&[2, 3, 4], 23), sample(&[3, 1], 24)],
    );
}

fn slice(start: Option<isize>, stop: Option<isize>, step: Option<isize>) -> IndexItem {
    IndexItem::slice(start, stop, step)
}

#[test]
fn index_gradients_cover_ints_slices_new_axes_ellipsis_and_arrays() {
    use IndexItem::{Ellipsis, Int, NewAxis};
    let cases: Vec<Vec<IndexItem>> = vec![
        vec![Int(1)],
        vec![Int(-1), Int(2)],
        vec![Int(-2), slice(Some(3), None, Some(-2))],
        vec![slice(None, None, Some(-1))],
        vec![IndexItem::full(), slice(Some(-1), None, Some(-2))],
        vec![
            slice(Some(2), Some(0), Some(-1)),
            slice(Some(1), Some(4), Some(2)),
        ],
        vec![NewAxis, Ellipsis, Int(0)],
        vec![Ellipsis, NewAxis, slice(None, None, Some(-3))],
        vec![IndexItem::list(vec![0, 0, 2, -1])],
        vec![IndexItem::full(), IndexItem::list(vec![3, 1, 3])],
        vec![
            IndexItem::list(vec![1, 1]),
            Ellipsis,
            IndexItem::list(vec![0, 0]),
        ],
        vec![IndexItem::Array {
            indices: vec![0, 2, 2, 0],
            shape: vec![2, 2],
        }],
    ];
    for items in cases {
        check_grad(move |t| t[0].index(&items), &[sample(&[3, 4], 25)]);
    }
    check_grad(
        |t| t[0].index(&[Ellipsis, Int(1)]),
        &[sample(&[2, 3, 4], 26)],
    );
}

#[test]
fn repeated_gather_indices_accumulate_their_gradients() {
    let x = leaf(&[10.0, 20.0, 30.0], &[3]);
    let y = x.index(&[IndexItem::list(vec![0, 2, 0, 0, -1])]).unwrap();
    assert_eq!(common::vals(&y), vec![10.0, 30.0, 10.0, 10.0, 30.0]);
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![3.0, 0.0, 2.0]);
}

#[test]
fn cat_and_stack_split_the_gradient_along_axis_0_and_1() {
    for axis in [0, 1, -1] {
        check_grad(
            |t| Tensor::cat(&[&t[0], &t[1], &t[2]], axis),
            &[
                sample(&[2, 3], 27),
                sample(&[2, 3], 28),
                sample(&[2, 3], 29),
            ],
        );
        check_grad(
            |t| Tensor::stack(&[&t[0], &t[1]], axis),
            &[sample(&[2, 3], 30), sample(&[2, 3], 31)],
        );
    }
    // Unequal extents along the joined axis.
    check_grad(
        |t| Tensor::cat(&[&t[0], &t[1]], 0),
        &[sample(&[1, 3], 32), sample(&[3, 3], 33)],
    );
    check_grad(
        |t| Tensor::cat(&[&t[0], &t[1]], 1),
        &[sample(&[2, 1], 34), sample(&[2, 4], 35)],
    );
    check_grad(
        |t| Tensor::stack(&[&t[0], &t[1], &t[0]], 2),
        &[sample(&[2, 3], 36), sample(&[2, 3], 37)],
    );
}

#[test]
fn a_small_network_composes_every_rule_correctly() {
    // logits = relu(x @ w1 + b1) @ w2; loss = -mean(log_softmax(logits)[.., class])
    check_grad(
        |t| {
            let h = t[0].matmul(&t[1])?.add(&t[2])?.tanh()?;
            let logits = h.matmul(&t[3])?;
            let picked = logits.log_softmax(-1)?.index(&[
                IndexItem::list(vec![0, 1, 2]),
                IndexItem::list(vec![1, 0, 1]),
            ])?;
            picked.mean(None, false)?.neg()
        },
        &[
            sample(&[3, 4], 38),
            sample(&[4, 5], 39),
            sample(&[5], 40),
            sample(&[5, 2], 41),
        ],
    );
}

#[test]
#[should_panic(expected = "finite differences")]
fn the_gradient_check_catches_a_wrong_backward_rule() {
    // Doubles its input but claims the derivative is 3.
    check_grad(
        |t| {
            let out = t[0]
                .array()
                .zip_scalar(2.0, ferrograd::dynarray::fns::Mul)?;
            Ok(Tensor::from_op(out, "bad", &[&t[0]], |g, _| {
                Ok(vec![Some(
                    g.zip_scalar(3.0, ferrograd::dynarray::fns::Mul)?,
                )])
            }))
        },
        &[sample(&[3], 42)],
    );
}

#[test]
fn zero_to_the_power_zero_has_the_zero_gradients_pytorch_gives() {
    // x ** 0 is constant: no NaN from 0 * 0^-1 at x = 0.
    let x = leaf(&[0.0, 2.0], &[2]);
    let y = x.pow_scalar(0.0).unwrap();
    assert_eq!(common::vals(&y), vec![1.0, 1.0]);
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![0.0, 0.0]);
    // Tensor exponents: 0 ** 0 and 0 ** 2 give zero gradients in base and exponent.
    let a = leaf(&[0.0, 0.0, 2.0], &[3]);
    let b = leaf(&[0.0, 2.0, 0.0], &[3]);
    let y = a.pow(&b).unwrap();
    assert_eq!(common::vals(&y), vec![1.0, 0.0, 1.0]);
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    assert_eq!(grad(&a), vec![0.0, 0.0, 0.0]);
    assert_eq!(grad(&b), vec![0.0, 0.0, 2f64.ln()]);
}

#[test]
fn softmax_of_a_zero_dimensional_tensor_is_constant_and_backpropagates_zero() {
    let x = leaf(&[2.0], &[]);
    let y = x.softmax(0).unwrap();
    assert_eq!(common::vals(&y), vec![1.0]);
    y.backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![0.0]);
    let x = leaf(&[2.0], &[]);
    let y = x.log_softmax(-1).unwrap();
    assert_eq!(common::vals(&y), vec![0.0]);
    y.backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![0.0]);
}

#[test]
fn a_nan_maximum_sends_its_gradient_to_the_nan_input_only() {
    let x = leaf(&[1.0, f64::NAN, 3.0], &[3]);
    let y = x.max(None, false).unwrap();
    assert!(common::vals(&y)[0].is_nan());
    y.backward(None, false).unwrap();
    assert_eq!(grad(&x), vec![0.0, 1.0, 0.0]);
    let x = leaf(&[1.0, f64::NAN, 3.0, 4.0], &[2, 2]);
    x.min(Some(&[1]), false)
        .unwrap()
        .sum(None, false)
        .unwrap()
        .backward(None, false)
        .unwrap();
    assert_eq!(grad(&x), vec![0.0, 1.0, 1.0, 0.0]);
}

#[test]
fn empty_axis_tuples_and_empty_tensors_backpropagate() {
    // Reducing over no axes is the identity.
    check_grad(|t| t[0].sum(Some(&[]), false), &[sample(&[2, 3], 43)]);
    check_grad(|t| t[0].mean(Some(&[]), true), &[sample(&[2, 3], 44)]);
    check_grad(|t| t[0].max(Some(&[]), false), &[sample(&[2, 3], 45)]);
    // Zero-size inputs get zero-size gradients of their own shape.
    let x = leaf(&[], &[0, 3]);
    let s = x.sum(Some(&[0]), false).unwrap();
    assert_eq!(common::vals(&s), vec![0.0; 3]);
    s.sum(None, false).unwrap().backward(None, false).unwrap();
    assert_eq!(x.grad().unwrap().read().shape(), &[0, 3]);
    let (a, b) = (leaf(&[], &[2, 0]), leaf(&[], &[0, 3]));
    let y = a.matmul(&b).unwrap();
    assert_eq!(common::vals(&y), vec![0.0; 6]);
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    assert_eq!(a.grad().unwrap().read().shape(), &[2, 0]);
    assert_eq!(b.grad().unwrap().read().shape(), &[0, 3]);
    let z = leaf(&[1.0, 2.0], &[2]);
    let picked = z.index(&[IndexItem::list(vec![])]).unwrap();
    picked
        .sum(None, false)
        .unwrap()
        .backward(None, false)
        .unwrap();
    assert_eq!(grad(&z), vec![0.0, 0.0]);
}

#[test]
fn large_tensors_take_the_parallel_kernels_and_give_the_same_gradients() {
    let n = 100_000;
    let d: Vec<f64> = (0..n).map(|i| (i % 7) as f64 - 3.0).collect();
    for dt in common::DTYPES {
        let x = common::tensor(&d, &[n], dt, true);
        let y = x
            .mul(&x)
            .unwrap()
            .add_scalar(1.0)
            .unwrap()
            .sum(None, false)
            .unwrap();
        // Two passes: the second accumulates into a grad of 100,000 elements.
        y.backward(None, true).unwrap();
        y.backward(None, false).unwrap();
        assert!(grad(&x).iter().zip(&d).all(|(g, x)| *g == 4.0 * x));
        let expected: f64 = d.iter().map(|x| x * x + 1.0).sum();
        assert_eq!(common::vals(&y)[0], expected);
        let rows = x
            .reshape(&[400, 250])
            .unwrap()
            .softmax(-1)
            .unwrap()
            .sum(Some(&[1]), false)
            .unwrap();
        assert!(common::vals(&rows).iter().all(|v| (v - 1.0).abs() < 1e-5));
    }
}
