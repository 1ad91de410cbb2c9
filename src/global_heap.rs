//! A `#[global_allocator]` for `no_std` kernels: a `const` static that is
//! set up later over RAM the kernel hands it.
//!
//! ```
//! use magbuddy::{CurrentCpu, GlobalHeap};
//!
//! /// Which CPU runs this call (a kernel reads its per-CPU area).
//! struct ThisCpu;
//! impl CurrentCpu for ThisCpu {
//!     fn current() -> Option<usize> {
//!         Some(0)
//!     }
//! }
//!
//! // In a kernel: #[global_allocator]
//! static HEAP: GlobalHeap<ThisCpu> = GlobalHeap::empty();
//!
//! # let len = 16 << 20;
//! # let layout = std::alloc::Layout::from_size_align(len, 1 << 20).unwrap();
//! # let ram = unsafe { std::alloc::alloc(layout) };
//! // Once memory is known (early boot): `ram` must stay the heap's for good.
//! unsafe { HEAP.init(ram, len, magbuddy::HeapConfig::new(4)) }.unwrap();
//! let p = unsafe { core::alloc::GlobalAlloc::alloc(&HEAP, core::alloc::Layout::new::<u64>()) };
//! assert!(!p.is_null());
//! unsafe { core::alloc::GlobalAlloc::dealloc(&HEAP, p, core::alloc::Layout::new::<u64>()) };
//! ```
//!
//! * Before [`GlobalHeap::init`], every allocation returns null (the kernel's
//!   alloc error handler runs); afterwards [`GlobalHeap::add_region`] adds
//!   more RAM.
//! * Each call asks [`CurrentCpu::current`] which CPU it runs on (a static
//!   call, inlined) and uses that CPU's handle (the per-CPU magazines); `None`, an index beyond the
//!   heap's CPUs, or a handle already in use on that CPU sends the call to
//!   the shared path, which is always safe.
//! * **What the kernel must guarantee: nothing, by default.** A handle is
//!   taken with an atomic compare-exchange (or swap) of its slot's state
//!   byte to busy (Acquire) and given back with a Release store, so an
//!   interrupt handler that allocates while the interrupted code holds the
//!   handle, a task that migrates mid-call, or a CPU function that answers
//!   wrongly all end on the shared path instead of sharing a handle.
//!   [`GlobalHeap::pinned`] trades the atomic for a plain load and store
//!   when the kernel guarantees that a call stays on the CPU the function
//!   named (preemption off, or per-CPU threads); interrupt handlers may
//!   still allocate.
//! * A free the heap refuses (double free, foreign or interior pointer)
//!   calls the bad-free handler, by default a panic: kernels' panic handlers
//!   do not unwind (a global allocator must not).

use core::alloc::{GlobalAlloc, Layout};
use core::cell::UnsafeCell;
use core::marker::PhantomData;
use core::ptr::{self, NonNull};
use core::sync::atomic::{compiler_fence, AtomicPtr, AtomicU8, Ordering};

use crate::{slab, FreeError, Handle, Heap, HeapConfig, InitError, Overflow, MAX_CPUS};

/// Which CPU runs the current call: the kernel's answer (a per-CPU
/// variable, the APIC id mapped to a slot, ...).
///
/// See the example on [`GlobalHeap`].
pub trait CurrentCpu {
    /// The calling CPU's slot index (`0..cpus`), or `None` for the shared
    /// path (early boot, a CPU without a slot).
    ///
    /// See the example on [`GlobalHeap`].
    fn current() -> Option<usize>;
}

/// No CPU answer: every call takes the shared path.
///
/// # Example
///
/// ```
/// use magbuddy::GlobalHeap;
///
/// // Every call takes the shared path (`GlobalHeap`'s default CPU answer).
/// static HEAP: GlobalHeap = GlobalHeap::empty();
/// ```
#[derive(Debug)]
pub enum NoCpu {}

impl CurrentCpu for NoCpu {
    #[inline(always)]
    fn current() -> Option<usize> {
        None
    }
}

/// What a refused free does (it must not return).
///
/// See the example on [`GlobalHeap::on_bad_free`].
pub type BadFreeFn = fn(FreeError) -> !;

/// Called when an allocation found no memory (after the heap's own reclaim):
/// may add regions to the heap; `true` asks for a retry, `false` lets the
/// allocation fail.
///
/// See the example on [`GlobalHeap::on_oom`].
pub type OomFn = fn(&'static Heap, Layout) -> bool;

/// A slot's states. One byte for "is there a handle, and is it free?", so
/// the fast paths take a handle with one load and compare (or one CAS).
const EMPTY: u8 = 0;
/// The slot's handle is set up and no call holds it.
const READY: u8 = 1;
/// A call holds the slot (its handle, or the right to set one up).
const BUSY: u8 = 2;

/// One CPU's handle, claimed on its first use. A cache line each: CPUs
/// that take their own slots' state bytes do not share lines, and a slot's
/// address is its index shifted.
#[repr(align(64))]
struct Slot {
    /// `EMPTY`, `READY` or `BUSY`; `handle` is `Some` whenever it is `READY`.
    state: AtomicU8,
    handle: UnsafeCell<Option<Handle<'static>>>,
}

impl Slot {
    /// Takes the slot for this call if its handle is ready (the fast
    /// paths); `pinned` as [`GlobalHeap::pinned`] promises.
    #[inline(always)]
    fn enter_ready(&self, pinned: bool) -> bool {
        if pinned {
            // Relaxed: only this CPU uses the slot; an interrupt handler
            // runs to completion in between, so program order suffices
            // (the fence keeps the compiler from moving the handle's
            // accesses above the state).
            if self.state.load(Ordering::Relaxed) != READY {
                return false;
            }
            self.state.store(BUSY, Ordering::Relaxed);
            compiler_fence(Ordering::SeqCst);
            true
        } else {
            // Acquire: the handle as its last user left it (the Release
            // in `leave`), whichever CPU that ran on.
            self.state
                .compare_exchange(READY, BUSY, Ordering::Acquire, Ordering::Relaxed)
                .is_ok()
        }
    }

    /// Takes the slot for this call whatever it holds (the slow paths,
    /// which set a handle up); false if a call holds it.
    #[inline(always)]
    fn enter_any(&self, pinned: bool) -> bool {
        if pinned {
            // Relaxed and the fence: as in `enter_ready`.
            if self.state.load(Ordering::Relaxed) == BUSY {
                return false;
            }
            self.state.store(BUSY, Ordering::Relaxed);
            compiler_fence(Ordering::SeqCst);
            true
        } else {
            // Acquire: as in `enter_ready`. Writing BUSY over BUSY changes
            // nothing for the holder.
            self.state.swap(BUSY, Ordering::Acquire) != BUSY
        }
    }

    /// The handle of a slot this call took in the `READY` state.
    ///
    /// # Safety
    /// The caller took the slot with [`Self::enter_ready`] and has not left
    /// it (so the handle is set up and no other call uses it).
    #[inline(always)]
    #[allow(clippy::mut_from_ref)]
    unsafe fn ready_handle(&self) -> &mut Handle<'static> {
        // SAFETY: as the caller promises.
        unsafe { (*self.handle.get()).as_mut().unwrap_unchecked() }
    }

    /// Finishes a free whose magazine was full and leaves the slot `READY`:
    /// out of line and last, so `dealloc`'s fast path ends in a jump and
    /// keeps nothing across a call (no stack frame).
    ///
    /// # Safety
    /// As [`Self::ready_handle`], and `full` came from its `free_cached`.
    #[inline(never)]
    unsafe fn overflow_and_leave(&self, pinned: bool, full: Overflow) {
        // SAFETY: forwarded.
        unsafe { self.ready_handle().free_overflow(full) };
        self.leave(pinned, READY);
    }

    /// Gives the slot back in `state`: `READY` if it holds a handle, else
    /// `EMPTY`.
    #[inline(always)]
    fn leave(&self, pinned: bool, state: u8) {
        if pinned {
            compiler_fence(Ordering::SeqCst);
        }
        // Release: publishes this call's changes to the handle to the next
        // user's Acquire (pinned: a plain store, ordered by the fence).
        self.state.store(state, Ordering::Release);
    }
}

/// The static; see the module docs. `C` says which CPU runs a call.
///
/// # Example
///
/// ```
/// use core::alloc::{GlobalAlloc, Layout};
/// use magbuddy::{CurrentCpu, GlobalHeap, HeapConfig};
///
/// struct ThisCpu;
/// impl CurrentCpu for ThisCpu {
///     fn current() -> Option<usize> {
///         Some(0) // a kernel reads its per-CPU area
///     }
/// }
///
/// // In a kernel: #[global_allocator]
/// static HEAP: GlobalHeap<ThisCpu> = GlobalHeap::empty();
///
/// assert!(HEAP.heap().is_none()); // allocations return null until init
/// # let layout = core::alloc::Layout::from_size_align(4 << 20, 4096).unwrap();
/// # // SAFETY: non-zero size; the memory stays the heap's (never freed).
/// # let (ram_start, ram_len) = (unsafe { std::alloc::alloc(layout) }, 4 << 20);
/// // SAFETY: the range is RAM nobody else uses, the heap's for good.
/// unsafe { HEAP.init(ram_start, ram_len, HeapConfig::new(4)) }.unwrap();
/// let layout = Layout::new::<u64>();
/// // SAFETY: a non-zero-sized layout; freed once with the same layout.
/// unsafe {
///     let p = HEAP.alloc(layout); // through CPU 0's handle
///     assert!(!p.is_null());
///     HEAP.dealloc(p, layout);
/// }
/// ```
///
/// The crate docs show it as a kernel's `#[global_allocator]`.
pub struct GlobalHeap<C: CurrentCpu = NoCpu> {
    /// The heap once set up (null before).
    heap: AtomicPtr<Heap>,
    cpu: PhantomData<fn() -> C>,
    /// The kernel guarantees a call does not migrate (see [`Self::pinned`]).
    pinned: bool,
    bad_free: BadFreeFn,
    oom: Option<OomFn>,
    slots: [Slot; MAX_CPUS],
}

// SAFETY: a slot's handle is used only by the call that set its state BUSY
// (an atomic swap or CAS, or in pinned mode one CPU's program order); the
// heap is `Sync`.
unsafe impl<C: CurrentCpu> Sync for GlobalHeap<C> {}

impl<C: CurrentCpu> core::fmt::Debug for GlobalHeap<C> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("GlobalHeap")
            .field("set_up", &self.heap().is_some())
            .field("cpu", &core::any::type_name::<C>())
            .field("pinned", &self.pinned)
            .finish()
    }
}

#[cold]
#[track_caller]
fn panic_on_bad_free(e: FreeError) -> ! {
    crate::error::free_failed(e)
}

impl<C: CurrentCpu> GlobalHeap<C> {
    /// A static with no memory yet; once set up, calls use the handle of the
    /// CPU `C` names (`GlobalHeap<NoCpu>`, the default: the shared path).
    ///
    /// See the example on [`GlobalHeap`].
    pub const fn empty() -> Self {
        Self {
            heap: AtomicPtr::new(ptr::null_mut()),
            cpu: PhantomData,
            pinned: false,
            bad_free: panic_on_bad_free,
            oom: None,
            slots: [const {
                Slot {
                    state: AtomicU8::new(EMPTY),
                    handle: UnsafeCell::new(None),
                }
            }; MAX_CPUS],
        }
    }

    /// Takes a CPU's handle with a plain load and store instead of an atomic
    /// compare-exchange or swap.
    ///
    /// # Safety
    /// From `C`'s answer to the end of the call, the call runs on that CPU
    /// (no migration), and no other CPU gets the same answer meanwhile. Interrupt handlers on that CPU may allocate.
    ///
    /// # Example
    ///
    /// ```
    /// use magbuddy::{CurrentCpu, GlobalHeap, HeapConfig};
    ///
    /// struct ThisCpu;
    /// impl CurrentCpu for ThisCpu {
    ///     fn current() -> Option<usize> {
    ///         Some(0) // a kernel reads its per-CPU area
    ///     }
    /// }
    ///
    /// // SAFETY: the kernel runs every allocator call with preemption off, so it
    /// // stays on the CPU `ThisCpu` named.
    /// static HEAP: GlobalHeap<ThisCpu> = unsafe { GlobalHeap::empty().pinned() };
    /// ```
    pub const unsafe fn pinned(mut self) -> Self {
        self.pinned = true;
        self
    }

    /// Calls `f` instead of panicking when a free is refused.
    ///
    /// # Example
    ///
    /// ```
    /// use magbuddy::{FreeError, GlobalHeap};
    ///
    /// fn report(e: FreeError) -> ! {
    ///     // A kernel might log `e` (it names the pointer) and halt.
    ///     panic!("kernel heap: {e}")
    /// }
    /// static HEAP: GlobalHeap = GlobalHeap::empty().on_bad_free(report);
    /// ```
    pub const fn on_bad_free(mut self, f: BadFreeFn) -> Self {
        self.bad_free = f;
        self
    }

    /// Calls `f` when an allocation finds no memory; it may add regions
    /// ([`Heap::add_region`]) and ask for a retry (like a kernel's "rescue"
    /// handler that maps more RAM).
    ///
    /// # Example
    ///
    /// ```
    /// use core::alloc::{GlobalAlloc, Layout};
    /// use magbuddy::{GlobalHeap, Heap, HeapConfig};
    ///
    /// /// Hands the heap one more RAM range when it runs out, once.
    /// fn more_ram(heap: &'static Heap, _layout: Layout) -> bool {
    ///     static USED: core::sync::atomic::AtomicBool = core::sync::atomic::AtomicBool::new(false);
    ///     if USED.swap(true, core::sync::atomic::Ordering::Relaxed) {
    ///         return false; // nothing left: the allocation fails
    ///     }
    /// #   let layout = Layout::from_size_align(16 << 20, 1 << 20).unwrap();
    /// #   // SAFETY: non-zero size; never freed.
    /// #   let (start, len) = (unsafe { std::alloc::alloc(layout) }, 16 << 20);
    ///     // SAFETY: the range is RAM nobody else uses, the heap's for good.
    ///     unsafe { heap.add_region(start, len) }.is_ok() // true: retry
    /// }
    /// static HEAP: GlobalHeap = GlobalHeap::empty().on_oom(more_ram);
    ///
    /// # let layout = core::alloc::Layout::from_size_align(4 << 20, 4096).unwrap();
    /// # // SAFETY: non-zero size; the memory stays the heap's (never freed).
    /// # let (ram_start, ram_len) = (unsafe { std::alloc::alloc(layout) }, 4 << 20);
    /// # // SAFETY: as above.
    /// # unsafe { HEAP.init(ram_start, ram_len, HeapConfig::new(1)) }.unwrap();
    /// // A block larger than the first region: served from the region `more_ram` adds.
    /// let big = Layout::from_size_align(3 << 20, 4096).unwrap();
    /// // SAFETY: a non-zero-sized layout.
    /// let p = unsafe { HEAP.alloc(big) };
    /// assert!(!p.is_null());
    /// # // SAFETY: freed once with its layout.
    /// # unsafe { HEAP.dealloc(p, big) };
    /// ```
    pub const fn on_oom(mut self, f: OomFn) -> Self {
        self.oom = Some(f);
        self
    }

    /// Sets the heap up over `[start, start + len)`.
    ///
    /// # Safety
    /// The memory is valid, unused by anything else, and stays the heap's
    /// for the rest of the program (as for [`Heap::init_with`]).
    ///
    /// See the example on [`GlobalHeap`].
    pub unsafe fn init(
        &self,
        start: *mut u8,
        len: usize,
        config: HeapConfig,
    ) -> Result<&'static Heap, InitError> {
        if self.heap().is_some() {
            return Err(InitError::AlreadyInitialized);
        }
        // SAFETY: forwarded from the caller.
        let heap: &'static Heap = unsafe { Heap::init_with(start, len, config) }?;
        let mine = heap as *const Heap as *mut Heap;
        // AcqRel: Release publishes the heap's metadata to every later
        // call's Acquire load; a racing init that lost keeps its memory.
        self.heap
            .compare_exchange(ptr::null_mut(), mine, Ordering::AcqRel, Ordering::Acquire)
            .map_err(|_| InitError::AlreadyInitialized)?;
        Ok(heap)
    }

    /// Adds RAM to the heap (see [`Heap::add_region`]).
    ///
    /// # Safety
    /// As for [`Self::init`].
    ///
    /// See the example on [`GlobalHeap::on_oom`] (through [`Heap::add_region`]).
    pub unsafe fn add_region(&self, start: *mut u8, len: usize) -> Result<(), InitError> {
        let heap = self.heap().ok_or(InitError::NotInitialized)?;
        // SAFETY: forwarded from the caller.
        unsafe { heap.add_region(start, len) }
    }

    /// The heap, once set up.
    ///
    /// See the example on [`GlobalHeap`].
    #[inline]
    pub fn heap(&self) -> Option<&'static Heap> {
        // Acquire: pairs with the Release of the CAS in `init`.
        let p = self.heap.load(Ordering::Acquire);
        // SAFETY: a published heap lives for the rest of the program.
        (!p.is_null()).then(|| unsafe { &*p })
    }

    /// Runs `f` with this CPU's handle if one is free for this call, taking
    /// one from `heap` on the CPU's first call; `None` if there is none (the
    /// caller takes the shared path).
    #[inline]
    fn with_handle<R>(
        &self,
        heap: &'static Heap,
        f: impl FnOnce(&mut Handle<'static>) -> R,
    ) -> Option<R> {
        let cpu = C::current()?;
        let slot = self.slots.get(cpu)?;
        if !slot.enter_any(self.pinned) {
            return None;
        }
        // SAFETY: the slot is ours until `leave`.
        let handle = unsafe { &mut *slot.handle.get() };
        if handle.is_none() {
            *handle = heap.handle_for(cpu);
        }
        let r = handle.as_mut().map(f);
        let state = if handle.is_some() { READY } else { EMPTY };
        slot.leave(self.pinned, state);
        r
    }

    /// Runs `f` with the ready handle of slot `cpu` if it is free for this
    /// call (the fast paths: no heap pointer is loaded, nothing is set up).
    ///
    /// # Safety
    /// `PINNED` only if [`Self::pinned`]'s contract holds for `cpu`.
    #[inline(always)]
    unsafe fn with_ready_handle<const PINNED: bool, R>(
        &self,
        cpu: Option<usize>,
        f: impl FnOnce(&mut Handle<'static>) -> R,
    ) -> Option<R> {
        let slot = self.enter_ready::<PINNED>(cpu)?;
        // SAFETY: the slot is ours until `leave`.
        let r = f(unsafe { slot.ready_handle() });
        slot.leave(PINNED, READY);
        Some(r)
    }

    /// Slot `cpu`, taken for this call if its handle is ready.
    #[inline(always)]
    fn enter_ready<const PINNED: bool>(&self, cpu: Option<usize>) -> Option<&Slot> {
        let slot = self.slots.get(cpu?)?;
        slot.enter_ready(PINNED).then_some(slot)
    }

    /// `alloc`'s fast path on slot `cpu`: an object of a fitted class of up
    /// to 2 KiB from the loaded magazine of its ready handle, or `None`
    /// (then [`Self::alloc_other`], which also serves the larger classes).
    /// Nothing in it calls out.
    ///
    /// # Safety
    /// As [`Self::with_ready_handle`]; with `!CLEAR_TAG`, the caller zeroes
    /// bytes 4..8 of the object before anyone else may see it (they hold
    /// its free tag, see `Handle::alloc_cached_as`).
    #[inline(always)]
    pub(crate) unsafe fn alloc_fast<const PINNED: bool, const CLEAR_TAG: bool>(
        &self,
        cpu: Option<usize>,
        layout: Layout,
    ) -> Option<NonNull<u8>> {
        let k = slab::fit_key(layout.size(), layout.align())?;
        // SAFETY: forwarded.
        unsafe { self.with_ready_handle::<PINNED, _>(cpu, |h| h.alloc_fitted_as::<CLEAR_TAG>(k)) }?
    }

    /// Every allocation [`Self::alloc_fast`] leaves: larger sizes and
    /// alignments and empty magazines through slot `cpu`'s ready handle,
    /// else [`Self::alloc_slow`]. Null if the allocation fails.
    ///
    /// # Safety
    /// As [`Self::with_ready_handle`].
    #[inline(never)]
    pub(crate) unsafe fn alloc_other<const PINNED: bool>(
        &self,
        cpu: Option<usize>,
        layout: Layout,
    ) -> *mut u8 {
        let (size, align) = (layout.size(), layout.align());
        // SAFETY: forwarded.
        match unsafe { self.with_ready_handle::<PINNED, _>(cpu, |h| h.alloc_fit(size, align)) } {
            Some(Some(p)) => p.as_ptr(),
            _ => self.alloc_slow(layout),
        }
    }

    /// [`Self::alloc_fast`], else [`Self::alloc_other`].
    ///
    /// # Safety
    /// As [`Self::with_ready_handle`].
    #[inline(always)]
    unsafe fn alloc_on<const PINNED: bool>(&self, cpu: Option<usize>, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe {
            match self.alloc_fast::<PINNED, true>(cpu, layout) {
                Some(p) => p.as_ptr(),
                None => self.alloc_other::<PINNED>(cpu, layout),
            }
        }
    }

    /// `dealloc`'s fast path on slot `cpu` (`Handle::free_cached`; a full
    /// magazine is finished out of line): true if `p` is freed, false
    /// having changed nothing (then [`Self::dealloc_slow`]).
    ///
    /// # Safety
    /// As [`Self::with_ready_handle`], and `p` came from `alloc`
    /// (GlobalAlloc's contract).
    #[inline(always)]
    pub(crate) unsafe fn dealloc_fast<const PINNED: bool>(
        &self,
        cpu: Option<usize>,
        p: *mut u8,
    ) -> bool {
        let Some(slot) = self.enter_ready::<PINNED>(cpu) else {
            return false;
        };
        // SAFETY: the slot is ours until `leave`; `p` as the caller promises.
        match unsafe { slot.ready_handle().free_cached(p) } {
            Ok(done) => {
                slot.leave(PINNED, READY);
                done
            }
            Err(full) => {
                // SAFETY: the slot is still ours; `full` is its handle's.
                unsafe { slot.overflow_and_leave(PINNED, full) };
                true
            }
        }
    }
}

impl<C: CurrentCpu> GlobalHeap<C> {
    /// Every allocation the fast path leaves: the first call of a CPU, the
    /// shared path, an empty heap (the OOM hook may add memory and retry).
    #[cold]
    #[inline(never)]
    pub(crate) fn alloc_slow(&self, layout: Layout) -> *mut u8 {
        let Some(heap) = self.heap() else {
            return ptr::null_mut();
        };
        let (size, align) = (layout.size(), layout.align());
        loop {
            let p = self
                .with_handle(heap, |h| h.alloc_fit(size, align))
                .unwrap_or_else(|| heap.alloc_fit(size, align));
            match (p, self.oom) {
                (Some(p), _) => return p.as_ptr(),
                (None, Some(grow)) if grow(heap, layout) => continue,
                (None, _) => return ptr::null_mut(),
            }
        }
    }

    /// Every free the fast path leaves: first calls of a CPU, the shared
    /// path, blocks above 16 KiB, and bad pointers (to `bad_free`).
    ///
    /// # Safety
    /// As [`GlobalAlloc::dealloc`].
    #[cold]
    #[inline(never)]
    pub(crate) unsafe fn dealloc_slow(&self, p: *mut u8) {
        let Some(heap) = self.heap() else {
            (self.bad_free)(FreeError::Foreign(p as usize));
        };
        // SAFETY: `p` came from `alloc` (GlobalAlloc's contract).
        let r = self
            .with_handle(heap, |h| unsafe { h.try_free(p) })
            // SAFETY: as above.
            .unwrap_or_else(|| unsafe { heap.try_free(p) });
        if let Err(e) = r {
            (self.bad_free)(e);
        }
    }
}

// SAFETY: blocks come from the fitted classes, which honour the layout's
// size and alignment (`Handle::alloc_fit`); frees go back to
// the heap they came from; nothing unwinds unless the bad-free handler does.
unsafe impl<C: CurrentCpu> GlobalAlloc for GlobalHeap<C> {
    #[inline]
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // `pinned` tested once here, not on taking and on giving back the
        // handle.
        let cpu = C::current();
        // SAFETY: PINNED only when `pinned` (its contract is the caller's).
        unsafe {
            if self.pinned {
                self.alloc_on::<true>(cpu, layout)
            } else {
                self.alloc_on::<false>(cpu, layout)
            }
        }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        let cpu = C::current();
        // SAFETY: as in `alloc`; `p` came from `alloc` (GlobalAlloc's contract).
        let freed = unsafe {
            if self.pinned {
                self.dealloc_fast::<true>(cpu, p)
            } else {
                self.dealloc_fast::<false>(cpu, p)
            }
        };
        if !freed {
            // SAFETY: as above.
            unsafe { self.dealloc_slow(p) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let Some(heap) = self.heap() else {
            return ptr::null_mut();
        };
        // In place when the heap can keep the block (the same class, or a
        // page block grown into free buddies or shrunk; aligned as the
        // layout asks).
        // SAFETY: `p` is a live block of ours (GlobalAlloc's contract).
        match unsafe { heap.resize_in_place(NonNull::new_unchecked(p), new_size, layout.align()) } {
            Ok(Some(_)) => return p,
            Ok(None) => {}
            Err(e) => (self.bad_free)(e),
        }
        // A large block that grows moves to where it has room to grow again.
        let roomy = (new_size > layout.size())
            .then(|| heap.alloc_to_grow(new_size.max(layout.align())))
            .flatten();
        // SAFETY: GlobalAlloc's contract for `realloc`.
        let q = roomy.map_or_else(
            || unsafe { self.alloc(Layout::from_size_align_unchecked(new_size, layout.align())) },
            |q| q.as_ptr(),
        );
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
