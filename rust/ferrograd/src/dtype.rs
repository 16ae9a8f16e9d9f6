//! Element types (`DType`), Python-style scalars and PyTorch's type promotion rules.
//!
//! Promotion, as docs/design.md tabulates it: the categories are ordered bool < integer <
//! float. Two arrays compute in the higher category, and within one category in the wider
//! type (int32 with int64 → int64, float32 with float64 → float64). A Python scalar never
//! widens an array within its category but lifts it to the scalar's category, taking that
//! category's default type (an int → int64, a float → float32).

use crate::{Error, Result};

/// The element type of a `DynArray`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DType {
    F32,
    F64,
    I64,
    I32,
    Bool,
}

/// bool < integer < float: the order in which promotion lifts operands.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum Category {
    Bool,
    Integer,
    Float,
}

impl DType {
    /// Every dtype, in the order the docs list them.
    pub const ALL: [DType; 5] = [DType::F32, DType::F64, DType::I64, DType::I32, DType::Bool];

    /// `"float32"`, `"float64"`, `"int64"`, `"int32"` or `"bool"`.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::Bool => "bool",
        }
    }

    /// Parses a dtype name, with PyTorch's and NumPy's aliases (`"float"`, `"double"`,
    /// `"long"`, `"int"`, `"f4"`, …).
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "float32" | "f32" | "float" | "f4" => DType::F32,
            "float64" | "f64" | "double" | "f8" => DType::F64,
            "int64" | "i64" | "long" | "i8" => DType::I64,
            "int32" | "i32" | "int" | "i4" => DType::I32,
            "bool" | "b1" => DType::Bool,
            _ => {
                return Err(Error::Type(format!(
                    "unknown dtype {name:?}: expected one of \"float32\", \"float64\", \"int64\", \
                     \"int32\", \"bool\""
                )))
            }
        })
    }

    /// Which promotion category the dtype is in.
    pub fn category(self) -> Category {
        match self {
            DType::F32 | DType::F64 => Category::Float,
            DType::I64 | DType::I32 => Category::Integer,
            DType::Bool => Category::Bool,
        }
    }

    /// Whether this is `float32` or `float64` (the dtypes math ops and gradients use).
    pub fn is_float(self) -> bool {
        self.category() == Category::Float
    }

    /// Bytes per element.
    pub fn itemsize(self) -> usize {
        match self {
            DType::F64 | DType::I64 => 8,
            DType::F32 | DType::I32 => 4,
            DType::Bool => 1,
        }
    }

    /// The type two arrays of these dtypes compute in.
    pub fn promote(self, other: DType) -> DType {
        match self.category().cmp(&other.category()) {
            std::cmp::Ordering::Greater => self,
            std::cmp::Ordering::Less => other,
            std::cmp::Ordering::Equal if self.itemsize() >= other.itemsize() => self,
            std::cmp::Ordering::Equal => other,
        }
    }

    /// The type an array of this dtype computes in with a Python scalar of `kind`.
    pub fn with_scalar(self, kind: Category) -> DType {
        if kind <= self.category() {
            self
        } else {
            Self::default_for(kind)
        }
    }

    /// The dtype a Python scalar of `kind` becomes on its own (PyTorch's defaults).
    pub fn default_for(kind: Category) -> DType {
        match kind {
            Category::Bool => DType::Bool,
            Category::Integer => DType::I64,
            Category::Float => DType::F32,
        }
    }

    /// The float type true division, `mean` and friends compute in: this one if it is a float,
    /// else float32.
    pub fn to_float(self) -> DType {
        if self.is_float() {
            self
        } else {
            DType::F32
        }
    }
}

impl std::fmt::Display for DType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

/// A Python-style scalar operand: its kind decides promotion, and an integer keeps all 64 bits.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Scalar {
    Bool(bool),
    Int(i64),
    Float(f64),
}

impl Scalar {
    /// Which category the scalar belongs to.
    pub fn category(self) -> Category {
        match self {
            Scalar::Bool(_) => Category::Bool,
            Scalar::Int(_) => Category::Integer,
            Scalar::Float(_) => Category::Float,
        }
    }

    /// The value as f64 (large integers round).
    pub fn to_f64(self) -> f64 {
        match self {
            Scalar::Bool(b) => f64::from(u8::from(b)),
            Scalar::Int(i) => i as f64,
            Scalar::Float(x) => x,
        }
    }

    /// The value as i64 (floats truncate toward zero).
    pub fn to_i64(self) -> i64 {
        match self {
            Scalar::Bool(b) => i64::from(b),
            Scalar::Int(i) => i,
            Scalar::Float(x) => x as i64,
        }
    }
}

impl From<f64> for Scalar {
    fn from(x: f64) -> Self {
        Scalar::Float(x)
    }
}

impl From<i64> for Scalar {
    fn from(x: i64) -> Self {
        Scalar::Int(x)
    }
}

impl From<bool> for Scalar {
    fn from(x: bool) -> Self {
        Scalar::Bool(x)
    }
}

/// The TypeError of an op that needs float input.
pub fn float_only_error(op: &str, dtype: DType) -> Error {
    Error::Type(format!(
        "{op}: expected a floating-point tensor, got dtype {dtype}; cast first, e.g. t.float()"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn promotion_is_symmetric_and_follows_category_then_width() {
        use DType::*;
        let expect = [
            (F32, F64, F64),
            (F32, I64, F32),
            (F64, I32, F64),
            (I32, I64, I64),
            (Bool, I32, I32),
            (Bool, F32, F32),
            (Bool, Bool, Bool),
            (I64, F32, F32),
        ];
        for (a, b, want) in expect {
            assert_eq!(a.promote(b), want, "{a} with {b}");
            assert_eq!(b.promote(a), want, "{b} with {a}");
        }
    }

    #[test]
    fn a_scalar_lifts_the_category_but_never_widens() {
        use DType::*;
        assert_eq!(I32.with_scalar(Category::Integer), I32);
        assert_eq!(I64.with_scalar(Category::Float), F32);
        assert_eq!(F32.with_scalar(Category::Float), F32);
        assert_eq!(Bool.with_scalar(Category::Integer), I64);
        assert_eq!(Bool.with_scalar(Category::Bool), Bool);
        assert_eq!(F64.with_scalar(Category::Integer), F64);
    }

    #[test]
    fn names_parse_back() {
        for d in DType::ALL {
            assert_eq!(DType::parse(d.name()).unwrap(), d);
        }
        assert!(matches!(DType::parse("float16"), Err(Error::Type(_))));
    }
}
