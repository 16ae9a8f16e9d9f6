//! A small single-threaded GEMM on strided views for the attention kernels: the `gemm`
//! crate for f32/f64, a plain loop for any other `Float`.

use std::any::TypeId;

use crate::ndarray::Float;

/// A matrix inside a slice: `rows × cols` with element strides (`rs`, `cs`).
#[derive(Clone, Copy)]
pub(super) struct Mat<'a, T> {
    data: &'a [T],
    rows: usize,
    cols: usize,
    rs: usize,
    cs: usize,
}

impl<'a, T> Mat<'a, T> {
    /// The row-major `rows × cols` matrix at the start of `data`.
    pub(super) fn rows(data: &'a [T], rows: usize, cols: usize) -> Self {
        Self {
            data,
            rows,
            cols,
            rs: cols,
            cs: 1,
        }
    }

    /// The transpose, as a view.
    pub(super) fn t(self) -> Self {
        Self {
            rows: self.cols,
            cols: self.rows,
            rs: self.cs,
            cs: self.rs,
            ..self
        }
    }

    /// Whether every element lies inside `data`.
    fn in_bounds(&self) -> bool {
        self.rows == 0
            || self.cols == 0
            || (self.rows - 1) * self.rs + (self.cols - 1) * self.cs < self.data.len()
    }
}

/// `dst (m × n, row stride ldd) = beta · A·B`, or `+=` that when `accumulate`, on this thread.
pub(super) fn gemm_into<T: Float>(
    dst: &mut [T],
    ldd: usize,
    a: Mat<'_, T>,
    b: Mat<'_, T>,
    beta: T,
    accumulate: bool,
) {
    let (m, k, n) = (a.rows, a.cols, b.cols);
    assert!(
        b.rows == k
            && a.in_bounds()
            && b.in_bounds()
            && (m == 0 || n == 0 || (m - 1) * ldd + n <= dst.len()),
        "attention: internal GEMM operands out of bounds"
    );
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            for i in 0..m {
                dst[i * ldd..i * ldd + n].fill(T::zero());
            }
        }
        return;
    }
    let is = |id: TypeId| TypeId::of::<T>() == id;
    if !(is(TypeId::of::<f32>()) || is(TypeId::of::<f64>())) {
        // `Float` is meant for f32/f64; any other implementor gets a plain loop.
        for i in 0..m {
            for j in 0..n {
                let sum: T = (0..k)
                    .map(|p| a.data[i * a.rs + p * a.cs] * b.data[p * b.rs + j * b.cs])
                    .sum();
                let d = &mut dst[i * ldd + j];
                *d = if accumulate {
                    *d + beta * sum
                } else {
                    beta * sum
                };
            }
        }
        return;
    }
    crate::ndarray::matmul::configure_gemm();
    // SAFETY: T is f32 or f64 (checked above), which gemm supports. The assert shows that
    // every element of A (m × k), B (k × n) and dst (m × n, row stride ldd) read or written
    // lies inside its slice; `dst` is a unique borrow, so it aliases neither input.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ldd as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            T::one(),
            beta,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
