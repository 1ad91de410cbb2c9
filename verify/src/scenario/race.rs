//! Two tasks race frees of one block, on every path pair and every size
//! class (the README: "Of two racing frees of one block, exactly one
//! succeeds"): the concurrent form of the model-based bad-input fuzzing of
//! `tests/model_fuzz.rs`.
//!
//! One schedule: a heap of [`SMALL`] areas and random magazine sizes; two
//! tasks, each on its side of the pair (a handle of its own, or the shared
//! path), first run a random prefix of allocations and frees of the
//! schedule's size class (filling magazines, free lists and slabs the way
//! the sequential generator does); one of them (chosen at random) then
//! allocates the victim, and both free it at once. Afterwards, with no free
//! in flight, both allocate more blocks of the class while holding them all,
//! then free everything; the end of the schedule runs every checker
//! (online shadow, canaries, trace replay, balance, `validate()`) and
//! `corruptions()`. A block freed twice shows up as two owners of one block
//! (the shadow) or as a corruption.
//!
//! What is promised (src/heap/object.rs): for page blocks (page magazines
//! and the tree) exactly one free wins on every pair; for slab objects the
//! default build promises it only on the shared/shared pair (a handle's free
//! of an object does no read-modify-write), `checked` builds on every pair.
//! This package builds magbuddy without `checked`, so object races on a
//! handle are recorded, not asserted (`tests/race_matrix_checked.rs` asserts
//! them with real threads). shuttle also cannot split the hardware atomics
//! the heap lays over object memory (the free tag and bitmap, see
//! `magbuddy::sync::raw`): each is one indivisible step to it, so races
//! inside them (a load and a store of the tag) are the real-thread tests'
//! job.

use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering::SeqCst};
use std::sync::{Arc, Mutex};

use magbuddy::{FreeError, HeapConfig};
use shuttle::rand::{thread_rng, Rng};

use super::heap::free;
use super::SMALL;
use crate::{Tally, Via, World};

/// How a racer frees: its own handle (CPU slot `i`) or the shared path.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `Handle::try_free` on CPU slot `i`.
    Handle(usize),
    /// `Heap::try_free`.
    Shared,
}

/// The three path pairs.
pub const PAIRS: [[Side; 2]; 3] = [
    [Side::Handle(0), Side::Handle(1)],
    [Side::Handle(0), Side::Shared],
    [Side::Shared, Side::Shared],
];

/// A size class of the race.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Slab objects (8 B, 64 B, 2 KiB).
    Object,
    /// Page-magazine blocks (4, 8, 16 KiB; 16 KiB is a whole [`SMALL`] area).
    Pages,
    /// Tree blocks above 16 KiB (runs of two and four [`SMALL`] areas).
    Tree,
}

impl Kind {
    fn sizes(self) -> &'static [usize] {
        match self {
            Self::Object => &[8, 64, 2048],
            Self::Pages => &[4096, 8192, 16384],
            Self::Tree => &[32768, 65536],
        }
    }
}

/// Whether the default build promises exactly one winner for `pair` on
/// blocks of `kind` (see the module doc).
pub fn exactly_one_promised(kind: Kind, pair: [Side; 2]) -> bool {
    kind != Kind::Object || pair == [Side::Shared, Side::Shared]
}

/// A short name of a pair for event names.
pub fn pair_name(pair: [Side; 2]) -> &'static str {
    match pair {
        [Side::Handle(_), Side::Handle(_)] => "handle/handle",
        [Side::Shared, Side::Shared] => "shared/shared",
        _ => "handle/shared",
    }
}

/// What the racers share.
#[derive(Default)]
struct Race {
    /// Victim address (0 until allocated).
    victim: AtomicUsize,
    /// Racers done with their prefix and ready to free.
    ready: AtomicUsize,
    /// Racers whose free of the victim returned.
    freed: AtomicUsize,
    /// Racers holding their post-race allocations.
    holding: AtomicUsize,
    /// Both frees succeeded where that is not promised: skip the checks
    /// that assume one free.
    both_ok: AtomicBool,
    clock: AtomicUsize,
    /// Per racer: its free's outcome.
    results: Mutex<Vec<Outcome>>,
}

/// One racer's free of the victim: racer, result, and stamps of the run's
/// clock before and after the call.
type Outcome = (usize, Result<(), FreeError>, usize, usize);

/// Spins (yielding to shuttle) until `done()`.
fn wait(done: impl Fn() -> bool) {
    while !done() {
        shuttle::thread::yield_now();
    }
}

/// One schedule: the race of `pair` on a block of `kind` (see the module
/// doc). Adds to `tally`: per pair, "exactly one Ok", and how the loser was
/// refused (while the winner's free was in flight or after it; which error).
pub fn racing_frees(kind: Kind, pair: [Side; 2], tally: &Tally) {
    let mut rng = thread_rng();
    let rounds = rng.gen_range(1..=3);
    let config = HeapConfig {
        cpus: 2,
        geometry: SMALL,
        magazine_rounds: Some(rounds),
        ..HeapConfig::new(2)
    };
    let world = Arc::new(World::with_config(config, 32));
    let sizes = kind.sizes();
    let size = sizes[rng.gen_range(0..sizes.len())];
    let owner = rng.gen_range(0..2usize);
    let promised = exactly_one_promised(kind, pair);
    let race = Arc::new(Race::default());
    let r = race.clone();
    let run = world.run(2, 48, move |t, c| {
        let heap = c.world_heap();
        let mut via = match pair[t] {
            Side::Handle(i) => Via::Handle(heap.handle_for(i).expect("the racer's CPU slot")),
            Side::Shared => Via::Shared(heap),
        };
        let mut rng = thread_rng();
        // The prefix: allocations and frees of the class on this path.
        let mut live: Vec<usize> = Vec::new();
        for _ in 0..rng.gen_range(0..6) {
            if live.is_empty() || (live.len() < 2 && rng.gen_bool(0.6)) {
                if let Some(a) = c.alloc(size, || via.alloc(size)) {
                    live.push(a);
                }
            } else {
                let a = live.swap_remove(rng.gen_range(0..live.len()));
                free(c, &mut via, a, size);
            }
        }
        if t == owner {
            // Room for the victim: give back this racer's prefix blocks
            // until it fits (the other racer holds at most two).
            let v = loop {
                if let Some(v) = c.alloc(size, || via.alloc(size)) {
                    break v;
                }
                let a = live.pop().expect("room for the victim");
                free(c, &mut via, a, size);
            };
            // Recorded as freed now: from here on the checkers expect it
            // to be free (or handed out once more).
            c.freeing(v, size);
            r.victim.store(v, SeqCst);
        }
        r.ready.fetch_add(1, SeqCst);
        wait(|| r.ready.load(SeqCst) == 2);
        let v = r.victim.load(SeqCst);
        let start = r.clock.fetch_add(1, SeqCst);
        // SAFETY: the racers free one block they both were given; the
        // heap decides which free wins.
        let res = unsafe { via.try_free(v) };
        let end = r.clock.fetch_add(1, SeqCst);
        r.results.lock().unwrap().push((t, res, start, end));
        r.freed.fetch_add(1, SeqCst);
        // No allocation may race the losing free (a double free racing a
        // reallocation cannot be told from a legitimate free).
        wait(|| r.freed.load(SeqCst) == 2);
        let oks = r
            .results
            .lock()
            .unwrap()
            .iter()
            .filter(|x| x.1.is_ok())
            .count();
        if oks == 2 {
            assert!(
                !promised,
                "{}, {size} B: two racing frees of {v:#x} both returned Ok",
                pair_name(pair)
            );
            r.both_ok.store(true, SeqCst);
            return;
        }
        // After the race: more blocks of the class, all held at once, so a
        // block handed out twice meets its other owner in the shadow.
        let mut post = Vec::new();
        for _ in 0..3 {
            if let Some(a) = c.alloc(size, || via.alloc(size)) {
                post.push(a);
            }
        }
        r.holding.fetch_add(1, SeqCst);
        wait(|| r.holding.load(SeqCst) == 2);
        for a in post.into_iter().chain(live) {
            free(c, &mut via, a, size);
        }
    });
    let results = race.results.lock().unwrap().clone();
    let v = race.victim.load(SeqCst);
    let oks = results.iter().filter(|x| x.1.is_ok()).count();
    let name = pair_name(pair);
    assert!(
        oks >= 1,
        "{name}, {size} B: both racing frees of {v:#x} were refused (a leak): {results:?}"
    );
    if oks == 2 {
        assert!(
            !promised,
            "{name}, {size} B: two racing frees of {v:#x} both returned Ok"
        );
        tally.add("both Ok (not promised: an object freed on a handle)", 1);
        return;
    }
    let (_, loser, ls, le) = *results.iter().find(|x| x.1.is_err()).unwrap();
    let (_, _, ws, we) = *results.iter().find(|x| x.1.is_ok()).unwrap();
    let loser = loser.unwrap_err();
    assert!(
        matches!(loser, FreeError::DoubleFree(p) | FreeError::NotAllocated(p) if p == v),
        "{name}, {size} B: the losing free of {v:#x} must name it as free: {loser}"
    );
    tally.add(
        match name {
            "handle/handle" => "handle/handle: exactly one Ok",
            "handle/shared" => "handle/shared: exactly one Ok",
            _ => "shared/shared: exactly one Ok",
        },
        1,
    );
    tally.add(
        if ls < we && ws < le {
            "loser refused while the winner's free was in flight"
        } else {
            "loser refused after the winner's free"
        },
        1,
    );
    tally.add(
        match loser {
            FreeError::DoubleFree(_) => "loser saw DoubleFree",
            _ => "loser saw NotAllocated",
        },
        1,
    );
    // The victim's allocation and its one free are in the owner's trace.
    let mut trace = run.trace.clone();
    world.finish(&mut trace, true);
    assert_eq!(
        world.heap().corruptions().0,
        0,
        "{name}, {size} B: a freed block reached its slab or the tree twice"
    );
}
