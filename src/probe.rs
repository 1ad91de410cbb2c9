//! Probes: events of the lower layers that no counter of the heap shows,
//! counted for the verification suites (read through `crate::testing`) so
//! they can assert they reached them. Next to `mutant.rs`, the other hook
//! the suites have into the allocator; both are at the bottom, so any layer
//! may note a probe.

/// Events of the buddy tree that no counter of the heap shows, counted
/// for the verification suites so they can assert they reached them.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Probe {
    /// A chunk had room by its count but no aligned free node: the
    /// reservation was given back and the next chunk tried.
    FallThrough = 0,
    /// A whole area (order `H`) was taken in its area word: an area-sized
    /// block, one area of a multi-area run, or a claim a run undoes.
    AreaClaim = 1,
    /// One chunk CAS took several blocks at once (a page-magazine refill,
    /// `Area::alloc_many`).
    Batch = 2,
}

#[cfg(all(any(shuttle, loom), feature = "std"))]
const PROBES: usize = 3;

#[cfg(all(any(shuttle, loom), feature = "std"))]
std::thread_local! {
    static COUNTS: [core::cell::Cell<u64>; PROBES] = const {
        [const { core::cell::Cell::new(0) }; PROBES]
    };
}

/// Counts `p` on the calling OS thread. Only with a model checker's cfg
/// (`shuttle` or `loom`) and feature `std`; otherwise nothing (and
/// compiled away).
#[inline(always)]
pub(crate) fn note(p: Probe) {
    #[cfg(all(any(shuttle, loom), feature = "std"))]
    COUNTS.with(|c| c[p as usize].set(c[p as usize].get() + 1));
    let _ = p;
}

/// How often `p` happened on this OS thread since the last
/// [`reset_probes`]. shuttle and loom run every task of an execution on
/// the thread that called them, so this counts one test's executions
/// even while other tests run on other threads. Always 0 without
/// a model checker's cfg and feature `std`.
pub fn probe_count(p: Probe) -> u64 {
    #[cfg(all(any(shuttle, loom), feature = "std"))]
    return COUNTS.with(|c| c[p as usize].get());
    #[cfg(not(all(any(shuttle, loom), feature = "std")))]
    {
        let _ = p;
        0
    }
}

/// Sets this OS thread's probe counts to zero.
pub fn reset_probes() {
    #[cfg(all(any(shuttle, loom), feature = "std"))]
    COUNTS.with(|c| c.iter().for_each(|x| x.set(0)));
}
