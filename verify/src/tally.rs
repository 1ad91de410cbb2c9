//! Named event counts per suite, with minimums asserted at the end.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Mutex;

/// Event counts of one test, summed over its schedules. Shared by `Arc`
/// between the test and the schedule bodies. The lock is a plain std mutex:
/// shuttle runs one task at a time and no body blocks while holding it.
#[derive(Debug, Default)]
pub struct Tally {
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// Keys seen per event; `counts` holds their number.
    seen: Mutex<BTreeMap<&'static str, BTreeSet<u64>>>,
}

impl Tally {
    /// An empty tally.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds `n` to `event`.
    pub fn add(&self, event: &'static str, n: u64) {
        *self.counts.lock().unwrap().entry(event).or_default() += n;
    }

    /// Raises `event` to `n` if it is lower (a maximum, not a sum).
    pub fn max(&self, event: &'static str, n: u64) {
        let mut counts = self.counts.lock().unwrap();
        let v = counts.entry(event).or_default();
        *v = (*v).max(n);
    }

    /// Counts `key` under `event` once, however often it is seen (e.g.
    /// distinct histories, keyed by their shape).
    pub fn distinct(&self, event: &'static str, key: u64) {
        let mut seen = self.seen.lock().unwrap();
        let keys = seen.entry(event).or_default();
        keys.insert(key);
        self.counts.lock().unwrap().insert(event, keys.len() as u64);
    }

    /// The count of `event` (0 if never added).
    pub fn get(&self, event: &str) -> u64 {
        self.counts.lock().unwrap().get(event).copied().unwrap_or(0)
    }

    /// Prints every count on one line, prefixed with `name`.
    pub fn print(&self, name: &str) {
        let counts = self.counts.lock().unwrap();
        let line: Vec<String> = counts.iter().map(|(k, v)| format!("{k} {v}")).collect();
        println!("{name}: {}", line.join(", "));
    }

    /// Asserts that `event` happened at least `min` times: the suite still
    /// reaches what it exists for.
    #[track_caller]
    pub fn require(&self, name: &str, event: &str, min: u64) {
        let n = self.get(event);
        assert!(
            n >= min,
            "{name}: only {n} `{event}` events (need >= {min}): the suite no longer reaches its race"
        );
    }
}
