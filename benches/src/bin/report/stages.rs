//! The stages after the in-process sections: the tables of the paper that
//! come from outside this process (C programs, real programs, the
//! allocator workloads and resident memory through `LD_PRELOAD`, the kernel
//! on QEMU, the examples, the model checkers' suites and seeded bugs,
//! instructions at the program boundaries). One function per stage says
//! what it runs, needs and keeps; `external.rs` runs it. Full mode runs
//! what the paper's tables came from, `--quick` each script's smoke variant
//! (the model checkers, without one, are skipped).

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use crate::external::{self, Need, Section, Stage};
use crate::{boundaries, verify, Args};

/// Debian's shared libraries of the other allocators, as the scripts look
/// for them.
const MIMALLOC: Need = Need::File(
    "/usr/lib/x86_64-linux-gnu/libmimalloc.so.2",
    "libmimalloc2.0",
);
const JEMALLOC: Need = Need::File("/usr/lib/x86_64-linux-gnu/libjemalloc.so.2", "libjemalloc2");
const TCMALLOC: Need = Need::File(
    "/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4",
    "libtcmalloc-minimal4",
);
/// Wall time and peak RSS of every execution (the scripts' `/usr/bin/time -f`).
const TIME: Need = Need::File("/usr/bin/time", "time");

fn strings(v: &[&str]) -> Vec<String> {
    v.iter().map(|s| s.to_string()).collect()
}

/// The field's benchmark programs in C under five allocators (§4.8):
/// `bench-c/run.sh 3` as in the paper, `--quick` its smoke run.
pub fn bench_c(quick: bool) -> Stage {
    Stage {
        id: "bench-c",
        heading: "C benchmark programs through malloc (LD_PRELOAD)",
        command: strings(&["bench-c/run.sh", if quick { "--quick" } else { "3" }]),
        needs: vec![
            Need::Program("cc", "gcc"),
            Need::Program("python3", "python3"),
            TIME,
        ],
        // run.sh leaves an allocator out when its library is missing.
        optional: vec![MIMALLOC, JEMALLOC, TCMALLOC],
        files: vec![
            ("target/bench-c/summary.md", "bench-c-summary.md"),
            ("target/bench-c/results.csv", "bench-c-results.csv"),
            ("target/bench-c/machine.txt", "bench-c-machine.txt"),
            ("target/bench-c/failures.txt", "bench-c-failures.txt"),
        ],
        embed: vec!["bench-c-summary.md"],
        ..Stage::default()
    }
}

/// A mode of `preload/eval.sh`, whose first file is its table (markdown):
/// every mode makes its inputs with `/usr/bin/python3` and stops without
/// mimalloc; jemalloc's and tcmalloc's columns are left out without them.
fn eval_sh(
    id: &'static str,
    heading: &'static str,
    args: &[&str],
    needs: Vec<Need>,
    files: Vec<(&'static str, &'static str)>,
) -> Stage {
    let mut command = strings(&["preload/eval.sh"]);
    command.extend(strings(args));
    Stage {
        id,
        heading,
        command,
        // eval.sh runs this python, not the first on PATH.
        needs: [
            needs,
            vec![Need::File("/usr/bin/python3", "python3"), MIMALLOC],
        ]
        .concat(),
        optional: vec![JEMALLOC, TCMALLOC],
        embed: vec![files[0].1],
        files,
        ..Stage::default()
    }
}

/// Ten real programs under glibc, the shim, mimalloc, jemalloc, tcmalloc
/// (§4.8): `preload/eval.sh 3 --programs` as in the paper, `1 --quick
/// --programs` for a smoke run.
pub fn programs(quick: bool) -> Stage {
    let args = if quick {
        &["1", "--quick", "--programs"][..]
    } else {
        &["3", "--programs"][..]
    };
    eval_sh(
        "programs",
        "Real programs through malloc (LD_PRELOAD)",
        args,
        vec![
            Need::Program("sqlite3", "sqlite3"),
            Need::Program("xz", "xz-utils"),
            Need::Program("zstd", "zstd"),
            Need::Program("gzip", "gzip"),
            Need::Program("gcc", "gcc"),
            Need::Program("perl", "perl"),
            Need::Program("git", "git"),
            TIME,
        ],
        vec![
            ("target/preload/eval-programs.md", "programs.md"),
            ("target/preload/eval.csv", "programs.csv"),
            ("target/preload/eval.svg", "programs.svg"),
        ],
    )
}

/// The report's larson, remote and churn workloads on libc malloc under
/// each preloaded allocator (`figures/workloads.*`):
/// `preload/eval.sh --workloads`, the median of 9 report runs each (66 s
/// on 2026-11-30); `--quick` one `--quick` report run each.
pub fn workloads(quick: bool) -> Stage {
    let args = if quick {
        &["--quick", "--workloads"][..]
    } else {
        &["--workloads"][..]
    };
    eval_sh(
        "workloads",
        "Allocator workloads through malloc (LD_PRELOAD)",
        args,
        vec![],
        vec![
            ("target/preload/eval-workloads.md", "workloads.md"),
            ("target/preload/workloads.csv", "workloads.csv"),
            ("target/preload/workloads.svg", "workloads.svg"),
        ],
    )
}

/// Resident memory over time (§2.6): `preload/eval.sh 3 --rss` as in the
/// paper (160 s); `--quick` one run per allocator, the smallest the
/// script has (`rss_phases` has one size).
pub fn rss(quick: bool) -> Stage {
    eval_sh(
        "rss",
        "Resident memory over time (LD_PRELOAD)",
        &[if quick { "1" } else { "3" }, "--rss"],
        // rss_phases.c is compiled by eval.sh.
        vec![Need::Program("cc", "gcc")],
        vec![
            ("target/preload/rss-eval.md", "rss.md"),
            ("target/preload/rss.csv", "rss.csv"),
            ("target/preload/rss.svg", "rss.svg"),
        ],
    )
}

/// A command (words split at spaces) whose stdout is its table, kept as
/// `txt` and embedded.
fn printed(id: &'static str, heading: &'static str, command: &str, txt: &'static str) -> Stage {
    Stage {
        id,
        heading,
        command: command.split_whitespace().map(String::from).collect(),
        stdout_as: Some(txt),
        embed: vec![txt],
        ..Stage::default()
    }
}

/// The kernel on QEMU (§4.7): 8 vCPUs and 2 GiB as in the paper; `--quick`
/// boots 2 vCPUs with 256 MiB (`make test`'s size), about a minute.
pub fn kernel(quick: bool) -> Stage {
    let (smp, mem) = if quick { ("2", "256M") } else { ("8", "2G") };
    let command = format!("make -C kernel-demo run SMP={smp} MEM={mem} SCALE=1");
    Stage {
        needs: vec![
            Need::Program("make", "make"),
            Need::Program("qemu-system-x86_64", "qemu-system-x86"),
            Need::Target("x86_64-unknown-none"),
        ],
        ..printed("kernel", "Kernel on QEMU", &command, "kernel.txt")
    }
}

/// The two examples the paper and `design.md` cite: magazine sizes against
/// producer/consumer cost (`design.md` §5) and the `Vec` patterns under
/// `MagbuddyAlloc` and the system allocator (§2.2). Neither has a smaller
/// variant, so `--quick` runs them as they are: seconds each once built
/// (≈ 1 min with their build).
pub fn examples() -> Vec<Stage> {
    vec![
        printed(
            "magazine-sizes",
            "Magazine sizes (examples/magazine_sizes.rs)",
            "cargo run --release --example magazine_sizes",
            "magazine_sizes.txt",
        ),
        printed(
            "vec-growth",
            "Vec growth under MagbuddyAlloc (examples/vec_growth.rs)",
            "cargo run --release --features std --example vec_growth",
            "vec_growth.txt",
        ),
    ]
}

/// Why `--quick` leaves the model checkers out.
const VERIFY_QUICK: &str = "`--quick` leaves the model checkers out: they have no smaller \
     variant than the paper's (`MAGBUDDY_VERIFY_SCALE` only multiplies the suites' \
     schedules) and CI runs them in `scripts/test-all.sh`; about 6 min without `--quick`";

/// The model checkers' suites, whose printed counts are §3.2's and §3.3's
/// tables, invoked as `scripts/test-all.sh` invokes them (same variables and
/// target directories, so the two share their builds). Each log stays whole
/// in `--out`; the report embeds the excerpt `verify.rs` takes of it.
pub fn verify(quick: bool) -> Vec<Stage> {
    let skip = quick.then_some(VERIFY_QUICK);
    let loom_tests = "--test loom_area --test loom_buddy --test loom_fastpath --test loom_mutants";
    vec![
        Stage {
            env: vec![
                ("RUSTFLAGS", "--cfg shuttle"),
                ("CARGO_TARGET_DIR", "target/shuttle"),
            ],
            skip,
            excerpt: Some(verify::suites),
            ..printed(
                "verify-shuttle",
                "Shuttle suites and mutants (§3.2, §3.3)",
                "cargo test -p verify --profile verify -- --show-output",
                "verify-shuttle.txt",
            )
        },
        Stage {
            env: vec![
                ("RUSTFLAGS", "--cfg loom"),
                ("LOOM_MAX_PREEMPTIONS", "2"),
                ("CARGO_TARGET_DIR", "target/loom"),
            ],
            skip,
            excerpt: Some(verify::suites),
            ..printed(
                "verify-loom",
                "Loom models and mutants (§3.2, §3.3)",
                &format!("cargo test -p verify --profile verify {loom_tests} -- --show-output"),
                "verify-loom.txt",
            )
        },
        Stage {
            skip,
            excerpt: Some(verify::verdicts),
            ..printed(
                "verify-mutants",
                "Seeded soundness bugs (scripts/mutants.sh, §3.3)",
                "scripts/mutants.sh",
                "verify-mutants.txt",
            )
        },
    ]
}

/// Runs the stages `args` leaves on, in order, under one progress bar;
/// returns their sections (one `failed` if any script failed).
pub fn run_all(args: &Args, out: &Path) -> Section {
    let q = args.quick;
    let mut scripts: Vec<Stage> = Vec::new();
    if !args.no_bench_c {
        scripts.push(bench_c(q));
    }
    if !args.no_programs {
        scripts.push(programs(q));
    }
    if !args.no_workloads {
        scripts.push(workloads(q));
    }
    if !args.no_rss {
        scripts.push(rss(q));
    }
    if !args.no_kernel {
        scripts.push(kernel(q));
    }
    if !args.no_examples {
        scripts.extend(examples());
    }
    if !args.no_verify {
        scripts.extend(verify(q));
    }
    let n = scripts.len() + usize::from(!args.no_boundaries);
    let bar = ProgressBar::new(n as u64);
    bar.set_style(
        ProgressStyle::with_template("{elapsed_precise} [{bar:20}] {pos}/{len} stages {msg}")
            .expect("progress template"),
    );
    let mut all = Section {
        markdown: String::new(),
        failed: false,
    };
    let mut add = |s: Section| {
        all.markdown += &s.markdown;
        all.failed |= s.failed;
        bar.inc(1);
    };
    for s in &scripts {
        bar.set_message(format!("{}: {}", s.id, external::shown(s)));
        add(external::stage(s, out, &bar));
    }
    if !args.no_boundaries {
        bar.set_message("boundaries: callgrind");
        add(boundaries::section(out, &bar));
    }
    bar.finish_with_message("done");
    all
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every stage of both modes.
    fn all(quick: bool) -> Vec<Stage> {
        let mut v = vec![
            bench_c(quick),
            programs(quick),
            workloads(quick),
            rss(quick),
            kernel(quick),
        ];
        v.extend(examples());
        v.extend(verify(quick));
        v
    }

    #[test]
    fn embedded_files_are_kept_files() {
        for s in all(false).into_iter().chain(all(true)) {
            for e in &s.embed {
                let kept = s.files.iter().any(|f| f.1 == *e) || s.stdout_as == Some(*e);
                assert!(kept, "{}: {e} is neither copied nor its stdout", s.id);
            }
        }
    }

    #[test]
    fn quick_skips_only_the_model_checkers() {
        for s in all(true) {
            assert_eq!(s.skip.is_some(), s.id.starts_with("verify-"), "{}", s.id);
        }
        assert!(all(false).iter().all(|s| s.skip.is_none()));
    }
}
