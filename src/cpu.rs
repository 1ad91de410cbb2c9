//! The identity of a CPU slot, shared by every layer that records which CPU
//! holds something (a slab's owner, an area's home summary, a handle).

/// A CPU slot's index, `0..cpus` (at most [`crate::MAX_CPUS`]). Where a CPU
/// is stored in a packed word it is as `index + 1`, 0 meaning none; that
/// encoding lives with each word (`Owner::token`, `Summary::of`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct CpuId(u32);

impl CpuId {
    /// CPU slot `i`.
    #[inline(always)]
    pub(crate) const fn new(i: usize) -> Self {
        Self(i as u32)
    }

    /// The slot's index.
    #[inline(always)]
    pub(crate) const fn index(self) -> usize {
        self.0 as usize
    }
}
