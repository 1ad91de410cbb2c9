//! The per-CPU fast path: magazines over slabs (objects of 8 B – 2 KiB) and
//! over the buddy tree (blocks of 4, 8 and 16 KiB), and the drain protocol
//! that bounds what a CPU can keep from others.
//!
//! Flows (Bonwick's, with mimalloc's remote frees):
//!
//! ```text
//! alloc: loaded magazine ─empty→ previous ─empty→ depot full stack
//!        ─none→ refill from the CPU's current slab (local list, then its
//!        return list), an adopted abandoned slab, or a new slab / pages
//! free:  loaded magazine ─full→ previous ─full→ depot (below its limit)
//!        ─else→ rounds go home: own slab (plain list), other slab (return
//!        list CAS), pages (buddy tree)
//! ```
//!
//! A hit on the loaded magazine reads one shared word (the drain epoch,
//! Relaxed) and performs no atomic read-modify-write.
//!
//! # No false out-of-memory
//!
//! What a CPU keeps is capped: two magazines per class, each of at most
//! [`crate::Heap::magazine_capacity`] rounds, and one current slab per small
//! class; the sum is [`crate::Heap::cpu_cache_cap`], scaled from the heap size
//! and CPU count at init. Everything else is reclaimable by anyone: full
//! magazines in the depot, abandoned slabs, released handles' caches (flushed
//! at release). When the buddy tree cannot serve, the allocating thread
//! flushes its own caches, raises the drain epoch (active CPUs flush on their
//! next call), empties the depot and sweeps abandoned slabs, then searches
//! again. So an allocation fails only when free memory plus what that
//! reclaims is smaller than the request plus the caps of CPUs that do not
//! call in.

use core::ptr::NonNull;

use super::region::{PageDesc, Region};
use super::{Ctx, Handle, Heap};
use crate::magazine::{Magazine, Rounds};
use crate::slab::{self, SlabDesc, ABANDONED, MAX_SMALL, SLAB_ORDER, SMALL_CLASSES};
use crate::sync::Ordering;
use crate::PAGE_SIZE;

/// Block orders 0, 1, 2 (4, 8, 16 KiB) are cached in magazines too.
pub(crate) const PAGE_CLASSES: usize = 3;
/// Small classes plus page classes.
pub(crate) const CACHE_CLASSES: usize = SMALL_CLASSES + PAGE_CLASSES;
/// Largest request served through magazines.
pub(crate) const MAX_CACHED: usize = PAGE_SIZE << (PAGE_CLASSES - 1);

/// Cache class of a request of `1 ..= MAX_CACHED` bytes.
#[inline]
pub(crate) fn cache_class(size: usize) -> usize {
    if size <= MAX_SMALL {
        slab::class_of(size)
    } else {
        SMALL_CLASSES
            + size
                .div_ceil(PAGE_SIZE)
                .next_power_of_two()
                .trailing_zeros() as usize
    }
}

/// Bytes of one round of cache class `cc`.
#[inline]
pub(crate) const fn round_size(cc: usize) -> usize {
    if cc < SMALL_CLASSES {
        slab::class_size(cc)
    } else {
        PAGE_SIZE << (cc - SMALL_CLASSES)
    }
}

/// A CPU's cache, touched only by the holder of its slot.
#[derive(Clone, Copy, Default)]
pub(crate) struct CpuCache {
    /// Magazine index + 1 (0 = none).
    loaded: [u32; CACHE_CLASSES],
    previous: [u32; CACHE_CLASSES],
    /// Current slab id + 1 per small class (0 = none).
    current: [u32; SMALL_CLASSES],
    /// The drain epoch this cache last honoured.
    epoch: u64,
}

/// Pattern marking a free object (see `Heap::mark_free`).
#[inline]
fn free_mark(p: usize) -> u64 {
    (p as u64) ^ 0x6d61_6762_7564_6479
}

impl Heap {
    pub(crate) fn mag(&self, m: u32) -> &Magazine {
        &self.depot().pool[m as usize]
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
        let page = ((id & 0x0fff_ffff) as usize) << SLAB_ORDER;
        (reg, reg.slab(page), reg.addr_of(page))
    }

    /// Checks and sets the free mark of object `p` (class `c`). False means
    /// the mark was already there: `p` is free already (a double free).
    /// Which step sets it depends on the build (see `free_small`).
    ///
    /// # Safety
    /// `p` is an object of class `c` in a live slab.
    pub(crate) unsafe fn mark_free(p: usize, c: usize) -> bool {
        // SAFETY: the object is in a live slab; bytes 4.. are past the link.
        unsafe {
            if c == 0 {
                let m = (p + 4) as *mut u32;
                let mark = free_mark(p) as u32;
                (m.read() != mark).then(|| m.write(mark)).is_some()
            } else {
                let m = (p + 8) as *mut u64;
                (m.read() != free_mark(p))
                    .then(|| m.write(free_mark(p)))
                    .is_some()
            }
        }
    }

    /// Clears the free mark of object `p` (class `c`).
    ///
    /// # Safety
    /// As [`Self::mark_free`], and the caller holds the object.
    pub(crate) unsafe fn unmark(p: usize, c: usize) {
        // SAFETY: as above.
        unsafe {
            if c == 0 {
                ((p + 4) as *mut u32).write(0);
            } else {
                ((p + 8) as *mut u64).write(0);
            }
        }
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
    /// the buddy tree.
    pub(crate) fn flush_round(&self, token: u32, cc: usize, p: usize, ctx: &mut Ctx) -> bool {
        let reg = self
            .regions()
            .find(|r| r.contains(p))
            .expect("round inside the heap");
        let page = reg.page_of(p);
        if cc >= SMALL_CLASSES {
            // SAFETY: a cached block is allocated in the tree and ours.
            return unsafe { self.release_block(reg, page, p, &mut ctx.retries) }
                .map_err(|_| self.record_corruption(p))
                .is_ok();
        }
        // Without `checked`, the mark is set when an object reaches its slab,
        // so a duplicate that reaches the slab layer is caught here.
        // SAFETY: the object lies in a live slab (it is handed out).
        if !cfg!(feature = "checked") && !unsafe { Self::mark_free(p, cc) } {
            self.record_corruption(p);
            return false;
        }
        ctx.remote += self.free_to_slab(token, reg, page, cc, p) as u32;
        true
    }

    fn free_to_slab(&self, token: u32, reg: &Region, page: usize, c: usize, p: usize) -> bool {
        let head = page & !((1 << SLAB_ORDER) - 1);
        let (slab, base) = (reg.slab(head), reg.addr_of(head));
        // Relaxed: only this thread could have made `token` the owner.
        if slab.owner.load(Ordering::Relaxed) == token {
            // SAFETY: we own the slab; p is one of its handed-out objects.
            unsafe { slab.free_local(base, p) };
            return false;
        }
        // SAFETY: p is a handed-out object of that slab, given up by the caller.
        if unsafe { slab.free_remote(base, c as u32, p) } {
            self.abandoned[c].push(Self::slab_id(reg, head), &slab.link);
        }
        true
    }

    /// Frees object `p` of class `c` without a handle (shared path).
    pub(crate) fn free_small_shared(
        &self,
        reg: &Region,
        page: usize,
        c: usize,
        p: usize,
    ) -> Result<(), crate::FreeError> {
        // SAFETY: p is an object of a live slab (checked by the caller).
        if !unsafe { Self::mark_free(p, c) } {
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
                    Self::unmark(out[0], c);
                    return NonNull::new(out[0] as *mut u8);
                }
            }
        }
    }

    /// Adopts an abandoned slab of class `c` for `token`, or makes a new one.
    fn adopt_or_new(&self, c: usize, token: u32, ctx: &mut Ctx) -> Option<u32> {
        while let Some(id) = self.abandoned[c].pop(|i| &self.slab_by_id(i).1.link) {
            let (_, s, base) = self.slab_by_id(id);
            if s.adopt(token) {
                // SAFETY: adopted: we own it now.
                unsafe { s.collect(base) };
                ctx.adopted += 1;
                return Some(id);
            }
        }
        let p = self.alloc_order(SLAB_ORDER, ctx).or_else(|| {
            self.reclaim();
            self.alloc_order(SLAB_ORDER, ctx)
        })?;
        let reg = self
            .regions()
            .find(|r| r.contains(p.as_ptr() as usize))
            .expect("new slab in the heap");
        let page = reg.page_of(p.as_ptr() as usize);
        let s = reg.slab(page);
        // SAFETY: the block is fresh from the tree; nobody else can reach it.
        unsafe { s.init(c, token) };
        for q in page..page + (1 << SLAB_ORDER) {
            // Release: the slab descriptor's init is visible to whoever frees
            // an object of it after reading this page descriptor.
            reg.desc(q).store(PageDesc::slab(c).0, Ordering::Release);
        }
        // Relaxed: a statistic.
        self.slabs_live.fetch_add(1, Ordering::Relaxed);
        Some(Self::slab_id(reg, page))
    }

    /// Ends `token`'s ownership of slab `id`: released to the tree if nothing
    /// is handed out, on the abandoned stack if it has objects left,
    /// abandoned-full otherwise.
    ///
    /// # Safety
    /// `token` owns the slab.
    pub(crate) unsafe fn give_up_slab(&self, reg: &Region, s: &SlabDesc, id: u32, token: u32) {
        let page = ((id & 0x0fff_ffff) as usize) << SLAB_ORDER;
        let base = reg.addr_of(page);
        // SAFETY: owned (caller).
        unsafe {
            s.collect(base);
            if s.local().handed == 0
                && (s.returns_snapshot().head() == 0 || SlabDesc::release_ignores_returns())
            {
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
            if s.has_local() {
                s.abandon();
                self.abandoned[s.local().class as usize].push(id, &s.link);
            } else if !s.try_abandon_full(token) {
                // Returns arrived meanwhile: they make it worth publishing.
                s.collect(base);
                s.abandon();
                self.abandoned[s.local().class as usize].push(id, &s.link);
            }
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
                unsafe {
                    self.mag(m)
                        .with(|rs| self.flush_rounds(0, cc, rs, &mut ctx))
                };
                depot.put_empty(m);
            }
        }
        for c in 0..SMALL_CLASSES {
            // Adopt every abandoned slab, remember the ones still in use
            // through their (now ours) links, then publish those again.
            let mut keep = 0u32;
            while let Some(id) = self.abandoned[c].pop(|i| &self.slab_by_id(i).1.link) {
                let (reg, s, base) = self.slab_by_id(id);
                if !s.adopt(slab::SHARED) {
                    continue;
                }
                // SAFETY: adopted.
                unsafe {
                    s.collect(base);
                    if s.local().handed == 0 {
                        self.give_up_slab(reg, s, id, slab::SHARED);
                    } else {
                        // Relaxed: the link is ours while we own the slab.
                        s.link.store(keep, Ordering::Relaxed);
                        keep = id + 1;
                    }
                }
            }
            while keep != 0 {
                let (reg, s, _) = self.slab_by_id(keep - 1);
                let next = s.link.load(Ordering::Relaxed);
                // SAFETY: still owned by us (SHARED).
                unsafe { self.give_up_slab(reg, s, keep - 1, slab::SHARED) };
                keep = next;
            }
        }
    }

    /// Returns every round of `rs` home.
    pub(crate) fn flush_rounds(&self, token: u32, cc: usize, rs: &mut Rounds, ctx: &mut Ctx) {
        for &p in &rs.slots[..rs.count as usize] {
            self.flush_round(token, cc, p, ctx);
        }
        rs.count = 0;
    }
}

impl Handle<'_> {
    #[inline(always)]
    fn token(&self) -> u32 {
        self.cpu as u32 + 1
    }

    #[inline(always)]
    fn cache<R>(&mut self, f: impl FnOnce(&mut CpuCache) -> R) -> R {
        // SAFETY: the handle holds the slot exclusively.
        self.slot.cache.with_mut(|c| f(unsafe { &mut *c }))
    }

    /// Pops a round of class `cc` from the loaded magazine (the fast path):
    /// `None` if it is empty, missing, or a drain is due.
    #[inline(always)]
    pub(crate) fn pop_loaded(&mut self, cc: usize) -> Option<usize> {
        self.epoch_current().then(|| self.take_round(cc)).flatten()
    }

    /// Pushes a round of class `cc` onto the loaded magazine (the fast path):
    /// false if it is full, missing, or a drain is due.
    #[inline(always)]
    pub(crate) fn push_loaded(&mut self, cc: usize, p: usize) -> bool {
        self.epoch_current() && self.put_round(cc, p)
    }

    /// Whether this CPU has honoured the latest drain request.
    #[inline(always)]
    fn epoch_current(&mut self) -> bool {
        // Relaxed: the epoch is a request flag; a late view only delays the
        // flush by one call.
        let epoch = self.heap.drain_epoch.load(Ordering::Relaxed);
        self.cache(|c| c.epoch == epoch)
    }

    #[inline(always)]
    fn take_round(&mut self, cc: usize) -> Option<usize> {
        let heap = self.heap;
        self.cache(|c| {
            let m = c.loaded[cc].checked_sub(1)?;
            // SAFETY: the loaded magazine is held by this CPU.
            unsafe {
                heap.mag(m).with(|r| {
                    r.count.checked_sub(1).map(|n| {
                        r.count = n;
                        r.slots[n as usize]
                    })
                })
            }
        })
    }

    #[inline(always)]
    fn put_round(&mut self, cc: usize, p: usize) -> bool {
        let heap = self.heap;
        let cap = heap.mag_cap[cc];
        self.cache(|c| {
            let Some(m) = c.loaded[cc].checked_sub(1) else {
                return false;
            };
            // SAFETY: as in `take_round`.
            unsafe {
                heap.mag(m).with(|r| {
                    let room = r.count < cap;
                    if room {
                        r.slots[r.count as usize] = p;
                        r.count += 1;
                    }
                    room
                })
            }
        })
    }

    /// Flushes this CPU's magazines if the drain epoch moved.
    fn honour_drain(&mut self, ctx: &mut Ctx) {
        // Relaxed: see `pop_loaded`.
        let epoch = self.heap.drain_epoch.load(Ordering::Relaxed);
        if self.cache(|c| c.epoch) != epoch {
            self.flush_magazines(ctx, false);
            self.cache(|c| c.epoch = epoch);
            ctx.drains += 1;
        }
    }

    /// Empties both magazines of every class: into the depot when `to_depot`
    /// and it has room, else home to slabs and the tree.
    pub(crate) fn flush_magazines(&mut self, ctx: &mut Ctx, to_depot: bool) {
        let heap = self.heap;
        let depot = heap.depot();
        let token = self.token();
        for cc in 0..CACHE_CLASSES {
            let mags = self.cache(|c| {
                [
                    core::mem::take(&mut c.loaded[cc]),
                    core::mem::take(&mut c.previous[cc]),
                ]
            });
            for m in mags.into_iter().filter(|&m| m != 0).map(|m| m - 1) {
                // SAFETY: held by this CPU until given away here.
                let n = unsafe { heap.mag(m).with(|r| r.count) };
                if n > 0 && to_depot && depot.put_full(cc, m) {
                    continue;
                }
                // SAFETY: as above.
                unsafe { heap.mag(m).with(|r| heap.flush_rounds(token, cc, r, ctx)) };
                depot.put_empty(m);
            }
        }
    }

    /// Gives up every current slab (at release).
    pub(crate) fn give_up_slabs(&mut self) {
        for c in 0..SMALL_CLASSES {
            let id = self.cache(|cache| core::mem::take(&mut cache.current[c]));
            if id != 0 {
                let (reg, s, _) = self.heap.slab_by_id(id - 1);
                // SAFETY: the current slab is owned by this slot's token.
                unsafe { self.heap.give_up_slab(reg, s, id - 1, self.token()) };
            }
        }
    }

    /// The allocation slow path for cache class `cc`.
    #[cold]
    #[inline(never)]
    pub(crate) fn alloc_cached_slow(&mut self, cc: usize, ctx: &mut Ctx) -> Option<usize> {
        self.honour_drain(ctx);
        ctx.misses += 1;
        let heap = self.heap;
        let depot = heap.depot();
        // 1. The previous magazine, if it has rounds.
        let swapped = self.cache(|c| {
            // SAFETY: held by this CPU.
            let prev_full = c.previous[cc] != 0
                && unsafe { heap.mag(c.previous[cc] - 1).with(|r| r.count > 0) };
            if prev_full {
                core::mem::swap(&mut c.loaded[cc], &mut c.previous[cc]);
            }
            prev_full
        });
        if swapped {
            return self.take_round(cc);
        }
        // 2. A full magazine from the depot, in exchange for the empty one.
        if let Some(full) = depot.get_full(cc) {
            let empty = self.cache(|c| core::mem::replace(&mut c.loaded[cc], full + 1));
            if empty != 0 {
                depot.put_empty(empty - 1);
            }
            ctx.exchanges += 1;
            return self.take_round(cc);
        }
        // 3. Refill the loaded magazine from slabs or the buddy tree.
        if self.cache(|c| c.loaded[cc]) == 0 {
            match depot.get_empty() {
                Some(m) => self.cache(|c| c.loaded[cc] = m + 1),
                None => return self.refill_one(cc, ctx),
            }
        }
        let m = self.cache(|c| c.loaded[cc]) - 1;
        let want = (heap.mag_cap[cc] as usize).div_ceil(2);
        let mut buf = [0usize; crate::magazine::MAG_ROUNDS];
        let n = self.refill(cc, &mut buf[..want], ctx);
        if n == 0 {
            // Out of memory here: flush our own caches (which returns `m` to
            // the pool), reclaim what anyone may, and try once more: the
            // no-false-OOM contract.
            self.flush_magazines(ctx, false);
            heap.reclaim();
            self.cache(|c| c.epoch = heap.drain_epoch.load(Ordering::Relaxed));
            return self.refill_one(cc, ctx);
        }
        // SAFETY: the loaded magazine is ours and empty.
        unsafe {
            heap.mag(m).with(|r| {
                r.slots[..n].copy_from_slice(&buf[..n]);
                r.count = n as u32 - 1;
                Some(r.slots[n - 1])
            })
        }
    }

    fn refill_one(&mut self, cc: usize, ctx: &mut Ctx) -> Option<usize> {
        let mut one = [0usize];
        (self.refill(cc, &mut one, ctx) == 1).then_some(one[0])
    }

    /// Fills `out` with fresh rounds of class `cc`; returns how many.
    fn refill(&mut self, cc: usize, out: &mut [usize], ctx: &mut Ctx) -> usize {
        if cc >= SMALL_CLASSES {
            let k = (cc - SMALL_CLASSES) as u32;
            let mut n = 0;
            while n < out.len() {
                match self.heap.alloc_order(k, ctx) {
                    Some(p) => out[n] = p.as_ptr() as usize,
                    None => break,
                }
                n += 1;
            }
            return n;
        }
        let token = self.token();
        loop {
            let cur = self.cache(|c| c.current[cc]);
            let id = if cur != 0 {
                cur - 1
            } else {
                let Some(id) = self.heap.adopt_or_new(cc, token, ctx) else {
                    return 0;
                };
                self.cache(|c| c.current[cc] = id + 1);
                id
            };
            let (reg, s, base) = self.heap.slab_by_id(id);
            // SAFETY: the current slab is owned by our token.
            unsafe {
                let n = s.take(base, out);
                if n > 0 {
                    if !cfg!(feature = "checked") {
                        out[..n].iter().for_each(|&p| Heap::unmark(p, cc));
                    }
                    return n;
                }
                if s.collect(base) > 0 {
                    continue;
                }
                // Exhausted: let it go (anyone adopts it once objects return).
                self.cache(|c| c.current[cc] = 0);
                self.heap.give_up_slab(reg, s, id, token);
                ctx.abandoned += 1;
            }
        }
    }

    /// The free slow path for cache class `cc`: the loaded magazine is full
    /// (or missing, or a drain is due).
    #[cold]
    #[inline(never)]
    pub(crate) fn free_cached_slow(&mut self, cc: usize, p: usize, ctx: &mut Ctx) {
        self.honour_drain(ctx);
        let heap = self.heap;
        let depot = heap.depot();
        let token = self.token();
        let get = |h: &mut Self| h.cache(|c| (c.loaded[cc], c.previous[cc]));
        let (loaded, previous) = get(self);
        if loaded == 0 {
            match depot.get_empty() {
                Some(m) => self.cache(|c| c.loaded[cc] = m + 1),
                None => {
                    heap.flush_round(token, cc, p, ctx);
                    return;
                }
            }
        } else {
            // SAFETY: held by this CPU.
            let prev_empty =
                previous != 0 && unsafe { heap.mag(previous - 1).with(|r| r.count == 0) };
            if prev_empty || previous == 0 {
                // Loaded is full: it becomes previous; an empty one is loaded.
                let empty = if prev_empty {
                    Some(previous - 1)
                } else {
                    depot.get_empty()
                };
                match empty {
                    Some(e) => self.cache(|c| {
                        c.previous[cc] = loaded;
                        c.loaded[cc] = e + 1;
                    }),
                    None => {
                        // SAFETY: held by this CPU.
                        unsafe {
                            heap.mag(loaded - 1)
                                .with(|r| heap.flush_rounds(token, cc, r, ctx))
                        };
                    }
                }
            } else {
                // Both full: the previous goes to the depot (or home), and
                // loaded becomes previous.
                if depot.put_full(cc, previous - 1) {
                    ctx.exchanges += 1;
                } else {
                    // SAFETY: held by this CPU.
                    unsafe {
                        heap.mag(previous - 1)
                            .with(|r| heap.flush_rounds(token, cc, r, ctx))
                    };
                    depot.put_empty(previous - 1);
                }
                match depot.get_empty() {
                    Some(e) => self.cache(|c| {
                        c.previous[cc] = loaded;
                        c.loaded[cc] = e + 1;
                    }),
                    None => {
                        self.cache(|c| c.previous[cc] = 0);
                        // SAFETY: held by this CPU.
                        unsafe {
                            heap.mag(loaded - 1)
                                .with(|r| heap.flush_rounds(token, cc, r, ctx))
                        };
                    }
                }
            }
        }
        let pushed = self.put_round(cc, p);
        debug_assert!(pushed, "an empty magazine is loaded");
    }
}
