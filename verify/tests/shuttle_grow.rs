//! shuttle: an in-place grow racing an allocation that wants the grower's
//! buddy and the free of that buddy, at every kind of level (chunk word,
//! chunk root into a top leaf, area word, a whole area into a run); body in `verify::scenario`. Two
//! owners of a page fail the schedule in the shadow bitmap; each schedule
//! ends with `validate()`, the trace replay and the free-byte balance.
//! The linearizability checker has no resize operation, so it is not used.
//! The mutant `GrowIgnoresBuddy` (a grow that does not look at its buddy) is
//! caught by this body in `tests/mutants.rs`.
#![cfg(shuttle)]

use verify::scenario::grow_races;
use verify::{suite, Sched};

const BASE: usize = 3000;

/// The random suite's schedules. 3,000 until each CPU slot grew by the 2 KiB
/// of its per-size magazine table: that moved the usable range of this
/// suite's heap, and the grows inside a chunk word fell from 147 to 97 per
/// 3,000 schedules (the floor below is 100).
const RANDOM: usize = 4000;

#[test]
fn grow_races_buddy_alloc_and_free_random() {
    let name = "grow_races_buddy_alloc_and_free_random";
    let t = suite(name, Sched::Random, RANDOM, grow_races);
    t.require(name, "grown in place", 300);
    t.require(name, "grown in place: chunk word", 100);
    t.require(name, "grown in place: chunk root into a top leaf", 40);
    t.require(name, "grown in place: area word", 50);
    t.require(name, "grown in place: area into a run", 50);
    t.require(name, "grow refused", 300);
    t.require(name, "racing allocation took the buddy", 100);
}

#[test]
fn grow_races_buddy_alloc_and_free_pct_depth3() {
    let name = "grow_races_buddy_alloc_and_free_pct_depth3";
    let t = suite(name, Sched::Pct { depth: 3 }, BASE, grow_races);
    t.require(name, "grown in place", 100);
    t.require(name, "grow refused", 100);
}
