//! The free path: from a pointer to its block, with every check on bad
//! input (DESIGN §5) made before any state changes.

use super::stats::{Event, Tally};
use super::Heap;
use core::ptr::NonNull;

use crate::magazine::PAGE_CLASSES;
use crate::region::{PageDesc, Region, Usable};
use crate::slab::{self, SMALL_CLASSES};
use crate::sync::{AtomicU32, Ordering};
use crate::{FreeError, PAGE_SIZE};

/// What a valid pointer is the start of.
pub(super) enum Block {
    /// An object of small class `c` in a slab.
    Object(usize),
    /// A buddy block of order `k`.
    Pages(u32),
}

impl Heap {
    /// The free path without a handle.
    ///
    /// # Safety
    /// As [`Heap::try_free`].
    pub(crate) unsafe fn free_inner(
        &self,
        ptr: *mut u8,
        tally: &mut Tally,
    ) -> Result<(), FreeError> {
        if ptr.is_null() {
            return Ok(());
        }
        let addr = ptr as usize;
        match self.block_at(addr)? {
            (reg, page, Block::Object(c)) => self.free_small_shared(reg, page, c, addr),
            (reg, page, Block::Pages(k)) => {
                // SAFETY: forwarded from the caller.
                unsafe { self.release_block(reg, page, addr, PageDesc::head(k), tally) }?;
                self.came_home(PAGE_SIZE << k);
                Ok(())
            }
        }
    }

    /// Size of the block that starts at `ptr`: what `malloc_usable_size`
    /// needs, so a C shim keeps no size table of its own.
    ///
    /// Refuses exactly what [`Heap::try_free`] refuses when nothing races:
    /// pointers outside the heap, into metadata, inside a block, and to free
    /// blocks (in a cache, on a free list, never allocated).
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
    /// assert_eq!(heap.usable_size(p), Ok(128));
    /// // SAFETY: `p` is a live block of this heap, not used afterwards.
    /// unsafe { heap.free(p) };
    /// assert!(heap.usable_size(p).is_err()); // free memory
    /// ```
    pub fn usable_size(&self, ptr: *const u8) -> Result<usize, FreeError> {
        let addr = ptr as usize;
        match self.block_at(addr)? {
            (reg, page, Block::Object(c)) => {
                self.check_object_live(reg, page, c, addr)?;
                Ok(slab::class_size(c))
            }
            (_, _, Block::Pages(k)) => Ok(PAGE_SIZE << k),
        }
    }

    /// The block `addr` is the start of: its region, grid page and kind.
    /// Every bad pointer is refused here, before any state changes.
    #[inline]
    pub(super) fn block_at(&self, addr: usize) -> Result<(&Region, usize, Block), FreeError> {
        let (reg, page, desc) = self.locate(addr)?;
        if let Some(c) = desc.slab_class() {
            Self::check_object(c, addr)?;
            return Ok((reg, page, Block::Object(c)));
        }
        if let Some(c) = desc.unopened_class() {
            // No object there was ever handed out (see `SlabDesc::take`).
            Self::check_object(c, addr)?;
            return Err(FreeError::NotAllocated(addr));
        }
        // A block in a magazine is free: `DoubleFree`, whatever the build.
        let cached_is_free = !crate::mutant::on(crate::mutant::Mutant::CachedAsLive);
        match desc.order() {
            _ if addr % PAGE_SIZE != 0 => Err(self.classify(reg, page, addr)),
            Some(_) if desc.is_cached() && cached_is_free => Err(FreeError::DoubleFree(addr)),
            Some(k) => Ok((reg, page, Block::Pages(k))),
            None => Err(self.classify(reg, page, addr)),
        }
    }

    /// The region, grid page and descriptor of a pointer inside the usable
    /// part of the heap.
    #[inline]
    fn locate(&self, addr: usize) -> Result<(&Region, usize, PageDesc), FreeError> {
        let first = self.table.first();
        // One compare for the common case (wrapping: below the range is huge).
        let reg = if addr.wrapping_sub(first.usable_lo) < first.usable_len {
            first
        } else {
            self.locate_other(addr)?
        };
        let page = reg.page_of(addr);
        // Acquire: pairs with the Release store of the allocation (block head
        // or slab pages), so the slab descriptor's init is visible too.
        let desc = PageDesc(reg.desc(page).load(Ordering::Acquire));
        Ok((reg, page, desc))
    }

    /// The usable part of any region holding `addr` (beyond the first one).
    #[cold]
    #[inline(never)]
    fn locate_other(&self, addr: usize) -> Result<&Region, FreeError> {
        let reg = self.region_of(addr).ok_or(FreeError::Foreign(addr))?;
        if addr.wrapping_sub(reg.usable_lo) >= reg.usable_len {
            return Err(FreeError::Metadata(addr));
        }
        Ok(reg)
    }

    /// Rejects a pointer into a slab that is not at an object's start.
    /// Slabs are aligned to their size in the address space, so the offset
    /// in the slab decides: [`slab::object_index`] is below the capacity
    /// exactly for object starts, and one compare refuses both interior
    /// pointers and the slots past the capacity, which hold the free bitmap.
    #[inline(always)]
    fn check_object(c: usize, addr: usize) -> Result<(), FreeError> {
        if Self::is_object_start(c, addr) {
            return Ok(());
        }
        Err(Self::bad_object(c, addr))
    }

    /// Whether `addr`, in a slab of class `c`, starts an object below the
    /// capacity.
    #[inline(always)]
    fn is_object_start(c: usize, addr: usize) -> bool {
        slab::object_index(c, addr & (slab::SLAB_BYTES - 1)) < slab::capacity_of(c)
    }

    #[cold]
    #[inline(never)]
    fn bad_object(c: usize, addr: usize) -> FreeError {
        let offset = addr & (slab::SLAB_BYTES - 1);
        let size = slab::class_size(c);
        if offset >= slab::capacity_of(c) * size {
            return FreeError::Metadata(addr);
        }
        FreeError::Interior {
            ptr: addr,
            block: addr - offset % size,
        }
    }

    /// A handle's free fast path: the cache class of `addr` if it is an
    /// object or a block of up to 16 KiB in the first region (`first`, whose
    /// range the handle keeps so as to skip a load), at its start,
    /// and not free, after claiming it (the tag of an object, the `cached`
    /// descriptor of a block). `None` sends every other case down the general
    /// path ([`Heap::claim_cached`]), which decides it and names the error;
    /// so do all objects in `checked` builds.
    #[inline(always)]
    pub(crate) fn fast_claim(first: Usable<'_>, addr: usize) -> Option<usize> {
        let cell = first.desc_of(addr)?;
        // Acquire: as in `locate`.
        let desc = PageDesc(cell.load(Ordering::Acquire));
        let Some(c) = desc.slab_class() else {
            // A live head of a cached order: cached heads (free), larger
            // blocks and non-heads go to the general path.
            let k = desc
                .live_order_below(PAGE_CLASSES as u32)
                .or_else(|| Self::cached_as_live(desc))?;
            if addr % PAGE_SIZE != 0 {
                return None;
            }
            if !Self::claim_block(cell, desc, k) {
                return None;
            }
            return Some(SMALL_CLASSES + k as usize);
        };
        if slab::MARK_AT_USER {
            return None;
        }
        if !Self::is_object_start(c, addr) {
            return None;
        }
        // SAFETY: an object of a live slab, just checked.
        let word = unsafe { slab::tag_word(addr) };
        crate::sync::model_yield();
        // Acquire: as in `Heap::claim_object` (orders the re-check below).
        if word.load(Ordering::Acquire) == slab::FREE_TAG {
            return None;
        }
        // A stale free whose slab was released and reused meanwhile: the
        // general path decides (see `Heap::claim_object`).
        if !super::object::still_slab(cell, c) {
            return None;
        }
        // Relaxed: published with the magazine push that follows.
        word.store(slab::FREE_TAG, Ordering::Relaxed);
        Some(c)
    }

    /// Mutant `CachedAsLive`: the fast path takes a cached head of a cached
    /// order for a live one (never, in real builds).
    #[inline(always)]
    fn cached_as_live(desc: PageDesc) -> Option<u32> {
        if !crate::mutant::on(crate::mutant::Mutant::CachedAsLive) {
            return None;
        }
        desc.order().filter(|&k| (k as usize) < PAGE_CLASSES)
    }

    /// A handle takes back block `addr` for its magazines: refuses bad and
    /// free pointers, marks the block as free (see `object.rs` for objects;
    /// a block's descriptor turns `cached` with one CAS, so exactly one of
    /// racing frees wins) and returns its cache class. `None` for blocks
    /// above 16 KiB, which go straight back to the tree.
    #[inline]
    pub(crate) fn claim_cached(&self, addr: usize) -> Result<Option<usize>, FreeError> {
        match self.block_at(addr)? {
            (reg, page, Block::Object(c)) => {
                self.claim_object(reg, page, c, addr)?;
                Ok(Some(c))
            }
            (reg, page, Block::Pages(k)) if (k as usize) < PAGE_CLASSES => {
                let cell = reg.desc(page);
                if !Self::claim_block(cell, PageDesc(cell.load(Ordering::Relaxed)), k) {
                    return Err(self.classify(reg, page, addr));
                }
                Ok(Some(SMALL_CLASSES + k as usize))
            }
            (_, _, Block::Pages(_)) => Ok(None),
        }
    }

    /// A handle takes the block of order `k` whose head's descriptor is
    /// `cell` (last seen as `seen`) for its magazine: `head -> cached` in one CAS, so exactly
    /// one of racing frees wins. False if the descriptor is anything else
    /// (a cached block is free).
    #[inline(always)]
    fn claim_block(cell: &AtomicU32, seen: PageDesc, k: u32) -> bool {
        // Mutant: any head of order k, cached ones included, is claimed.
        let expect = if crate::mutant::on(crate::mutant::Mutant::CachedAsLive) {
            seen
        } else {
            PageDesc::head(k)
        };
        // AcqRel: as the descriptor CAS in `release_block`; Acquire on
        // failure: the caller may then classify the descriptor it found.
        cell.compare_exchange(
            expect.0,
            PageDesc::cached(k).0,
            Ordering::AcqRel,
            Ordering::Acquire,
        )
        .is_ok()
    }

    /// A cached block (cache class `cc`) goes to a user: its descriptor is a
    /// live head again.
    #[inline(never)]
    pub(crate) fn hand_out_block(&self, cc: usize, p: usize) -> Option<NonNull<u8>> {
        let reg = self.region_of(p).expect("cached block in the heap");
        Self::hand_out_block_at(reg.desc_of(p), cc, p)
    }

    /// [`Self::hand_out_block`] given the block's head descriptor `cell`.
    #[inline(always)]
    pub(crate) fn hand_out_block_at(cell: &AtomicU32, cc: usize, p: usize) -> Option<NonNull<u8>> {
        let k = (cc - SMALL_CLASSES) as u32;
        // Release: a free that reads the head with Acquire sees the block as
        // ours; only the holder of the round touches its descriptor now.
        cell.store(PageDesc::head(k).0, Ordering::Release);
        // SAFETY: a round is a block's address in the heap, never null.
        Some(unsafe { NonNull::new_unchecked(p as *mut u8) })
    }

    /// Frees the buddy block whose head page is `page` and whose descriptor
    /// is `expect` (a live head, or a cached one when a magazine flushes):
    /// the descriptor CAS decides which of racing frees owns it, then the
    /// tree takes it back.
    ///
    /// # Safety
    /// If the block is live, nobody uses it after this call.
    pub(crate) unsafe fn release_block(
        &self,
        reg: &Region,
        page: usize,
        addr: usize,
        expect: PageDesc,
        tally: &mut Tally,
    ) -> Result<(), FreeError> {
        let desc = reg.desc(page);
        let k = expect.order().expect("a block head");
        // AcqRel: acquires the allocation's store; releases our clearing
        // before the tree CASes below make the pages reusable. A cached
        // descriptor never matches a live head: a block in a magazine is free.
        if let Err(now) = desc.compare_exchange(
            expect.0,
            PageDesc::NONE.0,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            return Err(self.lost_claim(reg, page, addr, PageDesc(now)));
        }
        let h = self.g.area_order();
        let a = page >> h;
        let mut count = |retries| tally.add(Event::Retries, retries);
        let freed = if k > h {
            (0..1usize << (k - h)).try_for_each(|i| reg.area(a + i).free(0, h).map(&mut count))
        } else {
            reg.area(a)
                .free((page & ((1 << h) - 1)) as u32, k)
                .map(count)
        };
        assert!(
            freed.is_ok(),
            "magbuddy: descriptor of {addr:#x} says order {k} but the tree disagrees"
        );
        Ok(())
    }

    /// The error for a claim of the head at `page` that found `now` instead
    /// (a racing free or resize won it, or the block is in a magazine).
    #[cold]
    pub(super) fn lost_claim(
        &self,
        reg: &Region,
        page: usize,
        addr: usize,
        now: PageDesc,
    ) -> FreeError {
        if now.is_cached() {
            FreeError::DoubleFree(addr)
        } else {
            self.classify(reg, page, addr)
        }
    }

    /// Names what a non-head pointer points into (for the error message).
    #[cold]
    #[inline(never)]
    fn classify(&self, reg: &Region, page: usize, addr: usize) -> FreeError {
        match self.block_containing(reg, page) {
            Some(start) if start == addr => FreeError::DoubleFree(addr),
            Some(start) => FreeError::Interior {
                ptr: addr,
                block: start,
            },
            None => FreeError::NotAllocated(addr),
        }
    }

    /// Start address of the allocated block covering page `page`, if any.
    fn block_containing(&self, reg: &Region, page: usize) -> Option<usize> {
        let h = self.g.area_order();
        let a = page >> h;
        let (k, first) = reg.area(a).block_at((page & ((1 << h) - 1)) as u32)?;
        if k < h {
            return Some(reg.addr_of((a << h) + first as usize));
        }
        // A whole area: it may belong to a run whose head is further down.
        let global = reg.first_area + a;
        let head = (h + 1..crate::ORDERS as u32)
            .map_while(|k| {
                Some((
                    k,
                    (global & !((1usize << (k - h)) - 1)).checked_sub(reg.first_area)?,
                ))
            })
            .find(|&(k, ha)| reg.desc_snapshot(ha << h).order() == Some(k));
        Some(reg.addr_of(head.map_or(a, |(_, ha)| ha) << h))
    }
}
