//! A `GlobalAlloc` adapter (feature `std`): the heap over a region reserved
//! from the system on first use, with one handle per thread.
//!
//! ```ignore
//! #[global_allocator]
//! static A: magbuddy::MagbuddyAlloc = magbuddy::MagbuddyAlloc::new(1 << 30, 64);
//! ```
//!
//! * The region (`bytes`, any size the system lets you reserve; the OS maps
//!   it lazily) is reserved by the first allocation. Racing first
//!   allocations each build a heap and one wins with a CAS; the losers give
//!   their regions back, so nobody waits.
//! * Each thread claims a handle on first use and releases it at thread exit
//!   (its thread-local destructor), which flushes its caches. Threads beyond
//!   `cpus`, and code running while thread-locals are torn down, use the
//!   shared path.
//! * A free of a pointer the heap refuses writes the error to stderr and
//!   aborts: a global allocator must not unwind.

extern crate std;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::RefCell;
use core::ptr::{self, NonNull};
use std::alloc::System;

use crate::sync::{AtomicUsize, Ordering};
use crate::{FreeError, Handle, Heap, HeapConfig};

/// Alignment of the reserved region (an area, so no space is lost to it).
const REGION_ALIGN: usize = 1 << 20;

/// The adapter; see the module docs.
pub struct MagbuddyAlloc {
    bytes: usize,
    cpus: usize,
    /// Address of the heap once built (0 before).
    heap: AtomicUsize,
}

std::thread_local! {
    /// This thread's handle, with the address of the heap it belongs to.
    static LOCAL: RefCell<Option<(usize, Handle<'static>)>> = const { RefCell::new(None) };
}

impl MagbuddyAlloc {
    /// An adapter that will reserve `bytes` and allow `cpus` thread handles.
    pub const fn new(bytes: usize, cpus: usize) -> Self {
        Self {
            bytes,
            cpus,
            heap: AtomicUsize::new(0),
        }
    }

    /// The heap, built on first call. `None` if the system refused the region.
    pub fn heap(&self) -> Option<&'static Heap> {
        // Acquire: pairs with the AcqRel CAS that published the heap.
        let addr = self.heap.load(Ordering::Acquire);
        if addr != 0 {
            // SAFETY: a published heap lives for the rest of the program.
            return Some(unsafe { &*(addr as *const Heap) });
        }
        self.build()
    }

    #[cold]
    fn build(&self) -> Option<&'static Heap> {
        let layout = Layout::from_size_align(self.bytes, REGION_ALIGN).ok()?;
        // SAFETY: non-zero size (a zero-sized region fails in init below).
        let region = unsafe { System.alloc(layout) };
        if region.is_null() {
            return None;
        }
        // SAFETY: the region is ours alone and never given back while used.
        let heap = match unsafe { Heap::init_with(region, self.bytes, HeapConfig::new(self.cpus)) }
        {
            Ok(h) => h,
            Err(_) => {
                // SAFETY: allocated above with this layout.
                unsafe { System.dealloc(region, layout) };
                return None;
            }
        };
        let mine = heap as *const Heap as usize;
        // AcqRel: Release publishes the heap's metadata; Acquire on failure
        // reads the winner's.
        match self
            .heap
            .compare_exchange(0, mine, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => Some(heap),
            Err(winner) => {
                // SAFETY: our heap was never published; its region is ours.
                unsafe { System.dealloc(region, layout) };
                // SAFETY: as in `heap`.
                Some(unsafe { &*(winner as *const Heap) })
            }
        }
    }

    /// Runs `f` with this thread's handle, claiming one on first use; `None`
    /// when no handle can be used (all taken, thread-locals being torn
    /// down, or a re-entrant call).
    fn with_handle<R>(
        &self,
        heap: &'static Heap,
        f: impl FnOnce(&mut Handle<'static>) -> R,
    ) -> Option<R> {
        let key = heap as *const Heap as usize;
        LOCAL
            .try_with(|cell| {
                let mut slot = cell.try_borrow_mut().ok()?;
                if slot.is_none() {
                    *slot = Some((key, heap.handle()?));
                }
                match slot.as_mut() {
                    Some((k, h)) if *k == key => Some(f(h)),
                    _ => None,
                }
            })
            .ok()
            .flatten()
    }
}

/// Writes `e` to stderr and aborts (no unwinding out of an allocator).
#[cold]
fn refuse(e: FreeError) -> ! {
    use std::io::Write;
    let mut buf = [0u8; 160];
    let mut w = &mut buf[..];
    let _ = writeln!(w, "magbuddy: {e}");
    let n = 160 - w.len();
    let _ = std::io::stderr().write_all(&buf[..n]);
    std::process::abort()
}

// SAFETY: blocks are aligned to 2^ceil(log2 size) of the requested size,
// rounded up to the alignment, so they satisfy the layout; frees go back to
// the heap they came from; nothing unwinds.
unsafe impl GlobalAlloc for MagbuddyAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(heap) = self.heap() else {
            return ptr::null_mut();
        };
        let size = layout.size().max(layout.align());
        self.with_handle(heap, |h| h.alloc(size))
            .unwrap_or_else(|| heap.alloc(size))
            .map_or(ptr::null_mut(), NonNull::as_ptr)
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        let Some(heap) = self.heap() else { return };
        // SAFETY: `p` came from `alloc` (GlobalAlloc's contract).
        let r = self
            .with_handle(heap, |h| unsafe { h.try_free(p) })
            .unwrap_or_else(|| {
                // SAFETY: as above.
                unsafe { heap.try_free(p) }
            });
        if let Err(e) = r {
            refuse(e);
        }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(heap) = self.heap() else {
            return ptr::null_mut();
        };
        // In place when the block already has room (same rounded size).
        let old = layout.size().max(layout.align());
        let new = new_size.max(layout.align());
        if heap.block_size(old) == heap.block_size(new) {
            return p;
        }
        // SAFETY: GlobalAlloc's contract for `realloc`.
        let q = unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) };
        if !q.is_null() {
            // SAFETY: both blocks are valid for the smaller size and distinct.
            unsafe {
                ptr::copy_nonoverlapping(p, q, layout.size().min(new_size));
                self.dealloc(p, layout);
            }
        }
        q
    }
}
