//! `checked` builds: real threads race two frees of one slab object on a
//! handle (handle/handle and handle/shared), which only `checked` promises
//! to resolve to exactly one winner (src/heap/object.rs); 8 B, 64 B and
//! 2 KiB objects. The pairs every build promises are in
//! `tests/race_matrix.rs` (which runs in `checked` builds too).
//!
//! On 5d3224e: handle/handle, 8 B, 76 of 512 blocks freed twice in round 1
//! (bug 2).
//!
//! Run: `cargo test --profile verify --features std,checked --test race_matrix_checked`
//! (`MAGBUDDY_RACE_MS` ms per race, default 500).

mod soundness_support;

use soundness_support::{race_and_reallocate, race_budget, Side, KIB};

#[test]
fn objects_on_handles_exactly_one_wins() {
    for size in [8, 64, 2 * KIB] {
        for sides in [
            [Side::Handle(0), Side::Handle(1)],
            [Side::Handle(0), Side::Shared],
        ] {
            let what = format!("{sides:?}, {size} B");
            race_and_reallocate(sides, size, race_budget(), &what);
        }
    }
}
