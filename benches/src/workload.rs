//! The workloads, shared by the criterion benchmarks, the report, and (later)
//! the preload evaluation. Each thread does a fixed number of alloc+free
//! pairs ([`RunConfig::pairs`]) drawn from its own seeded RNG, so two runs with
//! the same seed ask every allocator for the same sequence of requests.
//!
//! | name | pattern | from |
//! |---|---|---|
//! | `small` | live set of 1,000 objects of 8–128 B; replace a random one | seed (small) |
//! | `page` | live set of 1,000 pages; replace a random one | seed (page) |
//! | `mixed` | live set of 1,000: 85 % small, 14.5 % 4–16 KiB, 0.5 % 1–2 MiB | seed (mixed) |
//! | `remote` | producers allocate 64 B in batches of 256, consumers free them | xmalloc-test |
//! | `larson` | live set of 1,000 of 8–1,000 B; every 1/8 of the work the set moves to the next thread | larson |
//! | `constocc` | 31 blocks of 1–16 pages (1×16, 2×8, 4×4, 8×2, 16×1); free and reallocate a random one | NBBS constant occupancy |
//! | `threadtest` | bursts of 2,000/threads pages, allocated then all freed | NBBS / Hoard thread-test |
//! | `churn` | 8 phases of fresh threads; each frees its predecessor's live set of 8–128 B objects | thread churn (mstress-like) |
//!
//! With one thread, `remote` runs producer and consumer in the same thread
//! (no remote frees); with `t` threads it runs `t/2` producer/consumer pairs.

use std::alloc::Layout;
use std::sync::mpsc::{channel, sync_channel, Receiver, Sender, SyncSender};
use std::sync::Mutex;

use rand::Rng;

use crate::alloc::{BenchAlloc, Kind};
use crate::region::PAGE;
use crate::run::{collect, timed_threads, Ctx, Probe, RunConfig, RunResult};

/// Objects in each thread's live set (small, page, mixed, larson).
pub const LIVE: usize = 1_000;
/// Objects per producer batch in `remote`.
const BATCH: usize = 256;
/// Epochs of `larson` and phases of `churn`.
const ROUNDS: usize = 8;

/// A workload of the suite.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Workload {
    /// Random 8–128 B objects, live set of [`LIVE`].
    Small,
    /// 4 KiB pages, live set of [`LIVE`].
    Page,
    /// Mostly small, frequent pages, rare MiB blocks.
    Mixed,
    /// Producer/consumer remote frees (xmalloc-test).
    Remote,
    /// larson's server pattern.
    Larson,
    /// NBBS constant occupancy.
    ConstOcc,
    /// NBBS / Hoard thread-test.
    ThreadTest,
    /// Threads created and ended in phases.
    Churn,
}

impl Workload {
    /// Every workload, in table order.
    pub const ALL: [Workload; 8] = [
        Workload::Small,
        Workload::Page,
        Workload::Mixed,
        Workload::Remote,
        Workload::Larson,
        Workload::ConstOcc,
        Workload::ThreadTest,
        Workload::Churn,
    ];

    /// Name in tables, CSV and benchmark ids.
    pub fn name(self) -> &'static str {
        match self {
            Workload::Small => "small",
            Workload::Page => "page",
            Workload::Mixed => "mixed",
            Workload::Remote => "remote",
            Workload::Larson => "larson",
            Workload::ConstOcc => "constocc",
            Workload::ThreadTest => "threadtest",
            Workload::Churn => "churn",
        }
    }

    /// The workload called `name`.
    pub fn parse(name: &str) -> Option<Workload> {
        Self::ALL.into_iter().find(|w| w.name() == name)
    }

    /// Whether every request is exactly one page (what page-only allocators
    /// such as the xv6 lists can serve).
    pub fn single_pages(self) -> bool {
        matches!(self, Workload::Page | Workload::ThreadTest)
    }

    /// Whether `alloc` can run this workload.
    pub fn fits(self, alloc: &dyn BenchAlloc) -> bool {
        self.single_pages() || !alloc.single_pages_only()
    }

    /// Whether allocators of `kind` can run this workload (before building one).
    pub fn fits_kind(self, kind: Kind) -> bool {
        self.single_pages() || !kind.single_pages_only()
    }

    /// Pairs a run of `cfg` performs if nothing fails or stops early.
    pub fn planned_pairs(self, cfg: &RunConfig) -> usize {
        let t = cfg.threads;
        match self {
            Workload::Remote => (t / 2).max(1) * cfg.pairs,
            Workload::Larson | Workload::Churn => t * (cfg.pairs / ROUNDS) * ROUNDS,
            _ => t * cfg.pairs,
        }
    }

    /// Runs the workload once with probe `P` (see [`crate::run`]).
    pub fn run<P: Probe>(self, alloc: &dyn BenchAlloc, cfg: &RunConfig) -> RunResult {
        let t = cfg.threads;
        let stream = self as u64;
        // Workloads whose threads share nothing: same harness, own body.
        let alone = |body: &(dyn Fn(&mut Ctx<'_, P>) + Sync)| {
            collect(timed_threads::<P, _>(
                alloc,
                t,
                cfg,
                stream,
                false,
                |_, ctx| body(ctx),
            ))
        };
        match self {
            Workload::Small | Workload::Page | Workload::Mixed => alone(&|ctx| {
                let mut live = Vec::new();
                // SAFETY: `replace` hands back only what it allocated.
                unsafe {
                    replace(ctx, &mut live, cfg.pairs, |r| self.size(r));
                    ctx.finish(live);
                }
            }),
            // SAFETY: as above.
            Workload::ConstOcc => alone(&|ctx| unsafe { const_occupancy(ctx, cfg.pairs) }),
            // SAFETY: as above.
            Workload::ThreadTest => {
                alone(&|ctx| unsafe { thread_test(ctx, cfg.pairs, (2_000 / t).max(1)) })
            }
            Workload::Remote => remote::<P>(alloc, cfg),
            Workload::Larson => larson::<P>(alloc, cfg),
            Workload::Churn => churn::<P>(alloc, cfg),
        }
    }

    /// Draws a request of this workload's size distribution.
    fn size(self, rng: &mut impl Rng) -> Layout {
        let small = |rng: &mut dyn rand::RngCore, max| {
            Layout::from_size_align(rng.gen_range(8..=max), 8).expect("small layout")
        };
        let pages = |n: usize| Layout::from_size_align(n * PAGE, PAGE).expect("page layout");
        match self {
            Workload::Page | Workload::ThreadTest => pages(1),
            Workload::Mixed => match rng.gen_range(0..1000) {
                0..850 => small(rng, 128),
                850..995 => pages(rng.gen_range(1..=4)),
                _ => pages(rng.gen_range(1..=2) * 256),
            },
            Workload::Larson => small(rng, 1000),
            _ => small(rng, 128),
        }
    }
}

/// The live-set pattern: fill `live` to [`LIVE`] objects (if not yet full),
/// then replace a random one until `pairs` allocations were made in all.
///
/// # Safety
/// * `live` holds only live allocations of `ctx`'s allocator.
unsafe fn replace<P: Probe>(
    ctx: &mut Ctx<'_, P>,
    live: &mut Vec<(*mut u8, Layout)>,
    pairs: usize,
    mut size: impl FnMut(&mut rand::rngs::SmallRng) -> Layout,
) {
    let mut made = 0;
    while live.len() < LIVE && made < pairs {
        let l = size(&mut ctx.rng);
        live.push((ctx.alloc(l), l));
        made += 1;
    }
    for i in made..pairs {
        if ctx.stopped(i) {
            break;
        }
        let j = ctx.rng.gen_range(0..live.len());
        let l = size(&mut ctx.rng);
        let (old, ol) = live[j];
        // SAFETY: `old` is live (the caller's promise, kept by this loop).
        unsafe { ctx.free(old, ol) };
        live[j] = (ctx.alloc(l), l);
    }
}

/// NBBS constant occupancy with 4 KiB as the smallest block.
///
/// # Safety
/// * None beyond `ctx` being this run's context (kept for symmetry).
unsafe fn const_occupancy<P: Probe>(ctx: &mut Ctx<'_, P>, pairs: usize) {
    let layouts: Vec<Layout> = (0..5)
        .flat_map(|level| {
            let pages = 16 >> level;
            std::iter::repeat_n(
                Layout::from_size_align(pages * PAGE, PAGE).expect("layout"),
                1 << level,
            )
        })
        .collect();
    let mut live: Vec<_> = layouts.iter().map(|&l| (ctx.alloc(l), l)).collect();
    for i in live.len()..pairs {
        if ctx.stopped(i) {
            break;
        }
        let j = ctx.rng.gen_range(0..live.len());
        let (p, l) = live[j];
        // SAFETY: `p` is live: allocated above or in an earlier round.
        unsafe { ctx.free(p, l) };
        live[j] = (ctx.alloc(l), l);
    }
    // SAFETY: every element is live.
    unsafe { ctx.finish(live) };
}

/// Bursts of `burst` pages, each burst freed entirely before the next.
///
/// # Safety
/// * As [`const_occupancy`].
unsafe fn thread_test<P: Probe>(ctx: &mut Ctx<'_, P>, pairs: usize, burst: usize) {
    let l = Workload::ThreadTest.size(&mut ctx.rng);
    let mut live = Vec::with_capacity(burst);
    let mut done = 0;
    while done < pairs && !ctx.stopped(255) {
        let n = burst.min(pairs - done);
        live.extend((0..n).map(|_| (ctx.alloc(l), l)));
        done += n;
        if done < pairs {
            for (p, l) in live.drain(..) {
                // SAFETY: allocated in this burst.
                unsafe { ctx.free(p, l) };
            }
        }
    }
    // SAFETY: the last burst is live.
    unsafe { ctx.finish(live) };
}

/// A batch of objects in flight from producer to consumer (addresses: raw
/// pointers are not `Send`).
type Batch = Vec<usize>;

/// xmalloc-test: producers allocate 64 B objects in batches, consumers free
/// them; empty batch vectors go back so no other allocator is involved.
fn remote<P: Probe>(alloc: &dyn BenchAlloc, cfg: &RunConfig) -> RunResult {
    let l = Layout::from_size_align(64, 8).expect("layout");
    let pairs = (cfg.threads / 2).max(1);
    let both = cfg.threads == 1;
    type Link = (SyncSender<Batch>, Receiver<Batch>);
    let full: Vec<Link> = (0..pairs).map(|_| sync_channel(4)).collect();
    let empty: Vec<Link> = (0..pairs).map(|_| sync_channel(8)).collect();
    for (tx, _) in &empty {
        for _ in 0..4 {
            tx.send(Vec::with_capacity(BATCH)).expect("fresh channel");
        }
    }
    // Receivers are not `Sync`; each is used by one thread only.
    let full_tx: Vec<Mutex<Option<SyncSender<Batch>>>> = full
        .iter()
        .map(|(tx, _)| Mutex::new(Some(tx.clone())))
        .collect();
    let (full_rx, empty_tx, empty_rx): (Vec<_>, Vec<_>, Vec<_>) = {
        let (mut a, mut b, mut c) = (Vec::new(), Vec::new(), Vec::new());
        for ((ftx, frx), (etx, erx)) in full.into_iter().zip(empty) {
            drop(ftx);
            a.push(Mutex::new(frx));
            b.push(etx);
            c.push(Mutex::new(erx));
        }
        (a, b, c)
    };
    let results = timed_threads::<P, _>(
        alloc,
        cfg.threads,
        cfg,
        Workload::Remote as u64,
        false,
        |i, ctx| {
            if both || i < pairs {
                let k = i % pairs;
                let tx = full_tx[k]
                    .lock()
                    .expect("sender")
                    .take()
                    .expect("one producer");
                let back = empty_rx[k].lock().expect("receiver");
                let mut made = 0;
                while made < cfg.pairs && !ctx.stopped(255) {
                    let mut batch = back.recv().expect("consumer alive");
                    let n = BATCH.min(cfg.pairs - made);
                    batch.extend((0..n).map(|_| ctx.alloc(l) as usize));
                    made += n;
                    if both {
                        consume(ctx, &mut batch, l);
                        empty_tx[k].send(batch).expect("own channel");
                    } else {
                        tx.send(batch).expect("consumer alive");
                    }
                }
            } else if i < 2 * pairs {
                let k = i - pairs;
                let rx = full_rx[k].lock().expect("receiver");
                for mut batch in rx.iter() {
                    consume(ctx, &mut batch, l);
                    // The producer may have finished and dropped its receiver.
                    let _ = empty_tx[k].send(batch);
                }
            }
        },
    );
    collect(results)
}

/// Frees every object of a batch, leaving it empty.
fn consume<P: Probe>(ctx: &mut Ctx<'_, P>, batch: &mut Batch, l: Layout) {
    for p in batch.drain(..) {
        // SAFETY: the producer allocated `p` with `l` and sent it only here.
        unsafe { ctx.free(p as *mut u8, l) };
    }
}

/// A live set in flight between threads.
type LiveSet = Vec<(usize, Layout)>;

/// larson: each thread replaces random objects of its live set; every
/// `1/ROUNDS` of its work it passes the set to the next thread and continues
/// with the one from the previous thread, so most objects are freed by a
/// thread other than the one that allocated them.
fn larson<P: Probe>(alloc: &dyn BenchAlloc, cfg: &RunConfig) -> RunResult {
    let t = cfg.threads;
    let (txs, rxs): (Vec<Sender<LiveSet>>, Vec<_>) = (0..t)
        .map(|_| {
            let (tx, rx) = channel();
            (tx, Mutex::new(rx))
        })
        .unzip();
    let results = timed_threads::<P, _>(alloc, t, cfg, Workload::Larson as u64, false, |i, ctx| {
        let rx = rxs[i].lock().expect("receiver");
        let mut live: Vec<(*mut u8, Layout)> = Vec::with_capacity(LIVE);
        let per_round = cfg.pairs / ROUNDS;
        for _ in 0..ROUNDS {
            // SAFETY: `live` holds live objects: ours, or a predecessor's.
            unsafe { replace(ctx, &mut live, per_round, |r| Workload::Larson.size(r)) };
            let out = live.drain(..).map(|(p, l)| (p as usize, l)).collect();
            txs[(i + 1) % t].send(out).expect("next thread alive");
            live.extend(
                rx.recv()
                    .expect("previous thread")
                    .into_iter()
                    .map(|(p, l)| (p as *mut u8, l)),
            );
        }
        // SAFETY: as above.
        unsafe { ctx.finish(live) };
    });
    collect(results)
}

/// Thread churn: `ROUNDS` phases of fresh threads; thread `i` of a phase
/// frees the live set left by thread `i + 1` of the previous phase (a remote
/// free onto a thread that no longer exists) and leaves its own. Time
/// includes the creation of every phase's threads but the first.
fn churn<P: Probe>(alloc: &dyn BenchAlloc, cfg: &RunConfig) -> RunResult {
    let t = cfg.threads;
    // Phase p takes from carry[p % 2] and leaves in carry[(p + 1) % 2], so a
    // thread never takes a set left in its own phase.
    let carry: [Vec<Mutex<LiveSet>>; 2] =
        std::array::from_fn(|_| (0..t).map(|_| Mutex::new(Vec::new())).collect());
    let per_phase = cfg.pairs / ROUNDS;
    let mut all = Vec::new();
    for phase in 0..ROUNDS {
        let last = phase + 1 == ROUNDS;
        let stream = ((Workload::Churn as u64) << 8) | phase as u64;
        all.extend(timed_threads::<P, _>(
            alloc,
            t,
            cfg,
            stream,
            true,
            |i, ctx| {
                let from = &carry[phase % 2][(i + 1) % t];
                let inherited = std::mem::take(&mut *from.lock().expect("carry"));
                let mut live: Vec<(*mut u8, Layout)> = inherited
                    .into_iter()
                    .map(|(p, l)| (p as *mut u8, l))
                    .collect();
                // SAFETY: `live` holds the predecessor's live objects.
                unsafe { replace(ctx, &mut live, per_phase, |r| Workload::Churn.size(r)) };
                if last {
                    // SAFETY: as above.
                    unsafe { ctx.finish(live) };
                } else {
                    let to = &carry[(phase + 1) % 2][i];
                    *to.lock().expect("carry") =
                        live.into_iter().map(|(p, l)| (p as usize, l)).collect();
                }
            },
        ));
    }
    collect(all)
}
