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
//!   `fetch_or` on a process-wide bitmap) and gives it back at thread exit
//!   (so the heap runs `pinned`: an index is one thread's at a time);
//!   the slot's handle, with what its caches hold, serves the next thread
//!   that takes the index (`reclaim` drains it like any idle CPU's). Threads
//!   beyond `cpus`, and code running while thread-locals are torn down,
//!   use the shared path.
//! * When the heap runs out, the OOM hook reserves one more region from the
//!   system, as large as all regions so far and large enough for the
//!   request, up to [`crate::MAX_REGIONS`] regions (the heap doubles each
//!   time, so 16 regions reach 2^15 times the first); after that an
//!   allocation that finds no memory fails (Rust's alloc error handler).
//! * Freed memory goes back to the OS by itself (unix): once 64 MiB (see
//!   [`MagbuddyAlloc::trim_every`]) have come home from the caches since the
//!   last trim, the heap trims ([`Heap::set_auto_trim`]), so a program that
//!   drops a large working set does not keep its pages.
//! * A free of a pointer the heap refuses writes the error to stderr and
//!   aborts: a global allocator must not unwind.

extern crate std;

use core::alloc::{GlobalAlloc, Layout};
use core::cell::Cell;
use core::sync::atomic::{AtomicBool, AtomicU64, Ordering};
#[cfg(not(unix))]
use std::alloc::System;

use crate::{CurrentCpu, FreeError, GlobalHeap, Heap, HeapConfig, InitError, MAX_CPUS};

/// Alignment of the reserved region (an area, so no space is lost to it).
const REGION_ALIGN: usize = 1 << 20;

/// `alloc_zeroed` of at least this many bytes gives the block's pages back
/// to the OS (`MADV_DONTNEED`: they read as zero, faulted in on first touch,
/// as a fresh mapping's) instead of writing zeros (unix; glibc maps such
/// sizes fresh too).
const ZERO_BY_DISCARD: usize = 256 << 10;

/// Default of [`MagbuddyAlloc::trim_every`]: as the `LD_PRELOAD` shim's.
const TRIM_EVERY: usize = 64 << 20;

/// Reserves `layout.size()` bytes aligned to `layout.align()` for a region:
/// a private anonymous mapping on unix (so discarded pages read as zero),
/// else the system allocator.
fn reserve(layout: Layout) -> *mut u8 {
    #[cfg(unix)]
    {
        let len = layout.size() + layout.align();
        // SAFETY: a fresh private anonymous mapping; no existing memory is touched.
        let p = unsafe {
            libc::mmap(
                core::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return core::ptr::null_mut();
        }
        let start = p as usize;
        let aligned = start.next_multiple_of(layout.align());
        let end = aligned + layout.size();
        // SAFETY: the head and tail are ours (just mapped) and unused.
        unsafe {
            if aligned > start {
                libc::munmap(p, aligned - start);
            }
            if start + len > end {
                libc::munmap(end as *mut libc::c_void, start + len - end);
            }
        }
        aligned as *mut u8
    }
    #[cfg(not(unix))]
    // SAFETY: non-zero size (the callers check).
    unsafe {
        System.alloc(layout)
    }
}

/// Gives the pages of an area that [`Heap::trim`] holds back to the OS.
#[cfg(unix)]
fn discard(p: *mut u8, len: usize) {
    // SAFETY: the heap holds the area while we discard it; our private
    // anonymous mapping reads as zero afterwards.
    unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) };
}

/// Gives back a region from [`reserve`] that no heap uses.
///
/// # Safety
/// `p` came from `reserve(layout)` and nothing uses it.
unsafe fn unreserve(p: *mut u8, layout: Layout) {
    #[cfg(unix)]
    // SAFETY: our mapping of that length (see `reserve`).
    unsafe {
        libc::munmap(p.cast(), layout.size());
    }
    #[cfg(not(unix))]
    // SAFETY: from `System.alloc(layout)`.
    unsafe {
        System.dealloc(p, layout)
    }
}

/// Zeroes a fresh block of `size` bytes at `p` and returns `p` (so that
/// callers end in a tail call): 8 to 128 bytes (a `Box` or small `vec!` of
/// zeros) with a few overlapping stores in line, large page-aligned ones by
/// discarding their pages (unix), others by writing; at least 8 bytes, so
/// an object's free tag (bytes 4..8) is cleared too.
///
/// # Safety
/// `p` is a live block of at least `size` bytes from a region of [`reserve`].
#[inline(always)]
unsafe fn zero(p: *mut u8, size: usize) -> *mut u8 {
    if size.wrapping_sub(8) <= 128 - 8 {
        // SAFETY: forwarded; 8 <= size <= 128.
        unsafe { zero_short(p, size) };
    } else if size >= ZERO_BY_DISCARD {
        // SAFETY: forwarded.
        unsafe { zero_large(p, size) };
    } else {
        // At least 8: blocks of the heap are (so this is in bounds), and
        // bytes 4..8 hold a fast-path object's free tag, left for this
        // zeroing to clear (`alloc_zeroed`).
        // SAFETY: the block is ours and at least `size.max(8)` long.
        unsafe { core::ptr::write_bytes(p, 0, size.max(8)) };
    }
    p
}

/// [`zero`] for 8 to 128 bytes: the first and the last `w` bytes, for the
/// smallest `w` of 8, 16, 32, 64 that is at least half of `size`, cover
/// the block (the two stores overlap when `size < 2w`).
///
/// # Safety
/// `p` is valid for writes of `size` bytes, `8 <= size <= 128`.
#[inline(always)]
unsafe fn zero_short(p: *mut u8, size: usize) {
    /// Zeroes `[p, p + W)` and `[p + size - W, p + size)`.
    ///
    /// # Safety
    /// `W <= size` and `p` is valid for writes of `size` bytes.
    #[inline(always)]
    unsafe fn ends<const W: usize>(p: *mut u8, size: usize) {
        // SAFETY: both ranges lie in `[p, p + size)` as `W <= size`.
        unsafe {
            p.cast::<[u8; W]>().write_unaligned([0; W]);
            p.add(size - W).cast::<[u8; W]>().write_unaligned([0; W]);
        }
    }
    // SAFETY: each branch's `W` is at most `size` and at least `size / 2`.
    // Two compares reach any of the four widths.
    unsafe {
        if size <= 32 {
            if size <= 16 {
                ends::<8>(p, size)
            } else {
                ends::<16>(p, size)
            }
        } else if size <= 64 {
            ends::<32>(p, size)
        } else {
            ends::<64>(p, size)
        }
    }
}

/// [`zero`] for blocks of at least `ZERO_BY_DISCARD` bytes.
///
/// # Safety
/// As [`zero`].
#[inline(never)]
unsafe fn zero_large(p: *mut u8, size: usize) {
    #[cfg(unix)]
    if (p as usize) % crate::PAGE_SIZE == 0 {
        // Blocks above 16 KiB are whole pages aligned to their size, inside
        // our private anonymous mapping: discarded pages read as zero.
        let len = size.next_multiple_of(crate::PAGE_SIZE);
        // SAFETY: the block's own pages, which only its owner (us) uses.
        if unsafe { libc::madvise(p.cast(), len, libc::MADV_DONTNEED) } == 0 {
            return;
        }
    }
    // SAFETY: the block is ours and `size` long.
    unsafe { core::ptr::write_bytes(p, 0, size) }
}

/// The adapter; see the module docs.
///
/// # Example
///
/// ```
/// use magbuddy::MagbuddyAlloc;
///
/// // 1 GiB of address space reserved on the first allocation (mapped lazily),
/// // a handle for each of up to 64 threads.
/// #[global_allocator]
/// static ALLOC: MagbuddyAlloc = MagbuddyAlloc::new(1 << 30, 64);
///
/// fn main() {
///     let v = vec![7u8; 100_000];
///     assert!(ALLOC.heap().unwrap().contains(v.as_ptr()));
/// }
/// ```
#[derive(Debug)]
pub struct MagbuddyAlloc {
    bytes: usize,
    cpus: usize,
    inner: GlobalHeap<ThreadSlot>,
    /// Bytes come home between trims by the heap itself (0: never; unix
    /// only, see [`MagbuddyAlloc::trim_every`]).
    #[cfg_attr(not(unix), allow(dead_code))]
    trim_every: usize,
    /// The heap refused the configuration: reported once, not built again.
    refused: AtomicBool,
}

/// Slot indices held by live threads, one bit each (process-wide: a thread's
/// index serves every `MagbuddyAlloc`).
static TAKEN: AtomicU64 = AtomicU64::new(0);

const UNCLAIMED: u32 = u32::MAX;
const NO_SLOT: u32 = u32::MAX - 1;

std::thread_local! {
    /// This thread's slot index (or `UNCLAIMED` / `NO_SLOT`). No destructor,
    /// so reading it needs no "still alive?" check and works while other
    /// thread-locals are torn down.
    static INDEX: Cell<u32> = const { Cell::new(UNCLAIMED) };
    /// Registered at the claim; its destructor gives the index back.
    static RELEASE: ReleaseAtExit = const { ReleaseAtExit };
}

/// Gives the thread's index back at thread exit; later calls of the thread
/// (other thread-locals' destructors) take the shared path.
struct ReleaseAtExit;

impl Drop for ReleaseAtExit {
    fn drop(&mut self) {
        let i = INDEX.with(|c| c.replace(NO_SLOT));
        if (i as usize) < MAX_CPUS {
            // Release: the next thread to take the index (Acquire in
            // `claim`) sees the handle as this thread left it.
            TAKEN.fetch_and(!(1 << i), Ordering::Release);
        }
    }
}

/// The CPU answer of [`MagbuddyAlloc`]: this thread's slot index.
///
/// See the example on [`MagbuddyAlloc`].
#[derive(Debug)]
pub enum ThreadSlot {}

impl ThreadSlot {
    /// This thread's slot index if it holds one (no claim): the fast
    /// paths' answer. One compare: both sentinels are above every index.
    #[inline(always)]
    fn held() -> Option<usize> {
        let i = INDEX.with(Cell::get) as usize;
        (i < MAX_CPUS).then_some(i)
    }
}

impl CurrentCpu for ThreadSlot {
    #[inline(always)]
    fn current() -> Option<usize> {
        ThreadSlot::held().or_else(|| {
            if INDEX.with(Cell::get) == UNCLAIMED {
                claim()
            } else {
                None
            }
        })
    }
}

/// Takes the lowest free slot index for this thread, if any.
#[cold]
fn claim() -> Option<usize> {
    // Relaxed: a guess, validated by the fetch_or.
    let mut taken = TAKEN.load(Ordering::Relaxed);
    let mut got = None;
    while taken != u64::MAX {
        let bit = (!taken).trailing_zeros();
        // Acquire: pairs with the Release of the index's last owner.
        taken = TAKEN.fetch_or(1 << bit, Ordering::Acquire);
        if taken & (1 << bit) == 0 {
            got = Some(bit);
            break;
        }
    }
    INDEX.with(|c| c.set(got.unwrap_or(NO_SLOT)));
    // Register the release; a thread already tearing its thread-locals
    // down cannot, so it gives the index straight back.
    if got.is_some() && RELEASE.try_with(|_| ()).is_err() {
        drop(ReleaseAtExit);
        return None;
    }
    got.map(|b| b as usize)
}

impl MagbuddyAlloc {
    /// An adapter that will reserve `bytes` and allow `cpus` thread handles.
    ///
    /// See the example on [`MagbuddyAlloc`].
    pub const fn new(bytes: usize, cpus: usize) -> Self {
        // SAFETY: `pinned` holds: a slot index belongs to one thread from its
        // claim to its thread exit, so no other thread gets the same answer
        // meanwhile, and a thread never changes its answer.
        let inner = unsafe {
            GlobalHeap::empty()
                .on_bad_free(refuse)
                .on_oom(grow)
                .pinned()
        };
        Self {
            bytes,
            cpus,
            inner,
            trim_every: TRIM_EVERY,
            refused: AtomicBool::new(false),
        }
    }

    /// The same adapter, whose heap trims by itself once `bytes` have come
    /// home from the caches since its last trim ([`Heap::set_auto_trim`];
    /// default 64 MiB, 0 = only when [`MagbuddyAlloc::trim`] is called).
    /// Unix only: elsewhere there is no way to discard pages.
    pub const fn trim_every(mut self, bytes: usize) -> Self {
        self.trim_every = bytes;
        self
    }

    /// The heap, built on first call. `None` if the system refused the region
    /// or the heap refused the configuration (reported on stderr).
    ///
    /// # Example
    ///
    /// ```
    /// use magbuddy::MagbuddyAlloc;
    ///
    /// // Not the global allocator here: a heap of its own, used through `heap()`.
    /// static ALLOC: MagbuddyAlloc = MagbuddyAlloc::new(16 << 20, 4);
    ///
    /// let heap = ALLOC.heap().unwrap(); // reserves the region on the first call
    /// let p = heap.alloc(100).unwrap();
    /// // SAFETY: `p` came from this heap and is not used afterwards.
    /// unsafe { heap.free(p.as_ptr()) };
    /// ```
    pub fn heap(&self) -> Option<&'static Heap> {
        self.inner.heap().or_else(|| self.build())
    }

    /// Sends cached memory home ([`Heap::reclaim`]) and gives the pages of
    /// every wholly free area back to the OS ([`Heap::trim`],
    /// `MADV_DONTNEED`: they read as zero when used again); returns the
    /// bytes given back (0 where that is not available).
    ///
    /// # Example
    ///
    /// ```
    /// use core::alloc::{GlobalAlloc, Layout};
    /// use magbuddy::MagbuddyAlloc;
    ///
    /// static ALLOC: MagbuddyAlloc = MagbuddyAlloc::new(16 << 20, 4);
    ///
    /// let layout = Layout::from_size_align(4 << 20, 4096).unwrap();
    /// // SAFETY: a non-zero-sized layout; the block is written, then freed once.
    /// unsafe {
    ///     let p = ALLOC.alloc(layout);
    ///     p.write_bytes(1, layout.size()); // touches 4 MiB of pages
    ///     ALLOC.dealloc(p, layout);
    /// }
    /// // The freed areas' pages go back to the OS (unix).
    /// assert!(ALLOC.trim() >= 4 << 20);
    /// ```
    pub fn trim(&self) -> usize {
        let Some(heap) = self.inner.heap() else {
            return 0;
        };
        heap.reclaim();
        #[cfg(unix)]
        return heap.trim(discard);
        #[cfg(not(unix))]
        0
    }

    /// Every allocation the fast path leaves ([`GlobalHeap::alloc_other`]);
    /// the first of all builds the heap and tries again.
    #[inline(never)]
    fn alloc_other(&self, layout: Layout) -> *mut u8 {
        // SAFETY: PINNED: `inner` is pinned (see `new`).
        let p = unsafe { self.inner.alloc_other::<true>(ThreadSlot::held(), layout) };
        if p.is_null() {
            return self.alloc_first(layout);
        }
        p
    }

    /// An allocation that failed, maybe because it is the first: builds
    /// the heap if there is none yet and tries again.
    #[cold]
    #[inline(never)]
    fn alloc_first(&self, layout: Layout) -> *mut u8 {
        if self.inner.heap().is_some() || self.build().is_none() {
            return core::ptr::null_mut();
        }
        self.inner.alloc_slow(layout)
    }

    /// `alloc_zeroed` past the fast path, out of line.
    #[inline(never)]
    fn alloc_zeroed_other(&self, layout: Layout) -> *mut u8 {
        let p = self.alloc_other(layout);
        if p.is_null() {
            return p;
        }
        // SAFETY: a fresh block of at least `layout.size()` bytes.
        unsafe { zero(p, layout.size()) }
    }

    #[cold]
    fn build(&self) -> Option<&'static Heap> {
        // Relaxed: a flag that only stops repeated attempts.
        if self.refused.load(Ordering::Relaxed) {
            return None;
        }
        let layout = Layout::from_size_align(self.bytes, REGION_ALIGN).ok()?;
        if layout.size() == 0 {
            if !self.refused.swap(true, Ordering::Relaxed) {
                report(InitError::TooSmall { len: 0, min: 1 });
            }
            return None;
        }
        let region = reserve(layout);
        if region.is_null() {
            return None;
        }
        // SAFETY: the region is ours alone and never given back once used.
        match unsafe {
            self.inner
                .init(region, self.bytes, HeapConfig::new(self.cpus))
        } {
            Ok(heap) => {
                #[cfg(unix)]
                heap.set_auto_trim(self.trim_every, discard);
                Some(heap)
            }
            Err(e) => {
                // SAFETY: reserved above with this layout; no heap uses it
                // (ours was not published).
                unsafe { unreserve(region, layout) };
                // Relaxed: as above (two racing reports are harmless).
                if e != InitError::AlreadyInitialized && !self.refused.swap(true, Ordering::Relaxed)
                {
                    report(e);
                }
                self.inner.heap()
            }
        }
    }
}

/// The OOM hook: reserves one more region from the system, as large as all
/// regions so far (the heap doubles) and large enough for `layout` (twice
/// its block, aligned to it, so a block-aligned range lies past the
/// region's metadata), and adds it. `false` once the heap holds
/// [`crate::MAX_REGIONS`] regions or the system refuses: the allocation
/// fails. One thread grows at a time; the others retry once it is done.
#[cold]
fn grow(heap: &'static Heap, layout: Layout) -> bool {
    static GROWING: AtomicBool = AtomicBool::new(false);
    // Acquire: the winner's new region (added before its Release below).
    if GROWING.swap(true, Ordering::Acquire) {
        while GROWING.load(Ordering::Acquire) {
            std::thread::yield_now();
        }
        return true;
    }
    let grown = add_region_for(heap, layout);
    // Release: publishes the added region to the threads waiting above.
    GROWING.store(false, Ordering::Release);
    grown
}

fn add_region_for(heap: &'static Heap, layout: Layout) -> bool {
    let block = heap.block_size(layout.size().max(layout.align()));
    let config = HeapConfig::new(heap.cpus());
    let Some(len) = block
        .checked_mul(2)
        .and_then(|b| b.checked_add(Heap::min_region_len(config)))
        .map(|need| need.max(heap.stats().region_bytes))
    else {
        return false;
    };
    let Ok(region_layout) = Layout::from_size_align(len, block.clamp(REGION_ALIGN, 1 << 30)) else {
        return false;
    };
    let region = reserve(region_layout);
    if region.is_null() {
        return false;
    }
    // SAFETY: the region is ours alone and stays the heap's for good.
    match unsafe { heap.add_region(region, len) } {
        Ok(()) => true,
        Err(_) => {
            // SAFETY: reserved above with this layout; the heap refused it.
            unsafe { unreserve(region, region_layout) };
            false
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
        // The fast path: the thread's slot, if it holds one, and its ready
        // handle's magazine; `pinned` is known here, not tested.
        // SAFETY: PINNED: `inner` is pinned (see `new`).
        match unsafe {
            self.inner
                .alloc_fast::<true, true>(ThreadSlot::held(), layout)
        } {
            Some(p) => p.as_ptr(),
            None => self.alloc_other(layout),
        }
    }

    #[inline]
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as in `alloc`.
        // The object's tag is left for `zero`, which clears it (one store
        // fewer than `alloc`'s).
        match unsafe {
            self.inner
                .alloc_fast::<true, false>(ThreadSlot::held(), layout)
        } {
            // SAFETY: a fresh block of at least `layout.size()` bytes; the
            // zeroing clears its tag before the caller gets it.
            Some(p) => unsafe { zero(p.as_ptr(), layout.size()) },
            None => self.alloc_zeroed_other(layout),
        }
    }

    #[inline]
    unsafe fn dealloc(&self, p: *mut u8, _layout: Layout) {
        // SAFETY: PINNED as in `alloc`; `p` came from `alloc`.
        if !unsafe { self.inner.dealloc_fast::<true>(ThreadSlot::held(), p) } {
            // SAFETY: as above.
            unsafe { self.inner.dealloc_slow(p) }
        }
    }

    #[inline]
    unsafe fn realloc(&self, p: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded.
        unsafe { self.inner.realloc(p, layout, new_size) }
    }
}
