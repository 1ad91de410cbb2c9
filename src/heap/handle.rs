//! Per-CPU handles: claimed exclusively, so their state needs no atomic
//! read-modify-write, and released on drop.

use core::marker::PhantomData;
use core::ptr::NonNull;

use super::place::{Fresh, Hint};
use super::stats::{Counters, Event, Tally};
use super::Heap;
use crate::cpu::CpuId;
use crate::magazine::{cache_class, fit_cached, CpuCache, Magazine, MAX_CACHED};
use crate::region::Usable;
use crate::slab::{self, Owner, MAX_SMALL, SMALL_CLASSES};
use crate::sync::{AtomicBool, AtomicU32, AtomicUsize, Ordering, UnsafeCell};
use crate::FreeError;

/// State of one CPU slot, in the heap's metadata (one cache line pair each).
pub(crate) struct CpuSlot {
    claimed: AtomicBool,
    /// Set (to `u32::MAX`, else 0) to ask the holder to flush its
    /// magazines ([`Heap::reclaim`]); its next allocation that reaches a
    /// slow path honours and clears it. A word in the slot, not a heap-wide
    /// epoch: the fast path reads it through the slot it loads anyway, and
    /// as the floor of its pop (a round only if the loaded magazine holds
    /// more than it), the compare that tests emptiness tests it too (2
    /// instructions fewer than a flag with its own branch).
    drain: AtomicU32,
    /// Magazines and current slabs, touched only by the slot's holder.
    pub(crate) cache: UnsafeCell<CpuCache>,
    /// Home area (packed region/area), kept across claims.
    pub(crate) home: AtomicUsize,
    pub(crate) counters: Counters,
}

impl CpuSlot {
    /// A free slot; `sentinel` is the magazine pool's always-empty one.
    pub(crate) fn new(home: usize, sentinel: *const Magazine) -> Self {
        Self {
            claimed: AtomicBool::new(false),
            drain: AtomicU32::new(0),
            cache: UnsafeCell::new(CpuCache::new(sentinel)),
            home: AtomicUsize::new(home),
            counters: Counters::default(),
        }
    }

    /// Constructs the slot in place if init left it as zeros (see
    /// `Heap::init`): every field but the cache and the home is valid as
    /// zeros, and nobody but the holder reads those.
    ///
    /// # Safety
    /// The caller holds the slot (just claimed it).
    pub(crate) unsafe fn construct_if_blank(&self, home: usize, sentinel: *const Magazine) {
        // SAFETY: the caller holds the slot, so nobody else touches its cache.
        self.cache.with_mut(|c| unsafe {
            if (*c).is_blank() {
                *c = CpuCache::new(sentinel);
                // Relaxed: read only by later holders, after their claim's
                // Acquire.
                self.home.store(home, Ordering::Relaxed);
            }
        });
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

    /// Asks the slot's holder (present or next) to flush its magazines.
    pub(crate) fn request_drain(&self) {
        // Relaxed: a request flag; a late view only delays the flush by
        // one call.
        self.drain.store(u32::MAX, Ordering::Relaxed);
    }

    /// Whether a drain was requested and not yet honoured.
    pub(crate) fn drain_requested(&self) -> bool {
        self.pop_floor() != 0
    }

    /// The floor of the fast path's pop: `u32::MAX` (no round) while a
    /// drain is due, else 0.
    #[inline(always)]
    pub(crate) fn pop_floor(&self) -> u32 {
        // Relaxed: as in `request_drain`.
        self.drain.load(Ordering::Relaxed)
    }

    /// The holder honours the requests made so far: cleared before it
    /// flushes, so a request made meanwhile is served by that flush or
    /// stays set for the next allocation (no read-modify-write needed).
    pub(crate) fn clear_drain(&self) {
        // Relaxed: as in `request_drain`.
        self.drain.store(0, Ordering::Relaxed);
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
///
/// # Example
///
/// ```
/// # use magbuddy::{Heap, HeapConfig};
/// # let len = Heap::min_region_len(HeapConfig::new(1));
/// # let mut ram = vec![0u8; len];
/// # // SAFETY: `ram` is ours and outlives the heap's use.
/// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
/// let mut h = heap.handle_for(0).unwrap(); // CPU 0's slot, exclusively
/// let small = h.alloc(48).unwrap(); // a 64-byte slab object, cached per CPU
/// let page = h.alloc(4096).unwrap(); // a page, cached per CPU
/// // SAFETY: both are live blocks of this heap, not used afterwards.
/// unsafe {
///     h.free(small.as_ptr());
///     h.free(page.as_ptr());
/// }
/// drop(h); // releases the slot; its cached blocks go home
/// ```
pub struct Handle<'h> {
    pub(crate) heap: &'h Heap,
    pub(crate) slot: &'h CpuSlot,
    /// The heap's first region's usable range, where the fast paths look
    /// for descriptors (copied: no load of the region first).
    first: Usable<'h>,
    pub(crate) cpu: CpuId,
    pub(crate) home: usize,
    _not_sync: PhantomData<*mut ()>,
}

// SAFETY: a handle may move to another thread; it is just not shareable
// (`!Sync`) since its slot assumes a single writer.
unsafe impl Send for Handle<'_> {}

impl<'h> Handle<'h> {
    pub(crate) fn new(heap: &'h Heap, cpu: CpuId) -> Self {
        // Relaxed: the claim's Acquire already ordered the previous release.
        let home = heap.slot(cpu.index()).home.load(Ordering::Relaxed);
        Self {
            heap,
            slot: heap.slot(cpu.index()),
            first: heap.table.first().usable_range(),
            cpu,
            home,
            _not_sync: PhantomData,
        }
    }

    /// The CPU slot this handle owns.
    ///
    /// See the example on [`Heap::handle`].
    pub fn cpu(&self) -> usize {
        self.cpu.index()
    }

    /// The owner of this handle's slabs.
    #[inline(always)]
    pub(crate) fn owner(&self) -> Owner {
        Owner::Cpu(self.cpu)
    }

    #[inline(always)]
    pub(crate) fn cache<R>(&mut self, f: impl FnOnce(&mut CpuCache) -> R) -> R {
        // SAFETY: the handle holds the slot exclusively.
        self.slot.cache.with_mut(|c| f(unsafe { &mut *c }))
    }

    /// Pops a round of class `cc` from the loaded magazine (the fast path):
    /// `None` if it is empty or missing, or a drain is due (checked here
    /// only: a CPU that allocates honours drains on its next allocation).
    #[inline(always)]
    pub(crate) fn pop_loaded(&mut self, cc: usize) -> Option<usize> {
        let floor = self.slot.pop_floor();
        self.cache(|c| c.pop(cc, floor))
    }

    /// Pushes a round of class `cc` onto the loaded magazine (the fast path):
    /// false if it is full or missing.
    #[inline(always)]
    pub(crate) fn push_loaded(&mut self, cc: usize, p: usize) -> bool {
        self.cache(|c| c.push(cc, p))
    }

    /// Allocates `size` bytes aligned to `2^ceil(log2 size)`: objects of up
    /// to 2 KiB from slabs, blocks of 4–16 KiB through page magazines, larger
    /// ones from the buddy tree. `None` for `size == 0`, for sizes beyond the
    /// heap, and when memory is exhausted (see the no-false-OOM contract in
    /// [`Heap::cpu_cache_cap`]).
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// let mut h = heap.handle_for(0).unwrap();
    /// let p = h.alloc(700).unwrap(); // a 1 KiB slab object, aligned to 1 KiB
    /// assert_eq!(p.as_ptr() as usize % 1024, 0);
    /// assert!(h.alloc(0).is_none());
    /// // SAFETY: `p` came from this heap and is not used afterwards.
    /// unsafe { h.free(p.as_ptr()) };
    /// ```
    #[inline(always)]
    pub fn alloc(&mut self, size: usize) -> Option<NonNull<u8>> {
        if size.wrapping_sub(1) < MAX_SMALL {
            return self.alloc_object(slab::class_of(size));
        }
        if size.wrapping_sub(1) < MAX_CACHED {
            let cc = cache_class(size);
            if let Some(p) = self.pop_loaded(cc) {
                return self.hand_out_block(cc, p);
            }
            return self.alloc_slow(cc);
        }
        self.alloc_large(size)
    }

    /// Allocates at least `size` bytes aligned to `align` (a power of two)
    /// in the smallest *fitted* size class that holds them: for objects
    /// and alignments of up to 2 KiB, classes at most a quarter
    /// apart (24, 48, 96, 160, …; see [`crate::SMALL_CLASSES`]); above,
    /// 2560, 3072 and 5120 B, where a slab costs less than a page block.
    /// [`Self::alloc`] has powers of two only, which must keep its promise of
    /// alignment to the size and so waste up to half of each object. What
    /// malloc and `GlobalAlloc` need, which promise only `align`.
    /// [`Heap::fit_size`] says how large the block is; anything else
    /// (larger sizes or alignments) is `alloc(size.max(align))`. Freed like
    /// any other block.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// let mut h = heap.handle_for(0).unwrap();
    /// let p = h.alloc_fit(100, 16).unwrap(); // a 112-byte object, not 128
    /// assert_eq!(p.as_ptr() as usize % 16, 0);
    /// assert_eq!(heap.usable_size(p.as_ptr()), Ok(112));
    /// // SAFETY: `p` came from this heap and is not used afterwards.
    /// unsafe { h.free(p.as_ptr()) };
    /// ```
    #[inline(always)]
    pub fn alloc_fit(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        if let Some(c) = slab::fit_small(size, align) {
            return self.alloc_object(c);
        }
        self.alloc_unfitted(size, align)
    }

    /// [`Self::alloc_fit`] without its slow paths: an object from the
    /// loaded magazine, or `None` having changed nothing (the magazine is
    /// empty, a drain is due, or the size or alignment is not fitted up to
    /// 2 KiB), and then the caller calls `alloc_fit`. For wrappers that keep per-call
    /// state in registers: with no call in it, their fast path needs no
    /// stack frame (the C shim's `malloc`).
    ///
    /// ```
    /// # use magbuddy::Heap;
    /// # let mut mem = vec![0u8; 8 << 20];
    /// # let heap = unsafe { Heap::init(mem.as_mut_ptr(), mem.len(), 1) }.unwrap();
    /// let mut h = heap.handle().unwrap();
    /// let p = h.alloc_fit(24, 8).unwrap();
    /// // SAFETY: a live block of this heap, not used afterwards.
    /// unsafe { h.free(p.as_ptr()) };
    /// // The object went to the loaded magazine: the next one comes from it.
    /// assert_eq!(h.alloc_fit_cached(24, 8), Some(p));
    /// assert_eq!(h.alloc_fit_cached(64 << 10, 8), None, "not fitted");
    /// ```
    #[inline(always)]
    pub fn alloc_fit_cached(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        // `fit_key`: the classes above 2 KiB take `alloc_fit`, keeping
        // this path as short as it was before them.
        self.alloc_fitted_as::<true>(slab::fit_key(size, align)?)
    }

    /// `alloc_fit`'s other sizes and alignments (the multi-page classes,
    /// then page blocks), out of line so that the fast path inlined into
    /// callers stays as small as before those classes.
    #[inline(never)]
    fn alloc_unfitted(&mut self, size: usize, align: usize) -> Option<NonNull<u8>> {
        let Some(cc) = fit_cached(size, align) else {
            return self.alloc(size.max(align));
        };
        match self.pop_loaded(cc) {
            Some(p) => self.hand_out(cc, p),
            None => self.alloc_slow(cc),
        }
    }

    /// An object of small class `c`: from the loaded magazine, else the
    /// slow path.
    #[inline(always)]
    fn alloc_object(&mut self, c: usize) -> Option<NonNull<u8>> {
        if let Some(p) = self.alloc_cached(c) {
            return Some(p);
        }
        self.alloc_slow(c)
    }

    /// An object of small class `c` from the loaded magazine, handed out,
    /// or `None` (then [`Self::alloc_fit`]): no call, so `GlobalAlloc`'s
    /// fast path that inlines it needs no stack frame.
    #[inline(always)]
    pub(crate) fn alloc_cached(&mut self, c: usize) -> Option<NonNull<u8>> {
        self.alloc_cached_as::<true>(c)
    }

    /// [`Self::alloc_cached`], leaving the free tag to the caller unless
    /// `CLEAR_TAG`: one store fewer for `alloc_zeroed`, whose zeroing of
    /// bytes 4..8 clears it before the user gets the object.
    #[inline(always)]
    pub(crate) fn alloc_cached_as<const CLEAR_TAG: bool>(
        &mut self,
        c: usize,
    ) -> Option<NonNull<u8>> {
        let p = self.pop_loaded(c)?;
        Some(self.hand_out_round::<CLEAR_TAG>(c, p))
    }

    /// [`Self::alloc_cached_as`] by fitted key `k` (`slab::fit_key`): the
    /// magazine comes from the cache's per-size table, so no class is
    /// looked up (only `checked` builds need it, to hand the object out).
    #[inline(always)]
    pub(crate) fn alloc_fitted_as<const CLEAR_TAG: bool>(
        &mut self,
        k: usize,
    ) -> Option<NonNull<u8>> {
        let floor = self.slot.pop_floor();
        let p = self.cache(|c| c.pop_fitted(k, floor))?;
        Some(self.hand_out_round::<CLEAR_TAG>(slab::fitted_class(k), p))
    }

    /// Object `p` of small class `c`, just popped, goes to the user.
    #[inline(always)]
    fn hand_out_round<const CLEAR_TAG: bool>(&self, c: usize, p: usize) -> NonNull<u8> {
        self.heap.hand_out_object::<CLEAR_TAG>(c, p);
        // SAFETY: a round is an object's address in the heap, never null.
        unsafe { NonNull::new_unchecked(p as *mut u8) }
    }

    /// Blocks above 16 KiB (and `size == 0`): straight from the buddy tree.
    #[inline(never)]
    fn alloc_large(&mut self, size: usize) -> Option<NonNull<u8>> {
        let (mut hint, mut tally) = (self.hint(), Tally::default());
        let k = self.heap.order_for(size)?;
        let mut p = self.heap.alloc_order(k, Fresh::User, &mut hint, &mut tally);
        if p.is_none() {
            // Our own magazines may hold what is missing: give it back first.
            self.flush_magazines(&mut tally, false);
            p = self.heap.alloc_order(k, Fresh::User, &mut hint, &mut tally);
        }
        self.finish(&hint, &tally, p.is_some());
        p
    }

    #[cold]
    #[inline(never)]
    fn alloc_slow(&mut self, cc: usize) -> Option<NonNull<u8>> {
        let (mut hint, mut tally) = (self.hint(), Tally::default());
        let p = self.alloc_cached_slow(cc, &mut hint, &mut tally);
        self.finish(&hint, &tally, p.is_some());
        self.hand_out(cc, p?)
    }

    #[cold]
    #[inline(never)]
    fn free_slow(&mut self, cc: usize, p: usize) {
        let mut tally = Tally::default();
        self.free_cached_slow(cc, p, &mut tally);
        self.slot.counters.record(&tally, true);
        self.publish_counts(false);
    }

    /// Last step of a cached allocation: the round stops counting as free
    /// (its tag or bit for an object, its descriptor for a block).
    #[inline(always)]
    fn hand_out(&mut self, cc: usize, p: usize) -> Option<NonNull<u8>> {
        if cc < SMALL_CLASSES {
            self.heap.hand_out_object::<true>(cc, p);
            return NonNull::new(p as *mut u8);
        }
        self.hand_out_block(cc, p)
    }

    /// [`Heap::hand_out_block`] with the handle's first region: no region
    /// lookup and no call for a block there.
    #[inline(always)]
    fn hand_out_block(&self, cc: usize, p: usize) -> Option<NonNull<u8>> {
        match self.first.desc_of(p) {
            Some(cell) => Heap::hand_out_block_at(cell, cc, p),
            None => self.heap.hand_out_block(cc, p),
        }
    }

    /// Where this handle's searches start, asked as its CPU.
    fn hint(&self) -> Hint {
        Hint::new(self.home, Some(self.cpu))
    }

    fn finish(&mut self, hint: &Hint, tally: &Tally, ok: bool) {
        self.home = hint.home;
        let c = &self.slot.counters;
        c.bump_owned(if ok { Event::Alloc } else { Event::Failed }, 1);
        c.record(tally, true);
        self.publish_counts(false);
    }

    /// Allocates for `layout` (size rounded up to the alignment).
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// use core::alloc::Layout;
    ///
    /// let mut h = heap.handle_for(0).unwrap();
    /// let layout = Layout::new::<[u64; 3]>();
    /// let p = h.alloc_layout(layout).unwrap();
    /// assert_eq!(p.as_ptr() as usize % layout.align(), 0);
    /// // SAFETY: `p` came from this heap and is not used afterwards.
    /// unsafe { h.free(p.as_ptr()) };
    /// ```
    pub fn alloc_layout(&mut self, layout: core::alloc::Layout) -> Option<NonNull<u8>> {
        self.alloc(layout.size().max(layout.align()))
    }

    /// Frees a block; see [`Heap::try_free`]. Objects and blocks of up to
    /// 16 KiB go to this CPU's magazines. Bad and free pointers are refused
    /// here in every build, blocks in any cache included. Of two racing frees
    /// of one block exactly one succeeds for page blocks; for objects of up
    /// to 2 KiB only in `checked` builds (see [`Heap::try_free`]).
    ///
    /// # Safety
    /// Same as [`Heap::try_free`].
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// use magbuddy::FreeError;
    ///
    /// let mut h = heap.handle_for(0).unwrap();
    /// let p = h.alloc(4096).unwrap().as_ptr();
    /// // SAFETY: `p` is a live block of this heap, not used afterwards.
    /// unsafe { h.try_free(p) }.unwrap();
    /// // The block now sits in CPU 0's magazine; a second free is still refused.
    /// // SAFETY: `p` is not live; the heap reports the double free.
    /// let e = unsafe { h.try_free(p) }.unwrap_err();
    /// assert!(matches!(e, FreeError::DoubleFree(_) | FreeError::NotAllocated(_)));
    /// assert_eq!(e.ptr(), p as usize);
    /// ```
    #[inline]
    pub unsafe fn try_free(&mut self, ptr: *mut u8) -> Result<(), FreeError> {
        // SAFETY: forwarded from the caller.
        if unsafe { self.free_fast(ptr) } {
            return Ok(());
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.free_general(ptr) }
    }

    /// The common case of [`Self::try_free`] in a few instructions: frees
    /// `ptr` and returns true if it starts a live object, or a live block
    /// of up to 16 KiB, in the heap's first region (see `Heap::fast_claim`);
    /// returns false *having changed nothing* for everything else (null,
    /// larger blocks, other regions, bad or free pointers, and every object
    /// of `checked` builds), which the caller then passes to `try_free`.
    ///
    /// For wrappers with work of their own on the rare path: the C shim
    /// discards a large block's pages before freeing it, and keeps that
    /// check off its fast path this way.
    ///
    /// ```
    /// # use magbuddy::Heap;
    /// # let mut mem = vec![0u8; 8 << 20];
    /// # let heap = unsafe { Heap::init(mem.as_mut_ptr(), mem.len(), 1) }.unwrap();
    /// let mut h = heap.handle().unwrap();
    /// let small = h.alloc(64).unwrap().as_ptr();
    /// let large = h.alloc(64 << 10).unwrap().as_ptr();
    /// assert!(unsafe { h.free_fast(small) });
    /// assert!(!unsafe { h.free_fast(large) }, "above 16 KiB: the general path");
    /// assert!(!unsafe { h.free_fast(small) }, "already free: refused there, with the error");
    /// assert!(unsafe { h.try_free(large) }.is_ok());
    /// ```
    ///
    /// # Safety
    /// Same as [`Heap::try_free`].
    #[inline(always)]
    pub unsafe fn free_fast(&mut self, ptr: *mut u8) -> bool {
        // SAFETY: forwarded from the caller.
        match unsafe { self.free_cached(ptr) } {
            Ok(done) => done,
            Err(full) => {
                // SAFETY: from this handle's `free_cached`.
                unsafe { self.free_overflow(full) };
                true
            }
        }
    }

    /// [`Self::free_fast`] without its slow path: `Ok(true)` if `ptr` went
    /// to the loaded magazine, `Ok(false)` having changed nothing where
    /// `free_fast` returns false, and `Err` if the block was taken back
    /// but the loaded magazine is full: the caller must then pass the
    /// [`Overflow`] to [`Self::free_overflow`] (until then the block is in
    /// no cache and reads as free). For wrappers that keep per-call state
    /// in registers: with no call in it, their fast path needs no stack
    /// frame (the C shim's `free`).
    ///
    /// ```
    /// # use magbuddy::Heap;
    /// # let mut mem = vec![0u8; 8 << 20];
    /// # let heap = unsafe { Heap::init(mem.as_mut_ptr(), mem.len(), 1) }.unwrap();
    /// let mut h = heap.handle().unwrap();
    /// let p = h.alloc(64).unwrap().as_ptr();
    /// // SAFETY: a live block of this heap, not used afterwards.
    /// match unsafe { h.free_cached(p) } {
    ///     Ok(done) => assert!(done),
    ///     // SAFETY: from this handle.
    ///     Err(full) => unsafe { h.free_overflow(full) },
    /// }
    /// assert!(unsafe { h.try_free(p) }.is_err(), "freed once");
    /// ```
    ///
    /// # Safety
    /// Same as [`Heap::try_free`].
    #[inline(always)]
    pub unsafe fn free_cached(&mut self, ptr: *mut u8) -> Result<bool, Overflow> {
        let p = ptr as usize;
        let Some(cc) = Heap::fast_claim(self.first, p) else {
            return Ok(false);
        };
        if !self.push_loaded(cc, p) {
            return Err(Overflow { p, cc });
        }
        Ok(true)
    }

    /// Finishes a free that [`Self::free_cached`] left for the slow path:
    /// the block goes to a fresh magazine (or its slab, or the tree).
    ///
    /// # Safety
    /// `full` came from `free_cached` on a handle of this handle's heap
    /// (another heap's block would end in this heap's caches).
    #[inline(always)]
    pub unsafe fn free_overflow(&mut self, full: Overflow) {
        self.free_slow(full.cc, full.p);
    }

    /// Every other free: null, blocks above 16 KiB, other regions, bad
    /// pointers, free blocks, objects that carry a free tag, and every
    /// object of `checked` builds.
    ///
    /// # Safety
    /// As [`Heap::try_free`].
    #[cold]
    #[inline(never)]
    unsafe fn free_general(&mut self, ptr: *mut u8) -> Result<(), FreeError> {
        if ptr.is_null() {
            return Ok(());
        }
        let p = ptr as usize;
        if let Some(cc) = self.heap.claim_cached(p)? {
            if !self.push_loaded(cc, p) {
                self.free_slow(cc, p);
            }
            return Ok(());
        }
        // SAFETY: forwarded from the caller.
        unsafe { self.free_large(ptr) }
    }

    /// Blocks above 16 KiB: straight back to the buddy tree.
    ///
    /// # Safety
    /// As [`Heap::try_free`].
    #[inline(never)]
    unsafe fn free_large(&mut self, ptr: *mut u8) -> Result<(), FreeError> {
        let mut tally = Tally::default();
        // SAFETY: forwarded from the caller.
        let r = unsafe { self.heap.free_inner(ptr, &mut tally) };
        self.slot.counters.record(&tally, true);
        if r.is_ok() {
            self.slot.counters.bump_owned(Event::Free, 1);
        }
        r
    }

    /// Frees a block, panicking with the error's message on bad input (at
    /// the caller's location).
    ///
    /// # Safety
    /// Same as [`Heap::try_free`].
    ///
    /// See the example on [`Handle`].
    #[inline]
    #[track_caller]
    pub unsafe fn free(&mut self, ptr: *mut u8) {
        // SAFETY: forwarded from the caller.
        if let Err(e) = unsafe { self.try_free(ptr) } {
            crate::error::free_failed(e);
        }
    }
}

/// A block that [`Handle::free_cached`] took back from its user but found
/// no room for in the loaded magazine; [`Handle::free_overflow`] puts it
/// away. Not `Clone`: it is freed once.
#[must_use = "the block is in no cache until passed to `Handle::free_overflow`"]
#[derive(Debug)]
pub struct Overflow {
    p: usize,
    cc: usize,
}

impl core::fmt::Debug for Handle<'_> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Handle")
            .field("cpu", &self.cpu.index())
            .finish_non_exhaustive()
    }
}

impl Drop for Handle<'_> {
    /// Releases the slot, returning cached memory: magazines to the depot (or
    /// home), current slabs to the tree or the abandoned lists.
    fn drop(&mut self) {
        let mut tally = Tally::default();
        self.flush_magazines(&mut tally, true);
        self.give_up_slabs();
        self.slot.counters.record(&tally, true);
        self.publish_counts(true);
        let slot = self.slot;
        // Relaxed: published by the Release in `release` just below.
        slot.home.store(self.home, Ordering::Relaxed);
        slot.release();
    }
}
