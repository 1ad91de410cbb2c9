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
//! 5000 + 2500 cases, 20 - 30 s on the 2-core VM (the two tests run in
//! parallel). `MAGBUDDY_VERIFY_SCALE=N` multiplies the case counts (or
//! `PROPTEST_CASES` sets them); `MAGBUDDY_VERIFY_SEED` picks another fixed
//! seed. Each test prints the events its cases reached and asserts
//! minimums, so a generator that stops reaching a kind of bad free fails.
//! `MODEL_FUZZ_SURVEY=1` (with `--test-threads=1`) runs every case and
//! prints one minimal sequence per distinct failure instead of stopping at
//! the first.
//!
//! On 5d3224e (copied there with `TAIL_BITMAP = false`: its slabs had no
//! bitmap slots) the default build fails at case 0 of both tests; the
//! survey (2000 small-geometry and 1000 default-geometry cases) finds, each
//! shrunk to the sequence kept in `found_on_5d3224e` below: bug 1 (a
//! never-carved object's free accepted; 2 operations), bug 4 (a free of a
//! block in a magazine accepted, on the shared path and, in the default
//! build, on a handle; 2 - 3 operations), bug 6 (a false `None` on the
//! shared path after a handle release; 4 - 5 operations, in 1 of 2000
//! cases) and the soundness tests' extra A (a live object holding the free
//! mark refused; 2 operations). With `checked`: bugs 1, 4 (the refilled
//! block), 6 and extra A. The races (bugs 2, 3), the 4 TiB slab ids (5),
//! reclaim racing allocations (7) and bad geometries (8) are outside a
//! sequential model: see `race_matrix*.rs`, `extremes.rs` and
//! `verify/tests/shuttle_race.rs`.

mod model_support;
mod soundness_support;

use model_support::{default_setup, fuzz, ops, require, small_setup, Tally};

/// Areas of 4 - 16 pages: exhaustion, slab reuse and multi-area blocks
/// within a few hundred operations.
#[test]
fn model_small_geometries() {
    fuzz_with_minimums(
        "model_small_geometries",
        5000,
        (small_setup(), ops(13, 120)),
    );
}

/// The default geometry (1 MiB areas), blocks up to 2 MiB.
#[test]
fn model_default_geometry() {
    fuzz_with_minimums(
        "model_default_geometry",
        2500,
        (default_setup(), ops(18, 80)),
    );
}

/// [`fuzz`], then [`common_minimums`].
fn fuzz_with_minimums(
    name: &str,
    base: u32,
    strategy: impl proptest::strategy::Strategy<Value = (model_support::Setup, Vec<model_support::Op>)>,
) {
    common_minimums(&fuzz(name, base, strategy));
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

/// The minimal sequences the method found in 5d3224e (survey mode, the
/// seeds above), kept as regressions: each fails there and passes since the
/// fixes. Sizes are request sizes; `SMALL` is geometry (1, 2), `DEFAULT`
/// (5, 8), regions of the minimum length at an area boundary.
#[test]
fn minimal_sequences_found_on_5d3224e() {
    use model_support::{run, Op, Op::*, Path::*, Setup, Size};
    let setup = |(chunk_order, area_order), cpus, rounds| Setup {
        chunk_order,
        area_order,
        extra_areas: 0,
        cpus,
        rounds,
        offset: 0,
        zeroed: false,
    };
    let (small, default) = ((1, 2), (5, 8));
    let size = Size::of;
    let cases: Vec<(&str, Setup, Vec<Op>)> = vec![
        (
            "bug 1: the never-carved object after a live one is accepted",
            setup(default, 1, None),
            vec![
                Alloc {
                    path: Shared,
                    size: size(1),
                },
                FreeNear {
                    path: Shared,
                    pick: 0,
                    delta: 1,
                },
            ],
        ),
        (
            "bug 4: an object in handle 0's magazine, freed on the shared path, is accepted \
             (its slab takes it while the magazine holds it)",
            setup(default, 1, None),
            vec![
                Alloc {
                    path: Shared,
                    size: size(1),
                },
                Free {
                    path: Handle(0),
                    pick: 0,
                },
                FreeStale {
                    path: Shared,
                    pick: 0,
                },
            ],
        ),
        (
            "bug 4, default build: an object freed on the shared path (back in its slab), \
             freed again through a handle, goes into its magazine",
            setup(small, 1, None),
            vec![
                AllocMany {
                    path: Shared,
                    size: size(1),
                    n: 2,
                },
                Free {
                    path: Shared,
                    pick: 0,
                },
                FreeStale {
                    path: Handle(0),
                    pick: 0,
                },
            ],
        ),
        (
            "bug 4, both builds: an 8 KiB block handle 0's refill put in its magazine, never \
             handed out, freed on the shared path, is accepted",
            setup(default, 1, Some(8)),
            vec![
                Alloc {
                    path: Handle(0),
                    size: size(4097),
                },
                FreeNear {
                    path: Shared,
                    pick: 0,
                    delta: -2,
                },
            ],
        ),
        (
            "bug 6: a full slab, one object freed into handle 0's magazine, both handles \
             released: the shared path says None with the object free",
            setup(small, 2, None),
            vec![
                AllocMany {
                    path: Shared,
                    size: size(65),
                    n: 128,
                },
                Drop { h: 1 },
                Free {
                    path: Handle(0),
                    pick: 0,
                },
                Drop { h: 0 },
                Alloc {
                    path: Shared,
                    size: size(65),
                },
            ],
        ),
        (
            "bug 6 (as the checked survey found it): the shared path fills the heap around \
             the object a released handle left in the depot",
            setup(small, 1, None),
            vec![
                AllocMany {
                    path: Shared,
                    size: size(65),
                    n: 1,
                },
                Free {
                    path: Handle(0),
                    pick: 0,
                },
                Drop { h: 0 },
                AllocMany {
                    path: Shared,
                    size: size(65),
                    n: 256,
                },
            ],
        ),
        (
            "extra A: a live object holding the free mark is refused when freed (at the end)",
            setup(small, 1, None),
            vec![
                Alloc {
                    path: Shared,
                    size: size(9),
                },
                Forge { pick: 0 },
            ],
        ),
    ];
    let failed: Vec<String> = cases
        .iter()
        .filter_map(|(what, setup, ops)| {
            let r = std::panic::catch_unwind(|| run(setup, ops));
            r.err()
                .map(|e| format!("{what}:\n{}", soundness_support::panic_text(&*e)))
        })
        .collect();
    assert!(failed.is_empty(), "{}", failed.join("\n\n"));
}
