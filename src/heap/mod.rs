//! The heap front end: regions, the size → path decision, placement across
//! areas, handles and the checks on bad input (DESIGN §3, §5).
//!
//! Placement (LLFree's lesson): each CPU starts at its *home* area; when that
//! cannot serve, it prefers partly used areas near home that no other CPU
//! calls home, then any free area, then any area at all. Whole free areas are
//! thereby kept for blocks of area size and runs of areas. An allocation
//! returns `None` only after a full pass that failed and a second look at every
//! area word that found nothing changed (see [`Heap::alloc`]).

mod free;
mod handle;
mod inspect;
mod object;
mod place;
mod refill;
mod resize;
mod shared;
mod stats;
mod trim;

use core::mem::{align_of, size_of};
use core::ptr::{self, NonNull};

use crossbeam_utils::CachePadded;

pub use handle::{Handle, Overflow};
pub use inspect::ValidateError;
pub use stats::CpuStats;

use crate::buddy::Geometry;
use crate::cpu::CpuId;
use crate::magazine::{
    self, round_size, Depot, DepotLimit, Magazine, MagazinePool, CACHE_CLASSES, MAG_ROUNDS,
};
use crate::region::{Layout, Region, RegionTable};
use crate::slab::{self, SlabDesc, SlabPool, MAX_SMALL, SLAB_BYTES, SLAB_ORDER, SMALL_CLASSES};
use crate::sync::{AtomicU64, AtomicUsize, Ordering};
use crate::{FreeError, InitError, MAX_CPUS, PAGE_SHIFT, PAGE_SIZE};
use handle::CpuSlot;
use place::{Fresh, Hint};
use stats::{Counters, Event, Tally};

/// How to build a heap.
///
/// # Example
///
/// ```
/// use magbuddy::{Geometry, Heap, HeapConfig};
///
/// // 2 CPUs, areas of 64 pages (256 KiB) instead of 1 MiB, over memory that
/// // reads as zeros (so init skips writing zero-valued metadata).
/// let config = HeapConfig {
///     geometry: Geometry::new(4, 6).unwrap(),
///     zeroed: true,
///     ..HeapConfig::new(2)
/// };
/// let len = Heap::min_region_len(config);
/// let mut ram = vec![0u8; len]; // zero-filled
/// // SAFETY: `ram` is ours, reads as zeros and outlives the heap's use.
/// let heap = unsafe { Heap::init_with(ram.as_mut_ptr(), len, config) }.unwrap();
/// assert_eq!(heap.geometry().area_pages(), 64);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct HeapConfig {
    /// CPU slots (handles), 1..=[`MAX_CPUS`].
    pub cpus: usize,
    /// Shape of the buddy tree.
    pub geometry: Geometry,
    /// Rounds per magazine for every cache class (1..=[`crate::MAG_ROUNDS`]);
    /// `None` sizes them from the heap and CPU count (see
    /// [`Heap::cpu_cache_cap`]). For measuring magazine sizes.
    pub magazine_rounds: Option<usize>,
    /// Full magazines the depot may hold, all classes together (one class
    /// may use them all); `None`: `min(cpus, 8)` per cache class. Either way
    /// their bytes stay within `min(cpus, 8)` full magazines of every class.
    /// For tests that must fill the depot and measurements of its size.
    pub depot_magazines: Option<usize>,
    /// The caller promises the region reads as zeros (a fresh anonymous
    /// mapping): init then skips writing metadata whose initial value is
    /// zero (page and slab descriptors, most area and chunk words), so those
    /// pages are not touched until used. Ignored under loom and shuttle,
    /// whose atomics must be constructed.
    pub zeroed: bool,
}

impl HeapConfig {
    /// The default geometry with `cpus` slots.
    ///
    /// See the example on [`HeapConfig`].
    pub const fn new(cpus: usize) -> Self {
        Self {
            cpus,
            geometry: Geometry::DEFAULT,
            magazine_rounds: None,
            depot_magazines: None,
            zeroed: false,
        }
    }
}

/// Areas near home searched for a partly used area before anything else.
const NEAR: usize = 64;

impl core::fmt::Debug for Heap {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Heap")
            .field("cpus", &self.cpus)
            .field("geometry", &self.g)
            .field("regions", &self.regions().count())
            .finish_non_exhaustive()
    }
}

/// A lock-free page-level heap living inside the memory it manages.
///
/// Every operation is lock-free: CAS loops retry only when another thread's
/// CAS succeeded, and nothing waits for another thread.
///
/// # Example
///
/// ```
/// use magbuddy::{Heap, HeapConfig};
///
/// // Any memory the heap may own while it is used (a kernel: a RAM range).
/// let len = Heap::min_region_len(HeapConfig::new(1));
/// let mut ram = vec![0u8; len];
/// // SAFETY: `ram` is ours, used by nothing else, and outlives the heap's use.
/// let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
///
/// let p = heap.alloc(4096).unwrap(); // the shared path; handles are faster
/// assert!(heap.contains(p.as_ptr()));
/// // SAFETY: `p` is a live block of this heap, not used afterwards.
/// unsafe { heap.free(p.as_ptr()) };
/// heap.validate().unwrap();
/// ```
pub struct Heap {
    g: Geometry,
    cpus: usize,
    /// The regions (the first built by init).
    table: RegionTable,
    max_order: AtomicUsize,
    /// Home hint of the shared path (packed region/area).
    cursor: AtomicUsize,
    shared: Counters,
    slots: *const CachePadded<CpuSlot>,
    /// Magazines and the depot (type-stable, in the first region's metadata).
    mags: MagazinePool,
    /// Abandoned slabs and the count of slabs carved from the tree.
    slabs: SlabPool,
    cpu_cap: usize,
    corruptions: AtomicU64,
    first_corruption: AtomicUsize,
    /// Trimming by itself ([`Heap::set_auto_trim`]).
    auto_trim: trim::AutoTrim,
}

// SAFETY: all shared state is atomic; the raw pointer targets the CPU slots,
// which live inside the heap's own region for the heap's whole lifetime.
unsafe impl Sync for Heap {}
// SAFETY: as above; nothing is tied to the creating thread.
unsafe impl Send for Heap {}

/// Magazines in the pool: two per class per CPU, the depot's, spares.
const fn magazine_count(config: &HeapConfig) -> usize {
    config.cpus * 2 * CACHE_CLASSES + depot_magazines(config) + CACHE_CLASSES
}

/// The depot's share of full magazines per class: the bytes it may hold are
/// this many full magazines of every class (see [`DepotLimit`]).
const fn depot_share(cpus: usize) -> usize {
    if cpus < 8 {
        cpus
    } else {
        8
    }
}

/// Full magazines the depot may hold, all classes together (one class may
/// use them all).
const fn depot_magazines(config: &HeapConfig) -> usize {
    match config.depot_magazines {
        Some(n) => n,
        None => depot_share(config.cpus) * CACHE_CLASSES,
    }
}

/// CPU `cpu`'s first home: neighbouring areas, so small blocks stay together
/// and the rest of the region stays whole for large ones.
const fn first_home(cpu: usize, areas: usize) -> usize {
    pack(0, if cpu < areas { cpu } else { areas - 1 })
}

const fn pack(region: usize, area: usize) -> usize {
    (region << 32) | area
}
const fn unpack(home: usize) -> (usize, usize) {
    (home >> 32, home & 0xffff_ffff)
}

impl Heap {
    /// Builds a heap with the default geometry and `cpus` handles inside
    /// `[start, start + len)`. See [`Heap::init_with`].
    ///
    /// # Safety
    /// Same as [`Heap::init_with`].
    ///
    /// # Example
    ///
    /// ```
    /// use magbuddy::{Heap, HeapConfig, InitError};
    ///
    /// // The smallest region that works for 2 CPUs at any start address (about
    /// // 2.1 MiB); here it starts one byte past an allocation, unaligned.
    /// let len = Heap::min_region_len(HeapConfig::new(2));
    /// let mut ram = vec![0u8; len + 1];
    /// let start = ram.as_mut_ptr().wrapping_add(1);
    /// // SAFETY: the range is ours, used by nothing else, and outlives the heap's use.
    /// let heap = unsafe { Heap::init(start, len, 2) }.unwrap();
    /// assert_eq!(heap.cpus(), 2);
    ///
    /// // Too little memory is refused, with the length that would do.
    /// let mut small = vec![0u8; 4096];
    /// // SAFETY: as above.
    /// let e = unsafe { Heap::init(small.as_mut_ptr(), 4096, 2) }.unwrap_err();
    /// assert!(matches!(e, InitError::TooSmall { len: 4096, .. }));
    /// ```
    pub unsafe fn init<'a>(start: *mut u8, len: usize, cpus: usize) -> Result<&'a Heap, InitError> {
        // SAFETY: forwarded from the caller.
        unsafe { Self::init_with(start, len, HeapConfig::new(cpus)) }
    }

    /// Builds a heap inside `[start, start + len)`, all metadata included.
    /// `start` may have any alignment. The range must leave one whole area
    /// (1 MiB by default) after metadata and alignment: any `len` of at least
    /// [`Heap::min_region_len`] does. Work is O(metadata) (about 0.4 % of
    /// `len`: 0.500 % of 64 MiB with 2 CPUs, 0.405 % of 4 GiB with 8, as
    /// `cargo run --release --example demo` prints), independent of how much
    /// of the heap is ever touched.
    ///
    /// # Safety
    /// * The range is valid for reads and writes, owned exclusively by the heap
    ///   for `'a`, and not used by anyone else (including other regions).
    /// * With `config.zeroed`, the range reads as zeros.
    ///
    /// See the example on [`HeapConfig`].
    pub unsafe fn init_with<'a>(
        start: *mut u8,
        len: usize,
        config: HeapConfig,
    ) -> Result<&'a Heap, InitError> {
        if config.cpus == 0 || config.cpus > MAX_CPUS {
            return Err(InitError::BadCpuCount(config.cpus));
        }
        let g = config.geometry;
        // Slabs and the largest cached page blocks (both order 2) must fit an
        // area: the tree serves blocks of at most an area inside one area.
        if g.area_order() < SLAB_ORDER
            && !crate::mutant::on(crate::mutant::Mutant::GeometryUnchecked)
        {
            return Err(InitError::BadGeometry {
                area_pages: g.area_pages(),
                min: 1 << SLAB_ORDER,
            });
        }
        let (s, e) = Region::check_range(start, len)?;
        let heap_at = s.next_multiple_of(align_of::<Heap>());
        let slots_at =
            (heap_at + size_of::<Heap>()).next_multiple_of(align_of::<CachePadded<CpuSlot>>());
        let n_mags = magazine_count(&config);
        let mags_at = (slots_at + config.cpus * size_of::<CachePadded<CpuSlot>>())
            .next_multiple_of(align_of::<Magazine>());
        // The pool plus one: the sentinel loaded where no magazine is.
        let cursor = mags_at + (n_mags + 1) * size_of::<Magazine>();
        let layout = Layout::new::<SlabDesc>(cursor, s, e, g).filter(|l| l.has_whole_area(g));
        let Some(layout) = layout else {
            return Err(InitError::TooSmall {
                len,
                min: Self::min_region_len(config),
            });
        };
        if !layout.ids_fit(g) {
            return Err(InitError::TooLarge);
        }
        let sentinel = (mags_at as *const Magazine).wrapping_add(n_mags);
        // In a range that reads as zeros, all-zero bytes are a valid slot
        // (`CpuSlot::is_blank`): its first holder constructs it
        // (`Heap::handle_for`), so slots no thread claims stay untouched
        // (the shim's 64 were 16 pages resident in every process).
        let skip_zero = config.zeroed && !crate::sync::MODEL_CHECKED;
        for cpu in (0..config.cpus).filter(|_| !skip_zero) {
            // SAFETY: slot `cpu` lies in [slots_at, cursor), inside our range.
            unsafe {
                ptr::write(
                    (slots_at as *mut CachePadded<CpuSlot>).add(cpu),
                    CachePadded::new(CpuSlot::new(first_home(cpu, layout.areas), sentinel)),
                )
            };
        }
        let usable = layout.usable_hi - layout.usable_lo;
        let (mag_cap, cpu_cap) = Self::cache_sizes(usable, config.cpus, config.magazine_rounds);
        let depot_limit = DepotLimit {
            magazines: depot_magazines(&config) as u32,
            bytes: DepotLimit::bytes_for(depot_share(config.cpus), &mag_cap),
        };
        // SAFETY: the pool and its sentinel lie in [mags_at, cursor), inside
        // our range, aligned for Magazine.
        let mags =
            unsafe { MagazinePool::init(mags_at, n_mags, mag_cap, depot_limit, config.zeroed) };
        // SAFETY: the caller gave us the range; the layout lies inside it
        // and was made for `SlabDesc`, whose `new()` is all zeros.
        let region = unsafe { Region::init(SlabDesc::new, &layout, s, e, 0, g, config.zeroed) };
        let heap = Heap {
            g,
            cpus: config.cpus,
            table: RegionTable::new(region),
            max_order: AtomicUsize::new(0),
            cursor: AtomicUsize::new(pack(0, 0)),
            shared: Counters::default(),
            slots: slots_at as *const CachePadded<CpuSlot>,
            mags,
            slabs: SlabPool::new(),
            cpu_cap,
            corruptions: AtomicU64::new(0),
            first_corruption: AtomicUsize::new(0),
            auto_trim: trim::AutoTrim::new(),
        };
        // SAFETY: `heap_at` is aligned for Heap and lies inside our range.
        let heap = unsafe {
            ptr::write(heap_at as *mut Heap, heap);
            &*(heap_at as *const Heap)
        };
        heap.publish(0, region);
        Ok(heap)
    }

    /// Adds a further range to the heap, with its own metadata at its start.
    /// Same minimum as [`Heap::init_with`]. Safe to call while other CPUs
    /// allocate.
    ///
    /// # Safety
    /// * The range is valid for reads and writes, owned exclusively by this heap
    ///   for its whole lifetime, and overlaps no other region of any heap.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// let mut more = vec![0u8; len];
    /// // SAFETY: `more` is ours, overlaps no region, and outlives the heap's use.
    /// unsafe { heap.add_region(more.as_mut_ptr(), len) }.unwrap();
    /// assert!(heap.contains(more.as_ptr().wrapping_add(len - 1)));
    /// ```
    pub unsafe fn add_region(&self, start: *mut u8, len: usize) -> Result<(), InitError> {
        let (s, e) = Region::check_range(start, len)?;
        let layout = Layout::new::<SlabDesc>(s, s, e, self.g).filter(|l| l.has_whole_area(self.g));
        let Some(layout) = layout else {
            return Err(InitError::TooSmall {
                len,
                min: Self::min_region_len(HeapConfig::new(self.cpus)),
            });
        };
        if !layout.ids_fit(self.g) {
            return Err(InitError::TooLarge);
        }
        let index = self.table.reserve().ok_or(InitError::TooManyRegions)?;
        // SAFETY: the caller gave us the range; the layout lies inside it
        // and was made for `SlabDesc`.
        let region = unsafe { Region::init(SlabDesc::new, &layout, s, e, index, self.g, false) };
        self.publish(index, region);
        Ok(())
    }

    fn publish(&self, index: usize, region: &Region) {
        let area_bytes = (self.g.area_pages() as usize) << PAGE_SHIFT;
        // Largest aligned run of wholly usable areas decides the largest order.
        let lo = region.usable_lo.div_ceil(area_bytes);
        let hi = region.usable_hi / area_bytes;
        let run = (0..usize::BITS).rev().find(|&m| {
            let n = 1usize << m;
            lo.checked_next_multiple_of(n)
                .is_some_and(|a| a.checked_add(n).is_some_and(|e| e <= hi))
        });
        let order = self.g.area_order() as usize + run.unwrap_or(0) as usize;
        // Relaxed: max_order only gates requests early; a stale value means a
        // request is searched and refused, or refused before a region lands.
        self.max_order
            .fetch_max(order.min(crate::ORDERS - 1), Ordering::Relaxed);
        self.table.publish(index, region);
    }

    /// The smallest `len` that [`Heap::init_with`] accepts for `config` at any
    /// start address: two areas, a page and the metadata.
    ///
    /// See the example on [`Heap::init`].
    pub fn min_region_len(config: HeapConfig) -> usize {
        let g = config.geometry;
        let area_bytes = (g.area_pages() as usize) << PAGE_SHIFT;
        let header = size_of::<Heap>()
            + (config.cpus + 1) * size_of::<CachePadded<CpuSlot>>()
            + (magazine_count(&config) + 2) * size_of::<Magazine>();
        let mut len = 2 * area_bytes + PAGE_SIZE;
        loop {
            let areas = len.div_ceil(area_bytes) + 1;
            let l =
                Layout::new::<SlabDesc>(header, 0, areas * area_bytes, g).expect("small layout");
            // 128: worst-case alignment of the CPU slots.
            let need = 2 * area_bytes + PAGE_SIZE + l.meta_end + 128;
            if need <= len {
                return len;
            }
            len = need;
        }
    }

    /// Bytes of the block that serves a request of `size` bytes: slab
    /// objects are powers of two from 8 B, larger blocks whole pages in
    /// powers of two.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// assert_eq!(heap.block_size(100), 128); // a slab object
    /// assert_eq!(heap.block_size(5000), 8192); // two pages
    /// ```
    pub fn block_size(&self, size: usize) -> usize {
        if size <= MAX_SMALL {
            slab::class_size(slab::class_of(size))
        } else {
            size.div_ceil(PAGE_SIZE).next_power_of_two() * PAGE_SIZE
        }
    }

    /// Bytes of the block that [`Heap::alloc_fit`] (and
    /// [`Handle::alloc_fit`]) give for `size` bytes aligned to `align`:
    /// the fitted class, else [`Heap::block_size`] of `size.max(align)`.
    /// What a `realloc` compares to keep a block in place.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// assert_eq!(heap.fit_size(100, 16), 112);
    /// assert_eq!(heap.fit_size(100, 128), 128); // 112 is 16-aligned only
    /// assert_eq!(heap.fit_size(5000, 16), 5120); // a multi-page class
    /// assert_eq!(heap.fit_size(6000, 16), 8192); // a page block
    /// ```
    pub fn fit_size(&self, size: usize, align: usize) -> usize {
        match slab::fit_class(size, align) {
            Some(c) => slab::class_size(c),
            None => self.block_size(size.max(align)),
        }
    }

    /// Number of CPU slots.
    ///
    /// See the example on [`Heap::init`].
    pub fn cpus(&self) -> usize {
        self.cpus
    }

    /// The buddy tree's shape.
    ///
    /// See the example on [`HeapConfig`].
    pub fn geometry(&self) -> Geometry {
        self.g
    }

    /// Magazine capacities per cache class and the per-CPU cache cap for a
    /// heap of `usable` bytes and `cpus` CPUs. A magazine may hold about
    /// what the power-of-two classes alone would give it if each CPU kept
    /// `usable / (16 * cpus)` (clamped to 64 KiB – 2 MiB) in one slab per
    /// power-of-two class and two magazines per power-of-two or page class:
    /// the fitted classes get magazines as large rather than shrinking
    /// everyone's (which would send the common classes to their slow paths
    /// more often). The cap is the true sum over every cache class: two
    /// magazines each and one current slab per small class, fitted ones
    /// included.
    fn cache_sizes(
        usable: usize,
        cpus: usize,
        rounds: Option<usize>,
    ) -> ([u32; CACHE_CLASSES], usize) {
        let target = (usable / (16 * cpus)).clamp(64 << 10, 2 << 20);
        let per_magazine = target.saturating_sub(slab::POW2_CLASSES * SLAB_BYTES)
            / (2 * (slab::POW2_CLASSES + magazine::PAGE_CLASSES));
        let caps: [u32; CACHE_CLASSES] = core::array::from_fn(|cc| {
            rounds
                .unwrap_or(per_magazine / round_size(cc))
                .clamp(1, MAG_ROUNDS) as u32
        });
        let magazines: usize = (0..CACHE_CLASSES)
            .map(|cc| 2 * caps[cc] as usize * round_size(cc))
            .sum();
        (caps, magazines + SMALL_CLASSES * SLAB_BYTES)
    }

    /// The most memory one CPU's caches can hold away from other CPUs: two
    /// magazines per cache class plus one slab per small class.
    ///
    /// **No-false-OOM contract.** An allocation returns `None` only if, after
    /// it flushed its own caches, emptied the depot, released every empty
    /// abandoned slab and asked all CPUs to drain, the free memory was still
    /// smaller than the request (in an aligned block) — so memory it could
    /// not reach is bounded by this cap times the number of CPUs holding a
    /// handle that did not call in meanwhile.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// // What CPU 0's caches may hold at most, away from the other CPUs.
    /// let cap = heap.cpu_cache_cap();
    /// // Page blocks of 4 KiB are cached in magazines of this many rounds.
    /// let rounds = heap.magazine_capacity(4096).unwrap();
    /// assert!(2 * rounds * 4096 <= cap);
    /// assert_eq!(heap.magazine_capacity(1 << 20), None); // not cached
    /// ```
    pub fn cpu_cache_cap(&self) -> usize {
        self.cpu_cap
    }

    /// Rounds per magazine for objects (or blocks) of `size` bytes, `None`
    /// above 16 KiB (not cached).
    ///
    /// See the example on [`Heap::cpu_cache_cap`].
    pub fn magazine_capacity(&self, size: usize) -> Option<usize> {
        (size.wrapping_sub(1) < magazine::MAX_CACHED)
            .then(|| self.mags.cap(magazine::cache_class(size)) as usize)
    }

    /// Double frees and similar found where no caller could be told (while
    /// returning magazine rounds to their slabs or the tree), and the first
    /// pointer concerned. Such rounds are dropped, never reused.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// let (found, _first) = heap.corruptions();
    /// assert_eq!(found, 0);
    /// ```
    pub fn corruptions(&self) -> (u64, usize) {
        // Relaxed: report counters.
        (
            self.corruptions.load(Ordering::Relaxed),
            self.first_corruption.load(Ordering::Relaxed),
        )
    }

    #[inline]
    pub(crate) fn depot(&self) -> Depot<'_> {
        self.mags.depot()
    }

    /// Claims any free CPU slot. `None` when all are taken.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// let h = heap.handle().unwrap(); // the only slot of a one-CPU heap
    /// assert!(heap.handle().is_none()); // taken
    /// drop(h); // releases it
    /// assert!(heap.handle().is_some());
    /// ```
    pub fn handle(&self) -> Option<Handle<'_>> {
        (0..self.cpus).find_map(|cpu| self.handle_for(cpu))
    }

    /// Claims CPU slot `cpu` (a kernel passes its CPU index). `None` if it is
    /// taken or out of range.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(2));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 2) }.unwrap();
    /// // One thread per CPU slot, each with its own handle.
    /// std::thread::scope(|s| {
    ///     for cpu in 0..2 {
    ///         s.spawn(move || {
    ///             let mut h = heap.handle_for(cpu).unwrap();
    ///             let p = h.alloc(64).unwrap();
    ///             // SAFETY: `p` came from this heap and is not used afterwards.
    ///             unsafe { h.free(p.as_ptr()) };
    ///         });
    ///     }
    /// });
    /// assert!(heap.handle_for(2).is_none()); // no such slot
    /// ```
    pub fn handle_for(&self, cpu: usize) -> Option<Handle<'_>> {
        if !(cpu < self.cpus && self.slot(cpu).try_claim()) {
            return None;
        }
        let home = first_home(cpu, self.table.first().areas);
        // SAFETY: we just claimed the slot.
        unsafe {
            self.slot(cpu)
                .construct_if_blank(home, self.mags.sentinel())
        };
        Some(Handle::new(self, CpuId::new(cpu)))
    }

    /// Counters of CPU slot `cpu`.
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
    /// let p = h.alloc(64).unwrap();
    /// // SAFETY: `p` came from this heap and is not used afterwards.
    /// unsafe { h.free(p.as_ptr()) };
    /// drop(h); // publishes the counts of magazine hits
    /// let s = heap.cpu_stats(0);
    /// assert_eq!((s.allocs, s.frees), (1, 1));
    /// ```
    pub fn cpu_stats(&self, cpu: usize) -> CpuStats {
        self.slot(cpu).counters.snapshot()
    }

    /// Slabs currently carved from the buddy tree (owned, abandoned or in
    /// use by the shared path).
    ///
    /// See the example on [`Heap::reclaim`].
    pub fn slabs_in_use(&self) -> u64 {
        self.slabs.live()
    }

    /// Counters of the shared (handle-less) path.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// let p = heap.alloc(64).unwrap();
    /// // SAFETY: `p` came from this heap and is not used afterwards.
    /// unsafe { heap.free(p.as_ptr()) };
    /// let s = heap.shared_stats();
    /// assert_eq!((s.allocs, s.frees), (1, 1));
    /// ```
    pub fn shared_stats(&self) -> CpuStats {
        self.shared.snapshot()
    }

    pub(crate) fn slot(&self, cpu: usize) -> &CpuSlot {
        assert!(cpu < self.cpus, "CPU slot {cpu} out of range");
        // SAFETY: `cpu < cpus`; the slots were constructed in init and live as
        // long as the heap.
        unsafe { &*self.slots.add(cpu) }
    }

    /// Published regions, in index order.
    pub(crate) fn regions(&self) -> impl Iterator<Item = &Region> + '_ {
        self.table.iter()
    }

    /// Whether `p` lies in one of the heap's regions (metadata included):
    /// which allocator to hand a pointer to when several serve a program.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// let p = heap.alloc(64).unwrap();
    /// assert!(heap.contains(p.as_ptr()));
    /// assert!(!heap.contains(&0u8)); // not in the heap
    /// # // SAFETY: `p` came from this heap and is not used afterwards.
    /// # unsafe { heap.free(p.as_ptr()) };
    /// ```
    pub fn contains(&self, p: *const u8) -> bool {
        self.region_of(p as usize).is_some()
    }

    /// The region holding `addr` (see [`RegionTable::of`]).
    #[inline]
    pub(crate) fn region_of(&self, addr: usize) -> Option<&Region> {
        self.table.of(addr)
    }

    fn region(&self, index: usize) -> Option<&Region> {
        self.table.get(index)
    }

    /// Block order for `size` bytes, or `None` if zero or beyond the heap.
    #[inline]
    pub(crate) fn order_for(&self, size: usize) -> Option<u32> {
        if size == 0 {
            return None;
        }
        let pages = size.div_ceil(PAGE_SIZE);
        let k = pages.checked_next_power_of_two()?.trailing_zeros();
        // Relaxed: see `publish`.
        (k as usize <= self.max_order.load(Ordering::Relaxed)).then_some(k)
    }

    /// Allocates `size` bytes on the shared path: no handle needed, usable from
    /// interrupt handlers and by any number of threads; never waits for
    /// another thread. The block is aligned to `2^ceil(log2 size)`; objects
    /// of up to 2 KiB come from a slab the call claims for a moment, larger
    /// blocks from the buddy tree. `None` for `size == 0`, sizes beyond the
    /// heap, and when, after a reclaim, a full pass and a second look at every
    /// area word found no block.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// let p = heap.alloc(3000).unwrap(); // one page, aligned to 4 KiB
    /// assert_eq!(p.as_ptr() as usize % 4096, 0);
    /// assert!(heap.alloc(0).is_none());
    /// assert!(heap.alloc(usize::MAX).is_none());
    /// // SAFETY: `p` came from this heap and is not used afterwards.
    /// unsafe { heap.free(p.as_ptr()) };
    /// ```
    pub fn alloc(&self, size: usize) -> Option<NonNull<u8>> {
        self.alloc_shared(
            size,
            (size.wrapping_sub(1) < MAX_SMALL).then(|| slab::class_of(size)),
        )
    }

    /// Allocates on the shared path as [`Handle::alloc_fit`] does on a
    /// handle: the smallest fitted class for `size` bytes aligned to
    /// `align`, else `alloc(size.max(align))`.
    ///
    /// # Example
    ///
    /// ```
    /// # use magbuddy::{Heap, HeapConfig};
    /// # let len = Heap::min_region_len(HeapConfig::new(1));
    /// # let mut ram = vec![0u8; len];
    /// # // SAFETY: `ram` is ours and outlives the heap's use.
    /// # let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 1) }.unwrap();
    /// let p = heap.alloc_fit(24, 8).unwrap(); // a 24-byte object
    /// assert_eq!(heap.usable_size(p.as_ptr()), Ok(24));
    /// // SAFETY: `p` came from this heap and is not used afterwards.
    /// unsafe { heap.free(p.as_ptr()) };
    /// ```
    pub fn alloc_fit(&self, size: usize, align: usize) -> Option<NonNull<u8>> {
        match slab::fit_class(size, align) {
            Some(c) => self.alloc_shared(size, Some(c)),
            None => self.alloc(size.max(align)),
        }
    }

    /// The shared path for `size` bytes, from slab class `class` if any.
    fn alloc_shared(&self, size: usize, class: Option<usize>) -> Option<NonNull<u8>> {
        // Relaxed: a placement hint, any recent value will do.
        let home = self.cursor.load(Ordering::Relaxed);
        let (mut hint, mut tally) = (Hint::new(home, None), Tally::default());
        let p = if let Some(c) = class {
            self.alloc_small_shared(c, &mut hint, &mut tally)
        } else {
            self.order_for(size)
                .and_then(|k| self.alloc_order(k, Fresh::User, &mut hint, &mut tally))
        };
        if hint.home != home {
            // Relaxed: a placement hint; a lost update only costs locality.
            self.cursor.store(hint.home, Ordering::Relaxed);
        }
        self.shared.bump_shared(
            if p.is_some() {
                Event::Alloc
            } else {
                Event::Failed
            },
            1,
        );
        self.shared.record(&tally, false);
        p
    }

    /// Allocates for `layout` on the shared path (size rounded up to the
    /// alignment, so the block is aligned to at least `layout.align()`).
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
    /// let layout = Layout::from_size_align(24, 64).unwrap();
    /// let p = heap.alloc_layout(layout).unwrap();
    /// assert_eq!(p.as_ptr() as usize % 64, 0);
    /// // SAFETY: `p` came from `alloc_layout(layout)` and is not used afterwards.
    /// unsafe { heap.dealloc_layout(p, layout) };
    /// ```
    pub fn alloc_layout(&self, layout: core::alloc::Layout) -> Option<NonNull<u8>> {
        self.alloc(layout.size().max(layout.align()))
    }

    /// Frees a block allocated with `layout`.
    ///
    /// # Safety
    /// Same as [`Heap::free`].
    ///
    /// See the example on [`Heap::alloc_layout`].
    pub unsafe fn dealloc_layout(&self, ptr: NonNull<u8>, layout: core::alloc::Layout) {
        let _ = layout; // the page descriptor knows the size
                        // SAFETY: forwarded from the caller.
        unsafe { self.free(ptr.as_ptr()) }
    }

    /// Frees a block on the shared path. `free(null)` does nothing.
    ///
    /// Always detected, reported, and leaving every state unchanged: a pointer
    /// outside the heap, into its metadata, inside a block but not at its
    /// start, or into free memory (which includes a block freed before: a
    /// double free). Two frees of one block racing each other: exactly one
    /// succeeds, the other reports [`FreeError::DoubleFree`]. A double free
    /// racing with a *reallocation* of the same block cannot be told from a
    /// legitimate free of the new block.
    ///
    /// # Safety
    /// * If `ptr` is a live block of this heap, nobody uses it after this call.
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
    /// let p = heap.alloc(64 << 10).unwrap().as_ptr();
    /// // SAFETY: `p` is a live block of this heap.
    /// assert_eq!(unsafe { heap.try_free(p.wrapping_add(8)) }, Err(FreeError::Interior { ptr: p as usize + 8, block: p as usize }));
    /// // SAFETY: as above; not used afterwards.
    /// unsafe { heap.try_free(p) }.unwrap();
    /// // SAFETY: `p` is no longer live: the heap refuses the second free.
    /// assert!(unsafe { heap.try_free(p) }.is_err());
    /// let mut local = 0u8;
    /// // SAFETY: not a block of this heap.
    /// assert_eq!(unsafe { heap.try_free(&mut local) }, Err(FreeError::Foreign(&local as *const u8 as usize)));
    /// ```
    pub unsafe fn try_free(&self, ptr: *mut u8) -> Result<(), FreeError> {
        let mut tally = Tally::default();
        // SAFETY: forwarded from the caller.
        let r = unsafe { self.free_inner(ptr, &mut tally) };
        self.shared.record(&tally, false);
        if r.is_ok() && !ptr.is_null() {
            self.shared.bump_shared(Event::Free, 1);
        }
        r
    }

    /// Like [`Heap::try_free`] but panics with the error's message (at the
    /// caller's location).
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
    /// let p = heap.alloc(100).unwrap().as_ptr();
    /// // SAFETY: `p` is a live block of this heap, not used afterwards.
    /// unsafe { heap.free(p) };
    /// // SAFETY: null is never a live block.
    /// unsafe { heap.free(core::ptr::null_mut()) }; // a no-op
    /// ```
    #[track_caller]
    pub unsafe fn free(&self, ptr: *mut u8) {
        // SAFETY: forwarded from the caller.
        if let Err(e) = unsafe { self.try_free(ptr) } {
            crate::error::free_failed(e);
        }
    }
}
