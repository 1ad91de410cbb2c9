//! The result tables: one per allocator, then magbuddy / SpinHeap ratios,
//! then the cost of toggling interrupts around magbuddy's handle.

use crate::arch::tsc;
use crate::irqcost::REPS;
use crate::println;
use crate::workload::MODULES;

/// Throughput with `cpus` CPUs active.
#[derive(Clone, Copy, Default)]
pub struct Row {
    /// Active CPUs.
    pub cpus: usize,
    /// Operations (allocs + frees) per second, per module, all CPUs together.
    pub ops_per_sec: [f64; 3],
}

/// One allocator's results.
pub struct Table {
    /// Allocator name.
    pub name: &'static str,
    /// CPUs booted.
    pub booted: usize,
    rows: [Row; 8],
    nrows: usize,
    /// Wall time of the checked phase.
    pub checked_ms: u64,
    /// Blocks freed by a CPU other than the allocating one (checked phase).
    pub remote_frees: u64,
    /// Bytes all CPUs together got in the exhaust round.
    pub exhausted: u64,
    /// Blocks allocated in the exhaust round.
    pub exhaust_blocks: u64,
    /// Largest block before (and, checked, after) the exhaust round.
    pub largest: usize,
}

impl Table {
    /// An empty table.
    pub fn new(name: &'static str, booted: usize) -> Table {
        Table {
            name,
            booted,
            rows: [Row::default(); 8],
            nrows: 0,
            checked_ms: 0,
            remote_frees: 0,
            exhausted: 0,
            exhaust_blocks: 0,
            largest: 0,
        }
    }

    /// Adds a row.
    pub fn push(&mut self, r: Row) {
        self.rows[self.nrows] = r;
        self.nrows += 1;
    }

    fn rows(&self) -> &[Row] {
        &self.rows[..self.nrows]
    }

    /// Prints the table.
    pub fn print(&self, mode: &str) {
        println!();
        println!(
            "== {} | {} vCPUs booted | TCG {} | ops = allocs + frees ==",
            self.name, self.booted, mode
        );
        println!(
            "checked phase: PASS in {} ms; {} remote frees; exhaust round got {} MiB in {} blocks; largest block {} KiB before and after",
            self.checked_ms,
            self.remote_frees,
            self.exhausted >> 20,
            self.exhaust_blocks,
            self.largest >> 10
        );
        let base = self.rows()[0];
        if self.booted == 1 {
            println!("(only 1 CPU booted: no scaling column; the rate is the per-CPU rate)");
        }
        println!("CPUs | module | kops/s total | kops/s per CPU | scaling vs 1 CPU");
        for r in self.rows() {
            for (mi, m) in MODULES.iter().enumerate() {
                let v = r.ops_per_sec[mi];
                let per = v / r.cpus as f64;
                if self.booted == 1 {
                    println!(
                        "{:>4} | {:<6} | {:>12.1} | {:>14.1} | -",
                        r.cpus,
                        m.name,
                        v / 1e3,
                        per / 1e3
                    );
                } else {
                    let x = v / base.ops_per_sec[mi];
                    println!(
                        "{:>4} | {:<6} | {:>12.1} | {:>14.1} | {:>5.2}x",
                        r.cpus,
                        m.name,
                        v / 1e3,
                        per / 1e3,
                        x
                    );
                }
            }
        }
    }
}

/// Prints `a / b` per CPU count and module.
pub fn print_ratio(a: &Table, b: &Table) {
    println!();
    println!(
        "== ratio {} / {} (ops/s; > 1 means {} is faster) ==",
        a.name, b.name, a.name
    );
    println!(
        "CPUs | {:>6} | {:>6} | {:>6}",
        MODULES[0].name, MODULES[1].name, MODULES[2].name
    );
    for (x, y) in a.rows().iter().zip(b.rows()) {
        let q = |i: usize| x.ops_per_sec[i] / y.ops_per_sec[i];
        println!(
            "{:>4} | {:>6.2} | {:>6.2} | {:>6.2}",
            x.cpus,
            q(0),
            q(1),
            q(2)
        );
    }
}

/// One way of making the pairs in `irqcost.rs`: TSC ticks per pair.
#[derive(Clone, Copy)]
pub struct Way {
    /// Median over the repetitions.
    pub median: f64,
    /// Fastest repetition.
    pub min: f64,
    /// Slowest repetition.
    pub max: f64,
}

impl Way {
    /// From each repetition's ticks per pair.
    pub fn new(mut per_pair: [f64; REPS]) -> Way {
        per_pair.sort_unstable_by(f64::total_cmp);
        Way {
            median: per_pair[REPS / 2],
            min: per_pair[0],
            max: per_pair[REPS - 1],
        }
    }
}

/// Interrupt toggling around magbuddy's per-CPU handle (`irqcost.rs`).
pub struct IrqCost {
    /// Pairs per timed loop.
    pub pairs: usize,
    /// Handle calls alone, interrupts off around the whole loop.
    pub bare: Way,
    /// Handle calls through the harness's adapter: each call wrapped in
    /// `irq_save`/`irq_restore`.
    pub toggled: Way,
    /// The handle-less shared path, interrupts off around the whole loop.
    pub shared: Way,
    /// Each round's own `toggled - bare`, per pair: its median is steadier
    /// than the difference of the medians, since a round's two loops run
    /// back to back, under the same host load.
    pub paired: Way,
}

/// Instructions one `irq_off` adds around a handle call in this build,
/// counted in `objdump -d` (`make -C kernel-demo disasm-irq` prints them):
/// `pushfq; pop; cli` before the call, and after it the saved flag's test
/// and branch and `sti`: 12 per pair.
const TOGGLE_INSNS: &str = "6 (pushfq; pop; cli | test; jcc; sti)";

impl IrqCost {
    /// Prints the table.
    pub fn print(&self, mode: &str) {
        println!();
        println!(
            "== interrupt toggling around the handle | CPU 0 | TCG {mode} | 64 B alloc+free pairs, ring of 64 live, {} pairs per loop, median of {REPS} interleaved loops ==",
            self.pairs
        );
        println!("QEMU TCG: cycles are emulated, indicative only (TSC ticks at the calibrated rate; CPU 0's timer stopped meanwhile)");
        println!("way                                                | ticks/pair | ns/pair | ticks/pair min..max");
        let ns = |t: f64| t * 1e9 / tsc::hz() as f64;
        for (name, w) in [
            (
                "(a) handle alone, interrupts off around the loop",
                self.bare,
            ),
            (
                "(b) handle, irq_save/irq_restore around each call",
                self.toggled,
            ),
            ("(c) shared path (no handle), interrupts off", self.shared),
        ] {
            println!(
                "{name:<50} | {:>10.1} | {:>7.1} | {:.1}..{:.1}",
                w.median,
                ns(w.median),
                w.min,
                w.max
            );
        }
        let d = self.toggled.median - self.bare.median;
        println!(
            "(b) - (a): {d:.1} ticks ({:.1} ns) per pair for 2 toggles, {:.1} ticks per toggle, {:.0} % of (b)",
            ns(d),
            d / 2.0,
            100.0 * d / self.toggled.median
        );
        let p = self.paired;
        println!(
            "(b) - (a) within each round: median {:.1} ticks ({:.1} ns) per pair, {:.1}..{:.1}",
            p.median,
            ns(p.median),
            p.min,
            p.max
        );
        println!("one toggle = {TOGGLE_INSNS} instructions (objdump of this build; make -C kernel-demo disasm-irq)");
    }
}
