//! magbuddy: a concurrent kernel-style memory allocator built on atomics.
//!
//! Layers, each importing only the ones below it (`scripts/layers.sh`
//! checks this):
//!
//! ```text
//!   heap/      front end: Heap, Handle, shared path, placement, free and
//!              its checks, refill/flush slow paths, reclaim, stats, validate
//!     magazine/  Magazine, the depot and its pool, the per-CPU cache
//!                (pop / push / swap of the loaded magazine)
//!       slab/      slab descriptor (owner, return list, free bitmap), the
//!                  pool (ids, adoption, abandonment, sweep), the free mark
//!         region/    a region's metadata laid out in place, page
//!                    descriptors, the region table
//!           buddy/     one area's lock-free buddy words (Area, AreaWord,
//!                      ChunkWord) and the tree's Geometry
//!   shared at the bottom: sync (the std/loom/shuttle facade), cas, stack
//!   (tagged index stack), cpu (CpuId), mutant and probe (hooks for the
//!   suites), error, limits (PAGE_SIZE, MAX_CPUS, ...)
//!   testing (views for verify/ and the tests); global_heap (the no_std
//!   `#[global_allocator]` static) and global (its std wrapper) on top
//!   baseline::SpinHeap: the seed's slab + buddy design under one spinlock
//! ```
#![no_std]
// `core::alloc::Allocator` for the heaps; never selected by a stable build.
#![cfg_attr(feature = "nightly", feature(allocator_api))]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

#[cfg(any(test, feature = "std"))]
extern crate std;

#[cfg(all(
    any(feature = "allocator-api2", feature = "nightly"),
    not(any(loom, shuttle))
))]
mod allocator;
pub mod baseline;
pub mod buddy;
mod cas;
mod cpu;
mod error;
#[cfg(all(feature = "std", not(any(loom, shuttle))))]
mod global;
#[cfg(not(any(loom, shuttle)))]
mod global_heap;
mod heap;
mod limits;
mod magazine;
#[doc(hidden)]
pub mod mutant;
mod probe;
mod region;
mod slab;
mod stack;
mod stats;
pub mod sync;
#[doc(hidden)]
pub mod testing;

pub use buddy::Geometry;
pub use error::{FreeError, InitError};
#[cfg(all(feature = "std", not(any(loom, shuttle))))]
pub use global::{MagbuddyAlloc, ThreadSlot};
#[cfg(not(any(loom, shuttle)))]
pub use global_heap::{BadFreeFn, CurrentCpu, GlobalHeap, NoCpu, OomFn};
pub use heap::{CpuStats, Handle, Heap, HeapConfig, ValidateError};
pub use limits::{MAX_CPUS, MAX_REGIONS, PAGE_SHIFT, PAGE_SIZE};
pub use magazine::MAG_ROUNDS;
pub use slab::{MAX_SMALL, SMALL_CLASSES};
pub use stats::{MetadataBytes, Stats, ORDERS};
