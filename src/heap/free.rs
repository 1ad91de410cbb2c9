//! The free path: from a pointer to its block, with every check on bad
//! input (DESIGN §5) made before any state changes.

use super::region::{PageDesc, Region};
use super::{cache, Heap};
use crate::slab::{self, SMALL_CLASSES};
use crate::sync::Ordering;
use crate::{FreeError, PAGE_SIZE};

/// What a valid pointer is the start of.
enum Block {
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
        retries: &mut u32,
    ) -> Result<(), FreeError> {
        if ptr.is_null() {
            return Ok(());
        }
        let addr = ptr as usize;
        match self.block_at(addr)? {
            (reg, page, Block::Object(c)) => self.free_small_shared(reg, page, c, addr),
            // SAFETY: forwarded from the caller.
            (reg, page, Block::Pages(_)) => unsafe { self.release_block(reg, page, addr, retries) },
        }
    }

    /// Size of the block that starts at `ptr`: what `malloc_usable_size`
    /// needs, so a C shim keeps no size table of its own.
    ///
    /// Errors as [`Heap::try_free`] for pointers outside the heap, into
    /// metadata or free memory, or inside a block, and `DoubleFree` for a
    /// freed object that carries the free mark. Without the `checked`
    /// feature, a block freed into a magazine carries no mark yet and still
    /// reports its size.
    pub fn usable_size(&self, ptr: *const u8) -> Result<usize, FreeError> {
        let addr = ptr as usize;
        match self.block_at(addr)? {
            // SAFETY: `block_at` resolved an object of class `c` in a live slab.
            (_, _, Block::Object(c)) if unsafe { Self::is_marked(addr, c) } => {
                Err(FreeError::DoubleFree(addr))
            }
            (_, _, Block::Object(c)) => Ok(slab::class_size(c)),
            (_, _, Block::Pages(k)) => Ok(PAGE_SIZE << k),
        }
    }

    /// The block `addr` is the start of: its region, grid page and kind.
    /// Every bad pointer is refused here, before any state changes.
    #[inline]
    fn block_at(&self, addr: usize) -> Result<(&Region, usize, Block), FreeError> {
        let (reg, page, desc) = self.locate(addr)?;
        if let Some(c) = desc.slab_class() {
            Self::check_object(reg, page, c, addr)?;
            return Ok((reg, page, Block::Object(c)));
        }
        match desc.order() {
            _ if addr % PAGE_SIZE != 0 => Err(self.classify(reg, page, addr)),
            Some(_) if desc.is_cached() => Err(FreeError::DoubleFree(addr)),
            Some(k) => Ok((reg, page, Block::Pages(k))),
            None => Err(self.classify(reg, page, addr)),
        }
    }

    /// The region, grid page and descriptor of a pointer inside the usable
    /// part of the heap.
    #[inline]
    fn locate(&self, addr: usize) -> Result<(&Region, usize, PageDesc), FreeError> {
        // SAFETY: the first region lives as long as the heap (see `region_of`).
        let first = unsafe { &*self.first };
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

    /// Rejects a pointer into a slab that is not at an object's start. Slabs
    /// are aligned to their size in the address space and objects to theirs,
    /// so the offset inside the object is the address's low bits.
    #[inline]
    fn check_object(_reg: &Region, _page: usize, c: usize, addr: usize) -> Result<(), FreeError> {
        let off = addr & (slab::class_size(c) - 1);
        if off != 0 {
            return Err(FreeError::Interior {
                ptr: addr,
                block: addr - off,
            });
        }
        Ok(())
    }

    /// Cache class of a block a handle frees into its magazines, `None` for
    /// blocks above 16 KiB (freed to the tree directly), or the error.
    #[inline]
    pub(crate) fn cached_class_of(&self, addr: usize) -> Result<Option<usize>, FreeError> {
        Ok(match self.block_at(addr)? {
            (_, _, Block::Object(c)) => Some(c),
            (_, _, Block::Pages(k)) if (k as usize) < cache::PAGE_CLASSES => {
                Some(SMALL_CLASSES + k as usize)
            }
            (_, _, Block::Pages(_)) => None,
        })
    }

    /// `checked` builds: marks a block being freed into a magazine, so a
    /// second free of it is refused while it sits there.
    pub(crate) fn mark_freed(&self, cc: usize, p: usize) -> Result<(), FreeError> {
        if cc < SMALL_CLASSES {
            // SAFETY: `p` is an object of a live slab (resolved by the caller).
            return unsafe { Self::mark_free(p, cc) }
                .then_some(())
                .ok_or(FreeError::DoubleFree(p));
        }
        let (reg, page, desc) = self.locate(p)?;
        let k = (cc - SMALL_CLASSES) as u32;
        // AcqRel/Acquire: as the descriptor CAS in `release_block`.
        reg.desc(page)
            .compare_exchange(
                PageDesc::head(k).0,
                PageDesc::cached(k).0,
                Ordering::AcqRel,
                Ordering::Acquire,
            )
            .map(drop)
            .map_err(|_| {
                if desc.is_cached() {
                    FreeError::DoubleFree(p)
                } else {
                    self.classify(reg, page, p)
                }
            })
    }

    /// `checked` builds: undoes [`Self::mark_freed`] when a cached block is
    /// handed out again.
    pub(crate) fn mark_handed_out(&self, cc: usize, p: usize) {
        if cc < SMALL_CLASSES {
            // SAFETY: the object was just taken from our magazine.
            return unsafe { Self::unmark(p, cc) };
        }
        let reg = self.region_of(p).expect("cached block in the heap");
        let k = (cc - SMALL_CLASSES) as u32;
        // Relaxed: only the holder of the round touches its descriptor now.
        reg.desc(reg.page_of(p))
            .store(PageDesc::head(k).0, Ordering::Relaxed);
    }

    /// Frees the buddy block whose head page is `page`: the descriptor CAS
    /// decides which of racing frees owns it, then the tree takes it back.
    ///
    /// # Safety
    /// If the block is live, nobody uses it after this call.
    pub(crate) unsafe fn release_block(
        &self,
        reg: &Region,
        page: usize,
        addr: usize,
        retries: &mut u32,
    ) -> Result<(), FreeError> {
        let desc = reg.desc(page);
        // Acquire: pairs with the Release store of the allocation.
        let seen = desc.load(Ordering::Acquire);
        let Some(k) = PageDesc(seen).order() else {
            return Err(self.classify(reg, page, addr));
        };
        // AcqRel: acquires the allocation's store; releases our clearing
        // before the tree CASes below make the pages reusable.
        if desc
            .compare_exchange(seen, PageDesc::NONE.0, Ordering::AcqRel, Ordering::Relaxed)
            .is_err()
        {
            return Err(FreeError::DoubleFree(addr));
        }
        let h = self.g.area_order();
        let a = page >> h;
        let freed = if k > h {
            (0..1usize << (k - h)).try_for_each(|i| reg.area(a + i).free(0, h, retries))
        } else {
            reg.area(a).free((page & ((1 << h) - 1)) as u32, k, retries)
        };
        assert!(
            freed.is_ok(),
            "magbuddy: descriptor of {addr:#x} says order {k} but the tree disagrees"
        );
        Ok(())
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
