//! Test support: page-aligned memory regions that free themselves.
#![allow(dead_code)]

use std::alloc::{alloc, alloc_zeroed, dealloc, Layout};

/// A zero-initialised-or-not block of memory from the system allocator,
/// aligned to `align`; large ones are mapped lazily by the OS.
pub struct Mem {
    ptr: *mut u8,
    layout: Layout,
}

impl Mem {
    pub fn new(len: usize) -> Self {
        Self::aligned(len, 4096)
    }

    pub fn aligned(len: usize, align: usize) -> Self {
        let layout = Layout::from_size_align(len, align).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc(layout) };
        assert!(!ptr.is_null(), "test region of {len} bytes");
        Self { ptr, layout }
    }

    /// Zero-filled memory (large ones come as fresh zero pages from the OS).
    pub fn zeroed(len: usize, align: usize) -> Self {
        let layout = Layout::from_size_align(len, align).unwrap();
        // SAFETY: non-zero size.
        let ptr = unsafe { alloc_zeroed(layout) };
        assert!(!ptr.is_null(), "test region of {len} bytes");
        Self { ptr, layout }
    }

    pub fn ptr(&self) -> *mut u8 {
        self.ptr
    }

    pub fn len(&self) -> usize {
        self.layout.size()
    }

    pub fn range(&self) -> std::ops::Range<usize> {
        self.ptr as usize..self.ptr as usize + self.len()
    }
}

impl Drop for Mem {
    fn drop(&mut self) {
        // SAFETY: allocated in `aligned` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}

unsafe impl Send for Mem {}
unsafe impl Sync for Mem {}

pub const MIB: usize = 1 << 20;
pub const PAGE: usize = 4096;

/// Rounded block size for a request: slab objects are powers of two from
/// 8 B to 2 KiB, larger blocks whole pages in powers of two.
pub fn block_size(size: usize) -> usize {
    if size <= 2048 {
        size.max(8).next_power_of_two()
    } else {
        size.div_ceil(PAGE).next_power_of_two() * PAGE
    }
}
