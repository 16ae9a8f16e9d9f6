//! `NdArray<Value>`: the article's tensor, a graph node per number (the slow baseline).
//!
//! Elementwise ops broadcast like NumPy and build one `Value` node per output element;
//! `matmul` is the honest naive triple loop. The baked-in `Tensor` is measured against this.

use crate::shape::fmt_shape;
use crate::{Error, NdArray, Result, Value};

impl NdArray<Value> {
    /// One fresh leaf `Value` per element of `a`.
    pub fn from_f64(a: &NdArray<f64>) -> Self {
        a.map(|&x| Value::new(x))
    }

    /// The elements' data.
    pub fn data_f64(&self) -> NdArray<f64> {
        self.map(Value::data)
    }

    /// The elements' gradients.
    pub fn grad(&self) -> NdArray<f64> {
        self.map(Value::grad)
    }

    /// Sets every element's gradient to 0.
    pub fn zero_grad(&self) {
        self.data().iter().for_each(|v| v.set_grad(0.0));
    }

    /// `self + other`, elementwise with broadcasting.
    pub fn add(&self, other: &Self) -> Result<Self> {
        self.zip_with("add", other, |a, b| a + b)
    }

    /// `self - other`, elementwise with broadcasting.
    pub fn sub(&self, other: &Self) -> Result<Self> {
        self.zip_with("sub", other, |a, b| a - b)
    }

    /// `self * other`, elementwise with broadcasting.
    pub fn mul(&self, other: &Self) -> Result<Self> {
        self.zip_with("mul", other, |a, b| a * b)
    }

    /// `self / other`, elementwise with broadcasting.
    pub fn div(&self, other: &Self) -> Result<Self> {
        self.zip_with("div", other, |a, b| a / b)
    }

    /// Each element to the constant power `n`.
    pub fn powf(&self, n: f64) -> Self {
        self.map(|v| v.powf(n))
    }

    /// Elementwise `max(x, 0)`.
    pub fn relu(&self) -> Self {
        self.map(Value::relu)
    }

    /// Elementwise `tanh`.
    pub fn tanh(&self) -> Self {
        self.map(Value::tanh)
    }

    /// Elementwise `e ** x`.
    pub fn exp(&self) -> Self {
        self.map(Value::exp)
    }

    /// Elementwise natural log.
    pub fn log(&self) -> Self {
        self.map(Value::log)
    }

    /// Elementwise logistic sigmoid.
    pub fn sigmoid(&self) -> Self {
        self.map(Value::sigmoid)
    }

    /// The sum of all elements, as one `Value` (a leaf 0 for an empty array).
    pub fn sum(&self) -> Value {
        self.data().iter().sum()
    }

    /// The matrix product of two 2-D arrays, `(m, k) @ (k, n) -> (m, n)`, by the naive
    /// triple loop: `m·n·k` multiplications and additions, each a graph node.
    pub fn matmul(&self, other: &Self) -> Result<Self> {
        let (&[m, k], &[k2, n]) = (self.shape(), other.shape()) else {
            return Err(Error::Shape(format!(
                "matmul: NdArray<Value> multiplies 2-D arrays, got shapes {} and {}",
                fmt_shape(self.shape()),
                fmt_shape(other.shape())
            )));
        };
        if k != k2 {
            return Err(Error::Shape(format!(
                "matmul: shapes {} and {} do not line up: {k} != {k2}",
                fmt_shape(self.shape()),
                fmt_shape(other.shape())
            )));
        }
        let (a, b) = (self.data(), other.data());
        let mut out = crate::ndarray::try_with_capacity(m * n)?;
        for i in 0..m {
            for j in 0..n {
                out.push((0..k).map(|p| &a[i * k + p] * &b[p * n + j]).sum());
            }
        }
        NdArray::from_vec(out, &[m, n])
    }

    /// Backpropagates from every element (each seeded with 1), as the article's tensor did:
    /// the leaves get the gradient of the elements' sum.
    pub fn backward(&self) {
        Value::backward_many(self.data());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn arr(data: &[f64], shape: &[usize]) -> NdArray<Value> {
        let a = NdArray::from_vec(data.to_vec(), shape).expect("shape fits data");
        NdArray::<Value>::from_f64(&a)
    }

    #[test]
    fn elementwise_ops_broadcast_and_backpropagate_per_element() {
        let a = arr(&[1.0, 2.0, 3.0, 4.0], &[2, 2]);
        let b = arr(&[10.0, 20.0], &[2]);
        let c = a.mul(&b).expect("(2, 2) and (2,) broadcast");
        assert_eq!(c.shape(), &[2, 2]);
        assert_eq!(c.data_f64().data(), &[10.0, 40.0, 30.0, 80.0]);
        c.backward();
        assert_eq!(a.grad().data(), &[10.0, 20.0, 10.0, 20.0]);
        assert_eq!(b.grad().data(), &[4.0, 6.0]);
    }

    #[test]
    fn mismatched_shapes_are_an_error_not_a_panic() {
        let a = arr(&[1.0, 2.0, 3.0], &[3]);
        let b = arr(&[1.0, 2.0], &[2]);
        assert!(matches!(a.add(&b), Err(Error::Shape(_))));
        let m = arr(&[0.0; 12], &[3, 4]);
        let n = arr(&[0.0; 10], &[5, 2]);
        match m.matmul(&n) {
            Err(Error::Shape(msg)) => assert!(msg.contains("4 != 5"), "{msg}"),
            other => panic!("expected a shape error, got {other:?}"),
        }
        assert!(matches!(a.matmul(&m), Err(Error::Shape(_))));
    }

    #[test]
    fn unary_ops_map_every_element() {
        let a = arr(&[-1.0, 0.5], &[2]);
        assert_eq!(a.relu().data_f64().data(), &[0.0, 0.5]);
        assert_eq!(a.exp().data_f64().data(), &[(-1.0f64).exp(), 0.5f64.exp()]);
        assert_eq!(a.powf(2.0).data_f64().data(), &[1.0, 0.25]);
        assert_eq!(a.sum().data(), -0.5);
    }

    #[test]
    fn sum_of_an_empty_array_is_zero() {
        let e = arr(&[], &[0]);
        assert_eq!(e.sum().data(), 0.0);
    }
}
