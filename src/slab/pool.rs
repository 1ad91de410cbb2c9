//! The slab pool: slab ids, the abandoned lists, adoption, giving slabs up
//! (to the tree or the abandoned lists) and the sweep that returns empty
//! abandoned slabs to the tree — everything about slabs that is not one
//! descriptor's own protocol (see `desc.rs`) nor needs a block from the
//! tree's placement (the heap makes new slabs and calls [`SlabPool::make`]).

use core::num::NonZeroU32;

use super::{Owner, SlabDesc, ABANDONED, SLAB_ORDER, SMALL_CLASSES};
use crate::region::{PageDesc, Region, RegionTable};
use crate::stack::IndexStack;
use crate::sync::{AtomicU64, Ordering};

/// Descriptor of the slab that holds grid page `p` of `reg`.
#[inline(always)]
pub(crate) fn desc_at(reg: &Region, p: usize) -> &SlabDesc {
    // SAFETY: every region is built with `SlabDesc` cells (the heap's init
    // and add_region pass `SlabDesc::new`).
    unsafe { reg.slab_cell::<SlabDesc>(p) }
}

/// The slab that holds grid page `page` of `reg`, and its base address.
#[inline(always)]
pub(crate) fn slab_at(reg: &Region, page: usize) -> (&SlabDesc, usize) {
    let head = page & !((1 << SLAB_ORDER) - 1);
    (desc_at(reg, head), reg.addr_of(head))
}

/// A slab's id: the index of its region in bits 28..32 and its place in the
/// region's slab grid below (`Layout::ids_fit` keeps it under 2^28), the
/// whole stored plus one so that `Option<SlabId>` is a `u32` with 0 = none.
/// The abandoned stacks hold [`SlabId::index`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct SlabId(NonZeroU32);

impl SlabId {
    /// The slab at grid page `page` of `reg`.
    fn of(reg: &Region, page: usize) -> Self {
        Self::from_index(((reg.index as u32) << 28) | (page >> SLAB_ORDER) as u32)
    }

    /// The id whose index is `i` (as the stacks hold it).
    #[inline]
    pub(crate) fn from_index(i: u32) -> Self {
        Self(NonZeroU32::new(i + 1).expect("slab ids fit (Layout::ids_fit)"))
    }

    /// The index: region in bits 28..32, grid slab below.
    #[inline]
    pub(crate) fn index(self) -> u32 {
        self.0.get() - 1
    }

    /// Index of the slab's region in the region table.
    fn region(self) -> usize {
        (self.index() >> 28) as usize
    }

    /// First grid page of the slab in its region.
    fn page(self) -> usize {
        ((self.index() & 0x0fff_ffff) as usize) << SLAB_ORDER
    }
}

/// Region, descriptor and base address of slab `id`.
pub(crate) fn slab_by_id(table: &RegionTable, id: SlabId) -> (&Region, &SlabDesc, usize) {
    let reg = table
        .get(id.region())
        .expect("slab id names a published region");
    let page = id.page();
    (reg, desc_at(reg, page), reg.addr_of(page))
}

/// The link of slab `i` (an index on a stack) in the abandoned lists.
fn link(table: &RegionTable, i: u32) -> &crate::sync::AtomicU32 {
    &slab_by_id(table, SlabId::from_index(i)).1.link
}

/// Slabs without an owner, and the count of slabs carved from the tree.
pub(crate) struct SlabPool {
    /// Abandoned slabs with objects to give, per small class.
    abandoned: [IndexStack; SMALL_CLASSES],
    /// Abandoned slabs a sweep examined and found in use: kept visible to
    /// allocators while the sweep goes on (see [`SlabPool::sweep_all`]).
    swept: [IndexStack; SMALL_CLASSES],
    /// Slabs currently carved from the buddy tree.
    live: AtomicU64,
}

impl SlabPool {
    /// No slabs.
    pub(crate) fn new() -> Self {
        Self {
            abandoned: core::array::from_fn(|_| IndexStack::new()),
            swept: core::array::from_fn(|_| IndexStack::new()),
            live: AtomicU64::new(0),
        }
    }

    /// Slabs currently carved from the buddy tree.
    pub(crate) fn live(&self) -> u64 {
        // Relaxed: a statistic.
        self.live.load(Ordering::Relaxed)
    }

    /// Frees handed-out object `p` of class `c` (in the slab holding `page`)
    /// into its slab: on the local list if `by` owns it, else onto the
    /// return list (publishing an abandoned-full slab). True for the latter
    /// (a remote free). `by` is `None` for a caller that owns no slab.
    pub(crate) fn free_to_slab(
        &self,
        by: Option<Owner>,
        reg: &Region,
        page: usize,
        c: usize,
        p: usize,
    ) -> bool {
        let (slab, base) = slab_at(reg, page);
        // Relaxed: only this thread could have made `by` the owner.
        if slab.owner.load(Ordering::Relaxed) == Owner::token_of(by) {
            // SAFETY: we own the slab; p is one of its handed-out objects.
            unsafe { slab.free_local(base, p) };
            return false;
        }
        // SAFETY: p is a handed-out object of that slab, given up by the caller.
        if unsafe { slab.free_remote(base, c as u32, p) } {
            let id = SlabId::of(reg, reg.page_of(base));
            self.abandoned[c].push(id.index(), &slab.link);
        }
        true
    }

    /// Makes the fresh block at grid page `page` of `reg` (order
    /// [`SLAB_ORDER`], just allocated by the caller) a slab of class `c`
    /// owned by `owner`; returns its id.
    pub(crate) fn make(&self, reg: &Region, page: usize, c: usize, owner: Owner) -> SlabId {
        let s = desc_at(reg, page);
        // SAFETY: the block is fresh from the tree; nobody else can reach it.
        unsafe { s.init(reg.addr_of(page), c, owner.token()) };
        for k in 0..1 << SLAB_ORDER {
            // The first page is open from the start (init tagged its
            // objects), the others once carving reaches them (`take`).
            let d = PageDesc::slab_page(c, k < super::opened(c as u32, 0));
            // Release: the slab descriptor's init is visible to whoever frees
            // an object of it after reading this page descriptor.
            reg.desc(page + k).store(d.0, Ordering::Release);
        }
        // Relaxed: a statistic.
        self.live.fetch_add(1, Ordering::Relaxed);
        SlabId::of(reg, page)
    }

    /// Pops and adopts an abandoned slab of class `c` for `owner` (from
    /// either list) and collects its returns.
    pub(crate) fn adopt(&self, table: &RegionTable, c: usize, owner: Owner) -> Option<SlabId> {
        for list in [&self.abandoned[c], &self.swept[c]] {
            while let Some(i) = list.pop(|i| link(table, i)) {
                let id = SlabId::from_index(i);
                let (_, s, base) = slab_by_id(table, id);
                if s.adopt(owner.token()) {
                    // SAFETY: adopted: we own it now.
                    unsafe { s.collect(base) };
                    return Some(id);
                }
            }
        }
        None
    }

    /// Ends `owner`'s ownership of slab `id`: released to the tree if nothing
    /// is handed out, on the abandoned stack if it has objects left,
    /// abandoned-full otherwise.
    ///
    /// # Safety
    /// `owner` owns the slab.
    pub(crate) unsafe fn give_up(&self, reg: &Region, s: &SlabDesc, id: SlabId, owner: Owner) {
        // SAFETY: forwarded.
        unsafe { self.give_up_to(reg, s, id, owner, &self.abandoned) }
    }

    /// [`Self::give_up`], publishing a slab with objects left on `lists`
    /// (one stack per class).
    ///
    /// # Safety
    /// As [`Self::give_up`].
    unsafe fn give_up_to(
        &self,
        reg: &Region,
        s: &SlabDesc,
        id: SlabId,
        owner: Owner,
        lists: &[IndexStack; SMALL_CLASSES],
    ) {
        let page = id.page();
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
                let h = reg.g.area_order();
                let off = (page & ((1 << h) - 1)) as u32;
                reg.area(page >> h)
                    .free(off, SLAB_ORDER)
                    .map_err(drop)
                    .expect("slab block allocated in the tree");
                // Relaxed: a statistic.
                self.live.fetch_sub(1, Ordering::Relaxed);
                return;
            }
            // Nothing left to hand out and no returns: abandoned-full, on no
            // stack until a remote free publishes it.
            let class = s.local().class as usize;
            if !s.has_local() && s.try_abandon_full(owner.token()) {
                return;
            }
            // Objects to give (or returns that arrived meanwhile): publish it.
            s.collect(base);
            s.abandon();
            lists[class].push(id.index(), &s.link);
        }
    }

    /// Sweeps the abandoned slabs of every class: empty ones go back to the
    /// buddy tree. Every slab in the tree bounds a sweep: it ends even while
    /// other threads keep abandoning slabs.
    pub(crate) fn sweep_all(&self, table: &RegionTable) {
        // Relaxed: a bound, not a synchronisation.
        let budget = self.live.load(Ordering::Relaxed) as usize + 1;
        for c in 0..SMALL_CLASSES {
            self.sweep(table, c, &self.abandoned, &self.swept, budget);
            self.sweep(table, c, &self.swept, &self.abandoned, budget);
        }
    }

    /// Adopts up to `budget` slabs of class `c` from `from` one at a time:
    /// empty ones go back to the tree, the others onto `to` at once. So a
    /// sweep keeps at most one slab from allocators at any moment (a sweep
    /// that held every in-use slab until its end made concurrent shared
    /// allocations fail with objects free), and never pops what it pushed.
    fn sweep(
        &self,
        table: &RegionTable,
        c: usize,
        from: &[IndexStack; SMALL_CLASSES],
        to: &[IndexStack; SMALL_CLASSES],
        budget: usize,
    ) {
        for _ in 0..budget {
            let Some(i) = from[c].pop(|i| link(table, i)) else {
                return;
            };
            let id = SlabId::from_index(i);
            let (reg, s, _) = slab_by_id(table, id);
            if s.adopt(Owner::Shared.token()) {
                // SAFETY: adopted.
                unsafe { self.give_up_to(reg, s, id, Owner::Shared, to) };
            }
        }
    }
}
