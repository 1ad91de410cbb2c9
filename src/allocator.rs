//! The `Allocator` trait (feature `allocator-api2`, the stable mirror of
//! `core::alloc::Allocator`) for [`Heap`] (the shared path) and
//! [`GlobalHeap`] (per-CPU handles), so collections can live in a heap of
//! their own: `allocator_api2::vec::Vec::new_in(heap)`.
//!
//! * `allocate` returns the whole block (`Heap::fit_size`: the fitted class
//!   of `Heap::alloc_fit`), so a `Vec`
//!   uses the rounding as capacity instead of reallocating into it.
//! * `grow`, `grow_zeroed` and `shrink` stay in place when the heap can
//!   resize the block where it is ([`Heap::resize_in_place`]: the same
//!   object class, a page block grown into free buddies or shrunk);
//!   otherwise they move the contents.
//! * With feature `nightly` (nightly compilers), the same impls for
//!   `core::alloc::Allocator`, from the same macro.
//! * Zero-sized layouts get a dangling, aligned pointer and free nothing.

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

fn allocate<B: Blocks + ?Sized>(b: &B, layout: Layout) -> Option<NonNull<[u8]>> {
    if layout.size() == 0 {
        let dangling = NonNull::new(ptr::without_provenance_mut(layout.align()))?;
        return Some(NonNull::slice_from_raw_parts(dangling, 0));
    }
    let p = b.get(layout)?;
    Some(whole(b, p, layout))
}

/// # Safety
/// As `Allocator::deallocate`.
unsafe fn deallocate<B: Blocks + ?Sized>(b: &B, p: NonNull<u8>, layout: Layout) {
    if layout.size() != 0 {
        // SAFETY: forwarded.
        unsafe { b.put(p, layout) }
    }
}

/// `grow`, `grow_zeroed` and `shrink`: in place when the heap can resize
/// the block where it is ([`Heap::resize_in_place`]), else moved. `zeroed`:
/// the bytes from `old.size()` to the end of the returned block are zero.
///
/// # Safety
/// As `Allocator::grow` / `grow_zeroed` / `shrink`.
unsafe fn resize<B: Blocks + ?Sized>(
    b: &B,
    p: NonNull<u8>,
    old: Layout,
    new: Layout,
    zeroed: bool,
) -> Option<NonNull<[u8]>> {
    let in_place = match b.heap() {
        Some(h) if old.size() != 0 && new.size() != 0 => {
            // A pointer the heap refuses is refused here too, changing
            // nothing.
            // SAFETY: `p` is a live block of ours (the caller's contract).
            unsafe { h.resize_in_place(p, new.size(), new.align()) }.ok()?
        }
        _ => None,
    };
    let q = match in_place {
        Some(len) => NonNull::slice_from_raw_parts(p, len),
        None => {
            // A large block that grows moves to where it has room to grow again.
            let roomy = b
                .heap()
                .filter(|_| new.size() > old.size())
                .and_then(|h| h.alloc_to_grow(new.size().max(new.align())))
                .map(|q| whole(b, q, new));
            let q = roomy.or_else(|| allocate(b, new))?;
            // SAFETY: both blocks are valid for the smaller size and
            // distinct; the old one is then freed once (the caller's contract).
            unsafe {
                ptr::copy_nonoverlapping(
                    p.as_ptr(),
                    q.cast::<u8>().as_ptr(),
                    old.size().min(new.size()),
                );
                deallocate(b, p, old);
            }
            q
        }
    };
    if zeroed {
        // SAFETY: the returned block is ours and `q.len() >= new.size() >=
        // old.size()` (a grow).
        unsafe {
            ptr::write_bytes(
                q.cast::<u8>().as_ptr().add(old.size()),
                0,
                q.len() - old.size(),
            );
        }
    }
    Some(q)
}

/// Implements an `Allocator` trait (the path of its module: allocator-api2's
/// mirror or `core::alloc` on nightly) for the heaps through the helpers
/// above, so both traits share one body.
macro_rules! allocator_for {
    ($api:path; $(impl[$($g:tt)*] for $t:ty;)*) => {$(
        // SAFETY: blocks stay valid until freed, are aligned to at least
        // the layout's alignment (`Heap::alloc_fit`), and any live block may be
        // passed back (see the helpers above).
        unsafe impl<$($g)*> Allocator for $t {
            fn allocate(&self, layout: Layout) -> Result<NonNull<[u8]>, AllocError> {
                allocate(self, layout).ok_or(AllocError)
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
                unsafe { resize(self, p, old, new, false) }.ok_or(AllocError)
            }
            unsafe fn grow_zeroed(
                &self,
                p: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                // SAFETY: forwarded.
                unsafe { resize(self, p, old, new, true) }.ok_or(AllocError)
            }
            unsafe fn shrink(
                &self,
                p: NonNull<u8>,
                old: Layout,
                new: Layout,
            ) -> Result<NonNull<[u8]>, AllocError> {
                // SAFETY: forwarded.
                unsafe { resize(self, p, old, new, false) }.ok_or(AllocError)
            }
        }
    )*};
}

/// The stable mirror (feature `allocator-api2`).
#[cfg(feature = "allocator-api2")]
mod api2 {
    use super::*;
    use allocator_api2::alloc::{AllocError, Allocator};

    allocator_for! {
        allocator_api2::alloc;
        impl[] for Heap;
        impl[C: CurrentCpu] for GlobalHeap<C>;
    }
}

/// `core::alloc::Allocator` itself (feature `nightly`, nightly compilers).
#[cfg(feature = "nightly")]
mod core_api {
    use super::*;
    use core::alloc::{AllocError, Allocator};

    allocator_for! {
        core::alloc;
        impl[] for Heap;
        impl[C: CurrentCpu] for GlobalHeap<C>;
    }
}
