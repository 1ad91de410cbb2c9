//! Schedule bodies: each runs once per shuttle schedule, checks everything
//! it can inside, and adds the events it exists for to a [`Tally`].
//!
//! Suites (`tests/shuttle_*.rs`) run them under a scheduler and assert
//! minimum counts; the mutant test runs the same bodies with a seeded
//! defect and asserts that they fail.
//!
//! [`Tally`]: crate::Tally

mod area;
mod fast;
mod grow;
mod heap;
mod lin;
mod race;
mod reclaim;
mod reuse;

pub use area::{area_double_free, r_observer};
pub use fast::{drain_oom, fast, fast_events, Fast};
pub use grow::grow_races;
pub use heap::{
    churn, double_free, oom, runs, runs_undone, shared_path, small_config, Mix, SMALL, WIDE,
};
pub use lin::{lin_history, prepare, Fill, Lin};
pub use race::{exactly_one_promised, pair_name, racing_frees, Kind, Side, PAIRS};
pub use reclaim::reclaim_races_shared_alloc;
pub use reuse::{
    forged_tag_free_races_drain, stale_free_races_reuse, stale_object_free_races_slab_reuse, Reuse,
};
