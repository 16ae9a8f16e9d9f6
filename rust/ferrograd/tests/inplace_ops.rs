//! In-place ops on `Tensor`: their values, broadcasting and dtype rules, when the graph
//! forbids them, and that concurrent writers neither lose writes nor deadlock.

mod common;

use std::sync::mpsc;
use std::time::Duration;

use common::{t32, t64, vals};
use ferrograd::ndarray::IndexItem;
use ferrograd::tensor::{InplaceOp, NoGradGuard, Operand};
use ferrograd::{DType, Error, Tensor};

#[test]
fn arithmetic_broadcasts_the_operand_over_the_tensor() {
    let x = t64(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
    x.add_(Operand::Tensor(&t64(&[10., 20., 30.], &[3])))
        .unwrap();
    assert_eq!(vals(&x), vec![11., 22., 33., 14., 25., 36.]);
    x.sub_(Operand::Tensor(&t64(&[1., 2.], &[2, 1]))).unwrap();
    assert_eq!(vals(&x), vec![10., 21., 32., 12., 23., 34.]);
    x.mul_(Operand::Scalar(0.5.into())).unwrap();
    assert_eq!(vals(&x), vec![5., 10.5, 16., 6., 11.5, 17.]);
    x.div_(Operand::Tensor(&t64(&[2.], &[]))).unwrap();
    assert_eq!(vals(&x), vec![2.5, 5.25, 8., 3., 5.75, 8.5]);
    x.div_(Operand::Scalar(0.0.into())).unwrap();
    assert!(
        vals(&x).iter().all(|v| v.is_infinite()),
        "IEEE division by zero"
    );
}

#[test]
fn an_operand_that_would_change_the_shape_is_a_shape_error() {
    let x = t64(&[1., 2., 3.], &[3]);
    for shape in [&[2, 3][..], &[1, 3], &[2]] {
        let n = shape.iter().product();
        let err = x
            .add_(Operand::Tensor(&t64(&vec![1.; n], shape)))
            .unwrap_err();
        assert!(
            matches!(&err, Error::Shape(m) if m.contains("add_")),
            "{err:?}"
        );
    }
    assert_eq!(vals(&x), vec![1., 2., 3.]);
}

#[test]
fn the_tensor_keeps_its_dtype_and_float32_rounds_once_from_float64() {
    // 1 + (2⁻²⁴ + 2⁻⁵⁰) is just above the midpoint between two float32s, so rounding the
    // exact float64 sum gives 1 + 2⁻²³; casting the operand to float32 first would lose the
    // 2⁻⁵⁰, land on the midpoint and round to even, 1.
    let x = t32(&[1.0], &[1]);
    let two = 2f64;
    x.add_(Operand::Tensor(&t64(
        &[two.powi(-24) + two.powi(-50)],
        &[1],
    )))
    .unwrap();
    assert_eq!(
        (x.dtype(), vals(&x)),
        (DType::F32, vec![1.0 + two.powi(-23)])
    );
    let z = t64(&[0.1], &[1]);
    z.add_(Operand::Tensor(&t32(&[0.2], &[1]))).unwrap();
    assert_eq!(
        (z.dtype(), vals(&z)),
        (DType::F64, vec![0.1 + f64::from(0.2f32)])
    );
}

#[test]
fn adding_a_tensor_to_itself_reads_a_stable_copy() {
    let x = t64(&[1., 2., 3.], &[3]);
    x.add_(Operand::Tensor(&x)).unwrap();
    assert_eq!(vals(&x), vec![2., 4., 6.]);
    x.mul_(Operand::Tensor(&x.detach())).unwrap();
    assert_eq!(vals(&x), vec![4., 16., 36.]);
}

#[test]
fn fill_zero_copy_and_clamp_write_every_element() {
    let x = t32(&[-2., -0.5, 0.5, 2.], &[2, 2]);
    x.clamp_(Some(-1.0), Some(1.0)).unwrap();
    assert_eq!(vals(&x), vec![-1., -0.5, 0.5, 1.]);
    x.clamp_(None, Some(0.0)).unwrap();
    assert_eq!(vals(&x), vec![-1., -0.5, 0., 0.]);
    x.clamp_(Some(-0.75), None).unwrap();
    assert_eq!(vals(&x), vec![-0.75, -0.5, 0., 0.]);
    assert!(matches!(x.clamp_(None, None), Err(Error::Value(_))));
    x.copy_(&t64(&[7., 8.], &[2])).unwrap();
    assert_eq!((x.dtype(), vals(&x)), (DType::F32, vec![7., 8., 7., 8.]));
    x.fill_(2.5).unwrap();
    assert_eq!(vals(&x), vec![2.5; 4]);
    x.zero_().unwrap();
    assert_eq!(vals(&x), vec![0.0; 4]);
    assert!(matches!(
        x.copy_(&t64(&[1., 2., 3.], &[3])),
        Err(Error::Shape(_))
    ));
}

#[test]
fn index_put_writes_the_selected_elements_like_numpy() {
    let x = t64(&[0.; 12], &[3, 4]);
    // x[1:, ::2] = [[1, 2], [3, 4]]
    x.index_put_(
        &[
            IndexItem::slice(Some(1), None, None),
            IndexItem::slice(None, None, Some(2)),
        ],
        Operand::Tensor(&t64(&[1., 2., 3., 4.], &[2, 2])),
    )
    .unwrap();
    // x[..., -1] = 9
    x.index_put_(
        &[IndexItem::Ellipsis, IndexItem::Int(-1)],
        Operand::Scalar(9.0.into()),
    )
    .unwrap();
    // x[[0, 0], 1] = [5, 6]: the last write wins
    x.index_put_(
        &[IndexItem::list(vec![0, 0]), IndexItem::Int(1)],
        Operand::Tensor(&t64(&[5., 6.], &[2])),
    )
    .unwrap();
    assert_eq!(
        vals(&x),
        vec![0., 6., 0., 9., 1., 0., 2., 9., 3., 0., 4., 9.]
    );
    assert!(matches!(
        x.index_put_(&[IndexItem::Int(3)], Operand::Scalar(0.0.into())),
        Err(Error::Index(_))
    ));
    assert!(matches!(
        x.index_put_(
            &[IndexItem::Int(0)],
            Operand::Tensor(&t64(&[1., 2., 3.], &[3]))
        ),
        Err(Error::Shape(_))
    ));
}

#[test]
fn a_tensor_that_requires_grad_is_written_only_under_no_grad() {
    let w = Tensor::full(&[2], 1.0, DType::F32, true).unwrap();
    type Write<'a> = Box<dyn Fn() -> ferrograd::Result<()> + 'a>;
    let ops: Vec<(&str, Write)> = vec![
        ("add_", Box::new(|| w.add_(Operand::Scalar(1.0.into())))),
        ("zero_", Box::new(|| w.zero_())),
        ("fill_", Box::new(|| w.fill_(3.0))),
        ("copy_", Box::new(|| w.copy_(&t32(&[1.0], &[1])))),
        ("clamp_", Box::new(|| w.clamp_(Some(0.0), None))),
        (
            "index_put_",
            Box::new(|| w.index_put_(&[IndexItem::Int(0)], Operand::Scalar(1.0.into()))),
        ),
    ];
    for (name, op) in &ops {
        let err = op().unwrap_err();
        assert!(
            matches!(&err, Error::Graph(m) if m.contains(name) && m.contains("no_grad")),
            "{name}: {err:?}"
        );
    }
    assert_eq!((vals(&w), w.version()), (vec![1.0, 1.0], 0));
    let _guard = NoGradGuard::new();
    for (name, op) in &ops {
        op().unwrap_or_else(|e| panic!("{name} under no-grad: {e}"));
    }
    assert_eq!(w.version(), ops.len() as u64);
}

#[test]
fn an_operand_that_requires_grad_may_not_flow_into_one_that_does_not() {
    let x = t32(&[1.0, 2.0], &[2]);
    let w = Tensor::full(&[2], 1.0, DType::F32, true).unwrap();
    for op in [
        InplaceOp::Add,
        InplaceOp::Sub,
        InplaceOp::Mul,
        InplaceOp::Div,
    ] {
        let err = x.apply_(op, Operand::Tensor(&w)).unwrap_err();
        assert!(
            matches!(&err, Error::Graph(m) if m.contains(op.name()) && m.contains("operand")),
            "{err:?}"
        );
    }
    assert!(x.copy_(&w).is_err());
    assert!(x
        .index_put_(
            &[IndexItem::Int(0)],
            Operand::Tensor(&w.index(&[IndexItem::Int(0)]).unwrap())
        )
        .is_err());
    assert_eq!(vals(&x), vec![1.0, 2.0]);
    let _guard = NoGradGuard::new();
    x.add_(Operand::Tensor(&w)).unwrap();
    assert_eq!(vals(&x), vec![2.0, 3.0]);
}

#[test]
fn threads_adding_into_one_tensor_lose_no_write() {
    let x = Tensor::zeros(&[50_000], DType::F64, false).unwrap();
    let one = Tensor::full(&[50_000], 1.0, DType::F64, false).unwrap();
    std::thread::scope(|s| {
        for i in 0..4 {
            let (x, one) = (&x, &one);
            s.spawn(move || {
                for _ in 0..50 {
                    if i % 2 == 0 {
                        x.add_(Operand::Tensor(one)).unwrap();
                    } else {
                        x.add_(Operand::Scalar(1.0.into())).unwrap();
                    }
                }
            });
        }
    });
    assert!(vals(&x).iter().all(|&v| v == 200.0));
    assert_eq!(x.version(), 200);
}

#[test]
fn writing_a_into_b_and_b_into_a_on_two_threads_never_deadlocks() {
    let a = Tensor::full(&[20_000], 1.0, DType::F32, false).unwrap();
    let b = Tensor::full(&[20_000], 1.0, DType::F32, false).unwrap();
    let (tx, rx) = mpsc::channel();
    let spawn = |dst: Tensor, src: Tensor, tx: mpsc::Sender<()>| {
        std::thread::spawn(move || {
            for _ in 0..300 {
                dst.add_(Operand::Tensor(&src)).unwrap();
                dst.mul_(Operand::Scalar(0.5.into())).unwrap();
            }
            tx.send(()).unwrap();
        })
    };
    let t1 = spawn(a.clone(), b.clone(), tx.clone());
    let t2 = spawn(b.clone(), a.clone(), tx);
    for _ in 0..2 {
        rx.recv_timeout(Duration::from_secs(60))
            .expect("a += b and b += a deadlocked");
    }
    t1.join().unwrap();
    t2.join().unwrap();
}
