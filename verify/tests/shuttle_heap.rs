//! shuttle: area claims and runs, the shared path racing handles, OOM and
//! recovery, and double frees racing legitimate frees, through the real
//! heap (bodies in `verify::scenario`). Each body checks the shadow bitmap,
//! canaries and trace replay inside the schedule and ends with
//! `validate()`; each test asserts the events it exists for.
#![cfg(shuttle)]

use verify::scenario::{double_free, oom, runs, runs_undone, shared_path};
use verify::{suite, Sched};

const BASE: usize = 5000;

#[test]
fn runs_and_area_claims_random() {
    let name = "runs_and_area_claims_random";
    let t = suite(name, Sched::Random, BASE, runs);
    t.add("run claims undone", runs_undone(&t));
    t.print(name);
    t.require(name, "runs claimed", 3000);
    // No "runs refused" minimum here: a run allocation returns `None` only
    // after a pass during which no free completed, and under the random
    // scheduler the holders free within every pass (0 refusals in 5,000
    // schedules; the refusals this suite saw before the free counts were
    // false ones after four raced passes). PCT still reaches real ones.
    t.require(name, "run claims undone", 5);
}

#[test]
fn runs_and_area_claims_pct_depth3() {
    let name = "runs_and_area_claims_pct_depth3";
    let t = suite(name, Sched::Pct { depth: 3 }, BASE, runs);
    t.add("run claims undone", runs_undone(&t));
    t.print(name);
    t.require(name, "runs claimed", 3000);
    t.require(name, "runs refused", 100);
}

#[test]
fn shared_path_races_handles_random() {
    let name = "shared_path_races_handles_random";
    let t = suite(name, Sched::Random, BASE, shared_path);
    t.require(name, "all slots taken: shared path", 1000);
    t.require(name, "frees by another thread", 1000);
    t.require(name, "shared-path CAS retries", 50);
    t.require(name, "concurrent calls on one area", 1000);
}

#[test]
fn shared_path_races_handles_pct_depth3() {
    let name = "shared_path_races_handles_pct_depth3";
    let t = suite(name, Sched::Pct { depth: 3 }, BASE, shared_path);
    t.require(name, "all slots taken: shared path", 300);
    t.require(name, "frees by another thread", 1000);
}

#[test]
fn oom_and_recovery_random() {
    let name = "oom_and_recovery_random";
    let t = suite(name, Sched::Random, BASE, oom);
    t.require(name, "OOM", 1000);
    t.require(name, "recoveries after OOM", 300);
    t.require(name, "OOM while another thread freed", 100);
}

#[test]
fn oom_and_recovery_pct_depth3() {
    let name = "oom_and_recovery_pct_depth3";
    let t = suite(name, Sched::Pct { depth: 3 }, BASE, oom);
    t.require(name, "OOM", 1000);
    t.require(name, "recoveries after OOM", 100);
}

#[test]
fn double_free_races_legit_free_random() {
    let name = "double_free_races_legit_free_random";
    let t = suite(name, Sched::Random, BASE, double_free);
    t.require(name, "loser saw the block in flight (DoubleFree)", 500);
    t.require(name, "loser came after the winner (NotAllocated)", 500);
    t.require(name, "interior pointer refused (Interior)", 100);
}

#[test]
fn double_free_races_legit_free_pct_depth3() {
    let name = "double_free_races_legit_free_pct_depth3";
    let t = suite(name, Sched::Pct { depth: 3 }, BASE, double_free);
    t.require(name, "loser saw the block in flight (DoubleFree)", 50);
    t.require(name, "loser came after the winner (NotAllocated)", 500);
}
