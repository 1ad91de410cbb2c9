#!/usr/bin/env bash
# Runs this project's own C versions of the mimalloc-bench programs
# (bench-c/*.c) through malloc under every allocator via LD_PRELOAD:
#   glibc     the system malloc (no preload)
#   magbuddy  this project's shim, target/release/libmagbuddy_preload.so
#   mimalloc  Debian's libmimalloc2.0
#   jemalloc  Debian's libjemalloc2
#   tcmalloc  Debian's libtcmalloc-minimal4
# Each repetition runs every program x thread count x allocator, the
# allocators back to back for one program and thread count (their order
# rotated from one repetition to the next), so a slow spell on this shared
# machine hits all allocators alike. Wall time is measured around the process
# (bash's EPOCHREALTIME), peak RSS by /usr/bin/time -f %M. Every program
# prints one summary line fixed by its parameters and seed; the runner checks
# that line is identical under every allocator and on every repetition.
#
# Usage: bench-c/run.sh [--quick] [--threads "1 2"] [--alloc "glibc magbuddy ..."] [runs]
#   runs       repetitions (default 5; --quick: 1)
#   --quick    tiny parameters, one repetition: a smoke run (well under 2 min)
#   --threads  thread counts to run (default "1 2"; glibc-simple always runs at 1)
#   --alloc    allocators to run (default all five)
# Writes target/bench-c/results.csv (program,threads,allocator,run,seconds,max_rss_kib),
# target/bench-c/summary.md, target/bench-c/failures.txt, and each run's output
# under target/bench-c/out/. Exits non-zero if any program failed or printed a
# different summary line under some allocator (and still writes the rest).
set -uo pipefail
cd "$(dirname "$0")/.."
ROOT=$PWD
QUICK=0 RUNS="" THREADS="1 2" ALLOCS="glibc magbuddy mimalloc jemalloc tcmalloc"
while [ $# -gt 0 ]; do
  case $1 in
    --quick) QUICK=1 ;;
    --threads) THREADS=$2; shift ;;
    --alloc) ALLOCS=$2; shift ;;
    '' | *[!0-9]*) echo "usage: $0 [--quick] [--threads \"1 2\"] [--alloc \"glibc magbuddy ...\"] [runs]" >&2; exit 2 ;;
    *) RUNS=$1 ;;
  esac
  shift
done
[ -n "$RUNS" ] || { [ $QUICK = 1 ] && RUNS=1 || RUNS=5; }
OUT=$ROOT/target/bench-c
BIN=$OUT/bin
rm -rf "$OUT/out"
mkdir -p "$BIN" "$OUT/out"
START=$SECONDS
LOAD_START=$(cut -d' ' -f1-3 /proc/loadavg)

# ---- programs and their parameters (after the thread count) ----
# Full parameters are sized so one execution takes roughly 0.5-1.5 s under
# glibc on this 2-core machine; see each file's header for the original's.
PROGRAMS="larson xmalloc-test cache-scratch cache-thrash mstress rptest alloc-test glibc-simple glibc-thread"
declare -A PARAMS
if [ $QUICK = 1 ]; then
  PARAMS=(
    [larson]="2 20 1000"            # generations rounds blocks
    [xmalloc-test]="50"             # batches (of 4096) per producer
    [cache-scratch]="100 1 20000"   # iterations size repetitions
    [cache-thrash]="100 1 20000"
    [mstress]="10 5"                # scale iterations
    [rptest]="200"                  # loops
    [alloc-test]="100000 16384"     # iters items
    [glibc-simple]="16000"          # iters
    [glibc-thread]="200000"         # iters
  )
else
  PARAMS=(
    [larson]="22"                   # 22 thread generations x 100 rounds x 5000 blocks per chain
    [xmalloc-test]="3000"           # 3000 batches of 4096 x 64 B per producer
    [cache-scratch]="1000 1 600000" # original: 1000 1 2000000
    [cache-thrash]="1000 1 600000"
    [mstress]="50 375"              # original: 50 25
    [rptest]="18000"                # original: 500 loops (RSS under magbuddy grows with this: 3.9 GB here)
    [alloc-test]="4500000"          # original: 10^8 iterations
    [glibc-simple]="450000"         # original: 2000000
    [glibc-thread]="12000000"       # original: 2 s
  )
fi

# ---- build ----
CC=${CC:-cc}
for p in $PROGRAMS; do
  "$CC" -O2 -pthread -Wall -o "$BIN/$p" "bench-c/$p.c" -lm || { echo "build of $p failed" >&2; exit 1; }
done
echo "built: $PROGRAMS"
if ! cargo build -q --release -p magbuddy-preload; then
  echo "cargo build of magbuddy-preload failed" >&2
  exit 1
fi

# ---- allocators ----
LIBDIR=/usr/lib/x86_64-linux-gnu
find_so() { # package, file glob
  local f
  f=$(dpkg -L "$1" 2>/dev/null | grep -E "/$2\$" | head -1)
  [ -n "$f" ] && [ -e "$f" ] || f=$(ls $LIBDIR/$2 2>/dev/null | head -1)
  echo "$f"
}
declare -A PKG=([mimalloc]=libmimalloc2.0 [jemalloc]=libjemalloc2 [tcmalloc]=libtcmalloc-minimal4)
declare -A SOGLOB=([mimalloc]='libmimalloc\.so\.2' [jemalloc]='libjemalloc\.so\.2' [tcmalloc]='libtcmalloc_minimal\.so\.4')
declare -A LIB
missing=""
for a in $ALLOCS; do
  case $a in glibc | magbuddy) ;; mimalloc | jemalloc | tcmalloc)
    [ -n "$(find_so ${PKG[$a]} ${SOGLOB[$a]})" ] || missing="$missing ${PKG[$a]}" ;;
  *) echo "unknown allocator: $a" >&2; exit 2 ;;
  esac
done
[ -x /usr/bin/time ] || missing="$missing time"
if [ -n "$missing" ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "installing:$missing"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $missing; } >"$OUT/apt.log" 2>&1 ||
      echo "apt-get install failed (see $OUT/apt.log)" >&2
  else
    echo "missing:$missing -- not root or no apt-get, cannot install" >&2
  fi
fi
[ -x /usr/bin/time ] || { echo "/usr/bin/time is missing and could not be installed" >&2; exit 1; }
RUN_ALLOCS=""
for a in $ALLOCS; do
  case $a in
    glibc) LIB[$a]="" ;;
    magbuddy) LIB[$a]=$ROOT/target/release/libmagbuddy_preload.so ;;
    *) LIB[$a]=$(find_so ${PKG[$a]} ${SOGLOB[$a]}) ;;
  esac
  if [ $a != glibc ] && [ ! -e "${LIB[$a]}" ]; then
    echo "SKIP allocator $a: no shared library found (package ${PKG[$a]:-?} not installed)" | tee -a "$OUT/skipped.txt" >&2
    continue
  fi
  RUN_ALLOCS="$RUN_ALLOCS $a"
done
RUN_ALLOCS=${RUN_ALLOCS# }
read -ra AL <<<"$RUN_ALLOCS"
NA=${#AL[@]}

# ---- machine ----
{
  echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
  echo "cores=$(nproc)"
  echo "kernel=$(uname -sr)"
  echo "load_start=$LOAD_START"
  echo "runs=$RUNS"
  echo "quick=$QUICK"
  echo "threads=$THREADS"
  echo "commit=$(git rev-parse --short HEAD 2>/dev/null)"
  echo "cc=$("$CC" --version | head -1)"
  for a in "${AL[@]}"; do
    v=""
    [ -n "${PKG[$a]:-}" ] && v=$(dpkg-query -W -f='${Version}' "${PKG[$a]}" 2>/dev/null)
    [ $a = glibc ] && v=$(ldd --version | head -1 | awk '{print $NF}')
    [ $a = magbuddy ] && v="(built from this tree)"
    echo "alloc_$a=${LIB[$a]:-(none)} ${v}"
  done
  for p in $PROGRAMS; do echo "params_$p=${PARAMS[$p]}"; done
} >"$OUT/machine.txt"

# ---- run ----
CSV=$OUT/results.csv
FAIL=$OUT/failures.txt
echo "program,threads,allocator,run,seconds,max_rss_kib" >"$CSV"
: >"$FAIL"
declare -A REF REFWHO
cells=0
for p in $PROGRAMS; do for t in $THREADS; do
  [ $p = glibc-simple ] && [ $t != "$(echo $THREADS | awk '{print $1}')" ] && continue
  cells=$((cells + 1))
done; done
total=$((cells * NA * RUNS))
done_n=0
nfail=0
echo "running $RUNS repetition(s) x $cells program/thread cells x $NA allocators ($RUN_ALLOCS) = $total executions"
for ((r = 1; r <= RUNS; r++)); do
  for p in $PROGRAMS; do
    for t in $THREADS; do
      tt=$t
      if [ $p = glibc-simple ]; then
        [ $t != "$(echo $THREADS | awk '{print $1}')" ] && continue
        tt=1
      fi
      for ((k = 0; k < NA; k++)); do
        a=${AL[$(((k + r - 1) % NA))]}
        base=$OUT/out/$p-t$tt-$a-r$r
        if [ $a = glibc ]; then pre=(env -u LD_PRELOAD); else pre=(env LD_PRELOAD="${LIB[$a]}"); fi
        t0=$EPOCHREALTIME
        /usr/bin/time -f "%M" -o "$base.rss" timeout -k 5 600 "${pre[@]}" "$BIN/$p" "$tt" ${PARAMS[$p]} >"$base.out" 2>"$base.err"
        rc=$?
        t1=$EPOCHREALTIME
        secs=$(awk -v a="$t0" -v b="$t1" 'BEGIN{printf "%.4f", b-a}')
        rss=$(tail -1 "$base.rss" 2>/dev/null)
        case $rss in '' | *[!0-9]*) rss="" ;; esac
        done_n=$((done_n + 1))
        key=$p/$tt
        line=$(cat "$base.out")
        status=ok
        if [ $rc != 0 ]; then
          status="exit status $rc"
          [ $rc = 124 ] && status="timed out after 600 s"
          [ $rc -gt 128 ] && [ $rc != 124 ] && status="$status (signal $((rc - 128)))"
        elif [ -z "$line" ]; then
          status="printed nothing"
        elif [ -z "${REF[$key]:-}" ]; then
          REF[$key]=$line
          REFWHO[$key]="$a, run $r"
        elif [ "${REF[$key]}" != "$line" ]; then
          status="output differs"
        fi
        if [ "$status" = ok ]; then
          echo "$p,$tt,$a,$r,$secs,$rss" >>"$CSV"
          printf '[%d/%d] run %d %-13s t=%s %-9s %7.3f s %8s KiB\n' $done_n $total $r $p $tt $a "$secs" "$rss"
        else
          nfail=$((nfail + 1))
          {
            echo "FAIL: program $p, threads $tt, allocator $a, run $r: $status"
            echo "  command: ${pre[*]} $BIN/$p $tt ${PARAMS[$p]}"
            [ -n "${REF[$key]:-}" ] && echo "  expected (as printed under ${REFWHO[$key]}): ${REF[$key]}"
            printf '%s\n' "$line" | sed '1s/^/  got:      /; 2,$s/^/            /'
            echo "  stderr (last lines):"
            tail -5 "$base.err" | sed 's/^/    /'
            grep -v '^[0-9]*$' "$base.rss" 2>/dev/null | sed 's/^/    time: /'
          } | tee -a "$FAIL" >&2
        fi
      done
    done
  done
done
echo "load_end=$(cut -d' ' -f1-3 /proc/loadavg)" >>"$OUT/machine.txt"
echo "elapsed_s=$((SECONDS - START))" >>"$OUT/machine.txt"
for key in "${!REF[@]}"; do echo "$key ${REF[$key]}"; done | sort >"$OUT/outputs.txt"

python3 "$ROOT/bench-c/summary.py" "$OUT" || echo "summary.py failed" >&2
echo "wrote $CSV and $OUT/summary.md in $((SECONDS - START)) s"
if [ $nfail -gt 0 ]; then
  echo "$nfail execution(s) failed or differed; see $FAIL" >&2
  exit 1
fi
