//! The soak: the linearizability workloads, the racing frees on every path
//! pair and size class, and the reclaim race, round after round with a new
//! seed each round (derived from `MAGBUDDY_VERIFY_SEED`), for `MAGBUDDY_SOAK_SECS` seconds (default 60), then
//! what it covered: rounds, schedules, histories checked, operations,
//! distinct histories (by shape: calls, results and interleaving, with
//! addresses renamed), the longest history. A failure names the workload,
//! scheduler and seed, which `hunt` with that seed replays.
//!
//! Ignored in the normal run; `scripts/soak.sh` runs it together with the
//! real-thread and property tests at a larger scale.
#![cfg(shuttle)]

use std::time::{Duration, Instant};

use verify::scenario::{
    lin_history, prepare, racing_frees, reclaim_races_shared_alloc, Kind, Lin, PAIRS,
};
use verify::{hunt, install_quiet_hook, suite_seed, Sched, Tally};

/// Schedules of one workload per round: short rounds, so the time limit
/// is kept and each round moves on to a new seed.
const PER_ROUND: usize = 40;

type Body = Box<dyn Fn(&Tally) + Send + Sync>;

/// Every workload of the soak, by name.
fn workloads() -> Vec<(String, Sched, Body)> {
    let scheds = [Sched::Random, Sched::Pct { depth: 3 }];
    let mut w: Vec<(String, Sched, Body)> = Vec::new();
    for sched in scheds {
        for (name, lin) in [
            ("lin shared", Lin::SHARED),
            ("lin mixed", Lin::MIXED),
            ("lin full", Lin::FULL),
        ] {
            w.push((name.into(), sched, Box::new(move |t| lin_history(lin, t))));
        }
        for kind in [Kind::Object, Kind::Pages, Kind::Tree] {
            for pair in PAIRS {
                let name = format!("racing frees {kind:?} {pair:?}");
                w.push((name, sched, Box::new(move |t| racing_frees(kind, pair, t))));
            }
        }
        w.push((
            "reclaim races shared alloc".into(),
            sched,
            Box::new(reclaim_races_shared_alloc),
        ));
    }
    w
}

#[test]
#[ignore = "the soak: scripts/soak.sh"]
fn soak() {
    install_quiet_hook();
    let secs = std::env::var("MAGBUDDY_SOAK_SECS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(60);
    let limit = Duration::from_secs(secs);
    for lin in [Lin::SHARED, Lin::MIXED, Lin::FULL] {
        prepare(lin);
    }
    let tally = std::sync::Arc::new(Tally::new());
    let start = Instant::now();
    let mut rounds = 0u64;
    let mut schedules = 0usize;
    'soak: loop {
        for (name, sched, body) in workloads() {
            if start.elapsed() >= limit {
                break 'soak;
            }
            let seed = suite_seed(&format!("{name} {sched} {rounds}"));
            let t = tally.clone();
            match hunt(sched, seed, PER_ROUND, true, move || body(&t)) {
                Ok(n) => schedules += n,
                Err(c) => panic!(
                    "soak: {name} ({sched}, seed {seed:#x}) failed after {} schedules: {}",
                    c.schedules, c.message
                ),
            }
        }
        rounds += 1;
    }
    println!(
        "soak coverage in {:.0} s: rounds {rounds}, schedules {schedules}, histories checked {}, \
         operations {}, distinct histories {}, longest history {}, racing frees of one block {}, \
         histories with a None {}, histories with an Err {}",
        start.elapsed().as_secs_f64(),
        tally.get("histories"),
        tally.get("operations"),
        tally.get("distinct histories"),
        tally.get("longest history"),
        tally.get("racing frees of one block"),
        tally.get("histories with a None"),
        tally.get("histories with an Err"),
    );
    tally.print("soak (every event)");
    assert!(schedules > 0, "the soak ran no schedule");
}
