#!/usr/bin/env bash
# Runs real programs under glibc malloc, magbuddy (this shim), mimalloc
# (Debian's libmimalloc2.0), and jemalloc (libjemalloc2) and tcmalloc
# (libtcmalloc-minimal4) when their Debian packages are installed (else their
# columns are left out, with a note under the table); checks each program's
# output is identical under all of them (magbuddy twice: the default 4 GiB
# heap and MAGBUDDY_HEAP=1G), and tabulates median wall time and peak RSS
# (/usr/bin/time) as ratios to glibc. The runs are interleaved: run 1 under
# every allocator, then run 2, ..., so drift on a shared machine hits all
# alike. Then runs the benchmark report's larson, remote (producer/consumer)
# and churn (thread churn) workloads on its `system` allocator, i.e. libc
# malloc, so under LD_PRELOAD on the shim, mimalloc, jemalloc and tcmalloc,
# and beside them in-process magbuddy with per-thread handles (no preload)
# for the shim's per-call overhead. Last, resident memory over time
# (preload/bench/rss_phases.c: phases of 256 MiB freed without malloc_trim,
# waves of short threads, then 300 fork()s) under glibc, the shim (with and
# without its own trimming), mimalloc, and jemalloc and tcmalloc if their
# Debian packages are installed.
#
# Usage: preload/eval.sh [runs, default 3] [--quick] [--rss | --programs | --workloads]
#   preload/eval.sh 3          the full evaluation (programs: median of 3 runs;
#                              workloads: median of 9 full report runs)
#   preload/eval.sh 1 --quick  a smoke pass (each program once, one --quick
#                              report run per allocator)
#   preload/eval.sh 3 --rss    only the RSS-over-time stage (3 runs each)
#   preload/eval.sh 3 --programs  only the real programs (3 runs each)
#   preload/eval.sh --workloads   only the workloads (9 report runs each; with
#                              --quick one --quick report run each)
#   preload/eval.sh --instructions  only the programs' instruction counts
#                              under callgrind (glibc, the shim, mimalloc; one
#                              run each, about 35 min): the program's and its
#                              allocator's instructions (preload/cgshare.py)
# The allocators: ALLOCS below (glibc first, the baseline), each selected by
# alloc_env; jemalloc and tcmalloc join when $JE and $TC exist.
# Writes into target/preload/: eval.md (both tables), eval.csv (program x
# allocator), workloads.csv (workload x threads x allocator), eval.svg and
# workloads.svg (ratios to glibc), report/<allocator>/<round>/ (each
# report run's own report.md, runs.csv and plots), and rss.md (RSS after
# each stage, 300 fork()s' time; medians over runs), rss.csv (allocator,
# ms, rss_mib, stage: the first run's samples) and rss.svg (RSS over time);
# --programs, --workloads and --rss write their table alone, with a heading
# and the command, as eval-programs.md, eval-workloads.md and rss-eval.md.
set -euo pipefail
cd "$(dirname "$0")/.."
RUNS=3 QUICK="" RSS_ONLY="" PROGRAMS_ONLY="" WORKLOADS_ONLY="" INSTRUCTIONS_ONLY=""
for a in "$@"; do
  case $a in
    --quick) QUICK=--quick ;;
    --rss) RSS_ONLY=1 ;;
    --programs) PROGRAMS_ONLY=1 ;;
    --workloads) WORKLOADS_ONLY=1 ;;
    --instructions) INSTRUCTIONS_ONLY=1 ;;
    '' | *[!0-9]*) echo "usage: $0 [runs] [--quick] [--rss | --programs | --workloads | --instructions]" >&2; exit 2 ;;
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

# alloc_env <allocator>: sets ALLOC_ENV to the env(1) assignments that select it.
alloc_env() {
  case $1 in
    glibc) ALLOC_ENV=() ;;
    magbuddy) ALLOC_ENV=(LD_PRELOAD="$MB" MAGBUDDY_HEAP=4G) ;;
    magbuddy-1g) ALLOC_ENV=(LD_PRELOAD="$MB" MAGBUDDY_HEAP=1G) ;;
    magbuddy-no-auto-trim) ALLOC_ENV=(LD_PRELOAD="$MB" MAGBUDDY_TRIM_EVERY=0) ;;
    mimalloc) ALLOC_ENV=(LD_PRELOAD="$MI") ;;
    jemalloc) ALLOC_ENV=(LD_PRELOAD="$JE") ;;
    tcmalloc) ALLOC_ENV=(LD_PRELOAD="$TC") ;;
    *) echo "alloc_env: unknown allocator $1" >&2; exit 1 ;;
  esac
}
# Column titles in the Markdown tables.
alloc_title() {
  case $1 in
    magbuddy-1g) echo "magbuddy 1 GiB heap" ;;
    *) echo "$1" ;;
  esac
}
# The preloaded allocators beside glibc and the shim, in column order; those
# whose library is missing are named in MISSING instead.
OTHERS=(mimalloc) MISSING=()
if [ -e "$JE" ]; then OTHERS+=(jemalloc); else MISSING+=("jemalloc (no $JE: apt-get install -y libjemalloc2)"); fi
if [ -e "$TC" ]; then OTHERS+=(tcmalloc); else MISSING+=("tcmalloc (no $TC: apt-get install -y libtcmalloc-minimal4)"); fi
# The real programs' allocators (glibc first: the baseline of the ratios).
ALLOCS=(glibc magbuddy magbuddy-1g "${OTHERS[@]}")
# The workloads' (the report's `system` allocator under each preload).
WL_ALLOCS=(glibc magbuddy "${OTHERS[@]}")
# commas <word>...: "a, b, c".
commas() { local IFS=, s; s="$*"; echo "${s//,/, }"; }
# "mimalloc 2.0.9+ds-2, jemalloc 5.3.0-1, ..." for the tables' headings.
versions() {
  local a pkg v=()
  for a in "${OTHERS[@]}"; do
    case $a in mimalloc) pkg=libmimalloc2.0 ;; jemalloc) pkg=libjemalloc2 ;; tcmalloc) pkg=libtcmalloc-minimal4 ;; esac
    v+=("$a $(dpkg-query -W -f '${Version}' "$pkg" 2>/dev/null || echo '?')")
  done
  commas "${v[@]}"
}
# A note line per allocator left out (nothing when all are there).
missing_notes() {
  local m
  for m in "${MISSING[@]}"; do echo; echo "Not run: $m."; done
}

# RSS over time: rss_phases under each allocator, $RUNS runs; writes
# $OUT/rss.{md,csv,svg}. No malloc_trim anywhere: what comes back is the
# allocator's own doing.
rss_over_time() {
  cc -O2 -fno-builtin -Wall -Wextra -pthread -o "$W/rss_phases" preload/bench/rss_phases.c
  cargo build -q --release -p magbuddy-bench --bin rss_plot
  local allocs=(glibc magbuddy magbuddy-no-auto-trim "${OTHERS[@]}") alloc r
  echo "allocator,ms,rss_mib,stage" >"$OUT/rss.csv"
  for alloc in "${allocs[@]}"; do
    alloc_env "$alloc"
    for r in $(seq "$RUNS"); do
      env "${ALLOC_ENV[@]}" "$W/rss_phases" >"$W/rss.$alloc.$r.csv" 2>"$W/rss.$alloc.$r.log"
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

# The report's workloads on libc malloc: glibc (and, in the same process,
# in-process magbuddy with handles), then under each preload. Rounds
# alternate the allocators so a noisy machine's drifts hit all alike; each
# point is the median over rounds of the report's own median.
# Writes $WL_CSV, $WL_MD and $OUT/workloads.svg.
workloads() {
  local r alloc dir which f
  cargo build -q --release -p magbuddy-bench --bin report --bin preload_plot
  REPORT=$PWD/target/release/report
  # A full round was ~5 s for glibc, the shim and mimalloc on 2 cores; with
  # jemalloc and tcmalloc, 9 rounds stay around a minute and a half.
  if [ -n "$QUICK" ]; then ROUNDS=1; else ROUNDS=9; fi
  WORKLOADS="larson remote churn" THREADS="1 2 4"
  WL_ARGS=(--runs-only --workloads "${WORKLOADS// /,}" --threads "${THREADS// /,}" ${QUICK:+"$QUICK"})
  rm -rf "$OUT/report"
  for r in $(seq "$ROUNDS"); do
    for alloc in "${WL_ALLOCS[@]}"; do
      dir=$OUT/report/$alloc/$r
      mkdir -p "$dir"
      # glibc's process also runs in-process magbuddy (handles, no preload).
      case $alloc in glibc) which=system,magbuddy ;; *) which=system ;; esac
      alloc_env "$alloc"
      env "${ALLOC_ENV[@]}" "$REPORT" "${WL_ARGS[@]}" --allocators "$which" --out "$dir" \
        >"$dir/stdout" 2>"$dir/stderr" || {
        echo "report FAILED under $alloc (round $r); see $dir/stderr:" >&2
        tail -5 "$dir/stderr" >&2
        exit 1
      }
    done
    echo "done: workloads round $r of $ROUNDS" >&2
  done
  # runs.csv: workload,threads,allocator,ns_per_pair,mops,p99_ns,p999_ns,
  # max_ns,cas_per_op,failed,truncated,ns_per_pair_q1,ns_per_pair_q3,mops_q1,
  # mops_q3,reps,p99_ns_q1,p99_ns_q3,p999_ns_q1,p999_ns_q3,max_ns_q1,max_ns_q3,
  # latency_reps (ns_per_pair and mops are medians over reps runs, the
  # latency columns over latency_reps runs; benches/src/bin/report/table.rs).
  WL_CSV=$OUT/workloads.csv WL_MD=$W/workloads.md
  for alloc in "${WL_ALLOCS[@]}"; do
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
      # The columns: WL_ALLOCS (glibc first), then the in-process handles.
      na = split(allocs " magbuddy-handles", al, " ")
      print "workload,threads,allocator,ns_pair,ratio,notes" > csv
      head = "| workload | threads | glibc ns/pair |"; rule = "|---|---:|---:|"
      for (i = 2; i <= na; i++) {
        head = head " " (al[i] == "magbuddy" ? "magbuddy (shim)" : al[i] == "magbuddy-handles" ? "magbuddy handles, in-process" : al[i]) " |"
        rule = rule "---:|"
      }
      print head > md
      print rule > md
      for (w = 1; w <= nw; w++) for (t = 1; t <= nt; t++) {
        g = wl[w] SUBSEP th[t] SUBSEP "glibc"
        if (!(g in n)) continue
        base = med(g); row = "| " wl[w] " | " th[t] " | " sprintf("%.1f", base)
        for (i = 1; i <= na; i++) {
          k = wl[w] SUBSEP th[t] SUBSEP al[i]
          if (!(k in n)) { if (i > 1) row = row " | –"; continue }
          x = med(k); r = sprintf("%.2f", x / base)
          note = (k in f ? f[k] " failed" : "") (k in c ? (k in f ? " " : "") "cut" : "")
          printf "%s,%s,%s,%.3f,%s,%s\n", wl[w], th[t], al[i], x, r, note > csv
          if (i > 1) row = row " | " r (note != "" ? " (" note ")" : "")
        }
        print row " |" > md
      }
    }' wls="$WORKLOADS" ths="$THREADS" allocs="${WL_ALLOCS[*]}" csv="$WL_CSV" md="$WL_MD"
  cargo run -q --release -p magbuddy-bench --bin preload_plot -- "$WL_CSV" "$OUT/workloads.svg"
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

# run <allocator> <command>: prints "seconds maxrss_kb", stdout to $W/out.
# Every allocator goes through the same env(1) exec, glibc too.
run() {
  alloc_env "$1"
  /usr/bin/time -f "%e %M" -o "$W/time" env "${ALLOC_ENV[@]}" sh -c "$2" >"$W/out"
  tail -1 "$W/time"
}

median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b > 0) printf "%.2f", a / b; else print "n/a" }'; }

rss_header() {
  echo "RSS in MiB after each stage of \`preload/bench/rss_phases.c\` (each stage frees all it allocated, then idles 300 ms; no \`malloc_trim\`), the peak of the 20 ms samples, and the wall time of 300 \`fork()\`s after the thread waves; medians of $RUNS run(s). magbuddy-no-auto-trim: the shim with \`MAGBUDDY_TRIM_EVERY=0\`. Plot: rss.svg (first run)."
}
workloads_header() {
  if [ -n "$QUICK" ]; then
    echo "One \`--quick\` report run per allocator (smoke pass, not a measurement)."
  else
    echo "Median of $ROUNDS full report runs per allocator (each the median of its 5 repetitions)."
  fi
  echo "glibc in ns per alloc+free pair; the other columns are ratios to glibc (lower is better): the shim, $(commas "${OTHERS[@]}") under LD_PRELOAD, and in-process magbuddy with per-thread handles (the report's \`magbuddy\` allocator, run beside glibc without preload), i.e. the same heap without the malloc interface's cost. Notes: failed allocations or runs cut at the report's time limit."
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
# instructions: each program once under callgrind per allocator (glibc, the
# shim, mimalloc), its processes' instructions and its allocator's
# (preload/cgshare.py), as ratios to glibc; the output checked as above.
# xz and zstd are left out: 24 s and 7 s natively, 20 and 6 min under
# callgrind.
instructions() {
  command -v valgrind >/dev/null || { echo "instructions: needs valgrind" >&2; exit 1; }
  local md=$OUT/instructions-programs.md csv=$OUT/instructions-programs.csv cg=$W/cg
  local allocs=(glibc magbuddy mimalloc)
  echo "program,allocator,instructions,allocator_instructions" >"$csv"
  {
    echo "| program | glibc instructions (G) | glibc's allocator | magbuddy | magbuddy's allocator | mimalloc | mimalloc's allocator | no allocator at all |"
    echo "|---|---:|---:|---:|---:|---:|---:|---:|"
  } >"$md"
  local p name kind cmd alloc total share ref sum
  for p in "${PROGRAMS[@]}"; do
    IFS='|' read -r name kind cmd <<<"$p"
    case $name in xz* | zstd*) continue ;; esac
    declare -A I=() A=()
    ref=""
    for alloc in "${allocs[@]}"; do
      alloc_env "$alloc"
      rm -rf "$cg" && mkdir -p "$cg"
      env "${ALLOC_ENV[@]}" valgrind --tool=callgrind --trace-children=yes \
        --callgrind-out-file="$cg/cg.%p" sh -c "$cmd" >"$W/out" 2>"$W/valgrind.log"
      sum=$(sha256sum <"$W/out" | cut -c1-16)
      if [ -z "$ref" ]; then ref=$sum; elif [ "$sum" != "$ref" ]; then
        echo "OUTPUT DIFFERS under callgrind: $name under $alloc" >&2; exit 1
      fi
      read -r total share < <(python3 preload/cgshare.py "$cg"/cg.*)
      I[$alloc]=$total A[$alloc]=$share
      printf '"%s",%s,%s,%s\n' "${name//\"/\"\"}" "$alloc" "$total" "$share" >>"$csv"
    done
    awk -v n="$name" -v g="${I[glibc]}" -v ga="${A[glibc]}" -v m="${I[magbuddy]}" -v ma="${A[magbuddy]}" \
      -v i="${I[mimalloc]}" -v ia="${A[mimalloc]}" 'BEGIN {
        printf "| %s | %.3f | %.1f %% | %.3f | %.1f %% | %.3f | %.1f %% | %.3f |\n",
          n, g / 1e9, 100 * ga / g, m / g, 100 * ma / m, i / g, 100 * ia / i, (g - ga) / g }' >>"$md"
    echo "done: $name under callgrind" >&2
  done
  # Geometric means of the ratios (fields counted from the end: names hold commas).
  awk -F, 'NR > 1 { a = $(NF - 2); i[a, ++n[a]] = $(NF - 1); s[a, n[a]] = $NF }
    END {
      for (k = 1; k <= n["glibc"]; k++) {
        g = i["glibc", k]
        lm += log(i["magbuddy", k] / g); li += log(i["mimalloc", k] / g); lz += log((g - s["glibc", k]) / g)
      }
      k = n["glibc"]
      printf "| geometric mean | | | %.3f | | %.3f | | %.3f |\n", exp(lm / k), exp(li / k), exp(lz / k)
    }' "$csv" >>"$md"
  {
    echo "# magbuddy as LD_PRELOAD malloc: instructions of real programs"
    echo
    echo "$(date -u +%F), $(nproc) CPUs, $(uname -r), glibc $(ldd --version | head -1 | awk '{print $NF}'), $(versions). Command: \`preload/eval.sh --instructions\`."
    echo
    echo "Each program once under \`valgrind --tool=callgrind --trace-children=yes\` per allocator, outputs checked identical. glibc instructions: all processes of the command line (pipelines included). The magbuddy and mimalloc columns are ratios of the program's instructions to glibc's (lower is better); each allocator column is the share of the program's instructions spent inside that allocator (\`preload/cgshare.py\`: inclusive costs of the calls into malloc, free, realloc and the other entry points). No allocator at all: glibc's instructions less its allocator's, over glibc's, i.e. the ratio an allocator that cost nothing would reach. xz and zstd are left out (20 and 6 min under callgrind)."
    echo
    cat "$md"
  } >"$OUT/instructions-eval.md"
  cat "$OUT/instructions-eval.md"
}
if [ -n "$INSTRUCTIONS_ONLY" ]; then
  instructions
  exit 0
fi
if [ -n "$WORKLOADS_ONLY" ]; then
  workloads
  {
    echo "# magbuddy as LD_PRELOAD malloc: allocator workloads"
    echo
    echo "$(date -u +%F), $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(uname -r), glibc $(ldd --version | head -1 | awk '{print $NF}'), $(versions). Command: \`preload/eval.sh $*\`."
    echo
    workloads_header
    echo
    cat "$WL_MD"
    missing_notes
  } >"$OUT/eval-workloads.md"
  cat "$OUT/eval-workloads.md"
  exit 0
fi
PROG_MD=$W/programs.md CSV=$OUT/eval.csv
# Header and every row are built from ALLOCS: glibc's absolute time and RSS,
# then a time and an RSS ratio column per other allocator.
{
  head="| program | threads | glibc time (s) | glibc RSS (MiB) |" rule="|---|---|---|---|"
  for alloc in "${ALLOCS[@]:1}"; do
    title=$(alloc_title "$alloc")
    head="$head $title time | $title RSS |" rule="$rule---|---|"
  done
  echo "$head"
  echo "$rule"
} >"$PROG_MD"
echo "program,threads,allocator,seconds,rss_kib,time_ratio,rss_ratio" >"$CSV"
for p in "${PROGRAMS[@]}"; do
  IFS='|' read -r name kind cmd <<<"$p"
  # Runs interleaved across allocators (run 1 of each, then run 2, ...);
  # T and R collect each allocator's times and RSSs, one per line.
  declare -A T=() R=()
  ref=""
  for r in $(seq "$RUNS"); do
    for alloc in "${ALLOCS[@]}"; do
      read -r t rss < <(run "$alloc" "$cmd")
      T[$alloc]+="$t"$'\n' R[$alloc]+="$rss"$'\n'
      sum=$(sha256sum <"$W/out" | cut -c1-16)
      if [ -z "$ref" ]; then ref=$sum; elif [ "$sum" != "$ref" ]; then
        echo "OUTPUT DIFFERS: $name under $alloc (run $r)" >&2; exit 1
      fi
    done
  done
  for alloc in "${ALLOCS[@]}"; do
    T[$alloc]=$(printf '%s' "${T[$alloc]}" | median)
    R[$alloc]=$(printf '%s' "${R[$alloc]}" | median)
  done
  row="| $name | $kind | ${T[glibc]} | $(awk -v r="${R[glibc]}" 'BEGIN { printf "%.1f", r / 1024 }') |"
  for alloc in "${ALLOCS[@]:1}"; do
    row="$row $(ratio "${T[$alloc]}" "${T[glibc]}") | $(ratio "${R[$alloc]}" "${R[glibc]}") |"
  done
  echo "$row" >>"$PROG_MD"
  # Names hold commas: quoted, with any " doubled.
  for alloc in "${ALLOCS[@]}"; do
    printf '"%s",%s,%s,%s,%s,%s,%s\n' "${name//\"/\"\"}" "${kind%% *}" "$alloc" "${T[$alloc]}" "${R[$alloc]}" \
      "$(ratio "${T[$alloc]}" "${T[glibc]}")" "$(ratio "${R[$alloc]}" "${R[glibc]}")" >>"$CSV"
  done
  echo "done: $name (output identical under ${#ALLOCS[@]} allocators, $RUNS run(s) each, interleaved)" >&2
done
# Geometric means of the ratios over the programs, per allocator column, in
# ALLOCS's order (the awk reads the list from it; "n/a" ratios are skipped).
# Fields are counted from the end: program names hold commas (quoted), so
# $3, $6 and $7 would miss every program whose name has one.
awk -F, -v allocs="${ALLOCS[*]:1}" '
  NR > 1 { a = $(NF - 4); tr = $(NF - 1); rr = $NF }
  NR > 1 && a != "glibc" { if (tr + 0 > 0) { t[a] += log(tr); nt[a]++ }
                           if (rr + 0 > 0) { r[a] += log(rr); nr[a]++ } }
  function gm(s, n) { return n > 0 ? sprintf("%.2f", exp(s / n)) : "n/a" }
  END {
    row = "| geometric mean | | | |"
    na = split(allocs, al, " ")
    for (i = 1; i <= na; i++) row = row " " gm(t[al[i]], nt[al[i]]) " | " gm(r[al[i]], nr[al[i]]) " |"
    print row
  }' "$CSV" >>"$PROG_MD"
missing_notes >>"$PROG_MD"
if [ -n "$PROGRAMS_ONLY" ]; then
  cargo run -q --release -p magbuddy-bench --bin preload_plot -- "$CSV" "$OUT/eval.svg"
  {
    echo "# magbuddy as LD_PRELOAD malloc: real programs"
    echo
    echo "$(date -u +%F), $(nproc) CPUs, $(uname -r), glibc $(ldd --version | head -1 | awk '{print $NF}'), $(versions). Command: \`preload/eval.sh $*\`."
    echo
    echo "Median of $RUNS run(s) per program and allocator, the runs interleaved across allocators; outputs checked identical under all of them. The columns after glibc's are ratios to glibc (lower is better); magbuddy 1 GiB heap: the shim with \`MAGBUDDY_HEAP=1G\`."
    echo
    cat "$PROG_MD"
  } >"$OUT/eval-programs.md"
  cat "$OUT/eval-programs.md"
  exit 0
fi

workloads

cargo run -q --release -p magbuddy-bench --bin preload_plot -- "$CSV" "$OUT/eval.svg"
rss_over_time

{
  echo "# magbuddy as LD_PRELOAD malloc: real programs and allocator workloads"
  echo
  echo "$(date -u +%F), $(nproc) CPUs, $(lscpu | sed -n 's/^Model name: *//p'), $(uname -r), glibc $(ldd --version | head -1 | awk '{print $NF}'), $(versions). Command: \`preload/eval.sh $*\`."
  echo
  echo "## Real programs"
  echo
  echo "Median of $RUNS run(s) per program and allocator, the runs interleaved across allocators; outputs checked identical under all of them. The columns after glibc's are ratios to glibc (lower is better); magbuddy 1 GiB heap: the shim with \`MAGBUDDY_HEAP=1G\`."
  echo
  cat "$PROG_MD"
  echo
  echo "## Workloads (benchmark report, \`system\` allocator = libc malloc)"
  echo
  workloads_header
  echo
  cat "$WL_MD"
  missing_notes
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
