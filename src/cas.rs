//! The one loop that applies pure transitions to packed atomic words.

use crate::sync::{AtomicU64, Ordering};
use crossbeam_utils::Backoff;

/// A value type packed into one `u64` (llfree's `Atomic`, crossbeam's `Epoch`).
pub(crate) trait Packed: Copy {
    /// Reinterprets raw bits.
    fn from_bits(bits: u64) -> Self;
    /// The raw bits.
    fn bits(self) -> u64;
}

/// Result of a successful update: the transition's extra output and how many
/// CAS attempts lost a race first.
pub(crate) struct Updated<R> {
    pub(crate) out: R,
    pub(crate) retries: u32,
}

/// Applies `f` to the current value of `atom` until one CAS succeeds, or
/// returns `Err(observed)` when `f` refuses the value it saw (the caller acts
/// on what was observed, without a second load).
///
/// Lock-free: a CAS fails only when another thread's CAS on `atom` succeeded.
/// `compare_exchange_weak` may also fail spuriously; both just retry.
#[inline]
pub(crate) fn cas_update<T: Packed, R>(
    atom: &AtomicU64,
    mut f: impl FnMut(T) -> Option<(T, R)>,
) -> Result<Updated<R>, T> {
    // Relaxed: the value is only a guess that the CAS validates; ordering comes
    // from the successful CAS below.
    // Mutant: load (Acquire) + store (Release) instead of one CAS, so the only
    // defect is atomicity: another thread's update in between is lost.
    if crate::mutant::on(crate::mutant::Mutant::TwoStepUpdate) {
        let seen = T::from_bits(atom.load(Ordering::Acquire));
        let (new, out) = f(seen).ok_or(seen)?;
        atom.store(new.bits(), Ordering::Release);
        return Ok(Updated { out, retries: 0 });
    }
    let mut current = atom.load(Ordering::Relaxed);
    let backoff = Backoff::new();
    let mut retries = 0;
    loop {
        let (new, out) = f(T::from_bits(current)).ok_or(T::from_bits(current))?;
        // AcqRel on success: a block's previous owner's writes (released by the
        // free's CAS on this word) happen-before its next owner's use (acquired
        // by the allocation's CAS on the same word). Relaxed on failure: the
        // observed value is again only a guess.
        match atom.compare_exchange_weak(current, new.bits(), Ordering::AcqRel, Ordering::Relaxed) {
            Ok(_) => return Ok(Updated { out, retries }),
            Err(seen) => {
                current = seen;
                retries += 1;
                backoff.spin();
            }
        }
    }
}
