#!/usr/bin/env bash
# Runs real programs under glibc malloc, magbuddy (this shim) and mimalloc
# (Debian's libmimalloc2.0), checks each program's output is identical under
# all three (magbuddy twice: the default 4 GiB heap and MAGBUDDY_HEAP=1G),
# and tabulates median wall time and peak RSS (/usr/bin/time) as ratios to
# glibc. Then runs the benchmark report's larson, remote (producer/consumer)
# and churn (thread churn) workloads on its `system` allocator, i.e. libc
# malloc, so under LD_PRELOAD on the shim and on mimalloc, and beside them
# in-process magbuddy with per-thread handles (no preload) for the shim's
# per-call overhead. Last, resident memory over time
# (preload/bench/rss_phases.c: phases of 256 MiB freed without malloc_trim,
# waves of short threads, then 300 fork()s) under glibc, the shim (with and
# without its own trimming), mimalloc, and jemalloc and tcmalloc if their
# Debian packages are installed.
#
# Usage: preload/eval.sh [runs, default 3] [--quick] [--rss]
#   preload/eval.sh 3          the full evaluation (programs: median of 3 runs;
#                              workloads: median of 9 full report runs)
#   preload/eval.sh 1 --quick  a smoke pass (each program once, one --quick
#                              report run per allocator)
#   preload/eval.sh 3 --rss    only the RSS-over-time stage (3 runs each)
#   preload/eval.sh 3 --programs  only the real programs (3 runs each)
# Writes into target/preload/: eval.md (both tables), eval.csv (program x
# allocator), workloads.csv (workload x threads x allocator), eval.svg and
# workloads.svg (ratios to glibc), report/<allocator>/<round>/ (each
# report run's own report.md, runs.csv and plots), and rss.md (RSS after
# each stage, 300 fork()s' time; medians over runs), rss.csv (allocator,
# ms, rss_mib, stage: the first run's samples) and rss.svg (RSS over time).
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=3 QUICK="" RSS_ONLY="" PROGRAMS_ONLY=""
for a in "$@"; do
  case $a in
    --quick) QUICK=--quick ;;
    --rss) RSS_ONLY=1 ;;
    --programs) PROGRAMS_ONLY=1 ;;
    '' | *[!0-9]*) echo "usage: $0 [runs] [--quick] [--rss | --programs]" >&2; exit 2 ;;
    *) RUNS=$a ;;
  esac
done
START=$SECONDS
cargo build -q -p magbuddy-preload --release
MB=$PWD/target/release/libmagbuddy_preload.so
MI=/usr/lib/x86_64-linux-gnu/libmimalloc.so.2
[ -e "$MI" ] || { echo "no $MI: apt-get install -y libmimalloc2.0" >&2; exit 1; }
W=$PWD/target/preload/eval
mkdir -p "$W"
PY=/usr/bin/python3
OUT=$PWD/target/preload
JE=/usr/lib/x86_64-linux-gnu/libjemalloc.so.2
TC=/usr/lib/x86_64-linux-gnu/libtcmalloc_minimal.so.4

# RSS over time: rss_phases under each allocator, $RUNS runs; writes
# $OUT/rss.{md,csv,svg}. No malloc_trim anywhere: what comes back is the
# allocator's own doing.
rss_over_time() {
  cc -O2 -fno-builtin -Wall -Wextra -pthread -o "$W/rss_phases" preload/bench/rss_phases.c
  cargo build -q --release -p magbuddy-bench --bin rss_plot
  local allocs=(glibc magbuddy magbuddy-no-auto-trim mimalloc) alloc r
  [ -e "$JE" ] && allocs+=(jemalloc)
  [ -e "$TC" ] && allocs+=(tcmalloc)
  echo "allocator,ms,rss_mib,stage" >"$OUT/rss.csv"
  for alloc in "${allocs[@]}"; do
    local vars=()
    case $alloc in
      magbuddy) vars=(LD_PRELOAD="$MB") ;;
      magbuddy-no-auto-trim) vars=(LD_PRELOAD="$MB" MAGBUDDY_TRIM_EVERY=0) ;;
      mimalloc) vars=(LD_PRELOAD="$MI") ;;
      jemalloc) vars=(LD_PRELOAD="$JE") ;;
      tcmalloc) vars=(LD_PRELOAD="$TC") ;;
    esac
    for r in $(seq "$RUNS"); do
      env "${vars[@]}" "$W/rss_phases" >"$W/rss.$alloc.$r.csv" 2>"$W/rss.$alloc.$r.log"
    done
    tail -n +2 "$W/rss.$alloc.1.csv" | sed "s/^/$alloc,/" >>"$OUT/rss.csv"
    echo "done: RSS over time under $alloc ($RUNS runs)" >&2
  done
  {
    echo "| allocator | 64 B | 1000 B | 4000 B | 40000 B | 300000 B | mixed | thread waves | peak | 300 forks (s) |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"
    for alloc in "${allocs[@]}"; do
      local row="| $alloc" st
      for st in "64 B" "1000 B" "4000 B" "40000 B" "300000 B" "mixed" "thread waves"; do
        row="$row | $(cat "$W"/rss."$alloc".*.log | sed -n "s/^stage $st: RSS \([0-9]*\) MiB$/\1/p" | median)"
      done
      row="$row | $(for f in "$W"/rss."$alloc".*.csv; do awk -F, 'NR > 1 && $2 > m { m = $2 } END { printf "%d\n", m }' "$f"; done | median)"
      row="$row | $(cat "$W"/rss."$alloc".*.log | sed -n 's/^forks: 300 in \([0-9.]*\) s$/\1/p' | median) |"
      echo "$row"
    done
  } >"$OUT/rss.md"
  "$PWD/target/release/rss_plot" "$OUT/rss.csv" "$OUT/rss.svg"
}

# Inputs, made once and deterministically.
if [ ! -e "$W/data.txt" ]; then
  "$PY" - "$W/data.txt" <<'EOF'
import random, sys
r = random.Random(7)
words = ["".join(r.choice("abcdefghijklmnopqrstuvwxyz") for _ in range(r.randint(2, 9))) for _ in range(5000)]
with open(sys.argv[1], "w") as f:
    for i in range(400000):
        f.write(" ".join(r.choice(words) for _ in range(12)) + f" {i}\n")
EOF
fi
cat > "$W/py.py" <<'EOF'
import json, collections, re
text = open(__import__("sys").argv[1]).read()
words = re.findall(r"[a-z]+", text)
c = collections.Counter(words)
d = {w: [n, w.upper(), list(range(n % 7))] for w, n in c.items()}
s = json.dumps(d, sort_keys=True)
back = json.loads(s)
trees = [{"k": i, "v": str(i) * (i % 13), "c": [j for j in range(i % 11)]} for i in range(300000)]
print(len(words), len(c), len(s), len(back), sum(len(t["v"]) for t in trees), c.most_common(3))
EOF
cat > "$W/words.pl" <<'EOF'
my %c;
while (<>) { $c{$_}++ for split; }
my @k = sort { $c{$b} <=> $c{$a} || $a cmp $b } keys %c;
my %len; push @{ $len{length $_} }, $_ for @k;
print scalar(@k), " ", join(",", @k[0 .. 9]), " ", join(",", map { scalar @{ $len{$_} } } sort { $a <=> $b } keys %len), "\n";
EOF
cat > "$W/pythreads.py" <<'EOF'
import threading, hashlib
out = [None] * 4
def work(k):
    acc = {}
    for i in range(150000):
        acc[(k, i)] = hashlib.md5(str(i * k).encode()).hexdigest()[: (i % 17) + 1]
        if i % 3 == 0:
            del acc[(k, i)]
    out[k] = sum(len(v) for v in acc.values())
ts = [threading.Thread(target=work, args=(k,)) for k in range(4)]
[t.start() for t in ts]; [t.join() for t in ts]
print(out)
EOF
cat > "$W/sql.sql" <<'EOF'
CREATE TABLE t(id INTEGER PRIMARY KEY, a TEXT, b INTEGER);
WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c WHERE x < 200000)
INSERT INTO t SELECT x, printf('%08d-%s', (x * 7919) % 300007, substr('abcdefghijklmnop', 1 + x % 16)), x % 1000 FROM c;
CREATE INDEX ta ON t(a);
CREATE INDEX tb ON t(b, a);
SELECT count(*), sum(length(a)), max(a) FROM t;
SELECT b, count(*), min(a) FROM t GROUP BY b ORDER BY 2 DESC, 1 LIMIT 5;
SELECT count(*) FROM t x JOIN t y ON x.b = y.b AND x.id < y.id AND y.id - x.id < 500;
EOF
GIT_DIR_ARG=$PWD
GIT_REV=$(git rev-list --max-parents=0 HEAD | tail -1)..25b3306

# name | kind | command (run by sh -c; stdout is compared)
PROGRAMS=(
  "python3 (json, dicts)|1 thread|$PY $W/py.py $W/data.txt"
  "sqlite3 (insert, index, join)|1 thread|sqlite3 :memory: < $W/sql.sql"
  "gzip -6 / gunzip|1 thread|gzip -6 -c $W/data.txt | gunzip -c | sha256sum"
  "gcc -O2 -c (edge.c)|1 thread|gcc -O2 -c -o /dev/stdout preload/tests/edge.c 2>/dev/null | sha256sum"
  "git log --stat|1 thread|git -C $GIT_DIR_ARG log --stat $GIT_REV | sha256sum"
  "xz -T2 -6|2 threads|xz -T2 -6 -c $W/data.txt | sha256sum"
  "zstd -T2 -15|2 threads|zstd -q -T2 -15 -c $W/data.txt | sha256sum"
  "python3 (4 threads, dicts)|4 threads|$PY $W/pythreads.py"
  "perl (word counts, hashes)|1 thread|perl $W/words.pl $W/data.txt"
  "sort (two keys, 31 MB)|2 threads|LC_ALL=C sort -k2,2 -k13,13n $W/data.txt | sha256sum"
)

# run <preload or empty> <heap size> <command>: prints "seconds maxrss_kb",
# stdout to $W/out
run() {
  local pre=$1 heap=$2 cmd=$3
  if [ -n "$pre" ]; then
    /usr/bin/time -f "%e %M" -o "$W/time" env LD_PRELOAD="$pre" MAGBUDDY_HEAP="$heap" \
      sh -c "$cmd" >"$W/out"
  else
    /usr/bin/time -f "%e %M" -o "$W/time" sh -c "$cmd" >"$W/out"
  fi
  tail -1 "$W/time"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

rss_header() {
  echo "RSS in MiB after each stage of \`preload/bench/rss_phases.c\` (each stage frees all it allocated, then idles 300 ms; no \`malloc_trim\`), the peak of the 20 ms samples, and the wall time of 300 \`fork()\`s after the thread waves; medians of $RUNS run(s). magbuddy-no-auto-trim: the shim with \`MAGBUDDY_TRIM_EVERY=0\`. Plot: rss.svg (first run)."
}
if [ -n "$RSS_ONLY" ]; then
  rss_over_time
  {
    echo "# Resident memory over time under LD_PRELOAD allocators"
    echo
    echo "$(date -u +%F), $(nproc) CPUs, $(uname -r), glibc $(ldd --version | head -1 | awk '{print $NF}'). Command: \`preload/eval.sh $*\`."
    echo
    rss_header
    echo
    cat "$OUT/rss.md"
  } >"$OUT/rss-eval.md"
  cat "$OUT/rss-eval.md"
  exit 0
fi
PROG_MD=$W/programs.md CSV=$OUT/eval.csv
{
  echo "| program | threads | glibc time (s) | glibc RSS (MiB) | magbuddy time | magbuddy RSS | magbuddy 1 GiB heap: time | RSS | mimalloc time | mimalloc RSS |"
  echo "|---|---|---|---|---|---|---|---|---|---|"
} >"$PROG_MD"
echo "program,threads,allocator,seconds,rss_kib,time_ratio,rss_ratio" >"$CSV"
for p in "${PROGRAMS[@]}"; do
  IFS='|' read -r name kind cmd <<<"$p"
  declare -A T R
  ref=""
  for alloc in glibc magbuddy mb1g mimalloc; do
    heap=4G
    case $alloc in glibc) pre="" ;; magbuddy) pre=$MB ;; mb1g) pre=$MB heap=1G ;; mimalloc) pre=$MI ;; esac
    ts=() rs=()
    for _ in $(seq "$RUNS"); do
      read -r t r < <(run "$pre" "$heap" "$cmd")
      ts+=("$t") rs+=("$r")
      sum=$(sha256sum <"$W/out" | cut -c1-16)
      if [ -z "$ref" ]; then ref=$sum; elif [ "$sum" != "$ref" ]; then
        echo "OUTPUT DIFFERS: $name under $alloc" >&2; exit 1
      fi
    done
    T[$alloc]=$(printf '%s\n' "${ts[@]}" | median)
    R[$alloc]=$(printf '%s\n' "${rs[@]}" | median)
  done
  printf '| %s | %s | %s | %.1f | %s | %s | %s | %s | %s | %s |\n' "$name" "$kind" "${T[glibc]}" \
    "$(awk -v r="${R[glibc]}" 'BEGIN { print r / 1024 }')" \
    "$(ratio "${T[magbuddy]}" "${T[glibc]}")" "$(ratio "${R[magbuddy]}" "${R[glibc]}")" \
    "$(ratio "${T[mb1g]}" "${T[glibc]}")" "$(ratio "${R[mb1g]}" "${R[glibc]}")" \
    "$(ratio "${T[mimalloc]}" "${T[glibc]}")" "$(ratio "${R[mimalloc]}" "${R[glibc]}")" >>"$PROG_MD"
  # Names hold commas: quoted, with any " doubled.
  for alloc in glibc magbuddy mb1g mimalloc; do
    case $alloc in mb1g) label=magbuddy-1g ;; *) label=$alloc ;; esac
    printf '"%s",%s,%s,%s,%s,%s,%s\n' "${name//\"/\"\"}" "${kind%% *}" "$label" "${T[$alloc]}" "${R[$alloc]}" \
      "$(ratio "${T[$alloc]}" "${T[glibc]}")" "$(ratio "${R[$alloc]}" "${R[glibc]}")" >>"$CSV"
  done
  echo "done: $name (output identical, $RUNS runs each)" >&2
done
# Geometric means of the ratios over the programs, per allocator column.
awk -F, 'NR > 1 && $3 != "glibc" { t[$3] += log($6); r[$3] += log($7); n[$3]++ }
  END {
    printf "| geometric mean | | | |"
    split("magbuddy magbuddy-1g mimalloc", al, " ")
    for (i = 1; i <= 3; i++) printf " %.2f | %.2f |", exp(t[al[i]] / n[al[i]]), exp(r[al[i]] / n[al[i]])
    print ""
  }' "$CSV" >>"$PROG_MD"
if [ -n "$PROGRAMS_ONLY" ]; then
  cargo run -q --release -p magbuddy-bench --bin preload_plot -- "$CSV" "$OUT/eval.svg"
  {
    echo "# magbuddy as LD_PRELOAD malloc: real programs"
    echo
    echo "$(date -u +%F), $(nproc) CPUs, $(uname -r), glibc $(ldd --version | head -1 | awk '{print $NF}'), mimalloc $(dpkg-query -W -f '${Version}' libmimalloc2.0). Command: \`preload/eval.sh $*\`."
    echo
    echo "Median of $RUNS run(s) per program and allocator; outputs checked identical. magbuddy and mimalloc columns are ratios to glibc (lower is better)."
    echo
    cat "$PROG_MD"
  } >"$OUT/eval-programs.md"
  cat "$OUT/eval-programs.md"
  exit 0
fi

# The report's workloads on libc malloc: glibc (and, in the same process,
# in-process magbuddy with handles), then under each preload. Rounds
# alternate the allocators so a noisy machine's drifts hit all alike; each
# point is the median over rounds of the report's own median.
cargo build -q --release -p magbuddy-bench --bin report --bin preload_plot
REPORT=$PWD/target/release/report
# A full round is ~5 s for all three on 2 cores, so 9 rounds stay well
# under a minute.
if [ -n "$QUICK" ]; then ROUNDS=1; else ROUNDS=9; fi
WORKLOADS="larson remote churn" THREADS="1 2 4"
WL_ARGS=(--runs-only --workloads "${WORKLOADS// /,}" --threads "${THREADS// /,}" ${QUICK:+"$QUICK"})
rm -rf "$OUT/report"
for r in $(seq "$ROUNDS"); do
  for alloc in glibc magbuddy mimalloc; do
    dir=$OUT/report/$alloc/$r
    mkdir -p "$dir"
    case $alloc in
      glibc) "$REPORT" "${WL_ARGS[@]}" --allocators system,magbuddy --out "$dir" ;;
      magbuddy) LD_PRELOAD=$MB MAGBUDDY_HEAP=4G "$REPORT" "${WL_ARGS[@]}" --allocators system --out "$dir" ;;
      mimalloc) LD_PRELOAD=$MI "$REPORT" "${WL_ARGS[@]}" --allocators system --out "$dir" ;;
    esac >"$dir/stdout" 2>"$dir/stderr" || {
      echo "report FAILED under $alloc (round $r); see $dir/stderr:" >&2
      tail -5 "$dir/stderr" >&2
      exit 1
    }
  done
  echo "done: workloads round $r of $ROUNDS" >&2
done
# runs.csv: workload,threads,allocator,ns_per_pair,mops,p99_ns,p999_ns,
# max_ns,cas_per_op,failed,truncated,ns_per_pair_q1,ns_per_pair_q3,mops_q1,
# mops_q3,reps (ns_per_pair and mops are medians over reps runs;
# benches/src/bin/report/table.rs).
WL_CSV=$OUT/workloads.csv WL_MD=$W/workloads.md
for alloc in glibc magbuddy mimalloc; do
  for f in "$OUT/report/$alloc"/*/runs.csv; do
    awk -F, -v a="$alloc" 'NR > 1 {
      print $1 "," $2 "," ($3 == "magbuddy" ? "magbuddy-handles" : a) "," $4 "," $10 "," $11 }' "$f"
  done
done | awk -F, '
  { k = $1 SUBSEP $2 SUBSEP $3; n[k]++; v[k, n[k]] = $4
    if ($5 > 0) f[k] += $5
    if ($6 == "true") c[k] = 1 }
  function med(k,   i, j, t, m, a) {
    m = n[k]
    for (i = 1; i <= m; i++) a[i] = v[k, i]
    for (i = 2; i <= m; i++) for (j = i; j > 1 && a[j - 1] > a[j]; j--) { t = a[j]; a[j] = a[j - 1]; a[j - 1] = t }
    return a[int((m + 1) / 2)]
  }
  END {
    nw = split(wls, wl, " "); nt = split(ths, th, " ")
    split("glibc magbuddy mimalloc magbuddy-handles", al, " ")
    print "workload,threads,allocator,ns_pair,ratio,notes" > csv
    print "| workload | threads | glibc ns/pair | magbuddy (shim) | mimalloc | magbuddy handles, in-process |" > md
    print "|---|---:|---:|---:|---:|---:|" > md
    for (w = 1; w <= nw; w++) for (t = 1; t <= nt; t++) {
      g = wl[w] SUBSEP th[t] SUBSEP "glibc"
      if (!(g in n)) continue
      base = med(g); row = "| " wl[w] " | " th[t] " | " sprintf("%.1f", base)
      for (i = 1; i <= 4; i++) {
        k = wl[w] SUBSEP th[t] SUBSEP al[i]
        if (!(k in n)) { if (i > 1) row = row " | –"; continue }
        x = med(k); r = sprintf("%.2f", x / base)
        note = (k in f ? f[k] " failed" : "") (k in c ? (k in f ? " " : "") "cut" : "")
        printf "%s,%s,%s,%.3f,%s,%s\n", wl[w], th[t], al[i], x, r, note > csv
        if (i > 1) row = row " | " r (note != "" ? " (" note ")" : "")
      }
      print row " |" > md
    }
  }' wls="$WORKLOADS" ths="$THREADS" csv="$WL_CSV" md="$WL_MD"

cargo run -q --release -p magbuddy-bench --bin preload_plot -- "$CSV" "$OUT/eval.svg"
cargo run -q --release -p magbuddy-bench --bin preload_plot -- "$WL_CSV" "$OUT/workloads.svg"
rss_over_time

{
  echo "# magbuddy as LD_PRELOAD malloc: real programs and allocator workloads"
  echo
  echo "$(date -u +%F), $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(uname -r), glibc $(ldd --version | head -1 | awk '{print $NF}'), mimalloc $(dpkg-query -W -f '${Version}' libmimalloc2.0). Command: \`preload/eval.sh $*\`."
  echo
  echo "## Real programs"
  echo
  echo "Median of $RUNS run(s) per program and allocator; outputs checked identical. magbuddy and mimalloc columns are ratios to glibc (lower is better)."
  echo
  cat "$PROG_MD"
  echo
  echo "## Workloads (benchmark report, \`system\` allocator = libc malloc)"
  echo
  if [ -n "$QUICK" ]; then
    echo "One \`--quick\` report run per allocator (smoke pass, not a measurement)."
  else
    echo "Median of $ROUNDS full report runs per allocator (each the median of its 5 repetitions)."
  fi
  echo "glibc in ns per alloc+free pair; the other columns are ratios to glibc (lower is better): the shim and mimalloc under LD_PRELOAD, and in-process magbuddy with per-thread handles (the report's \`magbuddy\` allocator, run beside glibc without preload), i.e. the same heap without the malloc interface's cost. Notes: failed allocations or runs cut at the report's time limit."
  echo
  cat "$WL_MD"
  echo
  echo "## Resident memory over time"
  echo
  rss_header
  echo
  cat "$OUT/rss.md"
  echo
  echo "Took $((SECONDS - START)) s. CSV: eval.csv, workloads.csv; plots: eval.svg, workloads.svg; each report run: report/<allocator>/<round>/."
} >"$OUT/eval.md"
echo
cat "$OUT/eval.md"
