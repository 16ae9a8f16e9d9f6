//! `DynArray`: an `NdArray` whose float type (`float32` or `float64`) is chosen at run time,
//! with the promotion rules of DESIGN.md. It is what a `Tensor` and Python's `NdArray` hold.

use std::borrow::Cow;

use crate::ndarray::{Float, IndexItem, NdArray, ReduceOp};
use crate::shape::{fmt_shape, normalize_axes, normalize_axis};
use crate::{Error, Result};

/// The element type of a `DynArray`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
}

impl DType {
    /// `"float32"` or `"float64"`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
        }
    }

    /// Parses `"float32"`/`"f32"`/`"float64"`/`"f64"`/`"double"`/`"float"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "float32" | "f32" | "float" => Ok(DType::F32),
            "float64" | "f64" | "double" => Ok(DType::F64),
            _ => Err(Error::Type(format!(
                "unknown dtype {name:?}: expected \"float32\" or \"float64\""
            ))),
        }
    }

    /// The type two operands of these dtypes compute in.
    pub fn promote(self, other: DType) -> DType {
        if self == DType::F64 || other == DType::F64 {
            DType::F64
        } else {
            DType::F32
        }
    }
}

/// A float n-d array of run-time dtype.
#[derive(Clone, Debug, PartialEq)]
pub enum DynArray {
    F32(NdArray<f32>),
    F64(NdArray<f64>),
}

/// Runs `$body` with `$a` bound to the typed `NdArray` inside, and wraps a typed result back.
macro_rules! each {
    ($arr:expr, $a:ident => $body:expr) => {
        match $arr {
            DynArray::F32($a) => DynArray::F32($body),
            DynArray::F64($a) => DynArray::F64($body),
        }
    };
}

/// Like `each!`, for bodies returning `Result<NdArray<_>>`.
macro_rules! each_try {
    ($arr:expr, $a:ident => $body:expr) => {
        match $arr {
            DynArray::F32($a) => DynArray::F32($body?),
            DynArray::F64($a) => DynArray::F64($body?),
        }
    };
}

/// Element conversion from and into `DynArray`'s typed arms.
pub trait Element: Float {
    fn wrap(a: NdArray<Self>) -> DynArray;
    fn view(a: &DynArray) -> Option<&NdArray<Self>>;
}

impl Element for f32 {
    fn wrap(a: NdArray<f32>) -> DynArray {
        DynArray::F32(a)
    }
    fn view(a: &DynArray) -> Option<&NdArray<f32>> {
        match a {
            DynArray::F32(x) => Some(x),
            DynArray::F64(_) => None,
        }
    }
}

impl Element for f64 {
    fn wrap(a: NdArray<f64>) -> DynArray {
        DynArray::F64(a)
    }
    fn view(a: &DynArray) -> Option<&NdArray<f64>> {
        match a {
            DynArray::F64(x) => Some(x),
            DynArray::F32(_) => None,
        }
    }
}

impl From<NdArray<f32>> for DynArray {
    fn from(a: NdArray<f32>) -> Self {
        DynArray::F32(a)
    }
}

impl From<NdArray<f64>> for DynArray {
    fn from(a: NdArray<f64>) -> Self {
        DynArray::F64(a)
    }
}

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
        /// 1 where x == y (NaN matching NaN), else 0: which elements attained a max or min
        /// (a NaN result gets its gradient from the NaN inputs, as in PyTorch).
        EqMask |x, y| if x == y || (x.is_nan() && y.is_nan()) { T::one() } else { T::zero() };
    }
}

impl DynArray {
    /// An array of `shape` filled with `value`.
    pub fn full(shape: &[usize], value: f64, dtype: DType) -> Result<Self> {
        Ok(match dtype {
            DType::F32 => DynArray::F32(NdArray::full(shape, value as f32)?),
            DType::F64 => DynArray::F64(NdArray::full(shape, value)?),
        })
    }

    /// Builds an array of `dtype` from f64 values.
    pub fn from_f64(data: Vec<f64>, shape: &[usize], dtype: DType) -> Result<Self> {
        let a = NdArray::from_vec(data, shape)?;
        Ok(match dtype {
            DType::F32 => DynArray::F32(a.cast()),
            DType::F64 => DynArray::F64(a),
        })
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            DynArray::F32(_) => DType::F32,
            DynArray::F64(_) => DType::F64,
        }
    }

    /// The dimensions.
    pub fn shape(&self) -> &[usize] {
        match self {
            DynArray::F32(a) => a.shape(),
            DynArray::F64(a) => a.shape(),
        }
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape().len()
    }

    /// The number of elements.
    pub fn size(&self) -> usize {
        match self {
            DynArray::F32(a) => a.size(),
            DynArray::F64(a) => a.size(),
        }
    }

    /// This array in `dtype` (a copy only when the dtype changes).
    pub fn to_dtype(&self, dtype: DType) -> DynArray {
        match (self, dtype) {
            (DynArray::F32(a), DType::F64) => DynArray::F64(a.cast()),
            (DynArray::F64(a), DType::F32) => DynArray::F32(a.cast()),
            _ => self.clone(),
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

    /// The elements as f64, in row-major order.
    pub fn to_f64_vec(&self) -> Vec<f64> {
        match self {
            DynArray::F32(a) => a.data().iter().map(|&x| x as f64).collect(),
            DynArray::F64(a) => a.data().to_vec(),
        }
    }

    /// The one element of a one-element array, as f64.
    pub fn item(&self) -> Result<f64> {
        match self {
            DynArray::F32(a) => a.item().map(f64::from),
            DynArray::F64(a) => a.item(),
        }
    }

    /// Applies an elementwise function.
    pub fn map(&self, f: impl UnaryFn) -> Result<Self> {
        Ok(each_try!(self, a => a.unary(|x| f.apply(x))))
    }

    /// Combines two arrays under broadcasting, promoting mixed dtypes to float64.
    pub fn zip(&self, op: &str, other: &Self, f: impl BinaryFn) -> Result<Self> {
        Ok(match (self, other) {
            (DynArray::F32(a), DynArray::F32(b)) => {
                DynArray::F32(a.binary(op, b, |x, y| f.apply(x, y))?)
            }
            (DynArray::F64(a), DynArray::F64(b)) => {
                DynArray::F64(a.binary(op, b, |x, y| f.apply(x, y))?)
            }
            (DynArray::F32(a), DynArray::F64(b)) => {
                DynArray::F64(a.cast::<f64>().binary(op, b, |x, y| f.apply(x, y))?)
            }
            (DynArray::F64(a), DynArray::F32(b)) => {
                DynArray::F64(a.binary(op, &b.cast::<f64>(), |x, y| f.apply(x, y))?)
            }
        })
    }

    /// Combines every element with one scalar, keeping this array's dtype.
    pub fn zip_scalar(&self, s: f64, f: impl BinaryFn) -> Result<Self> {
        Ok(each_try!(self, a => a.scalar_op(s, |x, y| f.apply(x, y))))
    }

    /// Adds `other` (cast to this dtype) into this array in place; shapes must match.
    pub fn add_assign(&mut self, other: &DynArray) -> Result<()> {
        match (self, other) {
            (DynArray::F32(a), DynArray::F32(b)) => a.add_assign(b),
            (DynArray::F64(a), DynArray::F64(b)) => a.add_assign(b),
            (DynArray::F32(a), DynArray::F64(b)) => a.add_assign(&b.cast()),
            (DynArray::F64(a), DynArray::F32(b)) => a.add_assign(&b.cast()),
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

    /// Matrix product with NumPy `@` semantics.
    pub fn matmul(&self, other: &Self) -> Result<Self> {
        self.matmul_t(other, false, false)
    }

    /// Matrix product treating the last two axes of either operand as transposed.
    pub fn matmul_t(&self, other: &Self, ta: bool, tb: bool) -> Result<Self> {
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

    /// Reduces over `axes` (`None` = all); axes may be negative.
    pub fn reduce(&self, op: ReduceOp, axes: Option<&[isize]>, keepdims: bool) -> Result<Self> {
        let axes = normalize_axes(op.name(), axes, self.ndim())?;
        Ok(each_try!(self, a => a.reduce(op, &axes, keepdims)))
    }

    /// Indices of the maximum (or minimum) along `axis` (`None` = flattened).
    pub fn arg_extreme(
        &self,
        axis: Option<isize>,
        keepdims: bool,
        largest: bool,
    ) -> Result<NdArray<usize>> {
        let name = if largest { "argmax" } else { "argmin" };
        let axis = axis
            .map(|a| normalize_axis(name, a, self.ndim()))
            .transpose()?;
        match self {
            DynArray::F32(a) => a.arg_extreme(axis, keepdims, largest),
            DynArray::F64(a) => a.arg_extreme(axis, keepdims, largest),
        }
    }

    /// The same data under a new shape (one `-1` allowed).
    pub fn reshape(&self, shape: &[isize]) -> Result<Self> {
        Ok(each_try!(self, a => a.reshape(shape)))
    }

    /// Reinterprets the data with a shape of the same size.
    pub fn into_shape(self, shape: &[usize]) -> Result<Self> {
        Ok(each_try!(self, a => a.into_shape(shape)))
    }

    /// Reorders the axes.
    pub fn permute(&self, perm: &[usize]) -> Result<Self> {
        Ok(each_try!(self, a => a.permute(perm)))
    }

    /// Materialises a broadcast to `shape`.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Self> {
        Ok(each_try!(self, a => a.broadcast_to(shape)))
    }

    /// NumPy-style indexing.
    pub fn index(&self, items: &[IndexItem]) -> Result<Self> {
        Ok(each_try!(self, a => a.index(items)))
    }

    /// Reads the given flat offsets into an array of `shape`.
    pub fn gather(&self, offsets: &[usize], shape: &[usize]) -> Self {
        each!(self, a => a.gather(offsets, shape))
    }

    /// Adds `self[i]` into a zero array of `shape` at `offsets[i]`.
    pub fn scatter_add(&self, shape: &[usize], offsets: &[usize]) -> Result<Self> {
        Ok(each_try!(self, a => NdArray::scatter_add(shape, offsets, a)))
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
        Self::join(
            arrays,
            |xs| NdArray::concatenate(xs, axis),
            |xs| NdArray::concatenate(xs, axis),
        )
    }

    /// Joins arrays along a new axis (mixed dtypes promote).
    pub fn stack(arrays: &[&DynArray], axis: isize) -> Result<Self> {
        Self::join(
            arrays,
            |xs| NdArray::stack(xs, axis),
            |xs| NdArray::stack(xs, axis),
        )
    }

    fn join(
        arrays: &[&DynArray],
        f32s: impl Fn(&[&NdArray<f32>]) -> Result<NdArray<f32>>,
        f64s: impl Fn(&[&NdArray<f64>]) -> Result<NdArray<f64>>,
    ) -> Result<Self> {
        let dtype = arrays.iter().fold(DType::F32, |d, a| d.promote(a.dtype()));
        let cast: Vec<Cow<'_, DynArray>> = arrays.iter().map(|a| a.as_dtype(dtype)).collect();
        Ok(match dtype {
            DType::F32 => DynArray::F32(f32s(
                &cast.iter().filter_map(|c| f32::view(c)).collect::<Vec<_>>(),
            )?),
            DType::F64 => DynArray::F64(f64s(
                &cast.iter().filter_map(|c| f64::view(c)).collect::<Vec<_>>(),
            )?),
        })
    }
}

fn internal() -> Error {
    Error::Graph("internal error: dtype mismatch after promotion".into())
}
