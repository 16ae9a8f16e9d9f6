//! `Storage`: the array behind one or more tensors, with a version counter of its writes.
//!
//! Every alias of an array (`.data`, `detach()`, a `.grad` shown to Python) shares one
//! `Storage`. Ops that keep an array for their backward rule record its version, and the
//! rule checks it before reading (see `BackwardCtx`), so a write in between is an error
//! instead of a silently wrong gradient. The only way to get mutable access is
//! [`Storage::write`], whose guard bumps the version on the first mutable use: no write path
//! can forget to count.

use std::ops::{Deref, DerefMut};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::dynarray::DynArray;

/// An array shared between tensors, counting the writes made to it.
pub struct Storage {
    array: RwLock<DynArray>,
    version: AtomicU64,
}

impl Storage {
    /// A new storage holding `array`, at version 0.
    pub fn new(array: DynArray) -> Arc<Storage> {
        Arc::new(Storage {
            array: RwLock::new(array),
            version: AtomicU64::new(0),
        })
    }

    /// Reads the array (shared lock). A lock poisoned by a panicking thread is recovered:
    /// every write replaces or updates whole elements, so the array is never half-made.
    pub fn read(&self) -> RwLockReadGuard<'_, DynArray> {
        self.array.read().unwrap_or_else(|e| e.into_inner())
    }

    /// Reads the array if no writer holds or awaits it, without waiting (`None` then): for a
    /// thread that already holds another storage's write lock, which must not wait here.
    pub fn try_read(&self) -> Option<RwLockReadGuard<'_, DynArray>> {
        match self.array.try_read() {
            Ok(guard) => Some(guard),
            Err(std::sync::TryLockError::Poisoned(e)) => Some(e.into_inner()),
            Err(std::sync::TryLockError::WouldBlock) => None,
        }
    }

    /// Locks the array for writing; the first mutable access through the guard bumps the
    /// version (a guard only read from, e.g. to validate before failing, changes nothing).
    pub fn write(&self) -> WriteGuard<'_> {
        WriteGuard {
            guard: self.array.write().unwrap_or_else(|e| e.into_inner()),
            version: &self.version,
            bumped: false,
        }
    }

    /// How many writes the array has seen. Changes only under the write lock, so it is
    /// stable while a read guard is held.
    pub fn version(&self) -> u64 {
        self.version.load(Ordering::Acquire)
    }
}

impl std::fmt::Debug for Storage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Storage")
            .field("array", &*self.read())
            .field("version", &self.version())
            .finish()
    }
}

/// Exclusive access to a storage's array; counts one write once mutably dereferenced.
pub struct WriteGuard<'a> {
    guard: RwLockWriteGuard<'a, DynArray>,
    version: &'a AtomicU64,
    bumped: bool,
}

impl Deref for WriteGuard<'_> {
    type Target = DynArray;

    fn deref(&self) -> &DynArray {
        &self.guard
    }
}

impl DerefMut for WriteGuard<'_> {
    fn deref_mut(&mut self) -> &mut DynArray {
        if !self.bumped {
            // Under the write lock: readers see the new version together with the new data.
            self.version.fetch_add(1, Ordering::AcqRel);
            self.bumped = true;
        }
        &mut self.guard
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::DType;

    fn storage() -> Arc<Storage> {
        Storage::new(DynArray::full(&[2], 1.0, DType::F32).unwrap())
    }

    #[test]
    fn a_new_storage_is_at_version_zero() {
        assert_eq!(storage().version(), 0);
    }

    #[test]
    fn each_write_guard_used_mutably_counts_one_write() {
        let s = storage();
        for expected in 1..=3 {
            let mut g = s.write();
            g.add_assign(&DynArray::full(&[2], 1.0, DType::F32).unwrap())
                .unwrap();
            // Several mutable uses under one guard are one write.
            *g = g.clone();
            drop(g);
            assert_eq!(s.version(), expected);
        }
        assert_eq!(s.read().to_f64_vec(), vec![4.0, 4.0]);
    }

    #[test]
    fn a_write_guard_only_read_from_counts_no_write() {
        let s = storage();
        let g = s.write();
        assert_eq!(g.shape(), &[2]);
        drop(g);
        assert_eq!(s.version(), 0);
    }
}
