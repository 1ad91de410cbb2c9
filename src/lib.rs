//! magbuddy: a concurrent kernel-style memory allocator built on atomics.
//!
//! Layering (each module knows only the one below it):
//!
//! ```text
//!   Heap (front end: size -> path, regions, handles, bad-input checks)
//!     └── buddy::Tree  (lock-free buddy tree per area; packed node states)
//!   baseline::SpinHeap (the seed's slab + buddy design under one spinlock)
//! ```
#![no_std]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

#[cfg(any(test, feature = "std"))]
extern crate std;

pub mod baseline;
pub mod buddy;
mod cas;
mod error;
#[cfg(all(feature = "std", not(any(loom, feature = "shuttle"))))]
mod global;
mod magazine;
#[doc(hidden)]
pub mod mutant;
mod slab;
mod stack;
mod stats;
pub mod sync;

pub use error::{FreeError, InitError};
pub use stats::{MetadataBytes, Stats, ORDERS};

/// Bytes in a page, the buddy tree's smallest block.
pub const PAGE_SIZE: usize = 4096;
/// log2 of [`PAGE_SIZE`].
pub const PAGE_SHIFT: u32 = 12;
/// Most CPUs (handles) a heap supports.
pub const MAX_CPUS: usize = 64;
/// Most regions a heap can hold (one from `init`, the rest from `add_region`).
pub const MAX_REGIONS: usize = 16;

mod heap;
pub use buddy::Geometry;
#[cfg(all(feature = "std", not(any(loom, feature = "shuttle"))))]
pub use global::MagbuddyAlloc;
pub use heap::{CpuStats, Handle, Heap, HeapConfig, ValidateError};
pub use magazine::MAG_ROUNDS;
pub use slab::{MAX_SMALL, SMALL_CLASSES};

/// Internals exposed for the model checkers in `verify/`. Not a stable API.
#[doc(hidden)]
pub mod testing {
    pub use crate::buddy::Geometry;
    use crate::buddy::{Area, AreaWord, ChunkWord};
    use crate::sync::AtomicU64;

    /// One area's buddy words, driven directly (no heap around them).
    pub struct AreaView<'a>(Area<'a>);

    impl<'a> AreaView<'a> {
        /// An area over caller-owned words (all zero = all free).
        pub fn new(top: &'a AtomicU64, chunks: &'a [AtomicU64], g: Geometry) -> Self {
            assert_eq!(chunks.len(), g.chunks_per_area() as usize);
            Self(Area { top, chunks, g })
        }

        /// Allocates order `k`; returns the first page offset.
        pub fn alloc(&self, k: u32) -> Option<u32> {
            self.0.alloc(k, &mut 0)
        }

        /// Frees the block of order `k` at `offset`; false if not allocated.
        pub fn free(&self, offset: u32, k: u32) -> bool {
            self.0.free(offset, k, &mut 0).is_ok()
        }
    }
}
