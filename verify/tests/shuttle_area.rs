//! shuttle: the buddy layer's own contract over one area's words, without
//! the heap's page descriptors in front (bodies in `verify::scenario`):
//! double frees refused by the tree while buddies merge, and invariant R
//! seen by an observer while a free is in flight.
#![cfg(shuttle)]

use verify::scenario::{area_double_free, r_observer};
use verify::{suite, Sched};

const BASE: usize = 3000;

#[test]
fn area_double_free_random() {
    let name = "area_double_free_random";
    let t = suite(name, Sched::Random, BASE, area_double_free);
    t.require(name, "double frees refused by the tree", 6000);
}

#[test]
fn area_double_free_pct_depth2() {
    let name = "area_double_free_pct_depth2";
    let t = suite(name, Sched::Pct { depth: 2 }, BASE, area_double_free);
    t.require(name, "double frees refused by the tree", 6000);
}

#[test]
fn invariant_r_observer_random() {
    let name = "invariant_r_observer_random";
    let t = suite(name, Sched::Random, BASE, r_observer);
    t.require(name, "observer saw the count at 0", 1000);
    t.require(name, "observer saw the page counted", 1000);
}

#[test]
fn invariant_r_observer_pct_depth2() {
    let name = "invariant_r_observer_pct_depth2";
    let t = suite(name, Sched::Pct { depth: 2 }, BASE, r_observer);
    t.require(name, "observer saw the count at 0", 1000);
    t.require(name, "observer saw the page counted", 1000);
}
