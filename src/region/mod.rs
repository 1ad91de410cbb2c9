//! One contiguous range of memory handed to the heap, and its metadata.
//!
//! The range is viewed through a grid of areas aligned to the area size in the
//! *address space* (so every block is naturally aligned), which may start below
//! and end above the range. The metadata sits at the start of the range:
//!
//! ```text
//!  [Heap + CPU slots (first region only)] [Region] [area words] [area summaries]
//!  [area free counts] [trimmed counts] [chunk words] [page descriptors]
//!  [slab descriptors] pad
//!  | usable pages ... |
//! ```
//!
//! Grid pages outside `[usable_lo, usable_hi)` (the metadata, the alignment
//! gaps and the parts of the edge areas beyond the range) are marked allocated
//! in the buddy words at init and never freed, so the tree needs no special
//! case for them. Init writes every metadata word once: O(metadata), not
//! O(pages of the heap).
//!
//! The region knows the slab grid (one descriptor per `2^SLAB_ORDER` pages)
//! only as a table of cells of the slab layer's descriptor type, which it
//! lays out and constructs but never interprets (`crate::slab` reads it).
//! The region table ([`RegionTable`]) publishes regions to the heap.

mod table;

pub(crate) use table::RegionTable;

use core::marker::PhantomData;
use core::mem::{align_of, size_of};
use core::ptr;

use crate::buddy::{Area, AreaWord, ChunkWord, Geometry};
use crate::cpu::CpuId;
use crate::sync::{AtomicU32, AtomicU64, Ordering};
use crate::{InitError, PAGE_SHIFT, PAGE_SIZE};

/// log2 of pages per slab: the grid of slab descriptors has one cell per
/// `2^SLAB_ORDER` pages.
pub(crate) const SLAB_ORDER: u32 = 2;

/// An area's summary word, a placement hint: the CPU that calls the area
/// home + 1, or 0 for none (the one place this encoding lives).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Summary(pub(crate) u64);

impl Summary {
    /// No CPU calls the area home.
    pub(crate) const NONE: Self = Self(0);

    /// The word naming `cpu` (none: [`Summary::NONE`]).
    pub(crate) const fn of(cpu: Option<CpuId>) -> Self {
        match cpu {
            Some(c) => Self(c.index() as u64 + 1),
            None => Self::NONE,
        }
    }
}

/// A page descriptor: what starts at this page. Lets `free(ptr)` find the
/// block's order without being told its size.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct PageDesc(pub(crate) u32);

impl PageDesc {
    /// Not the first page of a live block.
    pub(crate) const NONE: Self = Self(0);
    const HEAD: u32 = 1 << 31;
    const ORDER_MASK: u32 = 0x3f;

    const SLAB: u32 = 1 << 30;
    /// With `HEAD`: the block sits in a magazine (it is free).
    const CACHED: u32 = 1 << 29;
    /// Instead of `SLAB`: a page of a slab whose objects were never handed
    /// out (not yet opened, see `SlabDesc::take`). No fast path takes it
    /// for a slab page, so a free there is decided by the general path.
    const UNOPENED: u32 = 1 << 28;

    /// First page of a live buddy block of order `k`.
    pub(crate) const fn head(k: u32) -> Self {
        Self(Self::HEAD | k)
    }

    /// Head of a block of order `k` that sits in a magazine.
    pub(crate) const fn cached(k: u32) -> Self {
        Self(Self::HEAD | Self::CACHED | k)
    }

    /// Whether this head belongs to a block in a magazine.
    pub(crate) const fn is_cached(self) -> bool {
        self.0 & (Self::HEAD | Self::CACHED) == Self::HEAD | Self::CACHED
    }

    /// A page of a slab of size class `c` (all four pages say so).
    pub(crate) const fn slab(c: usize) -> Self {
        Self(Self::SLAB | c as u32)
    }

    /// A page of a slab of class `c`: [`PageDesc::slab`] once `open`, else
    /// not opened yet (its objects carry no free tag, and no object of it
    /// was handed out).
    pub(crate) const fn slab_page(c: usize, open: bool) -> Self {
        if open {
            Self::slab(c)
        } else {
            Self(Self::UNOPENED | c as u32)
        }
    }

    /// The size class if this is a page of a slab not opened yet.
    pub(crate) const fn unopened_class(self) -> Option<usize> {
        if self.0 & (Self::HEAD | Self::SLAB | Self::UNOPENED) == Self::UNOPENED {
            Some((self.0 & Self::ORDER_MASK) as usize)
        } else {
            None
        }
    }

    /// The size class if this page belongs to a slab and is opened.
    pub(crate) const fn slab_class(self) -> Option<usize> {
        if self.0 & Self::SLAB != 0 {
            Some((self.0 & Self::ORDER_MASK) as usize)
        } else {
            None
        }
    }

    /// The order `k < n` if this is the head of a live block (not cached, not
    /// a slab page): one subtraction and one compare, for the free fast path.
    #[inline(always)]
    pub(crate) const fn live_order_below(self, n: u32) -> Option<u32> {
        // Wrapping: anything but HEAD with a small order (a cached head, a
        // slab page, NONE) lands at or above `n`.
        let k = self.0.wrapping_sub(Self::HEAD);
        if k < n {
            Some(k)
        } else {
            None
        }
    }

    /// The block order if this is a block head.
    pub(crate) const fn order(self) -> Option<u32> {
        if self.0 & Self::HEAD != 0 {
            Some(self.0 & Self::ORDER_MASK)
        } else {
            None
        }
    }
}

/// Where each metadata array starts, relative to nothing (absolute addresses).
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub(crate) region: usize,
    pub(crate) tops: usize,
    pub(crate) summaries: usize,
    pub(crate) frees: usize,
    pub(crate) trimmed: usize,
    pub(crate) chunks: usize,
    pub(crate) descs: usize,
    pub(crate) slabs: usize,
    /// Bytes of one slab descriptor (the type `Layout::new` was given).
    pub(crate) slab_desc: usize,
    pub(crate) meta_end: usize,
    pub(crate) base: usize,
    pub(crate) areas: usize,
    pub(crate) usable_lo: usize,
    pub(crate) usable_hi: usize,
}

const fn align_up(x: usize, a: usize) -> usize {
    (x + a - 1) & !(a - 1)
}

impl Layout {
    /// Lays out a region's metadata starting at `cursor` (after any heap
    /// header) for the range `[start, end)`, with slab descriptors of type
    /// `D` (the slab layer's). Checks nothing but arithmetic.
    pub(crate) fn new<D>(cursor: usize, start: usize, end: usize, g: Geometry) -> Option<Self> {
        let area_bytes = (g.area_pages() as usize) << PAGE_SHIFT;
        let base = start & !(area_bytes - 1);
        let areas = end.checked_add(area_bytes - 1)? / area_bytes - base / area_bytes;
        let region = align_up(cursor, align_of::<Region>());
        let tops = align_up(region + size_of::<Region>(), align_of::<AtomicU64>());
        let summaries = tops + areas * size_of::<AtomicU64>();
        let frees = summaries + areas * size_of::<AtomicU64>();
        let trimmed = frees + areas * size_of::<AtomicU64>();
        let chunks = trimmed + areas * size_of::<AtomicU64>();
        let chunk_words = areas * g.chunks_per_area() as usize;
        let descs = align_up(
            chunks + chunk_words * size_of::<AtomicU64>(),
            align_of::<AtomicU32>(),
        );
        let pages = areas * g.area_pages() as usize;
        let slabs = align_up(descs + pages * size_of::<AtomicU32>(), align_of::<D>());
        let meta_end = slabs.checked_add((pages >> SLAB_ORDER) * size_of::<D>())?;
        let usable_lo = align_up(meta_end, PAGE_SIZE);
        let usable_hi = end & !(PAGE_SIZE - 1);
        Some(Self {
            region,
            tops,
            summaries,
            frees,
            trimmed,
            chunks,
            descs,
            slabs,
            slab_desc: size_of::<D>(),
            meta_end,
            base,
            areas,
            usable_lo,
            usable_hi,
        })
    }

    /// Whether every slab of the grid gets an id: slab ids keep 28 bits for
    /// the slab's place in its region's grid and are stored plus one (0 =
    /// none), so the grid may hold at most `2^28 - 1` slabs (just under
    /// 4 TiB with 16 KiB slabs; the grid starts at the area boundary below
    /// the range, so it may be up to an area larger than the range).
    pub(crate) fn ids_fit(&self, g: Geometry) -> bool {
        if crate::mutant::on(crate::mutant::Mutant::SlabIdsWrap) {
            // The old bound: the range's own pages below 2^30.
            return (self.usable_hi - self.usable_lo) >> PAGE_SHIFT < 1 << 30;
        }
        (self.areas << g.area_order()) >> SLAB_ORDER <= MAX_GRID_SLABS
    }

    /// Whether at least one whole area is usable: the documented minimum.
    pub(crate) fn has_whole_area(&self, g: Geometry) -> bool {
        let area_bytes = (g.area_pages() as usize) << PAGE_SHIFT;
        let first = align_up(self.usable_lo, area_bytes);
        first < self.usable_hi && self.usable_hi - first >= area_bytes
    }
}

/// Most slabs a region's grid may hold (see [`Layout::ids_fit`]).
pub(crate) const MAX_GRID_SLABS: usize = (1 << 28) - 1;

/// A region's usable range and the descriptor of its first page: what a
/// fast path needs to go from an address to its descriptor. A handle keeps
/// a copy of its heap's first region's, which saves loading the region.
#[derive(Clone, Copy)]
pub(crate) struct Usable<'r> {
    /// `usable_lo`, a page boundary.
    lo: usize,
    /// `usable_hi - usable_lo`, for one-compare range checks.
    len: usize,
    /// The descriptor of the page at `lo`.
    descs: *const AtomicU32,
    _region: PhantomData<&'r Region>,
}

impl<'r> Usable<'r> {
    /// The descriptor of the page holding `addr`, if `addr` is in the
    /// range: one compare (wrapping: below the range is huge), and one
    /// subtraction fewer than `desc(page_of(addr))`.
    #[inline(always)]
    pub(crate) fn desc_of(&self, addr: usize) -> Option<&'r AtomicU32> {
        let off = addr.wrapping_sub(self.lo);
        if off >= self.len {
            return None;
        }
        // SAFETY: `lo + off` is a usable address, so its grid page is below
        // the region's `pages()`; initialized in `Region::init`, and the
        // region outlives `'r`.
        Some(unsafe { &*self.descs.add(off >> PAGE_SHIFT) })
    }
}

/// Immutable description of one region plus pointers to its metadata arrays.
pub(crate) struct Region {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) base: usize,
    /// Global number of grid area 0 (`base / area_bytes`): runs of areas are
    /// aligned on it so multi-area blocks are naturally aligned.
    pub(crate) first_area: usize,
    pub(crate) areas: usize,
    pub(crate) usable_lo: usize,
    pub(crate) usable_hi: usize,
    /// `usable_hi - usable_lo`, for one-compare range checks.
    pub(crate) usable_len: usize,
    /// Position in the heap's region table (the high bits of slab ids).
    pub(crate) index: usize,
    pub(crate) g: Geometry,
    tops: *const AtomicU64,
    summaries: *const AtomicU64,
    frees: *const AtomicU64,
    /// Per area, its free count when a trim last looked at it (see
    /// [`Region::trimmed`]).
    trimmed: *const AtomicU64,
    chunks: *const AtomicU64,
    descs: *const AtomicU32,
    /// The descriptor of the page at `usable_lo` (see [`Usable`]).
    usable_descs: *const AtomicU32,
    /// The slab descriptor table (cells of the type given to `init`; see
    /// `slab_cell`).
    slabs: usize,
}

impl Region {
    /// Constructs the region's metadata in place and returns it; every slab
    /// descriptor is `new_desc()`.
    ///
    /// # Safety
    /// * `[l.region, l.meta_end)` lies inside memory the caller owns
    ///   exclusively for the heap's lifetime, and `l` came from
    ///   [`Layout::new`] for `[start, end)` with descriptor type `D`.
    /// * With `zeroed`, that memory reads as zeros, and so does `new_desc()`.
    pub(crate) unsafe fn init<'a, D>(
        new_desc: impl Fn() -> D,
        l: &Layout,
        start: usize,
        end: usize,
        index: usize,
        g: Geometry,
        zeroed: bool,
    ) -> &'a Region {
        let area_pages = g.area_pages() as usize;
        let cpa = g.chunks_per_area() as usize;
        debug_assert_eq!(l.slab_desc, size_of::<D>(), "layout for another descriptor");
        // With core atomics, all-zero bytes are a valid atomic of value 0 and
        // a valid `new_desc()` (caller): in a region that reads as zeros,
        // those writes can be skipped and their pages stay untouched.
        let skip_zero = zeroed && !crate::sync::MODEL_CHECKED;
        let page_of = |addr: usize| (addr - l.base) >> PAGE_SHIFT;
        let (lo, hi) = (page_of(l.usable_lo), page_of(l.usable_hi));
        for a in 0..l.areas {
            // An area wholly inside the usable range has all-zero words (no
            // reserved page): a zeroed region needs no write for it, so
            // init's cost does not grow with the heap (a 4 GiB shim heap
            // visited its 131,072 chunks at every process start).
            if skip_zero && a * area_pages >= lo && (a + 1) * area_pages <= hi {
                continue;
            }
            let mut used = [0u32; 32];
            for (j, u) in used.iter_mut().enumerate().take(cpa) {
                let first = a * area_pages + j * g.chunk_pages() as usize;
                let last = first + g.chunk_pages() as usize;
                // Reserved: the parts of the chunk below `lo` and above `hi`.
                let below = (first, last.min(lo).max(first));
                let above = (hi.clamp(first, last), last);
                let mut word = 0;
                for (from, to) in [below, above] {
                    if from < to {
                        word |=
                            ChunkWord::with_reserved(g, (from - first) as u32, (to - first) as u32)
                                .0;
                        *u += (to - from) as u32;
                    }
                }
                if skip_zero && word == 0 {
                    continue;
                }
                // SAFETY: in bounds of the chunk array laid out by `l`, owned by us.
                unsafe {
                    ptr::write(
                        (l.chunks as *mut AtomicU64).add(a * cpa + j),
                        AtomicU64::new(word),
                    )
                };
            }
            let top = AreaWord::with_counts(g, used[..cpa].iter().copied());
            if skip_zero && top.0 == 0 {
                continue;
            }
            // SAFETY: in bounds of the area and summary arrays laid out by `l`.
            unsafe {
                ptr::write((l.tops as *mut AtomicU64).add(a), AtomicU64::new(top.0));
                ptr::write((l.summaries as *mut AtomicU64).add(a), AtomicU64::new(0));
            }
        }
        if !skip_zero {
            for a in 0..l.areas {
                // SAFETY: in bounds of the free-count and trimmed arrays laid out by `l`.
                unsafe {
                    ptr::write((l.frees as *mut AtomicU64).add(a), AtomicU64::new(0));
                    ptr::write((l.trimmed as *mut AtomicU64).add(a), AtomicU64::new(0));
                }
            }
            for p in 0..l.areas * area_pages {
                // SAFETY: in bounds of the descriptor array laid out by `l`.
                unsafe {
                    ptr::write(
                        (l.descs as *mut AtomicU32).add(p),
                        AtomicU32::new(PageDesc::NONE.0),
                    )
                };
            }
            for i in 0..(l.areas * area_pages) >> SLAB_ORDER {
                // SAFETY: in bounds of the slab table laid out by `l`.
                unsafe { ptr::write((l.slabs as *mut D).add(i), new_desc()) };
            }
        }
        let area_bytes = area_pages << PAGE_SHIFT;
        let region = Region {
            start,
            end,
            base: l.base,
            first_area: l.base / area_bytes,
            areas: l.areas,
            usable_lo: l.usable_lo,
            usable_hi: l.usable_hi,
            usable_len: l.usable_hi - l.usable_lo,
            index,
            g,
            tops: l.tops as *const AtomicU64,
            summaries: l.summaries as *const AtomicU64,
            frees: l.frees as *const AtomicU64,
            trimmed: l.trimmed as *const AtomicU64,
            chunks: l.chunks as *const AtomicU64,
            descs: l.descs as *const AtomicU32,
            // In bounds: `usable_lo` is a page of the grid.
            usable_descs: (l.descs as *const AtomicU32).wrapping_add(lo),
            slabs: l.slabs,
        };
        // SAFETY: `l.region` is aligned for Region and inside our memory.
        unsafe {
            ptr::write(l.region as *mut Region, region);
            &*(l.region as *const Region)
        }
    }

    /// Area `a` of the grid.
    #[inline]
    pub(crate) fn area(&self, a: usize) -> Area<'_> {
        debug_assert!(a < self.areas);
        let cpa = self.g.chunks_per_area() as usize;
        // SAFETY: `a < areas`; the arrays hold `areas` and `areas * cpa` words,
        // initialized in `init` and alive as long as `self`.
        unsafe {
            Area {
                top: &*self.tops.add(a),
                chunks: core::slice::from_raw_parts(self.chunks.add(a * cpa), cpa),
                frees: &*self.frees.add(a),
                g: self.g,
            }
        }
    }

    /// Placement hint of area `a` (a [`Summary`] word).
    #[inline]
    pub(crate) fn summary(&self, a: usize) -> &AtomicU64 {
        debug_assert!(a < self.areas);
        // SAFETY: `a < areas`, initialized in `init`.
        unsafe { &*self.summaries.add(a) }
    }

    /// Steps that gave pages back in area `a` (see `Area::gave_back`).
    #[inline]
    pub(crate) fn free_count(&self, a: usize) -> &AtomicU64 {
        debug_assert!(a < self.areas);
        // SAFETY: `a < areas`, initialized in `init`.
        unsafe { &*self.frees.add(a) }
    }

    /// Area `a`'s free count ([`Region::free_count`]) as a trim last left
    /// it: while the two are equal, no step gave pages back in the area
    /// since that trim found it in use or gave its pages back (or since
    /// init), so it cannot have become wholly free with pages used since,
    /// and the heap's own trims skip it.
    #[inline]
    pub(crate) fn trimmed(&self, a: usize) -> &AtomicU64 {
        debug_assert!(a < self.areas);
        // SAFETY: `a < areas`, initialized in `init`.
        unsafe { &*self.trimmed.add(a) }
    }

    /// Descriptor of grid page `p`.
    #[inline]
    pub(crate) fn desc(&self, p: usize) -> &AtomicU32 {
        debug_assert!(p < self.pages());
        // SAFETY: `p < pages()`, initialized in `init`.
        unsafe { &*self.descs.add(p) }
    }

    /// Descriptor of the page holding address `p` (in this region).
    #[inline(always)]
    pub(crate) fn desc_of(&self, p: usize) -> &AtomicU32 {
        self.desc(self.page_of(p))
    }

    /// The usable range and its descriptors, for a copy kept where a fast
    /// path runs (see [`Usable`]).
    #[inline]
    pub(crate) fn usable_range(&self) -> Usable<'_> {
        Usable {
            lo: self.usable_lo,
            len: self.usable_len,
            descs: self.usable_descs,
            _region: PhantomData,
        }
    }

    /// Cell of the slab descriptor table that holds grid page `p`.
    ///
    /// # Safety
    /// `D` is the descriptor type the region was built with ([`Region::init`]).
    #[inline]
    pub(crate) unsafe fn slab_cell<D>(&self, p: usize) -> &D {
        debug_assert!(p < self.pages());
        // SAFETY: `p >> SLAB_ORDER` is below the table length; the cell was
        // constructed as a `D` in `init` (caller) and lives as long as `self`.
        unsafe { &*(self.slabs as *const D).add(p >> SLAB_ORDER) }
    }

    /// Grid pages (areas × pages per area).
    #[inline]
    pub(crate) fn pages(&self) -> usize {
        self.areas << self.g.area_order()
    }

    /// Whether `addr` lies in the caller's range.
    #[inline]
    pub(crate) fn contains(&self, addr: usize) -> bool {
        (self.start..self.end).contains(&addr)
    }

    /// Grid page of an address inside the grid.
    #[inline]
    pub(crate) fn page_of(&self, addr: usize) -> usize {
        (addr - self.base) >> PAGE_SHIFT
    }

    /// Address of grid page `p`.
    #[inline]
    pub(crate) fn addr_of(&self, p: usize) -> usize {
        self.base + (p << PAGE_SHIFT)
    }

    /// Whether page `p` can be handed out.
    #[inline]
    pub(crate) fn usable(&self, p: usize) -> bool {
        let a = self.addr_of(p);
        a >= self.usable_lo && a < self.usable_hi
    }

    /// Loads descriptor `p` (Relaxed: a snapshot for reports; frees use the
    /// descriptor CAS, which orders itself).
    pub(crate) fn desc_snapshot(&self, p: usize) -> PageDesc {
        PageDesc(self.desc(p).load(Ordering::Relaxed))
    }

    /// Metadata bytes of this region by array, with slab descriptors of
    /// `slab_desc` bytes. Bytes of the caller's range that are neither
    /// metadata nor usable (alignment) are what remains.
    pub(crate) fn metadata(&self, slab_desc: usize) -> [(&'static str, usize); 8] {
        let words = |n: usize| n * size_of::<AtomicU64>();
        [
            (
                "region headers",
                self.tops as usize - self as *const Self as usize,
            ),
            ("area words", words(self.areas)),
            ("area summaries", words(self.areas)),
            ("area free counts", words(self.areas)),
            ("area trimmed counts", words(self.areas)),
            (
                "chunk words",
                words(self.areas * self.g.chunks_per_area() as usize),
            ),
            ("page descriptors", self.pages() * size_of::<AtomicU32>()),
            ("slab descriptors", (self.pages() >> SLAB_ORDER) * slab_desc),
        ]
    }

    /// Validates a caller's range before any write.
    pub(crate) fn check_range(start: *mut u8, len: usize) -> Result<(usize, usize), InitError> {
        if start.is_null() {
            return Err(InitError::NullStart);
        }
        let s = start as usize;
        let e = s.checked_add(len).ok_or(InitError::Overflow)?;
        Ok((s, e))
    }
}

#[cfg(all(test, not(any(loom, shuttle))))]
mod tests {
    use super::*;

    /// The largest grid `ids_fit` accepts gives every slab of the last
    /// region an id below `u32::MAX`, so `id + 1` (the stacks' and current
    /// slabs' "0 = none" encoding) never wraps; one area more is refused.
    #[test]
    fn slab_ids_of_the_largest_grid_fit_with_room_for_plus_one() {
        let g = Geometry::DEFAULT;
        let area_bytes = (g.area_pages() as usize) << PAGE_SHIFT;
        let slabs_per_area = (g.area_pages() as usize) >> SLAB_ORDER;
        let areas = MAX_GRID_SLABS / slabs_per_area;
        let fits = |areas: usize| {
            let l = Layout::new::<[u64; 4]>(0, 0, areas * area_bytes, g).unwrap();
            l.ids_fit(g)
        };
        assert!(fits(areas));
        assert!(!fits(areas + 1));
        let last_slab = (areas * slabs_per_area - 1) as u32;
        let id = (((crate::MAX_REGIONS - 1) as u32) << 28) | last_slab;
        assert!(id.checked_add(1).is_some(), "id {id:#x} + 1 wraps");
    }
}
