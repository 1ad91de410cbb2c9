//! The report: one command regenerates every table and plot of the paper.
//! First fixed-work runs of every workload × threads × allocator, then
//! tables (markdown and CSV), plots, memory and fragmentation, callgrind
//! instruction counts, atomic accesses and the issue's targets checked
//! against this run; then the stages that run outside this process (the C
//! benchmark programs, ten real programs, the allocator workloads and
//! resident memory over time through `LD_PRELOAD`, the kernel on QEMU, the
//! examples `magazine_sizes` and `vec_growth`, the shuttle and loom suites
//! and the seeded bugs, instructions at the program boundaries), each
//! through the repository's own script or command (`stages.rs`,
//! `external.rs`, `verify.rs`, `boundaries.rs`).
//!
//! ```text
//! cargo run --release -p magbuddy-bench --bin report -- [--quick] [--threads 1,2,4,8] [--out target/report]
//! ```
//!
//! Full: 2,247 s on the 2-core VM on 2026-11-30 (the in-process sections
//! 8 min, `preload/eval.sh 3 --programs` 918 s, the model checkers about 6
//! min, `preload/eval.sh 3 --rss` 160 s, `bench-c/run.sh 3` 202 s, the
//! workloads 66 s, the examples, the kernel and the boundaries under a
//! minute each). `--quick`:
//! each stage's smoke variant (`bench-c/run.sh --quick`, `preload/eval.sh 1
//! --quick --programs`, `--quick --workloads` and `1 --rss`, the kernel on
//! 2 vCPUs with 256 MiB, the examples as they are; the model checkers,
//! which have no smaller variant, are skipped), for CI: ≈ 13–16 min, of
//! which eval.sh's ten programs, once each at full size, take ≈ 8 and the
//! workloads, RSS and examples stages ≈ 1 once built (≈ 3.5 with their
//! builds on a loaded machine); ≈ 5–8 min with `--no-programs`.
//!
//! Writes into `--out`: `report.md` (every section below, and the command
//! behind each external table), `runs.csv`, `memory.csv`,
//! `fragmentation.csv`, `instructions.csv`, `atomics.md`, `atomics.csv`,
//! `atomics_sites.csv`, `scaling.svg`, `latency.svg`; from the stages
//! `bench-c-summary.md`, `bench-c-results.csv`, `bench-c-machine.txt`,
//! `bench-c-failures.txt`, `programs.md`, `programs.csv`, `programs.svg`,
//! `workloads.md`, `workloads.csv`, `workloads.svg`, `rss.md`, `rss.csv`,
//! `rss.svg`, `kernel.txt`, `magazine_sizes.txt`, `vec_growth.txt`,
//! `verify-shuttle.txt`, `verify-loom.txt`, `verify-mutants.txt` (excerpts
//! of the logs below), `pairs.txt`, and each command's stdout and stderr as
//! `<stage>.log`, `<stage>.err.log` (`verify-shuttle.log` etc. the whole
//! test output); and prints `report.md`. A stage whose tools are missing
//! writes a `skipped:` line naming the packages; a script that fails is
//! reported there and the report exits with status 1 after writing
//! everything else. `--no-callgrind`, `--no-atomics`, `--no-bench-c`,
//! `--no-programs`, `--no-workloads`, `--no-rss`, `--no-kernel`,
//! `--no-examples`, `--no-verify`, `--no-boundaries` leave a section out.
//!
//! Other modes, which never run the stages: `--runs-only` (only the runs
//! table, `runs.csv` and the plots: what `preload/eval.sh` runs under
//! LD_PRELOAD). `--callgrind <allocator> <workload>` is the mode that
//! `valgrind --tool=callgrind` runs (see `callgrind.rs`). `--instructions`
//! prints and writes only the callgrind table. `--atomics` prints and
//! writes (`atomics.md`, `atomics.csv`) atomic accesses per pair,
//! rebuilding itself with the counting cfg (see `atomics.rs`).

mod atomics;
mod boundaries;
mod callgrind;
mod external;
mod memory;
mod plot;
mod spread;
mod stages;
mod table;
mod verify;

use std::path::PathBuf;
use std::time::{Duration, Instant};

use clap::Parser;
use indicatif::{ProgressBar, ProgressStyle};
use magbuddy_bench::{
    run::Probe, BenchAlloc, Kind, Latency, NoProbe, RunConfig, RunResult, Workload, MAX_THREADS,
    REGION,
};
use spread::{Spread, Tail};

/// Command-line options.
#[derive(Parser, Debug)]
#[command(
    about = "magbuddy benchmark report: every table and plot of the paper (runs, memory, \
             instructions, atomics, C and real programs through LD_PRELOAD, kernel on QEMU)"
)]
pub struct Args {
    /// Less work per point, three throughput runs per point instead of five
    /// and one latency run instead of five (≤ 3 minutes on 2 cores): the
    /// median of three still drops a lone cold or preempted run, which one
    /// run would report as the figure; the latency run is a smoke pass. The
    /// external stages run their scripts' smoke variants (a CI run).
    #[arg(long)]
    quick: bool,
    /// Throughput runs and latency runs per point (default 5 of each; with
    /// `--quick` 3 throughput runs and 1 latency run).
    #[arg(long, value_parser = clap::value_parser!(u32).range(1..))]
    reps: Option<u32>,
    /// Thread counts, comma-separated (default 1,2,4,8; 1,2,4 with
    /// `--atomics`).
    #[arg(long, value_delimiter = ',')]
    threads: Vec<usize>,
    /// Directory for tables, CSV and plots (`--out papers/figures` replaces
    /// the committed ones the paper cites).
    #[arg(long, default_value = "target/report")]
    out: PathBuf,
    /// Only these workloads (comma-separated names; default all).
    #[arg(long, value_delimiter = ',')]
    workloads: Vec<String>,
    /// Only these allocators (comma-separated names; default all).
    #[arg(long, value_delimiter = ',')]
    allocators: Vec<String>,
    /// Skip the callgrind instruction counts (they need valgrind).
    #[arg(long)]
    no_callgrind: bool,
    /// Skip the atomic accesses per pair (their build with the counting cfg).
    #[arg(long)]
    no_atomics: bool,
    /// Only the callgrind instruction table (magbuddy, SpinHeap, mimalloc,
    /// jemalloc on small and page pairs), printed and written to
    /// `instructions.csv`.
    #[arg(long)]
    instructions: bool,
    /// Callgrind mode: run ALLOCATOR on WORKLOAD once and exit (what
    /// `valgrind --tool=callgrind` runs; see the instruction table). Any
    /// allocator but `snmalloc`, which valgrind cannot start.
    #[arg(long, num_args = 2, value_names = ["ALLOCATOR", "WORKLOAD"])]
    callgrind: Option<Vec<String>>,
    /// Pairs per thread in callgrind and atomics modes.
    #[arg(long, default_value_t = 20_000)]
    pairs: usize,
    /// Only the table of atomic read-modify-writes, stores and loads per
    /// pair (magbuddy, magbuddy-shared, SpinHeap; every workload or
    /// `--workloads`), printed and written to `atomics.md` and
    /// `atomics.csv`. A normal build rebuilds and re-runs itself with
    /// `--cfg magbuddy_count_atomics` in `target/count-atomics`.
    #[arg(long)]
    atomics: bool,
    /// Only the runs (report.md with the runs table, runs.csv and the two
    /// plots): what `preload/eval.sh` needs under LD_PRELOAD, where the
    /// memory, fragmentation, callgrind, atomics and target sections would
    /// only measure the in-process allocators again and cost minutes, and
    /// the external stages would run eval.sh inside itself.
    #[arg(long)]
    runs_only: bool,
    /// Skip the C benchmark programs (`bench-c/run.sh`).
    #[arg(long)]
    no_bench_c: bool,
    /// Skip the real programs through LD_PRELOAD (`preload/eval.sh
    /// --programs`, the longest stage: 918 s in full on 2026-11-30).
    #[arg(long)]
    no_programs: bool,
    /// Skip the allocator workloads through LD_PRELOAD (`preload/eval.sh
    /// --workloads`).
    #[arg(long)]
    no_workloads: bool,
    /// Skip resident memory over time (`preload/eval.sh --rss`).
    #[arg(long)]
    no_rss: bool,
    /// Skip the kernel on QEMU (`make -C kernel-demo run`).
    #[arg(long)]
    no_kernel: bool,
    /// Skip the examples `magazine_sizes` and `vec_growth`.
    #[arg(long)]
    no_examples: bool,
    /// Skip the model checkers' suites and mutants (shuttle, loom,
    /// `scripts/mutants.sh`; about 6 min, always skipped with `--quick`).
    #[arg(long)]
    no_verify: bool,
    /// Skip the instructions at the program boundaries (`Box`, 4 KiB and
    /// `bench-c/pairs.sh` pairs under callgrind).
    #[arg(long)]
    no_boundaries: bool,
}

/// Work per point.
#[derive(Clone, Copy)]
pub struct Plan {
    /// Pairs per thread per run.
    pairs: usize,
    /// Throughput runs per point (median and quartiles are reported).
    reps: usize,
    /// Latency runs per point (median and quartiles of each percentile).
    latency_reps: usize,
    /// Pairs per thread per latency run: fewer than a throughput run's,
    /// because reading the clock around every call makes a call cost about
    /// twice as much; see [`Plan::full`].
    latency_pairs: usize,
    /// Cap on one run (see `RunConfig::time_limit`).
    limit: Duration,
}

impl Plan {
    /// The full report. A latency run does a quarter of a throughput run's
    /// pairs: a call with the clock read around it costs about twice as much
    /// (≈ 1.8× per run on the 2-core VM), so five full-size latency runs
    /// would add ≈ 4 × 1.8 = 7 throughput runs' time to every point (the
    /// in-process sections would take about twice as long), while five
    /// quarter-size ones cost a quarter more than the one full-size latency
    /// run did (≈ +5 % in all). A quarter is still 100,000 calls per thread
    /// and run, 100 of them above p99.9.
    fn full() -> Self {
        Self {
            pairs: 200_000,
            reps: 5,
            latency_reps: 5,
            latency_pairs: 50_000,
            limit: Duration::from_secs(4),
        }
    }

    /// `--quick`: a smoke pass, one latency run of the throughput runs' size.
    fn quick() -> Self {
        Self {
            pairs: 16_000,
            reps: 3,
            latency_reps: 1,
            latency_pairs: 16_000,
            limit: Duration::from_millis(500),
        }
    }
}

/// One measured point.
pub struct Point {
    pub wl: Workload,
    pub threads: usize,
    pub alloc: String,
    /// Over the throughput runs.
    pub ns_pair: Spread,
    /// Over the throughput runs (each run's own Mops/s, so the quartiles are
    /// those of the runs, not reciprocals of interpolated ns/pair).
    pub mops: Spread,
    /// Throughput runs behind `ns_pair` and `mops`.
    pub reps: usize,
    /// Over the latency runs.
    pub tail: Tail,
    /// Latency runs behind `tail`.
    pub latency_reps: usize,
    pub cas_per_op: Option<f64>,
    /// Failed allocations: the most of any throughput run plus the most of
    /// any latency run.
    pub failed: u64,
    /// Whether any of the point's runs hit the time limit.
    pub truncated: bool,
}

fn main() {
    let mut args = Args::parse();
    if args.threads.is_empty() {
        args.threads = if args.atomics {
            vec![1, 2, 4]
        } else {
            vec![1, 2, 4, 8]
        };
    }
    if args.atomics && !magbuddy::sync::COUNTING_ATOMICS {
        let forwarded: Vec<String> = std::env::args().skip(1).collect();
        std::process::exit(atomics::rerun_counting(&forwarded, false));
    }
    if let Some(v) = &args.callgrind {
        callgrind::child(&v[0], &v[1], args.pairs, args.threads[0]);
        return;
    }
    std::fs::create_dir_all(&args.out).expect("create --out");
    if args.instructions {
        let csv = args.out.join("instructions.csv");
        match callgrind::table(&csv, args.quick) {
            Some(i) => println!("{}", i.markdown),
            None => std::process::exit(1),
        }
        return;
    }
    let mut plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if let Some(r) = args.reps {
        plan.reps = r as usize;
        plan.latency_reps = r as usize;
    }
    let pick = |names: &[String], all: &[&'static str]| -> Vec<&'static str> {
        all.iter()
            .copied()
            .filter(|n| names.is_empty() || names.iter().any(|m| m == n))
            .collect()
    };
    let wls: Vec<Workload> = pick(&args.workloads, &Workload::ALL.map(Workload::name))
        .into_iter()
        .filter_map(Workload::parse)
        .collect();
    let kinds: Vec<Kind> = pick(&args.allocators, &Kind::ALL.map(Kind::name))
        .into_iter()
        .filter_map(Kind::parse)
        .collect();
    if args.atomics {
        atomics::table(&args.out, &wls, &args.threads, args.pairs);
        return;
    }
    let t0 = Instant::now();
    let allocs: Vec<Box<dyn BenchAlloc>> =
        kinds.iter().map(|k| k.build(REGION, MAX_THREADS)).collect();
    // The load around the runs, so a reader sees whether other work shared
    // the machine with them.
    let load_start = table::loadavg();
    let points = measure(&allocs, &wls, &args.threads, plan);
    let load = [load_start, table::loadavg()];
    drop(allocs);
    // Set when a stage's script fails: the report still writes everything,
    // then exits non-zero so CI notices.
    let mut failed = false;
    let mut md = table::header(&args, plan, &load);
    md += &table::summary(&points);
    md += &table::runs(&points, &args.threads, &kinds);
    table::write_csv(&args.out.join("runs.csv"), &points);
    plot::scaling(&args.out.join("scaling.svg"), &points, &args.threads);
    plot::latency(&args.out.join("latency.svg"), &points, &args.threads);
    if !args.runs_only {
        eprintln!("memory and fragmentation ...");
        let mem = memory::metadata(&args.out.join("memory.csv"));
        md += &mem.markdown;
        md += &memory::fragmentation(&args.out.join("fragmentation.csv"), &kinds, plan.pairs);
        let instr = if args.no_callgrind {
            None
        } else {
            eprintln!("callgrind ...");
            callgrind::table(&args.out.join("instructions.csv"), args.quick)
        };
        if let Some(i) = &instr {
            md += &i.markdown;
        }
        if !args.no_atomics {
            eprintln!("atomic accesses ...");
            if let Some(a) = atomics::embedded(&args.out, &args.workloads) {
                md += &a;
            }
        }
        md += &table::targets(&points, instr.as_ref(), &mem);
        // Last, so the in-process tables are written whatever they do.
        let ext = stages::run_all(&args, &args.out);
        md += &ext.markdown;
        failed |= ext.failed;
    }
    md += &format!("\nReport took {:.0} s.\n", t0.elapsed().as_secs_f64());
    std::fs::write(args.out.join("report.md"), &md).expect("write report.md");
    println!("{md}");
    if failed {
        eprintln!("a stage failed (see report.md): exit status 1");
        std::process::exit(1);
    }
}

/// Runs every point. Per workload and thread count, the throughput runs
/// interleave the allocators (run 1 of each, then run 2 of each, ...), so a
/// slow drift or a burst of load on a shared machine hits all of them alike
/// rather than whichever allocator's runs it happened to fall on; then the
/// latency runs, interleaved the same way.
fn measure(
    allocs: &[Box<dyn BenchAlloc>],
    wls: &[Workload],
    threads: &[usize],
    plan: Plan,
) -> Vec<Point> {
    let groups: Vec<(Workload, usize, Vec<&dyn BenchAlloc>)> = wls
        .iter()
        .flat_map(|&wl| threads.iter().map(move |&t| (wl, t)))
        .map(|(wl, t)| {
            let here = allocs
                .iter()
                .map(|a| a.as_ref())
                .filter(|a| wl.fits(*a))
                .collect();
            (wl, t, here)
        })
        .collect();
    let runs: usize = groups
        .iter()
        .map(|g| g.2.len() * (plan.reps + plan.latency_reps))
        .sum();
    let bar = ProgressBar::new(runs as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} runs {msg}")
            .expect("progress template"),
    );
    let mut points = Vec::new();
    for (wl, t, here) in groups {
        let cfg = RunConfig {
            threads: t,
            pairs: plan.pairs,
            seed: 42,
            time_limit: Some(plan.limit),
            keep: false,
        };
        let latency_cfg = RunConfig {
            pairs: plan.latency_pairs,
            ..cfg
        };
        let group = Group {
            wl,
            allocs: &here,
            bar: &bar,
        };
        let before: Vec<_> = here.iter().map(|a| a.counters()).collect();
        let thr = group.interleaved::<NoProbe>(&cfg, plan.reps, "run");
        let after: Vec<_> = here.iter().map(|a| a.counters()).collect();
        let lat = group.interleaved::<Latency>(&latency_cfg, plan.latency_reps, "latency");
        for (((a, runs), lat), (before, after)) in here
            .iter()
            .zip(thr)
            .zip(lat)
            .zip(before.into_iter().zip(after))
        {
            let cas_per_op = before.zip(after).map(|(b, a)| {
                (a.cas_retries - b.cas_retries) as f64 / (a.ops - b.ops).max(1) as f64
            });
            let of = |f: fn(&RunResult) -> f64| Spread::of(&runs.iter().map(f).collect::<Vec<_>>());
            let hists: Vec<_> = lat
                .iter()
                .map(|r| r.hist.as_ref().expect("latency histogram"))
                .collect();
            let most_failed = |v: &[RunResult]| v.iter().map(|r| r.failed).max().unwrap_or(0);
            points.push(Point {
                wl,
                threads: t,
                alloc: a.name().to_string(),
                ns_pair: of(RunResult::ns_per_pair),
                mops: of(RunResult::mops),
                reps: runs.len(),
                tail: Tail::of(&hists),
                latency_reps: lat.len(),
                cas_per_op,
                failed: most_failed(&runs) + most_failed(&lat),
                truncated: runs.iter().chain(&lat).any(|r| r.truncated),
            });
        }
    }
    bar.finish();
    points
}

/// The allocators that run one workload at one thread count.
struct Group<'a> {
    wl: Workload,
    allocs: &'a [&'a dyn BenchAlloc],
    bar: &'a ProgressBar,
}

impl Group<'_> {
    /// `reps` runs of each allocator with probe `P`, interleaved (run 1 of
    /// every allocator, then run 2, ...); per allocator, in `allocs` order.
    fn interleaved<P: Probe>(
        &self,
        cfg: &RunConfig,
        reps: usize,
        what: &str,
    ) -> Vec<Vec<RunResult>> {
        let mut out: Vec<Vec<RunResult>> = self.allocs.iter().map(|_| Vec::new()).collect();
        for rep in 1..=reps {
            for (a, runs) in self.allocs.iter().zip(&mut out) {
                self.bar.set_message(format!(
                    "{}/{} {} {what} {rep}",
                    self.wl.name(),
                    cfg.threads,
                    a.name()
                ));
                runs.push(self.wl.run::<P>(*a, cfg));
                self.bar.inc(1);
            }
        }
        out
    }
}
