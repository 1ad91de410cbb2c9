//! Per-CPU handles: claimed exclusively, so their state needs no atomic
//! read-modify-write, and released on drop.

use core::marker::PhantomData;
use core::ptr::NonNull;

use super::Heap;
use crate::sync::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use crate::FreeError;

/// Counters of one CPU slot (or of the shared path), readable at any time.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CpuStats {
    /// Successful allocations.
    pub allocs: u64,
    /// Successful frees.
    pub frees: u64,
    /// Allocations that returned `None`.
    pub failed_allocs: u64,
    /// CAS attempts that lost a race and were retried.
    pub cas_retries: u64,
    /// Times the home area changed.
    pub area_switches: u64,
}

/// Counters written only by their owner (a handle) or with `fetch_add` (the
/// shared path). Relaxed everywhere: they order nothing, and a reader only
/// needs each value to be one that was written.
#[derive(Default)]
pub(crate) struct Counters {
    allocs: AtomicU64,
    frees: AtomicU64,
    failed: AtomicU64,
    retries: AtomicU64,
    switches: AtomicU64,
}

/// Which counter an event bumps.
#[derive(Clone, Copy)]
pub(crate) enum Event {
    Alloc,
    Free,
    Failed,
    Retries,
    Switch,
}

impl Counters {
    fn cell(&self, e: Event) -> &AtomicU64 {
        match e {
            Event::Alloc => &self.allocs,
            Event::Free => &self.frees,
            Event::Failed => &self.failed,
            Event::Retries => &self.retries,
            Event::Switch => &self.switches,
        }
    }

    /// Adds `n` when the caller is the only writer: a load and a store, no RMW.
    #[inline]
    pub(crate) fn bump_owned(&self, e: Event, n: u64) {
        let c = self.cell(e);
        c.store(c.load(Ordering::Relaxed) + n, Ordering::Relaxed);
    }

    /// Adds `n` from any thread.
    #[inline]
    pub(crate) fn bump_shared(&self, e: Event, n: u64) {
        if n != 0 {
            self.cell(e).fetch_add(n, Ordering::Relaxed);
        }
    }

    pub(crate) fn snapshot(&self) -> CpuStats {
        let get = |e| self.cell(e).load(Ordering::Relaxed);
        CpuStats {
            allocs: get(Event::Alloc),
            frees: get(Event::Free),
            failed_allocs: get(Event::Failed),
            cas_retries: get(Event::Retries),
            area_switches: get(Event::Switch),
        }
    }
}

/// State of one CPU slot, in the heap's metadata (one cache line pair each).
pub(crate) struct CpuSlot {
    claimed: AtomicBool,
    /// Home area (packed region/area), kept across claims.
    pub(crate) home: AtomicUsize,
    pub(crate) counters: Counters,
}

impl CpuSlot {
    pub(crate) fn new(home: usize) -> Self {
        Self {
            claimed: AtomicBool::new(false),
            home: AtomicUsize::new(home),
            counters: Counters::default(),
        }
    }

    /// Claims the slot. Acquire: the previous holder's writes to the slot
    /// (released in [`Self::release`]) are visible to the new one.
    pub(crate) fn try_claim(&self) -> bool {
        !self.claimed.load(Ordering::Relaxed)
            && self
                .claimed
                .compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
    }

    /// Releases the slot. Release: pairs with the Acquire in `try_claim`.
    fn release(&self) {
        self.claimed.store(false, Ordering::Release);
    }
}

/// Exclusive access to one CPU slot of a [`Heap`]. Not `Sync`, not `Clone`:
/// exactly one thread (or CPU, with interrupts off) uses it at a time, which
/// is what lets its fast path avoid atomic read-modify-writes. Dropping it
/// releases the slot.
///
/// Kernel contract: never re-enter a handle (e.g. from an interrupt handler
/// that interrupted its owner); interrupt handlers use the heap's shared path
/// ([`Heap::alloc`], [`Heap::free`]).
pub struct Handle<'h> {
    pub(crate) heap: &'h Heap,
    pub(crate) cpu: usize,
    pub(crate) home: usize,
    _not_sync: PhantomData<*mut ()>,
}

// SAFETY: a handle may move to another thread; it is just not shareable
// (`!Sync`) since its slot assumes a single writer.
unsafe impl Send for Handle<'_> {}

impl<'h> Handle<'h> {
    pub(crate) fn new(heap: &'h Heap, cpu: usize) -> Self {
        // Relaxed: the claim's Acquire already ordered the previous release.
        let home = heap.slot(cpu).home.load(Ordering::Relaxed);
        Self {
            heap,
            cpu,
            home,
            _not_sync: PhantomData,
        }
    }

    /// The CPU slot this handle owns.
    pub fn cpu(&self) -> usize {
        self.cpu
    }

    /// Allocates `size` bytes aligned to `2^ceil(log2 size)` (at least a page
    /// until the slab layer lands). `None` for `size == 0`, for sizes beyond
    /// the heap, and when memory is exhausted.
    #[inline]
    pub fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        let counters = &self.heap.slot(self.cpu).counters;
        let mut ctx = super::Ctx {
            home: self.home,
            owner: self.cpu as u64 + 1,
            retries: 0,
            switches: 0,
        };
        let p = self
            .heap
            .order_for(size)
            .and_then(|k| self.heap.alloc_order(k, &mut ctx));
        self.home = ctx.home;
        counters.bump_owned(
            if p.is_some() {
                Event::Alloc
            } else {
                Event::Failed
            },
            1,
        );
        counters.bump_owned(Event::Retries, ctx.retries as u64);
        counters.bump_owned(Event::Switch, ctx.switches as u64);
        p
    }

    /// Allocates for `layout` (size rounded up to the alignment).
    pub fn alloc_layout(&mut self, layout: core::alloc::Layout) -> Option<NonNull<u8>> {
        self.alloc(layout.size().max(layout.align()))
    }

    /// Frees a block; see [`Heap::try_free`].
    ///
    /// # Safety
    /// Same as [`Heap::try_free`].
    #[inline]
    pub unsafe fn try_free(&mut self, ptr: *mut u8) -> Result<(), FreeError> {
        let counters = &self.heap.slot(self.cpu).counters;
        let mut retries = 0;
        // SAFETY: forwarded from the caller.
        let r = unsafe { self.heap.free_inner(ptr, &mut retries) };
        counters.bump_owned(Event::Retries, retries as u64);
        if r.is_ok() && !ptr.is_null() {
            counters.bump_owned(Event::Free, 1);
        }
        r
    }

    /// Frees a block, panicking with the error's message on bad input.
    ///
    /// # Safety
    /// Same as [`Heap::try_free`].
    #[inline]
    pub unsafe fn free(&mut self, ptr: *mut u8) {
        // SAFETY: forwarded from the caller.
        if let Err(e) = unsafe { self.try_free(ptr) } {
            panic!("magbuddy: {e}");
        }
    }
}

impl Drop for Handle<'_> {
    fn drop(&mut self) {
        let slot = self.heap.slot(self.cpu);
        // Relaxed: published by the Release in `release` just below.
        slot.home.store(self.home, Ordering::Relaxed);
        slot.release();
    }
}
