//! Stages that run one of the repository's own scripts or commands
//! (`bench-c/run.sh`, `preload/eval.sh`, `make -C kernel-demo run`, the
//! examples, the model checkers' `cargo test`s, `scripts/mutants.sh`,
//! `bench-c/pairs.sh`) and fold their output into the report, so one
//! command regenerates every table of the paper. The scripts stay the one
//! definition of their measurements (they are also run by hand and in CI);
//! this module only checks what they need, runs them, copies their fresh
//! outputs into `--out` and embeds their markdown.
//!
//! A stage whose prerequisites are missing writes one `skipped:` line naming
//! the packages to install, instead of failing the whole report: a machine
//! without QEMU still gets every other table. A script that runs and fails
//! is reported in `report.md` and makes the report exit non-zero at the end,
//! so CI notices.

use std::fmt::Write as _;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime};

use indicatif::ProgressBar;

/// The repository root (the scripts' paths and working directory).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("benches/ is in the workspace")
        .to_path_buf()
}

/// A prerequisite of a stage, with what installs it.
#[derive(Clone, Copy, Debug)]
pub enum Need {
    /// A program on `PATH`, and the Debian package that has it.
    Program(&'static str, &'static str),
    /// A file (a shared library, `/usr/bin/time`), and its Debian package.
    File(&'static str, &'static str),
    /// A Rust target installed with rustup.
    Target(&'static str),
}

impl Need {
    /// Whether it is there.
    pub fn met(&self) -> bool {
        match *self {
            Need::Program(p, _) => std::env::var_os("PATH")
                .is_some_and(|path| std::env::split_paths(&path).any(|d| d.join(p).is_file())),
            Need::File(f, _) => Path::new(f).exists(),
            Need::Target(t) => Command::new("rustup")
                .args(["target", "list", "--installed"])
                .output()
                .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).lines().any(|l| l == t)),
        }
    }

    /// What is missing, as the skipped line names it.
    fn what(&self) -> String {
        match *self {
            Need::Program(p, _) | Need::File(p, _) => p.to_string(),
            Need::Target(t) => format!("the Rust target {t}"),
        }
    }
}

/// The unmet ones of `needs`.
pub fn missing(needs: &[Need]) -> Vec<Need> {
    needs.iter().copied().filter(|n| !n.met()).collect()
}

/// "`a`, `b` not found, install `apt-get install -y p q`" (packages once
/// each, rustup targets as their own command): the line a reader can act on.
pub fn not_found(missing: &[Need]) -> String {
    let whats: Vec<String> = missing.iter().map(|n| format!("`{}`", n.what())).collect();
    let mut packages: Vec<&str> = Vec::new();
    let mut targets: Vec<&str> = Vec::new();
    for n in missing {
        match *n {
            Need::Program(_, p) | Need::File(_, p) if !packages.contains(&p) => packages.push(p),
            Need::Target(t) => targets.push(t),
            _ => {}
        }
    }
    let mut how = Vec::new();
    if !packages.is_empty() {
        how.push(format!("`apt-get install -y {}`", packages.join(" ")));
    }
    if !targets.is_empty() {
        how.push(format!("`rustup target add {}`", targets.join(" ")));
    }
    format!(
        "{} not found, install {}",
        whats.join(", "),
        how.join(" and ")
    )
}

/// The line a stage writes instead of its tables when `missing` is not
/// empty.
pub fn skipped_line(missing: &[Need]) -> String {
    format!("skipped: {}.\n", not_found(missing))
}

/// One script run as a report stage.
#[derive(Default)]
pub struct Stage {
    /// Short name: `<id>.log` / `<id>.err.log` (the script's stdout and
    /// stderr) in `--out`, and the `--no-<id>` flag (or its group's:
    /// `--no-examples`, `--no-verify`).
    pub id: &'static str,
    /// The section's heading in `report.md`.
    pub heading: &'static str,
    /// The program (a path relative to the root, or a name on `PATH`) and
    /// its arguments.
    pub command: Vec<String>,
    /// Variables set for the command (the model checkers' cfgs and target
    /// directories, as `scripts/test-all.sh` sets them, so the two share
    /// their builds).
    pub env: Vec<(&'static str, &'static str)>,
    /// Why this run leaves the stage out although asked for (a `--quick`
    /// run of a stage without a smaller variant), as its section says.
    pub skip: Option<&'static str>,
    /// Without these the stage is skipped.
    pub needs: Vec<Need>,
    /// Without these the script still runs and leaves a part out (an
    /// allocator's column); the report says which.
    pub optional: Vec<Need>,
    /// Files the script writes (relative to the root) and their names in
    /// `--out`.
    pub files: Vec<(&'static str, &'static str)>,
    /// The script's stdout copied under this name (the kernel prints its
    /// tables on the serial console, not into a file).
    pub stdout_as: Option<&'static str>,
    /// What of the stdout `stdout_as` keeps, when not all of it: the test
    /// suites print thousands of lines around the few counts the paper
    /// cites, which stay whole in `<id>.log`.
    pub excerpt: Option<fn(&str) -> String>,
    /// Names in `--out` whose contents go into `report.md` (markdown as is,
    /// with its headings moved under the section's; anything else fenced).
    pub embed: Vec<&'static str>,
}

/// A stage's part of `report.md`, and whether its script failed.
pub struct Section {
    pub markdown: String,
    pub failed: bool,
}

/// How a script ended.
pub struct Ran {
    /// Exit code, `None` if killed by a signal or not started.
    pub code: Option<i32>,
    pub secs: f64,
    /// Its stdout, in `--out`.
    pub log: PathBuf,
    /// Its stderr, in `--out`.
    pub err: PathBuf,
    /// When it started (files older than this are not its output).
    pub start: SystemTime,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }

    /// "exit status 1", or how it did not exit.
    pub fn status(&self) -> String {
        match self.code {
            Some(c) => format!("exit status {c}"),
            None => "killed by a signal or not started".into(),
        }
    }
}

/// The stage's command as a reader would type it, its variables first.
pub fn shown(stage: &Stage) -> String {
    let vars = stage.env.iter().map(|(k, v)| {
        if v.contains(' ') {
            format!("{k}=\"{v}\"")
        } else {
            format!("{k}={v}")
        }
    });
    vars.chain(stage.command.iter().cloned())
        .collect::<Vec<_>>()
        .join(" ")
}

/// Runs `stage`'s command from the root, its stdout and stderr into
/// `--out`, showing the last line either printed on `bar`.
///
/// `CARGO_TARGET_DIR` is removed from its environment (unless the stage sets
/// it): the scripts find the shim and their binaries under the root's
/// `target/` (and the kernel under `kernel-demo/target/`), where a `cargo
/// build` without it puts them.
pub fn run(stage: &Stage, out: &Path, bar: &ProgressBar) -> Ran {
    let root = root();
    let log = out.join(format!("{}.log", stage.id));
    let err = out.join(format!("{}.err.log", stage.id));
    let start = SystemTime::now();
    let t0 = Instant::now();
    let program = &stage.command[0];
    let exe = if root.join(program).is_file() {
        root.join(program)
    } else {
        PathBuf::from(program)
    };
    let spawned = File::create(&log)
        .and_then(|o| Ok((o, File::create(&err)?)))
        .and_then(|(o, e)| {
            Command::new(exe)
                .args(&stage.command[1..])
                .current_dir(&root)
                .env_remove("CARGO_TARGET_DIR")
                .envs(stage.env.iter().copied())
                .stdin(Stdio::null())
                .stdout(o)
                .stderr(e)
                .spawn()
        });
    let mut code = None;
    match spawned {
        Ok(mut child) => {
            let mut sizes = (0, 0);
            loop {
                match child.try_wait() {
                    Ok(Some(st)) => {
                        code = st.code();
                        break;
                    }
                    Ok(None) => {}
                    Err(_) => break,
                }
                let now = (len(&log), len(&err));
                // The stream that grew last: progress lines go to either.
                let newest = if now.0 != sizes.0 || now.1 == sizes.1 {
                    &log
                } else {
                    &err
                };
                sizes = now;
                bar.set_message(format!("{}: {}", stage.id, last_line(newest)));
                std::thread::sleep(Duration::from_millis(300));
            }
        }
        Err(e) => eprintln!("{}: cannot start {}: {e}", stage.id, shown(stage)),
    }
    Ran {
        code,
        secs: t0.elapsed().as_secs_f64(),
        log,
        err,
        start,
    }
}

fn len(p: &Path) -> u64 {
    std::fs::metadata(p).map(|m| m.len()).unwrap_or(0)
}

/// The last non-empty line of a file (its last 4 KiB), at most 70 chars.
fn last_line(p: &Path) -> String {
    let mut buf = Vec::new();
    if let Ok(mut f) = File::open(p) {
        let n = f.metadata().map(|m| m.len()).unwrap_or(0);
        let _ = f.seek(SeekFrom::Start(n.saturating_sub(4096)));
        let _ = f.read_to_end(&mut buf);
    }
    let text = String::from_utf8_lossy(&buf);
    let line = text
        .split(['\n', '\r'])
        .rfind(|l| !l.trim().is_empty())
        .unwrap_or("")
        .trim();
    line.chars().take(70).collect()
}

/// The last `n` lines of a file.
pub fn tail(p: &Path, n: usize) -> String {
    let text = std::fs::read_to_string(p).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// Markdown from a script moved under a `##` section: every heading two
/// levels down, so its `#` title does not compete with the report's.
pub fn demote(md: &str) -> String {
    md.lines()
        .map(|l| {
            if l.starts_with('#') {
                format!("##{l}\n")
            } else {
                format!("{l}\n")
            }
        })
        .collect()
}

/// The section of a stage not run: its command and why not.
fn not_run(stage: &Stage, why: &str) -> Section {
    Section {
        markdown: format!("\n## {}\n\n`{}`: {why}", stage.heading, shown(stage)),
        failed: false,
    }
}

/// Runs one stage: prerequisites, the script, its files, its section.
pub fn stage(stage: &Stage, out: &Path, bar: &ProgressBar) -> Section {
    if let Some(why) = stage.skip {
        return not_run(stage, &format!("skipped: {why}.\n"));
    }
    let lacking = missing(&stage.needs);
    if !lacking.is_empty() {
        return not_run(stage, &skipped_line(&lacking));
    }
    let mut md = format!("\n## {}\n\n", stage.heading);
    let cmd = shown(stage);
    let partial = missing(&stage.optional);
    let ran = run(stage, out, bar);
    if let Some(name) = stage.stdout_as {
        let text = std::fs::read_to_string(&ran.log)
            .unwrap_or_default()
            .replace('\r', "");
        let kept = match stage.excerpt {
            Some(f) => f(&text),
            None => text,
        };
        let _ = std::fs::write(out.join(name), kept);
    }
    // Only files this run wrote: a failed run must not pass off an older
    // run's tables as its own.
    let mut copied = Vec::new();
    for (src, dst) in &stage.files {
        let src = root().join(src);
        let fresh = std::fs::metadata(&src)
            .and_then(|m| m.modified())
            .is_ok_and(|t| t >= ran.start);
        if fresh && std::fs::copy(&src, out.join(dst)).is_ok() {
            copied.push(*dst);
        }
    }
    copied.extend(stage.stdout_as);
    let files: Vec<String> = copied.iter().map(|f| format!("`{f}`")).collect();
    let _ = writeln!(
        md,
        "Command (from the repository root): `{cmd}`; {} after {:.0} s. Files: {}; its \
         stdout and stderr: `{}.log`, `{}.err.log`.",
        if ran.ok() {
            ran.status()
        } else {
            format!("**failed** ({})", ran.status())
        },
        ran.secs,
        if files.is_empty() {
            "none".to_string()
        } else {
            files.join(", ")
        },
        stage.id,
        stage.id,
    );
    if !partial.is_empty() {
        let _ = writeln!(
            md,
            "\npartial: {}; the script leaves those out.",
            not_found(&partial)
        );
    }
    if !ran.ok() {
        let _ = write!(
            md,
            "\nThe last lines of its stderr:\n\n```text\n{}\n```\n",
            tail(&ran.err, 15)
        );
    }
    for name in &stage.embed {
        if !copied.contains(name) {
            continue;
        }
        let text = std::fs::read_to_string(out.join(name)).unwrap_or_default();
        if text.trim().is_empty() {
            continue;
        }
        md.push('\n');
        if name.ends_with(".md") {
            md += &demote(&text);
        } else {
            let _ = write!(md, "```text\n{}\n```\n", text.trim_end());
        }
    }
    Section {
        markdown: md,
        failed: !ran.ok(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn skipped_names_what_and_how() {
        let m = [
            Need::Program("valgrind", "valgrind"),
            Need::Program("callgrind_annotate", "valgrind"),
            Need::File("/usr/bin/time", "time"),
            Need::Target("x86_64-unknown-none"),
        ];
        assert_eq!(
            skipped_line(&m),
            "skipped: `valgrind`, `callgrind_annotate`, `/usr/bin/time`, `the Rust target \
             x86_64-unknown-none` not found, install `apt-get install -y valgrind time` and \
             `rustup target add x86_64-unknown-none`.\n"
        );
        assert_eq!(
            skipped_line(&m[2..3]),
            "skipped: `/usr/bin/time` not found, install `apt-get install -y time`.\n"
        );
    }

    #[test]
    fn demote_moves_headings_only() {
        assert_eq!(demote("# t\ntext #1\n## s\n"), "### t\ntext #1\n#### s\n");
    }

    #[test]
    fn shown_puts_variables_first() {
        let s = Stage {
            command: vec!["cargo".into(), "test".into()],
            env: vec![("RUSTFLAGS", "--cfg loom"), ("LOOM_MAX_PREEMPTIONS", "2")],
            ..Stage::default()
        };
        assert_eq!(
            shown(&s),
            "RUSTFLAGS=\"--cfg loom\" LOOM_MAX_PREEMPTIONS=2 cargo test"
        );
    }

    #[test]
    fn needs_are_checked() {
        assert!(Need::File("/", "none").met());
        assert!(!Need::File("/no/such/file", "none").met());
        assert!(!Need::Program("no-such-program-magbuddy", "none").met());
    }
}
