//! The `std` wrapper of [`GlobalHeap`] (feature `std`): the heap over a
//! region reserved from the system on first use, with a handle per thread.
//!
//! ```
//! #[global_allocator]
//! static A: magbuddy::MagbuddyAlloc = magbuddy::MagbuddyAlloc::new(1 << 30, 64);
//! # fn main() { let v = vec![1u8; 100]; assert_eq!(v.len(), 100); }
//! ```
//!
//! * The region (`bytes`, any size the system lets you reserve; the OS maps
//!   it lazily) is reserved by the first allocation. Racing first
//!   allocations each build a heap and one wins with a CAS; the losers give
//!   their regions back, so nobody waits. A configuration the heap refuses
//!   is reported on stderr, and every allocation then fails.
//! * The CPU function of the inner [`GlobalHeap`] is the thread's slot: each
//!   thread takes the lowest free slot index on first use (one
//!   `fetch_or` on a process-wide bitmap) and gives it back at thread exit;
//!   the slot's handle, with what its caches hold, serves the next thread
//!   that takes the index (`reclaim` drains it like any idle CPU's). Threads
//!   beyond `cpus`, and code running while thread-locals are torn down,
//!   use the shared path.
//! * A free of a pointer the heap refuses writes the error to stderr and
//!   aborts: a global allocator must not unwind.

extern crate std;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::sync::atomic::{AtomicU64, Ordering};
use std::alloc::System;

use crate::{FreeError, GlobalHeap, Heap, HeapConfig, InitError, MAX_CPUS};

/// Alignment of the reserved region (an area, so no space is lost to it).
const REGION_ALIGN: usize = 1 << 20;

/// The adapter; see the module docs.
#[derive(Debug)]
pub struct MagbuddyAlloc {
    bytes: usize,
    cpus: usize,
    inner: GlobalHeap,
}

/// Slot indices held by live threads, one bit each (process-wide: a thread's
/// index serves every `MagbuddyAlloc`).
static TAKEN: AtomicU64 = AtomicU64::new(0);

const UNCLAIMED: u32 = u32::MAX;
const NO_SLOT: u32 = u32::MAX - 1;

/// This thread's slot index; gives it back at thread exit.
struct ThreadSlot(Cell<u32>);

impl Drop for ThreadSlot {
    fn drop(&mut self) {
        let i = self.0.get();
        if (i as usize) < MAX_CPUS {
            // Release: the next thread to take the index (Acquire in
            // `claim`) finds the handle as this thread left it (its slot's
            // busy flag orders that too; this keeps the index handover
            // itself ordered).
            TAKEN.fetch_and(!(1 << i), Ordering::Release);
        }
    }
}

std::thread_local! {
    static SLOT: ThreadSlot = const { ThreadSlot(Cell::new(UNCLAIMED)) };
}

/// The CPU function: this thread's slot index, claimed on first use.
fn thread_slot() -> Option<usize> {
    SLOT.try_with(|s| match s.0.get() {
        UNCLAIMED => {
            let i = claim();
            s.0.set(i.map_or(NO_SLOT, |i| i as u32));
            i
        }
        NO_SLOT => None,
        i => Some(i as usize),
    })
    .ok()
    .flatten()
}

/// Takes the lowest free slot index, if any.
#[cold]
fn claim() -> Option<usize> {
    // Relaxed: a guess, validated by the fetch_or.
    let mut taken = TAKEN.load(Ordering::Relaxed);
    while taken != u64::MAX {
        let bit = (!taken).trailing_zeros();
        // Acquire: pairs with the Release of the index's last owner.
        taken = TAKEN.fetch_or(1 << bit, Ordering::Acquire);
        if taken & (1 << bit) == 0 {
            return Some(bit as usize);
        }
    }
    None
}

impl MagbuddyAlloc {
    /// An adapter that will reserve `bytes` and allow `cpus` thread handles.
    pub const fn new(bytes: usize, cpus: usize) -> Self {
        Self {
            bytes,
            cpus,
            inner: GlobalHeap::empty()
                .with_cpu_id(thread_slot)
                .on_bad_free(refuse),
        }
    }

    /// The heap, built on first call. `None` if the system refused the region
    /// or the heap refused the configuration (reported on stderr).
    pub fn heap(&self) -> Option<&'static Heap> {
        self.inner.heap().or_else(|| self.build())
    }

    #[cold]
    fn build(&self) -> Option<&'static Heap> {
        let layout = Layout::from_size_align(self.bytes, REGION_ALIGN).ok()?;
        if layout.size() == 0 {
            report(InitError::TooSmall { len: 0, min: 1 });
            return None;
        }
        // SAFETY: non-zero size.
        let region = unsafe { System.alloc(layout) };
        if region.is_null() {
            return None;
        }
        // SAFETY: the region is ours alone and never given back once used.
        match unsafe {
            self.inner
                .init(region, self.bytes, HeapConfig::new(self.cpus))
        } {
            Ok(heap) => Some(heap),
            Err(e) => {
                // SAFETY: allocated above with this layout; no heap uses it
                // (ours was not published).
                unsafe { System.dealloc(region, layout) };
                if e != InitError::AlreadyInitialized {
                    report(e);
                }
                self.inner.heap()
            }
        }
    }
}

/// Writes `msg` to stderr without allocating.
fn write_stderr(msg: core::fmt::Arguments<'_>) {
    use std::io::Write;
    let mut buf = [0u8; 200];
    let mut w = &mut buf[..];
    let _ = w.write_fmt(msg);
    let n = 200 - w.len();
    let _ = std::io::stderr().write_all(&buf[..n]);
}

/// Reports a refused configuration (once per failed build).
#[cold]
fn report(e: InitError) {
    write_stderr(format_args!("magbuddy: cannot set up the heap: {e}\n"));
}

/// Writes `e` to stderr and aborts (no unwinding out of an allocator).
#[cold]
fn refuse(e: FreeError) -> ! {
    write_stderr(format_args!("magbuddy: {e}\n"));
    std::process::abort()
}

// SAFETY: forwards to `GlobalHeap`, whose blocks satisfy the layouts.
unsafe impl GlobalAlloc for MagbuddyAlloc {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        if self.heap().is_none() {
            return core::ptr::null_mut();
        }
        // SAFETY: forwarded.
        unsafe { self.inner.alloc(layout) }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, layout: Layout) {
        // SAFETY: forwarded (`p` came from `alloc`, so the heap exists).
        unsafe { self.inner.dealloc(p, layout) }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.inner.realloc(p, layout, new_size) }
    }
}
