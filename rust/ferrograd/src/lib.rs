//! ferrograd: `NdArray`, scalar autodiff `Value` and an autodiff `Tensor`, in Rust.

pub mod error;
pub mod ndarray;
pub mod parallel;
pub mod shape;

pub use error::{Error, Result};
pub use ndarray::NdArray;
