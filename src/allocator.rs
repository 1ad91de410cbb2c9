//! The `Allocator` trait (feature `allocator-api2`, the stable mirror of
//! `core::alloc::Allocator`) for [`Heap`] (the shared path) and
//! [`GlobalHeap`] (per-CPU handles), so collections can live in a heap of
//! their own: `allocator_api2::vec::Vec::new_in(heap)`.
//!
//! * `allocate` returns the whole block (`Heap::fit_size`: the fitted class
//!   of `Heap::alloc_fit`), so a `Vec`
//!   uses the rounding as capacity instead of reallocating into it.
//! * `grow` and `shrink` stay in place while the new size needs the same
//!   block; otherwise they move the contents.
//! * Zero-sized layouts get a dangling, aligned pointer and free nothing.

use allocator_api2::alloc::{AllocError, Allocator};
use core::alloc::{GlobalAlloc, Layout};
use core::ptr::{self, NonNull};

use crate::{CurrentCpu, GlobalHeap, Heap};

/// What both heaps share: where a block comes from and goes back to.
trait Blocks {
    /// The heap once set up.
    fn heap(&self) -> Option<&Heap>;
    /// A block for `layout` (non-zero size).
    fn get(&self, layout: Layout) -> Option<NonNull<u8>>;
    /// Gives a block back.
    ///
    /// # Safety
    /// `p` came from `get` with `layout` and is freed once.
    unsafe fn put(&self, p: NonNull<u8>, layout: Layout);
}

impl Blocks for Heap {
    fn heap(&self) -> Option<&Heap> {
        Some(self)
    }
    fn get(&self, layout: Layout) -> Option<NonNull<u8>> {
        self.alloc_fit(layout.size(), layout.align())
    }
    unsafe fn put(&self, p: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { self.dealloc_layout(p, layout) }
    }
}

impl<C: CurrentCpu> Blocks for GlobalHeap<C> {
    fn heap(&self) -> Option<&Heap> {
        GlobalHeap::heap(self).map(|h| h as &Heap)
    }
    fn get(&self, layout: Layout) -> Option<NonNull<u8>> {
        // SAFETY: non-zero size (the callers check).
        NonNull::new(unsafe { self.alloc(layout) })
    }
    unsafe fn put(&self, p: NonNull<u8>, layout: Layout) {
        // SAFETY: forwarded.
        unsafe { self.dealloc(p.as_ptr(), layout) }
    }
}

/// The whole block at `p` serving `layout`.
fn whole<B: Blocks + ?Sized>(b: &B, p: NonNull<u8>, layout: Layout) -> NonNull<[u8]> {
    let len = b
        .heap()
        .map_or(layout.size(), |h| h.fit_size(layout.size(), layout.align()));
    NonNull::slice_from_raw_parts(p, len)
}

fn allocate<B: Blocks + ?Sized>(b: &B, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
    if layout.size() == 0 {
        let dangling =
            NonNull::new(ptr::without_provenance_mut(layout.align())).ok_or(AllocError)?;
        return Ok(NonNull::slice_from_raw_parts(dangling, 0));
    }
    let p = b.get(layout).ok_or(AllocError)?;
    Ok(whole(b, p, layout))
}

/// # Safety
/// As `Allocator::deallocate`.
unsafe fn deallocate<B: Blocks + ?Sized>(b: &B, p: NonNull<u8>, layout: Layout) {
    if layout.size() != 0 {
        // SAFETY: forwarded.
        unsafe { b.put(p, layout) }
    }
}

/// `grow` and `shrink`: in place while the block stays the same, else moved.
///
/// # Safety
/// As `Allocator::grow` / `shrink`.
unsafe fn resize<B: Blocks + ?Sized>(
    b: &B,
    p: NonNull<u8>,
    old: Layout,
    new: Layout,
) -> Result<NonNull<[u8]>, AllocError> {
    let same = |h: &Heap| {
        old.size() != 0
            && new.size() != 0
            && h.fit_size(old.size(), old.align()) == h.fit_size(new.size(), new.align())
    };
    // Classes have distinct sizes, and the class of a size serves every
    // alignment it is asked for, so the same block size is the same class,
    // which meets the new alignment too.
    if b.heap().is_some_and(same) {
        return Ok(whole(b, p, new));
    }
    let q = allocate(b, new)?;
    // SAFETY: both blocks are valid for the smaller size and distinct; the
    // old one is then freed once (the caller's contract).
    unsafe {
        ptr::copy_nonoverlapping(
            p.as_ptr(),
            q.cast::<u8>().as_ptr(),
            old.size().min(new.size()),
        );
        deallocate(b, p, old);
    }
    Ok(q)
}

macro_rules! allocator_for {
    ($(impl[$($g:tt)*] for $t:ty;)*) => {$(
        // SAFETY: blocks stay valid until freed, are aligned to at least
        // the layout's alignment (`Heap::alloc_fit`), and any live block may be
        // passed back (see the helpers above).
        unsafe impl<$($g)*> Allocator for $t {
            fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
                allocate(self, layout)
            }
            unsafe fn deallocate(&self, p: NonNull<u8>, layout: Layout) {
                // SAFETY: forwarded.
                unsafe { deallocate(self, p, layout) }
            }
            unsafe fn grow(
                &self,
                p: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                // SAFETY: forwarded.
                unsafe { resize(self, p, old, new) }
            }
            unsafe fn shrink(
                &self,
                p: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                // SAFETY: forwarded.
                unsafe { resize(self, p, old, new) }
            }
        }
    )*};
}

allocator_for! {
    impl[] for Heap;
    impl[C: CurrentCpu] for GlobalHeap<C>;
}
