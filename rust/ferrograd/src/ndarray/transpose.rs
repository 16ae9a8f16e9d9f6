//! A 2-D out-of-place transpose: AVX register blocks (8×8 for f32, 4×4 for f64) where the
//! CPU has AVX, cache-sized scalar tiles elsewhere and at the edges.
//!
//! A scalar transpose writes (or reads) one element per cache line touched: about 1 ns per
//! element here, so copying a 128×64 weight cost more than the GEMM saved by reading it
//! row-major. The register blocks load rows and store columns eight (four) elements at a
//! time: ~20× fewer memory operations.

use std::any::TypeId;
use std::mem::MaybeUninit;

/// Side of the scalar tiles (a tile of f64 is 2 KiB: the rows it reads and the rows it
/// writes stay in L1).
const TILE: usize = 16;

/// `dst (cols × rows, row-major) = srcᵀ`, where `src` is `rows × cols` with row `i` at
/// `src[i * src_stride..][..cols]`. Every element of `dst` is written.
///
/// # Panics
/// If `dst` does not hold exactly `rows * cols` elements or `src` is too short: both are
/// the caller's arithmetic, never user input.
pub(crate) fn transpose_into<T: Copy + 'static>(
    src: &[T],
    [rows, cols]: [usize; 2],
    src_stride: usize,
    dst: &mut [MaybeUninit<T>],
) {
    assert_eq!(dst.len(), rows * cols, "transpose: destination size");
    if rows == 0 || cols == 0 {
        return;
    }
    assert!(
        cols <= src_stride && (rows - 1) * src_stride + cols <= src.len(),
        "transpose: source too short"
    );
    // The blocks cover the largest multiple of the block side in each direction; the
    // scalar tiles then fill the right and bottom margins.
    let (done_rows, done_cols) = blocks(src, [rows, cols], src_stride, dst);
    scalar_tiles(src, [0, rows], [done_cols, cols], [rows, src_stride], dst);
    scalar_tiles(
        src,
        [done_rows, rows],
        [0, done_cols],
        [rows, src_stride],
        dst,
    );
}

/// Transposes `src[r0..r1, c0..c1]` into `dst` in scalar tiles; `dst_stride` is `dst`'s
/// row length (the source's row count).
fn scalar_tiles<T: Copy>(
    src: &[T],
    [r0, r1]: [usize; 2],
    [c0, c1]: [usize; 2],
    [dst_stride, src_stride]: [usize; 2],
    dst: &mut [MaybeUninit<T>],
) {
    for i0 in (r0..r1).step_by(TILE) {
        for j0 in (c0..c1).step_by(TILE) {
            for i in i0..(i0 + TILE).min(r1) {
                let row = &src[i * src_stride..];
                for j in j0..(j0 + TILE).min(c1) {
                    dst[j * dst_stride + i] = MaybeUninit::new(row[j]);
                }
            }
        }
    }
}

/// The register-block part: returns how many rows and columns of `src` it transposed
/// (`(0, 0)` where there is no block kernel for `T` or this CPU).
fn blocks<T: Copy + 'static>(
    src: &[T],
    shape: [usize; 2],
    src_stride: usize,
    dst: &mut [MaybeUninit<T>],
) -> (usize, usize) {
    #[cfg(target_arch = "x86_64")]
    if is_x86_feature_detected!("avx") {
        let id = TypeId::of::<T>();
        let (s, d) = (src.as_ptr(), dst.as_mut_ptr());
        let done = |side: usize| (shape[0] / side * side, shape[1] / side * side);
        if id == TypeId::of::<f32>() {
            let (r, c) = done(8);
            // SAFETY: AVX is present (checked above); `T` is f32, so the pointers are to
            // f32; `transpose_into` checked that rows `0..r` of `src` (stride
            // `src_stride`) hold columns `0..c` and that `dst` holds `rows × cols`.
            unsafe { avx::f32_blocks(s.cast(), [r, c], src_stride, d.cast(), shape[0]) };
            return (r, c);
        }
        if id == TypeId::of::<f64>() {
            let (r, c) = done(4);
            // SAFETY: as above, with `T` = f64.
            unsafe { avx::f64_blocks(s.cast(), [r, c], src_stride, d.cast(), shape[0]) };
            return (r, c);
        }
    }
    let _ = (src, shape, src_stride, dst);
    (0, 0)
}

#[cfg(target_arch = "x86_64")]
mod avx {
    use std::arch::x86_64::*;

    /// Transposes the `r × c` top-left part of `src` (row stride `ss`, `r` and `c`
    /// multiples of 8) into `dst` (row stride `ds`), one 8×8 register block at a time.
    ///
    /// # Safety
    /// AVX must be available; `src` must be readable at every `i * ss + j` and `dst`
    /// writable at every `j * ds + i` for `i < r`, `j < c`.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn f32_blocks(
        src: *const f32,
        [r, c]: [usize; 2],
        ss: usize,
        dst: *mut f32,
        ds: usize,
    ) {
        // 32×32 tiles of blocks: the tile's rows and the columns it writes stay in L1
        // (row by row, a 128×64 weight's 32 KiB of reads and writes did not).
        for i0 in (0..r).step_by(32) {
            for j0 in (0..c).step_by(32) {
                for i in (i0..(i0 + 32).min(r)).step_by(8) {
                    for j in (j0..(j0 + 32).min(c)).step_by(8) {
                        block8(src, i, j, ss, dst, ds);
                    }
                }
            }
        }
    }

    /// One 8×8 block of [`f32_blocks`], at row `i` and column `j` of `src`.
    ///
    /// # Safety
    /// As for [`f32_blocks`], for the block's 8 rows and 8 columns.
    #[inline]
    #[target_feature(enable = "avx")]
    unsafe fn block8(src: *const f32, i: usize, j: usize, ss: usize, dst: *mut f32, ds: usize) {
        let s = src.add(i * ss + j);
        let mut v = [_mm256_setzero_ps(); 8];
        for (k, v) in v.iter_mut().enumerate() {
            *v = _mm256_loadu_ps(s.add(k * ss));
        }
        // Interleave pairs, then quads, then swap 128-bit halves: the textbook
        // 8×8 transpose in 24 shuffles.
        let mut t = [_mm256_setzero_ps(); 8];
        for k in 0..4 {
            t[2 * k] = _mm256_unpacklo_ps(v[2 * k], v[2 * k + 1]);
            t[2 * k + 1] = _mm256_unpackhi_ps(v[2 * k], v[2 * k + 1]);
        }
        let mut u = [_mm256_setzero_ps(); 8];
        for h in 0..2 {
            let (a, b) = (4 * h, 4 * h + 2);
            u[4 * h] = _mm256_shuffle_ps::<0x44>(t[a], t[b]);
            u[4 * h + 1] = _mm256_shuffle_ps::<0xEE>(t[a], t[b]);
            u[4 * h + 2] = _mm256_shuffle_ps::<0x44>(t[a + 1], t[b + 1]);
            u[4 * h + 3] = _mm256_shuffle_ps::<0xEE>(t[a + 1], t[b + 1]);
        }
        // u[k] holds rows 0-3 of columns k and k + 4, u[k + 4] rows 4-7.
        let d = dst.add(j * ds + i);
        for k in 0..4 {
            let lo = _mm256_permute2f128_ps::<0x20>(u[k], u[k + 4]);
            let hi = _mm256_permute2f128_ps::<0x31>(u[k], u[k + 4]);
            _mm256_storeu_ps(d.add(k * ds), lo);
            _mm256_storeu_ps(d.add((k + 4) * ds), hi);
        }
    }

    /// [`f32_blocks`] for f64, in 4×4 blocks.
    ///
    /// # Safety
    /// As for [`f32_blocks`], with `r` and `c` multiples of 4.
    #[target_feature(enable = "avx")]
    pub(super) unsafe fn f64_blocks(
        src: *const f64,
        [r, c]: [usize; 2],
        ss: usize,
        dst: *mut f64,
        ds: usize,
    ) {
        for i in (0..r).step_by(4) {
            for j in (0..c).step_by(4) {
                let s = src.add(i * ss + j);
                let r0 = _mm256_loadu_pd(s);
                let r1 = _mm256_loadu_pd(s.add(ss));
                let r2 = _mm256_loadu_pd(s.add(2 * ss));
                let r3 = _mm256_loadu_pd(s.add(3 * ss));
                let (t0, t1) = (_mm256_unpacklo_pd(r0, r1), _mm256_unpackhi_pd(r0, r1));
                let (t2, t3) = (_mm256_unpacklo_pd(r2, r3), _mm256_unpackhi_pd(r2, r3));
                let d = dst.add(j * ds + i);
                _mm256_storeu_pd(d, _mm256_permute2f128_pd::<0x20>(t0, t2));
                _mm256_storeu_pd(d.add(ds), _mm256_permute2f128_pd::<0x20>(t1, t3));
                _mm256_storeu_pd(d.add(2 * ds), _mm256_permute2f128_pd::<0x31>(t0, t2));
                _mm256_storeu_pd(d.add(3 * ds), _mm256_permute2f128_pd::<0x31>(t1, t3));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check<T: Copy + PartialEq + std::fmt::Debug + 'static>(
        make: impl Fn(usize) -> T,
        rows: usize,
        cols: usize,
        pad: usize,
    ) {
        let stride = cols + pad;
        let src: Vec<T> = (0..rows * stride).map(&make).collect();
        let mut dst = vec![MaybeUninit::new(make(usize::MAX / 2)); rows * cols];
        transpose_into(&src, [rows, cols], stride, &mut dst);
        for i in 0..rows {
            for j in 0..cols {
                // SAFETY: every element was initialised above.
                let got = unsafe { dst[j * rows + i].assume_init() };
                assert_eq!(
                    got,
                    src[i * stride + j],
                    "({rows}x{cols}, pad {pad}) at ({i}, {j})"
                );
            }
        }
    }

    #[test]
    fn transposes_every_shape_around_the_block_sides() {
        for rows in [1, 3, 4, 7, 8, 9, 16, 17, 33] {
            for cols in [1, 2, 4, 5, 8, 12, 16, 31, 40] {
                for pad in [0, 3] {
                    check(|i| i as f32, rows, cols, pad);
                    check(|i| i as f64 * 0.5, rows, cols, pad);
                    check(|i| i as i64, rows, cols, pad);
                }
            }
        }
    }

    #[test]
    fn transposes_an_empty_matrix_without_reading() {
        let mut dst: Vec<MaybeUninit<f32>> = Vec::new();
        transpose_into(&[], [0, 5], 5, &mut dst);
        transpose_into(&[], [4, 0], 0, &mut dst);
    }
}
