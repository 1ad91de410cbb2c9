//! Resizing a block in place: the buddy tree's grow and split steps behind
//! one entry point, [`Heap::resize_in_place`], which `GlobalHeap::realloc`,
//! the `Allocator` impls and the C shim's `realloc` share.
//!
//! A page block is claimed for the resize the way a free claims it: its head
//! descriptor goes from `head(k)` to `NONE` with one CAS, so a racing free
//! or resize of the same block is refused (as a double free) instead of
//! meeting a tree that changes under it. Then the tree steps run, each one
//! CAS (or the two-word protocol of `buddy`), and the descriptor is stored
//! as the head of the order the block ended at. Which steps exist:
//!
//! | step                 | where                | how                                                 |
//! |----------------------|----------------------|-----------------------------------------------------|
//! | grow `k -> k+1`      | `k < c`              | `reserve` buddy pages, `ChunkWord::grow` (or undo)   |
//! | grow `c -> c+1`      | chunk root to leaf   | `AreaWord::absorb_chunk`, clear the root bit        |
//! | grow `k -> k+1`      | `c < k < H`          | `AreaWord::grow`                                    |
//! | grow `k -> k+1`      | `k >= H` (runs)      | claim the buddy run's areas in order (or undo)      |
//! | shrink `k -> k-1`    | `1 <= k <= c`        | `ChunkWord::split`, `unreserve` the upper half      |
//! | shrink `c+1 -> c`    | leaf to chunk root   | set the root bit, `AreaWord::release_to_chunk`      |
//! | shrink `k -> k-1`    | `c + 1 < k <= H`     | `AreaWord::split`                                   |
//! | shrink `k -> k-1`    | `k > H` (runs)       | release the upper half's areas                      |
//!
//! Every step that takes pages does so with a CAS whose precondition is
//! the one an allocation of those pages would need (no allocated node in
//! the buddy's subtree; no reservation in its chunks; an idle area), on the
//! word an allocation would change, so of a grow and an allocation racing
//! for the buddy exactly one wins. Every step that gives pages back (a
//! shrink, a grow's undo) is counted like a free (`Area::gave_back`), so
//! a search that overlapped it does not report out-of-memory.

use core::ptr::NonNull;

use super::free::Block;
use super::stats::{Event, Tally};
use super::Heap;
use crate::region::{PageDesc, Region};
use crate::slab::{self, MAX_SMALL};
use crate::sync::Ordering;
use crate::{FreeError, PAGE_SIZE};

impl Heap {
    /// Resizes the block that starts at `p` to serve `new_size` bytes
    /// aligned to `align` (a power of two; the caller's layout) without
    /// moving it: `Ok(Some(bytes))` with the block's size now (at least
    /// `new_size`), `Ok(None)` when it cannot stay where it is (the caller
    /// moves it; nothing changed), `Err` for a pointer that is not the start
    /// of a live block (the error [`Heap::try_free`] would give; nothing
    /// changed). The one place that decides "the same block" for every
    /// `realloc` (`GlobalHeap`, the `Allocator` impls, the C shim).
    ///
    /// Objects (up to 5 KiB) stay only within their block: when it is the
    /// one [`Heap::alloc`]`(new_size.max(align))` or
    /// [`Heap::alloc_fit`]`(new_size, align)` would give, both aligned to
    /// `align`. Page blocks grow by merging with free buddies while they are
    /// lower halves (the buddy tree's alignment rule: a block of `2^k` pages
    /// at an address aligned to `2^(k+1)` pages), up to the order
    /// `new_size.max(align)` needs (a block is aligned to its size, so it
    /// meets `align`), and shrink by releasing upper halves; see the module
    /// docs for the steps. A grow that fails midway gives back what it took
    /// first. Up to 2 KiB for a page block is `None` (an object would serve
    /// it; copying so few bytes is cheap).
    ///
    /// A grow holds its buddy's pages for a moment before it keeps them or
    /// gives them back: one more thing in flight that an allocation's
    /// `None` may miss (the no-false-OOM contract's allowance, README).
    ///
    /// # Safety
    /// `p` was allocated from this heap and is not freed or resized
    /// concurrently (a racing free or resize of the same block is refused
    /// with an error, as a double free). After a shrink, the bytes past the
    /// returned size are no longer the caller's.
    pub unsafe fn resize_in_place(
        &self,
        p: NonNull<u8>,
        new_size: usize,
        align: usize,
    ) -> Result<Option<usize>, FreeError> {
        let addr = p.as_ptr() as usize;
        let (reg, page, block) = self.block_at(addr)?;
        // What `alloc` would be asked for: its blocks are aligned to their
        // size, so one of at least `align` bytes meets the alignment.
        let bytes = new_size.max(align);
        let k = match block {
            Block::Object(c) => {
                self.check_object_live(reg, page, c, addr)?;
                // The block `alloc` or `alloc_fit` would give (both aligned
                // to `align`).
                let size = slab::class_size(c);
                let fits = new_size != 0
                    && (self.block_size(bytes) == size || self.fit_size(new_size, align) == size);
                return Ok(fits.then_some(size));
            }
            Block::Pages(k) => k,
        };
        let Some(want) = self.order_for(bytes).filter(|_| bytes > MAX_SMALL) else {
            return Ok(None);
        };
        if want == k {
            return Ok(Some(PAGE_SIZE << k));
        }
        let desc = reg.desc(page);
        // AcqRel: as the free's claim in `release_block` (acquires the
        // allocation's store; releases nothing yet, the tree CASes follow).
        if let Err(now) = desc.compare_exchange(
            PageDesc::head(k).0,
            PageDesc::NONE.0,
            Ordering::AcqRel,
            Ordering::Acquire,
        ) {
            return Err(self.lost_claim(reg, page, addr, PageDesc(now)));
        }
        let mut tally = Tally::default();
        let got = if want > k {
            match self.grow_block(reg, page, k, want, &mut tally) {
                at if at == want => at,
                at => self.shrink_block(reg, page, at, k, &mut tally),
            }
        } else {
            self.shrink_block(reg, page, k, want, &mut tally)
        };
        // Release: a free or resize that reads the head (Acquire) sees the
        // tree CASes above.
        desc.store(PageDesc::head(got).0, Ordering::Release);
        self.shared.record(&tally, false);
        let bytes = PAGE_SIZE << got;
        Ok((bytes >= new_size).then_some(bytes))
    }

    /// A block of `size` bytes for a block that must move because it grows
    /// (a `realloc` that could not stay in place): placed at the start of
    /// the largest free aligned span of up to 64 times its size, so that the
    /// next grows stay in place where first-fit placement would put it in
    /// an upper half (a block at offset `s` of an `s`-aligned span cannot
    /// merge with the block above it). Only blocks of a whole area or more
    /// (1 MiB by default): `None` for smaller ones, which are cheap to copy,
    /// and when no span of twice the block is free; the caller then
    /// allocates as usual.
    pub fn alloc_to_grow(&self, size: usize) -> Option<NonNull<u8>> {
        let k = self.order_for(size)?;
        if k < self.g.area_order() {
            return None;
        }
        let mut tally = Tally::default();
        let p = self.alloc_with_room(k, &mut tally);
        if p.is_some() {
            self.shared.bump_shared(Event::Alloc, 1);
        }
        self.shared.record(&tally, false);
        p
    }

    /// Grows the claimed block of order `k` at grid page `page` step by step
    /// towards order `want`; returns the order reached.
    fn grow_block(&self, reg: &Region, page: usize, k: u32, want: u32, tally: &mut Tally) -> u32 {
        let h = self.g.area_order();
        let (a, off) = (page >> h, (page & ((1 << h) - 1)) as u32);
        let mut at = k;
        while at < want {
            let step = if at < h {
                reg.area(a).grow(off, at)
            } else {
                self.grow_run(reg, a, at, tally).map(|()| 0)
            };
            match step {
                Ok(retries) => tally.add(Event::Retries, retries),
                Err(retries) => {
                    tally.add(Event::Retries, retries);
                    break;
                }
            }
            at += 1;
        }
        at
    }

    /// Shrinks the claimed block of order `k` at grid page `page` step by
    /// step to order `want`; returns the order reached (`want`: every step
    /// of a block we hold succeeds).
    fn shrink_block(&self, reg: &Region, page: usize, k: u32, want: u32, tally: &mut Tally) -> u32 {
        let h = self.g.area_order();
        let (a, off) = (page >> h, (page & ((1 << h) - 1)) as u32);
        let mut at = k;
        while at > want {
            if at > h {
                // The upper half of a run: its areas' roots go back.
                let half = 1usize << (at - 1 - h);
                for i in a + half..a + 2 * half {
                    let retries = reg
                        .area(i)
                        .free(0, h)
                        .map_err(drop)
                        .expect("release of an area of our run");
                    tally.add(Event::Retries, retries);
                }
            } else {
                match reg.area(a).shrink(off, at) {
                    Ok(retries) => tally.add(Event::Retries, retries),
                    Err(_) => break,
                }
            }
            at -= 1;
        }
        at
    }

    /// Grows the claimed run (or whole area) of order `k >= H` at area `a`
    /// into order `k + 1` by claiming the `2^(k-H)` areas after it, which
    /// must be free and in the same region, the run aligned to its new size.
    /// The claim is `alloc_run`'s (ascending, undone if a later area is
    /// taken; the undo is a counted free).
    fn grow_run(&self, reg: &Region, a: usize, k: u32, tally: &mut Tally) -> Result<(), u32> {
        let n = 1usize << (k - self.g.area_order());
        let aligned = (reg.first_area + a) % (2 * n) == 0;
        // Relaxed: a look first (a free area's word is exactly 0); the
        // claims validate with a CAS.
        if !aligned
            || a + 2 * n > reg.areas
            || (a + n..a + 2 * n).any(|i| reg.area(i).load_top() != 0)
        {
            return Err(0);
        }
        self.claim_run(reg, a + n, n, tally).map_err(|()| 0)
    }
}
