//! Instructions per pair at the program boundaries (§4.5), outside the
//! benchmark harness: a Rust `Box` through `MagbuddyAlloc` and through the
//! mimalloc crate (`examples/box_pairs.rs`, `box_pairs_mimalloc`), a 4 KiB
//! page through a thread-local handle and its alternatives (`page_pairs`),
//! and a C `malloc`+`free` through `LD_PRELOAD` (`bench-c/pairs.sh`).
//!
//! The method is the one in those files' doc comments, done here so the
//! report reproduces their figures: each program under callgrind at 10,000
//! and 30,000 pairs, (difference in instructions) / 20,000, so start-up
//! cancels. "Net of the loop": for `Box`, the difference of the inclusive
//! counts of the allocator's entry points (`callgrind_annotate
//! --inclusive=yes`); for pages, minus `page_pairs empty` (the loop alone).
//! `pairs.sh` counts its C loop with the pair, so it has no net figure.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

use indicatif::ProgressBar;

use crate::callgrind::{self, Counted};
use crate::external::{self, Need, Section, Stage};

/// The two work sizes.
const N: [u64; 2] = [10_000, 30_000];

/// `page_pairs`' modes, what each calls, in the table's order (`empty`,
/// the loop alone, is subtracted from the others).
const PAGE_MODES: [(&str, &str); 4] = [
    ("magbuddy", "`Handle` via a thread-local pointer"),
    ("magbuddy-owned", "`Handle` owned by a thread-local"),
    ("global", "`MagbuddyAlloc` (`GlobalAlloc`)"),
    ("buddy_system", "`buddy_system_allocator::LockedHeap`"),
];

/// One program's two runs under callgrind; `None` if either failed.
fn two_runs(exe: &Path, mode: Option<&str>) -> Option<[Counted; 2]> {
    let name = exe.file_name()?.to_string_lossy().into_owned();
    let run = |n: u64| {
        let n = n.to_string();
        let args: Vec<&str> = mode.into_iter().chain([n.as_str()]).collect();
        let tag = format!("{name}-{}-{n}", mode.unwrap_or(""));
        callgrind::count(exe, &args, &tag)
    };
    Some([run(N[0])?, run(N[1])?])
}

/// Instructions per pair of the two runs.
fn per_pair(r: &[Counted; 2]) -> f64 {
    callgrind::per_pair((r[0].total, N[0]), (r[1].total, N[1]))
}

/// `cargo build` of the programs, into the target directory this report
/// runs from (its own binary's directory is where they land).
fn build() -> Result<(), String> {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let manifest = external::root().join("Cargo.toml");
    for args in [
        &["--features", "std", "--example", "box_pairs"][..],
        &[
            "-p",
            "magbuddy-bench",
            "--bin",
            "box_pairs_mimalloc",
            "--bin",
            "page_pairs",
        ][..],
    ] {
        let st = Command::new(&cargo)
            .args(["build", "-q", "--release", "--manifest-path"])
            .arg(&manifest)
            .args(args)
            .status()
            .map_err(|e| format!("cannot run cargo: {e}"))?;
        if !st.success() {
            return Err(format!("`cargo build --release {}` failed", args.join(" ")));
        }
    }
    Ok(())
}

/// The table's rows from `bench-c/pairs.sh`'s stdout (`name  instructions`
/// per line).
pub fn parse_pairs(text: &str) -> Vec<(String, f64)> {
    text.lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            let (name, v) = (w.next()?, w.next()?.parse().ok()?);
            w.next().is_none().then(|| (name.to_string(), v))
        })
        .collect()
}

/// The section: one table of every figure above.
pub fn section(out: &Path, bar: &ProgressBar) -> Section {
    let mut md = String::from("\n## Instructions at the program boundaries\n\n");
    let needs = [
        Need::Program("valgrind", "valgrind"),
        Need::Program("callgrind_annotate", "valgrind"),
        Need::Program("cc", "gcc"),
        Need::Program("bc", "bc"),
    ];
    let lacking = external::missing(&needs);
    if !lacking.is_empty() {
        md += &external::skipped_line(&lacking);
        return Section {
            markdown: md,
            failed: false,
        };
    }
    let mut failed = Vec::new();
    bar.set_message("boundaries: cargo build of box_pairs, page_pairs");
    if let Err(e) = build() {
        failed.push(e);
    }
    let dir: PathBuf = std::env::current_exe()
        .ok()
        .and_then(|e| e.parent().map(Path::to_path_buf))
        .unwrap_or_default();
    let _ = write!(
        md,
        "Each program under `valgrind --tool=callgrind` at {} and {} pairs; (difference in \
         instructions) / {}, so start-up cancels. Net of the loop: for `Box`, the same \
         difference of the inclusive counts of the allocator's entry points \
         (`callgrind_annotate --inclusive=yes`: `__rust_alloc_zeroed` + `__rust_dealloc` for \
         `MagbuddyAlloc`; `mi_zalloc_aligned` + `mi_free` for the mimalloc crate, whose \
         `__rust_*` shims are inlined into the loop); for 4 KiB pages, minus `page_pairs \
         empty`, the loop alone. `bench-c/pairs.sh` counts its C loop with the pair.\n\n\
         | pair | program | allocator, boundary | instructions/pair | net of the loop |\n\
         |---|---|---|---:|---:|\n",
        N[0],
        N[1],
        N[1] - N[0]
    );
    let boxes = [
        (
            "examples/box_pairs",
            "`MagbuddyAlloc` (`#[global_allocator]`)",
            ["__rust_alloc_zeroed", "__rust_dealloc"],
        ),
        (
            "box_pairs_mimalloc",
            "mimalloc crate (`#[global_allocator]`)",
            ["mi_zalloc_aligned", "mi_free"],
        ),
    ];
    for (exe, who, entries) in boxes {
        bar.set_message(format!("boundaries: callgrind {exe}"));
        let Some(r) = two_runs(&dir.join(exe), None) else {
            failed.push(format!("callgrind of {exe}"));
            continue;
        };
        let net = callgrind::inclusive(&r[0], &entries)
            .zip(callgrind::inclusive(&r[1], &entries))
            .map(|(a, b)| callgrind::per_pair((a, N[0]), (b, N[1])));
        let _ = writeln!(
            md,
            "| `Box` 8–128 B, ring of 64 | `{exe}` | {who} | {:.2} | {} |",
            per_pair(&r),
            net.map_or("n/a".into(), |v| format!("{v:.2}"))
        );
    }
    bar.set_message("boundaries: callgrind page_pairs");
    let page = dir.join("page_pairs");
    let empty = two_runs(&page, Some("empty")).map(|r| per_pair(&r));
    if empty.is_none() {
        failed.push("callgrind of page_pairs empty".into());
    }
    for (mode, who) in PAGE_MODES {
        let Some(r) = two_runs(&page, Some(mode)) else {
            failed.push(format!("callgrind of page_pairs {mode}"));
            continue;
        };
        let v = per_pair(&r);
        let _ = writeln!(
            md,
            "| 4 KiB, freed at once | `page_pairs {mode}` | {who} | {v:.2} | {} |",
            empty.map_or("n/a".into(), |e| format!("{:.2}", v - e))
        );
    }
    let pairs = Stage {
        id: "pairs",
        command: vec!["bench-c/pairs.sh".into()],
        ..Stage::default()
    };
    let ran = external::run(&pairs, out, bar);
    let text = std::fs::read_to_string(&ran.log).unwrap_or_default();
    let _ = std::fs::write(out.join("pairs.txt"), &text);
    for (name, v) in parse_pairs(&text) {
        let how = if name == "glibc" {
            "glibc (no preload)".to_string()
        } else {
            format!("{name} via `LD_PRELOAD`")
        };
        let _ = writeln!(
            md,
            "| C `malloc`+`free` 8–128 B, ring of 64 | `bench-c/pairs.sh` | {how} | {v:.1} | \
             (loop included) |"
        );
    }
    if !ran.ok() {
        failed.push(format!(
            "`bench-c/pairs.sh`: {} (see `pairs.err.log`)",
            ran.status()
        ));
    }
    if !failed.is_empty() {
        let _ = writeln!(md, "\n**failed**: {}.", failed.join("; "));
    }
    Section {
        markdown: md,
        failed: !failed.is_empty(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pairs_lines() {
        let rows = parse_pairs("glibc      161.2\nmagbuddy    99.2\nnoise here x\n\n");
        assert_eq!(
            rows,
            vec![("glibc".to_string(), 161.2), ("magbuddy".to_string(), 99.2)]
        );
    }
}
