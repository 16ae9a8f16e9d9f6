//! The extension's allocator: mimalloc for small blocks, the system allocator for arrays.

use std::alloc::{GlobalAlloc, Layout, System};

/// Blocks up to this size go to mimalloc.
const SMALL: usize = 64 << 10;

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
                ptr = SmallFast.realloc(ptr, Layout::from_size_align(size, align).unwrap(), new_size);
                assert!(!ptr.is_null());
                for (i, byte) in (0..sizes[0]).zip(0u8..) {
                    assert_eq!(*ptr.add(i), byte, "byte {i} after realloc {size} -> {new_size}");
                }
                size = new_size;
            }
            SmallFast.dealloc(ptr, Layout::from_size_align(size, align).unwrap());
        }
    }
}
