//! Heap-wide slab and magazine upkeep: where rounds go home, the shared
//! path's slab claiming, new slabs from the tree, and [`Heap::reclaim`] —
//! the part of the no-false-OOM contract that anyone may run (see
//! `refill.rs` for the per-CPU side and the contract itself).

use core::ptr::NonNull;

use super::place::{Fresh, Hint};
use super::stats::{Event, Tally};
use super::Heap;
use crate::magazine::{Magazine, CACHE_CLASSES};
use crate::region::{PageDesc, Region};
use crate::slab::{self, Owner, SlabId, SLAB_ORDER, SMALL_CLASSES};
use crate::sync::Ordering;

impl Heap {
    /// Records an inconsistency found where no caller can be told (a flush).
    fn record_corruption(&self, p: usize) {
        // Relaxed: counters for reports.
        if self.corruptions.fetch_add(1, Ordering::Relaxed) == 0 {
            self.first_corruption.store(p, Ordering::Relaxed);
        }
    }

    /// Returns one round to where it came from: an object to its slab (as
    /// its owner if `by` owns it, else through the return list), a block to
    /// the buddy tree. A round found free already there is a duplicate (a
    /// double free the magazine accepted): counted and dropped, never reused.
    pub(crate) fn flush_round(
        &self,
        by: Option<Owner>,
        cc: usize,
        p: usize,
        tally: &mut Tally,
    ) -> bool {
        self.mark_round(cc, p)
            .is_some_and(|reg| self.release_round(reg, by, cc, p, tally))
    }

    /// The first half of [`Self::flush_round`]: an object's free bit is set
    /// (the default build's round enters the slab layer here, so the bit
    /// must have been clear; `None`, counted, if it was not). Nothing can
    /// take the object again until [`Self::release_round`], which gets the
    /// round's region.
    fn mark_round(&self, cc: usize, p: usize) -> Option<&Region> {
        let reg = self.region_of(p).expect("round inside the heap");
        if cc >= SMALL_CLASSES || slab::MARK_AT_USER {
            return Some(reg);
        }
        let (s, base) = slab::slab_at(reg, reg.page_of(p));
        // SAFETY: the object lies in a live slab (it is handed out).
        if !unsafe { s.mark_free(base, cc, p) } {
            self.record_corruption(p);
            return None;
        }
        Some(reg)
    }

    /// The second half of [`Self::flush_round`]: the object goes on its
    /// slab's lists, where it can be taken again; a block goes back to the
    /// tree (its cached descriptor is its mark).
    fn release_round(
        &self,
        reg: &Region,
        by: Option<Owner>,
        cc: usize,
        p: usize,
        tally: &mut Tally,
    ) -> bool {
        let page = reg.page_of(p);
        if cc >= SMALL_CLASSES {
            let k = (cc - SMALL_CLASSES) as u32;
            // SAFETY: a cached block is allocated in the tree and ours.
            return unsafe { self.release_block(reg, page, p, PageDesc::cached(k), tally) }
                .map_err(|_| self.record_corruption(p))
                .is_ok();
        }
        let remote = self.slabs.free_to_slab(by, reg, page, cc, p);
        tally.add(Event::Remote, remote as u32);
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
        let (s, base) = slab::slab_at(reg, page);
        // SAFETY: p is an object of a live slab (checked by the caller).
        if !slab::MARK_AT_USER && !unsafe { s.mark_free(base, c, p) } {
            return Err(crate::FreeError::DoubleFree(p));
        }
        self.slabs.free_to_slab(None, reg, page, c, p);
        Ok(())
    }

    /// Allocates one object of class `c` without a handle: claims an
    /// abandoned slab (or makes a new one), takes one object, abandons the
    /// slab again. Never waits and never pops a shared stack of objects.
    pub(crate) fn alloc_small_shared(
        &self,
        c: usize,
        hint: &mut Hint,
        tally: &mut Tally,
    ) -> Option<NonNull<u8>> {
        loop {
            let mut out = [0usize; 1];
            let id = self.adopt_or_new(c, Owner::Shared, hint, tally)?;
            let (reg, s, base) = slab::slab_by_id(&self.table, id);
            // SAFETY: we own the slab until we give it up below.
            unsafe {
                if s.take(reg, base, &mut out) == 0 && s.collect(base) > 0 {
                    s.take(reg, base, &mut out);
                }
                self.slabs.give_up(reg, s, id, Owner::Shared);
                if out[0] != 0 {
                    slab::leave_slab(&self.table, c, &out);
                    self.hand_out_object::<true>(c, out[0]);
                    return NonNull::new(out[0] as *mut u8);
                }
            }
        }
    }

    /// Adopts an abandoned slab of class `c` for `owner`, or makes a new one.
    pub(crate) fn adopt_or_new(
        &self,
        c: usize,
        owner: Owner,
        hint: &mut Hint,
        tally: &mut Tally,
    ) -> Option<SlabId> {
        if let Some(id) = self.adopt_any(c, owner, tally) {
            return Some(id);
        }
        // `alloc_order` reclaims before it gives up, which may publish slabs
        // with free objects (a released handle's magazines going home): look
        // at the abandoned lists once more before reporting out-of-memory.
        let Some(p) = self.alloc_order(SLAB_ORDER, Fresh::Slab, hint, tally) else {
            if crate::mutant::on(crate::mutant::Mutant::RetrySkipsAbandoned) {
                return None;
            }
            return self.adopt_any(c, owner, tally);
        };
        let reg = self
            .region_of(p.as_ptr() as usize)
            .expect("new slab in the heap");
        let page = reg.page_of(p.as_ptr() as usize);
        Some(self.slabs.make(reg, page, c, owner))
    }

    /// Pops and adopts an abandoned slab of class `c` for `owner` (from
    /// either list) and collects its returns.
    fn adopt_any(&self, c: usize, owner: Owner, tally: &mut Tally) -> Option<SlabId> {
        let id = self.slabs.adopt(&self.table, c, owner)?;
        tally.add(Event::Adopt, 1);
        Some(id)
    }

    /// Empties the depot and sweeps the abandoned slabs: empty ones go back
    /// to the buddy tree. Also raises every CPU slot's drain flag, so every
    /// active CPU flushes its magazines on its next call. Safe to call at any time;
    /// the allocator calls it before it reports out-of-memory.
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
    /// unsafe { h.free(p.as_ptr()) }; // the object stays cached on CPU 0
    /// drop(h); // magazines to the depot, the slab to the tree or the abandoned list
    /// heap.reclaim(); // empties the depot; empty abandoned slabs go back to the tree
    /// assert_eq!(heap.slabs_in_use(), 0);
    /// ```
    pub fn reclaim(&self) {
        for cpu in 0..self.cpus {
            self.slot(cpu).request_drain();
        }
        self.empty_depot();
        self.slabs.sweep_all(&self.table);
    }

    /// Returns the rounds of every full magazine in the depot home.
    pub(crate) fn empty_depot(&self) {
        let depot = self.mags.depot();
        let mut tally = Tally::default();
        for cc in 0..CACHE_CLASSES {
            while let Some(m) = depot.get_full(cc) {
                // SAFETY: popped: the magazine is ours.
                self.flush_rounds(None, cc, self.mags.mag(m), &mut tally);
                depot.put_empty(m);
            }
        }
    }

    /// Returns every round of magazine `m` (held by the caller) home.
    pub(crate) fn flush_rounds(
        &self,
        by: Option<Owner>,
        cc: usize,
        m: &Magazine,
        tally: &mut Tally,
    ) {
        let bytes = m.len() as usize * crate::magazine::round_size(cc);
        // Each round leaves the magazine between its mark and its release
        // (see `Magazine::drain`).
        m.drain(
            |p| self.mark_round(cc, p),
            |p, reg| {
                self.release_round(reg, by, cc, p, tally);
            },
        );
        self.came_home(bytes);
    }
}
