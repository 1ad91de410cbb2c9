//! Markdown and CSV output of the runs, and the targets checked
//! against them. Every number printed here comes from this run's points.

use std::fmt::Write as _;
use std::path::Path;

use magbuddy_bench::Workload;

use crate::callgrind::Instructions;
use crate::memory::Metadata;
use crate::{Args, Plan, Point};

/// Date, machine and settings of the run.
pub fn header(args: &Args, plan: Plan) -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    // The options that change what was run, so the command line reruns it.
    let mut more = String::new();
    for (flag, v) in [
        ("workloads", &args.workloads),
        ("allocators", &args.allocators),
    ] {
        if !v.is_empty() {
            let _ = write!(more, " --{flag} {}", v.join(","));
        }
    }
    if args.runs_only {
        more += " --runs-only";
    }
    // Under LD_PRELOAD `system` is the preloaded malloc (preload/eval.sh).
    let preload = std::env::var_os("LD_PRELOAD")
        .filter(|p| !p.is_empty())
        .map_or(String::new(), |p| {
            format!(
                ", run with `LD_PRELOAD={}` (so `system` is its malloc)",
                p.to_string_lossy()
            )
        });
    format!(
        "# magbuddy benchmark report\n\n\
         Date {date} (UTC). Machine: {cores} cores ({cpu}); shared and noisy, so compare \
         allocators as ratios within this run, not across runs. Mode: {mode}, {pairs} pairs per \
         thread per run, median of {reps} throughput run(s) per point, one latency run per point \
         (clock read around every call), runs cut at {limit:?} (marked `cut`).\n\n\
         Command: `cargo run --release -p magbuddy-bench --bin report --{q} --threads {threads}{more}`{preload}\n\n\
         ns/pair = wall time / all threads' alloc+free pairs (the inverse of throughput); Mops/s \
         counts allocations and frees; ×spin and ×mi are throughput ratios to `spinheap` and \
         `mimalloc` (higher is better); p99/p99.9/max are per call (alloc or free), in ns.\n",
        date = today(),
        mode = if args.quick { "--quick" } else { "full" },
        pairs = plan.pairs,
        reps = plan.reps,
        limit = plan.limit,
        q = if args.quick { " --quick" } else { "" },
        threads = args
            .threads
            .iter()
            .map(usize::to_string)
            .collect::<Vec<_>>()
            .join(","),
    )
}

/// Today's date as YYYY-MM-DD (UTC), from the system clock.
fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Howard Hinnant's days-to-civil algorithm.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}")
}

/// Throughput of `alloc` at `(wl, threads)`, if measured.
pub fn mops(points: &[Point], wl: Workload, threads: usize, alloc: &str) -> Option<f64> {
    find(points, wl, threads, alloc).map(|p| p.mops)
}

fn find<'a>(points: &'a [Point], wl: Workload, threads: usize, alloc: &str) -> Option<&'a Point> {
    points
        .iter()
        .find(|p| p.wl == wl && p.threads == threads && p.alloc == alloc)
}

fn ratio(x: f64, base: Option<f64>) -> String {
    base.map_or("–".into(), |b| format!("{:.2}", x / b))
}

/// One markdown table per workload.
pub fn runs(points: &[Point], threads: &[usize]) -> String {
    let mut s = String::from("\n## Throughput and latency\n");
    for wl in Workload::ALL {
        if !points.iter().any(|p| p.wl == wl) {
            continue;
        }
        let _ = write!(
            s,
            "\n### {}\n\n| threads | allocator | ns/pair | Mops/s | ×spin | ×mi | p99 | p99.9 | max | CAS/op | notes |\n\
             |---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---|\n",
            wl.name()
        );
        for &t in threads {
            for p in points.iter().filter(|p| p.wl == wl && p.threads == t) {
                let notes = match (p.failed, p.truncated) {
                    (0, false) => String::new(),
                    (f, cut) => format!(
                        "{}{}",
                        if f > 0 {
                            format!("{f} failed ")
                        } else {
                            String::new()
                        },
                        if cut { "cut" } else { "" }
                    ),
                };
                let _ = writeln!(
                    s,
                    "| {t} | {} | {:.1} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
                    p.alloc,
                    p.ns_pair,
                    p.mops,
                    ratio(p.mops, mops(points, wl, t, "spinheap")),
                    ratio(p.mops, mops(points, wl, t, "mimalloc")),
                    p.p99,
                    p.p999,
                    p.max,
                    p.cas_per_op.map_or("–".into(), |c| format!("{c:.4}")),
                    notes.trim()
                );
            }
        }
    }
    s
}

/// All points as CSV.
pub fn write_csv(path: &Path, points: &[Point]) {
    let mut s = String::from(
        "workload,threads,allocator,ns_per_pair,mops,p99_ns,p999_ns,max_ns,cas_per_op,failed,truncated\n",
    );
    for p in points {
        let _ = writeln!(
            s,
            "{},{},{},{:.3},{:.4},{},{},{},{},{},{}",
            p.wl.name(),
            p.threads,
            p.alloc,
            p.ns_pair,
            p.mops,
            p.p99,
            p.p999,
            p.max,
            p.cas_per_op.map_or(String::new(), |c| format!("{c:.6}")),
            p.failed,
            p.truncated
        );
    }
    std::fs::write(path, s).expect("write runs.csv");
}

/// One target's row: what, measured, verdict.
struct Check {
    s: String,
}

impl Check {
    fn new() -> Self {
        Self {
            s: String::from(
                "\n## Targets (issue 5), checked against this run\n\n| target | measured | verdict |\n|---|---|---|\n",
            ),
        }
    }

    fn row(&mut self, target: &str, measured: String, met: Option<bool>) {
        let verdict = match met {
            Some(true) => "met",
            Some(false) => "**missed**",
            None => "not measured",
        };
        let _ = writeln!(self.s, "| {target} | {measured} | {verdict} |");
    }

    /// A "magbuddy ≥ factor × other" throughput target at `t` threads.
    fn faster(&mut self, points: &[Point], wl: Workload, t: usize, other: &str, factor: f64) {
        let r = mops(points, wl, t, "magbuddy").zip(mops(points, wl, t, other));
        self.row(
            &format!("{}, {t} threads: ≥ {factor}× {other}", wl.name()),
            r.map_or("–".into(), |(m, o)| {
                format!("{:.2}× ({m:.2} vs {o:.2} Mops/s)", m / o)
            }),
            r.map(|(m, o)| m >= factor * o),
        );
    }
}

/// The targets, each with the measured value and met/missed.
pub fn targets(points: &[Point], instr: Option<&Instructions>, mem: &Metadata) -> String {
    let mut c = Check::new();
    let (small, page) = (Workload::Small, Workload::Page);
    // Small pair, 1 thread: time and instructions vs mimalloc.
    let ns = |a| find(points, small, 1, a).map(|p| p.ns_pair);
    let r = ns("magbuddy").zip(ns("mimalloc"));
    c.row(
        "small pair, 1 thread: time ≤ mimalloc",
        r.map_or("–".into(), |(m, o)| {
            format!("{m:.1} vs {o:.1} ns/pair ({:.1}×)", m / o)
        }),
        r.map(|(m, o)| m <= o),
    );
    let ir = instr.and_then(|i| {
        i.per_pair("magbuddy", "small", 1)
            .zip(i.per_pair("mimalloc", "small", 1))
    });
    c.row(
        "small pair, 1 thread: instructions ≤ mimalloc",
        ir.map_or("–".into(), |(m, o)| {
            format!("{m:.0} vs {o:.0} instructions/pair ({:.1}×)", m / o)
        }),
        ir.map(|(m, o)| m <= o),
    );
    // Scaling 1 -> 2 threads vs mimalloc's.
    for wl in [small, page] {
        let scale = |a| {
            mops(points, wl, 2, a)
                .zip(mops(points, wl, 1, a))
                .map(|(x, y)| x / y)
        };
        let r = scale("magbuddy").zip(scale("mimalloc"));
        c.row(
            &format!("{}: scaling 1→2 threads ≥ mimalloc's", wl.name()),
            r.map_or("–".into(), |(m, o)| format!("{m:.2}× vs {o:.2}×")),
            r.map(|(m, o)| m >= o),
        );
    }
    // Flatness from 1 to 8 threads.
    let flat = |v: &[f64], floor: f64| {
        let (lo, hi) = v
            .iter()
            .fold((f64::MAX, 0f64), |(l, h), &x| (l.min(x), h.max(x)));
        hi <= floor || hi <= 1.2 * lo
    };
    let ipp: Vec<(usize, f64)> = [1, 2, 4, 8]
        .into_iter()
        .filter_map(|t| {
            instr
                .and_then(|i| i.per_pair("magbuddy", "small", t))
                .map(|v| (t, v))
        })
        .collect();
    c.row(
        "instructions per pair flat (±20 %) 1→8 threads (small)",
        list(&ipp, 0),
        (ipp.len() >= 2).then(|| flat(&ipp.iter().map(|x| x.1).collect::<Vec<_>>(), 0.0)),
    );
    for wl in [small, page] {
        let cas: Vec<(usize, f64)> = [1, 2, 4, 8]
            .into_iter()
            .filter_map(|t| {
                find(points, wl, t, "magbuddy")
                    .and_then(|p| p.cas_per_op)
                    .map(|v| (t, v))
            })
            .collect();
        c.row(
            &format!(
                "{}: CAS retries per op flat (±20 %, or all ≤ 0.001) 1→8 threads",
                wl.name()
            ),
            list(&cas, 4),
            (cas.len() >= 2).then(|| flat(&cas.iter().map(|x| x.1).collect::<Vec<_>>(), 0.001)),
        );
    }
    for wl in [small, page] {
        c.faster(points, wl, 2, "spinheap", 5.0);
        c.faster(points, wl, 2, "buddy_system", 5.0);
    }
    for wl in [small, page] {
        let tail = |a| find(points, wl, 8, a).map(|p| p.p999);
        let r = tail("magbuddy").zip(tail("spinheap"));
        c.row(
            &format!("{}, 8 threads: p99.9 ≤ 1/10 of spinheap's", wl.name()),
            r.map_or("–".into(), |(m, o)| {
                format!("{m} vs {o} ns ({:.2} of it)", m as f64 / o.max(1) as f64)
            }),
            r.map(|(m, o)| m * 10 <= o),
        );
    }
    for t in [2, 4, 8] {
        c.faster(points, Workload::Remote, t, "mimalloc", 1.0);
    }
    let worst = mem
        .magbuddy_percent
        .iter()
        .fold(None::<(usize, f64)>, |w, &(len, pct)| match w {
            Some((_, p)) if p >= pct => w,
            _ => Some((len, pct)),
        });
    c.row(
        "metadata ≤ 0.5 % of the heap (64 MiB, 1 GiB, 4 GiB)",
        worst.map_or("–".into(), |(len, p)| {
            format!("worst {p:.3} % (at {} MiB)", len >> 20)
        }),
        worst.map(|(_, p)| p <= 0.5),
    );
    c.s
}

/// `t: value` pairs for a table cell.
fn list(v: &[(usize, f64)], digits: usize) -> String {
    if v.is_empty() {
        return "–".into();
    }
    v.iter()
        .map(|(t, x)| format!("{t}: {x:.digits$}"))
        .collect::<Vec<_>>()
        .join(", ")
}
