//! The harness: threads started outside the timed part, per-thread contexts,
//! optional per-operation latency probes, and the result of one run.
//!
//! Timing: every thread builds its [`ThreadAlloc`] view (a magbuddy handle
//! claim, say), waits at a barrier, reads the clock, runs its fixed work and
//! reads the clock again. A run's time is the latest end minus the earliest
//! start, so thread creation and handle claims are outside it, while a thread
//! that was descheduled during its work is inside it.
//!
//! Latency is measured in separate runs with [`Latency`] probes, which read
//! the clock around every allocation and free and record the difference in a
//! per-thread histogram; throughput runs use [`NoProbe`], which compiles to
//! nothing (the probe is a type parameter, not a runtime flag).

use std::alloc::Layout;
use std::collections::BTreeMap;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use hdrhistogram::Histogram;
use magbuddy::sync::AtomicCounts;
use rand::rngs::SmallRng;
use rand::SeedableRng;

use crate::alloc::{BenchAlloc, ThreadAlloc};

/// Wraps each allocator call of a workload.
pub trait Probe: Send + Sized {
    /// A fresh probe for one thread.
    fn new() -> Self;
    /// Runs `f`, measuring it if this probe measures.
    fn time<R>(&mut self, f: impl FnOnce() -> R) -> R;
    /// The latencies recorded, if any.
    fn into_histogram(self) -> Option<Histogram<u64>>;
}

/// Measures nothing.
pub struct NoProbe;

impl Probe for NoProbe {
    fn new() -> Self {
        NoProbe
    }
    #[inline(always)]
    fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        f()
    }
    fn into_histogram(self) -> Option<Histogram<u64>> {
        None
    }
}

/// Records every call's latency in nanoseconds.
pub struct Latency(Histogram<u64>);

impl Probe for Latency {
    fn new() -> Self {
        // 3 significant digits from 1 ns to 100 s.
        Latency(Histogram::new_with_bounds(1, 100_000_000_000, 3).expect("histogram bounds"))
    }
    #[inline(always)]
    fn time<R>(&mut self, f: impl FnOnce() -> R) -> R {
        let t0 = Instant::now();
        let r = f();
        let ns = t0.elapsed().as_nanos() as u64;
        self.0.saturating_record(ns.max(1));
        r
    }
    fn into_histogram(self) -> Option<Histogram<u64>> {
        Some(self.0)
    }
}

/// Parameters of one run.
#[derive(Clone, Copy, Debug)]
pub struct RunConfig {
    /// Threads doing the work.
    pub threads: usize,
    /// Alloc+free pairs each thread performs (the fixed work).
    pub pairs: usize,
    /// Seed of every thread's RNG (mixed with the thread index).
    pub seed: u64,
    /// Stops the work early once this much time has passed (a pure spinlock
    /// with 8 threads on 2 cores can take minutes); `None` = never.
    pub time_limit: Option<Duration>,
    /// Leave the final live set allocated (for the fragmentation report).
    pub keep: bool,
}

/// What one thread did.
pub struct ThreadResult {
    start: Instant,
    end: Instant,
    pairs: u64,
    failed: u64,
    truncated: bool,
    hist: Option<Histogram<u64>>,
    leftover: Vec<(usize, Layout)>,
    atomics: Option<AtomicCounts>,
    sites: Sites,
}

/// Atomic accesses per call site in `src/` of magbuddy (file, line).
pub type Sites = BTreeMap<(&'static str, u32), AtomicCounts>;

/// The outcome of one run.
#[derive(Default)]
pub struct RunResult {
    /// Latest end minus earliest start.
    pub elapsed: Duration,
    /// Successful allocations that were (or, with `keep`, could be) freed.
    pub pairs: u64,
    /// Allocations that returned null.
    pub failed: u64,
    /// Whether the time limit cut the work short.
    pub truncated: bool,
    /// Per-operation latency (alloc or free), with a [`Latency`] probe.
    pub hist: Option<Histogram<u64>>,
    /// Objects left allocated (with `keep`): address and layout.
    pub leftover: Vec<(usize, Layout)>,
    /// Atomic accesses through magbuddy's facade (magbuddy and SpinHeap)
    /// by all threads, from building each thread's view to dropping it (a
    /// handle's claim and release included); only in a build with `--cfg
    /// magbuddy_count_atomics` (see `report --atomics`).
    pub atomics: Option<AtomicCounts>,
    /// The same per call site (`magbuddy::sync::for_each_site`).
    pub sites: Sites,
}

impl RunResult {
    /// Nanoseconds per pair over the whole machine: elapsed time divided by
    /// all threads' pairs (the inverse of throughput).
    pub fn ns_per_pair(&self) -> f64 {
        self.elapsed.as_nanos() as f64 / self.pairs.max(1) as f64
    }

    /// Million operations (allocations plus frees) per second.
    pub fn mops(&self) -> f64 {
        2.0 * self.pairs as f64 / self.elapsed.as_secs_f64().max(1e-9) / 1e6
    }

    /// Folds in another thread's (or phase's) results.
    pub fn merge(&mut self, t: ThreadResult, first: &mut Option<(Instant, Instant)>) {
        let (s, e) = first.get_or_insert((t.start, t.end));
        *s = (*s).min(t.start);
        *e = (*e).max(t.end);
        self.elapsed = *e - *s;
        self.pairs += t.pairs;
        self.failed += t.failed;
        self.truncated |= t.truncated;
        match (&mut self.hist, t.hist) {
            (Some(h), Some(o)) => h.add(o).expect("same histogram bounds"),
            (h @ None, o) => *h = o,
            _ => {}
        }
        self.leftover.extend(t.leftover);
        self.atomics = match (self.atomics, t.atomics) {
            (Some(a), Some(b)) => Some(a.plus(b)),
            (a, b) => a.or(b),
        };
        for (k, v) in t.sites {
            let e = self.sites.entry(k).or_default();
            *e = e.plus(v);
        }
    }
}

/// One thread's handle on its allocator, RNG and bookkeeping.
pub struct Ctx<'a, P: Probe> {
    a: Box<dyn ThreadAlloc + 'a>,
    /// The thread's deterministic RNG.
    pub rng: SmallRng,
    probe: P,
    pairs: u64,
    failed: u64,
    deadline: Option<Instant>,
    truncated: bool,
    keep: bool,
    leftover: Vec<(usize, Layout)>,
}

impl<'a, P: Probe> Ctx<'a, P> {
    /// A context for thread `index` (the RNG stream is `seed` mixed with
    /// `stream`, so phases of a workload can differ).
    pub fn new(alloc: &'a dyn BenchAlloc, index: usize, cfg: &RunConfig, stream: u64) -> Self {
        let seed = cfg.seed ^ (stream << 32) ^ (index as u64).wrapping_mul(0x9e37_79b9_7f4a_7c15);
        Self {
            a: alloc.thread(index),
            rng: SmallRng::seed_from_u64(seed),
            probe: P::new(),
            pairs: 0,
            failed: 0,
            deadline: None,
            truncated: false,
            keep: cfg.keep,
            leftover: Vec::new(),
        }
    }

    /// Allocates and writes the first byte (as a program would); null (and
    /// counted as failed) when the allocator refuses.
    #[inline]
    pub fn alloc(&mut self, layout: Layout) -> *mut u8 {
        let a = &mut self.a;
        let p = self.probe.time(|| a.alloc(layout));
        if p.is_null() {
            self.failed += 1;
        } else {
            // SAFETY: a live allocation of at least one byte.
            unsafe { p.write_volatile(1) };
        }
        p
    }

    /// Frees `p` (null: a failed allocation, nothing to do) and counts a pair.
    ///
    /// # Safety
    /// * `p` is null or a live allocation of `layout` from this run's allocator.
    #[inline]
    pub unsafe fn free(&mut self, p: *mut u8, layout: Layout) {
        if p.is_null() {
            return;
        }
        let a = &mut self.a;
        // SAFETY: the caller's promise, passed on.
        self.probe.time(|| unsafe { a.dealloc(p, layout) });
        self.pairs += 1;
    }

    /// Frees a live set at the end of a workload, or keeps it with `keep`.
    ///
    /// # Safety
    /// * As [`Self::free`] for every element.
    pub unsafe fn finish(&mut self, live: impl IntoIterator<Item = (*mut u8, Layout)>) {
        for (p, l) in live {
            if self.keep {
                if !p.is_null() {
                    self.pairs += 1;
                    self.leftover.push((p as usize, l));
                }
            } else {
                // SAFETY: the caller's promise, passed on.
                unsafe { self.free(p, l) };
            }
        }
    }

    /// True once the time limit has passed; checks the clock every 256 calls.
    #[inline]
    pub fn stopped(&mut self, i: usize) -> bool {
        if !self.truncated && i % 256 == 255 {
            self.truncated = self.deadline.is_some_and(|d| Instant::now() >= d);
        }
        self.truncated
    }

    fn into_result(self, start: Instant, end: Instant) -> ThreadResult {
        ThreadResult {
            start,
            end,
            pairs: self.pairs,
            failed: self.failed,
            truncated: self.truncated,
            hist: self.probe.into_histogram(),
            leftover: self.leftover,
            atomics: None,
            sites: Sites::new(),
        }
    }
}

/// Runs `body(index, ctx)` on `threads` threads released together by a
/// barrier, each timing its own work; see the module docs. The threads come
/// from a pool that lives as long as the process ([`pool`]): allocators with
/// thread caches (mimalloc, glibc) then run warm, as in a long-lived server,
/// instead of paying each run for a fresh thread's heap. With `fresh`, new
/// threads are spawned instead (the churn workload wants exactly that cost).
pub fn timed_threads<P, F>(
    alloc: &dyn BenchAlloc,
    threads: usize,
    cfg: &RunConfig,
    stream: u64,
    fresh: bool,
    body: F,
) -> Vec<ThreadResult>
where
    P: Probe,
    F: Fn(usize, &mut Ctx<'_, P>) + Sync,
{
    let barrier = Barrier::new(threads);
    let job = |i: usize| {
        // Per thread (the counters are thread-locals), around the whole
        // life of the thread's view, so its claim and release are in.
        let before = magbuddy::sync::counts();
        magbuddy::sync::reset_sites();
        let mut ctx = Ctx::<P>::new(alloc, i, cfg, stream);
        barrier.wait();
        let start = Instant::now();
        ctx.deadline = cfg.time_limit.map(|l| start + l);
        body(i, &mut ctx);
        let end = Instant::now();
        // Drops the view (`ctx.a`): a magbuddy handle releases its slot.
        let mut r = ctx.into_result(start, end);
        r.atomics = before
            .zip(magbuddy::sync::counts())
            .map(|(b, a)| a.since(b));
        magbuddy::sync::for_each_site(|loc, n| {
            let e = r.sites.entry((loc.file(), loc.line())).or_default();
            *e = e.plus(n);
        });
        r
    };
    if fresh || threads > pool::SIZE {
        std::thread::scope(|s| {
            let handles: Vec<_> = (0..threads).map(|i| s.spawn(move || job(i))).collect();
            handles
                .into_iter()
                .map(|h| h.join().expect("benchmark thread panicked"))
                .collect()
        })
    } else {
        pool::run(threads, &job)
    }
}

/// A fixed set of worker threads that run borrowed jobs and are joined (by
/// waiting for every result) before [`run`] returns, like a scoped thread.
pub mod pool {
    use std::any::Any;
    use std::sync::mpsc::{channel, Sender};
    use std::sync::{Mutex, OnceLock};

    use super::ThreadResult;

    /// Workers in the pool: the most threads any run uses.
    pub const SIZE: usize = crate::MAX_THREADS;

    type Job = &'static (dyn Fn(usize) -> ThreadResult + Sync);
    type Reply = Sender<(usize, Result<ThreadResult, Box<dyn Any + Send>>)>;
    /// A worker's inbox: thread index, job, where to reply.
    type Inbox = Mutex<Sender<(usize, Job, Reply)>>;

    fn workers() -> &'static [Inbox] {
        static WORKERS: OnceLock<Vec<Inbox>> = OnceLock::new();
        WORKERS.get_or_init(|| {
            (0..SIZE)
                .map(|_| {
                    let (tx, rx) = channel::<(usize, Job, Reply)>();
                    std::thread::spawn(move || {
                        for (i, job, reply) in rx {
                            let r =
                                std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| job(i)));
                            let _ = reply.send((i, r));
                        }
                    });
                    Mutex::new(tx)
                })
                .collect()
        })
    }

    /// Runs `job(0..threads)` on the first `threads` workers and returns the
    /// results in index order; re-raises a job's panic after all finished.
    pub fn run(threads: usize, job: &(dyn Fn(usize) -> ThreadResult + Sync)) -> Vec<ThreadResult> {
        assert!(threads <= SIZE);
        // SAFETY: the reference is used by workers only until they send their
        // reply, and we wait below for all `threads` replies before returning
        // (a panicking job still replies, through `catch_unwind`), so no
        // worker uses it after this borrow ends.
        let job: Job =
            unsafe { std::mem::transmute::<&(dyn Fn(usize) -> ThreadResult + Sync), Job>(job) };
        let (reply, results) = channel();
        for (i, w) in workers()[..threads].iter().enumerate() {
            w.lock()
                .expect("pool sender")
                .send((i, job, reply.clone()))
                .expect("pool worker alive");
        }
        drop(reply);
        let mut out: Vec<Option<ThreadResult>> = (0..threads).map(|_| None).collect();
        let mut panic = None;
        for (i, r) in results.iter().take(threads) {
            match r {
                Ok(t) => out[i] = Some(t),
                Err(p) => panic = Some(p),
            }
        }
        if let Some(p) = panic {
            std::panic::resume_unwind(p);
        }
        out.into_iter()
            .map(|t| t.expect("every worker replied"))
            .collect()
    }
}

/// Folds thread results into one [`RunResult`].
pub fn collect(results: impl IntoIterator<Item = ThreadResult>) -> RunResult {
    let mut r = RunResult::default();
    let mut span = None;
    for t in results {
        r.merge(t, &mut span);
    }
    r
}
