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
use std::path::{Path, PathBuf};
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

/// One program's run under callgrind: its total instruction count, its
/// stdout, and the callgrind file (removed on drop), which
/// [`inclusive`] reads for a per-function count.
pub struct Counted {
    pub total: u64,
    pub stdout: String,
    file: PathBuf,
}

impl Drop for Counted {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.file);
    }
}

/// Whether `valgrind` can be started.
pub fn valgrind_found() -> bool {
    Command::new("valgrind").arg("--version").output().is_ok()
}

/// Runs `exe args` under `valgrind --tool=callgrind`; `None` (with the last
/// line of valgrind's stderr printed) when it fails. `tag` names the
/// callgrind file, so concurrent reports and cases never share one.
pub fn count(exe: &Path, args: &[&str], tag: &str) -> Option<Counted> {
    let file = std::env::temp_dir().join(format!("magbuddy-cg-{}-{tag}", std::process::id()));
    let run = Command::new("valgrind")
        .arg("--tool=callgrind")
        .arg(format!("--callgrind-out-file={}", file.display()))
        .arg(exe)
        .args(args)
        .output()
        .ok()?;
    let total = std::fs::read_to_string(&file)
        .ok()
        .and_then(|t| parse_total(&t));
    // Built before the checks, so the file goes whichever way this returns.
    let counted = Counted {
        total: total.unwrap_or(0),
        stdout: String::from_utf8_lossy(&run.stdout).into_owned(),
        file,
    };
    if !run.status.success() {
        eprintln!(
            "callgrind {tag}: {}",
            String::from_utf8_lossy(&run.stderr)
                .lines()
                .last()
                .unwrap_or("")
        );
        return None;
    }
    total.map(|_| counted)
}

/// The total instruction count of a callgrind output file (its `totals:`
/// or `summary:` line; both hold the same number).
pub fn parse_total(text: &str) -> Option<u64> {
    text.lines()
        .find_map(|l| {
            l.strip_prefix("totals:")
                .or_else(|| l.strip_prefix("summary:"))
        })?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Instructions per pair from two runs, `(instructions, pairs)` each: the
/// difference cancels start-up and every other fixed cost.
pub fn per_pair((i1, p1): (u64, u64), (i2, p2): (u64, u64)) -> f64 {
    (i2 as f64 - i1 as f64) / (p2 as f64 - p1 as f64).max(1.0)
}

/// The sum of the inclusive instruction counts of `functions` in a run
/// (`callgrind_annotate --inclusive=yes`): what the calls cost without the
/// loop around them. `None` if one of them is not in the annotation.
pub fn inclusive(run: &Counted, functions: &[&str]) -> Option<u64> {
    let out = Command::new("callgrind_annotate")
        .arg("--inclusive=yes")
        .arg(&run.file)
        .output()
        .ok()?;
    let text = String::from_utf8_lossy(&out.stdout);
    functions
        .iter()
        .map(|f| parse_inclusive(&text, f))
        .sum::<Option<u64>>()
}

/// `function`'s count in `callgrind_annotate` output: the first line of the
/// function list (sorted by count, before the annotated sources) that names
/// it, `1,650,330 (27.86%)  src.rs:__rustc::__rust_dealloc [/path/bin]`.
/// Its object file is printed only where it changes from the line above, so
/// it cannot be relied on. A function inlined from several source files has
/// one line per file; the first, largest, is the one whose calls the
/// inclusive count follows (the figures in `examples/box_pairs.rs`'s notes).
pub fn parse_inclusive(text: &str, function: &str) -> Option<u64> {
    text.lines()
        .take_while(|l| {
            !l.starts_with("-- Auto-annotated source") && !l.starts_with("-- User-annotated")
        })
        .find_map(|l| {
            let (count, rest) = l.trim_start().split_once(' ')?;
            let count: u64 = count.replace(',', "").parse().ok()?;
            let (_percent, name) = rest.split_once(")  ")?;
            let name = name
                .rsplit_once(" [")
                .map_or(name, |(n, _object)| n)
                .trim_end();
            let whole = name == function
                || name
                    .strip_suffix(function)
                    .is_some_and(|head| head.ends_with(':'));
            whole.then_some(count)
        })
}

/// Total instructions and pairs of one child run under callgrind.
fn measure(alloc: &str, wl: &str, pairs: usize, threads: usize) -> Option<(u64, u64)> {
    let exe = std::env::current_exe().ok()?;
    let (p, t) = (pairs.to_string(), threads.to_string());
    let run = count(
        &exe,
        &["--callgrind", alloc, wl, "--pairs", &p, "--threads", &t],
        &format!("{alloc}-{wl}-{pairs}-{threads}"),
    )?;
    let done = run
        .stdout
        .split_whitespace()
        .find_map(|w| w.strip_prefix("pairs="))?
        .parse()
        .ok()?;
    Some((run.total, done))
}

/// Instructions per pair for magbuddy (handle and `GlobalAlloc`), SpinHeap,
/// mimalloc and jemalloc on small and page pairs at one thread, and magbuddy's at 2, 4 and 8 threads
/// (snmalloc cannot start under valgrind: see the module's note). `None` when
/// valgrind is missing.
pub fn table(csv: &Path, quick: bool) -> Option<Instructions> {
    if !valgrind_found() {
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
        let Some((a, b)) = measure(alloc, wl, n1, t).zip(measure(alloc, wl, n2, t)) else {
            continue;
        };
        let per = per_pair(a, b);
        let _ = writeln!(md, "| {wl} | {alloc} | {t} | {per:.0} |");
        let _ = writeln!(out, "{wl},{alloc},{t},{per:.1}");
        rows.push((alloc.to_string(), wl.to_string(), t, per));
    }
    std::fs::write(csv, out).expect("write instructions.csv");
    Some(Instructions { markdown: md, rows })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn total_from_either_line() {
        assert_eq!(parse_total("events: Ir\nsummary: 3018231\n"), Some(3018231));
        assert_eq!(parse_total("totals: 5923241 \n"), Some(5923241));
        assert_eq!(parse_total("events: Ir\n"), None);
    }

    #[test]
    fn per_pair_cancels_start_up() {
        assert_eq!(per_pair((3_018_231, 10_000), (5_923_241, 30_000)), 145.2505);
    }

    #[test]
    fn inclusive_takes_the_function_line() {
        let text = "\
1,650,330 (27.86%)  /w/examples/box_pairs.rs:__rustc::__rust_dealloc [/w/target/release/examples/box_pairs]
1,539,299 (25.99%)  /w/examples/box_pairs.rs:__rustc::__rust_alloc_zeroed
  339,367 ( 5.73%)  /w/src/global.rs:__rustc::__rust_alloc_zeroed
  630,662 (15.21%)  /r/internal.h:mi_free [/w/box_pairs_mimalloc]
--------------------------------------------------------------------------------
-- Auto-annotated source: /w/src/heap/shared.rs
   60,000 ( 1.45%)  => /r/internal.h:my_free (30,000x)
";
        assert_eq!(
            parse_inclusive(text, "__rust_alloc_zeroed"),
            Some(1_539_299)
        );
        assert_eq!(parse_inclusive(text, "__rust_dealloc"), Some(1_650_330));
        assert_eq!(parse_inclusive(text, "mi_free"), Some(630_662));
        assert_eq!(parse_inclusive(text, "free"), None);
        assert_eq!(parse_inclusive(text, "my_free"), None);
    }
}
