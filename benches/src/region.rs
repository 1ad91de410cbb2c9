//! Memory for the fixed-region allocators: one page-aligned block from the
//! system allocator per heap, freed when the [`Region`] drops.
//!
//! Every fixed-region allocator in a run gets a region of the same size, so
//! none wins by having more room. [`Region::new`] touches every page before
//! the allocator is built: the first timed run then pays no page faults, which
//! would otherwise be charged to whichever allocator happens to run first. The
//! memory report uses [`Region::lazy`] instead, so a 4 GiB heap costs only the
//! pages its metadata occupies.

use std::alloc::{alloc, dealloc, Layout};

/// Bytes in a page of the host (and of every allocator here).
pub const PAGE: usize = 4096;
/// Alignment of regions: 2 MiB, so buddy allocators see an aligned range.
const ALIGN: usize = 2 << 20;

/// An owned, page-aligned block of memory.
pub struct Region {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: the region is plain memory owned by this value; it is handed to one
// allocator, which does its own synchronisation.
unsafe impl Send for Region {}
// SAFETY: as above; `Region` itself offers no interior mutability.
unsafe impl Sync for Region {}

impl Region {
    /// `len` bytes, every page touched once (see the module docs).
    pub fn new(len: usize) -> Self {
        let r = Self::lazy(len);
        for off in (0..len).step_by(PAGE) {
            // SAFETY: `off < len`, inside the block we own.
            unsafe { r.ptr.add(off).write_volatile(0) };
        }
        r
    }

    /// `len` bytes, left to the OS to map on first touch.
    pub fn lazy(len: usize) -> Self {
        let layout = Layout::from_size_align(len, ALIGN).expect("region layout");
        assert!(len > 0, "empty region");
        // SAFETY: the layout has a non-zero size (asserted above).
        let ptr = unsafe { alloc(layout) };
        assert!(!ptr.is_null(), "cannot reserve a region of {len} bytes");
        Self { ptr, layout }
    }

    /// First byte.
    pub fn start(&self) -> *mut u8 {
        self.ptr
    }

    /// Length in bytes.
    pub fn len(&self) -> usize {
        self.layout.size()
    }

    /// Always false: regions are never empty (kept for clippy's `len` rule).
    pub fn is_empty(&self) -> bool {
        false
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        // SAFETY: allocated in `lazy` with this layout.
        unsafe { dealloc(self.ptr, self.layout) }
    }
}
