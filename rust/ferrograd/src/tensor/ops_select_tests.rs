//! Tests of where, masked_fill, tril/triu, gather, one_hot and topk.

use super::*;
use crate::dtype::DType;

fn f64t(v: &[f64], shape: &[usize], grad: bool) -> Tensor {
    Tensor::new(
        DynArray::from_f64(v.to_vec(), shape, DType::F64).unwrap(),
        grad,
    )
}

fn boolt(v: &[bool], shape: &[usize]) -> Tensor {
    Tensor::new(
        DynArray::Bool(NdArray::from_vec(v.to_vec(), shape).unwrap()),
        false,
    )
}

fn grad_of(t: &Tensor) -> Vec<f64> {
    t.grad().unwrap().read().to_f64_vec()
}

#[test]
fn where_broadcasts_and_splits_the_gradient() {
    let c = boolt(&[true, false], &[2, 1]);
    let a = f64t(&[1.0, 2.0, 3.0], &[3], true);
    let b = f64t(&[10.0], &[], true);
    let y = Tensor::where_(&c, &a, &b).unwrap();
    assert_eq!(y.shape(), vec![2, 3]);
    assert_eq!(
        y.array().to_f64_vec(),
        vec![1.0, 2.0, 3.0, 10.0, 10.0, 10.0]
    );
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    assert_eq!(grad_of(&a), vec![1.0, 1.0, 1.0]);
    assert_eq!(grad_of(&b), vec![3.0]);
}

#[test]
fn where_needs_a_bool_condition() {
    let a = f64t(&[1.0], &[1], false);
    let e = Tensor::where_(&a, &a, &a).unwrap_err();
    assert!(matches!(e, Error::Type(m) if m.contains("float64")));
}

#[test]
fn masked_fill_fills_broadcast_positions_and_blocks_their_gradient() {
    let x = f64t(&[1.0, 2.0, 3.0, 4.0], &[2, 2], true);
    let m = boolt(&[false, true], &[2]);
    let y = x.masked_fill(&m, Scalar::Float(f64::NEG_INFINITY)).unwrap();
    assert_eq!(
        y.array().to_f64_vec(),
        vec![1.0, f64::NEG_INFINITY, 3.0, f64::NEG_INFINITY]
    );
    y.masked_fill(&m, Scalar::Float(0.0))
        .unwrap()
        .sum(None, false)
        .unwrap()
        .backward(None, false)
        .unwrap();
    assert_eq!(grad_of(&x), vec![1.0, 0.0, 1.0, 0.0]);
    // A mask larger than the tensor does not broadcast to it.
    let big = boolt(&[true; 8], &[2, 2, 2]);
    assert!(matches!(
        x.masked_fill(&big, Scalar::Int(0)),
        Err(Error::Shape(_))
    ));
}

#[test]
fn tril_and_triu_keep_the_diagonals_asked_for() {
    let x = Tensor::new(
        DynArray::from_i64((1..=9).collect(), &[3, 3], DType::I64).unwrap(),
        false,
    );
    assert_eq!(
        x.tril(0).unwrap().array().to_i64_vec(),
        vec![1, 0, 0, 4, 5, 0, 7, 8, 9]
    );
    assert_eq!(
        x.triu(1).unwrap().array().to_i64_vec(),
        vec![0, 2, 3, 0, 0, 6, 0, 0, 0]
    );
    assert_eq!(
        x.tril(-1).unwrap().array().to_i64_vec(),
        vec![0, 0, 0, 4, 0, 0, 7, 8, 0]
    );
    assert!(f64t(&[1.0], &[1], false).tril(0).is_err());
}

#[test]
fn gather_picks_along_the_axis_and_scatters_gradients_back() {
    let x = f64t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], true);
    let idx = Tensor::new(
        DynArray::from_i64(vec![2, 2, 0, 1], &[2, 2], DType::I64).unwrap(),
        false,
    );
    let y = x.gather_along(1, &idx).unwrap();
    assert_eq!(y.array().to_f64_vec(), vec![3.0, 3.0, 4.0, 5.0]);
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    assert_eq!(grad_of(&x), vec![0.0, 0.0, 2.0, 1.0, 1.0, 0.0]);
    let bad = Tensor::new(
        DynArray::from_i64(vec![3], &[1, 1], DType::I64).unwrap(),
        false,
    );
    assert!(matches!(x.gather_along(1, &bad), Err(Error::Index(_))));
    let float_idx = f64t(&[0.0], &[1, 1], false);
    assert!(matches!(x.gather_along(1, &float_idx), Err(Error::Type(_))));
}

#[test]
fn one_hot_gives_int64_rows() {
    let i = Tensor::new(
        DynArray::from_i64(vec![0, 2], &[2], DType::I64).unwrap(),
        false,
    );
    let y = i.one_hot(Some(3)).unwrap();
    assert_eq!(y.dtype(), DType::I64);
    assert_eq!(y.array().to_i64_vec(), vec![1, 0, 0, 0, 0, 1]);
    assert_eq!(i.one_hot(None).unwrap().shape(), vec![2, 3]);
    assert!(matches!(i.one_hot(Some(2)), Err(Error::Index(_))));
}

#[test]
fn topk_sorts_largest_first_with_nan_on_top() {
    let x = f64t(
        &[1.0, 5.0, f64::NAN, 3.0, 0.0, 7.0, 7.0, 2.0],
        &[2, 4],
        true,
    );
    let (v, i) = x.topk(2, -1, true).unwrap();
    let vals = v.array().to_f64_vec();
    assert!(vals[0].is_nan());
    assert_eq!(vals[1..], [5.0, 7.0, 7.0]);
    assert_eq!(i.array().to_i64_vec(), vec![2, 1, 1, 2]);
    let (small, si) = x.topk(1, 1, false).unwrap();
    assert_eq!(small.array().to_f64_vec(), vec![1.0, 0.0]);
    assert_eq!(si.array().to_i64_vec(), vec![0, 0]);
    v.sum(None, false).unwrap().backward(None, false).unwrap();
    assert_eq!(grad_of(&x), vec![0.0, 1.0, 1.0, 0.0, 0.0, 1.0, 1.0, 0.0]);
    assert!(matches!(x.topk(5, 1, true), Err(Error::Value(_))));
}
