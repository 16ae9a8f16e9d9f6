//! Version counters: every write path bumps its storage's version, and a backward rule that
//! reads an array written since its forward fails with a graph error instead of computing a
//! wrong gradient — while rules that read nothing, or not the written array, still work.

mod common;

use common::{grad, leaf, t64, vals};
use ferrograd::ndarray::IndexItem;
use ferrograd::optim::{sgd_step, Sgd};
use ferrograd::tensor::{NoGradGuard, Operand};
use ferrograd::{Error, Result, Tensor};

fn no_grad<R>(f: impl FnOnce() -> R) -> R {
    let _guard = NoGradGuard::new();
    f()
}

/// Bumps a tensor's version without changing its values.
fn touch(t: &Tensor) {
    no_grad(|| t.add_(Operand::Scalar(0.0.into()))).expect("an in-place add under no-grad");
}

fn graph_message(r: Result<()>) -> String {
    match r {
        Err(Error::Graph(m)) => m,
        other => panic!("expected a graph error, got {other:?}"),
    }
}

#[test]
fn every_write_path_bumps_the_version_of_the_storage_it_writes() {
    let x = leaf(&[1.0, 2.0], &[2]);
    assert_eq!(x.version(), 0);
    *x.array_mut() = t64(&[3.0, 4.0], &[2]).array().clone();
    assert_eq!(x.version(), 1);
    // An alias shares the storage and so the counter.
    let alias = x.detach();
    no_grad(|| alias.mul_(Operand::Scalar(2.0.into()))).unwrap();
    assert_eq!((x.version(), alias.version()), (2, 2));
    no_grad(|| x.fill_(1.0)).unwrap();
    no_grad(|| x.zero_()).unwrap();
    no_grad(|| x.copy_(&t64(&[5.0], &[1]))).unwrap();
    no_grad(|| x.clamp_(None, Some(4.0))).unwrap();
    no_grad(|| x.index_put_(&[IndexItem::Int(0)], Operand::Scalar((-1.0).into()))).unwrap();
    assert_eq!(x.version(), 7);
    assert_eq!(vals(&x), vec![-1.0, 4.0]);

    // Backward accumulating into an existing grad writes it.
    for _ in 0..2 {
        x.mul_scalar(3.0)
            .unwrap()
            .sum(None, false)
            .unwrap()
            .backward(None, false)
            .unwrap();
    }
    assert_eq!(x.grad().unwrap().version(), 1);
    assert_eq!(grad(&x), vec![6.0, 6.0]);

    // An optimizer step writes the parameter.
    let sgd = Sgd {
        lr: 0.5,
        momentum: 0.0,
        dampening: 0.0,
        weight_decay: 0.0,
        nesterov: false,
    };
    sgd_step(&x, None, &sgd, true).unwrap();
    assert_eq!(x.version(), 8);
    assert_eq!(vals(&x), vec![-4.0, 1.0]);
}

#[test]
fn a_failed_in_place_op_writes_nothing_and_counts_no_write() {
    let x = t64(&[1.0, 2.0, 3.0], &[3]);
    assert!(matches!(
        x.add_(Operand::Tensor(&t64(&[1.0, 2.0], &[2]))),
        Err(Error::Shape(_))
    ));
    assert!(matches!(
        x.index_put_(&[IndexItem::Int(5)], Operand::Scalar(0.0.into())),
        Err(Error::Index(_))
    ));
    assert!(matches!(
        x.copy_(&t64(&[0.0; 6], &[2, 3])),
        Err(Error::Shape(_))
    ));
    assert_eq!(x.version(), 0);
    assert_eq!(vals(&x), vec![1.0, 2.0, 3.0]);
}

#[test]
fn the_issue_example_raises_naming_mul_and_both_versions() {
    // x * w saves x for w's gradient; writing x afterwards would give w.grad = 100.
    let x = t64(&[1.0, 1.0, 1.0], &[3]);
    let w = leaf(&[2.0, 2.0, 2.0], &[3]);
    let y = x.mul(&w).unwrap().sum(None, false).unwrap();
    no_grad(|| x.add_(Operand::Scalar(99.0.into()))).unwrap();
    let msg = graph_message(y.backward(None, false));
    for part in [
        "input 0 of mul",
        "modified by an in-place operation",
        "version 1, expected 0",
        "the op was mul",
    ] {
        assert!(msg.contains(part), "{part:?} not in {msg:?}");
    }
    assert!(w.grad().is_none(), "no gradient may reach w");
}

#[test]
fn add_reads_no_saved_array_so_the_same_write_raises_nothing() {
    let x = t64(&[1.0, 1.0, 1.0], &[3]);
    let w = leaf(&[2.0, 2.0, 2.0], &[3]);
    let y = x.add(&w).unwrap().sum(None, false).unwrap();
    no_grad(|| x.add_(Operand::Scalar(99.0.into()))).unwrap();
    y.backward(None, false).unwrap();
    assert_eq!(grad(&w), vec![1.0, 1.0, 1.0]);
}

#[test]
fn mul_reads_only_the_side_the_wanted_gradient_needs() {
    // Only w requires grad: its gradient reads x, never w itself.
    let x = t64(&[1.0, 2.0, 3.0], &[3]);
    let w = leaf(&[2.0, 2.0, 2.0], &[3]);
    let y = x.mul(&w).unwrap().sum(None, false).unwrap();
    touch(&w);
    y.backward(None, false).unwrap();
    assert_eq!(grad(&w), vec![1.0, 2.0, 3.0]);
}

#[test]
fn matmul_and_linear_read_only_the_operand_the_wanted_gradient_needs() {
    let a = t64(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    let w = leaf(&[1.0, 0.0, 0.0, 1.0], &[2, 2]);
    let mm = a.matmul(&w).unwrap().sum(None, false).unwrap();
    let lin = a.linear(&w, None).unwrap().sum(None, false).unwrap();
    touch(&w);
    mm.backward(None, false).unwrap();
    lin.backward(None, false).unwrap();
    // d(sum(a @ w))/dw = aᵀ·1 = the row sums of aᵀ; d(sum(a @ wᵀ))/dw = its transpose.
    assert_eq!(grad(&w), vec![4.0 + 4.0, 4.0 + 6.0, 6.0 + 4.0, 6.0 + 6.0]);

    let mm = a.matmul(&w).unwrap().sum(None, false).unwrap();
    touch(&a);
    let msg = graph_message(mm.backward(None, false));
    assert!(msg.contains("input 0 of matmul"), "{msg}");
}

#[test]
fn a_modified_output_is_reported_as_the_output_of_its_op() {
    let x = leaf(&[0.0, 1.0], &[2]);
    let y = x.exp().unwrap();
    let loss = y.sum(None, false).unwrap();
    touch(&y);
    let msg = graph_message(loss.backward(None, false));
    assert!(msg.contains("the output of exp"), "{msg}");
    assert!(msg.contains("version 1, expected 0"), "{msg}");
}

#[test]
fn a_second_backward_with_a_retained_graph_sees_a_write_made_in_between() {
    let x = leaf(&[1.0, 2.0], &[2]);
    let loss = x.mul(&x).unwrap().sum(None, false).unwrap();
    loss.backward(None, true).unwrap();
    assert_eq!(grad(&x), vec![2.0, 4.0]);
    touch(&x);
    let msg = graph_message(loss.backward(None, true));
    assert!(msg.contains("of mul"), "{msg}");
    assert_eq!(
        grad(&x),
        vec![2.0, 4.0],
        "the failed backward added nothing"
    );
}

type Op = fn(&Tensor) -> Result<Tensor>;

/// Each one-input op, and whether its backward reads its input and its output.
fn unary_ops() -> Vec<(&'static str, Op, bool, bool)> {
    vec![
        ("neg", |x| x.neg(), false, false),
        ("exp", |x| x.exp(), false, true),
        ("log", |x| x.log(), true, false),
        ("sqrt", |x| x.sqrt(), false, true),
        ("abs", |x| x.abs(), true, false),
        ("relu", |x| x.relu(), false, true),
        ("sigmoid", |x| x.sigmoid(), false, true),
        ("tanh", |x| x.tanh(), false, true),
        ("gelu", |x| x.gelu(), true, false),
        ("clamp", |x| x.clamp(Some(0.5), None), true, false),
        ("add_scalar", |x| x.add_scalar(2.0), false, false),
        ("mul_scalar", |x| x.mul_scalar(2.0), false, false),
        ("div_scalar", |x| x.div_scalar(2.0), false, false),
        ("rsub_scalar", |x| x.rsub_scalar(2.0), false, false),
        ("pow_scalar", |x| x.pow_scalar(3.0), true, false),
        ("rpow_scalar", |x| x.rpow_scalar(2.0), false, true),
        ("rdiv_scalar", |x| x.rdiv_scalar(2.0), true, true),
        ("sum", |x| x.sum(Some(&[1]), false), false, false),
        ("mean", |x| x.mean(None, false), false, false),
        ("max", |x| x.max(Some(&[0]), false), true, true),
        ("min", |x| x.min(None, false), true, true),
        ("softmax", |x| x.softmax(-1), false, true),
        ("log_softmax", |x| x.log_softmax(0), false, true),
        ("reshape", |x| x.reshape(&[-1]), false, false),
        ("t", |x| x.t(), false, false),
        ("index", |x| x.index(&[IndexItem::Int(1)]), false, false),
        ("astype", |x| x.astype(ferrograd::DType::F32), false, false),
        (
            "cross_entropy",
            |x| x.cross_entropy(&[0, 2], 0.1),
            true,
            false,
        ),
        ("nll_loss", |x| x.nll_loss(&[1, 0]), false, false),
        (
            "max_pool2d",
            |x| x.reshape(&[1, 1, 2, 3])?.max_pool2d((1, 2), (1, 1), (0, 0)),
            false,
            false,
        ),
    ]
}

#[test]
fn each_unary_op_raises_exactly_when_its_backward_reads_the_written_array() {
    for (name, op, reads_input, reads_output) in unary_ops() {
        let fresh = || leaf(&[0.5, 1.5, 2.0, 0.25, 3.0, 1.0], &[2, 3]);
        // A write to the input after the forward.
        let x = fresh();
        let loss = op(&x).unwrap().sum(None, false).unwrap();
        touch(&x);
        let result = loss.backward(None, false);
        assert_eq!(
            result.is_err(),
            reads_input,
            "{name}, input written: {result:?}"
        );
        if reads_input {
            assert!(graph_message(result).contains("input 0 of"), "{name}");
        }
        // A write to the output after the forward.
        let x = fresh();
        let y = op(&x).unwrap();
        let loss = y.sum(None, false).unwrap();
        touch(&y);
        let result = loss.backward(None, false);
        assert_eq!(
            result.is_err(),
            reads_output,
            "{name}, output written: {result:?}"
        );
        if reads_output {
            assert!(graph_message(result).contains("the output of"), "{name}");
        }
        // Without a write, backward works (and the same rule gives a gradient).
        let x = fresh();
        op(&x)
            .unwrap()
            .sum(None, false)
            .unwrap()
            .backward(None, false)
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        assert!(x.grad().is_some(), "{name}");
    }
}

type BinOp = fn(&Tensor, &Tensor) -> Result<Tensor>;

/// A two-input op, the shape of its inputs, and which inputs its backward reads for the
/// gradient of input 0 and of input 1.
type BinaryCase = (&'static str, BinOp, &'static [usize], [&'static [usize]; 2]);

fn binary_ops() -> Vec<BinaryCase> {
    const M: &[usize] = &[2, 2];
    vec![
        ("add", |a, b| a.add(b), M, [&[], &[]]),
        ("sub", |a, b| a.sub(b), M, [&[], &[]]),
        ("mul", |a, b| a.mul(b), M, [&[1], &[0]]),
        ("div", |a, b| a.div(b), M, [&[1], &[1]]),
        ("pow", |a, b| a.pow(b), M, [&[0, 1], &[0, 1]]),
        ("matmul", |a, b| a.matmul(b), M, [&[1], &[0]]),
        ("linear", |a, b| a.linear(b, None), M, [&[1], &[0]]),
        ("maximum", |a, b| a.maximum(b), M, [&[0, 1], &[0, 1]]),
        ("minimum", |a, b| a.minimum(b), M, [&[0, 1], &[0, 1]]),
        ("cat", |a, b| Tensor::cat(&[a, b], 0), M, [&[], &[]]),
        ("stack", |a, b| Tensor::stack(&[a, b], 1), M, [&[], &[]]),
        (
            "conv2d",
            |a, b| a.conv2d(b, None, (1, 1), (0, 0)),
            &[1, 1, 2, 2],
            [&[1], &[0]],
        ),
    ]
}

#[test]
fn each_binary_op_reads_only_the_inputs_the_wanted_gradient_needs() {
    for (name, op, shape, reads) in binary_ops() {
        for wanted in 0..2 {
            for written in 0..2 {
                let values = [[1.5, 0.5, 2.0, 1.0], [0.25, 2.0, 1.5, 3.0]];
                let inputs: Vec<Tensor> = (0..2)
                    .map(|i| common::tensor(&values[i], shape, ferrograd::DType::F64, i == wanted))
                    .collect();
                let loss = op(&inputs[0], &inputs[1])
                    .unwrap()
                    .sum(None, false)
                    .unwrap();
                touch(&inputs[written]);
                let result = loss.backward(None, false);
                let should_fail = reads[wanted].contains(&written);
                assert_eq!(
                    result.is_err(),
                    should_fail,
                    "{name}: gradient of input {wanted}, input {written} written: {result:?}"
                );
                if should_fail {
                    let msg = graph_message(result);
                    assert!(
                        msg.contains(&format!("input {written} of")),
                        "{name}: {msg}"
                    );
                } else {
                    assert!(inputs[wanted].grad().is_some(), "{name}");
                }
            }
        }
    }
}

#[test]
fn an_op_on_the_same_tensor_twice_locks_and_checks_it_once() {
    // x * x and x @ x read one storage for both inputs.
    let x = leaf(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
    x.mul(&x)
        .unwrap()
        .add(&x.matmul(&x).unwrap())
        .unwrap()
        .sum(None, false)
        .unwrap()
        .backward(None, false)
        .unwrap();
    // d(sum x²)/dx = 2x.
    // d(sum x @ x)/dx[p][q] = (row sum q) + (column sum p): rows 3, 7; columns 4, 6.
    assert_eq!(grad(&x), vec![2. + 7., 4. + 11., 6. + 9., 8. + 13.]);
}

#[test]
fn writes_through_an_alias_are_seen_by_the_graph_of_the_original() {
    let x = leaf(&[1.0, 2.0], &[2]);
    let loss = x.log().unwrap().sum(None, false).unwrap();
    touch(&x.detach());
    assert!(graph_message(loss.backward(None, false)).contains("input 0 of log"));
}
