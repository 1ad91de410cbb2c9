//! Model-based bad-input fuzzing: generated operation sequences on one heap
//! (1 - 3 handles and the shared path) mixing valid operations with every
//! kind of bad free, each step checked against a reference model of the
//! API's promises (`tests/model_support/mod.rs` has the model, the
//! generator and the table of what each free must return). proptest shrinks
//! a failing sequence to a minimal one.
//!
//! Run (default build and `checked`):
//!
//! ```sh
//! cargo test --profile verify --features std --test model_fuzz -- --nocapture
//! cargo test --profile verify --features std,checked --test model_fuzz -- --nocapture
//! ```
//!
//! `MAGBUDDY_VERIFY_SCALE=N` multiplies the case counts (or `PROPTEST_CASES`
//! sets them); `MAGBUDDY_VERIFY_SEED` picks another fixed seed. Each test
//! prints the events its cases reached and asserts minimums, so a generator
//! that stops reaching a kind of bad free fails.

mod model_support;
mod soundness_support;

use model_support::{default_setup, fuzz, ops, require, small_setup, Tally};

/// Areas of 4 - 16 pages: exhaustion, slab reuse and multi-area blocks
/// within a few hundred operations.
#[test]
fn model_small_geometries() {
    let t = fuzz(
        "model_small_geometries",
        5000,
        (small_setup(), ops(13, 120)),
    );
    common_minimums(&t);
}

/// The default geometry (1 MiB areas), blocks up to 2 MiB.
#[test]
fn model_default_geometry() {
    let t = fuzz(
        "model_default_geometry",
        2500,
        (default_setup(), ops(18, 80)),
    );
    common_minimums(&t);
}

/// Every kind of answer the model distinguishes, and every check it makes,
/// must come up at least `per_1000` times per 1000 cases (a tenth or less
/// of what the seeded runs show), so a generator that stops reaching one
/// fails.
fn common_minimums(t: &Tally) {
    let cases = t["cases"];
    for (event, per_1000) in [
        ("Foreign", 10),
        ("Metadata (exact)", 10),
        ("Interior (exact)", 1000),
        ("DoubleFree (exact)", 10),
        ("DoubleFree (free object)", 1),
        ("NotAllocated (free object)", 10),
        ("NotAllocated (unseen memory)", 10),
        ("DoubleFree (unseen memory)", 10),
        ("Interior (unseen memory)", 1),
        ("Metadata (unseen memory)", 1),
        ("Ok: stale pointer to a block handed out again", 5),
        ("Ok: a bad-looking pointer that is a live block", 10),
        ("refused stale or double free", 50),
        ("free(null)", 10),
        ("forged free tags", 5),
        ("interior sweeps", 5),
        ("handle drops", 10),
        ("handle re-claims", 5),
        ("regions added", 5),
        ("exact accounting checks", 10),
        ("false-OOM checks", 2),
    ] {
        require(t, event, per_1000 * cases / 1000);
    }
}
