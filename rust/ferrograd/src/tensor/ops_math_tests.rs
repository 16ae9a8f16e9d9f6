//! Tests of sin, cos, rsqrt, var, std, logsumexp, cumsum and integer clamp/maximum.

use super::*;

fn f64t(v: &[f64], shape: &[usize], grad: bool) -> Tensor {
    Tensor::new(
        DynArray::from_f64(v.to_vec(), shape, DType::F64).unwrap(),
        grad,
    )
}

fn close(a: &[f64], b: &[f64]) {
    assert_eq!(a.len(), b.len());
    for (x, y) in a.iter().zip(b) {
        assert!(
            (x - y).abs() < 1e-12 || (x.is_nan() && y.is_nan()),
            "{a:?} != {b:?}"
        );
    }
}

#[test]
fn sin_cos_rsqrt_and_their_gradients() {
    let x = f64t(&[0.5, 2.0], &[2], true);
    let y = x
        .sin()
        .unwrap()
        .add(&x.cos().unwrap())
        .unwrap()
        .add(&x.rsqrt().unwrap())
        .unwrap();
    close(
        &y.array().to_f64_vec(),
        &[
            0.5f64.sin() + 0.5f64.cos() + 0.5f64.powf(-0.5),
            2f64.sin() + 2f64.cos() + 2f64.powf(-0.5),
        ],
    );
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    let d = |v: f64| v.cos() - v.sin() - 0.5 * v.powf(-1.5);
    close(&x.grad().unwrap().read().to_f64_vec(), &[d(0.5), d(2.0)]);
    let ints = Tensor::new(
        DynArray::from_i64(vec![1], &[1], DType::I64).unwrap(),
        false,
    );
    assert!(matches!(ints.sin(), Err(Error::Type(m)) if m.contains("int64")));
}

#[test]
fn var_and_std_follow_bessel_and_reduce_all_without_an_axis() {
    let x = f64t(&[1.0, 2.0, 3.0, 4.0, 6.0, 8.0], &[2, 3], false);
    close(
        &x.var(Some(&[1]), 1.0, false).unwrap().array().to_f64_vec(),
        &[1.0, 4.0],
    );
    close(
        &x.var(Some(&[-1]), 0.0, true).unwrap().array().to_f64_vec(),
        &[2.0 / 3.0, 8.0 / 3.0],
    );
    let all = x.var(None, 1.0, false).unwrap();
    assert!(all.shape().is_empty());
    let m = 24.0 / 6.0;
    let ss: f64 = [1.0, 2.0, 3.0, 4.0, 6.0, 8.0]
        .iter()
        .map(|v: &f64| (v - m).powi(2))
        .sum();
    close(&all.array().to_f64_vec(), &[ss / 5.0]);
    close(
        &x.std(None, 1.0, false).unwrap().array().to_f64_vec(),
        &[(ss / 5.0).sqrt()],
    );
}

#[test]
fn logsumexp_is_stable_and_its_gradient_is_the_softmax() {
    let x = f64t(
        &[1000.0, 1000.0, f64::NEG_INFINITY, f64::NEG_INFINITY],
        &[2, 2],
        true,
    );
    let y = x.logsumexp(&[1], false).unwrap();
    let v = y.array().to_f64_vec();
    close(&v[..1], &[1000.0 + 2f64.ln()]);
    assert_eq!(v[1], f64::NEG_INFINITY);
    y.sum(None, false).unwrap().backward(None, false).unwrap();
    close(
        &x.grad().unwrap().read().to_f64_vec(),
        &[0.5, 0.5, 0.0, 0.0],
    );
}

#[test]
fn cumsum_runs_along_the_axis_and_lifts_integers_to_int64() {
    let x = f64t(&[1.0, 2.0, 3.0, 4.0, 5.0, 6.0], &[2, 3], true);
    let y = x.cumsum(0).unwrap();
    close(&y.array().to_f64_vec(), &[1.0, 2.0, 3.0, 5.0, 7.0, 9.0]);
    let z = x.cumsum(-1).unwrap();
    close(&z.array().to_f64_vec(), &[1.0, 3.0, 6.0, 4.0, 9.0, 15.0]);
    z.sum(None, false).unwrap().backward(None, false).unwrap();
    close(
        &x.grad().unwrap().read().to_f64_vec(),
        &[3.0, 2.0, 1.0, 3.0, 2.0, 1.0],
    );
    let b = Tensor::new(
        DynArray::Bool(NdArray::from_vec(vec![true, false, true], &[3]).unwrap()),
        false,
    );
    let c = b.cumsum(0).unwrap();
    assert_eq!(c.dtype(), DType::I64);
    assert_eq!(c.array().to_i64_vec(), vec![1, 1, 2]);
}

#[test]
fn clamp_and_maximum_keep_integers_integer() {
    let i = Tensor::new(
        DynArray::from_i64(vec![-5, 0, 7], &[3], DType::I32).unwrap(),
        false,
    );
    let c = i
        .clamp_scalar(Some(Scalar::Int(-1)), Some(Scalar::Int(3)))
        .unwrap();
    assert_eq!(c.dtype(), DType::I32);
    assert_eq!(c.array().to_i64_vec(), vec![-1, 0, 3]);
    let f = i.clamp_scalar(None, Some(Scalar::Float(0.5))).unwrap();
    assert_eq!(f.dtype(), DType::F32);
    assert_eq!(f.array().to_f64_vec(), vec![-5.0, 0.0, 0.5]);
    let z = Tensor::new(DynArray::from_i64(vec![1], &[], DType::I64).unwrap(), false);
    let m = i.maximum(&z).unwrap();
    assert_eq!(m.dtype(), DType::I64);
    assert_eq!(m.array().to_i64_vec(), vec![1, 1, 7]);
    assert_eq!(i.minimum(&z).unwrap().array().to_i64_vec(), vec![-5, 0, 1]);
}
