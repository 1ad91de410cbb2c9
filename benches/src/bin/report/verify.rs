//! Excerpts of the model checkers' logs (the `verify-*` stages), for
//! `report.md`: the suites print a few thousand lines under `--show-output`,
//! of which §3.2 and §3.3 cite the schedules or executions and event counts
//! per suite, each mutant's verdict and the mutant matrix. The logs stay
//! whole in `--out`.

/// What the tests printed: the lines of libtest's `---- <test> stdout ----`
/// blocks (`--show-output`), without the harness's lines and blank lines.
fn printed(log: &str) -> Vec<&str> {
    let mut inside = false;
    let mut lines = Vec::new();
    for l in log.lines() {
        if l.starts_with("---- ") && l.ends_with(" stdout ----") {
            inside = true;
        } else if matches!(l, "successes:" | "failures:") || l.starts_with("test result:") {
            inside = false;
        } else if inside && !l.trim().is_empty() {
            lines.push(l);
        }
    }
    lines
}

/// Whether a printed line is a count or a verdict, not shuttle's replay
/// instructions and warnings around the failures the mutants provoke on
/// purpose: a verdict row (`a | b | c`), the matrix's heading, an open
/// claim, a suite's line (`<suite>: ...`) or a detail of one (`  <what>:
/// <n>...`).
fn wanted(l: &str) -> bool {
    if l.contains(" | ") || l.starts_with("matrix (") || l.starts_with("  open: ") {
        return true;
    }
    if let Some(rest) = l.strip_prefix("  ") {
        return !rest.starts_with(' ')
            && rest
                .split(": ")
                .skip(1)
                .any(|v| v.starts_with(|c: char| c.is_ascii_digit()));
    }
    l.split_once(": ").is_some_and(|(name, _)| {
        !name.is_empty() && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    })
}

/// A line of the shuttle mutant matrix (`  <mutant> x <scenario>: caught
/// after <n>: <why>` or `...: not caught in <n>`): the mutant and whether
/// the scenario caught it.
fn matrix_cell(line: &str) -> Option<(&str, bool)> {
    let rest = line.strip_prefix("  ")?;
    let (mutant, verdict) = rest.split_once(" x ")?;
    let (_, verdict) = verdict.split_once(": ")?;
    if verdict.starts_with("caught after ") {
        Some((mutant, true))
    } else if verdict.starts_with("not caught in ") {
        Some((mutant, false))
    } else {
        None
    }
}

/// The shuttle and loom suites' excerpt: the counts and verdicts the tests
/// printed (schedules or executions and event counts per suite, each
/// mutant's verdict), the matrix folded into one line per mutant ("caught
/// by k of n scenarios", the figures §3.3 quotes), in the order first seen.
pub fn suites(log: &str) -> String {
    let mut out: Vec<String> = Vec::new();
    // Where the matrix's heading is: its folded lines go under it.
    let mut heading = None;
    let mut matrix: Vec<(&str, usize, usize)> = Vec::new();
    for l in printed(log) {
        if let Some((m, caught)) = matrix_cell(l) {
            let i = match matrix.iter().position(|r| r.0 == m) {
                Some(i) => i,
                None => {
                    matrix.push((m, 0, 0));
                    matrix.len() - 1
                }
            };
            matrix[i].1 += usize::from(caught);
            matrix[i].2 += 1;
        } else if wanted(l) {
            if l.starts_with("matrix (") {
                heading = Some(out.len() + 1);
            }
            out.push(format!("{l}\n"));
        }
    }
    let folded = matrix
        .iter()
        .map(|(m, caught, n)| format!("  {m}: caught by {caught} of {n} scenarios\n"));
    let at = heading.unwrap_or(out.len());
    out.splice(at..at, folded);
    out.concat()
}

/// `scripts/mutants.sh`'s excerpt: its table (`mutant | test | verdict`)
/// and the survivors line if any, without cargo's build line.
pub fn verdicts(log: &str) -> String {
    log.lines()
        .filter(|l| l.contains(" | ") || l.contains("survived"))
        .map(|l| format!("{l}\n"))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOG: &str = "\nrunning 2 tests\ntest a ... ok\ntest b ... ok\n\nsuccesses:\n\n\
        ---- a stdout ----\na: 10 schedules (random, seed 1)\na: cas 3, oom 0\n\n\
        ---- b stdout ----\n\x1b[33mWARNING\x1b[39m: Shuttle only models SeqCst\n\
        mutant | scenario | tool | verdict\nTask failed, serializing schedule\n\
        failing schedule:\n\"\n9102f505\n\"\n    1) pass the seed to `x`, or\n\
        M | s | random seed 0x1 | CAUGHT after 1 schedules: bad\n\
        \nmatrix (shuttle random, seed 0x1, up to 9 schedules):\n\
        \x20 M x s: caught after 1: bad\n  M x t: not caught in 9\n\
        \x20 N x s: not caught in 9\n\n---- c stdout ----\nc: 5 schedules (pct, seed 2)\n\n\
        successes:\n    a\n    b\n\n\
        test result: ok. 2 passed; 0 failed\n";

    #[test]
    fn suites_keep_printed_lines_and_fold_the_matrix() {
        assert_eq!(
            suites(LOG),
            "a: 10 schedules (random, seed 1)\na: cas 3, oom 0\n\
             mutant | scenario | tool | verdict\n\
             M | s | random seed 0x1 | CAUGHT after 1 schedules: bad\n\
             matrix (shuttle random, seed 0x1, up to 9 schedules):\n\
             \x20 M: caught by 1 of 2 scenarios\n  N: caught by 0 of 1 scenarios\n\
             c: 5 schedules (pct, seed 2)\n"
        );
    }

    #[test]
    fn verdicts_keep_the_table() {
        let log = "    Finished `verify` profile\nmutant | test | verdict\n\
                   A | t::f | caught: x\nB | t::g | NOT caught\n1 mutant/test pairs survived\n";
        assert_eq!(
            verdicts(log),
            "mutant | test | verdict\nA | t::f | caught: x\nB | t::g | NOT caught\n\
             1 mutant/test pairs survived\n"
        );
    }
}
