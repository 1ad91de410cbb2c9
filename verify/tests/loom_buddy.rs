//! loom: more of one area's protocol (bodies in `verify::loom_models`),
//! exhaustive within the preemption bound (`LOOM_MAX_PREEMPTIONS`, 2 in CI):
//! three threads at once, a free's `unreserve` racing an allocation of the
//! whole area, a fall-through past a fragmented chunk racing the free that
//! defragments it, invariant R seen by an observer, and a double free racing
//! a merge. Each test asserts that every outcome it exists for was explored.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom
//! cargo test -p verify --profile verify --test loom_buddy`
#![cfg(loom)]

use verify::loom_models::{self as m, model_seen, Seen};

fn both(seen: &Seen, what: [&str; 2]) {
    println!(
        "  {}: {}, {}: {}",
        what[0],
        seen.get(0),
        what[1],
        seen.get(1)
    );
    assert!(seen.get(0) > 0 && seen.get(1) > 0, "both outcomes explored");
}

#[test]
fn three_threads_pages() {
    model_seen("three_threads_pages", m::three_threads_pages);
}

#[test]
fn three_threads_mixed() {
    let s = model_seen("three_threads_mixed", m::three_threads_mixed);
    both(&s, ["whole area taken", "refused"]);
}

#[test]
fn unreserve_races_whole_area_alloc() {
    let s = model_seen(
        "unreserve_races_whole_area_alloc",
        m::unreserve_races_whole_area_alloc,
    );
    both(&s, ["whole area taken", "refused"]);
}

#[test]
fn fall_through_races_defragmenting_free() {
    let s = model_seen(
        "fall_through_races_defragmenting_free",
        m::fall_through_races_defragmenting_free,
    );
    both(&s, ["pair in chunk 0", "pair in chunk 1 (fell through)"]);
}

#[test]
fn invariant_r_observer() {
    let s = model_seen("invariant_r_observer", m::invariant_r_observer);
    both(&s, ["count seen at 0", "count seen at 1"]);
}

#[test]
fn double_free_races_merge() {
    model_seen("double_free_races_merge", m::double_free_races_merge);
}
