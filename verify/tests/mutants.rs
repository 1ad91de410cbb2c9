//! Mutants: every seeded defect of `magbuddy::mutant` that exists so far
//! must be caught, and the test records by what and after how many
//! schedules.
//!
//! One test, run alone in this binary, because the mutant selector is
//! process-wide. For each mutant it runs the designated detector (a
//! scenario body under a seeded shuttle scheduler): first without the
//! mutant (must pass all schedules: the detector has no false alarm), then
//! with it (must fail). Then it prints the whole matrix mutant × scenario,
//! asserting only where a verdict is claimed. Ordering mutants (shuttle
//! treats every atomic as SeqCst) belong in `loom_mutants.rs`; adding a
//! mutant here is one `Case` row and, if needed, one scenario.
#![cfg(shuttle)]

use magbuddy::mutant::{select, Mutant};
use verify::scenario::{
    area_double_free, churn, double_free, drain_oom, fast, oom, r_observer,
    reclaim_races_shared_alloc, runs, shared_path, Fast, Mix, SMALL, WIDE,
};
use verify::{hunt, hunting, install_quiet_hook, Sched, Tally};

const MIX: Mix = Mix {
    threads: 3,
    ops: 8,
    max_live: 3,
    weights: &[6, 3, 1],
};

fn churn_wide(t: &Tally) {
    churn(WIDE, 1, MIX, t)
}

fn churn_small(t: &Tally) {
    churn(
        SMALL,
        2,
        Mix {
            weights: &[1, 1, 1],
            ..MIX
        },
        t,
    )
}

/// Fast path: two threads keep slots, 2 KiB objects (8 per slab) handed
/// across, so slabs run out, are abandoned and come back through return
/// lists.
fn fast_exhaust(t: &Tally) {
    fast(Fast::EXHAUST, t)
}

/// Fast path: three threads claim one of two slots per operation, so
/// releases give up slabs that others adopt.
fn fast_claimed(t: &Tally) {
    fast(Fast::CLAIMED, t)
}

/// One schedule's body.
type Body = fn(&Tally);

/// Scenarios, by name.
const SCENARIOS: &[(&str, Body)] = &[
    ("area_double_free", area_double_free),
    ("r_observer", r_observer),
    ("churn_wide", churn_wide),
    ("churn_small", churn_small),
    ("runs", runs),
    ("shared_path", shared_path),
    ("oom", oom),
    ("double_free", double_free),
    ("drain_oom", drain_oom),
    ("fast_exhaust", fast_exhaust),
    ("fast_claimed", fast_claimed),
    ("reclaim_races_shared_alloc", reclaim_races_shared_alloc),
];

/// What a row claims about one mutant and one scenario.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Claim {
    /// The designated detector: must catch it.
    Catches,
    /// Must not catch it, for a stated reason (a layer in front masks it).
    Masked(&'static str),
}

struct Case {
    mutant: Mutant,
    scenario: &'static str,
    sched: Sched,
    seed: u64,
    max: usize,
    claim: Claim,
}

const MAX: usize = 3000;
const SEED: u64 = 0x6d75_7461_6e74; // "mutant"

const CASES: &[Case] = &[
    Case {
        mutant: Mutant::FreeWithoutCheck,
        scenario: "area_double_free",
        sched: Sched::Random,
        seed: SEED,
        max: MAX,
        claim: Claim::Catches,
    },
    Case {
        mutant: Mutant::FreeWithoutCheck,
        scenario: "double_free",
        sched: Sched::Random,
        seed: SEED,
        max: MAX,
        claim: Claim::Masked("the page descriptor's CAS stops a double free before the tree"),
    },
    Case {
        mutant: Mutant::TwoStepUpdate,
        scenario: "churn_wide",
        sched: Sched::Random,
        seed: SEED,
        max: MAX,
        claim: Claim::Catches,
    },
    Case {
        mutant: Mutant::TwoStepUpdate,
        scenario: "churn_small",
        sched: Sched::Pct { depth: 3 },
        seed: SEED,
        max: MAX,
        claim: Claim::Catches,
    },
    Case {
        mutant: Mutant::UnreserveFirst,
        scenario: "r_observer",
        sched: Sched::Random,
        seed: SEED,
        max: MAX,
        claim: Claim::Catches,
    },
    Case {
        mutant: Mutant::UnreserveFirst,
        scenario: "r_observer",
        sched: Sched::Pct { depth: 2 },
        seed: SEED,
        max: MAX,
        claim: Claim::Catches,
    },
    Case {
        mutant: Mutant::DrainSkipsCpu,
        scenario: "drain_oom",
        sched: Sched::Random,
        seed: SEED,
        max: MAX,
        claim: Claim::Catches,
    },
    Case {
        mutant: Mutant::DrainSkipsCpu,
        scenario: "drain_oom",
        sched: Sched::Pct { depth: 3 },
        seed: SEED,
        max: MAX,
        claim: Claim::Catches,
    },
    Case {
        mutant: Mutant::SlabReleaseWithReturns,
        scenario: "fast_exhaust",
        sched: Sched::Random,
        seed: SEED,
        max: MAX,
        claim: Claim::Catches,
    },
    Case {
        mutant: Mutant::SlabReleaseWithReturns,
        scenario: "fast_claimed",
        sched: Sched::Pct { depth: 3 },
        seed: SEED,
        max: MAX,
        claim: Claim::Catches,
    },
];

fn body(name: &str) -> Body {
    SCENARIOS
        .iter()
        .find(|s| s.0 == name)
        .unwrap_or_else(|| panic!("no scenario {name}"))
        .1
}

/// Runs `scenario` with `mutant` selected; `Err` holds (schedules, message).
fn try_one(
    mutant: Mutant,
    scenario: &str,
    sched: Sched,
    seed: u64,
    max: usize,
    print: bool,
) -> Result<usize, (usize, String)> {
    let f = body(scenario);
    select(mutant);
    let r = hunting(mutant, || {
        hunt(sched, seed, max, print, move || f(&Tally::new()))
    });
    select(Mutant::None);
    r.map_err(|c| (c.schedules, c.message))
}

fn first_line(s: &str) -> &str {
    s.lines().next().unwrap_or("")
}

#[test]
fn every_mutant_is_caught() {
    install_quiet_hook();
    let mut failures = Vec::new();
    println!("mutant | scenario | tool | verdict");
    for case in CASES {
        let control = try_one(
            Mutant::None,
            case.scenario,
            case.sched,
            case.seed,
            case.max,
            true,
        );
        assert_eq!(
            control.clone().map_err(|e| e.1),
            Ok(case.max),
            "{} fails without any mutant: the detector would give false alarms",
            case.scenario
        );
        let got = try_one(
            case.mutant,
            case.scenario,
            case.sched,
            case.seed,
            case.max,
            true,
        );
        let verdict = match &got {
            Err((n, msg)) => format!("CAUGHT after {n} schedules: {}", first_line(msg)),
            Ok(n) => format!("not caught in {n} schedules"),
        };
        println!(
            "{:?} | {} | {} seed {:#x} | {verdict}",
            case.mutant, case.scenario, case.sched, case.seed
        );
        match (case.claim, &got) {
            (Claim::Catches, Ok(_)) => {
                failures.push(format!("{:?} escaped {}", case.mutant, case.scenario))
            }
            (Claim::Masked(why), Err(_)) => failures.push(format!(
                "{:?} was caught by {} although claimed masked ({why})",
                case.mutant, case.scenario
            )),
            _ => {}
        }
    }
    // The whole matrix, for the record (asserted only where claimed above).
    println!("\nmatrix (shuttle random, seed {SEED:#x}, up to {MAX} schedules):");
    for m in [
        Mutant::FreeWithoutCheck,
        Mutant::TwoStepUpdate,
        Mutant::UnreserveFirst,
        Mutant::DrainSkipsCpu,
        Mutant::SlabReleaseWithReturns,
    ] {
        for (name, _) in SCENARIOS {
            let got = try_one(m, name, Sched::Random, SEED, MAX, false);
            let verdict = match &got {
                Err((n, msg)) => format!("caught after {n}: {}", first_line(msg)),
                Ok(n) => format!("not caught in {n}"),
            };
            println!("  {m:?} x {name}: {verdict}");
        }
    }
    assert!(failures.is_empty(), "mutant claims broken: {failures:#?}");
}
