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
pub use heap::{CpuStats, Handle, Heap, HeapConfig, ValidateError};
