//! The run, executed by every CPU in lockstep (barriers between steps): for
//! each allocator, a checked phase (modules + remote frees + exhaust round,
//! all under the checkers) and a timed phase (the modules with 1, 2, 4, ..
//! active CPUs, no checkers). CPU 0 builds and tears down the allocators
//! and collects the numbers.

use crate::arch::acpi::MAX_CPUS;
use crate::arch::boot::Range;
use crate::arch::{cpu, percpu, tsc};
use crate::check::{Check, NoCheck, Shadow};
use crate::kalloc::{CpuAlloc, KernelAlloc};
use crate::report::{Row, Table};
use crate::sync::Barrier;
use crate::ticker::{self, Hook};
use crate::workload::{Slot, Worker, LIVE_MAX, MODULES};
use core::sync::atomic::{AtomicPtr, AtomicU64, AtomicUsize, Ordering};

/// Set up by CPU 0 before the APs start; read-only afterwards.
pub struct Config {
    /// CPUs running.
    pub n: usize,
    /// Heap ranges (RAM above the kernel image and the demo's early memory).
    pub ranges: [Range; 16],
    /// Ranges used.
    pub nranges: usize,
    /// The checkers.
    pub shadow: &'static Shadow,
    /// Each CPU's live-block array.
    pub slots: [AtomicPtr<Slot>; MAX_CPUS],
    /// Work multiplier (`scale=` on the command line).
    pub scale: usize,
    /// Timed repetitions per measurement; the best is reported (`reps=`).
    pub reps: usize,
    /// A failure to inject on the last CPU (`inject=`), to test the harness.
    pub inject: Inject,
    /// Whether the APIC timer runs (`timer=off` on the command line stops it,
    /// for measuring its influence; waits then spin instead of halting).
    pub timer: bool,
}

impl Config {
    /// The heap ranges.
    pub fn ranges(&self) -> &[Range] {
        &self.ranges[..self.nranges]
    }
}

/// Failures `make test-harness` injects to prove that `make test` catches them.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Inject {
    /// Run normally.
    None,
    /// `inject=panic`: the last CPU panics.
    Panic,
    /// `inject=hang`: the last CPU stops with interrupts off.
    Hang,
    /// `inject=triple`: the last CPU triple-faults (QEMU exits with 0).
    Triple,
}

impl Inject {
    /// Parses the `inject=` value.
    pub fn parse(s: &str) -> Inject {
        match s {
            "panic" => Inject::Panic,
            "hang" => Inject::Hang,
            "triple" => Inject::Triple,
            _ => Inject::None,
        }
    }

    /// Does it, on CPU `c`.
    pub fn fire(self, c: usize) {
        match self {
            Inject::None => {}
            Inject::Panic => panic!("injected panic on CPU {c}"),
            Inject::Hang => cpu::halt_forever(),
            Inject::Triple => cpu::triple_fault(),
        }
    }
}

static BARRIER: Barrier = Barrier::new();
/// The allocator of the current phase (`&A`), published by CPU 0.
static CURRENT: AtomicPtr<()> = AtomicPtr::new(core::ptr::null_mut());
/// Largest block before the exhaust round, measured by CPU 0.
static LARGEST_BEFORE: AtomicUsize = AtomicUsize::new(0);
/// Per CPU and module: (start TSC, end TSC, ops) of the last timed run.
static TIMED: [[[AtomicU64; 3]; 3]; MAX_CPUS] =
    [const { [const { [const { AtomicU64::new(0) }; 3] }; 3] }; MAX_CPUS];
static REMOTE: AtomicU64 = AtomicU64::new(0);
static EXHAUSTED: AtomicU64 = AtomicU64::new(0);
static EXHAUST_BLOCKS: AtomicU64 = AtomicU64::new(0);

fn sync(cfg: &Config, what: &str) {
    BARRIER.wait(cfg.n, what);
}

/// Active-CPU counts of the timed phase: 1, 2, 4, .. below `n`, then `n`.
pub fn active_counts(n: usize) -> impl Iterator<Item = usize> {
    (0..8)
        .map(|i| 1 << i)
        .take_while(move |&k| k < n)
        .chain(core::iter::once(n))
}

/// A worker for CPU `c` over its own live-block array, `active` CPUs in
/// the mailbox ring.
fn worker<'a, H: CpuAlloc, C: Check>(
    cfg: &Config,
    h: &'a mut H,
    check: &'a C,
    c: usize,
    active: usize,
) -> Worker<'a, H, C> {
    // SAFETY: CPU 0 gave each CPU its own LIVE_MAX-slot array in early
    // memory; only CPU `c` uses array `c`.
    let slots =
        unsafe { core::slice::from_raw_parts_mut(cfg.slots[c].load(Ordering::Relaxed), LIVE_MAX) };
    Worker {
        h,
        check,
        cpu: c,
        active,
        slots,
        counts: Default::default(),
    }
}

/// Runs everything for allocator `A` on CPU `c`; CPU 0 returns the table.
pub fn run<A: KernelAlloc>(cfg: &Config, c: usize, seed: u64) -> Option<Table> {
    // CPU 0 builds the allocator on its stack; it stays there, unmoved, until
    // after the last barrier of this function.
    let owned: Option<A> = (c == 0).then(|| {
        // SAFETY: the ranges are RAM no one else uses; the previous
        // allocator over them was dropped and is never touched again.
        unsafe { A::create(cfg.ranges(), cfg.n) }
            .unwrap_or_else(|e| panic!("{}: init over {:x?} failed: {}", A::NAME, e.range, e.why))
    });
    if let Some(a) = &owned {
        cfg.shadow.reseed(seed);
        CURRENT.store(a as *const A as *mut (), Ordering::Release);
    }
    sync(cfg, "allocator ready");
    // SAFETY: published by CPU 0 above (the barrier orders it) and alive
    // until CPU 0 leaves this function, after the final barrier.
    let a: &A = unsafe { &*(CURRENT.load(Ordering::Acquire) as *const A) };
    let t0 = cpu::rdtsc();
    checked(cfg, a, c, seed);
    let checked_ms = tsc::ticks_to_ns(cpu::rdtsc() - t0) / 1_000_000;
    let mut table = (c == 0).then(|| Table::new(A::NAME, cfg.n));
    timed(cfg, a, c, seed, table.as_mut());
    sync(cfg, "allocator done");
    if let Some(t) = table.as_mut() {
        t.checked_ms = checked_ms;
        t.remote_frees = REMOTE.swap(0, Ordering::Relaxed);
        t.exhausted = EXHAUSTED.swap(0, Ordering::Relaxed);
        t.exhaust_blocks = EXHAUST_BLOCKS.swap(0, Ordering::Relaxed);
        t.largest = LARGEST_BEFORE.load(Ordering::Relaxed);
        CURRENT.store(core::ptr::null_mut(), Ordering::Relaxed);
    }
    drop(owned);
    table
}

/// Largest power-of-two block the shared path gives, freed at once.
fn largest<A: KernelAlloc>(a: &A, total: usize, check: &Shadow) -> usize {
    let mut size = total.next_power_of_two();
    while size >= 4096 {
        if let Some(p) = a.alloc_shared(size) {
            check.on_alloc(p.as_ptr(), size);
            check.on_free(p.as_ptr(), size);
            // SAFETY: just allocated, freed once.
            unsafe { a.free_shared(p.as_ptr()) };
            return size;
        }
        size /= 2;
    }
    0
}

fn checked<A: KernelAlloc>(cfg: &Config, a: &A, c: usize, seed: u64) {
    let shadow = cfg.shadow;
    let t_start = cpu::rdtsc();
    let hook = Hook {
        alloc: a,
        check: shadow,
    };
    // SAFETY: `hook` outlives the `ticker::clear` calls below.
    unsafe { ticker::set(&hook) };
    let mut h = a
        .cpu()
        .unwrap_or_else(|| panic!("{}: no handle for CPU {c}", A::NAME));
    let mut w = worker(cfg, &mut h, shadow, c, cfg.n);
    for (i, m) in MODULES.iter().enumerate() {
        sync(cfg, "checked module start");
        w.churn(m, m.checked_ops * cfg.scale, seed ^ i as u64);
        sync(cfg, "checked module churn");
        w.drain_mailbox();
        w.teardown();
    }
    REMOTE.fetch_add(w.counts.remote_frees, Ordering::Relaxed);
    drop(h);
    ticker::clear();
    sync(cfg, "checked modules done");
    let t_modules = cpu::rdtsc();
    let total: usize = cfg.ranges().iter().map(|r| r.len() as usize).sum();
    if c == 0 {
        LARGEST_BEFORE.store(largest(a, total, shadow), Ordering::Relaxed);
    }
    sync(cfg, "largest block measured");
    let t_largest = cpu::rdtsc();
    // SAFETY: as above.
    unsafe { ticker::set(&hook) };
    let mut h = a
        .cpu()
        .unwrap_or_else(|| panic!("{}: no handle for CPU {c}", A::NAME));
    let mut w = worker(cfg, &mut h, shadow, c, cfg.n);
    let (chain, bytes) = w.exhaust(LARGEST_BEFORE.load(Ordering::Relaxed));
    EXHAUSTED.fetch_add(bytes as u64, Ordering::Relaxed);
    EXHAUST_BLOCKS.fetch_add(w.counts.ops, Ordering::Relaxed);
    sync(cfg, "heap exhausted");
    let t_exhausted = cpu::rdtsc();
    w.free_chain(chain);
    drop(h);
    ticker::clear();
    sync(cfg, "exhaust round freed");
    let t_freed = cpu::rdtsc();
    if c == 0 {
        let ms = |a: u64, b: u64| tsc::ticks_to_ns(b - a) / 1_000_000;
        crate::println!(
            "{}: checked steps (ms): modules {}, largest {}, exhaust {}, free {}",
            A::NAME,
            ms(t_start, t_modules),
            ms(t_modules, t_largest),
            ms(t_largest, t_exhausted),
            ms(t_exhausted, t_freed)
        );
        let before = LARGEST_BEFORE.load(Ordering::Relaxed);
        let after = largest(a, total, shadow);
        assert!(
            after >= before,
            "{}: largest block {after} B after the exhaust round, {before} B before",
            A::NAME
        );
        if let Some(p) = shadow.first_live() {
            panic!(
                "{}: block at {p:#x} still live after the checked phase",
                A::NAME
            );
        }
        if let Err(e) = shadow.ledger.verify_balanced() {
            panic!("{}: ledger: {e}", A::NAME);
        }
        if let Err(e) = a.validate() {
            panic!("{}: validate: {e}", A::NAME);
        }
    }
    sync(cfg, "checked phase verified");
}

fn timed<A: KernelAlloc>(cfg: &Config, a: &A, c: usize, seed: u64, mut table: Option<&mut Table>) {
    let hook = Hook {
        alloc: a,
        check: &NoCheck,
    };
    // SAFETY: `hook` outlives the `ticker::clear` below.
    unsafe { ticker::set(&hook) };
    for k in active_counts(cfg.n) {
        let mut h = if c < k { a.cpu() } else { None };
        if c < k && h.is_none() {
            panic!("{}: no handle for CPU {c}", A::NAME);
        }
        let mut best = Row {
            cpus: k,
            ops_per_sec: [0.0; 3],
        };
        for rep in 0..cfg.reps {
            for (mi, m) in MODULES.iter().enumerate() {
                sync(cfg, "timed module start");
                if let Some(h) = h.as_mut() {
                    let mut w = worker(cfg, h, &NoCheck, c, k);
                    let t0 = cpu::rdtsc();
                    w.churn(
                        m,
                        m.timed_ops * cfg.scale,
                        seed ^ (rep * 256 + k * 16 + mi) as u64,
                    );
                    let t1 = cpu::rdtsc();
                    for (slot, v) in TIMED[c][mi].iter().zip([t0, t1, w.counts.ops]) {
                        slot.store(v, Ordering::Relaxed); // published by the barrier
                    }
                }
                sync(cfg, "timed module end");
                if let Some(h) = h.as_mut() {
                    let mut w = worker(cfg, h, &NoCheck, c, k);
                    w.drain_mailbox();
                    w.teardown();
                }
            }
            sync(cfg, "timed round done");
            if c == 0 {
                // Best of `reps`: the host is shared, so the fastest run is
                // the one least disturbed by other host load.
                let r = row(k);
                for (b, v) in best.ops_per_sec.iter_mut().zip(r.ops_per_sec) {
                    *b = b.max(v);
                }
            }
        }
        drop(h);
        if let Some(t) = table.as_deref_mut() {
            t.push(best);
        }
    }
    ticker::clear();
}

fn row(k: usize) -> Row {
    let mut rates = [0.0; 3];
    for (mi, rate) in rates.iter_mut().enumerate() {
        let get = |i: usize, f: usize| TIMED[i][mi][f].load(Ordering::Relaxed);
        let start = (0..k).map(|i| get(i, 0)).min().unwrap_or(0);
        let end = (0..k).map(|i| get(i, 1)).max().unwrap_or(0);
        let ops: u64 = (0..k).map(|i| get(i, 2)).sum();
        *rate = ops as f64 * tsc::hz() as f64 / (end - start).max(1) as f64;
    }
    Row {
        cpus: k,
        ops_per_sec: rates,
    }
}

/// Timer-interrupt counts of all CPUs: (ticks, alloc/free pairs, failed
/// allocations, ticks skipped for the budget); called by CPU 0 at the end.
pub fn timer_summary(n: usize) -> (u64, u64, u64, u64) {
    (0..n).fold((0, 0, 0, 0), |(t, a, f, s), i| {
        let p = percpu::of(i);
        (
            t + p.ticks.load(Ordering::Relaxed),
            a + p.timer_allocs.load(Ordering::Relaxed),
            f + p.timer_fails.load(Ordering::Relaxed),
            s + p.timer_skips.load(Ordering::Relaxed),
        )
    })
}
