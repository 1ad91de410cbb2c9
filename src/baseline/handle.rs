//! Exclusive per-CPU handles on a [`SpinHeap`], for parity with the
//! lock-free heap's API (the baseline keeps nothing per CPU).

use core::ptr::NonNull;

use super::SpinHeap;
use crate::sync::Ordering;
use crate::FreeError;

/// One CPU's exclusive handle on a [`SpinHeap`]; dropping it releases the
/// slot. The baseline keeps no per-CPU state, so its operations are the heap's.
///
/// # Example
///
/// ```
/// # use magbuddy::baseline::{LockMode, SpinHeap};
/// # let mut ram = vec![0u8; 1 << 20];
/// # // SAFETY: `ram` is ours and outlives the heap's use.
/// # let heap = unsafe { SpinHeap::init(ram.as_mut_ptr(), ram.len(), 1, LockMode::Spin) }.unwrap();
/// let h = heap.handle_for(0).unwrap();
/// assert_eq!(h.index(), 0);
/// assert!(heap.handle().is_none()); // the one slot is taken
/// let p = h.alloc(4096).unwrap();
/// // SAFETY: `p` came from this heap and is not used afterwards.
/// unsafe { h.try_free(p.as_ptr()) }.unwrap();
/// ```
pub struct SpinHandle<'a> {
    pub(super) heap: &'a SpinHeap,
    pub(super) slot: usize,
}

impl SpinHandle<'_> {
    /// Which of the heap's `cpus` slots this handle holds.
    ///
    /// See the example on [`SpinHandle`].
    pub fn index(&self) -> usize {
        self.slot
    }

    /// As [`SpinHeap::alloc`].
    ///
    /// See the example on [`SpinHandle`].
    #[inline]
    pub fn alloc(&self, size: usize) -> Option<NonNull<u8>> {
        self.heap.alloc(size)
    }

    /// As [`SpinHeap::free`].
    ///
    /// # Safety
    ///
    /// - As [`SpinHeap::free`].
    ///
    /// See the example on [`SpinHandle`].
    #[inline]
    pub unsafe fn free(&self, ptr: *mut u8) {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.heap.free(ptr) }
    }

    /// As [`SpinHeap::try_free`].
    ///
    /// # Safety
    ///
    /// - As [`SpinHeap::try_free`].
    ///
    /// See the example on [`SpinHandle`].
    #[inline]
    pub unsafe fn try_free(&self, ptr: *mut u8) -> Result<(), FreeError> {
        // SAFETY: the caller's promise, passed on.
        unsafe { self.heap.try_free(ptr) }
    }
}

impl Drop for SpinHandle<'_> {
    fn drop(&mut self) {
        // Release: our use of the slot happens before the next claimant's
        // Acquire CAS in `SpinHeap::handle`.
        self.heap.handles[self.slot].store(false, Ordering::Release);
    }
}
