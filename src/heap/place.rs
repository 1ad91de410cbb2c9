//! Placement: which area serves a block. Home area first; then partly used
//! areas near home that no other CPU calls home; then any area; a request
//! larger than an area claims an aligned run of whole areas. `None` only after
//! a full pass saw no change and a reclaim did not help.

use core::ptr::NonNull;

use super::stats::{Event, Tally};
use super::{pack, unpack, Heap, NEAR};
use crate::buddy::AreaWord;
use crate::cpu::CpuId;
use crate::region::{PageDesc, Region, Summary};
use crate::sync::Ordering;

/// Where an allocation's search starts and who asks, carried through the
/// search and moved to the area that served (the placement hint; what the
/// search costs goes to a [`Tally`]).
#[derive(Clone, Copy)]
pub(crate) struct Hint {
    /// Home area (packed region/area).
    pub(crate) home: usize,
    /// Who asks, as the summary word of an area it calls home (none for the
    /// shared path).
    pub(crate) owner: Summary,
    /// Reservations this operation gave back in fall-throughs (each one
    /// counted in its area's free count; see `Heap::alloc_slow`).
    pub(crate) fell: u64,
}

impl Hint {
    pub(crate) fn new(home: usize, cpu: Option<CpuId>) -> Self {
        Self {
            home,
            owner: Summary::of(cpu),
            fell: 0,
        }
    }
}

/// What a block fresh from the tree becomes. Its head page's descriptor is
/// published as that at once: until then it holds the tree's `NONE`, which
/// refuses a stale free (a double free of the block's previous life). A
/// live head published first and the real use written after let such a
/// free release a block that a slab or magazine then kept: two owners.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fresh {
    /// A block for a caller: a live head.
    User,
    /// A page-magazine round: a cached head (a block in a magazine is free).
    Round,
    /// A slab: its maker publishes every page once the slab descriptor is
    /// set up (`SlabPool::make`).
    Slab,
}

impl Fresh {
    /// The head descriptor of a fresh block of order `k`, if published here.
    fn head(self, k: u32) -> Option<PageDesc> {
        match self {
            Self::User => Some(PageDesc::head(k)),
            // Mutant: the round looks like a live block in the magazine.
            Self::Round if crate::mutant::on(crate::mutant::Mutant::RefillSkipsMark) => {
                Some(PageDesc::head(k))
            }
            Self::Round => Some(PageDesc::cached(k)),
            Self::Slab => None,
        }
    }
}

impl Heap {
    /// Allocates a block of order `k` that becomes `fresh` (its head
    /// descriptor published): home area first, then the search.
    #[inline]
    pub(crate) fn alloc_order(
        &self,
        k: u32,
        fresh: Fresh,
        hint: &mut Hint,
        tally: &mut Tally,
    ) -> Option<NonNull<u8>> {
        let p = self.take_order(k, hint, tally)?;
        let reg = self
            .region_of(p.as_ptr() as usize)
            .expect("block inside the heap");
        publish_fresh(reg, p, k, fresh);
        Some(p)
    }

    /// Fills `out` (not empty) with blocks of order `k <= 2` for a page
    /// magazine, published as cached rounds; returns how many (0: out of
    /// memory). Several come from one chunk of the home area with one
    /// reservation and one chunk CAS (`Area::alloc_many`); failing that,
    /// one comes from the full search.
    pub(crate) fn alloc_rounds(
        &self,
        k: u32,
        out: &mut [usize],
        hint: &mut Hint,
        tally: &mut Tally,
    ) -> usize {
        let (r, a) = unpack(hint.home);
        let mut n = 0;
        if let Some(reg) = self
            .region(r)
            .filter(|reg| a < reg.areas && out.len() > 1 && k <= self.g.chunk_order())
        {
            let many = reg.area(a).alloc_many(k, out.len() as u32);
            tally.add(Event::Retries, many.retries);
            hint.fell += many.fell as u64;
            for off in many.offsets(self.g, k) {
                let page = (a << self.g.area_order()) + off as usize;
                let p = NonNull::new(reg.addr_of(page) as *mut u8).expect("a heap address");
                publish_fresh(reg, p, k, Fresh::Round);
                out[n] = p.as_ptr() as usize;
                n += 1;
            }
        }
        if n == 0 {
            if let Some(p) = self.alloc_order(k, Fresh::Round, hint, tally) {
                out[0] = p.as_ptr() as usize;
                n = 1;
            }
        }
        n
    }

    /// Takes a block of order `k` from the tree; its descriptor is still the
    /// tree's `NONE`.
    #[inline]
    fn take_order(&self, k: u32, hint: &mut Hint, tally: &mut Tally) -> Option<NonNull<u8>> {
        if k > self.g.area_order() {
            // Reclaim before reporting out-of-memory (the no-false-OOM contract).
            return self.alloc_run(k, tally).or_else(|| {
                self.reclaim();
                self.alloc_run(k, tally)
            });
        }
        let (r, a) = unpack(hint.home);
        if let Some(p) = self
            .region(r)
            .filter(|reg| a < reg.areas)
            .and_then(|reg| self.try_area(reg, a, k, hint, tally))
        {
            return Some(p);
        }
        self.alloc_slow(k, hint, tally)
    }

    /// The search after home failed: passes 1 and 2 over the areas this CPU
    /// may call home, then the authoritative pass 3.
    #[cold]
    #[inline(never)]
    fn alloc_slow(&self, k: u32, hint: &mut Hint, tally: &mut Tally) -> Option<NonNull<u8>> {
        let pages = 1u32 << k;
        let g = self.g;
        let owner = hint.owner;
        let mine = |reg: &Region, a: usize| {
            // Relaxed: a placement hint only.
            let o = Summary(reg.summary(a).load(Ordering::Relaxed));
            o == Summary::NONE || o == owner
        };
        // Pass 1: a partly used area near home that nobody else calls home.
        let partial = |reg: &Region, a: usize| {
            let free = AreaWord(reg.area(a).load_top()).free_pages(g);
            free >= pages && free < g.area_pages() && mine(reg, a)
        };
        if let Some(p) = self.search(k, hint.home, hint, tally, NEAR, partial) {
            return Some(p);
        }
        // Pass 2: the lowest area nobody else calls home (address-ordered
        // first fit: memory freed anywhere is reused before the untouched
        // top of the heap; searching on from home walked a program through
        // fresh areas, e.g. rptest's 2 threads to 1.4 GB peak RSS where a
        // 256 MiB heap served them); pass 3: any area at all.
        if let Some(p) = self.search(k, self.bottom(), hint, tally, usize::MAX, mine) {
            return Some(p);
        }
        self.alloc_authoritative(k, hint, tally)
    }

    /// Pass 3, authoritative: a full pass that failed while no free
    /// completed anywhere (every area's free count unchanged), after
    /// reclaiming what anyone may (the no-false-OOM contract). Allocations
    /// only remove blocks, so a block free at the end of such a pass was free
    /// when the pass looked at its area; frees counted later are linearized
    /// after this `None` (see `Area::gave_back`). Each repeat means a free
    /// completed meanwhile, so this loop is lock-free (though a thread can
    /// starve under endless churn).
    fn alloc_authoritative(
        &self,
        k: u32,
        hint: &mut Hint,
        tally: &mut Tally,
    ) -> Option<NonNull<u8>> {
        let mut reclaimed = false;
        loop {
            // Our own fall-throughs are counted too; they are no change.
            let (before, own) = (self.frees_completed(), hint.fell);
            if let Some(p) = self.search(k, self.bottom(), hint, tally, usize::MAX, |_, _| true) {
                return Some(p);
            }
            if self.no_free_since(before, hint.fell - own) {
                if reclaimed {
                    return None;
                }
                self.reclaim();
                reclaimed = true;
            }
        }
    }

    /// The position before the heap's first area, for a search from the
    /// bottom: the last region's end (the scan wraps to region 0, area 0).
    fn bottom(&self) -> usize {
        pack(self.table.reserved().saturating_sub(1), u32::MAX as usize)
    }

    /// Tries up to `limit` areas after `from` (a packed region/area,
    /// wrapping over all regions) that pass `want`; moves home to the area
    /// that served.
    fn search(
        &self,
        k: u32,
        from: usize,
        hint: &mut Hint,
        tally: &mut Tally,
        limit: usize,
        want: impl Fn(&Region, usize) -> bool,
    ) -> Option<NonNull<u8>> {
        let (hr, ha) = unpack(from);
        let n = self.table.reserved();
        let mut seen = 0;
        // Every area once, starting after `from` and ending with it.
        for step in 0..=n {
            let r = (hr + step) % n;
            let Some(reg) = self.region(r) else { continue };
            let areas = match step {
                0 => (ha + 1).min(reg.areas)..reg.areas,
                s if s == n => 0..(ha + 1).min(reg.areas),
                _ => 0..reg.areas,
            };
            for a in areas {
                if seen >= limit {
                    return None;
                }
                seen += 1;
                if want(reg, a) {
                    if let Some(p) = self.try_area(reg, a, k, hint, tally) {
                        // Home follows chunk-sized blocks only: a block that
                        // takes a large part of an area would leave home full.
                        if k <= self.g.chunk_order() {
                            self.move_home(hint, tally, r, a);
                        }
                        return Some(p);
                    }
                }
            }
        }
        None
    }

    /// Takes order `k` in area `a` of `reg` (its descriptor still `NONE`).
    #[inline]
    fn try_area(
        &self,
        reg: &Region,
        a: usize,
        k: u32,
        hint: &mut Hint,
        tally: &mut Tally,
    ) -> Option<NonNull<u8>> {
        let t = reg.area(a).alloc(k);
        tally.add(Event::Retries, t.retries);
        hint.fell += t.fell as u64;
        let off = t.offset?;
        let page = (a << self.g.area_order()) + off as usize;
        NonNull::new(reg.addr_of(page) as *mut u8)
    }

    fn move_home(&self, hint: &mut Hint, tally: &mut Tally, r: usize, a: usize) {
        let new = pack(r, a);
        if new == hint.home {
            return;
        }
        if hint.owner != Summary::NONE {
            // Relaxed CASes: the summary is a hint; losing either race is fine.
            let (or, oa) = unpack(hint.home);
            if let Some(old) = self.region(or).filter(|reg| oa < reg.areas) {
                let _ = old.summary(oa).compare_exchange(
                    hint.owner.0,
                    Summary::NONE.0,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
            if let Some(reg) = self.region(r) {
                let _ = reg.summary(a).compare_exchange(
                    Summary::NONE.0,
                    hint.owner.0,
                    Ordering::Relaxed,
                    Ordering::Relaxed,
                );
            }
        }
        hint.home = new;
        tally.add(Event::Switch, 1);
    }

    /// Frees completed in the whole heap: the sum of the areas' free counts,
    /// each of which only grows, so an equal sum means no count moved.
    fn frees_completed(&self) -> u64 {
        self.regions()
            .flat_map(|reg| (0..reg.areas).map(move |a| reg.free_count(a)))
            // Acquire: pairs with the Release in `Area::gave_back`.
            .fold(0u64, |sum, c| sum.wrapping_add(c.load(Ordering::Acquire)))
    }

    /// Whether no free completed since [`Self::frees_completed`] read
    /// `before`, apart from `own` counted steps of the caller itself.
    fn no_free_since(&self, before: u64, own: u64) -> bool {
        crate::mutant::on(crate::mutant::Mutant::NoneIgnoresFrees)
            || self.frees_completed().wrapping_sub(before) == own
    }

    /// Allocates a run of `2^(k - H)` whole areas, aligned to its size in the
    /// address space: each area's root is claimed in turn and the claimed ones
    /// are released if a later one is taken.
    fn alloc_run(&self, k: u32, tally: &mut Tally) -> Option<NonNull<u8>> {
        loop {
            let before = self.frees_completed();
            let mut raced = false;
            for reg in self.regions() {
                match self.alloc_run_in(reg, k, k, tally) {
                    (Some(p), _) => return Some(p),
                    (None, lost) => raced |= lost,
                }
            }
            // As in `alloc_authoritative`: `None` only after a pass during
            // which no free completed. A lost claim is another thread's
            // progress (and its undo a free), so the retries are lock-free:
            // claims go in ascending order, so of overlapping runs the one
            // that took the lowest contested area first wins it.
            if !raced && self.no_free_since(before, 0) {
                return None;
            }
        }
    }

    /// Allocates a block of order `k >= H` (whole areas) at the start of a
    /// free aligned span of up to `2^ROOM` times its size, the largest
    /// there is, so that it can later grow in place
    /// ([`Heap::resize_in_place`] merges a lower half with its free buddy).
    /// Best effort: `None` when no span of twice its size is free or a
    /// claim lost a race (the caller then allocates as usual, which keeps
    /// the no-false-OOM contract).
    pub(crate) fn alloc_with_room(&self, k: u32, tally: &mut Tally) -> Option<NonNull<u8>> {
        /// A realloc that moves a block grows it again soon after (a `Vec`
        /// doubles): room for six doublings in place.
        const ROOM: u32 = 6;
        let top = (k + ROOM).min(crate::ORDERS as u32 - 1);
        let (reg, p) = (k + 1..=top).rev().find_map(|span| {
            self.regions()
                .find_map(|reg| Some((reg, self.alloc_run_in(reg, k, span, tally).0?)))
        })?;
        publish_head(reg, p, PageDesc::head(k));
        Some(p)
    }

    /// Tries every run of wholly free areas aligned to order `span >= k` in
    /// `reg`, in ascending order, for a block of order `k` at its start:
    /// the block, and whether a claim lost a race.
    fn alloc_run_in(
        &self,
        reg: &Region,
        k: u32,
        span: u32,
        tally: &mut Tally,
    ) -> (Option<NonNull<u8>>, bool) {
        let h = self.g.area_order();
        let n = 1usize << (k - h);
        let step = 1usize << (span - h);
        let mut raced = false;
        let mut a = reg.first_area.next_multiple_of(step) - reg.first_area;
        while a + step <= reg.areas {
            // Relaxed: a free area's word is exactly 0; the claim below
            // validates with a CAS.
            if (a..a + step).all(|i| reg.area(i).load_top() == 0) {
                if self.claim_run(reg, a, n, tally).is_err() {
                    raced = true;
                } else {
                    return (NonNull::new(reg.addr_of(a << h) as *mut u8), raced);
                }
            }
            a += step;
        }
        (None, raced)
    }

    pub(super) fn claim_run(
        &self,
        reg: &Region,
        a: usize,
        n: usize,
        tally: &mut Tally,
    ) -> Result<(), ()> {
        let h = self.g.area_order();
        for i in 0..n {
            let t = reg.area(a + i).alloc(h);
            tally.add(Event::Retries, t.retries);
            if t.offset.is_none() {
                for j in (0..i).rev() {
                    let retries = reg
                        .area(a + j)
                        .free(0, h)
                        .map_err(drop)
                        .expect("release of an area we claimed");
                    tally.add(Event::Retries, retries);
                }
                return Err(());
            }
        }
        Ok(())
    }
}

/// Publishes block `p` of order `k` in `reg`, fresh from the tree, as what
/// it becomes (see [`Fresh`]). The caller passes the region it already
/// knows: a refill publishes many blocks of one area.
#[inline]
fn publish_fresh(reg: &Region, p: NonNull<u8>, k: u32, fresh: Fresh) {
    if crate::mutant::on(crate::mutant::Mutant::PublishLiveFirst) {
        publish_head(reg, p, PageDesc::head(k));
    }
    if let Some(desc) = fresh.head(k) {
        publish_head(reg, p, desc);
    }
}

/// Publishes `desc` as the head descriptor of block `p` in `reg`, fresh from
/// the tree.
#[inline]
fn publish_head(reg: &Region, p: NonNull<u8>, desc: PageDesc) {
    // Release: a free that reads this head with Acquire also sees the tree
    // CAS that allocated the block (and a slab's set-up).
    reg.desc_of(p.as_ptr() as usize)
        .store(desc.0, Ordering::Release);
}
