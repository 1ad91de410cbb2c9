//! The region table: the heap's regions by index (the high bits of slab
//! ids), published once each and never removed.

use super::Region;
use crate::sync::{AtomicUsize, Ordering};
use crate::MAX_REGIONS;

/// Addresses of published regions, plus the first one for one-compare
/// lookups on the common path.
pub(crate) struct RegionTable {
    /// Addresses of published regions (0 = slot reserved, not yet published).
    regions: [AtomicUsize; MAX_REGIONS],
    /// Slots reserved so far (the first region's included).
    count: AtomicUsize,
    /// The region built by init (immutable; also `regions[0]` once published).
    first: *const Region,
}

impl RegionTable {
    /// A table whose slot 0 is reserved for `first` (published by the caller
    /// with [`Self::publish`]).
    pub(crate) fn new(first: &Region) -> Self {
        Self {
            regions: core::array::from_fn(|_| AtomicUsize::new(0)),
            count: AtomicUsize::new(1),
            first,
        }
    }

    /// Reserves the next slot; `None` when all [`MAX_REGIONS`] are taken.
    pub(crate) fn reserve(&self) -> Option<usize> {
        // AcqRel: reserves a unique index; pairs with other add_region calls.
        let index = self.count.fetch_add(1, Ordering::AcqRel);
        if index >= MAX_REGIONS {
            self.count.fetch_sub(1, Ordering::AcqRel);
            return None;
        }
        Some(index)
    }

    /// Publishes `region` in its reserved slot `index`.
    pub(crate) fn publish(&self, index: usize, region: &Region) {
        // Release: the region's metadata, constructed before, is visible to
        // any thread that loads this address with Acquire (`iter`, `get`).
        self.regions[index].store(region as *const Region as usize, Ordering::Release);
    }

    /// Slots reserved so far, at least 1 and at most [`MAX_REGIONS`].
    #[inline]
    pub(crate) fn reserved(&self) -> usize {
        // Acquire: as in `iter`.
        self.count.load(Ordering::Acquire).clamp(1, MAX_REGIONS)
    }

    /// The first region (published before the heap is returned from init).
    #[inline(always)]
    pub(crate) fn first(&self) -> &Region {
        // SAFETY: the first region is published before the heap is returned
        // from init and lives as long as the heap (and so this table).
        unsafe { &*self.first }
    }

    /// Published regions, in index order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Region> + '_ {
        // Acquire: pairs with the Release in `reserve`'s fetch_add.
        let n = self.count.load(Ordering::Acquire).min(MAX_REGIONS);
        self.regions[..n].iter().filter_map(|r| {
            // Acquire: pairs with the Release store in `publish`, so the
            // region's metadata is visible before we use it.
            let addr = r.load(Ordering::Acquire);
            // SAFETY: a published address points to a Region constructed in
            // place that lives as long as the heap.
            (addr != 0).then(|| unsafe { &*(addr as *const Region) })
        })
    }

    /// The region holding `addr`: the first region without touching the
    /// region table (the common case), then the others.
    #[inline]
    pub(crate) fn of(&self, addr: usize) -> Option<&Region> {
        let first = self.first();
        if addr.wrapping_sub(first.start) < first.end - first.start {
            return Some(first);
        }
        self.iter().skip(1).find(|r| r.contains(addr))
    }

    /// The region published at `index`, if any.
    pub(crate) fn get(&self, index: usize) -> Option<&Region> {
        // Acquire: pairs with the Release store in `publish`.
        let addr = self.regions.get(index)?.load(Ordering::Acquire);
        // SAFETY: as in `iter`.
        (addr != 0).then(|| unsafe { &*(addr as *const Region) })
    }
}
