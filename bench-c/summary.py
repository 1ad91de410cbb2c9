#!/usr/bin/env python3
"""Summarise bench-c/run.sh's results (standard library only).

Reads <out>/results.csv, machine.txt, failures.txt, skipped.txt and writes
<out>/summary.md: the machine at the top, then one table per program and
thread count with each allocator's median wall time, interquartile range,
median peak RSS, and ratios to glibc. The time ratio is the median over
repetitions of (allocator's time / glibc's time in the same repetition); the
RSS ratio is median RSS / glibc's median RSS.
"""
import csv
import math
import os
import statistics
import sys
from collections import defaultdict

ORDER = ["glibc", "magbuddy", "mimalloc", "jemalloc", "tcmalloc"]


def quartiles(xs):
    xs = sorted(xs)
    if len(xs) == 1:
        return xs[0], xs[0], xs[0]
    q = statistics.quantiles(xs, n=4, method="inclusive")
    return q[0], statistics.median(xs), q[2]


def geomean(xs):
    """Geometric mean of positive ratios, two decimals ("-" if none)."""
    xs = [x for x in xs if x > 0]
    return "%.2f" % math.exp(sum(map(math.log, xs)) / len(xs)) if xs else "-"


def main(out):
    machine = {}
    with open(os.path.join(out, "machine.txt")) as f:
        for line in f:
            k, _, v = line.rstrip("\n").partition("=")
            machine[k] = v
    rows = list(csv.DictReader(open(os.path.join(out, "results.csv"))))
    fails = open(os.path.join(out, "failures.txt")).read() if os.path.exists(os.path.join(out, "failures.txt")) else ""
    skipped = open(os.path.join(out, "skipped.txt")).read() if os.path.exists(os.path.join(out, "skipped.txt")) else ""

    t = defaultdict(dict)  # (prog, threads) -> alloc -> run -> (secs, rss)
    progs = []
    for r in rows:
        key = (r["program"], int(r["threads"]))
        if r["program"] not in progs:
            progs.append(r["program"])
        rss = int(r["max_rss_kib"]) if r["max_rss_kib"] else None
        t[key].setdefault(r["allocator"], {})[int(r["run"])] = (float(r["seconds"]), rss)

    L = []
    L.append("# bench-c: mimalloc-bench-style C programs under five allocators")
    L.append("")
    L.append("Machine: %s, %s cores, %s; load average (1/5/15 min) %s at start, %s at end." % (
        machine.get("cpu", "?"), machine.get("cores", "?"), machine.get("kernel", "?"),
        machine.get("load_start", "?"), machine.get("load_end", "?")))
    L.append("Repetitions: %s%s; thread counts: %s; source commit %s; %s; whole run %s s." % (
        machine.get("runs", "?"), " (--quick: tiny parameters)" if machine.get("quick") == "1" else "",
        machine.get("threads", "?"), machine.get("commit", "?"), machine.get("cc", "?"), machine.get("elapsed_s", "?")))
    L.append("")
    L.append("Allocators (LD_PRELOAD library, package version):")
    L.append("")
    for k, v in machine.items():
        if k.startswith("alloc_"):
            L.append("- %s: `%s`" % (k[6:], v))
    L.append("")
    L.append("Program parameters after the thread count (see each bench-c/*.c header):")
    L.append("")
    for k, v in machine.items():
        if k.startswith("params_"):
            L.append("- %s: `%s`" % (k[7:], v))
    L.append("")
    L.append("Time is wall-clock seconds of the whole process; median over repetitions, IQR = "
             "first to third quartile. Peak RSS is /usr/bin/time's maximum resident set (KiB), median. "
             "x glibc (time) is the median of per-repetition ratios to glibc's time in the same "
             "repetition; x glibc (RSS) is the ratio of medians. Output (each program's summary line) "
             "was checked identical across allocators and repetitions; failures are listed below.")
    L.append("")
    if skipped.strip():
        L.append("## Skipped allocators")
        L.append("")
        for line in skipped.strip().splitlines():
            L.append("- " + line)
        L.append("")
    L.append("## Failures and differing output")
    L.append("")
    if fails.strip():
        L.append("```")
        L.append(fails.rstrip())
        L.append("```")
    else:
        L.append("None: every program printed the same summary line under every allocator in every repetition.")
    L.append("")

    # one compact table of time ratios first
    allocs_seen = [a for a in ORDER if any(a in t[k] for k in t)]
    L.append("## Time relative to glibc (median of per-repetition ratios; < 1 is faster)")
    L.append("")
    L.append("| program | threads | " + " | ".join(allocs_seen) + " |")
    L.append("|---|---:|" + "---:|" * len(allocs_seen))
    keys = sorted(t.keys(), key=lambda k: (progs.index(k[0]), k[1]))
    time_ratios = {a: [] for a in allocs_seen}
    rss_ratios = {a: [] for a in allocs_seen}
    for key in keys:
        cells = []
        g = t[key].get("glibc", {})
        g_rss = [v[1] for v in g.values() if v[1] is not None]
        for a in allocs_seen:
            d = t[key].get(a, {})
            ratios = [d[r][0] / g[r][0] for r in d if r in g and g[r][0] > 0]
            cells.append("%.2f" % statistics.median(ratios) if ratios else "-")
            if ratios:
                time_ratios[a].append(statistics.median(ratios))
            rss = [v[1] for v in d.values() if v[1] is not None]
            if rss and g_rss:
                rss_ratios[a].append(statistics.median(rss) / statistics.median(g_rss))
        L.append("| %s | %d | %s |" % (key[0], key[1], " | ".join(cells)))
    L.append("| **geometric mean** | | %s |" % " | ".join(geomean(time_ratios[a]) for a in allocs_seen))
    L.append("")
    L.append("Geometric mean over the cells of the peak-RSS ratios to glibc (ratio of medians): "
             + ", ".join("%s %s" % (a, geomean(rss_ratios[a])) for a in allocs_seen) + ".")
    L.append("")

    # where magbuddy stands: slowest of all, or heavy in peak RSS
    if "magbuddy" in allocs_seen:
        L.append("## magbuddy's outliers")
        L.append("")
        L.append("Cells where magbuddy has the largest median time of all allocators, or a time ratio "
                 "above 1.25, or a median peak RSS above 2x glibc's:")
        L.append("")
        found = False
        for key in keys:
            cell = t[key]
            if "magbuddy" not in cell or "glibc" not in cell:
                continue
            med = {a: statistics.median(v[0] for v in cell[a].values()) for a in cell}
            rss = {a: statistics.median([v[1] for v in cell[a].values() if v[1] is not None] or [0]) for a in cell}
            g = cell["glibc"]
            d = cell["magbuddy"]
            ratios = [d[r][0] / g[r][0] for r in d if r in g and g[r][0] > 0]
            ratio = statistics.median(ratios) if ratios else float("nan")
            why = []
            if max(med, key=med.get) == "magbuddy" and len(med) > 1:
                why.append("slowest of %d" % len(med))
            if ratio > 1.25:
                why.append("%.2fx glibc's time" % ratio)
            if rss["glibc"] and rss["magbuddy"] > 2 * rss["glibc"]:
                why.append("peak RSS %.1fx glibc's (%d KiB; best %s %d KiB)" % (
                    rss["magbuddy"] / rss["glibc"], rss["magbuddy"], min(rss, key=rss.get), min(rss.values())))
            if why:
                found = True
                L.append("- %s, %d thread(s): %s" % (key[0], key[1], "; ".join(why)))
        if not found:
            L.append("- none")
        L.append("")

    L.append("## Every cell")
    L.append("")
    L.append("| program | threads | allocator | n | median s | IQR s | x glibc (time) | median peak RSS KiB | x glibc (RSS) |")
    L.append("|---|---:|---|---:|---:|---:|---:|---:|---:|")
    for key in keys:
        g = t[key].get("glibc", {})
        g_rss = [v[1] for v in g.values() if v[1] is not None]
        g_rss_med = statistics.median(g_rss) if g_rss else None
        for a in allocs_seen:
            d = t[key].get(a)
            if not d:
                L.append("| %s | %d | %s | 0 | - | - | - | - | - |" % (key[0], key[1], a))
                continue
            secs = [v[0] for v in d.values()]
            rss = [v[1] for v in d.values() if v[1] is not None]
            q1, med, q3 = quartiles(secs)
            ratios = [d[r][0] / g[r][0] for r in d if r in g and g[r][0] > 0]
            ratio = "%.2f" % statistics.median(ratios) if ratios else "-"
            rss_med = statistics.median(rss) if rss else None
            rss_ratio = "%.2f" % (rss_med / g_rss_med) if rss_med and g_rss_med else "-"
            L.append("| %s | %d | %s | %d | %.3f | %.3f-%.3f | %s | %s | %s |" % (
                key[0], key[1], a, len(secs), med, q1, q3, ratio,
                "%d" % rss_med if rss_med is not None else "-", rss_ratio))
    L.append("")
    with open(os.path.join(out, "summary.md"), "w") as f:
        f.write("\n".join(L))
    print("\n".join(L))


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "target/bench-c")
