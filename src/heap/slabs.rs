//! Heap-wide slab and magazine upkeep: where rounds go home, the shared
//! path's slab claiming, abandonment and adoption, and [`Heap::reclaim`] —
//! the part of the no-false-OOM contract that anyone may run (see
//! `cache.rs` for the per-CPU side and the contract itself).

use core::ptr::NonNull;

use super::object::MARK_AT_USER;
use super::region::{PageDesc, Region};
use super::{Ctx, Heap};
use crate::magazine::Magazine;
use crate::slab::{self, SlabDesc, ABANDONED, SLAB_ORDER, SMALL_CLASSES};
use crate::stack::IndexStack;
use crate::sync::Ordering;

use super::cache::CACHE_CLASSES;

impl Heap {
    /// The pool's always-empty magazine, loaded where none is.
    pub(crate) fn sentinel(&self) -> &Magazine {
        // SAFETY: the pool holds `n_mags + 1` magazines (init), the last the
        // sentinel, alive as long as the heap.
        unsafe { &*self.mags.add(self.n_mags as usize) }
    }

    #[inline(always)]
    pub(crate) fn mag(&self, m: u32) -> &Magazine {
        debug_assert!(m < self.n_mags, "magazine index out of range");
        // SAFETY: magazine indices only come from the pool's own stacks, so
        // `m < n_mags`; the pool was constructed in init and lives as long as
        // the heap.
        unsafe { &*self.mags.add(m as usize) }
    }

    /// Slab id of grid page `page` of `reg`.
    pub(crate) fn slab_id(reg: &Region, page: usize) -> u32 {
        ((reg.index as u32) << 28) | (page >> SLAB_ORDER) as u32
    }

    /// Region, descriptor and base address of slab `id`.
    pub(crate) fn slab_by_id(&self, id: u32) -> (&Region, &SlabDesc, usize) {
        let reg = self
            .region((id >> 28) as usize)
            .expect("slab id names a published region");
        let page = Self::slab_page(id);
        (reg, reg.slab(page), reg.addr_of(page))
    }

    /// First grid page of slab `id` in its region (inverse of [`Self::slab_id`]).
    fn slab_page(id: u32) -> usize {
        ((id & 0x0fff_ffff) as usize) << SLAB_ORDER
    }

    /// Records an inconsistency found where no caller can be told (a flush).
    fn record_corruption(&self, p: usize) {
        // Relaxed: counters for reports.
        if self.corruptions.fetch_add(1, Ordering::Relaxed) == 0 {
            self.first_corruption.store(p, Ordering::Relaxed);
        }
    }

    /// Returns one round to where it came from: an object to its slab (as
    /// owner `token` if it owns it, else through the return list), a block to
    /// the buddy tree. A round found free already there is a duplicate (a
    /// double free the magazine accepted): counted and dropped, never reused.
    pub(crate) fn flush_round(&self, token: u32, cc: usize, p: usize, ctx: &mut Ctx) -> bool {
        let reg = self.region_of(p).expect("round inside the heap");
        let page = reg.page_of(p);
        if cc >= SMALL_CLASSES {
            let k = (cc - SMALL_CLASSES) as u32;
            // SAFETY: a cached block is allocated in the tree and ours.
            return unsafe {
                self.release_block(reg, page, p, PageDesc::cached(k), &mut ctx.retries)
            }
            .map_err(|_| self.record_corruption(p))
            .is_ok();
        }
        let (s, base) = Self::slab_at(reg, page);
        // Default build: the round enters the slab layer here, and its bit
        // must have been clear.
        // SAFETY: the object lies in a live slab (it is handed out).
        if !MARK_AT_USER && !unsafe { s.mark_free(base, cc, p) } {
            self.record_corruption(p);
            return false;
        }
        ctx.remote += self.free_to_slab(token, reg, page, cc, p) as u32;
        true
    }

    fn free_to_slab(&self, token: u32, reg: &Region, page: usize, c: usize, p: usize) -> bool {
        let (slab, base) = Self::slab_at(reg, page);
        // Relaxed: only this thread could have made `token` the owner.
        if slab.owner.load(Ordering::Relaxed) == token {
            // SAFETY: we own the slab; p is one of its handed-out objects.
            unsafe { slab.free_local(base, p) };
            return false;
        }
        // SAFETY: p is a handed-out object of that slab, given up by the caller.
        if unsafe { slab.free_remote(base, c as u32, p) } {
            self.abandoned[c].push(Self::slab_id(reg, reg.page_of(base)), &slab.link);
        }
        true
    }

    /// Frees object `p` of class `c` without a handle (shared path). The
    /// bit decides between racing frees (exactly one sets it).
    pub(crate) fn free_small_shared(
        &self,
        reg: &Region,
        page: usize,
        c: usize,
        p: usize,
    ) -> Result<(), crate::FreeError> {
        self.claim_object(reg, page, c, p)?;
        let (s, base) = Self::slab_at(reg, page);
        // SAFETY: p is an object of a live slab (checked by the caller).
        if !MARK_AT_USER && !unsafe { s.mark_free(base, c, p) } {
            return Err(crate::FreeError::DoubleFree(p));
        }
        self.free_to_slab(0, reg, page, c, p);
        Ok(())
    }

    /// Allocates one object of class `c` without a handle: claims an
    /// abandoned slab (or makes a new one), takes one object, abandons the
    /// slab again. Never waits and never pops a shared stack of objects.
    pub(crate) fn alloc_small_shared(&self, c: usize, ctx: &mut Ctx) -> Option<NonNull<u8>> {
        loop {
            let mut out = [0usize; 1];
            let id = self.adopt_or_new(c, slab::SHARED, ctx)?;
            let (reg, s, base) = self.slab_by_id(id);
            // SAFETY: we own the slab until we give it up below.
            unsafe {
                if s.take(base, &mut out) == 0 && s.collect(base) > 0 {
                    s.take(base, &mut out);
                }
                self.give_up_slab(reg, s, id, slab::SHARED);
                if out[0] != 0 {
                    self.leave_slab(c, &out);
                    self.hand_out_object(c, out[0]);
                    return NonNull::new(out[0] as *mut u8);
                }
            }
        }
    }

    /// Adopts an abandoned slab of class `c` for `token`, or makes a new one.
    pub(crate) fn adopt_or_new(&self, c: usize, token: u32, ctx: &mut Ctx) -> Option<u32> {
        if let Some(id) = self.adopt_any(c, token, ctx) {
            return Some(id);
        }
        // `alloc_order` reclaims before it gives up, which may publish slabs
        // with free objects (a released handle's magazines going home): look
        // at the abandoned lists once more before reporting out-of-memory.
        let Some(p) = self.alloc_order(SLAB_ORDER, ctx) else {
            if crate::mutant::on(crate::mutant::Mutant::RetrySkipsAbandoned) {
                return None;
            }
            return self.adopt_any(c, token, ctx);
        };
        let reg = self
            .region_of(p.as_ptr() as usize)
            .expect("new slab in the heap");
        let page = reg.page_of(p.as_ptr() as usize);
        let s = reg.slab(page);
        // SAFETY: the block is fresh from the tree; nobody else can reach it.
        unsafe { s.init(reg.addr_of(page), c, token) };
        for q in page..page + (1 << SLAB_ORDER) {
            // Release: the slab descriptor's init is visible to whoever frees
            // an object of it after reading this page descriptor.
            reg.desc(q).store(PageDesc::slab(c).0, Ordering::Release);
        }
        // Relaxed: a statistic.
        self.slabs_live.fetch_add(1, Ordering::Relaxed);
        Some(Self::slab_id(reg, page))
    }

    /// Pops and adopts an abandoned slab of class `c` for `token` (from
    /// either list) and collects its returns.
    fn adopt_any(&self, c: usize, token: u32, ctx: &mut Ctx) -> Option<u32> {
        for list in [&self.abandoned[c], &self.swept[c]] {
            while let Some(id) = list.pop(|i| &self.slab_by_id(i).1.link) {
                let (_, s, base) = self.slab_by_id(id);
                if s.adopt(token) {
                    // SAFETY: adopted: we own it now.
                    unsafe { s.collect(base) };
                    ctx.adopted += 1;
                    return Some(id);
                }
            }
        }
        None
    }

    /// Ends `token`'s ownership of slab `id`: released to the tree if nothing
    /// is handed out, on the abandoned stack if it has objects left,
    /// abandoned-full otherwise.
    ///
    /// # Safety
    /// `token` owns the slab.
    pub(crate) unsafe fn give_up_slab(&self, reg: &Region, s: &SlabDesc, id: u32, token: u32) {
        // SAFETY: forwarded.
        unsafe { self.give_up_slab_to(reg, s, id, token, &self.abandoned) }
    }

    /// [`Self::give_up_slab`], publishing a slab with objects left on
    /// `lists` (one stack per class).
    ///
    /// # Safety
    /// As [`Self::give_up_slab`].
    unsafe fn give_up_slab_to(
        &self,
        reg: &Region,
        s: &SlabDesc,
        id: u32,
        token: u32,
        lists: &[IndexStack; SMALL_CLASSES],
    ) {
        let page = Self::slab_page(id);
        let base = reg.addr_of(page);
        // SAFETY: owned (caller).
        unsafe {
            // Mutant: a slab whose return list is non-empty is released at
            // once, although other objects may still be handed out.
            let early = SlabDesc::release_ignores_returns() && s.returns_snapshot().head() != 0;
            s.collect(base);
            // `handed` counts returned objects until they are collected, so
            // after the collect no push is pending when it is 0.
            if s.local().handed == 0 || early {
                for q in page..page + (1 << SLAB_ORDER) {
                    // Relaxed: the tree CAS below (AcqRel) publishes it.
                    reg.desc(q).store(PageDesc::NONE.0, Ordering::Relaxed);
                }
                // Nothing handed out: no object can be pushed back any more.
                s.owner.store(ABANDONED, Ordering::Relaxed);
                let h = self.g.area_order();
                let off = (page & ((1 << h) - 1)) as u32;
                reg.area(page >> h)
                    .free(off, SLAB_ORDER, &mut 0)
                    .expect("slab block allocated in the tree");
                // Relaxed: a statistic.
                self.slabs_live.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            // Nothing left to hand out and no returns: abandoned-full, on no
            // stack until a remote free publishes it.
            let class = s.local().class as usize;
            if !s.has_local() && s.try_abandon_full(token) {
                return;
            }
            // Objects to give (or returns that arrived meanwhile): publish it.
            s.collect(base);
            s.abandon();
            lists[class].push(id, &s.link);
        }
    }

    /// Empties the depot and sweeps the abandoned slabs: empty ones go back
    /// to the buddy tree. Also raises the drain epoch, so every active CPU
    /// flushes its magazines on its next call. Safe to call at any time;
    /// the allocator calls it before it reports out-of-memory.
    pub fn reclaim(&self) {
        // Release: a CPU that sees the new epoch also sees why (nothing to
        // order, but cheap); Relaxed would do.
        self.drain_epoch.fetch_add(1, Ordering::Release);
        let depot = self.depot();
        let mut ctx = Ctx::default();
        for cc in 0..CACHE_CLASSES {
            while let Some(m) = depot.get_full(cc) {
                // SAFETY: popped: the magazine is ours.
                self.flush_rounds(0, cc, self.mag(m), &mut ctx);
                depot.put_empty(m);
            }
        }
        // Every slab in the tree bounds a sweep: it ends even while other
        // threads keep abandoning slabs.
        // Relaxed: a bound, not a synchronisation.
        let budget = self.slabs_live.load(Ordering::Relaxed) as usize + 1;
        for c in 0..SMALL_CLASSES {
            self.sweep(c, &self.abandoned, &self.swept, budget);
            self.sweep(c, &self.swept, &self.abandoned, budget);
        }
    }

    /// Adopts up to `budget` slabs of class `c` from `from` one at a time:
    /// empty ones go back to the tree, the others onto `to` at once. So a
    /// sweep keeps at most one slab from allocators at any moment (a sweep
    /// that held every in-use slab until its end made concurrent shared
    /// allocations fail with objects free), and never pops what it pushed.
    fn sweep(
        &self,
        c: usize,
        from: &[IndexStack; SMALL_CLASSES],
        to: &[IndexStack; SMALL_CLASSES],
        budget: usize,
    ) {
        for _ in 0..budget {
            let Some(id) = from[c].pop(|i| &self.slab_by_id(i).1.link) else {
                return;
            };
            let (reg, s, _) = self.slab_by_id(id);
            if s.adopt(slab::SHARED) {
                // SAFETY: adopted.
                unsafe { self.give_up_slab_to(reg, s, id, slab::SHARED, to) };
            }
        }
    }

    /// Returns every round of magazine `m` (held by the caller) home.
    pub(crate) fn flush_rounds(&self, token: u32, cc: usize, m: &Magazine, ctx: &mut Ctx) {
        m.drain(|p| {
            self.flush_round(token, cc, p, ctx);
        });
    }
}
