//! Mutants under loom: the seeded defects of `magbuddy::mutant` that a loom
//! model over one area catches, with the number of executions loom needed
//! (deterministic for a given preemption bound). One test, run alone in
//! this binary, because the mutant selector is process-wide. Ordering
//! mutants of the fast path (`ReturnPushRelaxed`) belong here: shuttle
//! treats every atomic as SeqCst. Adding one is a `CASES` row plus, if
//! needed, a model body in `verify::loom_models`.
//!
//! Run: `RUSTFLAGS="--cfg loom" LOOM_MAX_PREEMPTIONS=2 CARGO_TARGET_DIR=target/loom
//! cargo test -p verify --profile verify --test loom_mutants -- --nocapture`
#![cfg(loom)]

use magbuddy::mutant::{select, Mutant};
use verify::loom_models::{self as m, hunt, Seen};
use verify::{hunting, install_quiet_hook};

type Body = fn(&Seen);

/// Equivalent mutants: the hook changes the code but not its behaviour, so
/// no checker can catch it; the test asserts it is *not* caught, so a hook
/// that is made a real defect later flips this claim loudly. (None today:
/// `DepotPopWithoutTag` was one while its hook kept the push's tag bump.)
const EQUIVALENT: &[(Mutant, &str, Body, &str)] = &[];

const CASES: &[(Mutant, &str, Body)] = &[
    (
        Mutant::DepotPopWithoutTag,
        "depot_stack_aba",
        m::depot_stack_aba,
    ),
    (
        Mutant::FreeWithoutCheck,
        "double_free_races_merge",
        m::double_free_races_merge,
    ),
    (
        Mutant::TwoStepUpdate,
        "three_threads_pages",
        m::three_threads_pages,
    ),
    (
        Mutant::TwoStepUpdate,
        "three_threads_mixed",
        m::three_threads_mixed,
    ),
    (
        Mutant::UnreserveFirst,
        "invariant_r_observer",
        m::invariant_r_observer,
    ),
    (
        Mutant::ReturnPushRelaxed,
        "return_list_payloads",
        m::return_list_payloads,
    ),
    (
        Mutant::ReturnPushRelaxed,
        "abandon_full_races_remote_free",
        m::abandon_full_races_remote_free,
    ),
];

#[test]
fn every_mutant_is_caught_by_loom() {
    install_quiet_hook();
    let bound = std::env::var("LOOM_MAX_PREEMPTIONS").unwrap_or_else(|_| "none".into());
    let mut escaped = Vec::new();
    for &(mutant, name, body) in CASES {
        select(Mutant::None);
        let control = hunt(body);
        assert!(
            control.is_ok(),
            "{name} fails without a mutant: {control:?}"
        );
        select(mutant);
        let got = hunting(mutant, || hunt(body));
        select(Mutant::None);
        match got {
            Err((n, msg)) => println!(
                "{mutant:?} | loom {name} (preemption bound {bound}) | CAUGHT after {n} of {} executions: {}",
                control.unwrap(),
                msg.lines().next().unwrap_or("")
            ),
            Ok(n) => {
                println!("{mutant:?} | loom {name} | not caught in {n} executions");
                escaped.push((mutant, name));
            }
        }
    }
    for &(mutant, name, body, why) in EQUIVALENT {
        select(mutant);
        let got = hunting(mutant, || hunt(body));
        select(Mutant::None);
        match got {
            Ok(n) => println!(
                "{mutant:?} | loom {name} (preemption bound {bound}) | EQUIVALENT, not caught in {n} executions: {why}"
            ),
            Err((n, msg)) => {
                println!("{mutant:?} | loom {name} | caught after {n} executions: {msg}");
                escaped.push((mutant, "claimed equivalent but caught: update the claim"));
            }
        }
    }
    assert!(escaped.is_empty(), "mutants escaped loom: {escaped:?}");
}
