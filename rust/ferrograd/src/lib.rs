//! ferrograd: `NdArray`, scalar autodiff `Value` and an autodiff `Tensor`, in Rust.
//!
//! ```
//! use ferrograd::{DType, Tensor};
//!
//! let x = Tensor::full(&[2, 3], 2.0, DType::F64, true)?;
//! let w = Tensor::full(&[3], 0.5, DType::F64, true)?;
//! let loss = x.mul(&w)?.relu()?.sum(None, false)?;
//! loss.backward(None, false)?;
//! // d(sum(x * w))/dw = the column sums of x = 2 + 2
//! assert_eq!(w.grad().unwrap().read().to_f64_vec(), vec![4.0, 4.0, 4.0]);
//! # Ok::<(), ferrograd::Error>(())
//! ```

pub mod dtype;
pub mod dynarray;
pub mod error;
pub mod io;
pub mod ndarray;
pub mod optim;
pub mod parallel;
pub mod random;
pub mod shape;
pub mod tensor;
#[cfg(test)]
mod test_util;
pub mod value;
pub mod value_array;

pub use dtype::{DType, Scalar};
pub use dynarray::DynArray;
pub use error::{Error, Result};
pub use ndarray::NdArray;
pub use tensor::Tensor;
pub use value::Value;
