//! Page-level buddy allocator of the baseline, with O(1) free-list operations.
//!
//! # Representation
//!
//! Every usable page of every region has a [`PageDesc`] (24 bytes, in an array
//! at the start of its region). Pages are named by a *global index*: region `r`
//! owns indices `first_r .. first_r + npages_r`, handed out in the order regions
//! are added, so one `u32` names a page anywhere and `u32::MAX` ([`NIL`]) is
//! "none". A block of order `k` is `PAGE_SIZE << k` bytes, aligned to its size
//! in *absolute* addresses (so a block of size `s` is aligned to `s`, as the
//! seed requires), and lies inside one region.
//!
//! Invariants (checked by `SpinHeap::validate`):
//!
//! * **Tiling.** The descriptors of a region are a sequence of blocks: the first
//!   page of each block is a *head* (`Free`, `Alloc` or `Slab`, with the block's
//!   order), every other page is `Tail`. Blocks never overlap because the tiling
//!   is a partition.
//! * **Free lists.** `heads[k]` starts a doubly-linked list (through `next` and
//!   `prev` of the head descriptors) holding exactly the `Free` heads of order
//!   `k`; `free_count[k]` is its length and bit `k` of `nonempty` is
//!   `free_count[k] > 0`. Unlinking a known block is therefore O(1), which is
//!   what makes merging cheap.
//! * **Coalesced.** No free block of order `k` has its buddy (`addr ^ size`)
//!   free with order `k` as well: `free` merges until that holds.
//!
//! `alloc(k)` pops the smallest non-empty order `j >= k` (one `trailing_zeros`
//! over `nonempty`) and splits `j - k` times; `free` merges at most
//! `ORDERS - 1` times. Both are O(log heap) with O(1) work per level, never a
//! list walk. Finding the head of a page that is a `Tail` (only for interior
//! pointers and multi-page slabs) tries the `ORDERS` possible aligned heads.

use crate::{FreeError, MAX_REGIONS, ORDERS, PAGE_SHIFT, PAGE_SIZE};

/// "No page" in links and list heads.
pub(super) const NIL: u32 = u32::MAX;

/// What a page descriptor describes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub(super) enum Kind {
    /// Not the first page of its block.
    Tail,
    /// Head of a free block (on `heads[order]`).
    Free,
    /// Head of a block handed out by `alloc` (larger than a slab object).
    Alloc,
    /// Head of a block cut into slab objects (see `slab.rs`).
    Slab,
}

/// Per-page metadata. Only the fields named for a kind are meaningful.
#[repr(C)]
pub(super) struct PageDesc {
    /// `Slab`: allocation bitmap when the slab has at most 64 objects.
    pub(super) bits: u64,
    /// `Free`/`Slab`: next block on the same list, or [`NIL`].
    pub(super) next: u32,
    /// `Free`/`Slab`: previous block on the same list, or [`NIL`].
    pub(super) prev: u32,
    /// What this page is.
    pub(super) kind: Kind,
    /// Heads: the block's order.
    pub(super) order: u8,
    /// `Slab`: the size class.
    pub(super) class: u8,
    /// `Slab`: objects handed out.
    pub(super) inuse: u16,
}

impl PageDesc {
    /// A `Tail` descriptor with cleared fields.
    pub(super) const TAIL: PageDesc = PageDesc {
        bits: 0,
        next: NIL,
        prev: NIL,
        kind: Kind::Tail,
        order: 0,
        class: 0,
        inuse: 0,
    };
}

/// One contiguous range handed to the heap.
#[derive(Clone, Copy, Debug)]
pub(super) struct Region {
    /// The range the caller handed over, metadata included.
    pub(super) raw_start: usize,
    /// End (exclusive) of the caller's range.
    pub(super) raw_end: usize,
    /// Address of the first usable page (page-aligned).
    pub(super) base: usize,
    /// `base` as a pointer carrying the region's provenance.
    pub(super) base_ptr: *mut u8,
    /// Usable pages.
    pub(super) npages: u32,
    /// Global index of the first usable page.
    pub(super) first: u32,
    /// `npages` descriptors, owned by the heap.
    pub(super) descs: *mut PageDesc,
}

impl Region {
    const EMPTY: Region = Region {
        raw_start: 0,
        raw_end: 0,
        base: 0,
        base_ptr: core::ptr::null_mut(),
        npages: 0,
        first: 0,
        descs: core::ptr::null_mut(),
    };

    /// End (exclusive) of the usable pages.
    pub(super) fn end(&self) -> usize {
        self.base + ((self.npages as usize) << PAGE_SHIFT)
    }

    /// Global index of the page holding `addr`, if it is a usable page here.
    fn page_of(&self, addr: usize) -> Option<u32> {
        let off = addr.wrapping_sub(self.base);
        (addr >= self.base && off >> PAGE_SHIFT < self.npages as usize)
            .then(|| self.first + (off >> PAGE_SHIFT) as u32)
    }
}

/// The buddy allocator's state: regions, descriptors, free lists, counters.
///
/// Invariant (the safety basis of [`Pages::desc`]): for each of the first
/// `nregions` regions, `descs` points to `npages` initialized descriptors and
/// `base .. end()` to pages, all owned by this heap alone for its lifetime and
/// disjoint from every other region; `Pages` is reached only under the lock.
pub(super) struct Pages {
    regions: [Region; MAX_REGIONS],
    nregions: usize,
    /// Pages over all regions (the next region's `first`).
    pub(super) total_pages: u32,
    heads: [u32; ORDERS],
    /// Free blocks per order.
    pub(super) free_count: [u64; ORDERS],
    /// Allocated blocks (slabs included) per order.
    pub(super) live_count: [u64; ORDERS],
    nonempty: u32,
    /// Free pages over all orders.
    pub(super) free_pages: usize,
    /// Largest order any region was carved into: larger requests always fail.
    pub(super) max_order: u32,
}

const _: () = assert!(ORDERS <= 32, "nonempty is a u32 mask");
const _: () = assert!(core::mem::size_of::<PageDesc>() == 24);

/// Where an address points, as far as the page level can tell.
pub(super) enum Located {
    /// Into a usable page: its global index and the region it is in.
    Page(u32, Region),
    /// Into a region's metadata or alignment gap.
    Metadata,
    /// Into no region.
    Foreign,
}

impl Pages {
    /// No regions yet.
    pub(super) const fn new() -> Self {
        Pages {
            regions: [Region::EMPTY; MAX_REGIONS],
            nregions: 0,
            total_pages: 0,
            heads: [NIL; ORDERS],
            free_count: [0; ORDERS],
            live_count: [0; ORDERS],
            nonempty: 0,
            free_pages: 0,
            max_order: 0,
        }
    }

    /// The regions added so far.
    pub(super) fn regions(&self) -> &[Region] {
        &self.regions[..self.nregions]
    }

    /// The region owning global page `idx`. Regions are few (at most
    /// [`MAX_REGIONS`]) and the first one usually holds the page.
    #[inline]
    pub(super) fn region_of(&self, idx: u32) -> &Region {
        self.regions()
            .iter()
            .find(|r| idx.wrapping_sub(r.first) < r.npages)
            .expect("page index outside every region")
    }

    /// The descriptor of global page `idx`.
    #[inline]
    pub(super) fn desc(&mut self, idx: u32) -> &mut PageDesc {
        let r = self.region_of(idx);
        let p = r.descs.wrapping_add((idx - r.first) as usize);
        // SAFETY: by the `Pages` invariant `r.descs` holds `r.npages`
        // initialized descriptors owned by this heap, `idx - r.first` is below
        // `r.npages` (checked by `region_of`), and `&mut self` (reached only
        // under the lock) makes this the sole reference.
        unsafe { &mut *p }
    }

    /// Address of global page `idx`.
    #[inline]
    pub(super) fn addr_of(&self, idx: u32) -> usize {
        let r = self.region_of(idx);
        r.base + (((idx - r.first) as usize) << PAGE_SHIFT)
    }

    /// Global page `idx` as a pointer (with the region's provenance).
    #[inline]
    pub(super) fn ptr_of(&self, idx: u32) -> *mut u8 {
        let r = self.region_of(idx);
        r.base_ptr
            .wrapping_add(((idx - r.first) as usize) << PAGE_SHIFT)
    }

    /// Head of the free list of order `k`, for `validate`.
    pub(super) fn list_head(&self, k: usize) -> u32 {
        self.heads[k]
    }

    /// Bit `k` set iff the free list of order `k` is non-empty, for `validate`.
    pub(super) fn nonempty(&self) -> u32 {
        self.nonempty
    }

    /// Classifies `addr` by region.
    pub(super) fn locate(&self, addr: usize) -> Located {
        for r in self.regions() {
            if let Some(idx) = r.page_of(addr) {
                return Located::Page(idx, *r);
            }
            if addr >= r.raw_start && addr < r.raw_end {
                return Located::Metadata;
            }
        }
        Located::Foreign
    }

    /// Adds a region whose descriptors are already initialized as a tiling of
    /// free blocks (see [`carve`]): links its free heads into the lists.
    ///
    /// The caller has checked that a region slot is free and that the page
    /// count fits the index space.
    pub(super) fn add_region(&mut self, mut region: Region) {
        region.first = self.total_pages;
        self.regions[self.nregions] = region;
        self.nregions += 1;
        self.total_pages += region.npages;
        let mut i = 0;
        while i < region.npages {
            let idx = region.first + i;
            let order = self.desc(idx).order;
            debug_assert_eq!(self.desc(idx).kind, Kind::Free);
            self.push(idx, order as usize);
            self.max_order = self.max_order.max(order as u32);
            i += 1 << order;
        }
    }

    fn push(&mut self, idx: u32, order: usize) {
        let old = self.heads[order];
        let d = self.desc(idx);
        d.kind = Kind::Free;
        d.order = order as u8;
        d.prev = NIL;
        d.next = old;
        if old != NIL {
            self.desc(old).prev = idx;
        }
        self.heads[order] = idx;
        self.free_count[order] += 1;
        self.nonempty |= 1 << order;
        self.free_pages += 1 << order;
    }

    fn unlink(&mut self, idx: u32, order: usize) {
        let d = self.desc(idx);
        let (prev, next) = (d.prev, d.next);
        if prev == NIL {
            self.heads[order] = next;
        } else {
            self.desc(prev).next = next;
        }
        if next != NIL {
            self.desc(next).prev = prev;
        }
        self.free_count[order] -= 1;
        if self.free_count[order] == 0 {
            self.nonempty &= !(1 << order);
        }
        self.free_pages -= 1 << order;
    }

    /// Allocates a block of `order` (< [`ORDERS`]), marked `Alloc`; `None` if
    /// no free block is large enough.
    pub(super) fn alloc(&mut self, order: usize) -> Option<u32> {
        let avail = self.nonempty >> order;
        if avail == 0 {
            return None;
        }
        let mut j = order + avail.trailing_zeros() as usize;
        let idx = self.heads[j];
        self.unlink(idx, j);
        while j > order {
            j -= 1;
            // The upper half of the block being split becomes a free block.
            self.push(idx + (1 << j), j);
        }
        let d = self.desc(idx);
        d.kind = Kind::Alloc;
        d.order = order as u8;
        self.live_count[order] += 1;
        Some(idx)
    }

    /// Frees the allocated (`Alloc` or `Slab`) block headed by `idx`, merging
    /// with free buddies.
    pub(super) fn free(&mut self, idx: u32) {
        let mut order = self.desc(idx).order as usize;
        debug_assert!(matches!(self.desc(idx).kind, Kind::Alloc | Kind::Slab));
        self.live_count[order] -= 1;
        let r = *self.region_of(idx);
        let mut addr = r.base + (((idx - r.first) as usize) << PAGE_SHIFT);
        while order + 1 < ORDERS {
            let buddy = addr ^ (PAGE_SIZE << order);
            // The buddy must be a whole block inside this region.
            let Some(bidx) = r.page_of(buddy) else { break };
            if ((bidx - r.first) as usize + (1 << order)) > r.npages as usize {
                break;
            }
            let b = self.desc(bidx);
            if b.kind != Kind::Free || b.order as usize != order {
                break;
            }
            self.unlink(bidx, order);
            // The higher of the two halves stops being a head.
            let upper = r.first + ((addr.max(buddy) - r.base) >> PAGE_SHIFT) as u32;
            *self.desc(upper) = PageDesc::TAIL;
            addr = addr.min(buddy);
            order += 1;
        }
        let head = r.first + ((addr - r.base) >> PAGE_SHIFT) as u32;
        self.push(head, order);
    }

    /// Head of the block containing page `idx` of region `r` (found by trying
    /// each order's aligned candidate; the first head met is the block's).
    pub(super) fn find_head(&mut self, idx: u32, r: &Region) -> Option<u32> {
        let addr = r.base + (((idx - r.first) as usize) << PAGE_SHIFT);
        for k in 0..ORDERS as u32 {
            let cand = addr & !((PAGE_SIZE << k) - 1);
            let cidx = r.page_of(cand)?;
            if self.desc(cidx).kind != Kind::Tail {
                return Some(cidx);
            }
        }
        None
    }

    /// Checks that page-aligned `ptr` in block head `idx` can be freed as a
    /// whole block.
    pub(super) fn check_block(&mut self, ptr: usize, head: u32) -> Result<(), FreeError> {
        let start = self.addr_of(head);
        match self.desc(head).kind {
            Kind::Alloc if ptr == start => Ok(()),
            Kind::Alloc => Err(FreeError::Interior { ptr, block: start }),
            Kind::Free if ptr == start => Err(FreeError::DoubleFree(ptr)),
            _ => Err(FreeError::NotAllocated(ptr)),
        }
    }
}

/// Initializes the descriptors of `npages` pages starting at absolute address
/// `base` as a tiling of maximal aligned free blocks (no links yet).
///
/// # Safety
///
/// - `descs` is valid for writing `npages` descriptors and owned by the caller.
pub(super) unsafe fn carve(descs: *mut PageDesc, base: usize, npages: usize) {
    for i in 0..npages {
        // SAFETY: `i < npages` and `descs` is valid for `npages` writes.
        unsafe { descs.add(i).write(PageDesc::TAIL) };
    }
    let mut i = 0;
    while i < npages {
        let addr = base + (i << PAGE_SHIFT);
        // Largest order that is aligned at `addr` and fits in what is left.
        let align = (addr >> PAGE_SHIFT).trailing_zeros();
        let fit = usize::BITS - 1 - (npages - i).leading_zeros();
        let order = align.min(fit).min(ORDERS as u32 - 1);
        // SAFETY: `i < npages`, as above.
        let d = unsafe { &mut *descs.add(i) };
        d.kind = Kind::Free;
        d.order = order as u8;
        i += 1 << order;
    }
}
