//! `std::ops` for `Value`: `+ - * /` between `Value`, `&Value` and `f64` on either side,
//! unary `-`, and the compound assignments. An `f64` operand becomes a constant leaf, as
//! in micrograd, so `2.0 * &v` is a two-input `*` node.

use super::Value;
use std::ops::{Add, AddAssign, Div, DivAssign, Mul, MulAssign, Neg, Sub, SubAssign};

/// Implements `$tr` (method `$m`) and `$tr_assign` through the inherent method `$f`.
macro_rules! binary_op {
    ($tr:ident, $m:ident, $tr_assign:ident, $m_assign:ident, $f:ident) => {
        impl $tr<&Value> for &Value {
            type Output = Value;
            fn $m(self, rhs: &Value) -> Value {
                self.$f(rhs)
            }
        }
        impl $tr<Value> for &Value {
            type Output = Value;
            fn $m(self, rhs: Value) -> Value {
                self.$f(&rhs)
            }
        }
        impl $tr<&Value> for Value {
            type Output = Value;
            fn $m(self, rhs: &Value) -> Value {
                (&self).$f(rhs)
            }
        }
        impl $tr<Value> for Value {
            type Output = Value;
            fn $m(self, rhs: Value) -> Value {
                (&self).$f(&rhs)
            }
        }
        impl $tr<f64> for &Value {
            type Output = Value;
            fn $m(self, rhs: f64) -> Value {
                self.$f(&Value::new(rhs))
            }
        }
        impl $tr<f64> for Value {
            type Output = Value;
            fn $m(self, rhs: f64) -> Value {
                (&self).$f(&Value::new(rhs))
            }
        }
        impl $tr<&Value> for f64 {
            type Output = Value;
            fn $m(self, rhs: &Value) -> Value {
                Value::new(self).$f(rhs)
            }
        }
        impl $tr<Value> for f64 {
            type Output = Value;
            fn $m(self, rhs: Value) -> Value {
                Value::new(self).$f(&rhs)
            }
        }
        impl $tr_assign<&Value> for Value {
            fn $m_assign(&mut self, rhs: &Value) {
                *self = (&*self).$f(rhs);
            }
        }
        impl $tr_assign<Value> for Value {
            fn $m_assign(&mut self, rhs: Value) {
                *self = (&*self).$f(&rhs);
            }
        }
        impl $tr_assign<f64> for Value {
            fn $m_assign(&mut self, rhs: f64) {
                *self = (&*self).$f(&Value::new(rhs));
            }
        }
    };
}

binary_op!(Add, add, AddAssign, add_assign, add_value);
binary_op!(Sub, sub, SubAssign, sub_assign, sub_value);
binary_op!(Mul, mul, MulAssign, mul_assign, mul_value);
binary_op!(Div, div, DivAssign, div_assign, div_value);

impl Neg for &Value {
    type Output = Value;
    fn neg(self) -> Value {
        self.neg_value()
    }
}

impl Neg for Value {
    type Output = Value;
    fn neg(self) -> Value {
        self.neg_value()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_on_either_side_become_constant_leaves() {
        let v = Value::new(3.0);
        let a = 2.0 * &v;
        let b = &v + 1.0;
        let c = 1.0 - v.clone();
        let d = v.clone() / 4.0;
        assert_eq!(
            (a.data(), b.data(), c.data(), d.data()),
            (6.0, 4.0, -2.0, 0.75)
        );
        assert_eq!(a.prev()[0].data(), 2.0);
        assert!(a.prev()[1].ptr_eq(&v));
    }

    #[test]
    fn compound_assignment_builds_new_nodes() {
        let x = Value::new(2.0);
        let mut acc = x.clone();
        acc += &x;
        acc *= 3.0;
        acc -= 1.0;
        acc /= &x;
        assert_eq!(acc.data(), 5.5);
        acc.backward();
        // acc = (3·2x - 1) / x: d/dx = 1/x² = 0.25.
        assert!((x.grad() - 0.25).abs() < 1e-12);
    }
}
