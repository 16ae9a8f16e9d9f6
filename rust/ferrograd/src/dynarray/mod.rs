//! `DynArray`: an `NdArray` whose element type (`float32`, `float64`, `int64`, `int32`, `bool`)
//! is chosen at run time, with PyTorch's promotion rules (see `crate::dtype`). It is what a
//! `Tensor` and Python's `NdArray` hold. Math (exp, matmul, softmax, …) is for floats; the
//! integer and bool arms serve indices, labels, token ids, counts and masks.

mod arith;

pub use arith::{Arith, Bitwise, Compare};

use std::borrow::Cow;

use crate::dtype::float_only_error;
pub use crate::dtype::{Category, DType, Scalar};
use crate::ndarray::element::Elem;
use crate::ndarray::{Float, IndexItem, NdArray, ReduceOp};
use crate::shape::{fmt_shape, normalize_axes, normalize_axis};
use crate::{Error, Result};

/// An n-d array of run-time dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum DynArray {
    F32(NdArray<f32>),
    F64(NdArray<f64>),
    I64(NdArray<i64>),
    I32(NdArray<i32>),
    Bool(NdArray<bool>),
}

/// Runs `$body` with `$a` bound to the typed `NdArray` inside a float array and wraps the
/// typed result back; other dtypes are a TypeError naming `$op`.
macro_rules! each_float {
    ($arr:expr, $op:expr, $a:ident => $body:expr) => {
        match $arr {
            DynArray::F32($a) => DynArray::F32($body?),
            DynArray::F64($a) => DynArray::F64($body?),
            other => return Err($crate::dtype::float_only_error($op, other.dtype())),
        }
    };
}

/// Runs `$body` (returning `Result<NdArray<_>>`) on whichever typed array is inside and wraps
/// the result in the same arm.
macro_rules! each_any {
    ($arr:expr, $a:ident => $body:expr) => {
        match $arr {
            DynArray::F32($a) => DynArray::F32($body?),
            DynArray::F64($a) => DynArray::F64($body?),
            DynArray::I64($a) => DynArray::I64($body?),
            DynArray::I32($a) => DynArray::I32($body?),
            DynArray::Bool($a) => DynArray::Bool($body?),
        }
    };
}
pub(crate) use each_float;

/// Conversion between a typed `NdArray` and its `DynArray` arm.
pub trait Stored: Elem {
    fn wrap(a: NdArray<Self>) -> DynArray;
    fn view(a: &DynArray) -> Option<&NdArray<Self>>;
}

macro_rules! stored {
    ($t:ty, $arm:ident) => {
        impl Stored for $t {
            fn wrap(a: NdArray<$t>) -> DynArray {
                DynArray::$arm(a)
            }
            fn view(a: &DynArray) -> Option<&NdArray<$t>> {
                match a {
                    DynArray::$arm(x) => Some(x),
                    _ => None,
                }
            }
        }
        impl From<NdArray<$t>> for DynArray {
            fn from(a: NdArray<$t>) -> Self {
                DynArray::$arm(a)
            }
        }
    };
}
stored!(f32, F32);
stored!(f64, F64);
stored!(i64, I64);
stored!(i32, I32);
stored!(bool, Bool);

/// A float element type of a `DynArray` (what the float-only kernels are generic over).
pub trait Element: Float + Stored {}
impl Element for f32 {}
impl Element for f64 {}

/// An elementwise function on one float, written once for both dtypes.
pub trait UnaryFn: Sync {
    fn apply<T: Float>(&self, x: T) -> T;
}

/// An elementwise function of two floats, written once for both dtypes.
pub trait BinaryFn: Sync {
    fn apply<T: Float>(&self, x: T, y: T) -> T;
}

/// Declares zero-sized `UnaryFn`/`BinaryFn` types from closures-like bodies.
macro_rules! float_fns {
    (unary $($(#[$m:meta])* $name:ident |$x:ident| $body:expr;)*) => {$(
        $(#[$m])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name;
        impl UnaryFn for $name {
            fn apply<T: Float>(&self, $x: T) -> T { $body }
        }
    )*};
    (binary $($(#[$m:meta])* $name:ident |$x:ident, $y:ident| $body:expr;)*) => {$(
        $(#[$m])*
        #[derive(Clone, Copy, Debug)]
        pub struct $name;
        impl BinaryFn for $name {
            fn apply<T: Float>(&self, $x: T, $y: T) -> T { $body }
        }
    )*};
}

/// The elementwise functions the ops are built from.
pub mod fns {
    use super::{BinaryFn, Float, UnaryFn};
    use crate::ndarray::elementwise::scalar;

    float_fns! { unary
        Neg |x| -x;
        Exp |x| x.vexp();
        Log |x| x.ln();
        Sqrt |x| x.sqrt();
        Abs |x| x.abs();
        Relu |x| scalar::relu(x);
        Sigmoid |x| scalar::sigmoid(x);
        Tanh |x| x.tanh();
        Sign |x| scalar::sign(x);
        Square |x| x * x;
        Recip |x| T::one() / x;
    }
    float_fns! { binary
        Add |x, y| x + y;
        Sub |x, y| x - y;
        Mul |x, y| x * y;
        Div |x, y| x / y;
        Pow |x, y| scalar::pow(x, y);
        /// `y - x`: the reversed form used for `scalar - array`.
        RSub |x, y| y - x;
        /// `y / x`: the reversed form used for `scalar / array`.
        RDiv |x, y| y / x;
        /// `y ** x`: the reversed form used for `scalar ** array`.
        RPow |x, y| scalar::pow(y, x);
        /// Python's `x // y`: the floor of the true quotient, computed as CPython does.
        FloorDiv |x, y| scalar::floor_div(x, y);
        /// Python's `x % y`: the remainder with the divisor's sign.
        Rem |x, y| scalar::py_mod(x, y);
        /// 1 where x == y (NaN matching NaN), else 0: which elements attained a max or min
        /// (a NaN result gets its gradient from the NaN inputs, as in PyTorch).
        EqMask |x, y| if x == y || (x.is_nan() && y.is_nan()) { T::one() } else { T::zero() };
    }
}

impl DynArray {
    /// An array of `shape` filled with `value` (cast to `dtype`).
    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Result<Self> {
        Self::full_scalar(shape, Scalar::Float(value), dtype)
    }

    /// An array of `shape` filled with a scalar (integers stay exact in integer dtypes).
    pub fn full_scalar(shape: &[usize], value: Scalar, dtype: DType) -> Result<Self> {
        fn fill<T: Stored>(shape: &[usize], v: Scalar) -> Result<DynArray> {
            let x = match v {
                Scalar::Float(f) => T::from_f64(f),
                other => T::from_i64(other.to_i64()),
            };
            Ok(T::wrap(NdArray::full(shape, x)?))
        }
        match dtype {
            DType::F32 => fill::<f32>(shape, value),
            DType::F64 => fill::<f64>(shape, value),
            DType::I64 => fill::<i64>(shape, value),
            DType::I32 => fill::<i32>(shape, value),
            DType::Bool => fill::<bool>(shape, value),
        }
    }

    /// Builds an array of `dtype` from f64 values (cast as `astype` casts).
    pub fn from_f64(data: Vec<f64>, shape: &[usize], dtype: DType) -> Result<Self> {
        Ok(DynArray::F64(NdArray::from_vec(data, shape)?).into_dtype(dtype))
    }

    /// Builds an array of `dtype` from i64 values (exact for integer dtypes).
    pub fn from_i64(data: Vec<i64>, shape: &[usize], dtype: DType) -> Result<Self> {
        Ok(DynArray::I64(NdArray::from_vec(data, shape)?).into_dtype(dtype))
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            DynArray::F32(_) => DType::F32,
            DynArray::F64(_) => DType::F64,
            DynArray::I64(_) => DType::I64,
            DynArray::I32(_) => DType::I32,
            DynArray::Bool(_) => DType::Bool,
        }
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        match self {
            DynArray::F32(a) => a.shape(),
            DynArray::F64(a) => a.shape(),
            DynArray::I64(a) => a.shape(),
            DynArray::I32(a) => a.shape(),
            DynArray::Bool(a) => a.shape(),
        }
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    /// The number of elements.
    pub fn size(&self) -> usize {
        self.shape().iter().product()
    }

    /// An error unless this is a float array; `op` names the op in the TypeError.
    pub fn require_float(&self, op: &str) -> Result<()> {
        if self.dtype().is_float() {
            Ok(())
        } else {
            Err(float_only_error(op, self.dtype()))
        }
    }

    /// A copy of the same dtype, made on the pool's threads when large (see
    /// [`NdArray::try_clone`]).
    pub fn try_clone(&self) -> Result<DynArray> {
        Ok(each_any!(self, a => a.try_clone()))
    }

    /// This array in `dtype` (a copy only when the dtype changes). Float → integer
    /// truncates toward zero; anything → bool is `x != 0`.
    pub fn to_dtype(&self, dtype: DType) -> DynArray {
        fn to<T: Stored>(a: &DynArray) -> DynArray {
            match a {
                DynArray::F32(x) => T::wrap(x.cast_to()),
                DynArray::F64(x) => T::wrap(x.cast_to()),
                DynArray::I64(x) => T::wrap(x.cast_to()),
                DynArray::I32(x) => T::wrap(x.cast_to()),
                DynArray::Bool(x) => T::wrap(x.cast_to()),
            }
        }
        if self.dtype() == dtype {
            return self.clone();
        }
        match dtype {
            DType::F32 => to::<f32>(self),
            DType::F64 => to::<f64>(self),
            DType::I64 => to::<i64>(self),
            DType::I32 => to::<i32>(self),
            DType::Bool => to::<bool>(self),
        }
    }

    /// Consumes the array into `dtype`, without copying when it already is.
    pub fn into_dtype(self, dtype: DType) -> DynArray {
        if self.dtype() == dtype {
            self
        } else {
            self.to_dtype(dtype)
        }
    }

    /// This array in `dtype`, borrowed when it already is.
    pub fn as_dtype(&self, dtype: DType) -> Cow<'_, DynArray> {
        if self.dtype() == dtype {
            Cow::Borrowed(self)
        } else {
            Cow::Owned(self.to_dtype(dtype))
        }
    }

    /// The elements as f64, in row-major order.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            DynArray::F32(a) => a.data().iter().map(|&x| x as f64).collect(),
            DynArray::F64(a) => a.data().to_vec(),
            DynArray::I64(a) => a.data().iter().map(|&x| x as f64).collect(),
            DynArray::I32(a) => a.data().iter().map(|&x| f64::from(x)).collect(),
            DynArray::Bool(a) => a.data().iter().map(|&x| x.to_f64()).collect(),
        }
    }

    /// The elements as i64, in row-major order (floats truncate toward zero).
    pub fn to_i64_vec(&self) -> Vec<i64> {
        match self.as_dtype(DType::I64).as_ref() {
            DynArray::I64(a) => a.data().to_vec(),
            _ => unreachable!("as_dtype(I64) gives an I64 array"),
        }
    }

    /// The one element of a one-element array, as f64.
    pub fn item(&self) -> Result<f64> {
        self.item_scalar().map(Scalar::to_f64)
    }

    /// The one element of a one-element array, as the scalar kind of its dtype.
    pub fn item_scalar(&self) -> Result<Scalar> {
        Ok(match self {
            DynArray::F32(a) => Scalar::Float(f64::from(a.item()?)),
            DynArray::F64(a) => Scalar::Float(a.item()?),
            DynArray::I64(a) => Scalar::Int(a.item()?),
            DynArray::I32(a) => Scalar::Int(i64::from(a.item()?)),
            DynArray::Bool(a) => Scalar::Bool(a.item()?),
        })
    }

    /// Applies a float function to every element (a TypeError on other dtypes).
    pub fn map(&self, f: impl UnaryFn) -> Result<Self> {
        Ok(each_float!(self, "elementwise op", a => a.unary(|x| f.apply(x))))
    }

    /// Combines two arrays under broadcasting with a float function, in the promoted float
    /// type (integer operands, e.g. a saved input of `float * int`, are cast to it).
    pub fn zip(&self, op: &str, other: &Self, f: impl BinaryFn) -> Result<Self> {
        let dtype = self.dtype().promote(other.dtype()).to_float();
        let (a, b) = (self.as_dtype(dtype), other.as_dtype(dtype));
        Ok(match (a.as_ref(), b.as_ref()) {
            (DynArray::F32(a), DynArray::F32(b)) => {
                DynArray::F32(a.binary(op, b, |x, y| f.apply(x, y))?)
            }
            (DynArray::F64(a), DynArray::F64(b)) => {
                DynArray::F64(a.binary(op, b, |x, y| f.apply(x, y))?)
            }
            _ => return Err(internal()),
        })
    }

    /// [`zip`](Self::zip) that writes into `self` when it can (a float array of the result's
    /// dtype and shape): a backward rule that owns its gradient scales it in place.
    pub fn zip_into(self, op: &str, other: &Self, f: impl BinaryFn) -> Result<Self> {
        let in_place = self.dtype().is_float()
            && self.dtype() == other.dtype()
            && self.shape() == other.shape();
        if !in_place {
            return self.zip(op, other, f);
        }
        Ok(match (self, other) {
            (DynArray::F32(mut a), DynArray::F32(b)) => {
                a.zip_assign(op, b, |x, y| f.apply(x, y))?;
                DynArray::F32(a)
            }
            (DynArray::F64(mut a), DynArray::F64(b)) => {
                a.zip_assign(op, b, |x, y| f.apply(x, y))?;
                DynArray::F64(a)
            }
            _ => return Err(internal()),
        })
    }

    /// Combines every element with one scalar using a float function; the dtype stays (an
    /// integer array computes in float32).
    pub fn zip_scalar(&self, s: f64, f: impl BinaryFn) -> Result<Self> {
        let a = self.as_dtype(self.dtype().to_float());
        Ok(each_float!(a.as_ref(), "elementwise op", a => a.scalar_op(s, |x, y| f.apply(x, y))))
    }

    /// Adds `other` (cast to this dtype) into this array in place; shapes must match.
    pub fn add_assign(&mut self, other: &DynArray) -> Result<()> {
        let dtype = self.dtype();
        let other = other.as_dtype(dtype);
        match (self, other.as_ref()) {
            (DynArray::F32(a), DynArray::F32(b)) => a.add_assign(b),
            (DynArray::F64(a), DynArray::F64(b)) => a.add_assign(b),
            (a, _) => Err(float_only_error("add_assign", a.dtype())),
        }
    }

    /// Matrix product with NumPy `@` semantics.
    pub fn matmul(&self, other: &Self) -> Result<Self> {
        self.matmul_t(other, false, false)
    }

    /// Matrix product treating the last two axes of either operand as transposed.
    pub fn matmul_t(&self, other: &Self, ta: bool, tb: bool) -> Result<Self> {
        self.require_float("matmul")?;
        other.require_float("matmul")?;
        let dtype = self.dtype().promote(other.dtype());
        let (a, b) = (self.as_dtype(dtype), other.as_dtype(dtype));
        Ok(match (a.as_ref(), b.as_ref()) {
            (DynArray::F32(a), DynArray::F32(b)) => DynArray::F32(if ta || tb {
                a.matmul_t(b, ta, tb)?
            } else {
                a.matmul(b)?
            }),
            (DynArray::F64(a), DynArray::F64(b)) => DynArray::F64(if ta || tb {
                a.matmul_t(b, ta, tb)?
            } else {
                a.matmul(b)?
            }),
            _ => return Err(internal()),
        })
    }

    /// Reduces over `axes` (`None` = all); axes may be negative. `sum` of integers or bools
    /// gives int64; `mean` needs floats; `max`/`min` keep the dtype.
    pub fn reduce(&self, op: ReduceOp, axes: Option<&[isize]>, keepdims: bool) -> Result<Self> {
        let axes = normalize_axes(op.name(), axes, self.ndim())?;
        let axes = axes.as_slice();
        macro_rules! fold {
            ($a:expr, $t:ty) => {
                match op {
                    ReduceOp::Sum => DynArray::I64($a.fold_axes(
                        op,
                        axes,
                        keepdims,
                        |x| x.to_i64(),
                        Some(0),
                        i64::wrapping_add,
                    )?),
                    ReduceOp::Max => {
                        <$t>::wrap($a.fold_axes(op, axes, keepdims, |x| x, None, greater)?)
                    }
                    ReduceOp::Min => {
                        <$t>::wrap($a.fold_axes(op, axes, keepdims, |x| x, None, lesser)?)
                    }
                    ReduceOp::Mean => return Err(float_only_error("mean", self.dtype())),
                }
            };
        }
        Ok(match self {
            DynArray::F32(a) => DynArray::F32(a.reduce(op, axes, keepdims)?),
            DynArray::F64(a) => DynArray::F64(a.reduce(op, axes, keepdims)?),
            DynArray::I64(a) => fold!(a, i64),
            DynArray::I32(a) => fold!(a, i32),
            DynArray::Bool(a) => fold!(a, bool),
        })
    }

    /// Whether every element (`all`) or any element (`any`) over `axes` is non-zero, as
    /// bool; like NumPy, `all` of nothing is true and `any` of nothing false.
    pub fn all_or_any(&self, axes: Option<&[isize]>, keepdims: bool, all: bool) -> Result<Self> {
        let (op, name) = if all {
            (ReduceOp::Min, "all")
        } else {
            (ReduceOp::Max, "any")
        };
        let axes = normalize_axes(name, axes, self.ndim())?;
        // Over bools, `all` is the minimum and `any` the maximum, each from its identity.
        let truth = self.as_dtype(DType::Bool);
        let DynArray::Bool(b) = truth.as_ref() else {
            return Err(internal());
        };
        let folded = if all {
            b.fold_axes(op, &axes, keepdims, |x| x, Some(true), |a, x| a && x)?
        } else {
            b.fold_axes(op, &axes, keepdims, |x| x, Some(false), |a, x| a || x)?
        };
        Ok(DynArray::Bool(folded))
    }

    /// Indices (int64) of the maximum (or minimum) along `axis` (`None` = flattened).
    pub fn arg_extreme(&self, axis: Option<isize>, keepdims: bool, largest: bool) -> Result<Self> {
        let name = if largest { "argmax" } else { "argmin" };
        let axis = axis
            .map(|a| normalize_axis(name, a, self.ndim()))
            .transpose()?;
        let found = match self {
            DynArray::F32(a) => a.arg_extreme(axis, keepdims, largest)?,
            DynArray::F64(a) => a.arg_extreme(axis, keepdims, largest)?,
            DynArray::I64(a) => a.arg_extreme_ord(axis, keepdims, largest)?,
            DynArray::I32(a) => a.arg_extreme_ord(axis, keepdims, largest)?,
            DynArray::Bool(a) => a.arg_extreme_ord(axis, keepdims, largest)?,
        };
        Ok(DynArray::I64(found.map(|&i| i as i64)))
    }

    /// The same data under a new shape (one `-1` allowed).
    pub fn reshape(&self, shape: &[isize]) -> Result<Self> {
        Ok(each_any!(self, a => a.reshape(shape)))
    }

    /// Reinterprets the data with a shape of the same size.
    pub fn into_shape(self, shape: &[usize]) -> Result<Self> {
        Ok(each_any!(self, a => a.into_shape(shape)))
    }

    /// Reorders the axes.
    pub fn permute(&self, perm: &[usize]) -> Result<Self> {
        Ok(each_any!(self, a => a.permute_copy(perm)))
    }

    /// Materialises a broadcast to `shape`.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Self> {
        Ok(each_any!(self, a => a.broadcast_to(shape)))
    }

    /// NumPy-style indexing.
    pub fn index(&self, items: &[IndexItem]) -> Result<Self> {
        Ok(each_any!(self, a => a.index(items)))
    }

    /// Reads the given flat offsets into an array of `shape`.
    pub fn gather(&self, offsets: &[usize], shape: &[usize]) -> Self {
        match self {
            DynArray::F32(a) => DynArray::F32(a.gather(offsets, shape)),
            DynArray::F64(a) => DynArray::F64(a.gather(offsets, shape)),
            DynArray::I64(a) => DynArray::I64(a.gather(offsets, shape)),
            DynArray::I32(a) => DynArray::I32(a.gather(offsets, shape)),
            DynArray::Bool(a) => DynArray::Bool(a.gather(offsets, shape)),
        }
    }

    /// Adds `self[i]` into a zero array of `shape` at `offsets[i]` (floats: a gradient).
    pub fn scatter_add(&self, shape: &[usize], offsets: &[usize]) -> Result<Self> {
        Ok(each_float!(self, "scatter_add", a => NdArray::scatter_add(shape, offsets, a)))
    }

    /// Sums broadcast axes away so the result has `shape` (the reverse of broadcasting).
    pub fn sum_to_shape(&self, shape: &[usize]) -> Result<Self> {
        if self.shape() == shape {
            return Ok(self.clone());
        }
        self.reduce_to(shape)
    }

    /// Like [`sum_to_shape`](Self::sum_to_shape), consuming `self`: no copy when the shape
    /// already matches (the common case in backward).
    pub fn into_sum_to_shape(self, shape: &[usize]) -> Result<Self> {
        if self.shape() == shape {
            return Ok(self);
        }
        self.reduce_to(shape)
    }

    fn reduce_to(&self, shape: &[usize]) -> Result<Self> {
        let lead = self
            .ndim()
            .checked_sub(shape.len())
            .ok_or_else(|| self.no_reduce_to(shape))?;
        let mut axes: Vec<isize> = (0..lead as isize).collect();
        for (i, &d) in shape.iter().enumerate() {
            match (self.shape()[lead + i], d) {
                (s, t) if s == t => {}
                (_, 1) => axes.push((lead + i) as isize),
                _ => return Err(self.no_reduce_to(shape)),
            }
        }
        self.reduce(ReduceOp::Sum, Some(&axes), false)?
            .into_shape(shape)
    }

    fn no_reduce_to(&self, shape: &[usize]) -> Error {
        Error::Shape(format!(
            "gradient of shape {} cannot be reduced to shape {}",
            fmt_shape(self.shape()),
            fmt_shape(shape)
        ))
    }

    /// Joins arrays along an existing axis (mixed dtypes promote).
    pub fn concatenate(arrays: &[&DynArray], axis: isize) -> Result<Self> {
        Self::join(arrays, Join::Concatenate(axis))
    }

    /// Joins arrays along a new axis (mixed dtypes promote).
    pub fn stack(arrays: &[&DynArray], axis: isize) -> Result<Self> {
        Self::join(arrays, Join::Stack(axis))
    }

    fn join(arrays: &[&DynArray], how: Join) -> Result<Self> {
        fn typed<T: Stored>(cast: &[Cow<'_, DynArray>], how: Join) -> Result<DynArray> {
            let views: Vec<&NdArray<T>> = cast.iter().filter_map(|c| T::view(c)).collect();
            match how {
                Join::Concatenate(axis) => NdArray::concatenate(&views, axis),
                Join::Stack(axis) => NdArray::stack(&views, axis),
            }
            .map(T::wrap)
        }
        // An empty list reaches the typed join, which names the op in its error.
        let first = arrays.first().map_or(DType::F32, |a| a.dtype());
        let dtype = arrays.iter().fold(first, |d, a| d.promote(a.dtype()));
        let cast: Vec<Cow<'_, DynArray>> = arrays.iter().map(|a| a.as_dtype(dtype)).collect();
        match dtype {
            DType::F32 => typed::<f32>(&cast, how),
            DType::F64 => typed::<f64>(&cast, how),
            DType::I64 => typed::<i64>(&cast, how),
            DType::I32 => typed::<i32>(&cast, how),
            DType::Bool => typed::<bool>(&cast, how),
        }
    }
}

/// The larger of two totally ordered elements (the integer and bool `max` fold).
fn greater<T: PartialOrd>(p: T, q: T) -> T {
    if q > p {
        q
    } else {
        p
    }
}

/// The smaller of two totally ordered elements (the integer and bool `min` fold).
fn lesser<T: PartialOrd>(p: T, q: T) -> T {
    if q < p {
        q
    } else {
        p
    }
}

/// Which join `DynArray::join` runs.
#[derive(Clone, Copy)]
enum Join {
    Concatenate(isize),
    Stack(isize),
}

fn internal() -> Error {
    Error::Graph("internal error: dtype mismatch after promotion".into())
}
