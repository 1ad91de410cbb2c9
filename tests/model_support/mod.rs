//! Model-based bad-input fuzzing of one heap (`tests/model_fuzz.rs`): a
//! generated sequence of operations runs against the heap and, step by
//! step, against a reference model of what the API promises. The model
//! knows every block the heap handed out and not taken back (the *live*
//! set), the slabs those blocks pin, the regions and the addresses freed
//! before; from that it decides what each free must return, and checks
//! everything the README's "Bad input" section promises after every step.
//!
//! Operations name blocks by index into the model's lists (`pick % len`),
//! never by address, so every subsequence of a sequence is a valid
//! sequence and proptest's shrinking (dropping operations, lowering
//! numbers) ends at a minimal failing one.
//!
//! What the model can and cannot tell, and so what each free must return:
//!
//! | pointer                                         | expected                                 |
//! |-------------------------------------------------|------------------------------------------|
//! | null                                            | `Ok`, nothing changes                    |
//! | outside every region                            | `Foreign(p)`                             |
//! | start of a live block                           | `Ok` (a stale pointer to a block handed out again is a free of the new block: nobody can tell them apart) |
//! | inside a live block, not its start              | `Interior { p, start }`                  |
//! | a region's first bytes (heap header, region)    | `Metadata(p)`                            |
//! | in a slab that holds a live object: past the objects (the free bitmap) | `Metadata(p)`     |
//! | ... inside an object                            | `Interior { p, object }`                 |
//! | ... an object the model saw handed out since the slab last had no live object | `DoubleFree(p)` |
//! | ... any other object                            | `DoubleFree(p)` or `NotAllocated(p)`: never carved is `NotAllocated`, carved (handed out, or sitting in a magazine) is `DoubleFree`; the API does not say which objects a refill carved |
//! | anywhere else in a region                       | refused, naming `p`: `NotAllocated` (free in the tree), `DoubleFree` (the head of a block in a magazine, an object of a slab with no live object), `Interior { p, b }` with `b` below `p` and not a live block (inside a block in a magazine or an object of such a slab), or `Metadata` (a slab's bitmap, a region's metadata or end gap); which one depends on caches the API does not show |
//!
//! `usable_size(p)` must give the block size for a live block and refuse
//! exactly as the free does for everything else. A refused free must leave
//! `stats()` unchanged.
//!
//! After every step: no two live blocks overlap (a block handed out twice
//! is caught at the allocation), every live block is aligned to its size and
//! lies in a region, a live object's slab holds only objects of its class
//! and no page block, the stamps the test wrote into every live block are
//! intact, `validate()` is `Ok` and `corruptions().0 == 0`. When no handle
//! is claimed, after a reclaim: the tree's free bytes and `slabs_in_use()`
//! are exactly what the live set leaves. A `None` from an allocation is a
//! false out-of-memory (the no-false-OOM contract) when no other handle is
//! claimed and either a slab pinned by a live object of the class has a
//! free object, or (for one page) the live set leaves more free pages than
//! the caller's current slabs can hold.

#![allow(dead_code)]

use std::cell::RefCell;
use std::collections::{BTreeMap, HashMap};
use std::fmt;

use magbuddy::testing::FREE_TAG;
use magbuddy::{FreeError, Geometry, Handle, Heap, HeapConfig};
use proptest::collection::vec;
use proptest::prelude::*;
use proptest::strategy::Union;
use proptest::test_runner::{Config, RngSeed, TestRunner};

use crate::soundness_support::{panic_text, Mapping};

pub const PAGE: usize = 4096;
/// Bytes of a slab (16 KiB, aligned to its size in the address space).
pub const SLAB: usize = 16 << 10;
/// Small size classes (8 B .. 2 KiB) the model drives: the powers of two
/// of `alloc`. The heap also has fitted classes (`alloc_fit`, indices 9..),
/// which this model never uses, so a handle can own a current slab of only
/// these nine classes and the own-slab allowance below stays exact.
pub const SMALL_CLASSES: usize = 9;
/// Most regions the test adds to a heap (besides the first).
pub const MAX_EXTRA_REGIONS: usize = 3;
/// Most CPU slots (handles) a generated heap has.
pub const MAX_HANDLES: usize = 3;

/// Whether a slab of 8 - 128 B objects keeps its free bitmap in its last
/// slots (since 7a561a8; on 5d3224e every slot is an object). Decides the
/// capacity the model assumes and where `Metadata` is expected.
pub const TAIL_BITMAP: bool = true;

/// Objects per slab of class `c` (as `src/slab/mod.rs` `capacity`).
pub fn capacity(c: usize) -> usize {
    let size = 8 << c;
    let n = SLAB / size;
    if !TAIL_BITMAP || n <= 64 {
        n
    } else {
        n - (n / 8).div_ceil(size)
    }
}

/// Bytes past the last object of a slab of `size`-byte objects (its free
/// bitmap).
fn slab_tail(size: usize) -> usize {
    SLAB - capacity(size.trailing_zeros() as usize - 3) * size
}

/// Block size for a request of `size` bytes.
pub fn block_size(size: usize) -> usize {
    if size <= 2048 {
        size.max(8).next_power_of_two()
    } else {
        size.div_ceil(PAGE).next_power_of_two() * PAGE
    }
}

/// The free tag from 7a561a8 until it became a constant: the constant xor
/// the address's low half (random heads avoid it too).
fn old_tag_of(p: usize) -> u32 {
    (p as u32) ^ 0x6d62_7501
}

/// The in-band free mark of 5d3224e (bytes 8..16, or 4..8 of an 8 B object).
fn old_mark_of(p: usize) -> u64 {
    (p as u64) ^ 0x6d61_6762_7564_6479
}

// ---------------------------------------------------------------------------
// Operations

/// Which way into the heap an operation goes.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Path {
    /// `heap.alloc` / `heap.try_free`.
    Shared,
    /// Handle `i % cpus`; the shared path while that handle is dropped.
    Handle(u8),
}

impl fmt::Debug for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Shared => f.write_str("S"),
            Self::Handle(i) => write!(f, "h{i}"),
        }
    }
}

/// A request size: `kind` 0..=8 is a small class (8 << kind), 9..=11 a
/// page-magazine block (4, 8, 16 KiB), 12.. a tree block of order
/// `kind - 9`; `jitter` places the request inside the class.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Size {
    pub kind: u8,
    pub jitter: u16,
}

impl Size {
    pub fn block(self) -> usize {
        if self.kind <= 8 {
            8 << self.kind
        } else {
            PAGE << (self.kind - 9)
        }
    }

    pub fn bytes(self) -> usize {
        let b = self.block();
        let lo = match self.kind {
            0 => 1,
            9 => 2049,
            _ => b / 2 + 1,
        };
        lo + self.jitter as usize % (b - lo + 1)
    }

    /// The size of a request of `bytes` (what `Debug` prints).
    pub fn of(bytes: usize) -> Self {
        let b = block_size(bytes);
        let kind = if b <= 2048 {
            b.trailing_zeros() - 3
        } else {
            9 + (b / PAGE).trailing_zeros()
        } as u8;
        let lo = Size { kind, jitter: 0 }.bytes();
        Size {
            kind,
            jitter: (bytes - lo) as u16,
        }
    }
}

impl fmt::Debug for Size {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.bytes())
    }
}

/// One step of a generated sequence. `pick` selects a block from a model
/// list modulo its length (see each variant); an operation whose list is
/// empty does nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Op {
    /// Allocate one block.
    Alloc {
        path: Path,
        size: Size,
    },
    /// Allocate until `None` or `n` blocks.
    AllocMany {
        path: Path,
        size: Size,
        n: u16,
    },
    /// Free live block `pick`.
    Free {
        path: Path,
        pick: u16,
    },
    /// Free every `stride`-th live block.
    FreeMany {
        path: Path,
        stride: u8,
    },
    /// Free address `pick` of those freed before (a double free, a stale
    /// free of a cached block, or a free of a block handed out again).
    FreeStale {
        path: Path,
        pick: u16,
    },
    /// Free live block `pick` at 8-byte granule `granule` (mod its
    /// granules, never 0; inside an 8 B object: byte 4).
    FreeInterior {
        path: Path,
        pick: u16,
        granule: u16,
    },
    /// Free live block `pick` at every 8-byte granule but the first (a
    /// stride of them in blocks above 32 KiB).
    SweepInterior {
        path: Path,
        pick: u16,
    },
    /// Free object `index` (mod capacity) of the slab of the live object at
    /// or after `pick`: never carved, in a magazine, free, or live.
    FreeSlot {
        path: Path,
        pick: u16,
        index: u16,
    },
    /// Free granule `granule` of the bitmap slots past the objects of the
    /// slab of the live 8 - 128 B object at or after `pick`.
    FreeTail {
        path: Path,
        pick: u16,
        granule: u16,
    },
    /// Free `delta` blocks (objects; pages for page blocks) away from live
    /// or freed block `pick` (live ones first).
    FreeNear {
        path: Path,
        pick: u16,
        delta: i8,
    },
    FreeNull {
        path: Path,
    },
    /// Free a pointer outside the heap (`which` % 6: stack, below region 0,
    /// past region 0, top of the address space, 8, the system heap).
    FreeForeign {
        path: Path,
        which: u8,
    },
    /// Free 8-byte granule `granule` of the first bytes of region `region`.
    FreeMeta {
        path: Path,
        region: u8,
        granule: u16,
    },
    /// Store the free tag (and 5d3224e's free mark) in the live object at
    /// or after `pick`: a live object may hold any bytes.
    Forge {
        pick: u16,
    },
    /// Drop handle `h % cpus` (if claimed).
    Drop {
        h: u8,
    },
    /// Claim handle `h % cpus` (`None` expected if it is claimed).
    Claim {
        h: u8,
    },
    Reclaim,
    /// Add the next prepared region (up to [`MAX_EXTRA_REGIONS`]).
    AddRegion,
}

/// The heap an operation sequence runs on.
#[derive(Clone, PartialEq, Eq)]
pub struct Setup {
    pub chunk_order: u32,
    pub area_order: u32,
    /// Whole areas beyond `min_region_len` in the first region.
    pub extra_areas: usize,
    /// CPU slots, all claimed as handles at the start.
    pub cpus: usize,
    pub rounds: Option<usize>,
    /// Bytes the first region starts after an area-aligned address.
    pub offset: usize,
    pub zeroed: bool,
}

impl fmt::Debug for Setup {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "Setup(geometry ({}, {}), +{} areas, {} cpus, rounds {:?}, offset {:#x}, zeroed {})",
            self.chunk_order,
            self.area_order,
            self.extra_areas,
            self.cpus,
            self.rounds,
            self.offset,
            self.zeroed
        )
    }
}

impl Setup {
    pub fn geometry(&self) -> Geometry {
        Geometry::new(self.chunk_order, self.area_order).expect("generated geometry")
    }

    pub fn config(&self) -> HeapConfig {
        HeapConfig {
            geometry: self.geometry(),
            magazine_rounds: self.rounds,
            zeroed: self.zeroed,
            ..HeapConfig::new(self.cpus)
        }
    }

    fn area_bytes(&self) -> usize {
        PAGE << self.area_order
    }
}

fn path() -> impl Strategy<Value = Path> {
    prop_oneof![
        Just(Path::Shared),
        (0..MAX_HANDLES as u8).prop_map(Path::Handle)
    ]
}

fn size(max_kind: u8) -> impl Strategy<Value = Size> {
    let kind = prop_oneof![
        6 => 0u8..=8,
        3 => 9u8..=11,
        1 => 12u8..=max_kind,
    ];
    (kind, any::<u16>()).prop_map(|(kind, jitter)| Size { kind, jitter })
}

/// One operation; `max_kind` bounds tree blocks (see [`Size`]). The
/// simplest operations come first: shrinking moves towards them.
pub fn op(max_kind: u8) -> impl Strategy<Value = Op> {
    /// One weighted arm of the union: `strategy` mapped to an `Op`.
    macro_rules! arm {
        ($w:expr, $s:expr, $f:expr) => {
            ($w, $s.prop_map($f).boxed())
        };
    }
    let (p, n, h) = (path, any::<u16>, || 0..MAX_HANDLES as u8);
    let size = || size(max_kind);
    Union::new_weighted(vec![
        (1, Just(Op::Reclaim).boxed()),
        arm!(12, (p(), size()), |(path, size)| Op::Alloc { path, size }),
        arm!(2, (p(), size(), 1u16..=4096), |(path, size, n)| {
            Op::AllocMany { path, size, n }
        }),
        arm!(10, (p(), n()), |(path, pick)| Op::Free { path, pick }),
        arm!(1, (p(), 1u8..=4), |(path, stride)| Op::FreeMany {
            path,
            stride
        }),
        arm!(6, (p(), n()), |(path, pick)| Op::FreeStale { path, pick }),
        arm!(3, (p(), n(), n()), |(path, pick, granule)| {
            Op::FreeInterior {
                path,
                pick,
                granule,
            }
        }),
        arm!(1, (p(), n()), |(path, pick)| Op::SweepInterior {
            path,
            pick
        }),
        arm!(5, (p(), n(), n()), |(path, pick, index)| {
            Op::FreeSlot { path, pick, index }
        }),
        arm!(2, (p(), n(), n()), |(path, pick, granule)| {
            Op::FreeTail {
                path,
                pick,
                granule,
            }
        }),
        arm!(5, (p(), n(), -4i8..=4), |(path, pick, delta)| {
            Op::FreeNear { path, pick, delta }
        }),
        arm!(1, p(), |path| Op::FreeNull { path }),
        arm!(1, (p(), any::<u8>()), |(path, which)| Op::FreeForeign {
            path,
            which
        }),
        arm!(1, (p(), any::<u8>(), n()), |(path, region, granule)| {
            Op::FreeMeta {
                path,
                region,
                granule,
            }
        }),
        arm!(1, n(), |pick| Op::Forge { pick }),
        arm!(2, h(), |h| Op::Drop { h }),
        arm!(2, h(), |h| Op::Claim { h }),
        (1, Just(Op::AddRegion).boxed()),
    ])
}

/// Heaps of small geometries (areas of 4 - 16 pages, so a few hundred
/// allocations exhaust them), 1 - 3 CPUs.
pub fn small_setup() -> impl Strategy<Value = Setup> {
    let geometry = prop_oneof![Just((1u32, 2u32)), Just((0, 2)), Just((2, 3)), Just((2, 4))];
    (
        geometry,
        0usize..=6,
        1usize..=MAX_HANDLES,
        rounds(),
        0usize..4,
        any::<bool>(),
    )
        .prop_map(|((c, a), extra_areas, cpus, rounds, offset, zeroed)| {
            let area = PAGE << a;
            Setup {
                chunk_order: c,
                area_order: a,
                extra_areas,
                cpus,
                rounds,
                offset: [0, 8, PAGE + 64, area - PAGE][offset],
                zeroed,
            }
        })
}

/// Heaps of the default geometry (1 MiB areas) with 0 - 2 areas beyond
/// the minimum.
pub fn default_setup() -> impl Strategy<Value = Setup> {
    (
        0usize..=2,
        1usize..=MAX_HANDLES,
        rounds(),
        0usize..4,
        any::<bool>(),
    )
        .prop_map(|(extra_areas, cpus, rounds, offset, zeroed)| Setup {
            chunk_order: 5,
            area_order: 8,
            extra_areas,
            cpus,
            rounds,
            offset: [0, 8, PAGE + 64, (1 << 20) - PAGE][offset],
            zeroed,
        })
}

fn rounds() -> impl Strategy<Value = Option<usize>> {
    prop_oneof![
        Just(None),
        Just(Some(1)),
        Just(Some(2)),
        Just(Some(3)),
        Just(Some(8)),
        Just(Some(32)),
    ]
}

/// Sequences of up to `len` operations.
pub fn ops(max_kind: u8, len: usize) -> impl Strategy<Value = Vec<Op>> {
    vec(op(max_kind), 1..=len)
}

/// Runs `base` generated cases of `strategy` (times `MAGBUDDY_VERIFY_SCALE`,
/// or `PROPTEST_CASES` if set) with a fixed seed (`MAGBUDDY_VERIFY_SEED`
/// if set, else one derived from `name`), so a CI run explores the same
/// sequences every time. A failing case is shrunk (see [`shrink`]) and
/// reported with its minimal sequence. Prints the events the cases reached
/// and returns them for the caller's minimums.
///
/// Survey mode (`MODEL_FUZZ_SURVEY=1`, with `--test-threads=1`): runs every
/// case instead of stopping at the first failure and prints one minimal
/// sequence per distinct failure (the failure's message with numbers and
/// addresses blanked out), with how many cases failed that way: for
/// measuring what the method finds in code with several bugs.
pub fn fuzz(name: &str, base: u32, strategy: impl Strategy<Value = (Setup, Vec<Op>)>) -> Tally {
    use proptest::strategy::ValueTree;
    let env = |k: &str| std::env::var(k).ok().and_then(|s| s.parse::<u64>().ok());
    let cases = env("PROPTEST_CASES")
        .map(|n| n as u32)
        .unwrap_or(base * env("MAGBUDDY_VERIFY_SCALE").unwrap_or(1) as u32);
    let seed = name.bytes().fold(
        env("MAGBUDDY_VERIFY_SEED").unwrap_or(0x6d61_6762) ^ 0xcbf2_9ce4_8422_2325,
        |h, b| (h ^ b as u64).wrapping_mul(0x100_0000_01b3),
    );
    let survey = std::env::var_os("MODEL_FUZZ_SURVEY").is_some();
    let mut runner = TestRunner::new(Config {
        cases,
        rng_seed: RngSeed::Fixed(seed),
        failure_persistence: None,
        ..Config::default()
    });
    TALLY.with(|t| t.borrow_mut().clear());
    let started = std::time::Instant::now();
    // Signature, count, first case, the report of its minimal sequence.
    let mut found: Vec<(String, usize, u32, String)> = Vec::new();
    for case in 0..cases {
        if survey && case % 100 == 0 {
            eprintln!(
                "{name}: case {case} of {cases} at {:.0} s",
                started.elapsed().as_secs_f64()
            );
        }
        let tree = strategy.new_tree(&mut runner).expect("a case");
        let Err(msg) = try_run(&tree.current()) else {
            continue;
        };
        let sig = signature(&msg);
        if let Some(f) = found.iter_mut().find(|f| f.0 == sig) {
            f.1 += 1;
            continue;
        }
        let report = shrink(tree, msg, &sig);
        if survey {
            eprintln!("{name}: case {case}: new failure: {sig}");
        }
        found.push((sig, 1, case, report));
        if !survey {
            break;
        }
    }
    let mut tally = TALLY.with(|t| t.borrow().clone());
    tally.insert("cases", cases as u64);
    let line: Vec<String> = tally.iter().map(|(k, v)| format!("{k} {v}")).collect();
    println!(
        "{name}: {cases} cases (seed {seed}) in {:.1} s: {}",
        started.elapsed().as_secs_f64(),
        line.join(", ")
    );
    for (i, (sig, n, case, report)) in found.iter().enumerate() {
        println!(
            "{name}: distinct failure {} of {}: {n} cases; first in case {case}\n  \
             signature: {sig}\n{report}\n",
            i + 1,
            found.len()
        );
    }
    if let Some((_, _, case, report)) = found.first() {
        panic!(
            "{name}: case {case} of {cases} (seed {seed}) failed; {} distinct failures; the first \
             (all are printed above):\n{report}",
            found.len()
        );
    }
    tally
}

/// Runs one case, catching its panic (the message is the failure). The
/// panic hook is silenced meanwhile: shrinking runs hundreds of failing
/// cases.
fn try_run(v: &(Setup, Vec<Op>)) -> Result<(), String> {
    thread_local! {
        static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
    }
    static HOOK: std::sync::Once = std::sync::Once::new();
    HOOK.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !QUIET.with(|q| q.get()) {
                default(info);
            }
        }));
    });
    QUIET.with(|q| q.set(true));
    CANON.with(|c| c.borrow_mut().clear());
    let r = std::panic::catch_unwind(|| run(&v.0, &v.1)).map_err(|p| panic_text(&*p));
    QUIET.with(|q| q.set(false));
    r
}

/// Shrinks a failing case to a minimal one that fails the same way (same
/// [`signature`], so shrinking does not slide to another bug): proptest's
/// shrinking of the generated value (drop operations, lower numbers) and
/// then a greedy pass that drops single operations and simplifies the
/// setup until no such step keeps the failure (1-minimal). Returns the
/// report: the minimal sequence and its failure message.
fn shrink(
    mut tree: impl proptest::strategy::ValueTree<Value = (Setup, Vec<Op>)>,
    msg: String,
    sig: &str,
) -> String {
    let same = |v: &(Setup, Vec<Op>)| try_run(v).err().filter(|m| signature(m) == sig);
    let mut last = (tree.current(), msg);
    let mut steps = 0;
    // Bounds on proptest's steps (each runs a whole case): they converge
    // in a few hundred, but a long case on broken code can make each slow.
    let started = std::time::Instant::now();
    if tree.simplify() {
        while steps < 3000 && started.elapsed().as_secs() < 60 {
            steps += 1;
            if steps % 200 == 0 && std::env::var_os("MODEL_FUZZ_SURVEY").is_some() {
                eprintln!(
                    "  shrinking: {steps} steps, {} operations, {:.0} s",
                    last.0 .1.len(),
                    started.elapsed().as_secs_f64()
                );
            }
            match same(&tree.current()) {
                Some(m) => {
                    last = (tree.current(), m);
                    if !tree.simplify() {
                        break;
                    }
                }
                None => {
                    if !tree.complicate() {
                        break;
                    }
                }
            }
        }
    }
    let ((mut setup, mut ops), mut msg) = last;
    let mut greedy = 0;
    loop {
        let mut changed = false;
        for i in (0..ops.len()).rev() {
            let mut fewer = ops.clone();
            fewer.remove(i);
            if let Some(m) = same(&(setup.clone(), fewer.clone())) {
                (ops, msg, changed) = (fewer, m, true);
                greedy += 1;
            }
        }
        // Fewer allocations in each `AllocMany`: the fewest that still fail
        // (bisection, assuming that more would fail too).
        for i in 0..ops.len() {
            let Op::AllocMany { path, size, n } = ops[i] else {
                continue;
            };
            let with = |m: u16| {
                let mut v = ops.clone();
                v[i] = Op::AllocMany { path, size, n: m };
                v
            };
            let (mut lo, mut hi) = (1, n);
            while lo < hi {
                let mid = lo + (hi - lo) / 2;
                match same(&(setup.clone(), with(mid))) {
                    Some(m) => (hi, msg) = (mid, m),
                    None => lo = mid + 1,
                }
            }
            if hi < n {
                (ops, changed, greedy) = (with(hi), true, greedy + 1);
            }
        }
        // Each simplification of the setup from the current one (so an
        // accepted one is kept by the next).
        let simplify: [fn(&mut Setup); 5] = [
            |s| s.cpus = 1,
            |s| s.extra_areas = 0,
            |s| s.rounds = None,
            |s| s.offset = 0,
            |s| s.zeroed = false,
        ];
        for f in simplify {
            let mut s = setup.clone();
            f(&mut s);
            if s != setup {
                if let Some(m) = same(&(s.clone(), ops.clone())) {
                    (setup, msg, changed) = (s, m, true);
                    greedy += 1;
                }
            }
        }
        if !changed {
            break;
        }
    }
    // The operations as they ran (see `Run::canonical`): the same run,
    // with indices and paths spelled as they were taken.
    if let Some(m) = same(&(setup.clone(), ops.clone())) {
        let canon = CANON.with(|c| c.borrow().clone());
        if same(&(setup.clone(), canon.clone())).is_some() {
            (ops, msg) = (canon, m);
        }
    }
    let ops: Vec<String> = ops.iter().map(|op| format!("    {op:?},")).collect();
    format!(
        "shrunk in {steps} proptest steps and {greedy} greedy ones to {} operations:\n{msg}\n\
         minimal failing input: {setup:?}\n{}",
        ops.len(),
        ops.join("\n")
    )
}

/// A failure message's first line (its step number dropped) with every
/// number and address, the path and the operation's kind blanked out:
/// failures of one kind share it.
fn signature(msg: &str) -> String {
    let line = msg.lines().next().unwrap_or("");
    let line = match line.split_once(": ") {
        Some((step, rest)) if step.starts_with("step ") => rest,
        _ => line,
    };
    let mut out = String::new();
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        // Which path and which operation found it ("(h1, ", "[near a
        // block]") do not make another failure.
        if c == '[' || (c == '(' && chars.peek().is_some_and(|&d| d == 'h' || d == 'S')) {
            let close = if c == '[' { ']' } else { ',' };
            for d in chars.by_ref() {
                if d == close {
                    break;
                }
            }
            out.push_str(if c == '[' { "[..]" } else { "(..," });
            continue;
        }
        if c.is_ascii_digit() {
            while chars
                .peek()
                .is_some_and(|d| d.is_ascii_hexdigit() || *d == 'x')
            {
                chars.next();
            }
            out.push('#');
        } else {
            out.push(c);
        }
    }
    out
}

/// The events a run of [`fuzz`] reached, by name.
pub type Tally = BTreeMap<&'static str, u64>;

/// Asserts that `event` happened at least `min` times over a run of
/// [`fuzz`]: the generator still reaches what the method exists for.
#[track_caller]
pub fn require(tally: &Tally, event: &str, min: u64) {
    let n = tally.get(event).copied().unwrap_or(0);
    assert!(
        n >= min,
        "only {n} `{event}` events (need >= {min}): the generator no longer reaches it"
    );
}

thread_local! {
    /// The operations of the last case run on this thread, in their
    /// canonical form (see `Run::canonical`), up to the one that failed.
    static CANON: RefCell<Vec<Op>> = const { RefCell::new(Vec::new()) };
    /// Events of the cases run on this thread (each test runs on its own).
    static TALLY: RefCell<BTreeMap<&'static str, u64>> = const { RefCell::new(BTreeMap::new()) };
}

fn count(event: &'static str) {
    TALLY.with(|t| *t.borrow_mut().entry(event).or_default() += 1);
}

// ---------------------------------------------------------------------------
// The model

/// A live block as the model knows it: its size and the stamps the test
/// wrote at its start (16 bytes, 8 in an 8 B object) and its last 8 bytes
/// (blocks of 32 B and more).
#[derive(Clone, Copy, Debug)]
struct Block {
    size: usize,
    head: [u64; 2],
    tail: u64,
    /// Position in `Run::order`.
    at: usize,
}

/// A slab pinned by live objects: its class, how many live objects it
/// holds, and which objects the model saw handed out since it last held
/// none (those were carved: a free of one that is free is a `DoubleFree`).
#[derive(Clone, Debug)]
struct Slab {
    class: usize,
    live: usize,
    carved: Vec<u64>,
}

impl Slab {
    fn carved(&self, i: usize) -> bool {
        self.carved[i / 64] >> (i % 64) & 1 != 0
    }
}

/// What a free of an address must return (see the module doc).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Expect {
    Null,
    Live(usize),
    Exact(FreeError),
    /// A free object of a slab pinned by a live object.
    FreeObject,
    /// Memory in a region whose state the model cannot see.
    Unknown,
}

/// Handles claimed by the test; forgotten instead of dropped when a check
/// panicked (their release would walk a heap in an unknown state and could
/// panic again while unwinding, which aborts the process).
struct Handles<'h>(Vec<Option<Handle<'h>>>);

impl Drop for Handles<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            for h in self.0.iter_mut().filter_map(Option::take) {
                std::mem::forget(h);
            }
        }
    }
}

/// One sequence's heap, the memory behind it, and the model.
pub struct Run<'h> {
    heap: &'h Heap,
    setup: Setup,
    handles: Handles<'h>,
    /// Live blocks by start address.
    live: BTreeMap<usize, Block>,
    /// Live block starts in a pickable order.
    order: Vec<usize>,
    slabs: HashMap<usize, Slab>,
    /// Addresses freed before, most recent last (the last 64), with their
    /// block sizes.
    freed: Vec<(usize, usize)>,
    /// Published regions `[start, end)`, and the ones prepared to be added.
    regions: Vec<(usize, usize)>,
    spare: Vec<(usize, usize)>,
    /// Free bytes of the tree with nothing allocated.
    capacity_bytes: usize,
    serial: u64,
    log: Vec<String>,
    step: usize,
}

/// Runs `ops` on a fresh heap of `setup`, checking every step against the
/// model; panics with the step, the failed check and the log of the steps
/// so far.
pub fn run(setup: &Setup, ops: &[Op]) {
    let g = setup.geometry();
    let cfg = setup.config();
    let area = setup.area_bytes();
    let first_len = Heap::min_region_len(cfg) + setup.extra_areas * area;
    let extra_len = Heap::min_region_len(cfg) + area;
    let spacing = (first_len.max(extra_len) + 2 * area).next_power_of_two();
    // One reservation for every region, aligned to `spacing`, so the same
    // sequence places blocks at the same offsets on every run (shrinking
    // replays it) and the regions lie in a fixed order.
    let map = Mapping::reserve((MAX_EXTRA_REGIONS + 2) * spacing);
    let base = map.addr().next_multiple_of(spacing);
    let start = base + setup.offset;
    // SAFETY: our own fresh mapping (zero-filled), unused by anyone else;
    // it outlives the heap (dropped after `run`).
    let heap = unsafe { Heap::init_with(start as *mut u8, first_len, cfg) }
        .unwrap_or_else(|e| panic!("{setup:?}: init failed: {e:?}"));
    assert_eq!(heap.geometry(), g);
    let handles = (0..setup.cpus)
        .map(|cpu| Some(heap.handle_for(cpu).expect("a fresh CPU slot")))
        .collect();
    let spare = (1..=MAX_EXTRA_REGIONS)
        .rev()
        .map(|i| (base + i * spacing + 8 * i, extra_len))
        .map(|(s, len)| (s, s + len))
        .collect();
    let mut run = Run {
        heap,
        setup: setup.clone(),
        handles: Handles(handles),
        live: BTreeMap::new(),
        order: Vec::new(),
        slabs: HashMap::new(),
        freed: Vec::new(),
        regions: vec![(start, start + first_len)],
        spare,
        capacity_bytes: heap.stats().free_bytes,
        serial: 0,
        log: Vec::new(),
        step: 0,
    };
    run.guarded(|r| r.quiet_checks());
    for (i, op) in ops.iter().enumerate() {
        run.step = i;
        run.guarded(|r| {
            r.apply(op);
            r.quiet_checks();
        });
    }
    run.step = ops.len();
    run.guarded(Run::finish);
    drop(run);
    drop(map);
}

impl<'h> Run<'h> {
    // -- reporting ---------------------------------------------------------

    /// Runs `f`; a panic inside the heap (not one of the model's checks,
    /// which name their step already) is reported with the step and log.
    fn guarded(&mut self, f: impl FnOnce(&mut Self)) {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(self)));
        if let Err(payload) = r {
            let msg = panic_text(&*payload);
            if msg.starts_with("step ") {
                std::panic::resume_unwind(payload);
            }
            self.fail(format!("the heap panicked: {msg}"));
        }
    }

    /// An address as `r<i>+<offset>` when it lies in (or just below) a
    /// region of the heap.
    fn name(&self, a: usize) -> String {
        for (i, &(s, e)) in self
            .regions
            .iter()
            .chain(self.spare.iter().rev())
            .enumerate()
        {
            if a >= s && a < e + (1 << 20) {
                return format!("r{i}+{:#x}", a - s);
            }
            if a < s && s - a <= 64 {
                return format!("r{i}-{:#x}", s - a);
            }
        }
        format!("{a:#x}")
    }

    fn err_name(&self, e: &FreeError) -> String {
        match *e {
            FreeError::Foreign(p) => format!("Foreign({})", self.name(p)),
            FreeError::Interior { ptr, block } => {
                format!("Interior({} in {})", self.name(ptr), self.name(block))
            }
            FreeError::NotAllocated(p) => format!("NotAllocated({})", self.name(p)),
            FreeError::DoubleFree(p) => format!("DoubleFree({})", self.name(p)),
            FreeError::Metadata(p) => format!("Metadata({})", self.name(p)),
        }
    }

    fn res_name<T: fmt::Debug>(&self, r: &Result<T, FreeError>) -> String {
        match r {
            Ok(v) => format!("Ok({v:?})"),
            Err(e) => self.err_name(e),
        }
    }

    fn note(&mut self, line: String) {
        self.log.push(format!("  #{} {line}", self.step));
    }

    #[track_caller]
    fn fail(&self, what: String) -> ! {
        let tail = self.log.len().saturating_sub(60);
        panic!(
            "step {}: {what}\n{:?}\nlog (last {} lines):\n{}",
            self.step,
            self.setup,
            self.log.len() - tail,
            self.log[tail..].join("\n")
        )
    }

    // -- model queries ------------------------------------------------------

    /// The live block containing `a`: its start and block.
    fn containing(&self, a: usize) -> Option<(usize, Block)> {
        let (&b, &blk) = self.live.range(..=a).next_back()?;
        (a < b + blk.size).then_some((b, blk))
    }

    fn in_region(&self, a: usize) -> bool {
        self.regions.iter().any(|&(s, e)| a >= s && a < e)
    }

    /// First bytes of a region: the heap header (first region) or the
    /// region's own descriptor (added ones).
    fn known_metadata(&self, a: usize) -> bool {
        self.regions
            .iter()
            .enumerate()
            .any(|(i, &(s, _))| a >= s && a < s + if i == 0 { 1024 } else { 64 })
    }

    fn expect(&self, a: usize) -> Expect {
        if a == 0 {
            return Expect::Null;
        }
        if !self.in_region(a) {
            return Expect::Exact(FreeError::Foreign(a));
        }
        if let Some((b, blk)) = self.containing(a) {
            if b == a {
                return Expect::Live(blk.size);
            }
            return Expect::Exact(FreeError::Interior { ptr: a, block: b });
        }
        if self.known_metadata(a) {
            return Expect::Exact(FreeError::Metadata(a));
        }
        let s = a & !(SLAB - 1);
        if let Some(slab) = self.slabs.get(&s) {
            let size = 8usize << slab.class;
            let off = a - s;
            if off >= capacity(slab.class) * size {
                return Expect::Exact(FreeError::Metadata(a));
            }
            if off % size != 0 {
                return Expect::Exact(FreeError::Interior {
                    ptr: a,
                    block: a - off % size,
                });
            }
            if slab.carved(off / size) {
                return Expect::Exact(FreeError::DoubleFree(a));
            }
            return Expect::FreeObject;
        }
        Expect::Unknown
    }

    /// Whether `r` (of a free or size query of `a`) is what `e` allows.
    fn allowed<T>(&self, e: Expect, a: usize, r: &Result<T, FreeError>) -> bool {
        let err = match r {
            Ok(_) => return matches!(e, Expect::Null | Expect::Live(_)),
            Err(err) => *err,
        };
        match e {
            Expect::Null | Expect::Live(_) => false,
            Expect::Exact(x) => err == x,
            Expect::FreeObject => {
                matches!(err, FreeError::DoubleFree(p) | FreeError::NotAllocated(p) if p == a)
            }
            Expect::Unknown => match err {
                FreeError::NotAllocated(p) | FreeError::DoubleFree(p) | FreeError::Metadata(p) => {
                    p == a
                }
                FreeError::Interior { ptr, block } => {
                    ptr == a && block < a && self.containing(block).is_none()
                }
                FreeError::Foreign(_) => false,
            },
        }
    }

    // -- heap access ----------------------------------------------------------

    /// The handle `path` names if it is claimed (else the shared path).
    fn handle(&mut self, path: Path) -> Option<&mut Handle<'h>> {
        match path {
            Path::Shared => None,
            Path::Handle(i) => self.handles.0[i as usize % self.setup.cpus].as_mut(),
        }
    }

    fn path_name(&self, path: Path) -> String {
        match path {
            Path::Handle(i) if self.handles.0[i as usize % self.setup.cpus].is_some() => {
                format!("h{}", i as usize % self.setup.cpus)
            }
            _ => "S".into(),
        }
    }

    fn other_handles(&self, path: Path) -> usize {
        let mine = match path {
            Path::Handle(i) if self.handles.0[i as usize % self.setup.cpus].is_some() => {
                Some(i as usize % self.setup.cpus)
            }
            _ => None,
        };
        (0..self.setup.cpus)
            .filter(|&c| Some(c) != mine && self.handles.0[c].is_some())
            .count()
    }

    fn heap_alloc(&mut self, path: Path, bytes: usize) -> Option<usize> {
        let heap = self.heap;
        let p = match self.handle(path) {
            Some(h) => h.alloc(bytes),
            None => heap.alloc(bytes),
        };
        p.map(|p| p.as_ptr() as usize)
    }

    fn heap_free(&mut self, path: Path, a: usize) -> Result<(), FreeError> {
        let heap = self.heap;
        // SAFETY: `a` is a live block the model forgets on `Ok`, or a bad
        // pointer the heap must refuse without touching anything.
        unsafe {
            match self.handle(path) {
                Some(h) => h.try_free(a as *mut u8),
                None => heap.try_free(a as *mut u8),
            }
        }
    }

    // -- stamps -----------------------------------------------------------

    fn new_stamp(&mut self, p: usize, size: usize) -> Block {
        self.serial += 1;
        let mut x = (p as u64) ^ self.serial.wrapping_mul(0x9e37_79b9_7f4a_7c15);
        let mut next = || {
            x = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
            let mut z = x;
            z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
            z ^ (z >> 31)
        };
        let mut head = [next(), next()];
        // Never the free tag or the old free mark by accident.
        let half = (head[0] >> 32) as u32;
        if half == FREE_TAG || half == old_tag_of(p) || half == old_mark_of(p) as u32 {
            head[0] ^= 1 << 63;
        }
        if head[1] == old_mark_of(p) {
            head[1] ^= 1;
        }
        Block {
            size,
            head,
            tail: next(),
            at: usize::MAX,
        }
    }

    fn write_stamp(p: usize, b: &Block) {
        // SAFETY: a live block of at least 8 bytes, ours, 8-aligned.
        unsafe {
            (p as *mut u64).write(b.head[0]);
            if b.size >= 16 {
                ((p + 8) as *mut u64).write(b.head[1]);
            }
            if b.size >= 32 {
                ((p + b.size - 8) as *mut u64).write(b.tail);
            }
        }
    }

    fn stamp_ok(p: usize, b: &Block) -> bool {
        // SAFETY: as in `write_stamp`.
        unsafe {
            (p as *const u64).read() == b.head[0]
                && (b.size < 16 || ((p + 8) as *const u64).read() == b.head[1])
                && (b.size < 32 || ((p + b.size - 8) as *const u64).read() == b.tail)
        }
    }

    // -- the model's bookkeeping -------------------------------------------

    /// Records block `p` of `size` bytes just handed out, after checking it
    /// against everything live.
    fn add_live(&mut self, p: usize, size: usize, what: &str) {
        if p % size != 0 {
            self.fail(format!(
                "{what}: {} is not aligned to its size {size}",
                self.name(p)
            ));
        }
        if !self.regions.iter().any(|&(s, e)| p >= s && p + size <= e) {
            self.fail(format!(
                "{what}: {} + {size} lies outside every region",
                self.name(p)
            ));
        }
        if let Some((b, blk)) = self.containing(p) {
            self.fail(format!(
                "{what}: {} handed out while the live block {} of {} B covers it \
                 (two owners of one block)",
                self.name(p),
                self.name(b),
                blk.size
            ));
        }
        if let Some((&b, _)) = self.live.range(p..p + size).next() {
            self.fail(format!(
                "{what}: {} + {size} overlaps the live block {} (two owners)",
                self.name(p),
                self.name(b)
            ));
        }
        if size <= 2048 {
            let s = p & !(SLAB - 1);
            let c = size.trailing_zeros() as usize - 3;
            let i = (p - s) / size;
            if i >= capacity(c) {
                self.fail(format!(
                    "{what}: object {} is slot {i} of its slab, past the capacity {}",
                    self.name(p),
                    capacity(c)
                ));
            }
            let slab = self.slabs.entry(s).or_insert_with(|| Slab {
                class: c,
                live: 0,
                carved: vec![0; SLAB / 8 / 64],
            });
            if slab.class != c {
                let class = slab.class;
                self.fail(format!(
                    "{what}: {size} B object {} in a slab of {} B objects",
                    self.name(p),
                    8 << class
                ));
            }
            slab.live += 1;
            slab.carved[i / 64] |= 1 << (i % 64);
        } else {
            // A page block never covers a slab that holds a live object.
            let mut s = p & !(SLAB - 1);
            while s < p + size {
                if self.slabs.contains_key(&s) {
                    self.fail(format!(
                        "{what}: page block {} of {size} B covers the slab {} that holds \
                         live objects",
                        self.name(p),
                        self.name(s)
                    ));
                }
                s += SLAB;
            }
        }
        let mut blk = self.new_stamp(p, size);
        Self::write_stamp(p, &blk);
        blk.at = self.order.len();
        self.live.insert(p, blk);
        self.order.push(p);
    }

    fn remove_live(&mut self, p: usize) {
        let blk = self.live.remove(&p).expect("live");
        self.order.swap_remove(blk.at);
        if let Some(&moved) = self.order.get(blk.at) {
            self.live.get_mut(&moved).expect("live").at = blk.at;
        }
        if blk.size <= 2048 {
            let s = p & !(SLAB - 1);
            let slab = self.slabs.get_mut(&s).expect("slab of a live object");
            slab.live -= 1;
            if slab.live == 0 {
                self.slabs.remove(&s);
            }
        }
        self.freed.push((p, blk.size));
        if self.freed.len() > 64 {
            self.freed.remove(0);
        }
    }

    // -- checks -------------------------------------------------------------

    /// After every step: stamps, `validate()`, no corruption.
    fn quiet_checks(&mut self) {
        for (&p, b) in &self.live {
            if !Self::stamp_ok(p, b) {
                self.fail(format!(
                    "the stamp of live block {} ({} B) changed: someone else wrote it",
                    self.name(p),
                    b.size
                ));
            }
        }
        if let Err(e) = self.heap.validate() {
            self.fail(format!("validate: {e}"));
        }
        let (n, first) = self.heap.corruptions();
        if n != 0 {
            self.fail(format!(
                "{n} corruptions, the first at {}",
                self.name(first)
            ));
        }
    }

    /// Bytes of the tree the live set holds: its page blocks and the slabs
    /// its objects pin.
    fn held_bytes(&self) -> usize {
        let pages: usize = self
            .live
            .values()
            .map(|b| b.size)
            .filter(|&s| s > 2048)
            .sum();
        pages + SLAB * self.slabs.len()
    }

    /// With no handle claimed and after a reclaim, the tree holds exactly
    /// what the live set leaves: nothing is cached or leaked.
    fn accounting(&mut self, what: &str) {
        let want = self.capacity_bytes - self.held_bytes();
        count("exact accounting checks");
        let free = self.heap.stats().free_bytes;
        let slabs = self.heap.slabs_in_use() as usize;
        if free != want || slabs != self.slabs.len() {
            self.fail(format!(
                "{what}: after reclaim with no handle claimed the tree has {free} B free and \
                 {slabs} slabs in use; the live set leaves {want} B free and {} slabs",
                self.slabs.len()
            ));
        }
    }

    /// A `None` for `bytes` on `path`: false if memory the caller must reach
    /// is free (see the module doc).
    fn check_oom(&mut self, path: Path, bytes: usize, what: &str) {
        count("None from an allocation");
        if self.other_handles(path) > 0 {
            return;
        }
        let b = block_size(bytes);
        if b <= PAGE {
            count("false-OOM checks");
        }
        if b <= 2048 {
            let c = b.trailing_zeros() as usize - 3;
            let spare = self
                .slabs
                .iter()
                .find(|(_, s)| s.class == c && s.live < capacity(c));
            if let Some((&s, slab)) = spare {
                let live = slab.live;
                self.fail(format!(
                    "false OOM: {what} returned None while the slab {} holds {live} live \
                     {b} B objects of {} (no other handle claimed)",
                    self.name(s),
                    capacity(c)
                ));
            }
        } else if b == PAGE {
            let held = self.held_bytes();
            // The caller's current slabs (one per class) stay with it.
            let own = if self.path_name(path) == "S" {
                0
            } else {
                SMALL_CLASSES * SLAB
            };
            if held + own + PAGE <= self.capacity_bytes {
                self.fail(format!(
                    "false OOM: {what} returned None with {held} B held by live blocks and \
                     slabs of {} B (+{own} B of the caller's current slabs; no other handle \
                     claimed)",
                    self.capacity_bytes
                ));
            }
        }
    }

    // -- operations -----------------------------------------------------------

    fn alloc(&mut self, path: Path, bytes: usize) -> Option<usize> {
        let p = self.heap_alloc(path, bytes);
        let what = format!("alloc({}, {bytes})", self.path_name(path));
        if let Some(p) = p {
            let size = block_size(bytes);
            self.add_live(p, size, &what);
            let us = self.heap.usable_size(p as *const u8);
            if us != Ok(size) {
                let got = self.res_name(&us);
                self.fail(format!(
                    "{what} = {}: usable_size {got}, want Ok({size})",
                    self.name(p)
                ));
            }
        }
        p
    }

    /// Frees `a` on `path` and checks the outcome against the model.
    /// `stats`: compare `stats()` before and after a refused free.
    fn free_at(&mut self, path: Path, a: usize, why: &str, stats: bool) {
        let e = self.expect(a);
        let who = self.path_name(path);
        if let Expect::Live(_) = e {
            let blk = self.live[&a];
            if !Self::stamp_ok(a, &blk) {
                self.fail(format!("the stamp of live block {} changed", self.name(a)));
            }
        }
        let us = (a != 0).then(|| self.heap.usable_size(a as *const u8));
        let before = (stats && !matches!(e, Expect::Live(_))).then(|| self.heap.stats());
        let r = self.heap_free(path, a);
        let line = format!(
            "free({who}, {} [{why}]) -> {}{}",
            self.name(a),
            self.res_name(&r),
            us.as_ref()
                .map(|u| format!(", usable_size {}", self.res_name(u)))
                .unwrap_or_default()
        );
        self.note(line.clone());
        let ok = self.allowed(e, a, &r)
            && match (&us, e) {
                (None, _) => true,
                (Some(u), Expect::Live(size)) => *u == Ok(size),
                (Some(u), _) => u.as_ref().err() == r.as_ref().err(),
            };
        if !ok {
            self.fail(format!("{line}: the model expects {}", self.describe(e, a)));
        }
        if let Some(before) = before {
            let after = self.heap.stats();
            if (before.free_bytes, before.live_blocks, before.free_blocks)
                != (after.free_bytes, after.live_blocks, after.free_blocks)
            {
                self.fail(format!("{line}: the refused free changed stats()"));
            }
        }
        count(match (e, &r) {
            (Expect::Null, _) => "free(null)",
            (Expect::Live(_), _) if why == "freed before" => {
                "Ok: stale pointer to a block handed out again"
            }
            (Expect::Live(_), _) if why == "live" || why.ends_with("at the end") => {
                "Ok: live block"
            }
            (Expect::Live(_), _) => "Ok: a bad-looking pointer that is a live block",
            (Expect::Exact(_), Err(FreeError::Foreign(_))) => "Foreign",
            (Expect::Exact(_), Err(FreeError::Interior { .. })) => "Interior (exact)",
            (Expect::Exact(_), Err(FreeError::Metadata(_))) => "Metadata (exact)",
            (Expect::Exact(_), Err(FreeError::DoubleFree(_))) => "DoubleFree (exact)",
            (Expect::FreeObject, Err(FreeError::DoubleFree(_))) => "DoubleFree (free object)",
            (Expect::FreeObject, _) => "NotAllocated (free object)",
            (Expect::Unknown, Err(FreeError::NotAllocated(_))) => "NotAllocated (unseen memory)",
            (Expect::Unknown, Err(FreeError::DoubleFree(_))) => "DoubleFree (unseen memory)",
            (Expect::Unknown, Err(FreeError::Interior { .. })) => "Interior (unseen memory)",
            (Expect::Unknown, _) => "Metadata (unseen memory)",
            _ => "other",
        });
        if why == "freed before" && r.is_err() {
            count("refused stale or double free");
        }
        if let (Ok(()), Expect::Live(_)) = (&r, e) {
            self.remove_live(a);
        }
    }

    fn describe(&self, e: Expect, a: usize) -> String {
        match e {
            Expect::Null => "Ok (null)".into(),
            Expect::Live(size) => format!("Ok: a live block of {size} B (usable_size Ok({size}))"),
            Expect::Exact(x) => format!("{} (and usable_size the same)", self.err_name(&x)),
            Expect::FreeObject => format!(
                "DoubleFree or NotAllocated of {}: a free object of a slab pinned by a live \
                 object (and usable_size the same)",
                self.name(a)
            ),
            Expect::Unknown => format!(
                "a refusal naming {} (NotAllocated, DoubleFree, Interior below it, Metadata): \
                 no live block or slab covers it (and usable_size the same)",
                self.name(a)
            ),
        }
    }

    /// The live object at or after position `pick` (cyclically) that
    /// `want` accepts.
    fn pick_small(&self, pick: u16, want: impl Fn(usize) -> bool) -> Option<usize> {
        let n = self.order.len();
        (0..n)
            .map(|i| self.order[(pick as usize + i) % n])
            .find(|p| self.live[p].size <= 2048 && want(self.live[p].size))
    }

    /// `op` as it is about to run: the path it takes (`S` for a dropped
    /// handle, `h<i % cpus>`), the list positions, granules, indices and
    /// handles it picks (reduced modulo what it picks from), and its size as
    /// an offset in the class. Running the canonical operations does
    /// exactly what the originals did; they read better in a report.
    fn canonical(&self, op: &Op) -> Op {
        let cpus = self.setup.cpus;
        let path = |p: Path| match p {
            Path::Handle(i) if self.handles.0[i as usize % cpus].is_some() => {
                Path::Handle((i as usize % cpus) as u8)
            }
            _ => Path::Shared,
        };
        let modulo = |v: u16, n: usize| (v as usize % n.max(1)) as u16;
        let live = |pick: u16| modulo(pick, self.order.len());
        let size_of = |pick: u16| {
            self.order
                .get(live(pick) as usize)
                .map(|p| self.live[p].size)
        };
        let small = |pick: u16, tail: bool| {
            let want = |size: usize| !tail || slab_tail(size) > 0;
            let p = self.pick_small(pick, want)?;
            Some((self.live[&p].at as u16, self.live[&p].size))
        };
        let size = |s: Size| {
            let lo = Size { jitter: 0, ..s }.bytes();
            Size {
                jitter: (s.bytes() - lo) as u16,
                ..s
            }
        };
        let h = |h: u8| (h as usize % cpus) as u8;
        match *op {
            Op::Alloc { path: p, size: z } => Op::Alloc {
                path: path(p),
                size: size(z),
            },
            Op::AllocMany {
                path: p,
                size: z,
                n,
            } => Op::AllocMany {
                path: path(p),
                size: size(z),
                n,
            },
            Op::Free { path: p, pick } => Op::Free {
                path: path(p),
                pick: live(pick),
            },
            Op::FreeMany { path: p, stride } => Op::FreeMany {
                path: path(p),
                stride,
            },
            Op::FreeStale { path: p, pick } => Op::FreeStale {
                path: path(p),
                pick: modulo(pick, self.freed.len()),
            },
            Op::FreeInterior {
                path: p,
                pick,
                granule,
            } => Op::FreeInterior {
                path: path(p),
                pick: live(pick),
                granule: match size_of(pick) {
                    Some(z) if z > 8 => modulo(granule, z / 8 - 1),
                    _ => 0,
                },
            },
            Op::SweepInterior { path: p, pick } => Op::SweepInterior {
                path: path(p),
                pick: live(pick),
            },
            Op::FreeSlot {
                path: p,
                pick,
                index,
            } => {
                let (pick, z) = small(pick, false).unwrap_or((0, 8));
                let c = z.trailing_zeros() as usize - 3;
                Op::FreeSlot {
                    path: path(p),
                    pick,
                    index: modulo(index, capacity(c)),
                }
            }
            Op::FreeTail {
                path: p,
                pick,
                granule,
            } => {
                let (pick, z) = small(pick, true).unwrap_or((0, 8));
                let granule = modulo(granule, slab_tail(z) / 8);
                Op::FreeTail {
                    path: path(p),
                    pick,
                    granule,
                }
            }
            Op::FreeNear {
                path: p,
                pick,
                delta,
            } => Op::FreeNear {
                path: path(p),
                pick: modulo(pick, self.order.len() + self.freed.len()),
                delta,
            },
            Op::FreeNull { path: p } => Op::FreeNull { path: path(p) },
            Op::FreeForeign { path: p, which } => Op::FreeForeign {
                path: path(p),
                which: which % 6,
            },
            Op::FreeMeta {
                path: p,
                region,
                granule,
            } => {
                let r = region as usize % self.regions.len();
                let limit = if r == 0 { 1024 } else { 64 };
                let granule = modulo(granule, limit / 8);
                Op::FreeMeta {
                    path: path(p),
                    region: r as u8,
                    granule,
                }
            }
            Op::Forge { pick } => Op::Forge {
                pick: small(pick, false).map_or(0, |x| x.0),
            },
            Op::Drop { h: i } => Op::Drop { h: h(i) },
            Op::Claim { h: i } => Op::Claim { h: h(i) },
            Op::Reclaim => Op::Reclaim,
            Op::AddRegion => Op::AddRegion,
        }
    }

    fn apply(&mut self, op: &Op) {
        let canon = self.canonical(op);
        CANON.with(|c| c.borrow_mut().push(canon));
        match *op {
            Op::Alloc { path, size } => {
                let bytes = size.bytes();
                let p = self.alloc(path, bytes);
                let line = format!(
                    "alloc({}, {bytes}) -> {}",
                    self.path_name(path),
                    p.map_or("None".into(), |p| self.name(p))
                );
                self.note(line.clone());
                if p.is_none() {
                    self.check_oom(path, bytes, &line);
                }
            }
            Op::AllocMany { path, size, n } => {
                let bytes = size.bytes();
                let mut got = 0;
                let mut last = None;
                while got < n {
                    match self.alloc(path, bytes) {
                        Some(p) => last = Some(p),
                        None => break,
                    }
                    got += 1;
                }
                let line = format!(
                    "alloc({}, {bytes}) x{got} (last {}){}",
                    self.path_name(path),
                    last.map_or("-".into(), |p| self.name(p)),
                    if got < n { ", then None" } else { "" }
                );
                self.note(line.clone());
                if got < n {
                    self.check_oom(path, bytes, &line);
                }
            }
            Op::Free { path, pick } => {
                if !self.order.is_empty() {
                    let a = self.order[pick as usize % self.order.len()];
                    self.free_at(path, a, "live", false);
                }
            }
            Op::FreeMany { path, stride } => {
                let all: Vec<usize> = self
                    .order
                    .iter()
                    .copied()
                    .step_by(stride as usize)
                    .collect();
                for a in all {
                    self.free_at(path, a, "live", false);
                }
            }
            Op::FreeStale { path, pick } => {
                if !self.freed.is_empty() {
                    let (a, _) = self.freed[pick as usize % self.freed.len()];
                    self.free_at(path, a, "freed before", true);
                }
            }
            Op::FreeInterior {
                path,
                pick,
                granule,
            } => {
                if !self.order.is_empty() {
                    let b = self.order[pick as usize % self.order.len()];
                    let size = self.live[&b].size;
                    let a = if size == 8 {
                        b + 4
                    } else {
                        b + 8 * (1 + granule as usize % (size / 8 - 1))
                    };
                    self.free_at(path, a, "interior", true);
                }
            }
            Op::SweepInterior { path, pick } => {
                if !self.order.is_empty() {
                    let b = self.order[pick as usize % self.order.len()];
                    self.sweep(path, b);
                }
            }
            Op::FreeSlot { path, pick, index } => {
                if let Some(p) = self.pick_small(pick, |_| true) {
                    let size = self.live[&p].size;
                    let c = size.trailing_zeros() as usize - 3;
                    let a = (p & !(SLAB - 1)) + (index as usize % capacity(c)) * size;
                    self.free_at(path, a, "slab object", true);
                }
            }
            Op::FreeTail {
                path,
                pick,
                granule,
            } => {
                if let Some(p) = self.pick_small(pick, |size| slab_tail(size) > 0) {
                    let size = self.live[&p].size;
                    let t = slab_tail(size);
                    let a = (p & !(SLAB - 1)) + SLAB - t + 8 * (granule as usize % (t / 8));
                    self.free_at(path, a, "slab bitmap", true);
                }
            }
            Op::FreeNear { path, pick, delta } => {
                let n = self.order.len() + self.freed.len();
                if n > 0 {
                    let i = pick as usize % n;
                    let (b, size) = match self.order.get(i) {
                        Some(&b) => (b, self.live[&b].size),
                        None => self.freed[i - self.order.len()],
                    };
                    let unit = size.min(PAGE) as isize;
                    let a = b.wrapping_add_signed(delta as isize * unit);
                    self.free_at(path, a, "near a block", true);
                }
            }
            Op::FreeNull { path } => {
                self.free_at(path, 0, "null", true);
            }
            Op::FreeForeign { path, which } => {
                let on_stack = 0u64;
                let boxed = Box::new(0u64);
                let (s, e) = self.regions[0];
                let a = match which % 6 {
                    0 => &on_stack as *const u64 as usize,
                    1 => s - 8,
                    2 => e.next_multiple_of(8),
                    3 => usize::MAX - 7,
                    4 => 8,
                    _ => &*boxed as *const u64 as usize,
                };
                self.free_at(path, a, "foreign", true);
            }
            Op::FreeMeta {
                path,
                region,
                granule,
            } => {
                let r = region as usize % self.regions.len();
                let limit = if r == 0 { 1024 } else { 64 };
                let a = self.regions[r].0 + 8 * (granule as usize % (limit / 8));
                self.free_at(path, a, "metadata", true);
            }
            Op::Forge { pick } => {
                if let Some(p) = self.pick_small(pick, |_| true) {
                    let mut blk = self.live[&p];
                    // SAFETY: a live object of ours.
                    unsafe {
                        if blk.size == 8 {
                            ((p + 4) as *mut u32).write(old_mark_of(p) as u32);
                        } else {
                            ((p + 8) as *mut u64).write(old_mark_of(p));
                        }
                        ((p + 4) as *mut u32).write(FREE_TAG);
                        blk.head[0] = (p as *const u64).read();
                        if blk.size >= 16 {
                            blk.head[1] = ((p + 8) as *const u64).read();
                        }
                    }
                    self.live.insert(p, blk);
                    count("forged free tags");
                    let line = format!("forge the free tag into live {}", self.name(p));
                    self.note(line);
                }
            }
            Op::Drop { h } => {
                let i = h as usize % self.setup.cpus;
                if let Some(handle) = self.handles.0[i].take() {
                    drop(handle);
                    count("handle drops");
                    self.note(format!("drop h{i}"));
                }
            }
            Op::Claim { h } => {
                let i = h as usize % self.setup.cpus;
                let got = self.heap.handle_for(i);
                match (self.handles.0[i].is_some(), got) {
                    (true, Some(_)) => {
                        self.fail(format!("handle_for({i}) succeeded while h{i} is claimed"))
                    }
                    (true, None) => {}
                    (false, None) => {
                        self.fail(format!("handle_for({i}) failed with the slot free"))
                    }
                    (false, Some(handle)) => {
                        if handle.cpu() != i {
                            self.fail(format!("handle_for({i}) returned CPU {}", handle.cpu()));
                        }
                        self.handles.0[i] = Some(handle);
                        count("handle re-claims");
                        self.note(format!("claim h{i}"));
                    }
                }
            }
            Op::Reclaim => {
                self.heap.reclaim();
                self.note("reclaim".into());
                if self.handles.0.iter().all(Option::is_none) {
                    self.accounting("reclaim");
                }
            }
            Op::AddRegion => {
                if let Some((s, e)) = self.spare.pop() {
                    let before = self.heap.stats().free_bytes;
                    // SAFETY: a range of our mapping no region overlaps.
                    if let Err(err) = unsafe { self.heap.add_region(s as *mut u8, e - s) } {
                        self.fail(format!("add_region of {} B: {err:?}", e - s));
                    }
                    self.regions.push((s, e));
                    count("regions added");
                    self.capacity_bytes += self.heap.stats().free_bytes - before;
                    self.note(format!("add region r{}", self.regions.len() - 1));
                }
            }
        }
    }

    /// Frees every 8-byte granule of live block `b` but its start (a stride
    /// of them in blocks above 32 KiB; every byte 1..8 of an 8 B object):
    /// all `Interior`, nothing changes.
    fn sweep(&mut self, path: Path, b: usize) {
        let size = self.live[&b].size;
        let offsets: Vec<usize> = if size == 8 {
            (1..8).collect()
        } else {
            let stride = (size / 4096).max(8);
            (8..size).step_by(stride).chain([size - 8]).collect()
        };
        let before = self.heap.stats();
        let n = self.log.len();
        for &off in &offsets {
            self.free_at(path, b + off, "interior sweep", false);
        }
        // One log line for the sweep instead of thousands.
        self.log.truncate(n);
        let line = format!(
            "free({}, {} + each of {} offsets) -> all refused as the model expects",
            self.path_name(path),
            self.name(b),
            offsets.len()
        );
        self.note(line);
        count("interior sweeps");
        let after = self.heap.stats();
        if (before.free_bytes, before.live_blocks, before.free_blocks)
            != (after.free_bytes, after.live_blocks, after.free_blocks)
        {
            self.fail(format!(
                "the interior sweep of {} changed stats()",
                self.name(b)
            ));
        }
    }

    /// End of a sequence: every handle released, every live block freed
    /// on the shared path, a reclaim, and the heap must be whole again.
    fn finish(&mut self) {
        for i in 0..self.setup.cpus {
            self.handles.0[i] = None;
        }
        self.note("drop every handle".into());
        self.quiet_checks();
        while let Some(&a) = self.order.first() {
            self.free_at(Path::Shared, a, "live, at the end", false);
        }
        self.heap.reclaim();
        self.note("reclaim".into());
        self.quiet_checks();
        self.accounting("end");
    }
}
