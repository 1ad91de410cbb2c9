//! Seeded bugs for the verification suites (built with the model checkers'
//! cfgs, `--cfg shuttle` or `--cfg loom`, or with `--cfg magbuddy_mutants`
//! for the real-thread and property tests; never in a normal build).
//!
//! Each mutant is a deliberate defect at one site, off unless a test selects
//! it at run time, so one build of `verify` covers every mutant. In normal
//! builds [`on`] is a constant `false` and the sites compile away.
//!
//! The selector is a `core` atomic in a static on purpose: it is set outside
//! any model-checked execution and must not be a scheduling point.

#[cfg(any(shuttle, loom, magbuddy_mutants))]
static ACTIVE: core::sync::atomic::AtomicU32 = core::sync::atomic::AtomicU32::new(0);

/// The seeded defects. The verification issue lists which tool must catch each.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u32)]
pub enum Mutant {
    /// No defect.
    None = 0,
    /// Buddy: a transition's precondition is skipped when freeing (the node's
    /// allocated bit is not re-checked before it is cleared).
    FreeWithoutCheck = 1,
    /// Buddy: a state update done as load + store instead of one CAS.
    TwoStepUpdate = 2,
    /// Buddy: the reservation is returned to the area word before the node is
    /// released in the chunk word (release order inverted).
    UnreserveFirst = 3,
    /// Fast path: the depot stacks without their version tag (neither pop nor
    /// push bumps it): a plain Treiber stack, open to ABA.
    DepotPopWithoutTag = 4,
    /// Fast path: a return-list push with `Relaxed` instead of `Release`.
    ReturnPushRelaxed = 5,
    /// Fast path: a drain that skips one CPU (slot 0 ignores drain requests).
    DrainSkipsCpu = 6,
    /// Fast path: a slab released as soon as its return list is non-empty,
    /// while other objects may still be handed out.
    SlabReleaseWithReturns = 7,
    /// Soundness: an object's free bit set with a load and a store instead
    /// of one `fetch_or`, so two racing frees can both find it clear.
    FreeBitTwoStep = 8,
    /// Soundness: a cached page descriptor accepted as a live block head.
    CachedAsLive = 9,
    /// Soundness: a refill that leaves page blocks unmarked in the magazine.
    RefillSkipsMark = 10,
    /// Soundness: `None` after one failed pass, whatever completed meanwhile
    /// (the free counts ignored, as an area-word fingerprint ignored chunks).
    NoneIgnoresFrees = 11,
    /// Soundness: a failed slab allocation that does not look at the
    /// abandoned lists again after the reclaim on its way to `None`.
    RetrySkipsAbandoned = 12,
    /// Soundness: geometries with areas smaller than a slab accepted.
    GeometryUnchecked = 13,
    /// Soundness: the slab-id bound checks the range's pages, not its grid's,
    /// so the top slab's id spills into the region number.
    SlabIdsWrap = 14,
    /// Buddy: an in-place grow merges a block with its buddy without
    /// checking that the buddy is free.
    GrowIgnoresBuddy = 15,
    /// Soundness: a block fresh from the tree shows a live head before its
    /// slab or magazine writes its own descriptor, so a stale free in
    /// between releases a block the slab or magazine keeps.
    PublishLiveFirst = 16,
    /// Soundness: a free's claim of an object does not read the page
    /// descriptor again, so a stale free acts on a slab reused for another
    /// class with the old class's bit and index.
    ClaimSkipsRecheck = 17,
    /// Buddy: a batch allocation reserves the pages of one block on the
    /// area word, however many it then takes in the chunk word.
    BatchReservesOne = 18,
    /// Soundness: a flush puts each round back on its slab's lists while
    /// its magazine still lists it (the magazine is emptied at the end), so
    /// a round handed out again meanwhile reads as free to a free's exact
    /// check.
    DrainReleasesListed = 19,
}

impl Mutant {
    /// Every seeded defect, in order.
    pub const ALL: [Mutant; 19] = [
        Mutant::FreeWithoutCheck,
        Mutant::TwoStepUpdate,
        Mutant::UnreserveFirst,
        Mutant::DepotPopWithoutTag,
        Mutant::ReturnPushRelaxed,
        Mutant::DrainSkipsCpu,
        Mutant::SlabReleaseWithReturns,
        Mutant::FreeBitTwoStep,
        Mutant::CachedAsLive,
        Mutant::RefillSkipsMark,
        Mutant::NoneIgnoresFrees,
        Mutant::RetrySkipsAbandoned,
        Mutant::GeometryUnchecked,
        Mutant::SlabIdsWrap,
        Mutant::GrowIgnoresBuddy,
        Mutant::PublishLiveFirst,
        Mutant::ClaimSkipsRecheck,
        Mutant::BatchReservesOne,
        Mutant::DrainReleasesListed,
    ];
}

/// Selects the active mutant (process-wide). Only under `--cfg shuttle`,
/// `--cfg loom` or `--cfg magbuddy_mutants`.
#[cfg(any(shuttle, loom, magbuddy_mutants))]
pub fn select(m: Mutant) {
    ACTIVE.store(m as u32, core::sync::atomic::Ordering::SeqCst);
}

/// Whether mutant `m` is active. Always `false` in normal builds. Under
/// `--cfg magbuddy_mutants` (the allocator's own atomics, for the tests in
/// `tests/`), the first call selects the mutant named by the environment
/// variable `MAGBUDDY_MUTANT`, if any (`scripts/mutants.sh` sets it).
#[inline(always)]
pub fn on(m: Mutant) -> bool {
    #[cfg(all(magbuddy_mutants, feature = "std"))]
    select_from_env();
    #[cfg(any(shuttle, loom, magbuddy_mutants))]
    {
        ACTIVE.load(core::sync::atomic::Ordering::Relaxed) == m as u32
    }
    #[cfg(not(any(shuttle, loom, magbuddy_mutants)))]
    {
        let _ = m;
        false
    }
}

#[cfg(all(magbuddy_mutants, feature = "std"))]
fn select_from_env() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(name) = std::env::var("MAGBUDDY_MUTANT") {
            let m = Mutant::ALL
                .into_iter()
                .find(|m| std::format!("{m:?}") == name)
                .unwrap_or_else(|| panic!("MAGBUDDY_MUTANT={name}: no such mutant"));
            select(m);
        }
    });
}
