//! Markdown and CSV output of the runs, and the targets checked
//! against them. Every number printed here comes from this run's points.

use std::fmt::Write as _;
use std::path::Path;

use magbuddy_bench::{Kind, Workload};

use crate::callgrind::Instructions;
use crate::memory::Metadata;
use crate::spread::Spread;
use crate::{Args, Plan, Point};

/// The 1, 5 and 15 minute load averages now, as `a/b/c`.
pub fn loadavg() -> String {
    std::fs::read_to_string("/proc/loadavg").map_or_else(
        |_| "unknown".into(),
        |s| s.split_whitespace().take(3).collect::<Vec<_>>().join("/"),
    )
}

/// Date, machine (with the load average at the start and end of the runs)
/// and settings of the run.
pub fn header(args: &Args, plan: Plan, load: &[String; 2]) -> String {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map_or_else(|_| "unknown".into(), |s| s.trim().to_string());
    // The rustc on PATH (rust-toolchain.toml pins it in the repository);
    // omitted if there is none.
    let rustc = std::process::Command::new("rustc")
        .arg("-V")
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map_or(String::new(), |o| {
            format!(", {}", String::from_utf8_lossy(&o.stdout).trim())
        });
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
    if let Some(r) = args.reps {
        let _ = write!(more, " --reps {r}");
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
         Date {date} (UTC). Machine: {cores} cores ({cpu}), Linux {kernel}{rustc}; load average \
         (1/5/15 min) {load0} at the start of the runs and {load1} at the end. The machine is \
         shared and noisy, so compare allocators as ratios within this run, not across runs. \
         Mode: {mode}, {pairs} pairs per thread per run, {reps} throughput run(s) per point, \
         interleaved (run 1 of every allocator, then run 2, ...), then {latency_reps} latency \
         run(s) per point of {latency_pairs} pairs per thread, interleaved the same way (clock \
         read around every call), runs cut at {limit:?} (marked `cut`).\n\n\
         Command: `cargo run --release -p magbuddy-bench --bin report --{q} --threads {threads}{more}`{preload}\n\n\
         ns/pair = wall time / all threads' alloc+free pairs (the inverse of throughput), the \
         median over the runs with the interquartile range in brackets (quartiles interpolated \
         between the sorted runs; none with one run); Mops/s (median) counts allocations and \
         frees; ×spin and ×mi are ratios of median throughput to `spinheap`'s and `mimalloc`'s \
         in this same run (higher is better); p99/p99.9/max are per call (alloc or free), in ns: \
         each latency run's own, then the median over the latency runs with the interquartile \
         range in brackets (none with one run).\n",
        date = today(),
        load0 = load[0],
        load1 = load[1],
        mode = if args.quick { "--quick" } else { "full" },
        pairs = plan.pairs,
        reps = plan.reps,
        latency_reps = plan.latency_reps,
        latency_pairs = plan.latency_pairs,
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
    find(points, wl, threads, alloc).map(|p| p.mops.median)
}

fn find<'a>(points: &'a [Point], wl: Workload, threads: usize, alloc: &str) -> Option<&'a Point> {
    points
        .iter()
        .find(|p| p.wl == wl && p.threads == threads && p.alloc == alloc)
}

fn ratio(x: f64, base: Option<f64>) -> String {
    base.map_or("–".into(), |b| format!("{:.2}", x / b))
}

/// One markdown table per workload: every thread count × allocator that ran,
/// whoever wins, and a line naming the allocators of `kinds` that cannot run
/// the workload.
pub fn runs(points: &[Point], threads: &[usize], kinds: &[Kind]) -> String {
    let mut s = String::from("\n## Throughput and latency\n");
    for wl in Workload::ALL {
        if !points.iter().any(|p| p.wl == wl) {
            continue;
        }
        let _ = write!(
            s,
            "\n### {}\n\n| threads | allocator | ns/pair [IQR] | Mops/s | ×spin | ×mi | p99 [IQR] | p99.9 [IQR] | max [IQR] | CAS/op | notes |\n\
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
                    "| {t} | {} | {} | {:.2} | {} | {} | {} | {} | {} | {} | {} |",
                    p.alloc,
                    with_iqr(&p.ns_pair, p.reps, 1),
                    p.mops.median,
                    ratio(p.mops.median, mops(points, wl, t, "spinheap")),
                    ratio(p.mops.median, mops(points, wl, t, "mimalloc")),
                    with_iqr(&p.tail.p99, p.latency_reps, 0),
                    with_iqr(&p.tail.p999, p.latency_reps, 0),
                    with_iqr(&p.tail.max, p.latency_reps, 0),
                    p.cas_per_op.map_or("–".into(), |c| format!("{c:.4}")),
                    notes.trim()
                );
            }
        }
        let unfit: Vec<&str> = kinds
            .iter()
            .filter(|k| !wl.fits_kind(**k))
            .map(|k| k.name())
            .collect();
        if !unfit.is_empty() {
            let _ = writeln!(
                s,
                "\nNot run: {} (serves single pages only).",
                unfit.join(", ")
            );
        }
    }
    s
}

/// `median [q1–q3]` to `digits` decimals, or the median alone from one run.
fn with_iqr(x: &Spread, reps: usize, digits: usize) -> String {
    if reps > 1 {
        format!(
            "{:.digits$} [{:.digits$}–{:.digits$}]",
            x.median, x.q1, x.q3
        )
    } else {
        format!("{:.digits$}", x.median)
    }
}

/// Where magbuddy's median throughput beats mimalloc's and where it loses,
/// one sentence each, from this run's points only: first at a program's call
/// boundary (`magbuddy-global`, the headline: mimalloc is called there too),
/// then through per-CPU handles (the kernel's boundary).
pub fn summary(points: &[Point]) -> String {
    [
        (
            "magbuddy-global",
            "through `GlobalAlloc`, as a Rust program calls it",
        ),
        ("magbuddy", "through per-CPU handles, the kernel's boundary"),
    ]
    .iter()
    .map(|(name, how)| summary_of(points, name, how))
    .collect()
}

/// [`summary`]'s sentences for allocator `name`, reached `how`.
fn summary_of(points: &[Point], name: &str, how: &str) -> String {
    let (mut wins, mut losses, mut close) = (Vec::new(), Vec::new(), false);
    for m in points.iter().filter(|p| p.alloc == name) {
        let Some(o) = find(points, m.wl, m.threads, "mimalloc") else {
            continue;
        };
        let r = m.mops.median / o.mops.median;
        // Marked when the runs' interquartile ranges overlap.
        let near = m.reps > 1 && o.reps > 1 && m.mops.overlaps(&o.mops);
        close |= near;
        let cell = format!(
            "{}/{} ({r:.2}×{})",
            m.wl.name(),
            m.threads,
            if near { "†" } else { "" }
        );
        if r > 1.0 {
            wins.push(cell);
        } else if r < 1.0 {
            losses.push(cell);
        }
    }
    if wins.is_empty() && losses.is_empty() {
        return String::new();
    }
    let list = |v: &[String]| {
        if v.is_empty() {
            "nowhere in this run".to_string()
        } else {
            format!("at {}", v.join(", "))
        }
    };
    format!(
        "\n## Summary: {name} against mimalloc\n\n\
         {name} is magbuddy {how}. \
         Each cell is workload/threads ({name}'s median throughput over mimalloc's{}). \
         {name} is faster {}. \
         {name} is slower {}.\n",
        if close {
            "; † where the two allocators' interquartile ranges overlap"
        } else {
            ""
        },
        list(&wins),
        list(&losses)
    )
}

/// All points as CSV. The columns after `truncated` were added later, so
/// scripts that read columns by position (preload/eval.sh) still work.
/// Latency columns are medians over the latency runs (an integer but for an
/// even run count), with their quartiles among the later columns.
pub fn write_csv(path: &Path, points: &[Point]) {
    let mut s = String::from(
        "workload,threads,allocator,ns_per_pair,mops,p99_ns,p999_ns,max_ns,cas_per_op,failed,truncated,\
         ns_per_pair_q1,ns_per_pair_q3,mops_q1,mops_q3,reps,\
         p99_ns_q1,p99_ns_q3,p999_ns_q1,p999_ns_q3,max_ns_q1,max_ns_q3,latency_reps\n",
    );
    for p in points {
        let t = &p.tail;
        let _ = writeln!(
            s,
            "{},{},{},{:.3},{:.4},{},{},{},{},{},{},{:.3},{:.3},{:.4},{:.4},{},{},{},{},{},{},{},{}",
            p.wl.name(),
            p.threads,
            p.alloc,
            p.ns_pair.median,
            p.mops.median,
            t.p99.median,
            t.p999.median,
            t.max.median,
            p.cas_per_op.map_or(String::new(), |c| format!("{c:.6}")),
            p.failed,
            p.truncated,
            p.ns_pair.q1,
            p.ns_pair.q3,
            p.mops.q1,
            p.mops.q3,
            p.reps,
            t.p99.q1,
            t.p99.q3,
            t.p999.q1,
            t.p999.q3,
            t.max.q1,
            t.max.q3,
            p.latency_reps
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
                "\n## Targets set by the benchmark issues, checked against this run\n\nThroughput, time and p99.9 figures are the medians above (p99.9 over the latency runs).\n\n| target | measured | verdict |\n|---|---|---|\n",
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
    let ns = |a| find(points, small, 1, a).map(|p| p.ns_pair.median);
    let r = ns("magbuddy").zip(ns("mimalloc"));
    c.row(
        "small pair, 1 thread: time ≤ mimalloc",
        r.map_or("–".into(), |(m, o)| {
            format!("{m:.1} vs {o:.1} ns/pair ({:.1}×)", m / o)
        }),
        r.map(|(m, o)| m <= o),
    );
    // The Rust program's boundary (issue 16's GlobalAlloc target).
    let r = ns("magbuddy-global").zip(ns("mimalloc"));
    c.row(
        "small pair through GlobalAlloc, 1 thread: time ≤ 0.7× mimalloc's",
        r.map_or("–".into(), |(m, o)| {
            format!("{m:.1} vs {o:.1} ns/pair ({:.2}×)", m / o)
        }),
        r.map(|(m, o)| m <= 0.7 * o),
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
        let tail = |a| find(points, wl, 8, a).map(|p| p.tail.p999.median);
        let r = tail("magbuddy").zip(tail("spinheap"));
        c.row(
            &format!("{}, 8 threads: p99.9 ≤ 1/10 of spinheap's", wl.name()),
            r.map_or("–".into(), |(m, o)| {
                format!("{m:.0} vs {o:.0} ns ({:.2} of it)", m / o.max(1.0))
            }),
            r.map(|(m, o)| m * 10.0 <= o),
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spread::Tail;

    fn point(wl: Workload, threads: usize, alloc: &str, mops: &[f64]) -> Point {
        let ns: Vec<f64> = mops.iter().map(|m| 2e3 / m).collect();
        Point {
            wl,
            threads,
            alloc: alloc.into(),
            ns_pair: Spread::of(&ns),
            mops: Spread::of(mops),
            reps: mops.len(),
            tail: Tail {
                p99: Spread::of(&[0.0]),
                p999: Spread::of(&[0.0]),
                max: Spread::of(&[0.0]),
            },
            latency_reps: 1,
            cas_per_op: None,
            failed: 0,
            truncated: false,
        }
    }

    #[test]
    fn summary_lists_wins_and_losses() {
        let (s, p) = (Workload::Small, Workload::Page);
        let mut fast = point(s, 1, "magbuddy", &[20.0, 21.0, 22.0]);
        fast.tail.p999 = Spread::of(&[150.0, 120.0, 900.0, 130.0, 100.0]);
        fast.latency_reps = 5;
        let points = [
            fast,
            point(s, 1, "mimalloc", &[9.0, 10.0, 11.0]),
            point(p, 2, "magbuddy", &[9.0, 10.0, 11.0]),
            point(p, 2, "mimalloc", &[8.0, 12.5, 14.0]),
            // No mimalloc at 4 threads: no cell.
            point(p, 4, "magbuddy", &[1.0]),
        ];
        let text = summary(&points);
        assert!(text.contains("magbuddy is faster at small/1 (2.10×)."));
        assert!(text.contains("magbuddy is slower at page/2 (0.80×†)."));
        assert!(text.contains("† where"));
        let runs = runs(&points, &[1, 2, 4], &[Kind::Magbuddy, Kind::Xv6Pages]);
        assert!(runs.contains(
            "| 1 | magbuddy | 95.2 [93.1–97.6] | 21.00 | – | 2.10 | 0 [0–0] | 130 [120–150] |"
        ));
        assert!(runs.contains("| 4 | magbuddy | 2000.0 | 1.00 |"));
        assert!(runs.contains("Not run: xv6-percpu"));
    }
}
