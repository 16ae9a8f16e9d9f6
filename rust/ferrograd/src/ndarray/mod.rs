//! `NdArray<T>`: one flat row-major `Vec<T>` plus its shape, as in the article.
//!
//! Storage operations (reshape, permute, broadcast, gather, concatenate) work for any
//! `T: Clone`, so `NdArray<Value>` exists; the math lives in the sibling modules and
//! needs `T: Float`.

pub mod assign;
pub mod attention;
pub mod element;
pub mod elementwise;
mod float;
pub mod index;
pub mod index_put;
mod matmul;
mod reduce;
pub(crate) mod transpose;

pub(crate) use float::exp_f32_core;
pub use float::Float;
pub use index::IndexItem;
pub(crate) use matmul::GEMM_PARALLEL_WORK;
pub use matmul::{linear_grads_by_features, matmul_flat};
pub(crate) use reduce::lane_sum;
pub use reduce::ReduceOp;

use crate::shape::{broadcast_strides, checked_size, fmt_shape, strides_of};
use crate::{Error, Result};

/// An n-dimensional array: a contiguous row-major `data` vector and its `shape`.
#[derive(Clone, Debug, PartialEq)]
pub struct NdArray<T> {
    shape: Vec<usize>,
    data: Vec<T>,
}

/// Allocates a vector of `n` copies of `value`, reporting failure instead of aborting.
pub fn try_filled<T: Clone>(n: usize, value: T) -> Result<Vec<T>> {
    let mut v = try_with_capacity(n)?;
    v.resize(n, value);
    Ok(v)
}

/// A copy of `src`, reporting failure instead of aborting. A large copy is split over the
/// pool's threads: copied by one thread, its lines would all pass through that core, and each
/// line the other core held (the previous step's batch, say, which both threads read) must be
/// taken from it first, one at a time.
pub fn try_copied<T: Copy + Send + Sync>(src: &[T]) -> Result<Vec<T>> {
    let n = src.len();
    let mut v = try_with_capacity(n)?;
    if !crate::parallel::should_split(n) {
        v.extend_from_slice(src);
        return Ok(v);
    }
    let threads = crate::parallel::num_threads();
    let chunk = n.div_ceil(threads);
    crate::parallel::for_each_chunk_mut(&mut v.spare_capacity_mut()[..n], chunk, |i, dst| {
        for (d, &s) in dst.iter_mut().zip(&src[i * chunk..]) {
            d.write(s);
        }
    });
    // SAFETY: the chunks cover `0..n`, and every element of each was written above.
    unsafe { v.set_len(n) };
    Ok(v)
}

/// `n` zeros, reporting failure instead of aborting. For f32/f64 the memory comes from
/// the allocator already zeroed (`calloc`: fresh pages from the OS are zero for free), so a
/// large output is not written twice, and its pages are first touched by the kernel that
/// fills it (on its threads), not by a serial zeroing pass.
pub fn try_zeroed<T: Float>(n: usize) -> Result<Vec<T>> {
    use std::any::TypeId;
    let id = TypeId::of::<T>();
    if n == 0 || !(id == TypeId::of::<f32>() || id == TypeId::of::<f64>()) {
        return try_filled(n, T::zero());
    }
    let err = || {
        Error::Memory(format!(
            "cannot allocate {n} elements of {} bytes",
            std::mem::size_of::<T>()
        ))
    };
    let layout = std::alloc::Layout::array::<T>(n).map_err(|_| err())?;
    // SAFETY: `layout` has non-zero size (n > 0, and f32/f64 are not zero-sized). The
    // pointer, if non-null, was allocated by the global allocator with exactly this layout
    // (size n·size_of::<T>, T's alignment), as `Vec::from_raw_parts` requires with
    // capacity n; all n elements are initialised, because T is f32 or f64 (checked above),
    // whose all-zero bit pattern is the value +0.0.
    unsafe {
        let ptr = std::alloc::alloc_zeroed(layout).cast::<T>();
        if ptr.is_null() {
            return Err(err());
        }
        let v = Vec::from_raw_parts(ptr, n, n);
        advise_huge_pages(&v);
        Ok(v)
    }
}

/// From this many bytes on, a new buffer asks for transparent huge pages.
const HUGE_PAGE_BYTES: usize = 4 << 20;

/// Asks Linux to back a large, not yet touched buffer with 2 MiB pages (as NumPy does for
/// its data): where THP is in `madvise` mode, first-touching a 64 MB output otherwise costs
/// 16K page faults, more than the kernel that fills it. Only the page-aligned interior of
/// the buffer is advised; the advice is a hint, so failure is ignored.
fn advise_huge_pages<T>(v: &Vec<T>) {
    let bytes = v.capacity() * std::mem::size_of::<T>();
    if bytes < HUGE_PAGE_BYTES {
        return;
    }
    #[cfg(target_os = "linux")]
    {
        const PAGE: usize = 4096;
        let start = v.as_ptr() as usize;
        let aligned = start.next_multiple_of(PAGE);
        let len = (start + bytes).saturating_sub(aligned) / PAGE * PAGE;
        // SAFETY: [aligned, aligned + len) lies inside the allocation `v` owns, and
        // MADV_HUGEPAGE changes no contents or permissions, only how pages are backed.
        unsafe {
            libc::madvise(aligned as *mut libc::c_void, len, libc::MADV_HUGEPAGE);
        }
    }
}

/// Asks glibc's allocator to keep freed memory for reuse instead of handing it back to the
/// kernel after every large free. By default glibc serves blocks above a threshold (128 KiB,
/// raised up to 32 MiB as such blocks are freed) with their own mappings and trims the heap
/// whenever its free top exceeds twice that, so a training loop, which frees its activations
/// and gradients every step, page-faults them in again every step: ~2.7K faults (11 MB) per
/// nanoGPT-sized GPT step, about a tenth of its CPU time, and a third of a digits-CNN step
/// (80-90 steps/s, 130-139 with this). With mappings only from 32 MiB and
/// trimming only above 512 MiB of free top, steps reuse the same pages (peak RSS unchanged;
/// the memory of the largest step stays with the process until it exits). Does nothing
/// where the user tuned glibc's allocator already (`MALLOC_*_` or `GLIBC_TUNABLES`), or on
/// other C libraries. Called once when the Python module loads.
pub fn keep_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        let tuned = std::env::vars_os().any(|(k, _)| {
            let k = k.to_string_lossy();
            k == "GLIBC_TUNABLES" || (k.starts_with("MALLOC_") && k.ends_with('_'))
        });
        if tuned {
            return;
        }
        // SAFETY: mallopt only changes allocator parameters; both values are valid for it.
        unsafe {
            libc::mallopt(libc::M_MMAP_THRESHOLD, 32 << 20);
            libc::mallopt(libc::M_TRIM_THRESHOLD, 512 << 20);
        }
    }
}

/// Reserves room for `n` elements, reporting failure instead of aborting.
pub fn try_with_capacity<T>(n: usize) -> Result<Vec<T>> {
    let mut v = Vec::new();
    v.try_reserve_exact(n).map_err(|_| {
        Error::Memory(format!(
            "cannot allocate {n} elements of {} bytes",
            std::mem::size_of::<T>()
        ))
    })?;
    advise_huge_pages(&v);
    Ok(v)
}

impl<T: Clone> NdArray<T> {
    /// Wraps `data` with `shape`; the lengths must agree.
    pub fn from_vec(data: Vec<T>, shape: &[usize]) -> Result<Self> {
        let n = checked_size(shape)?;
        if n != data.len() {
            return Err(Error::Shape(format!(
                "NdArray: {} values do not fill shape {} ({} elements)",
                data.len(),
                fmt_shape(shape),
                n
            )));
        }
        Ok(Self {
            shape: shape.to_vec(),
            data,
        })
    }

    /// A 0-d array holding one value.
    pub fn scalar(value: T) -> Self {
        Self {
            shape: vec![],
            data: vec![value],
        }
    }

    /// An array of `shape` filled with `value` (a `Memory` error if it cannot be allocated).
    pub fn full(shape: &[usize], value: T) -> Result<Self> {
        let n = checked_size(shape)?;
        Ok(Self {
            shape: shape.to_vec(),
            data: try_filled(n, value)?,
        })
    }

    /// The dimensions, outermost first.
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// The number of dimensions.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The number of elements.
    pub fn size(&self) -> usize {
        self.data.len()
    }

    /// The elements in row-major order.
    pub fn data(&self) -> &[T] {
        &self.data
    }

    /// The elements in row-major order, writable.
    pub fn data_mut(&mut self) -> &mut [T] {
        &mut self.data
    }

    /// Takes the flat data out.
    pub fn into_vec(self) -> Vec<T> {
        self.data
    }

    /// The one element of a one-element array.
    pub fn item(&self) -> Result<T> {
        match self.data.as_slice() {
            [x] => Ok(x.clone()),
            _ => Err(Error::Value(format!(
                "item: only one-element arrays convert to a scalar, got shape {}",
                fmt_shape(&self.shape)
            ))),
        }
    }

    /// Applies `f` to every element.
    pub fn map<U, F: Fn(&T) -> U>(&self, f: F) -> NdArray<U> {
        NdArray {
            shape: self.shape.clone(),
            data: self.data.iter().map(f).collect(),
        }
    }

    /// Combines two arrays elementwise with NumPy broadcasting.
    pub fn zip_with<U: Clone, V, F: Fn(&T, &U) -> V>(
        &self,
        op: &str,
        other: &NdArray<U>,
        f: F,
    ) -> Result<NdArray<V>> {
        let shape = crate::shape::broadcast_shapes(op, &self.shape, &other.shape)?;
        let n = checked_size(&shape)?;
        let mut out = try_with_capacity(n)?;
        if self.shape == other.shape {
            out.extend(self.data.iter().zip(&other.data).map(|(a, b)| f(a, b)));
        } else {
            let sa = broadcast_strides(&self.shape, &shape);
            let sb = broadcast_strides(&other.shape, &shape);
            for_each_offset2(&shape, &sa, &sb, |ia, ib| {
                out.push(f(&self.data[ia], &other.data[ib]))
            });
        }
        Ok(NdArray { shape, data: out })
    }

    /// The same data under a new shape; one dimension may be `-1` (inferred).
    pub fn reshape(&self, shape: &[isize]) -> Result<Self> {
        let new_shape = infer_shape(shape, self.size(), &self.shape)?;
        Ok(Self {
            shape: new_shape,
            data: self.data.clone(),
        })
    }

    /// Reshapes in place to a shape of the same size (no `-1`).
    pub fn into_shape(self, shape: &[usize]) -> Result<Self> {
        Self::from_vec(self.data, shape)
    }

    /// Reorders the axes: output axis `i` is input axis `perm[i]`.
    pub fn permute(&self, perm: &[usize]) -> Result<Self> {
        let nd = self.ndim();
        let mut seen = vec![false; nd];
        if perm.len() != nd
            || perm
                .iter()
                .any(|&p| p >= nd || std::mem::replace(&mut seen[p], true))
        {
            return Err(Error::Axis(format!(
                "permute: {perm:?} is not a permutation of the {nd} axes of shape {}",
                fmt_shape(&self.shape)
            )));
        }
        let shape: Vec<usize> = perm.iter().map(|&p| self.shape[p]).collect();
        let own = strides_of(&self.shape);
        let strides: Vec<usize> = perm.iter().map(|&p| own[p]).collect();
        Ok(Self {
            data: self.gather_strided(&shape, &strides, 0)?,
            shape,
        })
    }

    /// Swaps two (already normalised) axes.
    pub fn swap_axes(&self, a: usize, b: usize) -> Result<Self> {
        let mut perm: Vec<usize> = (0..self.ndim()).collect();
        if a >= perm.len() || b >= perm.len() {
            return Err(Error::Axis(format!(
                "transpose: axes ({a}, {b}) out of range for shape {}",
                fmt_shape(&self.shape)
            )));
        }
        perm.swap(a, b);
        self.permute(&perm)
    }

    /// Materialises the broadcast of this array to `shape`.
    pub fn broadcast_to(&self, shape: &[usize]) -> Result<Self> {
        let target = crate::shape::broadcast_shapes("broadcast_to", &self.shape, shape)?;
        if target != shape {
            return Err(Error::Shape(format!(
                "broadcast_to: cannot broadcast shape {} to {}",
                fmt_shape(&self.shape),
                fmt_shape(shape)
            )));
        }
        checked_size(shape)?;
        let strides = broadcast_strides(&self.shape, shape);
        Ok(Self {
            data: self.gather_strided(shape, &strides, 0)?,
            shape: shape.to_vec(),
        })
    }

    /// Reads the elements at the given flat offsets into an array of `shape`.
    pub fn gather(&self, offsets: &[usize], shape: &[usize]) -> Self {
        Self {
            shape: shape.to_vec(),
            data: offsets.iter().map(|&i| self.data[i].clone()).collect(),
        }
    }

    /// Reads a strided view (in elements, from `start`) into a new contiguous vector.
    fn gather_strided(&self, shape: &[usize], strides: &[usize], start: usize) -> Result<Vec<T>> {
        let mut out = try_with_capacity(checked_size(shape)?)?;
        let nd = shape.len();
        if nd > 0 && strides[nd - 1] == 1 {
            // Contiguous runs along the last axis (a transpose of leading axes, a narrow):
            // copied whole instead of element by element.
            let run = shape[nd - 1];
            if run > 0 {
                for_each_offset(&shape[..nd - 1], &strides[..nd - 1], start, |i| {
                    out.extend_from_slice(&self.data[i..i + run])
                });
            }
            return Ok(out);
        }
        let repeated = strides.iter().rev().take_while(|&&s| s == 0).count();
        if repeated > 0 {
            // Trailing axes that repeat one element (a broadcast: `sum`'s gradient spread
            // back over its input) are filled as one run, not pushed element by element
            // (a 0-d to 65K elements: 72 µs pushed).
            let lead = nd - repeated;
            let run = shape[lead..].iter().product();
            for_each_offset(&shape[..lead], &strides[..lead], start, |i| {
                out.extend(std::iter::repeat_n(self.data[i].clone(), run))
            });
            return Ok(out);
        }
        for_each_offset(shape, strides, start, |i| out.push(self.data[i].clone()));
        Ok(out)
    }

    /// Joins arrays along an existing axis; all other dimensions must agree.
    pub fn concatenate(arrays: &[&Self], axis: isize) -> Result<Self> {
        let first = arrays
            .first()
            .ok_or_else(|| Error::Value("cat: expected a non-empty list of arrays".into()))?;
        let ax = crate::shape::normalize_axis("cat", axis, first.ndim().max(1))?;
        if first.ndim() == 0 {
            return Err(Error::Shape(
                "cat: zero-dimensional arrays cannot be concatenated".into(),
            ));
        }
        let mut shape = first.shape.clone();
        shape[ax] = 0;
        for a in arrays {
            let ok = a.ndim() == first.ndim()
                && a.shape
                    .iter()
                    .zip(&first.shape)
                    .enumerate()
                    .all(|(i, (x, y))| i == ax || x == y);
            if !ok {
                return Err(Error::Shape(format!(
                    "cat: shapes {} and {} differ outside axis {ax}",
                    fmt_shape(&first.shape),
                    fmt_shape(&a.shape)
                )));
            }
            shape[ax] += a.shape[ax];
        }
        let size = checked_size(&shape)?;
        if size == 0 {
            // Zero-size results may still have huge other axes ((10¹², 0)): don't walk them.
            return Ok(Self {
                shape,
                data: Vec::new(),
            });
        }
        let outer: usize = shape[..ax].iter().product();
        let inner: usize = shape[ax + 1..].iter().product();
        let mut data = try_with_capacity(size)?;
        for o in 0..outer {
            for a in arrays {
                let chunk = a.shape[ax] * inner;
                data.extend_from_slice(&a.data[o * chunk..(o + 1) * chunk]);
            }
        }
        Ok(Self { shape, data })
    }

    /// Joins arrays of one shape along a new axis.
    pub fn stack(arrays: &[&Self], axis: isize) -> Result<Self> {
        let first = arrays
            .first()
            .ok_or_else(|| Error::Value("stack: expected a non-empty list of arrays".into()))?;
        let ax = crate::shape::normalize_axis("stack", axis, first.ndim() + 1)?;
        let mut expanded = Vec::with_capacity(arrays.len());
        for a in arrays {
            if a.shape != first.shape {
                return Err(Error::Shape(format!(
                    "stack: all arrays must have one shape, got {} and {}",
                    fmt_shape(&first.shape),
                    fmt_shape(&a.shape)
                )));
            }
            let mut s = a.shape.clone();
            s.insert(ax, 1);
            expanded.push(Self {
                shape: s,
                data: a.data.clone(),
            });
        }
        let refs: Vec<&Self> = expanded.iter().collect();
        Self::concatenate(&refs, ax as isize)
    }
}

/// Resolves a requested shape with at most one `-1` against `size` elements.
pub fn infer_shape(shape: &[isize], size: usize, from: &[usize]) -> Result<Vec<usize>> {
    let bad = || {
        Error::Shape(format!(
            "reshape: cannot reshape array of shape {} ({size} elements) into shape {:?}",
            fmt_shape(from),
            shape
        ))
    };
    let mut unknown = None;
    let mut known = 1usize;
    for (i, &d) in shape.iter().enumerate() {
        match d {
            -1 if unknown.is_none() => unknown = Some(i),
            -1 => return Err(Error::Value("reshape: only one dimension can be -1".into())),
            d if d < 0 => {
                return Err(Error::Value(format!(
                    "reshape: negative dimension {d} in {shape:?}"
                )))
            }
            d => known = known.checked_mul(d as usize).ok_or_else(bad)?,
        }
    }
    let mut out: Vec<usize> = shape.iter().map(|&d| d.max(0) as usize).collect();
    if let Some(i) = unknown {
        if known == 0 || size % known != 0 {
            return Err(bad());
        }
        out[i] = size / known;
    } else if known != size {
        return Err(bad());
    }
    // A zero-size array may not take dimensions no array could have: (0, 2**62).
    crate::shape::check_addressable(&out)?;
    Ok(out)
}

/// Calls `f` with the flat offset of every element of a strided view, in row-major order.
pub fn for_each_offset(shape: &[usize], strides: &[usize], start: usize, mut f: impl FnMut(usize)) {
    if shape.contains(&0) {
        return;
    }
    let nd = shape.len();
    if nd == 0 {
        f(start);
        return;
    }
    let (last_n, last_s) = (shape[nd - 1], strides[nd - 1]);
    let mut idx = vec![0usize; nd];
    let mut base = start;
    loop {
        for k in 0..last_n {
            f(base + k * last_s);
        }
        // Advance the outer indices like an odometer.
        let mut d = nd - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            base += strides[d];
            if idx[d] < shape[d] {
                break;
            }
            base -= strides[d] * shape[d];
            idx[d] = 0;
        }
    }
}

/// Like [`for_each_offset`] for two strided views of one shape, walked together.
pub fn for_each_offset2(
    shape: &[usize],
    sa: &[usize],
    sb: &[usize],
    mut f: impl FnMut(usize, usize),
) {
    if shape.contains(&0) {
        return;
    }
    let nd = shape.len();
    if nd == 0 {
        f(0, 0);
        return;
    }
    let (n, la, lb) = (shape[nd - 1], sa[nd - 1], sb[nd - 1]);
    let mut idx = vec![0usize; nd];
    let (mut a, mut b) = (0usize, 0usize);
    loop {
        for k in 0..n {
            f(a + k * la, b + k * lb);
        }
        let mut d = nd - 1;
        loop {
            if d == 0 {
                return;
            }
            d -= 1;
            idx[d] += 1;
            a += sa[d];
            b += sb[d];
            if idx[d] < shape[d] {
                break;
            }
            a -= sa[d] * shape[d];
            b -= sb[d] * shape[d];
            idx[d] = 0;
        }
    }
}

impl<T: Copy + Send + Sync> NdArray<T> {
    /// A copy, made on the pool's threads when large (see [`try_copied`]); an impossible
    /// allocation is an error, not an abort.
    pub fn try_clone(&self) -> Result<Self> {
        Ok(Self {
            shape: self.shape.clone(),
            data: try_copied(&self.data)?,
        })
    }
}

impl<T: Copy + 'static> NdArray<T> {
    /// [`permute`](Self::permute) for plain-data elements: a swap of the last two axes (a
    /// batch of matrix transposes, as `t.T` or `transpose(-2, -1)`) moves register blocks
    /// instead of one element at a time.
    pub fn permute_copy(&self, perm: &[usize]) -> Result<Self> {
        let nd = self.ndim();
        let swaps_last_two = nd >= 2
            && perm.len() == nd
            && perm[..nd - 2].iter().enumerate().all(|(i, &p)| i == p)
            && perm[nd - 2..] == [nd - 1, nd - 2];
        if !swaps_last_two {
            return self.permute(perm);
        }
        let (rows, cols) = (self.shape[nd - 2], self.shape[nd - 1]);
        let mut shape = self.shape.clone();
        shape.swap(nd - 2, nd - 1);
        let len = self.data.len();
        let mut out = try_with_capacity(len)?;
        let matrix = rows * cols;
        if matrix > 0 {
            let dst = &mut out.spare_capacity_mut()[..len];
            for (src, dst) in self
                .data
                .chunks_exact(matrix)
                .zip(dst.chunks_exact_mut(matrix))
            {
                transpose::transpose_into(src, [rows, cols], cols, dst);
            }
        }
        // SAFETY: the matrices cover all `len` elements, each written by `transpose_into`
        // (with no matrix, `len` is 0).
        unsafe { out.set_len(len) };
        Ok(Self { shape, data: out })
    }
}

#[cfg(test)]
mod tests;
