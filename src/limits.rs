//! The crate's page size and its limits on CPUs and regions (re-exported at
//! the crate root).

/// Bytes in a page, the buddy tree's smallest block.
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
/// Most CPUs (handles) a heap supports.
pub const MAX_CPUS: usize = 64;
/// Most regions a heap can hold (one from `init`, the rest from `add_region`).
pub const MAX_REGIONS: usize = 16;
