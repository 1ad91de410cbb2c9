//! shuttle: page and buddy-block churn with merges, through the real heap
//! (`verify::scenario::churn`).
//!
//! Two threads with handles and one on the shared path allocate and free
//! blocks of every chunk-level order (and whole areas) in random order, so
//! reservations in one area word, node updates in one chunk word, falls
//! through fragmented chunks and coalescing of buddies freed by different
//! threads interleave. Every block goes through the online shadow bitmap and
//! canaries; the client-side trace is replayed at the end; the heap must
//! validate, give every byte back and be coalesced into exactly the free
//! blocks it started with. `churn_batched_*`: page-magazine refills that
//! take two blocks per chunk CAS (`Area::alloc_many`) race all of that.
#![cfg(shuttle)]

use verify::scenario::{churn, Mix, SMALL, WIDE};
use verify::{suite, Sched};

/// Pages, pairs and whole areas, two live per thread, in two areas.
const SMALL_MIX: Mix = Mix {
    threads: 3,
    ops: 6,
    max_live: 2,
    weights: &[1, 1, 1],
    rounds: None,
};

/// Mostly pages, some pairs and quads, three live per thread: frees leave
/// chunks with free pages but no free pair.
const WIDE_MIX: Mix = Mix {
    threads: 3,
    ops: 8,
    max_live: 3,
    weights: &[6, 3, 1],
    rounds: None,
};

/// Four threads (three handles, one shared), pages and pairs only, in one
/// wide area's worth of heap.
const FOUR_MIX: Mix = Mix {
    threads: 4,
    ops: 6,
    max_live: 2,
    weights: &[3, 2, 1],
    rounds: None,
};

const BASE: usize = 10_000;

#[test]
fn churn_small_areas_random() {
    let name = "churn_small_areas_random";
    let t = suite(name, Sched::Random, BASE, |t| churn(SMALL, 2, SMALL_MIX, t));
    t.require(name, "cas retries", 500);
    t.require(name, "concurrent calls on one chunk", 5000);
    t.require(name, "area claims", 5000);
    t.require(name, "OOM", 200);
}

#[test]
fn churn_small_areas_pct_depth3() {
    let name = "churn_small_areas_pct_depth3";
    let t = suite(name, Sched::Pct { depth: 3 }, BASE, |t| {
        churn(SMALL, 2, SMALL_MIX, t)
    });
    t.require(name, "concurrent calls on one chunk", 1000);
    t.require(name, "area claims", 5000);
    // No "cas retries" minimum: PCT seldom switches inside a CAS window
    // here (0 to 4 in 10,000 schedules, depending on where the region
    // lies in the address space; the random test requires 500).
}

#[test]
fn churn_wide_chunks_random() {
    let name = "churn_wide_chunks_random";
    let t = suite(name, Sched::Random, BASE, |t| churn(WIDE, 1, WIDE_MIX, t));
    t.require(name, "cas retries", 2000);
    t.require(name, "concurrent calls on one chunk", 5000);
    t.require(name, "fall-throughs", 40);
}

#[test]
fn churn_wide_chunks_pct_depth3() {
    let name = "churn_wide_chunks_pct_depth3";
    let t = suite(name, Sched::Pct { depth: 3 }, BASE, |t| {
        churn(WIDE, 1, WIDE_MIX, t)
    });
    t.require(name, "cas retries", 40);
    t.require(name, "concurrent calls on one chunk", 2000);
    t.require(name, "fall-throughs", 10);
}

#[test]
fn churn_four_threads_random() {
    let name = "churn_four_threads_random";
    let t = suite(name, Sched::Random, BASE, |t| churn(WIDE, 1, FOUR_MIX, t));
    t.require(name, "cas retries", 2000);
    t.require(name, "concurrent calls on one chunk", 10_000);
    t.require(name, "fall-throughs", 20);
}

#[test]
fn churn_four_threads_pct_depth3() {
    let name = "churn_four_threads_pct_depth3";
    let t = suite(name, Sched::Pct { depth: 3 }, BASE, |t| {
        churn(WIDE, 1, FOUR_MIX, t)
    });
    t.require(name, "cas retries", 40);
    t.require(name, "concurrent calls on one chunk", 2000);
}

#[test]
fn churn_batched_refills_random() {
    let name = "churn_batched_refills_random";
    let t = suite(name, Sched::Random, BASE, |t| {
        churn(WIDE, 2, Mix::BATCHED, t)
    });
    t.require(name, "blocks taken several at once", 4000);
    t.require(name, "concurrent calls on one chunk", 5000);
    t.require(name, "cas retries", 500);
}

#[test]
fn churn_batched_refills_pct_depth3() {
    let name = "churn_batched_refills_pct_depth3";
    let t = suite(name, Sched::Pct { depth: 3 }, BASE, |t| {
        churn(WIDE, 2, Mix::BATCHED, t)
    });
    t.require(name, "blocks taken several at once", 2000);
    t.require(name, "concurrent calls on one chunk", 2000);
}
