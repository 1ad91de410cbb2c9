//! shuttle: a stale (double) free racing the reuse of its 16 KiB block as
//! a slab (shared-path 2 KiB allocation) or as a page-magazine round (a
//! handle's 16 KiB allocation); body in
//! `verify::scenario::stale_free_races_reuse`. The stale free must be
//! refused unless the block was already handed to the user, and the heap
//! must be whole afterwards.
//!
//! On ad274b7 all four tests fail: the tree's allocation published a live
//! head before the slab's or magazine's own descriptor, and a stale free in
//! between released the block to the tree while the slab or magazine kept
//! it (random lin suite's schedule in `verify/regressions/`).
//!
//! `forged_tag_free_races_drain_*`: a live object that holds the free tag,
//! freed while the magazine it was a round of is flushed; body in
//! `verify::scenario::forged_tag_free_races_drain`. Its free must succeed.
//! On 1aaac3a the flush kept every round listed until the whole magazine was
//! done (mutant `DrainReleasesListed`, caught after 74 random schedules).
#![cfg(shuttle)]

use verify::scenario::{
    forged_tag_free_races_drain, stale_free_races_reuse, stale_object_free_races_slab_reuse, Reuse,
};
use verify::{suite, Sched};

const BASE: usize = 1000;

fn run(name: &str, sched: Sched, reuse: Reuse) {
    let t = suite(name, sched, BASE, move |t| stale_free_races_reuse(reuse, t));
    t.require(name, "stale free refused", 50);
}

#[test]
fn stale_free_races_slab_random() {
    run("stale_free_races_slab_random", Sched::Random, Reuse::Slab);
}

#[test]
fn stale_free_races_slab_pct_depth3() {
    run(
        "stale_free_races_slab_pct_depth3",
        Sched::Pct { depth: 3 },
        Reuse::Slab,
    );
}

#[test]
fn stale_free_races_magazine_random() {
    run(
        "stale_free_races_magazine_random",
        Sched::Random,
        Reuse::Magazine,
    );
}

#[test]
fn stale_free_races_magazine_pct_depth3() {
    run(
        "stale_free_races_magazine_pct_depth3",
        Sched::Pct { depth: 3 },
        Reuse::Magazine,
    );
}

fn object(name: &str, sched: Sched, handle: bool) {
    let t = suite(name, sched, BASE, move |t| {
        stale_object_free_races_slab_reuse(handle, t)
    });
    t.require(name, "stale object inside the new slab's object", 500);
}

#[test]
fn stale_object_free_races_slab_reuse_shared_random() {
    object(
        "stale_object_free_races_slab_reuse_shared_random",
        Sched::Random,
        false,
    );
}

#[test]
fn stale_object_free_races_slab_reuse_shared_pct_depth3() {
    object(
        "stale_object_free_races_slab_reuse_shared_pct_depth3",
        Sched::Pct { depth: 3 },
        false,
    );
}

#[test]
fn stale_object_free_races_slab_reuse_handle_random() {
    object(
        "stale_object_free_races_slab_reuse_handle_random",
        Sched::Random,
        true,
    );
}

#[test]
fn stale_object_free_races_slab_reuse_handle_pct_depth3() {
    object(
        "stale_object_free_races_slab_reuse_handle_pct_depth3",
        Sched::Pct { depth: 3 },
        true,
    );
}

fn forged(name: &str, sched: Sched) {
    let t = suite(name, sched, BASE, forged_tag_free_races_drain);
    // 62 (random) and 463 (PCT) on 2026-11-30.
    t.require(name, "old round reused during the drain", 30);
}

#[test]
fn forged_tag_free_races_drain_random() {
    forged("forged_tag_free_races_drain_random", Sched::Random);
}

#[test]
fn forged_tag_free_races_drain_pct_depth3() {
    forged(
        "forged_tag_free_races_drain_pct_depth3",
        Sched::Pct { depth: 3 },
    );
}
