//! Forward values of every `Tensor` op on small hand-computed cases, in float32 and
//! float64, and the dtype each op's result takes.

mod common;

use common::{arange, assert_close, assert_tensor, t32, t64, tensor, tol, vals, DTYPES};
use ferrograd::ndarray::IndexItem;
use ferrograd::{DType, Error, Tensor};

#[test]
fn binary_ops_broadcast_a_row_over_a_matrix() {
    for dt in DTYPES {
        let a = tensor(&[1., 2., 3., 4., 5., 6.], &[2, 3], dt, false);
        let b = tensor(&[10., 20., 40.], &[3], dt, false);
        let s = [2, 3];
        assert_tensor(
            &a.add(&b).unwrap(),
            &s,
            dt,
            &[11., 22., 43., 14., 25., 46.],
            0.0,
        );
        assert_tensor(
            &a.sub(&b).unwrap(),
            &s,
            dt,
            &[-9., -18., -37., -6., -15., -34.],
            0.0,
        );
        assert_tensor(
            &a.mul(&b).unwrap(),
            &s,
            dt,
            &[10., 40., 120., 40., 100., 240.],
            0.0,
        );
        assert_tensor(
            &b.div(&a).unwrap(),
            &s,
            dt,
            &[10., 10., 40. / 3., 2.5, 4., 40. / 6.],
            tol(dt),
        );
    }
}

#[test]
fn a_column_and_a_row_broadcast_to_a_matrix() {
    for dt in DTYPES {
        let col = tensor(&[1., 2.], &[2, 1], dt, false);
        let row = tensor(&[10., 20., 30.], &[1, 3], dt, false);
        assert_tensor(
            &col.add(&row).unwrap(),
            &[2, 3],
            dt,
            &[11., 21., 31., 12., 22., 32.],
            0.0,
        );
        // (4, 1, 3) with (2, 1) gives (4, 2, 3).
        let a = tensor(&[0.; 12], &[4, 1, 3], dt, false);
        let b = tensor(&[1., 2.], &[2, 1], dt, false);
        let c = a.add(&b).unwrap();
        assert_eq!(c.shape(), vec![4, 2, 3]);
        assert_eq!(&vals(&c)[..6], &[1., 1., 1., 2., 2., 2.]);
        // A 0-d tensor broadcasts against anything.
        let s = tensor(&[3.], &[], dt, false);
        assert_tensor(&s.mul(&b).unwrap(), &[2, 1], dt, &[3., 6.], 0.0);
    }
}

#[test]
fn pow_takes_a_tensor_exponent_and_gives_nan_for_negative_bases_to_fractions() {
    for dt in DTYPES {
        let a = tensor(&[2., 9., 4., -8.], &[4], dt, false);
        let b = tensor(&[3., 0.5, -1., 0.5], &[4], dt, false);
        assert_tensor(
            &a.pow(&b).unwrap(),
            &[4],
            dt,
            &[8., 3., 0.25, f64::NAN],
            tol(dt),
        );
        // A negative base to a whole power is fine.
        let c = tensor(&[-2.], &[], dt, false);
        assert_tensor(&c.pow_scalar(3.0).unwrap(), &[], dt, &[-8.], 0.0);
    }
}

#[test]
fn scalar_ops_apply_on_either_side_and_keep_the_dtype() {
    for dt in DTYPES {
        let x = tensor(&[1., 2., 4.], &[3], dt, false);
        assert_tensor(&x.add_scalar(0.5).unwrap(), &[3], dt, &[1.5, 2.5, 4.5], 0.0);
        assert_tensor(&x.sub_scalar(0.5).unwrap(), &[3], dt, &[0.5, 1.5, 3.5], 0.0);
        assert_tensor(&x.rsub_scalar(10.).unwrap(), &[3], dt, &[9., 8., 6.], 0.0);
        assert_tensor(&x.mul_scalar(2.5).unwrap(), &[3], dt, &[2.5, 5., 10.], 0.0);
        assert_tensor(&x.div_scalar(4.).unwrap(), &[3], dt, &[0.25, 0.5, 1.], 0.0);
        assert_tensor(&x.rdiv_scalar(8.).unwrap(), &[3], dt, &[8., 4., 2.], 0.0);
        assert_tensor(&x.pow_scalar(2.).unwrap(), &[3], dt, &[1., 4., 16.], 0.0);
        assert_tensor(
            &x.pow_scalar(0.5).unwrap(),
            &[3],
            dt,
            &[1., 2f64.sqrt(), 2.],
            tol(dt),
        );
        assert_tensor(
            &x.rpow_scalar(3.).unwrap(),
            &[3],
            dt,
            &[3., 9., 81.],
            tol(dt),
        );
        assert_tensor(&x.neg().unwrap(), &[3], dt, &[-1., -2., -4.], 0.0);
    }
}

#[test]
fn unary_ops_give_their_textbook_values() {
    let (ln2, ln3) = (2f64.ln(), 3f64.ln());
    for dt in DTYPES {
        let t = |d: &[f64]| tensor(d, &[d.len()], dt, false);
        let e = std::f64::consts::E;
        assert_tensor(
            &t(&[0., 1., -1.]).exp().unwrap(),
            &[3],
            dt,
            &[1., e, 1. / e],
            tol(dt),
        );
        assert_tensor(
            &t(&[1., e, 0.25]).log().unwrap(),
            &[3],
            dt,
            &[0., 1., -2. * ln2],
            tol(dt),
        );
        assert_tensor(
            &t(&[4., 9., 0.]).sqrt().unwrap(),
            &[3],
            dt,
            &[2., 3., 0.],
            0.0,
        );
        assert_tensor(
            &t(&[-2., 0., 3.]).abs().unwrap(),
            &[3],
            dt,
            &[2., 0., 3.],
            0.0,
        );
        assert_tensor(
            &t(&[-1., 0., 2.]).relu().unwrap(),
            &[3],
            dt,
            &[0., 0., 2.],
            0.0,
        );
        // sigmoid(ln 3) = 3/4; the extremes are exact and never NaN.
        assert_tensor(
            &t(&[0., ln3, -ln3, 1000., -1000.]).sigmoid().unwrap(),
            &[5],
            dt,
            &[0.5, 0.75, 0.25, 1., 0.],
            tol(dt),
        );
        // tanh(ln 2) = (4 - 1) / (4 + 1).
        assert_tensor(
            &t(&[0., ln2, -ln2, 50.]).tanh().unwrap(),
            &[4],
            dt,
            &[0., 0.6, -0.6, 1.],
            tol(dt),
        );
    }
}

#[test]
fn division_by_zero_and_logs_of_non_positives_follow_ieee() {
    for dt in DTYPES {
        let x = tensor(&[1., -1., 0.], &[3], dt, false);
        let zero = tensor(&[0.], &[], dt, false);
        assert_close(
            &vals(&x.div(&zero).unwrap()),
            &[f64::INFINITY, f64::NEG_INFINITY, f64::NAN],
            0.0,
        );
        assert_close(
            &vals(&x.log().unwrap()),
            &[0., f64::NAN, f64::NEG_INFINITY],
            0.0,
        );
        assert_close(&vals(&x.sqrt().unwrap()), &[1., f64::NAN, 0.], 0.0);
    }
}

#[test]
fn matmul_handles_every_operand_rank() {
    for dt in DTYPES {
        let t = |d: &[f64], s: &[usize]| tensor(d, s, dt, false);
        let a = t(&[1., 2., 3., 4.], &[2, 2]);
        let b = t(&[5., 6., 7., 8.], &[2, 2]);
        assert_tensor(
            &a.matmul(&b).unwrap(),
            &[2, 2],
            dt,
            &[19., 22., 43., 50.],
            0.0,
        );
        // 1-D · 1-D is a 0-d dot product.
        let u = t(&[1., 2., 3.], &[3]);
        let v = t(&[4., 5., 6.], &[3]);
        assert_tensor(&u.matmul(&v).unwrap(), &[], dt, &[32.], 0.0);
        // 1-D @ 2-D and 2-D @ 1-D drop the lifted axis again.
        let m = t(&[1., 2., 3., 4., 5., 6.], &[2, 3]);
        assert_tensor(
            &t(&[1., 2.], &[2]).matmul(&m).unwrap(),
            &[3],
            dt,
            &[9., 12., 15.],
            0.0,
        );
        assert_tensor(
            &m.matmul(&t(&[1., 0., -1.], &[3])).unwrap(),
            &[2],
            dt,
            &[-2., -2.],
            0.0,
        );
        // Batched: (2, 2, 2) @ (2, 2), the matrix broadcast over the batch.
        let batch = t(&[1., 0., 0., 1., 2., 0., 0., 3.], &[2, 2, 2]);
        assert_tensor(
            &batch.matmul(&a).unwrap(),
            &[2, 2, 2],
            dt,
            &[1., 2., 3., 4., 2., 4., 9., 12.],
            0.0,
        );
        // Batch axes broadcast: (2, 1, 3, 4) @ (5, 4, 2) is (2, 5, 3, 2).
        let ones = |s: &[usize]| Tensor::ones(s, dt, false).unwrap();
        let c = ones(&[2, 1, 3, 4]).matmul(&ones(&[5, 4, 2])).unwrap();
        assert_tensor(&c, &[2, 5, 3, 2], dt, &[4.; 60], 0.0);
    }
}

#[test]
fn sum_and_mean_reduce_all_single_negative_and_tuple_axes() {
    for dt in DTYPES {
        let x = tensor(&[1., 5., 3., 4., 2., 6.], &[2, 3], dt, false);
        assert_tensor(&x.sum(None, false).unwrap(), &[], dt, &[21.], 0.0);
        assert_tensor(&x.sum(None, true).unwrap(), &[1, 1], dt, &[21.], 0.0);
        assert_tensor(
            &x.sum(Some(&[0]), false).unwrap(),
            &[3],
            dt,
            &[5., 7., 9.],
            0.0,
        );
        assert_tensor(
            &x.sum(Some(&[-1]), true).unwrap(),
            &[2, 1],
            dt,
            &[9., 12.],
            0.0,
        );
        assert_tensor(&x.sum(Some(&[1, 0]), false).unwrap(), &[], dt, &[21.], 0.0);
        assert_tensor(
            &x.mean(Some(&[1]), false).unwrap(),
            &[2],
            dt,
            &[3., 4.],
            0.0,
        );
        assert_tensor(&x.mean(None, false).unwrap(), &[], dt, &[3.5], 0.0);
        assert_tensor(
            &x.mean(Some(&[0]), true).unwrap(),
            &[1, 3],
            dt,
            &[2.5, 3.5, 4.5],
            0.0,
        );
    }
    // arange(24) as (2, 3, 4), summed over axes 0 and 2: 60 + 32 j.
    let y = arange(&[2, 3, 4]);
    assert_tensor(
        &y.sum(Some(&[0, -1]), false).unwrap(),
        &[3],
        DType::F64,
        &[60., 92., 124.],
        0.0,
    );
    assert_tensor(
        &y.sum(Some(&[0, 2]), true).unwrap(),
        &[1, 3, 1],
        DType::F64,
        &[60., 92., 124.],
        0.0,
    );
}

#[test]
fn max_min_and_argmax_pick_the_extremes() {
    for dt in DTYPES {
        let x = tensor(&[1., 5., 3., 4., 2., 6.], &[2, 3], dt, false);
        assert_tensor(&x.max(None, false).unwrap(), &[], dt, &[6.], 0.0);
        assert_tensor(
            &x.max(Some(&[0]), false).unwrap(),
            &[3],
            dt,
            &[4., 5., 6.],
            0.0,
        );
        assert_tensor(
            &x.min(Some(&[-1]), true).unwrap(),
            &[2, 1],
            dt,
            &[1., 2.],
            0.0,
        );
        assert_tensor(&x.min(Some(&[0, 1]), false).unwrap(), &[], dt, &[1.], 0.0);
        assert_tensor(
            &x.argmax(Some(1), false).unwrap(),
            &[2],
            DType::I64,
            &[1., 2.],
            0.0,
        );
        assert_tensor(&x.argmax(None, false).unwrap(), &[], DType::I64, &[5.], 0.0);
        assert_tensor(
            &x.argmax(Some(-2), true).unwrap(),
            &[1, 3],
            DType::I64,
            &[1., 0., 1.],
            0.0,
        );
        assert_tensor(
            &x.argmin(Some(0), false).unwrap(),
            &[3],
            DType::I64,
            &[0., 1., 0.],
            0.0,
        );
        assert!(!x.argmax(None, false).unwrap().requires_grad());
    }
}

#[test]
fn max_propagates_nan_mean_of_empty_is_nan_and_max_of_empty_errs() {
    let x = t64(&[1., f64::NAN, 3.], &[3]);
    assert!(vals(&x.max(None, false).unwrap())[0].is_nan());
    assert!(vals(&x.min(None, false).unwrap())[0].is_nan());
    let empty = t64(&[], &[0]);
    assert!(vals(&empty.mean(None, false).unwrap())[0].is_nan());
    assert_eq!(vals(&empty.sum(None, false).unwrap()), vec![0.0]);
    assert!(matches!(empty.max(None, false), Err(Error::Value(_))));
}

#[test]
fn softmax_and_log_softmax_normalise_along_the_given_axis() {
    let ln3 = 3f64.ln();
    for dt in DTYPES {
        let x = tensor(&[0., ln3, ln3, 0.], &[2, 2], dt, false);
        // Along the rows (axis -1) and along the columns (axis 0).
        assert_tensor(
            &x.softmax(-1).unwrap(),
            &[2, 2],
            dt,
            &[0.25, 0.75, 0.75, 0.25],
            tol(dt),
        );
        assert_tensor(
            &x.softmax(0).unwrap(),
            &[2, 2],
            dt,
            &[0.25, 0.75, 0.75, 0.25],
            tol(dt),
        );
        let y = tensor(&[0., ln3, 0., 0.], &[2, 2], dt, false);
        assert_tensor(
            &y.softmax(1).unwrap(),
            &[2, 2],
            dt,
            &[0.25, 0.75, 0.5, 0.5],
            tol(dt),
        );
        assert_tensor(
            &y.softmax(0).unwrap(),
            &[2, 2],
            dt,
            &[0.5, 0.75, 0.5, 0.25],
            tol(dt),
        );
        let (a, b, h) = (0.25f64.ln(), 0.75f64.ln(), 0.5f64.ln());
        assert_tensor(
            &y.log_softmax(1).unwrap(),
            &[2, 2],
            dt,
            &[a, b, h, h],
            tol(dt),
        );
        assert_tensor(
            &y.log_softmax(-2).unwrap(),
            &[2, 2],
            dt,
            &[h, b, h, a],
            tol(dt),
        );
        // Huge logits stay finite.
        let big = tensor(&[1000., 0.], &[2], dt, false);
        assert_tensor(
            &big.log_softmax(0).unwrap(),
            &[2],
            dt,
            &[0., -1000.],
            tol(dt),
        );
        assert_tensor(&big.softmax(0).unwrap(), &[2], dt, &[1., 0.], tol(dt));
    }
}

#[test]
fn reshape_flatten_permute_and_transpose_reorder_elements() {
    for dt in DTYPES {
        let x = tensor(&[0., 1., 2., 3., 4., 5.], &[2, 3], dt, false);
        assert_tensor(
            &x.reshape(&[3, -1]).unwrap(),
            &[3, 2],
            dt,
            &[0., 1., 2., 3., 4., 5.],
            0.0,
        );
        assert_tensor(
            &x.flatten().unwrap(),
            &[6],
            dt,
            &[0., 1., 2., 3., 4., 5.],
            0.0,
        );
        assert_tensor(&x.t().unwrap(), &[3, 2], dt, &[0., 3., 1., 4., 2., 5.], 0.0);
        assert_tensor(
            &x.transpose(-1, 0).unwrap(),
            &[3, 2],
            dt,
            &[0., 3., 1., 4., 2., 5.],
            0.0,
        );
        assert_tensor(
            &x.permute(&[1, 0]).unwrap(),
            &[3, 2],
            dt,
            &[0., 3., 1., 4., 2., 5.],
            0.0,
        );
    }
    // (2, 3, 4) -> permute (2, 0, 1): out[k, i, j] = x[i, j, k] = 12 i + 4 j + k.
    let y = arange(&[2, 3, 4]).permute(&[2, 0, 1]).unwrap();
    assert_eq!(y.shape(), vec![4, 2, 3]);
    assert_eq!(&vals(&y)[..6], &[0., 4., 8., 12., 16., 20.]);
    assert_eq!(&vals(&y)[6..9], &[1., 5., 9.]);
    // .t() reverses all axes.
    let z = arange(&[2, 3, 4]).t().unwrap();
    assert_eq!(z.shape(), vec![4, 3, 2]);
    assert_eq!(&vals(&z)[..4], &[0., 12., 4., 16.]);
}

#[test]
fn indexing_takes_ints_slices_new_axes_ellipsis_and_arrays() {
    use IndexItem::{Ellipsis, Int, NewAxis};
    let sl = IndexItem::slice;
    for dt in DTYPES {
        let x = tensor(
            &(0..12).map(f64::from).collect::<Vec<_>>(),
            &[3, 4],
            dt,
            false,
        );
        let ix = |items: &[IndexItem]| x.index(items).unwrap();
        assert_tensor(&ix(&[Int(1)]), &[4], dt, &[4., 5., 6., 7.], 0.0);
        assert_tensor(&ix(&[Int(-1), Int(-2)]), &[], dt, &[10.], 0.0);
        assert_tensor(
            &ix(&[IndexItem::full(), sl(None, None, Some(-2))]),
            &[3, 2],
            dt,
            &[3., 1., 7., 5., 11., 9.],
            0.0,
        );
        assert_tensor(
            &ix(&[sl(Some(-1), Some(0), Some(-1)), Int(0)]),
            &[2],
            dt,
            &[8., 4.],
            0.0,
        );
        assert_tensor(
            &ix(&[NewAxis, Ellipsis, Int(0)]),
            &[1, 3],
            dt,
            &[0., 4., 8.],
            0.0,
        );
        assert_tensor(&ix(&[Ellipsis, NewAxis]), &[3, 4, 1], dt, &vals(&x), 0.0);
        assert_tensor(
            &ix(&[IndexItem::list(vec![2, 0, 2])]),
            &[3, 4],
            dt,
            &[8., 9., 10., 11., 0., 1., 2., 3., 8., 9., 10., 11.],
            0.0,
        );
        assert_tensor(
            &ix(&[IndexItem::list(vec![2, 0]), IndexItem::list(vec![1, -1])]),
            &[2],
            dt,
            &[9., 3.],
            0.0,
        );
    }
}

#[test]
fn cat_and_stack_join_along_axis_0_and_1() {
    for dt in DTYPES {
        let a = tensor(&[1., 2., 3., 4.], &[2, 2], dt, false);
        let b = tensor(&[5., 6.], &[1, 2], dt, false);
        let c = tensor(&[7., 8.], &[2, 1], dt, false);
        assert_tensor(
            &Tensor::cat(&[&a, &b], 0).unwrap(),
            &[3, 2],
            dt,
            &[1., 2., 3., 4., 5., 6.],
            0.0,
        );
        assert_tensor(
            &Tensor::cat(&[&a, &c], 1).unwrap(),
            &[2, 3],
            dt,
            &[1., 2., 7., 3., 4., 8.],
            0.0,
        );
        assert_tensor(
            &Tensor::cat(&[&c, &a], -1).unwrap(),
            &[2, 3],
            dt,
            &[7., 1., 2., 8., 3., 4.],
            0.0,
        );
        let d = tensor(&[5., 6., 7., 8.], &[2, 2], dt, false);
        assert_tensor(
            &Tensor::stack(&[&a, &d], 0).unwrap(),
            &[2, 2, 2],
            dt,
            &[1., 2., 3., 4., 5., 6., 7., 8.],
            0.0,
        );
        assert_tensor(
            &Tensor::stack(&[&a, &d], 1).unwrap(),
            &[2, 2, 2],
            dt,
            &[1., 2., 5., 6., 3., 4., 7., 8.],
            0.0,
        );
        assert_tensor(
            &Tensor::stack(&[&a, &d], -1).unwrap(),
            &[2, 2, 2],
            dt,
            &[1., 5., 2., 6., 3., 7., 4., 8.],
            0.0,
        );
    }
}

#[test]
fn creation_functions_fill_shapes_with_the_asked_dtype() {
    for dt in DTYPES {
        assert_tensor(
            &Tensor::zeros(&[2, 2], dt, false).unwrap(),
            &[2, 2],
            dt,
            &[0.; 4],
            0.0,
        );
        assert_tensor(
            &Tensor::ones(&[3], dt, false).unwrap(),
            &[3],
            dt,
            &[1.; 3],
            0.0,
        );
        assert_tensor(
            &Tensor::full(&[], 2.5, dt, false).unwrap(),
            &[],
            dt,
            &[2.5],
            0.0,
        );
        assert_tensor(
            &Tensor::arange(0., 1., 0.25, dt, false).unwrap(),
            &[4],
            dt,
            &[0., 0.25, 0.5, 0.75],
            0.0,
        );
        assert_tensor(
            &Tensor::arange(3., 0., -1., dt, false).unwrap(),
            &[3],
            dt,
            &[3., 2., 1.],
            0.0,
        );
        assert_tensor(
            &Tensor::eye(2, 3, dt, false).unwrap(),
            &[2, 3],
            dt,
            &[1., 0., 0., 0., 1., 0.],
            0.0,
        );
        let r = Tensor::randn(&[4, 5], dt, true).unwrap();
        assert_eq!(
            (r.shape(), r.dtype(), r.requires_grad()),
            (vec![4, 5], dt, true)
        );
        let u = Tensor::rand(&[100], dt, false).unwrap();
        assert!(vals(&u).iter().all(|&v| (0.0..1.0).contains(&v)));
    }
    assert!(matches!(
        Tensor::arange(0., 1., 0., DType::F32, false),
        Err(Error::Value(_))
    ));
}

#[test]
fn float32_with_float64_promotes_to_float64_in_every_binary_op() {
    let a = t32(&[1., 2.], &[2]);
    let b = t64(&[3., 4.], &[2]);
    for (x, y) in [(&a, &b), (&b, &a)] {
        assert_eq!(x.add(y).unwrap().dtype(), DType::F64);
        assert_eq!(x.sub(y).unwrap().dtype(), DType::F64);
        assert_eq!(x.mul(y).unwrap().dtype(), DType::F64);
        assert_eq!(x.div(y).unwrap().dtype(), DType::F64);
        assert_eq!(x.pow(y).unwrap().dtype(), DType::F64);
        assert_eq!(x.matmul(y).unwrap().dtype(), DType::F64);
        assert_eq!(Tensor::cat(&[x, y], 0).unwrap().dtype(), DType::F64);
        assert_eq!(Tensor::stack(&[x, y], 0).unwrap().dtype(), DType::F64);
    }
    assert_tensor(&a.mul(&b).unwrap(), &[2], DType::F64, &[3., 8.], 0.0);
    // float32 with float32 stays float32.
    assert_eq!(a.add(&a).unwrap().dtype(), DType::F32);
    assert_eq!(Tensor::cat(&[&a, &a], 0).unwrap().dtype(), DType::F32);
}

#[test]
fn scalar_operands_unary_ops_and_reductions_keep_float32() {
    let a = t32(&[1., 2., 4.], &[3]);
    let keep: [fn(&Tensor) -> ferrograd::Result<Tensor>; 15] = [
        |t| t.add_scalar(2.5),
        |t| t.sub_scalar(0.1),
        |t| t.rsub_scalar(0.1),
        |t| t.mul_scalar(1e-300),
        |t| t.div_scalar(3.0),
        |t| t.rdiv_scalar(3.0),
        |t| t.pow_scalar(1.5),
        |t| t.rpow_scalar(2.0),
        |t| t.exp(),
        |t| t.tanh(),
        |t| t.sum(None, false),
        |t| t.mean(Some(&[0]), true),
        |t| t.max(None, false),
        |t| t.softmax(0),
        |t| t.log_softmax(0),
    ];
    for f in keep {
        assert_eq!(f(&a).unwrap().dtype(), DType::F32);
    }
    assert_eq!(a.argmax(None, false).unwrap().dtype(), DType::I64);
    // The scalar is rounded to float32 like the data: 2.5 * x is exact, 0.1 is float32's 0.1.
    assert_eq!(vals(&a.mul_scalar(2.5).unwrap()), vec![2.5, 5.0, 10.0]);
    assert_eq!(
        vals(&a.sub_scalar(0.1).unwrap())[0],
        f64::from(1f32 - 0.1f32)
    );
}
