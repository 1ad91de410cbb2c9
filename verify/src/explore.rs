//! Running a body under shuttle's schedulers, counting schedules.

use std::fmt;
use std::panic::{self, AssertUnwindSafe};
use std::sync::atomic::{AtomicUsize, Ordering::Relaxed};
use std::sync::Arc;

use shuttle::scheduler::{PctScheduler, RandomScheduler};
use shuttle::{Config, FailurePersistence, Runner};

/// Which shuttle scheduler explores a body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Sched {
    /// `check_random`: each step picks a random runnable thread (breadth).
    Random,
    /// `check_pct` with this bug depth: `depth - 1` random priority change
    /// points per schedule (bugs that need few preemptions).
    Pct {
        /// PCT's bug depth `d`.
        depth: usize,
    },
}

impl fmt::Display for Sched {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Random => f.write_str("shuttle random"),
            Self::Pct { depth } => write!(f, "shuttle PCT depth {depth}"),
        }
    }
}

fn counted<F: Fn() + Send + Sync + 'static>(f: F) -> (Arc<AtomicUsize>, impl Fn() + Send + Sync) {
    let runs = Arc::new(AtomicUsize::new(0));
    let r = runs.clone();
    (runs, move || {
        r.fetch_add(1, Relaxed);
        f()
    })
}

/// The seed of a suite: `MAGBUDDY_VERIFY_SEED` if set, else one derived from
/// the suite's name, so every CI run explores the same schedules and a
/// suite's event counts are reproducible (a soak run sets a new seed).
pub fn suite_seed(name: &str) -> u64 {
    let base = std::env::var("MAGBUDDY_VERIFY_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(0x6d61_6762);
    name.bytes().fold(base ^ 0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ b as u64).wrapping_mul(0x100_0000_01b3)
    })
}

/// Runs `f` for `iterations` schedules under `sched`, seeded with
/// [`suite_seed`]; a failure panics after shuttle printed the schedule to
/// replay. Prints and returns how many ran.
pub fn explore<F>(name: &str, sched: Sched, iterations: usize, f: F) -> usize
where
    F: Fn() + Send + Sync + 'static,
{
    let (runs, body) = counted(f);
    let seed = suite_seed(name);
    let config = Config::new();
    let _ran = match sched {
        Sched::Random => {
            Runner::new(RandomScheduler::new_from_seed(seed, iterations), config).run(body)
        }
        Sched::Pct { depth } => {
            Runner::new(PctScheduler::new_from_seed(seed, depth, iterations), config).run(body)
        }
    };
    let n = runs.load(Relaxed);
    println!("{name}: {n} schedules ({sched}, seed {seed})");
    n
}

/// A failure found by [`hunt`].
#[derive(Debug, Clone)]
pub struct Caught {
    /// Schedules run up to and including the failing one.
    pub schedules: usize,
    /// The panic message of the failing schedule.
    pub message: String,
}

/// Runs `f` under `sched` with a fixed `seed` for at most `max` schedules.
/// `Ok(n)` if all `n` passed, `Err(caught)` at the first failing schedule.
/// With `print_schedule`, shuttle prints the failing schedule's replay
/// string to stderr first.
pub fn hunt<F>(
    sched: Sched,
    seed: u64,
    max: usize,
    print_schedule: bool,
    f: F,
) -> Result<usize, Caught>
where
    F: Fn() + Send + Sync + 'static,
{
    let (runs, body) = counted(f);
    let mut config = Config::new();
    if !print_schedule {
        config.failure_persistence = FailurePersistence::None;
    }
    let result = panic::catch_unwind(AssertUnwindSafe(|| match sched {
        Sched::Random => Runner::new(RandomScheduler::new_from_seed(seed, max), config).run(body),
        Sched::Pct { depth } => {
            Runner::new(PctScheduler::new_from_seed(seed, depth, max), config).run(body)
        }
    }));
    let schedules = runs.load(Relaxed);
    match result {
        Ok(_) => Ok(schedules),
        Err(payload) => Err(Caught {
            schedules,
            message: crate::quiet::panic_message(&*payload),
        }),
    }
}

/// A suite: runs `body` (one schedule) `schedules(base)` times under
/// `sched`, adds the tree's probe counts ("fall-throughs", "area claims", "blocks
/// taken several at once"),
/// prints the schedule count and every event count, and returns the tally
/// for the caller's minimums.
pub fn suite<F>(name: &str, sched: Sched, base: usize, body: F) -> Arc<crate::Tally>
where
    F: Fn(&crate::Tally) + Send + Sync + 'static,
{
    use magbuddy::testing::{probe_count, reset_probes, Probe};
    reset_probes();
    let tally = Arc::new(crate::Tally::new());
    let t = tally.clone();
    let n = explore(name, sched, crate::schedules(base), move || body(&t));
    assert!(n >= base, "{name}: only {n} schedules ran");
    tally.add("schedules", n as u64);
    tally.add("fall-throughs", probe_count(Probe::FallThrough));
    tally.add("area claims", probe_count(Probe::AreaClaim));
    tally.add("blocks taken several at once", probe_count(Probe::Batch));
    tally.print(name);
    tally
}
