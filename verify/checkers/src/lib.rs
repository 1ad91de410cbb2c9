//! Dependency-free, `no_std`, lock-free checkers that prove an allocator
//! correct in tests, benchmarks and on bare metal.
//!
//! - [`shadow`]: a bitmap of live granules; catches overlapping blocks,
//!   misalignment and frees of memory that is not live, as they happen.
//! - [`canary`]: address- and seed-derived fill patterns, checked before a
//!   block is freed; catch writes by anyone but the owner.
//! - [`ledger`]: sharded counters of allocations and frees, and a check that
//!   the allocator's free bytes came back.
//! - [`trace`]: client-side event logs with global sequence numbers,
//!   replayed afterwards into a shadow bitmap.
//! - [`lin`] (feature `alloc`): recorded concurrent histories of heap calls
//!   checked for linearizability against a sequential specification of the
//!   heap (the one checker here that allocates: its search keeps a set).
//!
//! The caller provides all storage (bitmap words, trace buffers), so no
//! allocator is needed, and every shared update is a single atomic
//! read-modify-write from `core::sync::atomic`: no locks, no waiting.
//!
//! # Using the checkers with an allocator under test
//!
//! Record an allocation *after* the allocator returned it and a free
//! *before* calling the allocator's free. The allocator's own
//! synchronization then orders a free before the reuse of its memory, and
//! the checkers need only `Relaxed` atomics, which add no ordering that
//! could hide the allocator's ordering bugs from loom or miri (see
//! [`shadow`] and [`trace`]). The checkers use `core` atomics, not the
//! model checkers' ones: under shuttle (one thread runs at a time) they are
//! exact, but they are not scheduling points and loom does not see them.
//!
//! Every violation is an error value whose `Display` names the addresses
//! (in hex) and sizes involved.
//!
//! # Example
//!
//! One checked allocation and free around a (here: trivial) allocator.
//!
//! ```
//! use core::sync::atomic::AtomicU64;
//! use magbuddy_checkers::{canary, words_needed, BalanceCheck, Ledger, Recorder, SeqClock, ShadowBitmap};
//!
//! #[repr(align(4096))]
//! struct Region([u8; 1024]);
//! let mut region = Region([0; 1024]); // the allocator's memory
//! let heap = &mut region.0;
//! let (base, len) = (heap.as_ptr().addr(), heap.len());
//! let words: [AtomicU64; 2] = Default::default();
//! assert!(words_needed(len, 8) <= words.len());
//! let shadow = ShadowBitmap::new(base, len, 8, 4096, &words).unwrap();
//! let ledger = Ledger::<4>::new();
//! let balance = BalanceCheck::new(1024); // the allocator's free bytes now
//! let clock = SeqClock::new();
//! let mut events = [magbuddy_checkers::Event::EMPTY; 16];
//! let mut trace = Recorder::new(&clock, &mut events);
//!
//! let p = heap.as_mut_ptr(); // "allocate" 64 bytes
//! // After the allocator returned:
//! shadow.on_alloc(p, 64).unwrap();
//! ledger.shard(0).on_alloc(64);
//! trace.record_alloc(p, 64).unwrap();
//! // SAFETY: the client owns these 64 bytes.
//! unsafe { canary::fill(p, 64, 42) };
//! // ... use the block ...
//! // Before calling the allocator's free:
//! // SAFETY: filled above, still owned.
//! unsafe { canary::check(p, 64, 42) }.unwrap();
//! trace.record_free(p, 64).unwrap();
//! ledger.shard(0).on_free(64);
//! shadow.on_free(p, 64).unwrap();
//!
//! assert!(shadow.is_empty());
//! balance.verify_with(1024, &ledger).unwrap();
//! ```
#![no_std]
#![cfg_attr(docsrs, feature(doc_cfg))]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub mod canary;
pub mod ledger;
#[cfg(feature = "alloc")]
#[cfg_attr(docsrs, doc(cfg(feature = "alloc")))]
pub mod lin;
pub mod shadow;
pub mod trace;

pub use canary::CanaryError;
pub use ledger::{BalanceCheck, Imbalance, Ledger, LedgerShard, LedgerTotals};
pub use shadow::{words_needed, ShadowBitmap, ShadowConfigError, ShadowError};
pub use trace::{
    replay, Event, EventKind, Recorder, ReplayError, ReplayReport, SeqClock, TraceFull,
};
