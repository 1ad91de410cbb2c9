//! The spinlock baseline: the seed's slab + buddy design under one global lock.
//!
//! This is the design most students build for the lab in `seeds/000` and the
//! one `seeds/001` describes ("buddy allocator under one big lock, slab caches
//! for small sizes, a page-aligned pointer means buddy on free"), written as
//! well as that design allows, so that comparing it with the lock-free `Heap`
//! measures the lock, not a careless baseline (DESIGN §7):
//!
//! * **Slabs** (`slab.rs`): power-of-two classes 8 B …
//!   2 KiB, alignment = size, an allocation bitmap per slab (O(1) alloc and
//!   free, and double frees are detected), at most one empty slab kept per
//!   class, the others go back to the buddy allocator.
//! * **Buddy** (`buddy.rs`): 4 KiB pages, orders up to [`ORDERS`], per-order
//!   doubly-linked free lists through a per-page descriptor table, so a merge
//!   unlinks its buddy in O(1) and `free` needs no size. Larger requests get a
//!   block of `2^ceil(log2 size)` bytes aligned to its size.
//! * **One lock** (`lock.rs`): a test-and-test-and-set spinlock around all of
//!   it, in a pure-spin and a spin-then-yield [`LockMode`]. Critical sections
//!   are O(1) list operations plus at most `ORDERS` split or merge steps; no
//!   list is ever walked under the lock except by [`SpinHeap::validate`].
//!
//! Where the seed tells buddy blocks from slab objects by page alignment
//! (which forces a header in front of every slab's objects), this version asks
//! the page descriptor, so objects need no header and any pointer can be
//! classified: foreign, metadata, interior, not allocated, double free. The
//! seed also keeps empty slabs forever; here one per class is kept and the
//! rest go back to the buddy allocator, and the spares too when it runs short.
//!
//! # Bad input (DESIGN §5)
//!
//! `alloc(0)` and sizes larger than any block the heap can hold return `None`;
//! `free(null)` does nothing. [`SpinHeap::try_free`] reports a pointer outside
//! the heap, into metadata, inside a live block or object, into free memory,
//! or a second free of a block or object, and changes nothing; `free` panics
//! with the same message. A double free is detected whenever the memory has
//! not been handed out again in between (then it frees the new owner's block,
//! which no allocator can tell apart from a correct free). There are no caches,
//! so no `checked` build is needed for this.
//!
//! # Memory layout
//!
//! ```text
//!  init region:  | pad < 4 KiB | n pages ............ | gap | PageDesc × n | SpinHeap | pad < 128 B |
//!  added region: | pad < 4 KiB | n pages ..................... | gap | PageDesc × n | pad < 8 B |
//! ```
//!
//! All metadata lives inside the regions (the seed's requirement). Per page it
//! costs one 24-byte descriptor (0.59 %), plus the fixed [`SpinHeap`] header
//! (2 KiB) and, inside live 8/16/32-byte slabs, the in-page bitmaps.
//!
//! # Handles
//!
//! [`SpinHeap::handle`] hands out up to `cpus` exclusive [`SpinHandle`]s so
//! benchmarks drive this heap exactly like the lock-free one. The baseline keeps
//! nothing per CPU: a handle's operations take the same global lock.

mod buddy;
mod handle;
mod layout;
mod lock;
mod slab;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod tests_init;
#[cfg(test)]
mod tests_mt;
mod validate;

use core::alloc::Layout;
use core::mem::{align_of, size_of};
use core::ptr::NonNull;

use crossbeam_utils::CachePadded;

use self::buddy::{carve, Kind, Located, PageDesc, Pages, Region, NIL};
pub use self::handle::SpinHandle;
use self::layout::{min_len, plan};
use self::lock::SpinLock;
pub use self::lock::{LockMode, SPIN_LIMIT};
use self::slab::{class_of, Slabs, MAX_SMALL};
use crate::sync::{AtomicBool, Ordering};
use crate::{FreeError, InitError, Stats, MAX_CPUS, MAX_REGIONS, ORDERS, PAGE_SIZE};

/// Everything the lock protects.
struct State {
    pages: Pages,
    slabs: Slabs,
    /// Bytes of all regions as handed over.
    region_bytes: usize,
    /// Bytes of the `SpinHeap` header.
    header_bytes: usize,
    /// Bytes of page descriptors.
    desc_bytes: usize,
}

// SAFETY: the raw pointers in `State` point into the heap's own regions, which
// are not tied to any thread; `State` is only reached under the lock.
unsafe impl Send for State {}

impl State {
    /// Allocates a block of `order`, giving back spare slabs if that helps.
    fn pages_alloc(&mut self, order: usize) -> Option<u32> {
        self.pages.alloc(order).or_else(|| {
            self.slabs.release_spares(&mut self.pages);
            self.pages.alloc(order)
        })
    }

    /// Frees `addr` if it is a live block or object start; otherwise reports
    /// why not and changes nothing.
    fn free(&mut self, addr: usize) -> Result<(), FreeError> {
        let (idx, region) = match self.pages.locate(addr) {
            Located::Page(idx, region) => (idx, region),
            Located::Metadata => return Err(FreeError::Metadata(addr)),
            Located::Foreign => return Err(FreeError::Foreign(addr)),
        };
        let head = if self.pages.desc(idx).kind == Kind::Tail {
            self.pages
                .find_head(idx, &region)
                .ok_or(FreeError::NotAllocated(addr))?
        } else {
            idx
        };
        if self.pages.desc(head).kind == Kind::Slab {
            let obj = self.slabs.check(&mut self.pages, addr, head)?;
            self.slabs.free(&mut self.pages, head, obj);
        } else {
            self.pages.check_block(addr, head)?;
            self.pages.free(head);
        }
        Ok(())
    }
}

const _: () = assert!(align_of::<SpinHeap>() % align_of::<PageDesc>() == 0);
const _: () = assert!(size_of::<PageDesc>() % align_of::<PageDesc>() == 0);

/// The spinlock baseline heap. See the [module docs](self).
///
/// # Example
///
/// ```
/// use magbuddy::baseline::{LockMode, SpinHeap};
///
/// let mut ram = vec![0u8; 1 << 20]; // the baseline needs only a few KiB of metadata
/// // SAFETY: `ram` is ours, used by nothing else, and outlives the heap's use.
/// let heap = unsafe {
///     SpinHeap::init(ram.as_mut_ptr(), ram.len(), 2, LockMode::SpinThenYield(std::thread::yield_now))
/// }
/// .unwrap();
/// let p = heap.alloc(100).unwrap(); // a 128-byte slab object
/// // SAFETY: `p` came from this heap and is not used afterwards.
/// unsafe { heap.free(p.as_ptr()) };
/// heap.validate().unwrap();
/// println!("{}", heap.stats());
/// ```
pub struct SpinHeap {
    lock: SpinLock<State>,
    /// `handles[i]` is true while handle `i` is claimed.
    handles: CachePadded<[AtomicBool; MAX_CPUS]>,
    cpus: usize,
}

// SAFETY: all mutable state is behind the lock (`SpinLock<State>` is `Sync`)
// or atomic; the heap owns its regions, so sharing it between threads is safe.
unsafe impl Sync for SpinHeap {}
// SAFETY: nothing in a `SpinHeap` is tied to the thread that created it.
unsafe impl Send for SpinHeap {}

impl SpinHeap {
    /// Smallest `len` that [`SpinHeap::init`] accepts for `start` (any
    /// `cpus`): `start` rounded up to a page, one page, one descriptor
    /// rounded up to 128 bytes, and the 2 KiB header: 6,272 bytes for a
    /// page-aligned start, at most 10,367. `usize::MAX` if no length works
    /// (the address space ends first).
    ///
    /// # Example
    ///
    /// ```
    /// use magbuddy::baseline::SpinHeap;
    ///
    /// let page_aligned = 4096 as *const u8;
    /// assert_eq!(SpinHeap::min_len(page_aligned, 1), 6272);
    /// assert_eq!(SpinHeap::min_region_len(page_aligned), 4120);
    /// ```
    pub fn min_len(start: *const u8, cpus: usize) -> usize {
        let _ = cpus; // Handles are a fixed array: the CPU count costs nothing.
        min_len(
            start as usize,
            size_of::<SpinHeap>(),
            align_of::<SpinHeap>(),
        )
    }

    /// Smallest `len` that [`SpinHeap::add_region`] accepts for `start`:
    /// `start` rounded up to a page, one page and one descriptor: 4,120 bytes
    /// for a page-aligned start, at most 8,215.
    ///
    /// ```
    /// use magbuddy::baseline::SpinHeap;
    ///
    /// // Page-aligned: one page and one descriptor.
    /// assert_eq!(SpinHeap::min_region_len(4096 as *const u8), 4120);
    /// ```
    pub fn min_region_len(start: *const u8) -> usize {
        min_len(start as usize, 0, align_of::<PageDesc>())
    }

    /// Builds a heap inside `[start, start + len)` for `cpus` handles. The
    /// start is rounded up as needed; all metadata lives in the region. Fails
    /// with an error (never a crash) for a null start, an overflowing end, a
    /// CPU count outside `1..=MAX_CPUS`, a region shorter than
    /// [`SpinHeap::min_len`], or one with 2^32 pages or more.
    ///
    /// # Safety
    ///
    /// - `[start, start + len)` is valid for reads and writes and is used by
    ///   nothing but the returned heap for `'a`.
    ///
    /// ```
    /// use magbuddy::baseline::{LockMode, SpinHeap};
    /// use magbuddy::InitError;
    ///
    /// let mut ram = vec![0u8; 64 << 10];
    /// // SAFETY: `ram` is ours, used by nothing else, and outlives the heap's use.
    /// let heap = unsafe { SpinHeap::init(ram.as_mut_ptr(), ram.len(), 4, LockMode::Spin) }.unwrap();
    /// assert!(heap.alloc(4096).is_some());
    /// let mut other = vec![0u8; 64 << 10];
    /// // SAFETY: as above.
    /// let e = unsafe { SpinHeap::init(other.as_mut_ptr(), other.len(), 0, LockMode::Spin) };
    /// assert_eq!(e.err(), Some(InitError::BadCpuCount(0)));
    /// ```
    pub unsafe fn init<'a>(
        start: *mut u8,
        len: usize,
        cpus: usize,
        mode: LockMode,
    ) -> Result<&'a SpinHeap, InitError> {
        if start.is_null() {
            return Err(InitError::NullStart);
        }
        if cpus == 0 || cpus > MAX_CPUS {
            return Err(InitError::BadCpuCount(cpus));
        }
        let addr = start as usize;
        let end = addr.checked_add(len).ok_or(InitError::Overflow)?;
        let too_small = InitError::TooSmall {
            len,
            min: Self::min_len(start, cpus),
        };
        let header = (size_of::<SpinHeap>(), align_of::<SpinHeap>());
        let plan = plan(addr, end, header.0, header.1).ok_or(too_small)?;
        if plan.npages >= NIL as usize {
            return Err(InitError::TooLarge);
        }
        let heap = start.wrapping_add(plan.header - addr).cast::<SpinHeap>();
        let descs = start.wrapping_add(plan.descs - addr).cast::<PageDesc>();
        let state = State {
            pages: Pages::new(),
            slabs: Slabs::new(),
            region_bytes: 0,
            header_bytes: size_of::<SpinHeap>(),
            desc_bytes: 0,
        };
        // SAFETY: `plan` put the header inside the caller's region, aligned
        // for `SpinHeap`, after the descriptors.
        unsafe {
            heap.write(SpinHeap {
                lock: SpinLock::new(state, mode),
                handles: CachePadded::new(core::array::from_fn(|_| AtomicBool::new(false))),
                cpus,
            })
        };
        // SAFETY: just initialized; nobody else can see it yet.
        let heap = unsafe { &mut *heap };
        // SAFETY: `plan` put `npages` descriptors at `descs` and `npages`
        // pages at `base`, all inside the caller's region and disjoint from
        // the header.
        unsafe { carve(descs, plan.base, plan.npages) };
        let region = Region {
            raw_start: addr,
            raw_end: end,
            base: plan.base,
            base_ptr: start.wrapping_add(plan.base - addr),
            npages: plan.npages as u32,
            first: 0,
            descs,
        };
        let state = heap.lock.get_mut();
        state.region_bytes += len;
        state.desc_bytes += plan.npages * size_of::<PageDesc>();
        state.pages.add_region(region);
        Ok(heap)
    }

    /// Adds the further range `[start, start + len)` to the heap (a machine's
    /// RAM comes in several ranges). Its descriptors are written before the
    /// lock is taken, so other CPUs wait only for a few list insertions.
    ///
    /// Errors: null start, overflowing end, shorter than
    /// [`SpinHeap::min_region_len`], [`MAX_REGIONS`] regions already, or 2^32
    /// pages in total. On an error the heap is unchanged (the range may have
    /// been written to).
    ///
    /// # Safety
    ///
    /// - The range is valid for reads and writes and used by nothing but this
    ///   heap for as long as the heap is used.
    /// - It overlaps no region of this heap (not checked).
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::baseline::{LockMode, SpinHeap};
    /// # let mut ram = vec![0u8; 1 << 20];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { SpinHeap::init(ram.as_mut_ptr(), ram.len(), 1, LockMode::Spin) }.unwrap();
    /// let mut more = vec![0u8; 1 << 20];
    /// // SAFETY: `more` is ours, overlaps no region, and outlives the heap's use.
    /// unsafe { heap.add_region(more.as_mut_ptr(), more.len()) }.unwrap();
    /// ```
    pub unsafe fn add_region(&self, start: *mut u8, len: usize) -> Result<(), InitError> {
        if start.is_null() {
            return Err(InitError::NullStart);
        }
        let addr = start as usize;
        let end = addr.checked_add(len).ok_or(InitError::Overflow)?;
        let plan = plan(addr, end, 0, align_of::<PageDesc>()).ok_or(InitError::TooSmall {
            len,
            min: Self::min_region_len(start),
        })?;
        let fits = |st: &State| {
            if st.pages.regions().len() >= MAX_REGIONS {
                Err(InitError::TooManyRegions)
            } else if st.pages.total_pages as usize + plan.npages >= NIL as usize {
                Err(InitError::TooLarge)
            } else {
                Ok(())
            }
        };
        fits(&self.lock.lock())?;
        let descs = start.wrapping_add(plan.descs - addr).cast::<PageDesc>();
        // SAFETY: `plan` put `npages` descriptors at `descs` inside the
        // caller's range, which nothing else uses.
        unsafe { carve(descs, plan.base, plan.npages) };
        let mut st = self.lock.lock();
        fits(&st)?; // Another CPU may have added a region meanwhile.
        debug_assert!(st
            .pages
            .regions()
            .iter()
            .all(|r| r.raw_end <= addr || end <= r.raw_start));
        st.region_bytes += len;
        st.desc_bytes += plan.npages * size_of::<PageDesc>();
        st.pages.add_region(Region {
            raw_start: addr,
            raw_end: end,
            base: plan.base,
            base_ptr: start.wrapping_add(plan.base - addr),
            npages: plan.npages as u32,
            first: 0, // set by `add_region`
            descs,
        });
        Ok(())
    }

    /// Allocates `size` bytes aligned to `2^ceil(log2 size)`. `None` for
    /// `size == 0`, for sizes beyond the largest block the heap could ever
    /// hold (at once), and when memory is out.
    ///
    /// ```
    /// # use magbuddy::baseline::{LockMode, SpinHeap};
    /// # let mut ram = vec![0u8; 1 << 20];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { SpinHeap::init(ram.as_mut_ptr(), ram.len(), 1, LockMode::Spin) }.unwrap();
    /// let p = heap.alloc(5000).unwrap(); // two pages, aligned to 8 KiB
    /// assert_eq!(p.as_ptr() as usize % 8192, 0);
    /// assert!(heap.alloc(0).is_none());
    /// # // SAFETY: `p` came from this heap and is not used afterwards.
    /// # unsafe { heap.free(p.as_ptr()) };
    /// ```
    #[inline]
    pub fn alloc(&self, size: usize) -> Option<NonNull<u8>> {
        if size == 0 {
            return None;
        }
        if size <= MAX_SMALL {
            let mut st = self.lock.lock();
            let st = &mut *st;
            return NonNull::new(st.slabs.alloc(&mut st.pages, class_of(size))?);
        }
        if size > PAGE_SIZE << (ORDERS - 1) {
            return None;
        }
        let order = size
            .div_ceil(PAGE_SIZE)
            .next_power_of_two()
            .trailing_zeros();
        let mut st = self.lock.lock();
        if order > st.pages.max_order {
            return None;
        }
        let idx = st.pages_alloc(order as usize)?;
        NonNull::new(st.pages.ptr_of(idx))
    }

    /// Frees a block returned by this heap's `alloc`. Null is a no-op.
    ///
    /// # Panics
    ///
    /// On bad input, with the [`FreeError`] message naming the pointer (see
    /// [`SpinHeap::try_free`]); the heap is unchanged.
    ///
    /// # Safety
    ///
    /// - If `ptr` is a live block of this heap, nothing uses it afterwards.
    ///
    /// ```
    /// # use magbuddy::baseline::{LockMode, SpinHeap};
    /// # let mut ram = vec![0u8; 1 << 20];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { SpinHeap::init(ram.as_mut_ptr(), ram.len(), 1, LockMode::Spin) }.unwrap();
    /// let p = heap.alloc(64).unwrap().as_ptr();
    /// // SAFETY: `p` is a live block of this heap, not used afterwards.
    /// unsafe { heap.free(p) };
    /// ```
    #[inline]
    pub unsafe fn free(&self, ptr: *mut u8) {
        // SAFETY: the caller's promise, passed on.
        if let Err(e) = unsafe { self.try_free(ptr) } {
            panic!("{e}");
        }
    }

    /// Frees `ptr` if it starts a live block or slab object; null is a no-op.
    /// Otherwise returns why not — [`FreeError::Foreign`], `Metadata`,
    /// `Interior`, `NotAllocated` or `DoubleFree` — and changes nothing.
    /// Every block's and object's state is checked under the lock, so a
    /// double free is caught unless the memory was handed out again between
    /// the two frees (see the module docs).
    ///
    /// # Safety
    ///
    /// - If `ptr` is a live block of this heap, nothing uses it afterwards.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::baseline::{LockMode, SpinHeap};
    /// # let mut ram = vec![0u8; 1 << 20];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { SpinHeap::init(ram.as_mut_ptr(), ram.len(), 1, LockMode::Spin) }.unwrap();
    /// use magbuddy::FreeError;
    ///
    /// let p = heap.alloc(64).unwrap().as_ptr();
    /// // SAFETY: `p` is a live block of this heap, not used afterwards.
    /// unsafe { heap.try_free(p) }.unwrap();
    /// // SAFETY: `p` is not live; the heap reports the double free.
    /// assert!(matches!(unsafe { heap.try_free(p) }, Err(FreeError::DoubleFree(_) | FreeError::NotAllocated(_))));
    /// ```
    pub unsafe fn try_free(&self, ptr: *mut u8) -> Result<(), FreeError> {
        if ptr.is_null() {
            return Ok(());
        }
        self.lock.lock().free(ptr as usize)
    }

    /// Allocates for `layout` (size rounded up to the alignment); `None` for
    /// zero-sized layouts and when memory is out.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::baseline::{LockMode, SpinHeap};
    /// # let mut ram = vec![0u8; 1 << 20];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { SpinHeap::init(ram.as_mut_ptr(), ram.len(), 1, LockMode::Spin) }.unwrap();
    /// use core::alloc::Layout;
    ///
    /// let layout = Layout::from_size_align(40, 64).unwrap();
    /// let p = heap.alloc_layout(layout).unwrap();
    /// assert_eq!(p.as_ptr() as usize % 64, 0);
    /// // SAFETY: `p` came from `alloc_layout(layout)` and is not used afterwards.
    /// unsafe { heap.dealloc_layout(p, layout) };
    /// ```
    #[inline]
    pub fn alloc_layout(&self, layout: Layout) -> Option<NonNull<u8>> {
        if layout.size() == 0 {
            return None;
        }
        self.alloc(layout.size().max(layout.align()))
    }

    /// Frees a block from [`SpinHeap::alloc_layout`].
    ///
    /// # Panics
    ///
    /// On bad input, as [`SpinHeap::free`].
    ///
    /// # Safety
    ///
    /// - As [`SpinHeap::free`]; the layout is not needed and not checked.
    ///
    /// ```
    /// # use magbuddy::baseline::{LockMode, SpinHeap};
    /// # let mut ram = vec![0u8; 1 << 20];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { SpinHeap::init(ram.as_mut_ptr(), ram.len(), 1, LockMode::Spin) }.unwrap();
    /// use core::alloc::Layout;
    ///
    /// let layout = Layout::new::<[u32; 5]>();
    /// let p = heap.alloc_layout(layout).unwrap();
    /// // SAFETY: `p` came from `alloc_layout(layout)` and is not used afterwards.
    /// unsafe { heap.dealloc_layout(p, layout) };
    /// ```
    #[inline]
    pub unsafe fn dealloc_layout(&self, ptr: NonNull<u8>, layout: Layout) {
        let _ = layout;
        // SAFETY: the caller's promise, passed on.
        unsafe { self.free(ptr.as_ptr()) }
    }

    /// Claims one of the `cpus` handles, or `None` if all are taken.
    ///
    /// ```
    /// # use magbuddy::baseline::{LockMode, SpinHeap};
    /// # let mut ram = vec![0u8; 1 << 20];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { SpinHeap::init(ram.as_mut_ptr(), ram.len(), 1, LockMode::Spin) }.unwrap();
    /// let h = heap.handle().unwrap();
    /// assert!(heap.handle().is_none()); // a one-CPU heap
    /// drop(h);
    /// assert!(heap.handle().is_some());
    /// ```
    pub fn handle(&self) -> Option<SpinHandle<'_>> {
        self.handles[..self.cpus]
            .iter()
            .enumerate()
            .find_map(|(i, slot)| {
                // Acquire pairs with the Release in `SpinHandle::drop`: the previous
                // owner's use of this slot happens before ours.
                slot.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
                    .ok()
                    .map(|_| SpinHandle {
                        heap: self,
                        slot: i,
                    })
            })
    }
    /// Claims slot `cpu` (a kernel passes its CPU index), as
    /// [`crate::Heap::handle_for`]. `None` if it is taken or out of range.
    ///
    /// ```
    /// # use magbuddy::baseline::{LockMode, SpinHeap};
    /// # let mut ram = vec![0u8; 1 << 20];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { SpinHeap::init(ram.as_mut_ptr(), ram.len(), 1, LockMode::Spin) }.unwrap();
    /// let h = heap.handle_for(0).unwrap();
    /// assert!(heap.handle_for(0).is_none()); // taken
    /// assert!(heap.handle_for(1).is_none()); // no such slot
    /// # drop(h);
    /// ```
    pub fn handle_for(&self, cpu: usize) -> Option<SpinHandle<'_>> {
        let slot = self.handles[..self.cpus].get(cpu)?;
        // Acquire: as in `handle`.
        slot.compare_exchange(false, true, Ordering::Acquire, Ordering::Relaxed)
            .ok()
            .map(|_| SpinHandle {
                heap: self,
                slot: cpu,
            })
    }

    /// A snapshot of the heap's counters, taken under the lock (exact).
    ///
    /// ```
    /// # use magbuddy::baseline::{LockMode, SpinHeap};
    /// # let mut ram = vec![0u8; 1 << 20];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { SpinHeap::init(ram.as_mut_ptr(), ram.len(), 1, LockMode::Spin) }.unwrap();
    /// let p = heap.alloc(4096).unwrap();
    /// let s = heap.stats();
    /// assert!(s.free_bytes + 4096 <= s.usable_bytes);
    /// println!("{s}");
    /// # // SAFETY: `p` came from this heap and is not used afterwards.
    /// # unsafe { heap.free(p.as_ptr()) };
    /// ```
    pub fn stats(&self) -> Stats {
        self.lock.lock().stats()
    }

    /// Walks all metadata under the lock and reports the first inconsistency:
    /// the descriptors tile every region, free lists match the descriptors and
    /// counters, free buddies are merged, slab bitmaps match their counts and
    /// lists. O(pages): call it at a quiet point.
    ///
    /// ```
    /// # use magbuddy::baseline::{LockMode, SpinHeap};
    /// # let mut ram = vec![0u8; 1 << 20];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { SpinHeap::init(ram.as_mut_ptr(), ram.len(), 1, LockMode::Spin) }.unwrap();
    /// let p = heap.alloc(100).unwrap();
    /// heap.validate().unwrap(); // at a quiet point
    /// # // SAFETY: `p` came from this heap and is not used afterwards.
    /// # unsafe { heap.free(p.as_ptr()) };
    /// ```
    pub fn validate(&self) -> Result<(), &'static str> {
        self.lock.lock().validate()
    }
}
