//! loom: the fast path's lock-free primitives alone (bodies in
//! `verify::loom_models`), exhaustive within the preemption bound
//! (`LOOM_MAX_PREEMPTIONS`, 2 in CI): the depot's tagged index stack in its
//! ABA window, and a slab's return list (producers' Release pushes against
//! the owner's Acquire swap) with loom-tracked payloads, so a missing
//! happens-before is a reported causality violation. Each test asserts
//! that the outcomes it exists for were explored.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom
//! cargo test -p verify --profile verify --test loom_fastpath`
#![cfg(loom)]

use verify::loom_models::{self as m, model_seen};

#[test]
fn depot_stack_aba() {
    let seen = model_seen("depot_stack_aba", m::depot_stack_aba);
    println!(
        "  executions: {}, thread 1 popped a node other than 0 (its first pop lost a race): {}",
        seen.get(0),
        seen.get(1)
    );
    assert!(seen.get(1) > 0, "the ABA window was explored");
}

#[test]
fn return_list_payloads() {
    let seen = model_seen("return_list_payloads", m::return_list_payloads);
    println!(
        "  executions: {}, owner collected 1 concurrently: {}, both: {}",
        seen.get(0),
        seen.get(1),
        seen.get(2)
    );
    assert!(
        seen.get(1) > 0 && seen.get(2) > 0,
        "concurrent collects of one and two objects explored"
    );
}

#[test]
fn abandon_full_races_remote_free() {
    let seen = model_seen(
        "abandon_full_races_remote_free",
        m::abandon_full_races_remote_free,
    );
    println!(
        "  abandoned and published by the pusher: {}, abandon refused (owner kept it): {}",
        seen.get(0),
        seen.get(1)
    );
    assert!(seen.get(0) > 0 && seen.get(1) > 0, "both outcomes explored");
}
