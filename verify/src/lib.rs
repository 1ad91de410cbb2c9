//! Shared support for the verification suites in `tests/`.
//!
//! * [`OwnedHeap`]: a heap inside memory it owns, built inside each model
//!   checker execution (shuttle and loom atomics live only there).
//! * [`World`] and [`Client`]: the heap plus the checkers of
//!   `magbuddy-checkers` (online shadow bitmap, canaries, ledger, client-side
//!   trace replayed at the end) and the end-of-schedule checks.
//! * [`explore`], [`hunt`]: run a body under shuttle's random or PCT
//!   scheduler, count the schedules, and (for mutants) catch the first
//!   failing one with a fixed seed; [`hunting`] keeps the expected panics
//!   of a seeded bug quiet.
//! * [`Tally`]: named event counts a suite asserts minimums on, so a suite
//!   that stops reaching its race fails.
//!
//! Schedule counts scale with `MAGBUDDY_VERIFY_SCALE` ([`schedules`]).
#![allow(clippy::missing_safety_doc)]

#[cfg(shuttle)]
mod explore;
#[cfg(loom)]
pub mod loom_models;
mod quiet;
#[cfg(shuttle)]
pub mod scenario;
#[cfg(shuttle)]
mod tally;
#[cfg(shuttle)]
mod via;
#[cfg(shuttle)]
mod world;

#[cfg(shuttle)]
pub use explore::{explore, hunt, suite, suite_seed, Caught, Sched};
pub use quiet::{hunting, install_quiet_hook, panic_message, quietly};
#[cfg(shuttle)]
pub use tally::Tally;
#[cfg(shuttle)]
pub use via::Via;
#[cfg(shuttle)]
pub use world::{block_bytes, Client, Op, Run, World};

use std::alloc::{alloc, dealloc, Layout};

use magbuddy::{Geometry, Heap, HeapConfig};

/// Schedules per test: `base` times `MAGBUDDY_VERIFY_SCALE` (default 1), so a
/// soak run is `MAGBUDDY_VERIFY_SCALE=100 RUSTFLAGS="--cfg shuttle" cargo test -p verify
/// --profile verify`.
pub fn schedules(base: usize) -> usize {
    base * scale()
}

/// The value of `MAGBUDDY_VERIFY_SCALE` (default 1).
pub fn scale() -> usize {
    std::env::var("MAGBUDDY_VERIFY_SCALE")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(1)
}

/// A heap inside memory it owns; freed on drop. Build one per schedule.
pub struct OwnedHeap {
    mem: *mut u8,
    layout: Layout,
    heap: *const Heap,
}

// SAFETY: the heap is Sync and the memory is owned by this value alone.
unsafe impl Send for OwnedHeap {}
// SAFETY: as above.
unsafe impl Sync for OwnedHeap {}

impl OwnedHeap {
    /// The smallest heap that has `areas` whole areas of geometry `g`.
    pub fn new(g: Geometry, cpus: usize, areas: usize) -> Self {
        Self::with_config(
            HeapConfig {
                cpus,
                geometry: g,
                ..HeapConfig::new(cpus)
            },
            areas,
        )
    }

    /// The smallest heap of `config` that has `areas` whole areas.
    pub fn with_config(config: HeapConfig, areas: usize) -> Self {
        let g = config.geometry;
        let area = (g.area_pages() as usize) * magbuddy::PAGE_SIZE;
        let len = Heap::min_region_len(config) + (areas - 1) * area;
        // Aligned to 16 areas: runs of areas are aligned in the address space, so
        // a region at a random offset would make schedules differ run to run.
        let layout = Layout::from_size_align(len, area * 16).unwrap();
        // SAFETY: non-zero size.
        let mem = unsafe { alloc(layout) };
        assert!(!mem.is_null());
        // SAFETY: the memory is ours for as long as `self`.
        let heap = unsafe { Heap::init_with(mem, len, config) }.expect("heap");
        Self { mem, layout, heap }
    }

    /// The heap.
    pub fn heap(&self) -> &Heap {
        // SAFETY: constructed in `new`, lives until drop.
        unsafe { &*self.heap }
    }

    /// The memory handed to the heap, as `(start address, length)`.
    pub fn region(&self) -> (usize, usize) {
        (self.mem as usize, self.layout.size())
    }
}

impl Drop for OwnedHeap {
    fn drop(&mut self) {
        // SAFETY: allocated in `new` with this layout; the heap is not used after.
        unsafe { dealloc(self.mem, self.layout) }
    }
}

/// CAS attempts that lost a race, summed over every CPU slot and the shared
/// path of `heap`.
pub fn cas_retries(heap: &Heap) -> u64 {
    (0..heap.cpus())
        .map(|c| heap.cpu_stats(c).cas_retries)
        .sum::<u64>()
        + heap.shared_stats().cas_retries
}

/// Allocations that returned `None`, summed like [`cas_retries`].
pub fn failed_allocs(heap: &Heap) -> u64 {
    (0..heap.cpus())
        .map(|c| heap.cpu_stats(c).failed_allocs)
        .sum::<u64>()
        + heap.shared_stats().failed_allocs
}
