//! Atomic accesses per alloc+free pair (`report --atomics`): what bounds
//! scaling on machines bigger than the 2-core ones the timings come from.
//!
//! An atomic read-modify-write takes its cache line exclusively (a failed
//! CAS too), and an atomic store writes a line other CPUs may hold; on a
//! many-core machine the operations that do them on a shared line are what
//! serialise. Counting them per pair is exact on any machine, where timing
//! two cores says little about sixty-four.
//!
//! The counts come from magbuddy's instrumented facade (`--cfg
//! magbuddy_count_atomics`, `src/sync/counted.rs`), which counts per thread
//! every access through it: magbuddy's and the SpinHeap baseline's (both
//! take their atomics from it), not the harness's (std's channels and
//! barrier). A normal build of the report cannot count, so `--atomics`
//! there rebuilds and re-runs itself with the cfg in a target directory of
//! its own (`target/count-atomics`, or `$CARGO_TARGET_DIR/count-atomics`):
//! one command, and the timing builds never see the cfg.
//!
//! ```text
//! cargo run --release -p magbuddy-bench --bin report -- --atomics [--threads 1,2,4] [--pairs 20000]
//! ```

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use magbuddy::sync::AtomicCounts;
use magbuddy_bench::run::Sites;
use magbuddy_bench::{Kind, NoProbe, RunConfig, Workload, MAX_THREADS, REGION};

/// The allocators whose atomics go through magbuddy's facade: the handle
/// path, the shared path, and the one-lock baseline.
const KINDS: [Kind; 3] = [Kind::Magbuddy, Kind::MagbuddyShared, Kind::SpinHeap];

/// In a normal build: rebuilds the report with the counting cfg and runs
/// `--atomics` in it with `args` (the caller's options, `--atomics`
/// included); returns its exit status. `quiet`: the child's table goes to
/// its files only, not to stdout (the full report appends `atomics.md`).
pub fn rerun_counting(args: &[String], quiet: bool) -> i32 {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ is in the workspace");
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .map(|t| if t.is_absolute() { t } else { root.join(t) })
        .unwrap_or_else(|| root.join("target"))
        .join("count-atomics");
    // Added to the caller's flags; a relative `--out` stays relative to the
    // caller's directory, which the child keeps.
    let flags = std::env::var("RUSTFLAGS").unwrap_or_default();
    let flags = format!("{flags} --cfg magbuddy_count_atomics")
        .trim()
        .to_string();
    eprintln!(
        "--atomics: building the report with --cfg magbuddy_count_atomics in {}",
        target.display()
    );
    let status = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()))
        .args([
            "run",
            "--release",
            "-p",
            "magbuddy-bench",
            "--bin",
            "report",
        ])
        .arg("--manifest-path")
        .arg(root.join("Cargo.toml"))
        .arg("--")
        .args(args)
        .env("RUSTFLAGS", flags)
        .env("CARGO_TARGET_DIR", &target)
        .stdout(if quiet {
            Stdio::null()
        } else {
            Stdio::inherit()
        })
        .status()
        .expect("run cargo");
    status.code().unwrap_or(1)
}

/// For the full report: the table of a counting child at 1, 2 and 4
/// threads (the workloads of `workloads`, or all), or `None` if it failed.
pub fn embedded(out: &Path, workloads: &[String]) -> Option<String> {
    let mut args = vec![
        "--atomics".to_string(),
        "--out".to_string(),
        out.display().to_string(),
    ];
    if !workloads.is_empty() {
        args.push("--workloads".to_string());
        args.push(workloads.join(","));
    }
    if rerun_counting(&args, true) != 0 {
        eprintln!("atomic counts failed: no table");
        return None;
    }
    std::fs::read_to_string(out.join("atomics.md")).ok()
}

/// One counted point: accesses of all threads over the pairs they made.
struct Row {
    wl: Workload,
    threads: usize,
    alloc: &'static str,
    pairs: u64,
    counts: AtomicCounts,
    sites: Sites,
    truncated: bool,
}

impl Row {
    fn per_pair(&self, n: u64) -> f64 {
        n as f64 / self.pairs.max(1) as f64
    }

    /// `c`'s RMWs, failed CASes, stores and loads per pair: the CSV columns
    /// that `atomics.csv` and `atomics_sites.csv` share.
    fn csv_per_pair(&self, c: AtomicCounts) -> String {
        format!(
            "{:.4},{:.4},{:.4},{:.4}",
            self.per_pair(c.rmw),
            self.per_pair(c.cas_failed),
            self.per_pair(c.stores),
            self.per_pair(c.loads)
        )
    }
}

/// In the counting build: per workload and thread count, each allocator
/// (built once, as in the timed runs, so its magazines are warm) runs the
/// workload once uncounted and once counted. Prints the table and writes
/// `atomics.csv` and `atomics.md` into `out`.
pub fn table(out: &Path, wls: &[Workload], threads: &[usize], pairs: usize) {
    let allocs: Vec<_> = KINDS.iter().map(|k| k.build(REGION, MAX_THREADS)).collect();
    let mut rows = Vec::new();
    for &wl in wls {
        for &t in threads {
            for (kind, a) in KINDS.iter().zip(&allocs) {
                let cfg = RunConfig {
                    threads: t,
                    pairs,
                    seed: 42,
                    // A pure spinlock with more threads than cores can
                    // crawl; counts per pair need no full run.
                    time_limit: Some(Duration::from_secs(10)),
                    keep: false,
                };
                eprintln!("atomics: {}/{t} {}", wl.name(), kind.name());
                wl.run::<NoProbe>(a.as_ref(), &cfg);
                let r = wl.run::<NoProbe>(a.as_ref(), &cfg);
                rows.push(Row {
                    wl,
                    threads: t,
                    alloc: kind.name(),
                    pairs: r.pairs,
                    counts: r.atomics.expect("built with --cfg magbuddy_count_atomics"),
                    sites: r.sites,
                    truncated: r.truncated,
                });
            }
        }
    }
    let mut md = markdown(&rows, pairs);
    md += &by_site(
        &rows,
        Kind::Magbuddy,
        threads.iter().copied().max().unwrap_or(1),
    );
    let mut csv = String::from(
        "workload,threads,allocator,pairs,rmw_per_pair,cas_failed_per_pair,\
         stores_per_pair,loads_per_pair,truncated\n",
    );
    for r in &rows {
        let _ = writeln!(
            csv,
            "{},{},{},{},{},{}",
            r.wl.name(),
            r.threads,
            r.alloc,
            r.pairs,
            r.csv_per_pair(r.counts),
            r.truncated
        );
    }
    std::fs::create_dir_all(out).expect("create --out");
    std::fs::write(out.join("atomics.csv"), csv).expect("write atomics.csv");
    let mut sites = String::from(
        "workload,threads,allocator,file,line,rmw_per_pair,cas_failed_per_pair,\
         stores_per_pair,loads_per_pair\n",
    );
    for r in &rows {
        for ((file, line), c) in &r.sites {
            let _ = writeln!(
                sites,
                "{},{},{},{file},{line},{}",
                r.wl.name(),
                r.threads,
                r.alloc,
                r.csv_per_pair(*c)
            );
        }
    }
    std::fs::write(out.join("atomics_sites.csv"), sites).expect("write atomics_sites.csv");
    std::fs::write(out.join("atomics.md"), &md).expect("write atomics.md");
    println!("{md}");
}

/// Rows: workload × threads; per allocator a cell `RMW / stores / loads`
/// per pair (failed CASes, machine-dependent, are in the CSV).
fn markdown(rows: &[Row], pairs: usize) -> String {
    let mut md = format!(
        "\n## Atomic accesses per alloc+free pair\n\n\
         `cargo run --release -p magbuddy-bench --bin report -- --atomics`: the report built \
         with `--cfg magbuddy_count_atomics`, which counts per thread every atomic access \
         through magbuddy's facade (magbuddy's and SpinHeap's; not the harness's). Each cell \
         is **read-modify-writes / stores / loads** per pair (all threads' accesses over all \
         their pairs, a handle's claim and release included), counted in one run of {pairs} \
         pairs per thread after one uncounted run on the same allocator. RMWs include failed \
         CASes; those and loads of waiters grow with contention on this 2-core machine, the \
         RMWs and stores of successful operations do not.\n\n\
         | workload | threads | {} | {} | {} |\n|---|---:|---:|---:|---:|\n",
        KINDS[0].name(),
        KINDS[1].name(),
        KINDS[2].name()
    );
    let mut keys: Vec<(Workload, usize)> = rows.iter().map(|r| (r.wl, r.threads)).collect();
    keys.dedup();
    for (wl, t) in keys {
        let _ = write!(md, "| {} | {t} |", wl.name());
        for kind in KINDS {
            match rows
                .iter()
                .find(|r| r.wl == wl && r.threads == t && r.alloc == kind.name())
            {
                Some(r) => {
                    let c = r.counts;
                    let _ = write!(
                        md,
                        " {:.2} / {:.2} / {:.1}{} |",
                        r.per_pair(c.rmw),
                        r.per_pair(c.stores),
                        r.per_pair(c.loads),
                        if r.truncated { " (cut)" } else { "" }
                    );
                }
                None => md.push_str(" – |"),
            }
        }
        md.push('\n');
    }
    md
}

/// Where `kind`'s read-modify-writes at `threads` threads come from: per
/// call site in `src/` (a line, through `#[track_caller]`; helpers such as
/// the Treiber stack's count for all their callers) with at least 0.005 RMWs
/// per pair in some workload, per workload.
fn by_site(rows: &[Row], kind: Kind, threads: usize) -> String {
    let here: Vec<&Row> = rows
        .iter()
        .filter(|r| r.alloc == kind.name() && r.threads == threads)
        .collect();
    let mut keys: Vec<(&'static str, u32)> = here
        .iter()
        .flat_map(|r| {
            r.sites
                .iter()
                .filter(|(_, c)| r.per_pair(c.rmw) >= 0.005)
                .map(|(k, _)| *k)
        })
        .collect();
    keys.sort();
    keys.dedup();
    if keys.is_empty() {
        return format!(
            "\nNo call site of {} reaches 0.005 RMWs per pair at {threads} threads.\n",
            kind.name()
        );
    }
    let mut md = format!(
        "\n### Read-modify-writes per pair by call site ({}, {threads} threads)\n\n\
         Sites with at least 0.005 per pair in some workload; `atomics_sites.csv` has every \
         site, allocator and thread count.\n\n| site |",
        kind.name()
    );
    for r in &here {
        let _ = write!(md, " {} |", r.wl.name());
    }
    md += "\n|---|";
    md += &"---:|".repeat(here.len());
    md.push('\n');
    for k in keys {
        let _ = write!(md, "| `{}:{}` |", k.0, k.1);
        for r in &here {
            let n = r.sites.get(&k).map_or(0.0, |c| r.per_pair(c.rmw));
            let _ = write!(md, " {n:.3} |");
        }
        md.push('\n');
    }
    md
}
