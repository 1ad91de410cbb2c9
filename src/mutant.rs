//! Seeded bugs for the verification suites (built with the model checkers'
//! cfgs, `--cfg shuttle` or `--cfg loom`, never in a normal build).
//!
//! Each mutant is a deliberate defect at one site, off unless a test selects
//! it at run time, so one build of `verify` covers every mutant. In normal
//! builds [`on`] is a constant `false` and the sites compile away.
//!
//! The selector is a `core` atomic in a static on purpose: it is set outside
//! any model-checked execution and must not be a scheduling point.

#[cfg(any(shuttle, loom))]
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
}

/// Selects the active mutant (process-wide). Only under `--cfg shuttle` or
/// `--cfg loom`.
#[cfg(any(shuttle, loom))]
pub fn select(m: Mutant) {
    ACTIVE.store(m as u32, core::sync::atomic::Ordering::SeqCst);
}

/// Whether mutant `m` is active. Always `false` in normal builds.
#[inline(always)]
pub fn on(m: Mutant) -> bool {
    #[cfg(any(shuttle, loom))]
    {
        ACTIVE.load(core::sync::atomic::Ordering::Relaxed) == m as u32
    }
    #[cfg(not(any(shuttle, loom)))]
    {
        let _ = m;
        false
    }
}
