//! The stages after the in-process sections: the tables of the paper that
//! come from outside this process (C programs and real programs through
//! `LD_PRELOAD`, the kernel on QEMU, instructions at the program
//! boundaries). One function per stage says what it runs, needs and keeps;
//! `external.rs` runs it. Full mode runs what the paper's tables came from,
//! `--quick` each script's smoke variant.

use std::path::Path;

use indicatif::{ProgressBar, ProgressStyle};

use crate::external::{self, Need, Section, Stage};
use crate::{boundaries, Args};

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
        stdout_as: None,
        embed: vec!["bench-c-summary.md"],
    }
}

/// Ten real programs under glibc, the shim, mimalloc, jemalloc, tcmalloc
/// (§4.8): `preload/eval.sh 3 --programs` as in the paper, `1 --quick
/// --programs` for a smoke run. Only the programs: eval.sh's other stages
/// (workloads under LD_PRELOAD, RSS over time) are not tables of the paper.
pub fn programs(quick: bool) -> Stage {
    let runs = if quick {
        &["preload/eval.sh", "1", "--quick", "--programs"][..]
    } else {
        &["preload/eval.sh", "3", "--programs"][..]
    };
    Stage {
        id: "programs",
        heading: "Real programs through malloc (LD_PRELOAD)",
        command: strings(runs),
        needs: vec![
            Need::Program("sqlite3", "sqlite3"),
            Need::Program("xz", "xz-utils"),
            Need::Program("zstd", "zstd"),
            Need::Program("gzip", "gzip"),
            Need::Program("gcc", "gcc"),
            Need::Program("perl", "perl"),
            Need::Program("git", "git"),
            // eval.sh runs this python, not the first on PATH.
            Need::File("/usr/bin/python3", "python3"),
            TIME,
            // eval.sh stops without it.
            MIMALLOC,
        ],
        optional: vec![JEMALLOC, TCMALLOC],
        files: vec![
            ("target/preload/eval-programs.md", "programs.md"),
            ("target/preload/eval.csv", "programs.csv"),
            ("target/preload/eval.svg", "programs.svg"),
        ],
        stdout_as: None,
        embed: vec!["programs.md"],
    }
}

/// The kernel on QEMU (§4.7): 8 vCPUs and 2 GiB as in the paper; `--quick`
/// boots 2 vCPUs with 256 MiB (`make test`'s size), about a minute.
pub fn kernel(quick: bool) -> Stage {
    let (smp, mem) = if quick { ("2", "256M") } else { ("8", "2G") };
    Stage {
        id: "kernel",
        heading: "Kernel on QEMU",
        command: vec![
            "make".into(),
            "-C".into(),
            "kernel-demo".into(),
            "run".into(),
            format!("SMP={smp}"),
            format!("MEM={mem}"),
            "SCALE=1".into(),
        ],
        needs: vec![
            Need::Program("make", "make"),
            Need::Program("qemu-system-x86_64", "qemu-system-x86"),
            Need::Target("x86_64-unknown-none"),
        ],
        optional: vec![],
        files: vec![],
        stdout_as: Some("kernel.txt"),
        embed: vec!["kernel.txt"],
    }
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
    if !args.no_kernel {
        scripts.push(kernel(q));
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
        bar.set_message(format!("{}: {}", s.id, external::shown(&s.command)));
        add(external::stage(s, out, &bar));
    }
    if !args.no_boundaries {
        bar.set_message("boundaries: callgrind");
        add(boundaries::section(out, &bar));
    }
    bar.finish_with_message("done");
    all
}
