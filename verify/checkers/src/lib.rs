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
#![no_std]
#![warn(missing_docs, clippy::undocumented_unsafe_blocks)]

pub mod canary;
pub mod ledger;
pub mod shadow;
pub mod trace;

pub use canary::CanaryError;
pub use ledger::{BalanceCheck, Imbalance, Ledger, LedgerShard, LedgerTotals};
pub use shadow::{words_needed, ShadowBitmap, ShadowConfigError, ShadowError};
pub use trace::{
    replay, Event, EventKind, Recorder, ReplayError, ReplayReport, SeqClock, TraceFull,
};
