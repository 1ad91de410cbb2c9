//! magbuddy: a concurrent kernel-style memory allocator built on atomics.
//!
//! Per-CPU magazines over 16 KiB slabs whose remote frees come back through
//! lock-free return lists, over a lock-free buddy tree whose node states are
//! packed into 64-bit words and changed by one CAS each. The heap lives
//! entirely inside the memory it manages: the crate is `#![no_std]`, needs no
//! allocator of its own and builds for `x86_64-unknown-none`.
//!
//! The API in one place: [`Heap`] (built in place over memory you own, with
//! [`Heap::init`]), per-CPU [`Handle`]s ([`Heap::handle_for`]) for the fast
//! path, and the shared path on the heap itself ([`Heap::alloc`],
//! [`Heap::try_free`]). [`GlobalHeap`] makes a heap a `no_std` kernel's
//! `#[global_allocator]`, [`MagbuddyAlloc`] (feature `std`) a Rust
//! program's, and the `magbuddy-preload` shim of the repository a C
//! program's `malloc`.
//!
//! # Quick start: a heap over memory you own
//!
//! ```
//! use magbuddy::{Heap, HeapConfig};
//!
//! // Any range of memory the heap may own for as long as it is used; a
//! // kernel passes a RAM range. The smallest that works is about 2.1 MiB.
//! let len = Heap::min_region_len(HeapConfig::new(2));
//! let mut ram = vec![0u8; len];
//! // SAFETY: `ram` is ours, used by nothing else, and outlives the heap's use.
//! let heap = unsafe { Heap::init(ram.as_mut_ptr(), len, 2) }.unwrap();
//!
//! let mut h = heap.handle_for(0).unwrap(); // CPU 0's handle: the fast path
//! let p = h.alloc(100).unwrap(); // 128 bytes from a slab, aligned to 128
//! assert_eq!(p.as_ptr() as usize % 128, 0);
//! // SAFETY: `p` came from this heap and is not used afterwards.
//! unsafe { h.free(p.as_ptr()) }; // no size needed
//!
//! let q = heap.alloc(64 << 10).unwrap(); // the shared path: no handle
//! // SAFETY: as above.
//! unsafe { heap.try_free(q.as_ptr()) }.unwrap();
//! // A second free is refused and changes nothing.
//! // SAFETY: `q` is not live; the heap reports the double free.
//! assert!(unsafe { heap.try_free(q.as_ptr()) }.is_err());
//! drop(h);
//! heap.validate().unwrap();
//! ```
//!
//! # Quick start: a Rust program's `#[global_allocator]` (feature `std`)
//!
//! [`MagbuddyAlloc`] reserves its region (here 1 GiB of address space,
//! mapped lazily by the OS) on the first allocation, gives each thread a
//! handle of its own (here up to 64) and maps further regions when the heap
//! runs out:
//!
#![cfg_attr(feature = "std", doc = "```")]
#![cfg_attr(not(feature = "std"), doc = "```ignore")]
//! #[global_allocator]
//! static ALLOC: magbuddy::MagbuddyAlloc = magbuddy::MagbuddyAlloc::new(1 << 30, 64);
//!
//! fn main() {
//!     let v: Vec<u64> = (0..1000).collect(); // served by magbuddy
//!     let t = std::thread::spawn(move || v.iter().sum::<u64>()); // another handle
//!     assert_eq!(t.join().unwrap(), 499_500);
//!     println!("{}", ALLOC.heap().unwrap().stats());
//! }
//! ```
//!
//! ```toml
//! [dependencies]
//! magbuddy = { version = "0.1", features = ["std"] }
//! ```
//!
//! # Quick start: a `no_std` kernel's `#[global_allocator]`
//!
//! [`GlobalHeap`] is a `const` static set up later over the RAM the kernel
//! finds; the kernel says which CPU runs a call through [`CurrentCpu`] (its
//! per-CPU variable), and each CPU then uses a handle of its own. No cargo
//! feature is needed. Here a buffer stands in for the RAM range, and the
//! attribute is applied only on bare metal (`target_os = "none"`) so the
//! example also runs as a test:
//!
//! ```
//! use core::alloc::{GlobalAlloc, Layout};
//! use magbuddy::{CurrentCpu, GlobalHeap, HeapConfig};
//!
//! /// Which CPU runs this call: the kernel reads its per-CPU area (GS base on
//! /// x86_64); `None` sends the call to the shared path (early boot, or a
//! /// CPU without a slot).
//! struct ThisCpu;
//! impl CurrentCpu for ThisCpu {
//!     fn current() -> Option<usize> {
//!         Some(0) // a kernel: `Some(percpu::index())`
//!     }
//! }
//!
//! #[cfg_attr(target_os = "none", global_allocator)]
//! static HEAP: GlobalHeap<ThisCpu> = GlobalHeap::empty();
//!
//! # let len = 4 << 20;
//! # let layout = Layout::from_size_align(len, 4096).unwrap();
//! # // SAFETY: non-zero size; the memory stays the heap's (it is never freed).
//! # let ram_start = unsafe { std::alloc::alloc(layout) };
//! # let ram_len = len;
//! // Early boot, once the RAM map is known (allocations return null until
//! // then). SAFETY: the range is RAM nobody else uses, the heap's for good.
//! unsafe { HEAP.init(ram_start, ram_len, HeapConfig::new(4)) }.unwrap();
//! // Further ranges: `unsafe { HEAP.add_region(start, len) }`.
//!
//! // What `Box::new`, `Vec::push` and friends do in the kernel:
//! let layout = Layout::new::<[u64; 4]>();
//! // SAFETY: a non-zero-sized layout; freed once with the same layout.
//! unsafe {
//!     let p = HEAP.alloc(layout);
//!     assert!(!p.is_null());
//!     HEAP.dealloc(p, layout);
//! }
//! ```
//!
//! An interrupt handler that allocates while the code it interrupted holds
//! the CPU's handle, a task that migrates mid-call, or a wrong CPU answer
//! take the shared path instead of sharing the handle (see [`GlobalHeap`]).
//!
//! # Quick start: a C program (`LD_PRELOAD`)
//!
//! The repository's `preload/` package builds a shared library that exports
//! `malloc`, `free`, `calloc`, `realloc`, `posix_memalign`, `aligned_alloc`,
//! `memalign`, `valloc`, `pvalloc` and `malloc_usable_size` over one heap
//! (`MAGBUDDY_HEAP` sets its region's size, default `4G`); it is not part of
//! this crate's package. From a checkout of the repository:
//!
//! ```sh
//! cargo build --release -p magbuddy-preload
//! LD_PRELOAD=$PWD/target/release/libmagbuddy_preload.so python3 -c 'print(sum(range(10**6)))'
//! MAGBUDDY_HEAP=1G LD_PRELOAD=$PWD/target/release/libmagbuddy_preload.so ./your-program
//! ```
//!
//! # Cargo features
//!
//! * `std`: [`MagbuddyAlloc`], the `#[global_allocator]` for programs with an
//!   operating system (unix: regions are anonymous mappings).
//! * `allocator-api2`: the `Allocator` trait of the `allocator-api2` crate
//!   for [`Heap`] (the shared path) and [`GlobalHeap`] (per-CPU handles), so
//!   collections can live in a heap of their own.
//! * `checked`: racing frees of one object through handles are detected
//!   (exactly one succeeds) at the cost of two more read-modify-writes per
//!   alloc/free pair.
//!
//! # Source layout
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
//!
// Without feature `std`, `MagbuddyAlloc` does not exist: its name links to
// the features' list instead.
#![cfg_attr(not(feature = "std"), doc = "[`MagbuddyAlloc`]: #cargo-features")]
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
// The model checkers (`--cfg loom`, `--cfg shuttle`) are no user's concern.
#![cfg_attr(docsrs, doc(auto_cfg(hide(loom, shuttle))))]
// `core::alloc::Allocator` for the heaps; never selected by a stable build.
#![cfg_attr(feature = "nightly", feature(allocator_api))]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

#[cfg(any(test, feature = "std"))]
extern crate std;

#[cfg(all(
    any(feature = "allocator-api2", feature = "nightly"),
    not(any(loom, shuttle))
))]
#[cfg_attr(docsrs, doc(cfg(any(feature = "allocator-api2", feature = "nightly"))))]
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
#[cfg_attr(docsrs, doc(cfg(feature = "std")))]
pub use global::{MagbuddyAlloc, ThreadSlot};
#[cfg(not(any(loom, shuttle)))]
pub use global_heap::{BadFreeFn, CurrentCpu, GlobalHeap, NoCpu, OomFn};
pub use heap::{CpuStats, Handle, Heap, HeapConfig, Overflow, ValidateError};
pub use limits::{MAX_CPUS, MAX_REGIONS, PAGE_SHIFT, PAGE_SIZE};
pub use magazine::{MAG_ROUNDS, MAX_CACHED};
pub use slab::{MAX_SMALL, SMALL_CLASSES};
pub use stats::{MetadataBytes, Stats, ORDERS};
