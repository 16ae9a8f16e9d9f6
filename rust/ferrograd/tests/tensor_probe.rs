mod common;
use common::*;
use ferrograd::{DType, Error, Tensor};

#[test]
fn p_softmax_0d() {
    let x = leaf(&[2.0], &[]);
    let y = x.softmax(0).unwrap();
    println!("{:?}", vals(&y));
    y.backward(None, false).unwrap();
    println!("{:?}", grad(&x));
    let x = leaf(&[2.0], &[]);
    x.log_softmax(-1).unwrap().backward(None, false).unwrap();
    println!("{:?}", grad(&x));
}
#[test]
fn p_pow0() {
    let x = leaf(&[0.0, 2.0], &[2]);
    x.pow_scalar(0.0)
        .unwrap()
        .sum(None, false)
        .unwrap()
        .backward(None, false)
        .unwrap();
    println!("pow_scalar0 {:?}", grad(&x));
    let x = leaf(&[0.0, 2.0], &[2]);
    let e = leaf(&[0.0, 0.0], &[2]);
    x.pow(&e)
        .unwrap()
        .sum(None, false)
        .unwrap()
        .backward(None, false)
        .unwrap();
    println!("pow0 {:?} {:?}", grad(&x), grad(&e));
}
#[test]
fn p_arange_huge() {
    let r = Tensor::arange(0., 2f64.powi(50), 1., DType::F64, false);
    assert!(matches!(r, Err(Error::Memory(_))), "{r:?}");
}
#[test]
fn p_max_nan() {
    let x = leaf(&[1.0, f64::NAN, 3.0], &[3]);
    x.max(None, false).unwrap().backward(None, false).unwrap();
    println!("maxnan {:?}", grad(&x));
}
#[test]
fn p_big_broadcast() {
    let a = t64(&[0.; 4], &[4, 1]);
    let b = Tensor::zeros(&[1, 1 << 26], DType::F64, false).unwrap();
    let _ = a;
    let c = Tensor::zeros(&[1 << 26, 1], DType::F64, false).unwrap();
    let _ = (b, c);
}
