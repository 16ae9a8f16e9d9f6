//! The float element trait: what `f32` and `f64` share for the math kernels.

/// A float element type of the math kernels (`f32` or `f64`).
pub trait Float:
    num_traits::Float
    + num_traits::FromPrimitive
    + std::iter::Sum
    + std::fmt::Debug
    + std::fmt::Display
    + Default
    + Send
    + Sync
    + 'static
{
    /// The dtype name Python shows: `"float32"` or `"float64"`.
    const NAME: &'static str;
    /// Converts from `f64` (rounding for `f32`).
    fn from_f64_lossy(x: f64) -> Self;
    /// Widens to `f64`.
    fn to_f64_lossless(self) -> f64;
}

impl Float for f32 {
    const NAME: &'static str = "float32";
    fn from_f64_lossy(x: f64) -> Self {
        x as f32
    }
    fn to_f64_lossless(self) -> f64 {
        self as f64
    }
}

impl Float for f64 {
    const NAME: &'static str = "float64";
    fn from_f64_lossy(x: f64) -> Self {
        x
    }
    fn to_f64_lossless(self) -> f64 {
        self
    }
}
