//! Matrix multiplication with NumPy `@` semantics, batched and broadcast, on the `gemm` crate.

use std::any::TypeId;
use std::mem::MaybeUninit;

use super::transpose::transpose_into;
use super::{try_with_capacity, Float, NdArray};
use crate::shape::{broadcast_strides, checked_size, fmt_shape};
use crate::{Error, Result};

/// From this many multiply-adds (`m * n * k`) on, one GEMM runs on several threads;
/// below it each thread's packing of the shared operand costs about what the split saves
/// (f32 on 2 cores, 1 thread against 2, µs: 96³ 17.6/18.0, 128³ 42/37-41,
/// 64×256×256 80/44-52).
pub(crate) const GEMM_PARALLEL_WORK: usize = 128 * 128 * 128;

/// From this many multiply-adds in all, and at least [`BATCH_PARALLEL_COUNT`]
/// matrices, a batch of smaller GEMMs is spread over the threads, one GEMM per
/// task: nothing is packed twice, so it pays from small sizes on (f32 on 2 cores,
/// 1 thread against 2, µs: 8 × 16³ 3.3/2.5, 8 × 32³ 6.3/3.9, 32 × 32³ 24.6/15.6).
const BATCH_PARALLEL_WORK: usize = 1 << 15;
const BATCH_PARALLEL_COUNT: usize = 2;

/// gemm copies the left operand of its column-major view into panels whenever a chunk of
/// the product has more than this many times its register tile's columns (6 for f32 on
/// AVX-512); its default, 8, makes every small product of a small network pay that copy.
/// At 16 the digits MLP's products (64 rows, 64-128 columns, one thread) skip it: 88.0 ->
/// 85.3 µs per training step. Large products still pack (their chunks are hundreds of
/// columns wide): 1024² and the 784-512 MLP's products ran as fast as before.
const LHS_PACKING_THRESHOLD: usize = 16;

/// Applies this module's gemm settings, once per process, before the first product.
pub(crate) fn configure_gemm() {
    static DONE: std::sync::Once = std::sync::Once::new();
    DONE.call_once(|| gemm::set_lhs_packing_threshold_single_thread(LHS_PACKING_THRESHOLD));
}

/// One operand as the kernel sees it: its data, batch shape and the strides
/// (in elements) of its logical matrix.
struct Operand<'a, T> {
    data: &'a [T],
    batch: &'a [usize],
    rows: usize,
    cols: usize,
    row_stride: isize,
    col_stride: isize,
}

impl<'a, T> Operand<'a, T> {
    /// Views the last two axes of `shape` (at least 2-D) as a matrix, transposed
    /// or not, without moving any data.
    fn new(data: &'a [T], shape: &'a [usize], transpose: bool) -> Self {
        let nd = shape.len();
        let (r, c) = (shape[nd - 2], shape[nd - 1]);
        let (rows, cols, row_stride, col_stride) = if transpose {
            (c, r, 1, c as isize)
        } else {
            (r, c, c as isize, 1)
        };
        Self {
            data,
            batch: &shape[..nd - 2],
            rows,
            cols,
            row_stride,
            col_stride,
        }
    }
}

impl<T: Float> NdArray<T> {
    /// Matrix product with NumPy `@` semantics: 1-D·1-D gives a 0-d array; a 1-D
    /// left operand gets a leading 1 and a 1-D right one a trailing 1, removed
    /// again from the result; leading (batch) axes broadcast.
    pub fn matmul(&self, other: &Self) -> Result<Self> {
        self.matmul_impl("matmul", other, false, false)
    }

    /// Like [`matmul`](Self::matmul), reading the last two axes of `self` and/or
    /// `other` as transposed without materialising the transpose (the GEMM reads
    /// them with swapped strides). A transposed operand must be at least 2-D.
    pub fn matmul_t(&self, other: &Self, transpose_a: bool, transpose_b: bool) -> Result<Self> {
        self.matmul_impl("matmul_t", other, transpose_a, transpose_b)
    }

    fn matmul_impl(&self, op: &str, other: &Self, ta: bool, tb: bool) -> Result<Self> {
        let (sa, sb) = (&self.shape, &other.shape);
        if sa.is_empty() || sb.is_empty() {
            return Err(Error::Shape(format!(
                "{op}: shapes {} and {}: a 0-d array has no matrix axes; use * to scale",
                fmt_shape(sa),
                fmt_shape(sb)
            )));
        }
        for (t, s, name) in [(ta, sa, "first"), (tb, sb, "second")] {
            if t && s.len() < 2 {
                return Err(Error::Shape(format!(
                    "{op}: cannot transpose the {name} operand of shape {}: it needs 2 or more axes",
                    fmt_shape(s)
                )));
            }
        }
        // 1-D operands: a row vector on the left, a column vector on the right.
        let pa = if sa.len() == 1 {
            vec![1, sa[0]]
        } else {
            sa.clone()
        };
        let pb = if sb.len() == 1 {
            vec![sb[0], 1]
        } else {
            sb.clone()
        };
        let a = Operand::new(&self.data, &pa, ta);
        let b = Operand::new(&other.data, &pb, tb);
        let (m, k, n) = (a.rows, a.cols, b.cols);
        if b.rows != k {
            let flag = match (ta, tb) {
                (false, false) => "",
                (true, false) => " (first transposed)",
                (false, true) => " (second transposed)",
                (true, true) => " (both transposed)",
            };
            return Err(Error::Shape(format!(
                "{op}: shapes {} and {}{flag} do not line up: {k} != {}",
                fmt_shape(sa),
                fmt_shape(sb),
                b.rows
            )));
        }
        let batch = crate::shape::broadcast_shapes(op, a.batch, b.batch).map_err(|_| {
            Error::Shape(format!(
                "{op}: shapes {} and {}: batch axes {} and {} cannot be broadcast together",
                fmt_shape(sa),
                fmt_shape(sb),
                fmt_shape(a.batch),
                fmt_shape(b.batch)
            ))
        })?;
        let mut shape = batch.clone();
        shape.extend([m, n]);
        // The GEMM writes every element, so the output is never zeroed first (a memset
        // of a reused buffer, or page faults on one thread, cost ~25% of a 128x512x784).
        let len = checked_size(&shape)?;
        let mut data = try_with_capacity(len)?;
        gemm_batched(
            &mut data.spare_capacity_mut()[..len],
            &batch,
            &a,
            &b,
            [m, n, k],
            None,
        );
        // SAFETY: `gemm_batched` initialised all `len` elements (see its contract).
        unsafe { data.set_len(len) };
        // Drop the axes a 1-D operand was given.
        if sb.len() == 1 {
            shape.pop();
        }
        if sa.len() == 1 {
            let at = shape.len() - 1 - usize::from(sb.len() != 1);
            shape.remove(at);
        }
        Ok(Self { shape, data })
    }
}

/// One GEMM of two row-major buffers read as matrices whatever shape they are stored with:
/// `a` holds `a_dims = [rows, cols]` (read transposed when `ta`), `b` likewise; the result is
/// `(m, n)`, plus `bias` (`n` values) on every row when given: the GEMM adds its product to
/// the bias rows it starts from, so no second pass reads the output again. Fused ops use it
/// to treat a `(..., C)` array as `rows × C` without copying it.
pub fn matmul_flat<T: Float>(
    a: &[T],
    a_dims: [usize; 2],
    ta: bool,
    b: &[T],
    b_dims: [usize; 2],
    tb: bool,
    bias: Option<&[T]>,
) -> Result<NdArray<T>> {
    for (data, dims, name) in [(a, a_dims, "first"), (b, b_dims, "second")] {
        if dims[0].checked_mul(dims[1]) != Some(data.len()) {
            return Err(Error::Shape(format!(
                "matmul: the {name} operand holds {} elements, not {}",
                data.len(),
                fmt_shape(&dims)
            )));
        }
    }
    let a = Operand::new(a, &a_dims, ta);
    let b = Operand::new(b, &b_dims, tb);
    let (m, k, n) = (a.rows, a.cols, b.cols);
    if b.rows != k {
        return Err(Error::Shape(format!(
            "matmul: matrices {} and {} do not line up: {k} != {}",
            fmt_shape(&[a.rows, a.cols]),
            fmt_shape(&[b.rows, b.cols]),
            b.rows
        )));
    }
    let len = checked_size(&[m, n])?;
    if bias.is_some_and(|bias| bias.len() != n) {
        return Err(Error::Shape(format!(
            "matmul: a bias of {} values for {n} columns",
            bias.map_or(0, <[T]>::len)
        )));
    }
    let mut data = try_with_capacity(len)?;
    let out = &mut data.spare_capacity_mut()[..len];
    gemm_batched(out, &[], &a, &b, [m, n, k], bias);
    // SAFETY: `gemm_batched` initialised all `len` elements (see its contract).
    unsafe { data.set_len(len) };
    NdArray::from_vec(data, &[m, n])
}

/// Writes every element of `out` (shape `batch + [m, n]`, row-major) with the batched
/// product `a @ b`, plus `bias` (`n` values) on every row when given; batch axes of size 1
/// or missing in an operand broadcast.
fn gemm_batched<T: Float>(
    out: &mut [MaybeUninit<T>],
    batch: &[usize],
    a: &Operand<T>,
    b: &Operand<T>,
    [m, n, k]: [usize; 3],
    bias: Option<&[T]>,
) {
    if out.is_empty() {
        return;
    }
    configure_gemm();
    if k == 0 {
        // An empty sum is 0.
        for row in out.chunks_mut(n) {
            fill_bias(row, bias);
        }
        return;
    }
    // Element strides of each operand's batch axes, 0 where it broadcasts.
    let mat = |o: &Operand<T>| o.rows * o.cols;
    let sa: Vec<usize> = broadcast_strides(a.batch, batch)
        .iter()
        .map(|s| s * mat(a))
        .collect();
    let sb: Vec<usize> = broadcast_strides(b.batch, batch)
        .iter()
        .map(|s| s * mat(b))
        .collect();
    let offsets = |mut i: usize| {
        let (mut oa, mut ob) = (0, 0);
        for d in (0..batch.len()).rev() {
            let j = i % batch[d];
            i /= batch[d];
            oa += j * sa[d];
            ob += j * sb[d];
        }
        (oa, ob)
    };
    let work = m.saturating_mul(n).saturating_mul(k);
    let count = out.len() / (m * n);
    let one = |(i, dst): (usize, &mut [MaybeUninit<T>]), threads: usize| {
        let (oa, ob) = offsets(i);
        matrix_product(dst, (a, oa), (b, ob), [m, n, k], threads, bias);
    };
    // Many small matrices: one task per GEMM; a big GEMM: threads inside it.
    let batch_parallel = count >= BATCH_PARALLEL_COUNT
        && work < GEMM_PARALLEL_WORK
        && work.saturating_mul(count) >= BATCH_PARALLEL_WORK;
    // Ask for the thread count only when it matters: it can cost microseconds.
    let threads = if batch_parallel || work >= GEMM_PARALLEL_WORK {
        crate::parallel::num_threads()
    } else {
        1
    };
    if batch_parallel && threads > 1 {
        crate::parallel::for_each_chunk_mut(out, m * n, |i, c| one((i, c), 1));
    } else {
        // `threads` is 1 here unless each GEMM is big enough to share.
        out.chunks_mut(m * n)
            .enumerate()
            .for_each(|c| one(c, threads));
    }
}

/// Writes the start values of one row of a product (or of its first `row.len()` columns):
/// the bias's values, or zeros.
fn fill_bias<T: Float>(row: &mut [MaybeUninit<T>], bias: Option<&[T]>) {
    match bias {
        Some(bias) => {
            for (d, &v) in row.iter_mut().zip(bias) {
                d.write(v);
            }
        }
        None => row.fill(MaybeUninit::new(T::zero())),
    }
}

/// `dst (m×n, row-major) = A @ B (+ bias on every row)`, every element written, for one
/// matrix of each operand, starting at element offsets `oa` and `ob`, on `threads` threads;
/// `k >= 1`, `m, n >= 1`, `bias` `n` values.
fn matrix_product<T: Float>(
    dst: &mut [MaybeUninit<T>],
    (a, oa): (&Operand<T>, usize),
    (b, ob): (&Operand<T>, usize),
    [m, n, k]: [usize; 3],
    threads: usize,
    bias: Option<&[T]>,
) {
    let a_last = oa + (m - 1) * a.row_stride as usize + (k - 1) * a.col_stride as usize;
    let b_last = ob + (k - 1) * b.row_stride as usize + (n - 1) * b.col_stride as usize;
    assert!(dst.len() == m * n && a_last < a.data.len() && b_last < b.data.len());
    let is = |id: TypeId| TypeId::of::<T>() == id;
    if !(is(TypeId::of::<f32>()) || is(TypeId::of::<f64>())) {
        // `Float` is meant for f32/f64 only; any other implementor gets a plain loop.
        for i in 0..m {
            for j in 0..n {
                let sum: T = (0..k)
                    .map(|p| {
                        let x = a.data[oa + i * a.row_stride as usize + p * a.col_stride as usize];
                        let y = b.data[ob + p * b.row_stride as usize + j * b.col_stride as usize];
                        x * y
                    })
                    .sum();
                let start = bias.map_or(T::zero(), |b| b[j]);
                dst[i * n + j] = MaybeUninit::new(start + sum);
            }
        }
        return;
    }
    let block = Block {
        dst: SharedPtr(dst.as_mut_ptr().cast::<T>()),
        n,
        k,
        a: SharedPtr(a.data.as_ptr().wrapping_add(oa).cast_mut()),
        a_strides: (a.row_stride, a.col_stride),
    };
    // Several threads: each computes its own stripe of `dst` with a one-threaded GEMM.
    // Measured on 2 cores, this runs mid-size products 1.3-1.5x faster than gemm's own
    // `Parallelism::Rayon`, which hardly scales when an operand is read transposed
    // (e.g. 128x784 @ (512x784)^T: 720 µs on 1 thread, 720 µs on 2; striped: 370 µs).
    // The stripes split rows unless `dst` is at least twice as wide as it is tall: then
    // the operand every thread packs whole (A) is the smaller one. Rows otherwise, even
    // when a little narrower than wide: a weight's gradient (out × in) is then written in
    // the same row halves the optimizer's blocks update, so it stays in its core's cache
    // (784-512-512-10 MLP at 2 threads: 425-443 → 446-453 steps/s, and 270-284 → 296-309
    // with the cores on two core complexes; 1024² as fast).
    let split_cols = n >= 2 * m;
    let side = if split_cols { n } else { m };
    let stripes = threads.min(side.div_ceil(STRIPE_ALIGN)).max(1);
    let width = side.div_ceil(stripes).next_multiple_of(STRIPE_ALIGN);
    // A transposed B is read from a row-major copy (see `row_major_copy`) that each stripe
    // makes of the columns it needs, on its own thread: no serial copy before the split.
    // (Stripes of rows each copy the whole of B: one copy shared out among the threads took
    // a second parallel region and the other core's cache lines, and ran 768x128 @
    // (128x128)^T 10 % slower than gemm's gather on 2 threads; copying twice costs ~1 %.)
    let copy_b = copies_b(b, [m, n, k]);
    let run = |s: usize| {
        let (lo, hi) = (s * width, ((s + 1) * width).min(side));
        if lo >= hi {
            return;
        }
        let (rows, cols) = if split_cols {
            (0..m, lo..hi)
        } else {
            (lo..hi, 0..n)
        };
        // Each stripe starts its own part from the bias rows (the GEMM then adds to them):
        // on its own thread, and in cache when the GEMM reads it back.
        let fill_stripe_bias = || {
            let Some(bias) = bias else { return };
            for i in rows.clone() {
                // SAFETY: row `i`, columns `cols` of `dst` (m × n) is inside `dst` and in
                // this stripe only (stripes are disjoint), so no other thread touches it.
                let row = unsafe {
                    std::slice::from_raw_parts_mut(
                        block.dst.0.add(i * n + cols.start).cast::<MaybeUninit<T>>(),
                        cols.len(),
                    )
                };
                fill_bias(row, Some(&bias[cols.clone()]));
            }
        };
        // A transposed B is copied and multiplied a chunk of columns at a time (see
        // `COPY_B_CHUNK_BYTES`); read as it is, all the stripe's columns in one GEMM.
        let chunk = if copy_b {
            COPY_B_CHUNK_BYTES / std::mem::size_of::<T>()
        } else {
            cols.len()
        };
        // The width of the chunk starting `rest` columns before the stripe's end: a ragged
        // last chunk joins the one before it (no narrow GEMM at the end).
        let piece = |rest: usize| {
            if rest < chunk + chunk / 4 {
                rest
            } else {
                chunk
            }
        };
        let mut c0 = cols.start;
        while c0 < cols.end {
            let first = c0 == cols.start;
            let cols = c0..c0 + piece(cols.end - c0);
            c0 = cols.end;
            let b_copy = copy_b
                .then(|| row_major_copy(b, ob, cols.clone()))
                .flatten();
            // The bias rows are filled after the first chunk's copy, so they are still in L1
            // when its GEMM starts (Linear(128, 64) on 64 rows: 12.4 µs filled before the
            // copy, 12.1 after).
            if first {
                fill_stripe_bias();
            }
            // B's columns `cols`: the start of the first and the (row, column) strides.
            let b_cols = match &b_copy {
                Some(c) => (c.as_ptr(), (cols.len() as isize, 1)),
                None => (
                    b.data
                        .as_ptr()
                        .wrapping_add(ob + cols.start * b.col_stride as usize),
                    (b.row_stride, b.col_stride),
                ),
            };
            // SAFETY: `T` is f32 or f64 (checked above). The stripes `rows × cols` of
            // distinct `s` are disjoint, and so are the chunks of one stripe, so no two
            // calls write the same element of `dst`, and `dst` is a unique borrow that
            // aliases neither input. The assert above shows every element of A and B read
            // is in bounds (see `Block::product`); a row-major copy of B's columns `cols`
            // holds exactly its `k × cols.len()` elements at strides `(cols.len(), 1)`.
            // With a bias the stripe was initialised before its first GEMM.
            unsafe { block.product(rows.clone(), cols, b_cols, bias.is_some()) }
        }
    };
    if stripes > 1 {
        crate::parallel::for_each(stripes, run);
    } else {
        run(0);
    }
}

/// Whether the GEMMs read the `k × n` operand `b` of an `m × n × k` product from row-major
/// copies (see [`row_major_copy`]): when it is read transposed (a matrix stored row-major,
/// read down its columns, as the weight of `x @ wᵀ`) and gemm would gather it element by
/// element. It does not where `A` is one row or `m · n` ≤ 16 × 16: gemm's matrix-vector and
/// dot-product kernels read such a `B` as the contiguous rows it is stored as.
fn copies_b<T>(b: &Operand<T>, [m, n, k]: [usize; 3]) -> bool {
    let transposed = b.row_stride == 1 && b.col_stride != 1 && n > 1;
    transposed && m >= COPY_B_MIN_ROWS && m * n > 16 * 16 && n * k >= COPY_B_MIN
}

/// From this many elements on, a transposed `B` is copied row-major first (see
/// [`row_major_copy`]). With the register-block transpose the copy pays from a few thousand
/// elements: Linear(64, 128) on 64 rows went from 13.0 to 12.4 µs (1 thread); smaller
/// weights stay in cache while gemm gathers them.
const COPY_B_MIN: usize = 1 << 12;

/// A stripe copies and multiplies the columns of a transposed `B` this many bytes' worth at
/// a time (64 f32 or 32 f64: one register panel of gemm's AVX-512 kernel): the copy of a
/// chunk (64 × 784 f32, 200 KB) is still in L2 when gemm packs it, where a stripe's whole
/// copy (256 × 784) was not. Measured on 2 cores of an AMD EPYC VM (µs, 1 thread / 2):
/// f32 128×784 @ (512×784)ᵀ 1074/546 copied whole, 986/510 in chunks of 64 columns (32:
/// 1000/540, 48: 988/512, 96: 989/516, 128: 1055/530, 256: 1065/543; gathered by gemm
/// 1033-1075/522-604); 128×512 @ (512×512)ᵀ 702/358 whole, 655/335 in chunks (gathered
/// 1100/557-613). f64 128×512 @ (512×512)ᵀ 1486/828 whole, 1394/795 in chunks of 64,
/// 1330/710 of 32, 1380/713 of 16 (gathered 1622/935); 128×784 @ (512×784)ᵀ 2340/1250
/// whole, 2024/1035-1150 in chunks of 32 (gathered 1941/1111-1128: the one shape measured
/// where the copy still costs more than it saves, ~4 % on 1 thread).
const COPY_B_CHUNK_BYTES: usize = 256;

/// From this many rows of `A` on, a transposed `B` is copied. A single row takes gemm's
/// matrix-vector or dot-product path (1×1024 @ (128×1024)ᵀ: 6 µs as it is, 37 µs copied);
/// from two rows on, gemm's gather is what is slow (µs, as it is / copied, 1 thread:
/// 4×1024 @ (128×1024)ᵀ 375/34, 6×512 @ (512×512)ᵀ 540/76, 2×784 @ (512×784)ᵀ 142/85,
/// 32×1024 @ (128×1024)ᵀ 434/99). There is
/// no upper bound: copied in chunks by every stripe, `B` costs less to copy than to gather
/// on 128 rows (the products above) and on the GPT's 768 (768×512 @ (128×512)ᵀ 995/575
/// gathered, 890/456 copied, 1/2 threads; its products with k = 128 within ±2 %).
const COPY_B_MIN_ROWS: usize = 2;

/// Columns `cols` of the matrix of `op` (starting at `off`; `op` read transposed, see
/// [`copies_b`]) copied in row-major order, `k × cols.len()`; `None` when the copy
/// cannot be allocated (gemm then reads the operand as it is).
///
/// Why: gemm computes a row-major `dst` as `dstᵀ = Bᵀ·Aᵀ` and packs `Bᵀ` into column
/// panels. With `B` transposed, those panels gather elements `k` apart, one scalar load and
/// store each: ~3 ns per element for a Linear(1024, 128) weight (0.4 ms on every forward,
/// 2/3 of that Linear's time), where a power-of-two row length maps the gathered rows onto
/// a few cache sets. The copy ([`transpose_into`]'s register blocks, 0.1-0.4 ns per
/// element) costs a fraction of that, and gemm then packs the copy's panels from contiguous
/// columns, or reads them as they are.
fn row_major_copy<T: Float>(
    op: &Operand<T>,
    off: usize,
    cols: std::ops::Range<usize>,
) -> Option<Vec<T>> {
    let (k, width, cs) = (op.rows, cols.len(), op.col_stride as usize);
    let len = k * width;
    let mut out = try_with_capacity(len).ok()?;
    // In memory the operand is its transpose, a row-major `n × k` matrix at row stride
    // `cs`: its rows `cols`, transposed, are the copy.
    transpose_into(
        &op.data[off + cols.start * cs..],
        [width, k],
        cs,
        &mut out.spare_capacity_mut()[..len],
    );
    // SAFETY: `transpose_into` wrote all `len` elements of the reserved capacity.
    unsafe { out.set_len(len) };
    Some(out)
}

/// Stripes start at multiples of this many rows or columns (a multiple of the GEMM
/// kernels' register tiles, so no stripe ends in a ragged tile it need not have).
const STRIPE_ALIGN: usize = 16;

/// A raw pointer that may cross to the pool's threads: the stripes it is used for
/// are disjoint (see [`matrix_product`]).
#[derive(Clone, Copy)]
struct SharedPtr<T>(*mut T);
// SAFETY: only used for f32/f64 data, read by all stripes and written in disjoint stripes.
unsafe impl<T> Send for SharedPtr<T> {}
unsafe impl<T> Sync for SharedPtr<T> {}

/// One product `dst (m×n, row-major) = A (m×k) @ B (k×n)` as raw parts, with the
/// (row, column) element strides of `A`; `B` is given per part (see [`Block::product`]).
struct Block<T> {
    dst: SharedPtr<T>,
    n: usize,
    k: usize,
    a: SharedPtr<T>,
    a_strides: (isize, isize),
}

impl<T: Float> Block<T> {
    /// Computes the `rows × cols` part of `dst` on this thread from `b_cols`: where
    /// column `cols.start` of `B` starts, and `B`'s (row, column) strides there.
    ///
    /// # Safety
    /// `T` must be f32 or f64; `rows` and `cols` must lie within `dst`'s `m × n`, every
    /// element of `A` and of `B`'s `k × cols.len()` columns at `b_cols` must be readable,
    /// no other thread may touch this part of `dst` meanwhile, and with `accumulate` that
    /// part must be initialised.
    unsafe fn product(
        &self,
        rows: std::ops::Range<usize>,
        cols: std::ops::Range<usize>,
        (b, (brs, bcs)): (*const T, (isize, isize)),
        accumulate: bool,
    ) {
        let (ars, acs) = self.a_strides;
        let (i0, j0) = (rows.start, cols.start);
        // `read_dst = false`: `dst`'s old (possibly uninitialised) contents are never
        // read, only written (alpha is then ignored; beta = 1 scales lhs×rhs). With
        // `accumulate`, dst = 1·dst + 1·lhs×rhs.
        gemm::gemm(
            rows.len(),
            cols.len(),
            self.k,
            self.dst.0.add(i0 * self.n + j0),
            1,
            self.n as isize,
            accumulate,
            self.a.0.offset(i0 as isize * ars),
            acs,
            ars,
            b,
            bcs,
            brs,
            if accumulate { T::one() } else { T::zero() },
            T::one(),
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}

#[path = "matmul_by_features.rs"]
mod by_features;
pub use by_features::linear_grads_by_features;

#[cfg(test)]
#[path = "matmul_tests.rs"]
mod tests;
