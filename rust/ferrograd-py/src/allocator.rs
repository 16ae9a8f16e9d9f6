//! The extension's allocator: mimalloc for small blocks, the system allocator for large ones.
//!
//! A training step builds and frees a graph: nodes, shapes, closures and small arrays, dozens
//! of blocks per op. glibc spent ~5 % of the digits MLP's step in malloc/free (and in
//! consolidating its fast bins before each array-sized request); mimalloc's per-thread free
//! lists make the step ~5 % faster (86.5 → 82.2 µs). Large arrays stay with glibc, which
//! `ferrograd::ndarray::keep_freed_memory` tells to keep freed memory: mimalloc returns
//! freed megabyte blocks to the OS after 10 ms, and a step that frees and reallocates them
//! every few milliseconds then page-faults them back in (the large MLP fell from ~370 to
//! ~200 steps/s with mimalloc for every size).

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks up to this size go to mimalloc: every buffer of the digits MLP, and the nodes and
/// small arrays of any model.
const SMALL: usize = 64 << 10;

/// The global allocator of the extension (installed in `lib.rs`).
pub struct SmallFast;

fn small(layout: &Layout) -> bool {
    layout.size() <= SMALL
}

// SAFETY: every block is freed by the allocator that made it, chosen by its size, which
// `dealloc` and `realloc` are given unchanged.
unsafe impl GlobalAlloc for SmallFast {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if small(&layout) {
            unsafe { mimalloc::MiMalloc.alloc(layout) }
        } else {
            unsafe { System.alloc(layout) }
        }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        if small(&layout) {
            unsafe { mimalloc::MiMalloc.alloc_zeroed(layout) }
        } else {
            unsafe { System.alloc_zeroed(layout) }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if small(&layout) {
            unsafe { mimalloc::MiMalloc.dealloc(ptr, layout) }
        } else {
            unsafe { System.dealloc(ptr, layout) }
        }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let was_small = small(&layout);
        if was_small == (new_size <= SMALL) {
            return if was_small {
                unsafe { mimalloc::MiMalloc.realloc(ptr, layout, new_size) }
            } else {
                unsafe { System.realloc(ptr, layout, new_size) }
            };
        }
        // SAFETY: the caller guarantees `new_size` with this alignment is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        let new = unsafe { self.alloc(new_layout) };
        if !new.is_null() {
            unsafe {
                std::ptr::copy_nonoverlapping(ptr, new, layout.size().min(new_size));
                self.dealloc(ptr, layout);
            }
        }
        new
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn realloc_keeps_the_bytes_when_a_block_crosses_the_size_line() {
        let align = 8;
        let sizes = [16, SMALL, SMALL + 1, 4 * SMALL, SMALL - 8, 24];
        let layout = Layout::from_size_align(sizes[0], align).unwrap();
        // SAFETY: each block is used within its size and freed once with its last layout.
        unsafe {
            let mut ptr = SmallFast.alloc(layout);
            let mut size = sizes[0];
            for (i, byte) in (0..size).zip(0u8..) {
                *ptr.add(i) = byte;
            }
            for &new_size in &sizes[1..] {
                ptr =
                    SmallFast.realloc(ptr, Layout::from_size_align(size, align).unwrap(), new_size);
                assert!(!ptr.is_null());
                for (i, byte) in (0..sizes[0]).zip(0u8..) {
                    assert_eq!(
                        *ptr.add(i),
                        byte,
                        "byte {i} after realloc {size} -> {new_size}"
                    );
                }
                size = new_size;
            }
            SmallFast.dealloc(ptr, Layout::from_size_align(size, align).unwrap());
        }
    }
}
