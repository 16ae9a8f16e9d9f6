//! Arithmetic, comparisons and bitwise ops of `DynArray` on every dtype, with PyTorch's
//! promotion: `/` always gives a float, `//` and `%` floor like Python, integer overflow wraps,
//! comparisons give bool.

use num_traits::{PrimInt, WrappingAdd, WrappingMul, WrappingNeg, WrappingSub};

use super::fns::{Add, Div, FloorDiv, Mul, Pow, RDiv, RPow, RSub, Rem, Sub};
use super::{each_float, BinaryFn, DType, DynArray, Scalar, Stored, UnaryFn};
use crate::dtype::Category;
use crate::ndarray::{Float, NdArray};
use crate::{Error, Result};

/// An arithmetic operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Arith {
    Add,
    Sub,
    Mul,
    Div,
    Pow,
    FloorDiv,
    Rem,
}

impl Arith {
    /// The op's name in messages (PyTorch's function names).
    pub fn name(self) -> &'static str {
        match self {
            Arith::Add => "add",
            Arith::Sub => "sub",
            Arith::Mul => "mul",
            Arith::Div => "div",
            Arith::Pow => "pow",
            Arith::FloorDiv => "floor_divide",
            Arith::Rem => "remainder",
        }
    }

    /// The dtype `a op b` computes in and returns, or a TypeError where PyTorch has none.
    pub fn result_dtype(self, dtype: DType) -> Result<DType> {
        match (self, dtype) {
            (Arith::Div, d) => Ok(d.to_float()),
            (Arith::Add | Arith::Mul, DType::Bool) => Ok(DType::Bool),
            (op, DType::Bool) => Err(Error::Type(format!(
                "{}: not supported on bool tensors; cast first, e.g. t.long() or t.float()",
                op.name()
            ))),
            (_, d) => Ok(d),
        }
    }
}

/// A comparison operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Compare {
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
}

impl Compare {
    #[inline(always)]
    fn test<T: PartialOrd>(self, x: T, y: T) -> bool {
        match self {
            Compare::Eq => x == y,
            Compare::Ne => x != y,
            Compare::Lt => x < y,
            Compare::Le => x <= y,
            Compare::Gt => x > y,
            Compare::Ge => x >= y,
        }
    }

    /// The comparison with its operands swapped: `a < b` is `b > a`.
    pub fn flipped(self) -> Compare {
        match self {
            Compare::Lt => Compare::Gt,
            Compare::Le => Compare::Ge,
            Compare::Gt => Compare::Lt,
            Compare::Ge => Compare::Le,
            same => same,
        }
    }

    /// The op's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Compare::Eq => "eq",
            Compare::Ne => "ne",
            Compare::Lt => "lt",
            Compare::Le => "le",
            Compare::Gt => "gt",
            Compare::Ge => "ge",
        }
    }
}

/// A bitwise (on bool: logical) operator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bitwise {
    And,
    Or,
    Xor,
}

impl Bitwise {
    /// The op's name in messages.
    pub fn name(self) -> &'static str {
        match self {
            Bitwise::And => "bitwise_and",
            Bitwise::Or => "bitwise_or",
            Bitwise::Xor => "bitwise_xor",
        }
    }

    fn check(self, dtype: DType) -> Result<()> {
        if dtype.is_float() {
            return Err(Error::Type(format!(
                "{}: expected integer or bool tensors, got {dtype}",
                self.name()
            )));
        }
        Ok(())
    }
}

/// The integer element types' arithmetic: wrapping, with Python's floor division.
pub trait Int:
    Stored + PrimInt + WrappingAdd + WrappingSub + WrappingMul + WrappingNeg
{
    fn wrapping_pow_u32(self, e: u32) -> Self;
    fn wrapping_abs_(self) -> Self;
    /// Python's `x // y` (the caller rules out `y == 0`).
    fn floor_div(self, y: Self) -> Self;
    /// Python's `x % y` (the caller rules out `y == 0`).
    fn floor_mod(self, y: Self) -> Self;
}

macro_rules! int_impl {
    ($t:ty) => {
        impl Int for $t {
            fn wrapping_pow_u32(self, e: u32) -> Self {
                self.wrapping_pow(e)
            }
            fn wrapping_abs_(self) -> Self {
                self.wrapping_abs()
            }
            fn floor_div(self, y: Self) -> Self {
                let q = self.wrapping_div(y);
                if self.wrapping_rem(y) != 0 && ((self < 0) != (y < 0)) {
                    q - 1
                } else {
                    q
                }
            }
            fn floor_mod(self, y: Self) -> Self {
                let r = self.wrapping_rem(y);
                if r != 0 && ((r < 0) != (y < 0)) {
                    r + y
                } else {
                    r
                }
            }
        }
    };
}
int_impl!(i64);
int_impl!(i32);

fn int_zip<T: Int>(op: Arith, a: &NdArray<T>, b: &NdArray<T>) -> Result<NdArray<T>> {
    let name = op.name();
    let checks_zero = matches!(op, Arith::FloorDiv | Arith::Rem);
    if checks_zero && b.data().contains(&T::zero()) && a.size() > 0 {
        return Err(Error::Value(format!("{name}: integer division by zero")));
    }
    if op == Arith::Pow && b.data().iter().any(|&e| e < T::zero()) && a.size() > 0 {
        return Err(Error::Value(
            "pow: integers to negative integer powers are not allowed; use floats".into(),
        ));
    }
    match op {
        Arith::Add => a.zip_with(name, b, |x, y| x.wrapping_add(y)),
        Arith::Sub => a.zip_with(name, b, |x, y| x.wrapping_sub(y)),
        Arith::Mul => a.zip_with(name, b, |x, y| x.wrapping_mul(y)),
        Arith::FloorDiv => a.zip_with(name, b, |&x, &y| x.floor_div(y)),
        Arith::Rem => a.zip_with(name, b, |&x, &y| x.floor_mod(y)),
        Arith::Pow => a.zip_with(name, b, |&x, &y| {
            x.wrapping_pow_u32(y.to_u32().unwrap_or(u32::MAX))
        }),
        Arith::Div => Err(Error::Graph("internal error: integer true division".into())),
    }
}

fn bool_zip(op: Arith, a: &NdArray<bool>, b: &NdArray<bool>) -> Result<NdArray<bool>> {
    match op {
        Arith::Add => a.zip_with(op.name(), b, |&x, &y| x | y),
        Arith::Mul => a.zip_with(op.name(), b, |&x, &y| x & y),
        _ => Err(Error::Graph("internal error: bool arithmetic".into())),
    }
}

fn float_zip<T: Float>(op: Arith, a: &NdArray<T>, b: &NdArray<T>) -> Result<NdArray<T>> {
    let name = op.name();
    match op {
        Arith::Add => a.binary(name, b, |x, y| Add.apply(x, y)),
        Arith::Sub => a.binary(name, b, |x, y| Sub.apply(x, y)),
        Arith::Mul => a.binary(name, b, |x, y| Mul.apply(x, y)),
        Arith::Div => a.binary(name, b, |x, y| Div.apply(x, y)),
        Arith::Pow => a.binary(name, b, |x, y| Pow.apply(x, y)),
        Arith::FloorDiv => a.binary(name, b, |x, y| FloorDiv.apply(x, y)),
        Arith::Rem => a.binary(name, b, |x, y| Rem.apply(x, y)),
    }
}

/// `x op s` (or `s op x` when `reflected`) on a float array.
fn float_scalar<T: Float>(op: Arith, a: &NdArray<T>, s: f64, reflected: bool) -> Result<NdArray<T>> {
    match (op, reflected) {
        (Arith::Add, _) => a.scalar_op(s, |x, y| Add.apply(x, y)),
        (Arith::Mul, _) => a.scalar_op(s, |x, y| Mul.apply(x, y)),
        (Arith::Sub, false) => a.scalar_op(s, |x, y| Sub.apply(x, y)),
        (Arith::Sub, true) => a.scalar_op(s, |x, y| RSub.apply(x, y)),
        (Arith::Div, false) => a.scalar_op(s, |x, y| Div.apply(x, y)),
        (Arith::Div, true) => a.scalar_op(s, |x, y| RDiv.apply(x, y)),
        (Arith::Pow, false) => a.scalar_op(s, |x, y| Pow.apply(x, y)),
        (Arith::Pow, true) => a.scalar_op(s, |x, y| RPow.apply(x, y)),
        (Arith::FloorDiv, false) => a.scalar_op(s, |x, y| FloorDiv.apply(x, y)),
        (Arith::FloorDiv, true) => a.scalar_op(s, |x, y| FloorDiv.apply(y, x)),
        (Arith::Rem, false) => a.scalar_op(s, |x, y| Rem.apply(x, y)),
        (Arith::Rem, true) => a.scalar_op(s, |x, y| Rem.apply(y, x)),
    }
}

impl DynArray {
    /// `self op other` under broadcasting and promotion.
    pub fn arith(&self, op: Arith, other: &Self) -> Result<Self> {
        let dtype = op.result_dtype(self.dtype().promote(other.dtype()))?;
        let (a, b) = (self.as_dtype(dtype), other.as_dtype(dtype));
        Ok(match (a.as_ref(), b.as_ref()) {
            (DynArray::F32(a), DynArray::F32(b)) => DynArray::F32(float_zip(op, a, b)?),
            (DynArray::F64(a), DynArray::F64(b)) => DynArray::F64(float_zip(op, a, b)?),
            (DynArray::I64(a), DynArray::I64(b)) => DynArray::I64(int_zip(op, a, b)?),
            (DynArray::I32(a), DynArray::I32(b)) => DynArray::I32(int_zip(op, a, b)?),
            (DynArray::Bool(a), DynArray::Bool(b)) => DynArray::Bool(bool_zip(op, a, b)?),
            _ => return Err(super::internal()),
        })
    }

    /// `self op s` (or `s op self` when `reflected`): the scalar lifts the category but never
    /// widens the array's dtype.
    pub fn arith_scalar(&self, op: Arith, s: Scalar, reflected: bool) -> Result<Self> {
        let dtype = op.result_dtype(self.dtype().with_scalar(s.category()))?;
        let a = self.as_dtype(dtype);
        if dtype.is_float() {
            return Ok(each_float!(a.as_ref(), op.name(), a => float_scalar(op, a, s.to_f64(), reflected)));
        }
        // Integer and bool results: the scalar as a one-element array of the same dtype.
        let s = DynArray::full_scalar(&[], s, dtype)?;
        if reflected {
            s.arith(op, &a)
        } else {
            a.arith(op, &s)
        }
    }

    /// Elementwise comparison under broadcasting and promotion: a bool array.
    pub fn compare(&self, op: Compare, other: &Self) -> Result<Self> {
        fn typed<T: Stored>(op: Compare, a: &DynArray, b: &DynArray) -> Result<DynArray> {
            match (T::view(a), T::view(b)) {
                (Some(a), Some(b)) => Ok(DynArray::Bool(
                    a.zip_with(op.name(), b, |&x, &y| op.test(x, y))?,
                )),
                _ => Err(super::internal()),
            }
        }
        let dtype = self.dtype().promote(other.dtype());
        let (a, b) = (self.as_dtype(dtype), other.as_dtype(dtype));
        match dtype {
            DType::F32 => typed::<f32>(op, &a, &b),
            DType::F64 => typed::<f64>(op, &a, &b),
            DType::I64 => typed::<i64>(op, &a, &b),
            DType::I32 => typed::<i32>(op, &a, &b),
            DType::Bool => typed::<bool>(op, &a, &b),
        }
    }

    /// Compares every element with a scalar (promoted like arithmetic): a bool array.
    pub fn compare_scalar(&self, op: Compare, s: Scalar) -> Result<Self> {
        let dtype = self.dtype().with_scalar(s.category());
        self.compare(op, &DynArray::full_scalar(&[], s, dtype)?)
    }

    /// `&`, `|` or `^` of integer or bool arrays (logical on bool).
    pub fn bitwise(&self, op: Bitwise, other: &Self) -> Result<Self> {
        op.check(self.dtype())?;
        op.check(other.dtype())?;
        let dtype = self.dtype().promote(other.dtype());
        let (a, b) = (self.as_dtype(dtype), other.as_dtype(dtype));
        let name = op.name();
        Ok(match (a.as_ref(), b.as_ref()) {
            (DynArray::I64(a), DynArray::I64(b)) => DynArray::I64(int_bits(op, a, b)?),
            (DynArray::I32(a), DynArray::I32(b)) => DynArray::I32(int_bits(op, a, b)?),
            (DynArray::Bool(a), DynArray::Bool(b)) => DynArray::Bool(match op {
                Bitwise::And => a.zip_with(name, b, |&x, &y| x & y)?,
                Bitwise::Or => a.zip_with(name, b, |&x, &y| x | y)?,
                Bitwise::Xor => a.zip_with(name, b, |&x, &y| x ^ y)?,
            }),
            _ => return Err(super::internal()),
        })
    }

    /// `&`, `|` or `^` with a Python bool or int.
    pub fn bitwise_scalar(&self, op: Bitwise, s: Scalar) -> Result<Self> {
        if s.category() == Category::Float {
            return Err(Error::Type(format!(
                "{}: expected an integer or bool operand, got a float",
                op.name()
            )));
        }
        let dtype = self.dtype().with_scalar(s.category());
        self.bitwise(op, &DynArray::full_scalar(&[], s, dtype)?)
    }

    /// `~`: logical not on bool, bitwise not on integers.
    pub fn bitwise_not(&self) -> Result<Self> {
        Ok(match self {
            DynArray::Bool(a) => DynArray::Bool(a.map(|&x| !x)),
            DynArray::I64(a) => DynArray::I64(a.map(|&x| !x)),
            DynArray::I32(a) => DynArray::I32(a.map(|&x| !x)),
            other => {
                return Err(Error::Type(format!(
                    "bitwise_not: expected an integer or bool tensor, got {}",
                    other.dtype()
                )))
            }
        })
    }

    /// `-self` (integers wrap; bool is a TypeError, as in PyTorch).
    pub fn neg(&self) -> Result<Self> {
        self.int_or_float(IntUnary::Neg, super::fns::Neg)
    }

    /// `|self|` (integers wrap at their minimum).
    pub fn abs(&self) -> Result<Self> {
        self.int_or_float(IntUnary::Abs, super::fns::Abs)
    }

    /// `max(self, 0)`.
    pub fn relu(&self) -> Result<Self> {
        self.int_or_float(IntUnary::Relu, super::fns::Relu)
    }

    fn int_or_float(&self, op: IntUnary, float: impl UnaryFn) -> Result<Self> {
        Ok(match self {
            DynArray::I64(a) => DynArray::I64(a.map(|&x| op.apply(x))),
            DynArray::I32(a) => DynArray::I32(a.map(|&x| op.apply(x))),
            DynArray::Bool(_) => {
                return Err(Error::Type(format!(
                    "{}: not supported on bool tensors; cast first, e.g. t.long()",
                    op.name()
                )))
            }
            _ => self.map(float)?,
        })
    }
}

/// The unary ops integers share with floats.
#[derive(Clone, Copy)]
enum IntUnary {
    Neg,
    Abs,
    Relu,
}

impl IntUnary {
    fn apply<T: Int>(self, x: T) -> T {
        match self {
            IntUnary::Neg => x.wrapping_neg(),
            IntUnary::Abs => x.wrapping_abs_(),
            IntUnary::Relu => x.max(T::zero()),
        }
    }

    fn name(self) -> &'static str {
        match self {
            IntUnary::Neg => "neg",
            IntUnary::Abs => "abs",
            IntUnary::Relu => "relu",
        }
    }
}

fn int_bits<T: Int>(op: Bitwise, a: &NdArray<T>, b: &NdArray<T>) -> Result<NdArray<T>> {
    let name = op.name();
    match op {
        Bitwise::And => a.zip_with(name, b, |&x, &y| x & y),
        Bitwise::Or => a.zip_with(name, b, |&x, &y| x | y),
        Bitwise::Xor => a.zip_with(name, b, |&x, &y| x ^ y),
    }
}
