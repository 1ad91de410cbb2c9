//! Instruction counts with `valgrind --tool=callgrind`.
//!
//! The child mode (`report --callgrind ALLOCATOR WORKLOAD --pairs N
//! --threads T`) builds one allocator and runs one workload once. Under
//! callgrind its total instruction count includes process start-up, region
//! set-up and the harness; running it at two work sizes and dividing the
//! difference in instructions by the difference in pairs cancels all fixed
//! costs and leaves instructions per alloc+free pair (harness included: RNG,
//! the `dyn` call, the live-set bookkeeping, the same for every allocator).
//!
//! By hand, for one allocator and workload:
//!
//! ```text
//! cargo build --release -p magbuddy-bench --bin report
//! for n in 10000 30000; do
//!   valgrind --tool=callgrind --callgrind-out-file=cg.$n \
//!     target/release/report --callgrind magbuddy small --pairs $n --threads 1
//! done
//! grep -h totals: cg.10000 cg.30000   # (difference) / 20000 = instructions per pair
//! ```
//!
//! Every allocator of the suite runs in this mode except `snmalloc`: at its
//! first allocation it reserves its flat pagemap, 256 GiB of address space
//! with `MAP_NORESERVE`, which the kernel grants but valgrind's own address
//! space manager refuses (`mmap` fails with `EINVAL` before reaching the
//! kernel), so snmalloc prints "Failed to initialise snmalloc." and aborts.
//! [`table`] leaves it out for that reason.

use std::fmt::Write as _;
use std::path::Path;
use std::process::Command;

use magbuddy_bench::{Kind, NoProbe, RunConfig, Workload, MAX_THREADS};

/// Region for the child: small, so valgrind's start-up stays short.
const CHILD_REGION: usize = 64 << 20;

/// Runs `alloc` on `wl` once and prints the pairs done.
pub fn child(alloc: &str, wl: &str, pairs: usize, threads: usize) {
    let kind = Kind::parse(alloc).unwrap_or_else(|| panic!("unknown allocator {alloc}"));
    let wl = Workload::parse(wl).unwrap_or_else(|| panic!("unknown workload {wl}"));
    let a = kind.build(CHILD_REGION, MAX_THREADS);
    let cfg = RunConfig {
        threads,
        pairs,
        seed: 42,
        time_limit: None,
        keep: false,
    };
    let r = wl.run::<NoProbe>(a.as_ref(), &cfg);
    println!("pairs={} failed={}", r.pairs, r.failed);
}

/// Measured instructions per pair.
pub struct Instructions {
    pub markdown: String,
    rows: Vec<(String, String, usize, f64)>,
}

impl Instructions {
    /// Instructions per pair of `alloc` on `wl` at `threads`, if measured.
    pub fn per_pair(&self, alloc: &str, wl: &str, threads: usize) -> Option<f64> {
        self.rows
            .iter()
            .find(|r| r.0 == alloc && r.1 == wl && r.2 == threads)
            .map(|r| r.3)
    }
}

/// Total instructions and pairs of one child run under callgrind.
fn measure(alloc: &str, wl: &str, pairs: usize, threads: usize) -> Option<(u64, u64)> {
    let exe = std::env::current_exe().ok()?;
    let out = std::env::temp_dir().join(format!(
        "magbuddy-cg-{}-{alloc}-{wl}-{pairs}-{threads}",
        std::process::id()
    ));
    let run = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", out.display()))
        .arg(exe)
        .args(["--callgrind", alloc, wl])
        .args([
            "--pairs",
            &pairs.to_string(),
            "--threads",
            &threads.to_string(),
        ])
        .output()
        .ok()?;
    let text = std::fs::read_to_string(&out).ok();
    let _ = std::fs::remove_file(&out);
    if !run.status.success() {
        eprintln!(
            "callgrind {alloc} {wl}: {}",
            String::from_utf8_lossy(&run.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    let total = text?
        .lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })?
        .trim()
        .parse()
        .ok()?;
    let stdout = String::from_utf8_lossy(&run.stdout);
    let done = stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pairs="))?
        .parse()
        .ok()?;
    Some((total, done))
}

/// Instructions per pair for magbuddy (handle and `GlobalAlloc`), SpinHeap,
/// mimalloc and jemalloc on small and page pairs at one thread, and magbuddy's at 2, 4 and 8 threads
/// (snmalloc cannot start under valgrind: see the module's note). `None` when
/// valgrind is missing.
pub fn table(csv: &Path, quick: bool) -> Option<Instructions> {
    if Command::new("valgrind").arg("--version").output().is_err() {
        eprintln!("valgrind not found: no instruction counts");
        return None;
    }
    let (n1, n2) = if quick {
        (4_000, 12_000)
    } else {
        (10_000, 30_000)
    };
    let mut cases: Vec<(&str, &str, usize)> = Vec::new();
    for wl in ["small", "page"] {
        for alloc in [
            "magbuddy",
            "magbuddy-global",
            "spinheap",
            "mimalloc",
            "jemalloc",
        ] {
            cases.push((alloc, wl, 1));
        }
        for t in [2, 4, 8] {
            cases.push(("magbuddy", wl, t));
        }
    }
    let mut md = format!(
        "\n## Instructions per alloc+free pair (callgrind)\n\n\
         `valgrind --tool=callgrind` on `report --callgrind ALLOCATOR WORKLOAD` at {n1} and \
         {n2} pairs per thread; (difference in instructions) / (difference in pairs), so set-up \
         cancels and the harness's own work (RNG, `dyn` call, live-set bookkeeping) is included \
         for every allocator alike. Threads run serialised under valgrind: this counts work, \
         not contention. `snmalloc` is missing: it cannot start under valgrind (its 256 GiB \
         pagemap reservation is refused).\n\n\
         | workload | allocator | threads | instructions/pair |\n|---|---|---:|---:|\n"
    );
    let mut rows = Vec::new();
    let mut out = String::from("workload,allocator,threads,instructions_per_pair\n");
    for (alloc, wl, t) in cases {
        let Some(((i1, p1), (i2, p2))) = measure(alloc, wl, n1, t).zip(measure(alloc, wl, n2, t))
        else {
            continue;
        };
        let per = (i2 as f64 - i1 as f64) / (p2 as f64 - p1 as f64).max(1.0);
        let _ = writeln!(md, "| {wl} | {alloc} | {t} | {per:.0} |");
        let _ = writeln!(out, "{wl},{alloc},{t},{per:.1}");
        rows.push((alloc.to_string(), wl.to_string(), t, per));
    }
    std::fs::write(csv, out).expect("write instructions.csv");
    Some(Instructions { markdown: md, rows })
}
