//! The result tables: one per allocator, then magbuddy / SpinHeap ratios.

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
